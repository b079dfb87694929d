#include "backlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "errmsg.h"
#include "event.h"
#include "kafka.h"

#define BACKLOG_CLIENT_ID "imgcache-producer-stats"
/* A coordinator that is not ready yet is asked again this often, until
 * the request timeout. */
#define COORDINATOR_RETRY_MS 200

/* The client and its admin queue, for one backlog_read(). */
struct reader {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int timeout_ms;
};

static void topic_release(struct backlog_topic *t)
{
    free(t->name);
    free(t->start);
    free(t->end);
    memset(t, 0, sizeof *t);
}

static void group_release(struct backlog_group *g)
{
    free(g->id);
    for (int k = 0; k < BACKLOG_CONSUMED_TOPICS; k++)
        free(g->committed[k]);
    memset(g, 0, sizeof *g);
}

void backlog_release(struct backlog *b)
{
    for (int k = 0; k < BACKLOG_TOPICS; k++)
        topic_release(&b->topics[k]);
    for (size_t i = 0; i < b->n_groups; i++)
        group_release(&b->groups[i]);
    free(b->groups);
    memset(b, 0, sizeof *b);
}

/* A consumer that never subscribes: it joins no group, and the Admin API
 * works on any client. */
static int reader_open(struct reader *r, const struct config *cfg, int timeout_ms, char *err,
                       size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    int rc = -1;

    memset(r, 0, sizeof *r);
    r->timeout_ms = timeout_ms;
    kafka_conf_set_logger(conf);
    if (kafka_conf_apply(conf, cfg, BACKLOG_CLIENT_ID, err, errlen) != 0)
        goto out;
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (r->rk == NULL) {
        errmsg_set(err, errlen, "Kafka (KAFKA_BROKERS): cannot create a client: %s", errstr);
        goto out;
    }
    conf = NULL; /* the handle owns it */
    r->queue = rd_kafka_queue_new(r->rk);
    if (r->queue == NULL) {
        errmsg_set(err, errlen, "Kafka: out of memory");
        goto out;
    }
    rc = 0;
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rc;
}

static void reader_close(struct reader *r)
{
    if (r->queue != NULL)
        rd_kafka_queue_destroy(r->queue);
    if (r->rk != NULL)
        rd_kafka_destroy(r->rk); /* never subscribed: no group to leave */
    memset(r, 0, sizeof *r);
}

/* The partitions' first and next offsets of a topic the metadata lists. */
static int topic_offsets(struct reader *r, const rd_kafka_metadata_topic_t *mt, struct backlog_topic *t,
                         char *err, size_t errlen)
{
    t->exists = 1;
    t->n_partitions = mt->partition_cnt;
    t->start = calloc((size_t)mt->partition_cnt + 1, sizeof *t->start);
    t->end = calloc((size_t)mt->partition_cnt + 1, sizeof *t->end);
    if (t->start == NULL || t->end == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    for (int p = 0; p < mt->partition_cnt; p++) {
        int32_t id = mt->partitions[p].id;
        rd_kafka_resp_err_t e;

        if (id < 0 || id >= mt->partition_cnt) {
            errmsg_set(err, errlen, "Kafka: topic %s lists partition %d of %d", t->name, (int)id,
                       mt->partition_cnt);
            return -1;
        }
        e = rd_kafka_query_watermark_offsets(r->rk, t->name, id, &t->start[id], &t->end[id],
                                             r->timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            errmsg_set(err, errlen, "Kafka (KAFKA_BROKERS): cannot read the offsets of %s [%d]: %s",
                       t->name, (int)id, rd_kafka_err2str(e));
            return -1;
        }
        t->events += t->end[id] - t->start[id];
    }
    return 0;
}

/* Names the five topics and reads the offsets of those that exist. */
static int read_topics(struct reader *r, const struct config *cfg, struct backlog *b, char *err,
                       size_t errlen)
{
    static const char *const suffix[BACKLOG_TOPICS] = { "", "-retry", "", "-dlt", "-dlt" };
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e;
    int rc = -1;

    for (int k = 0; k < BACKLOG_TOPICS; k++) {
        const char *base = k == BACKLOG_STORED || k == BACKLOG_STORED_DLT ? cfg->stored_topic : cfg->topic;
        size_t len = strlen(base) + strlen(suffix[k]) + 1;
        b->topics[k].name = malloc(len);
        if (b->topics[k].name == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        snprintf(b->topics[k].name, len, "%s%s", base, suffix[k]);
    }
    e = rd_kafka_metadata(r->rk, 1, NULL, &md, r->timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        errmsg_set(err, errlen, "Kafka (KAFKA_BROKERS) did not answer within %d ms: %s", r->timeout_ms,
                   rd_kafka_err2str(e));
        goto out;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *mt = &md->topics[i];
        for (int k = 0; k < BACKLOG_TOPICS; k++)
            if (mt->err == RD_KAFKA_RESP_ERR_NO_ERROR && strcmp(mt->topic, b->topics[k].name) == 0 &&
                topic_offsets(r, mt, &b->topics[k], err, errlen) != 0)
                goto out;
    }
    rc = 0;
out:
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    return rc;
}

/* Errors a fresh cluster gives while it creates __consumer_offsets or
 * loads a group: asking again shortly succeeds. */
static int coordinator_busy(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE || e == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
           e == RD_KAFKA_RESP_ERR_NOT_COORDINATOR;
}

/* Waits for the admin result of type `type` on the reader's queue. NULL
 * with a message on timeout or error (*code: its code); the caller
 * destroys the event. */
static rd_kafka_event_t *await_admin(struct reader *r, rd_kafka_event_type_t type, const char *what,
                                     rd_kafka_resp_err_t *code, char *err, size_t errlen)
{
    /* the request's own timeout ends it first; this is a backstop */
    rd_kafka_event_t *ev = rd_kafka_queue_poll(r->queue, r->timeout_ms * 2);

    *code = RD_KAFKA_RESP_ERR__TIMED_OUT;
    if (ev == NULL) {
        errmsg_set(err, errlen, "Kafka (KAFKA_BROKERS): %s: no answer within %d ms", what,
                   r->timeout_ms * 2);
        return NULL;
    }
    *code = rd_kafka_event_error(ev);
    if (rd_kafka_event_type(ev) != type || rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        errmsg_set(err, errlen, "Kafka (KAFKA_BROKERS): %s: %s", what,
                   rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev) : "unexpected answer");
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

static rd_kafka_AdminOptions_t *admin_options(struct reader *r, rd_kafka_admin_op_t op)
{
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(r->rk, op);
    char errstr[256];

    if (opts != NULL)
        (void)rd_kafka_AdminOptions_set_request_timeout(opts, r->timeout_ms, errstr, sizeof errstr);
    return opts;
}

/* Appends a group named id (copied) with no offsets yet; NULL when out of
 * memory. */
static struct backlog_group *add_group(struct backlog *b, const char *id)
{
    struct backlog_group *grown = realloc(b->groups, (b->n_groups + 1) * sizeof *grown);

    if (grown == NULL)
        return NULL;
    b->groups = grown;
    memset(&b->groups[b->n_groups], 0, sizeof b->groups[b->n_groups]);
    b->groups[b->n_groups].id = strdup(id);
    if (b->groups[b->n_groups].id == NULL)
        return NULL;
    return &b->groups[b->n_groups++];
}

/* The configured group first, then every other group the cluster lists.
 * A cluster that will not list them (the development broker) leaves the
 * configured group alone, with a note. */
static int list_groups(struct reader *r, const struct config *cfg, struct backlog *b, char *err,
                       size_t errlen)
{
    rd_kafka_AdminOptions_t *opts = admin_options(r, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS);
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_ConsumerGroupListing_t **valid;
    rd_kafka_resp_err_t code;
    size_t n = 0;
    char why[384];
    int rc = -1;

    if (add_group(b, cfg->group) == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    rd_kafka_ListConsumerGroups(r->rk, opts, r->queue);
    ev = await_admin(r, RD_KAFKA_EVENT_LISTCONSUMERGROUPS_RESULT, "listing the consumer groups", &code, why,
                     sizeof why);
    if (ev == NULL) {
        errmsg_set(b->groups_note, sizeof b->groups_note, "only %s shown: %s", cfg->group, why);
        rc = 0;
        goto out;
    }
    valid = rd_kafka_ListConsumerGroups_result_valid(rd_kafka_event_ListConsumerGroups_result(ev), &n);
    for (size_t i = 0; i < n; i++) {
        const char *id = rd_kafka_ConsumerGroupListing_group_id(valid[i]);
        if (strcmp(id, cfg->group) != 0 && add_group(b, id) == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
    return rc;
}

/* Fills g's committed offsets from the partitions the admin answer lists;
 * on[k] = 1 when any partition of topic k has one. */
static void take_offsets(const struct backlog *b, struct backlog_group *g,
                         const rd_kafka_topic_partition_list_t *parts, int *on)
{
    for (int i = 0; parts != NULL && i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        for (int k = 0; k < BACKLOG_CONSUMED_TOPICS; k++) {
            const struct backlog_topic *t = &b->topics[k];
            if (strcmp(tp->topic, t->name) != 0 || tp->partition < 0 || tp->partition >= t->n_partitions)
                continue;
            if (tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0) {
                g->committed[k][tp->partition] = tp->offset;
                on[k] = 1;
            }
        }
    }
}

/* Fills g's committed offsets, which topics it reads and its backlog on
 * them; 1 when it has committed on any of them. workers: g is
 * IMGCACHE_GROUP, which reads TOPIC and TOPIC-retry whatever it
 * committed. */
static int take_committed(const struct backlog *b, struct backlog_group *g,
                          const rd_kafka_topic_partition_list_t *parts, int workers)
{
    int on[BACKLOG_CONSUMED_TOPICS] = { 0 };
    int downloads;

    take_offsets(b, g, parts, on);
    /* the workers read TOPIC and TOPIC-retry together */
    downloads = workers || on[BACKLOG_MAIN] || on[BACKLOG_RETRY];
    g->reads[BACKLOG_MAIN] = g->reads[BACKLOG_RETRY] = downloads;
    g->reads[BACKLOG_STORED] = on[BACKLOG_STORED];
    for (int k = 0; k < BACKLOG_CONSUMED_TOPICS; k++) {
        const struct backlog_topic *t = &b->topics[k];
        for (int p = 0; g->reads[k] && p < t->n_partitions; p++) {
            int64_t from = g->committed[k][p] > t->start[p] ? g->committed[k][p] : t->start[p];
            if (t->end[p] > from)
                g->backlog[k] += t->end[p] - from;
        }
        g->total += g->backlog[k];
    }
    return on[BACKLOG_MAIN] || on[BACKLOG_RETRY] || on[BACKLOG_STORED];
}

/* The partitions of the consumed topics that exist, to ask a group about. */
static rd_kafka_topic_partition_list_t *consumed_partitions(const struct backlog *b)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);

    for (int k = 0; k < BACKLOG_CONSUMED_TOPICS; k++)
        for (int p = 0; p < b->topics[k].n_partitions; p++)
            rd_kafka_topic_partition_list_add(parts, b->topics[k].name, p);
    return parts;
}

/* One group's committed offsets (ListConsumerGroupOffsets takes one group
 * per call). *committed_any: whether it has consumed any of our topics;
 * *busy: the failure was a coordinator not ready yet (ask again). */
static int read_group(struct reader *r, const struct backlog *b, struct backlog_group *g, int workers,
                      int *committed_any, int *busy, char *err, size_t errlen)
{
    rd_kafka_AdminOptions_t *opts = admin_options(r, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_topic_partition_list_t *parts = consumed_partitions(b);
    rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(g->id, parts);
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_group_result_t **res;
    rd_kafka_resp_err_t code;
    size_t n = 0;
    int rc = -1;

    *committed_any = 0;
    *busy = 0;
    if (parts == NULL || req == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (int k = 0; k < BACKLOG_CONSUMED_TOPICS; k++) {
        free(g->committed[k]); /* from an earlier try */
        g->committed[k] = malloc(((size_t)b->topics[k].n_partitions + 1) * sizeof *g->committed[k]);
        if (g->committed[k] == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        for (int p = 0; p < b->topics[k].n_partitions; p++)
            g->committed[k][p] = -1;
    }
    if (parts->cnt == 0) {
        /* none of the topics exists: nothing to be behind on (and an
         * empty list is refused) */
        *committed_any = take_committed(b, g, NULL, workers);
        rc = 0;
        goto out;
    }
    rd_kafka_ListConsumerGroupOffsets(r->rk, &req, 1, opts, r->queue);
    ev = await_admin(r, RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT, "reading a group's offsets", &code,
                     err, errlen);
    if (ev == NULL) {
        *busy = coordinator_busy(code);
        goto out;
    }
    res = rd_kafka_ListConsumerGroupOffsets_result_groups(rd_kafka_event_ListConsumerGroupOffsets_result(ev),
                                                          &n);
    if (n == 1 && rd_kafka_group_result_error(res[0]) != NULL) {
        const rd_kafka_error_t *ge = rd_kafka_group_result_error(res[0]);
        errmsg_set(err, errlen, "Kafka: offsets of group %s: %s", g->id, rd_kafka_error_string(ge));
        *busy = coordinator_busy(rd_kafka_error_code(ge));
        goto out;
    }
    *committed_any = take_committed(b, g, n == 1 ? rd_kafka_group_result_partitions(res[0]) : NULL, workers);
    rc = 0;
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (req != NULL)
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
    return rc;
}

/* Reads every listed group, keeping the configured one (index 0) and the
 * others that committed offsets on our topics. */
static int read_groups(struct reader *r, struct backlog *b, char *err, size_t errlen)
{
    long long deadline = event_now_ms() + r->timeout_ms;
    size_t kept = 0;

    for (size_t i = 0; i < b->n_groups; i++) {
        int any = 0, busy = 0;
        int rc = read_group(r, b, &b->groups[i], i == 0, &any, &busy, err, errlen);

        while (rc != 0 && busy && event_now_ms() < deadline) {
            struct timespec pause = { .tv_sec = 0, .tv_nsec = COORDINATOR_RETRY_MS * 1000000L };
            nanosleep(&pause, NULL);
            rc = read_group(r, b, &b->groups[i], i == 0, &any, &busy, err, errlen);
        }
        if (rc != 0) {
            /* keep what is read so far, and free the rest */
            for (size_t j = i; j < b->n_groups; j++)
                group_release(&b->groups[j]);
            b->n_groups = kept;
            return -1;
        }
        if (i == 0 || any)
            b->groups[kept++] = b->groups[i];
        else
            group_release(&b->groups[i]);
    }
    b->n_groups = kept;
    return 0;
}

int backlog_read(const struct config *cfg, int timeout_ms, struct backlog *out, char *err, size_t errlen)
{
    struct reader r;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (reader_open(&r, cfg, timeout_ms, err, errlen) != 0)
        goto out;
    if (read_topics(&r, cfg, out, err, errlen) != 0)
        goto out;
    if (list_groups(&r, cfg, out, err, errlen) != 0)
        goto out;
    if (read_groups(&r, out, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    reader_close(&r);
    return rc;
}
