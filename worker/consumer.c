/* The Kafka consumer (see consumer.h). */
#include "consumer.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include "dedup.h"
#include "errmsg.h"
#include "event.h"
#include "job.h"
#include "log.h"
#include "retry.h"
#include "revalidate.h"
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>
#include <uthash.h>
#include <fcntl.h>

void consumer_store_offsets(struct worker *w)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    struct offsets_partition *t = NULL;
    int64_t off;

    while ((t = offsets_next(&w->offsets, t)) != NULL) {
        if (!offsets_advance(t, &off))
            continue;
        if (list == NULL)
            list = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(list, t->topic, t->partition)->offset = off;
    }
    if (list == NULL)
        return;
    /* a partition revoked meanwhile answers _STATE: harmless */
    rd_kafka_offsets_store(w->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Backpressure in two steps. At the cap the loop first just stops taking
 * messages (consumer_poll() returns at once): librdkafka's own prefetch limit
 * holds memory, and a backlog of quick events (a replay) drains without the
 * cost of a pause, which drops and refetches what was prefetched. Only an
 * overload lasting over a second pauses every partition, so that the loop
 * can poll again and answer the group's rebalances meanwhile.
 * Also paused: a partition whose window is full, and every retry partition
 * while IMGCACHE_RETRY_HOLD_MAX retry events are held until due (they are
 * the memory a late retry costs; below that, events behind a held one are
 * taken and done as they come due). */
#define PAUSE_AFTER_MS 1000

void consumer_sync_pause(struct worker *w)
{
    rd_kafka_topic_partition_list_t *pause = NULL, *resume = NULL;
    struct offsets_partition *t = NULL;
    long long now = mono_ms();

    if (w->outstanding >= w->max_outstanding) {
        if (w->over_since_ms == 0)
            w->over_since_ms = now;
        if (now - w->over_since_ms >= PAUSE_AFTER_MS)
            w->paused = 1;
    } else if (w->outstanding <= w->max_outstanding / 2) {
        w->over_since_ms = 0;
        w->paused = 0;
    }
    while ((t = offsets_next(&w->offsets, t)) != NULL) {
        int holding_enough = w->n_in_state[JOB_HELD] >= w->hold_max &&
                             strcmp(t->topic, w->retry_topic) == 0;
        int want = w->paused || holding_enough || offsets_full(t);
        rd_kafka_topic_partition_list_t **list = want ? &pause : &resume;
        if (!offsets_set_paused(t, want))
            continue;
        if (*list == NULL)
            *list = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(*list, t->topic, t->partition);
    }
    if (pause) {
        rd_kafka_pause_partitions(w->rk, pause);
        rd_kafka_topic_partition_list_destroy(pause);
    }
    if (resume) {
        rd_kafka_resume_partitions(w->rk, resume);
        rd_kafka_topic_partition_list_destroy(resume);
    }
}

/* Unfinished events of the revoked partitions, but for retries held until
 * due: those will not finish while a revoke waits (the next owner holds them
 * again), so waiting for them would only stall the rebalance. */
static size_t revoked_in_flight(struct worker *w, rd_kafka_topic_partition_list_t *parts)
{
    size_t n = 0;
    struct job *j;
    struct job_event *e;

    for (int i = 0; i < parts->cnt; i++) {
        struct offsets_partition *t = offsets_find(&w->offsets, parts->elems[i].topic, parts->elems[i].partition);
        if (t)
            n += offsets_unfinished(t);
    }
    DL_FOREACH(w->q_held, j) {
        LL_FOREACH(j->events, e) {
            if (n > 0 && e->partition->attached &&
                rd_kafka_topic_partition_list_find(parts, e->partition->topic, e->partition->partition))
                n--;
        }
    }
    return n;
}

/* 1 for a job not downloading yet whose every event belongs to a revoked
 * partition. */
static int is_orphan(const struct job *j)
{
    const struct job_event *e;

    if (j->state != JOB_NEW && j->state != JOB_WAITING && j->state != JOB_READY &&
        j->state != JOB_BREAKER && j->state != JOB_HELD)
        return 0;
    LL_FOREACH(j->events, e) {
        if (e->partition->attached)
            return 0;
    }
    return 1;
}

/* Gives back the leases of the batch (one round trip) and drops its jobs. */
static void drop_batch(struct worker *w, struct job **batch, size_t n)
{
    dedup_release_leases(w, batch, n);
    for (size_t i = 0; i < n; i++)
        job_remove(w, batch[i]);
}

/* The orphans' events go to the partition's new owner again (their
 * offsets were not stored): drop the jobs here rather than hoard work the
 * group has moved elsewhere, their leases given back in batches. */
static void drop_orphans(struct worker *w)
{
    struct job *batch[BATCH_MAX];
    struct job *j, *tmp;
    size_t n = 0;

    HASH_ITER(hh, w->jobs, j, tmp) {
        if (!is_orphan(j))
            continue;
        batch[n++] = j;
        if (n == BATCH_MAX) {
            drop_batch(w, batch, n);
            n = 0;
        }
    }
    if (n > 0)
        drop_batch(w, batch, n);
}

/* New partitions: tracked from now on; with --from-beginning, one this
 * process never had starts at its beginning (an explicit offset overrides
 * the group's committed one). */
static void track_assigned(struct worker *w, rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        struct offsets_partition *t = offsets_assign(&w->offsets, p->topic, p->partition);
        if (offsets_first_assignment(&w->offsets, p->topic, p->partition) && w->cfg->from_beginning) {
            p->offset = RD_KAFKA_OFFSET_BEGINNING;
            if (t)
                t->from_beginning = 1;
        }
    }
}

/* After the assignment is applied. */
static void assigned(struct worker *w, rd_kafka_topic_partition_list_t *parts, const char *protocol)
{
    /* librdkafka 2.0.2 keeps a partition paused across a rebalance: the new
     * trackers' state is unknown (-1), so consumer_sync_pause sets it */
    consumer_sync_pause(w);
    w->assigned_once = 1;
    log_info("event=assigned partitions=%d protocol=%s", parts->cnt, protocol);
}

/* Partitions going away: their work may finish briefly (so the next owner
 * does not redo it; what is left is redone there, at-least-once), their
 * finished offsets are stored, and the jobs only they had are dropped.
 *
 * The loop's work runs here, inside rd_kafka_consumer_poll (from
 * consumer_poll, between two messages, never inside worker_io_step): the
 * queues are consistent there, and librdkafka wants the partitions given
 * up before the callback returns. */
static void give_up_revoked(struct worker *w, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts)
{
    int lost = rd_kafka_assignment_lost(rk);
    long long deadline = mono_ms() + (w->cfg->grace_ms < REVOKE_WAIT_MS ? w->cfg->grace_ms : REVOKE_WAIT_MS);

    while (!lost && !w->closing && revoked_in_flight(w, parts) > 0 && mono_ms() < deadline) {
        worker_io_step(w);
        fetch_wait(w->fetch, -1, LOOP_POLL_MS);
    }
    if (!lost)
        consumer_store_offsets(w);
    for (int i = 0; i < parts->cnt; i++) {
        struct offsets_partition *t = offsets_revoke(&w->offsets, parts->elems[i].topic, parts->elems[i].partition);
        if (t)
            offsets_release(t);
    }
    drop_orphans(w);
    log_info("event=revoked partitions=%d lost=%d", parts->cnt, lost);
}

/* The cooperative protocol (cooperative-sticky): partitions come and go
 * a few at a time, incrementally. */
static void rebalance_cooperative(struct worker *w, rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_error_t *error;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        track_assigned(w, parts);
        error = rd_kafka_incremental_assign(rk, parts);
        assigned(w, parts, "cooperative");
    } else {
        if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            give_up_revoked(w, rk, parts);
        else
            log_warn("event=rebalance_error reason=\"%s\"", rd_kafka_err2str(err));
        error = rd_kafka_incremental_unassign(rk, parts);
    }
    if (error) {
        log_warn("event=assign_failed reason=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

/* The eager protocol (range, roundrobin; -X partition.assignment.strategy):
 * every rebalance revokes everything, then assigns anew. */
static void rebalance_eager(struct worker *w, rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts)
{
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        track_assigned(w, parts);
        rd_kafka_assign(rk, parts);
        assigned(w, parts, "eager");
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        give_up_revoked(w, rk, parts);
    else
        log_warn("event=rebalance_error reason=\"%s\"", rd_kafka_err2str(err));
    rd_kafka_assign(rk, NULL);
}

/* /readyz: ready while something is assigned (the whole assignment, not
 * this rebalance's increment). Only asked with the endpoint on. */
static void note_assignment(struct worker *w, rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *assignment = NULL;

    if (w->metrics == NULL || rd_kafka_assignment(rk, &assignment) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    worker_metrics_assigned(w->metrics, assignment->cnt);
    rd_kafka_topic_partition_list_destroy(assignment);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct worker *w = opaque;

    w->last_rebalance_ms = mono_ms();
    w->rebalance_pending = err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS;
    if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0)
        rebalance_cooperative(w, rk, err, parts);
    else
        rebalance_eager(w, rk, err, parts);
    note_assignment(w, rk);
}

/* librdkafka's statistics (statistics.interval.ms), served by the
 * consumer's poll on the loop's thread: the lag of each partition. The
 * JSON is librdkafka's to free (return 0). */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    struct worker *w = opaque;

    (void)rk;
    worker_metrics_kafka_stats(w->metrics, json, len, w->lag_from_start);
    return 0;
}

/* With the metrics endpoint on: statistics every WORKER_METRICS_STATS_INTERVAL
 * ms, set before the user's properties so that a statistics.interval.ms of
 * theirs (IMGCACHE_KAFKA_CONFIG_FILE, IMGCACHE_KAFKA_CONFIG, -X) wins. With
 * it off nothing is asked: librdkafka would build the JSON for nobody. */
static void ask_statistics(struct worker *w, rd_kafka_conf_t *conf)
{
    char errstr[512];

    if (w->metrics == NULL)
        return;
    rd_kafka_conf_set(conf, "statistics.interval.ms", WORKER_METRICS_STATS_INTERVAL, errstr, sizeof errstr);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
}

/* Whether a partition with no offset stored or committed starts at its
 * beginning (our default, or the user's auto.offset.reset): then its lag
 * is all it holds. Read after the user's properties are applied. */
static int starts_at_beginning(rd_kafka_conf_t *conf)
{
    char value[64];
    size_t size = sizeof value;

    if (rd_kafka_conf_get(conf, "auto.offset.reset", value, &size) != RD_KAFKA_CONF_OK)
        return 0;
    return strcmp(value, "earliest") == 0 || strcmp(value, "smallest") == 0 || strcmp(value, "beginning") == 0;
}

/* A header's value as a NUL-terminated string in buf; "" when absent. */
static const char *header(rd_kafka_message_t *m, const char *name, char *buf, size_t len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t n = 0;

    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR && v) {
        if (n >= len)
            n = len - 1;
        memcpy(buf, v, n);
        buf[n] = '\0';
    }
    return buf;
}

/* What a message of the retry topic says in its headers. */
struct retry_info {
    long long due_wall;     /* when it is due (wall clock, clamped); 0: now */
    int attempts;           /* downloads tried so far */
};

static void read_retry_headers(struct worker *w, rd_kafka_message_t *m, const char *topic,
                               struct retry_info *ri)
{
    char buf[64];
    long long v;

    if (event_parse_time(header(m, "next_attempt_at", buf, sizeof buf), &v) == 0) {
        long long now_wall = event_now_ms();
        ri->due_wall = retry_due_clamp(v, now_wall, w->hold_limit_ms);
        if (ri->due_wall != v)
            log_warn("event=retry_due_clamped topic=%s partition=%d offset=%lld next_attempt_at=\"%s\" "
                     "held_ms=%lld", topic, (int)m->partition, (long long)m->offset, buf, w->hold_limit_ms);
    }
    ri->attempts = atoi(header(m, "attempts", buf, sizeof buf));
    if (ri->attempts < 0 || ri->attempts > 1000)
        ri->attempts = 0;
}

/* m as job_new() takes it. */
static struct job_message message_of(const rd_kafka_message_t *m)
{
    return (struct job_message){
        .topic = rd_kafka_topic_name(m->rkt), .partition = m->partition, .offset = m->offset,
        .key = m->key, .value = m->payload, .keylen = m->key_len, .valuelen = m->len,
    };
}

/* An event that does not decode: nothing to fetch, its job goes straight
 * to the dead-letter topic. -1 when out of memory. */
static int take_bad_event(struct worker *w, rd_kafka_message_t *m, struct job_event *e, int attempts,
                          const char *why)
{
    struct job_message msg;
    struct job *j;

    w->n_bad_events++;
    log_warn("event=bad_event topic=%s partition=%d offset=%lld reason=\"%s\"", rd_kafka_topic_name(m->rkt),
             (int)m->partition, (long long)m->offset, why);
    msg = message_of(m);
    j = job_new(w, &msg, NULL);
    if (j == NULL)
        return -1;
    LL_PREPEND(j->events, e);
    j->n_events = 1;
    snprintf(j->error_class, sizeof j->error_class, "bad_event");
    snprintf(j->error_msg, sizeof j->error_msg, "%s", why);
    j->permanent = 1;
    j->dead_letter = 1;
    j->attempts = attempts;
    j->first_failed_ms = event_now_ms();
    job_add(w, j, JOB_PUBLISH);
    return 0;
}

/* The job the event of ev's URL joins: the URL's job in flight, or a new
 * one (held until due for a retry that is not). NULL when out of memory. */
static struct job *job_for_event(struct worker *w, rd_kafka_message_t *m, struct event *ev, int from_retry,
                                 long long due_wall)
{
    struct job *j = job_find(w, ev->source_url);
    struct job_message msg;

    if (j && from_retry &&
        (j->state == JOB_PUBLISH || j->state == JOB_PUBLISHING || j->state == JOB_FAILURE_ROW)) {
        /* the retry of a failure still being recorded (it can arrive before
         * its own delivery report): it is new work, not part of that outcome.
         * Other events of the URL do join the failing job and finish with it. */
        job_unindex(w, j);
        j = NULL;
    }
    if (j != NULL)
        return j;
    msg = message_of(m);
    j = job_new(w, &msg, ev->source_url);
    if (j == NULL)
        return NULL;
    ev->source_url = NULL; /* owned by the job now */
    job_index(w, j);
    if (from_retry && due_wall > event_now_ms()) {
        /* not due: hold it in memory until it is; the partition goes on
         * (its stored offset stays before this event until it is done) */
        j->due_ms = mono_ms() + (due_wall - event_now_ms());
        log_debug("event=retry_held topic=%s partition=%d offset=%lld due_in_ms=%lld",
                  rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset,
                  due_wall - event_now_ms());
        job_add(w, j, JOB_HELD);
    } else {
        job_add(w, j, JOB_NEW);
    }
    return j;
}

/* A retry event's history joins its job: attempts so far and the first
 * failure's time. */
static void join_retry(struct job *j, rd_kafka_message_t *m, int attempts)
{
    char buf[64];
    long long first;

    j->from_retry = 1;
    if (attempts > j->attempts)
        j->attempts = attempts;
    if (event_parse_time(header(m, "first_failed_at", buf, sizeof buf), &first) == 0 &&
        (j->first_failed_ms == 0 || first < j->first_failed_ms))
        j->first_failed_ms = first;
}

/* A tombstone (null value), normal on a compacted topic: nothing to fetch,
 * nothing to dead-letter; done once the events before it are. */
static void take_tombstone(struct worker *w, rd_kafka_message_t *m, struct offsets_partition *t, struct job_event *e)
{
    w->n_tombstones++;
    log_debug("event=tombstone topic=%s partition=%d offset=%lld", rd_kafka_topic_name(m->rkt),
              (int)m->partition, (long long)m->offset);
    offsets_finish(t, e->seq);
    offsets_release(t);
    free(e);
}

/* One message: an event, tracked for its offset, joins the job of its URL. */
static void handle_message(struct worker *w, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    struct offsets_partition *t = offsets_find(&w->offsets, topic, m->partition);
    int from_retry = strcmp(topic, w->retry_topic) == 0;
    struct retry_info ri = { 0, 0 };
    struct job_event *e;
    struct event ev;
    struct job *j;
    char err[300];

    if (t == NULL)
        return; /* not ours (any more): the owner gets it */
    e = calloc(1, sizeof *e);
    if (e == NULL || offsets_push(t, m->offset, &e->seq) != 0) {
        free(e);
        log_error("event=out_of_memory");
        return;
    }
    e->partition = t;
    w->n_consumed++;
    worker_metrics_consumed(w->metrics, from_retry);
    if (m->payload == NULL) {
        take_tombstone(w, m, t, e);
        return;
    }
    w->outstanding++;
    if (from_retry)
        read_retry_headers(w, m, topic, &ri);
    if (event_decode(m->payload, m->len, &ev, err, sizeof err) != 0) {
        if (take_bad_event(w, m, e, ri.attempts, err) != 0)
            goto oom;
        return;
    }
    j = job_for_event(w, m, &ev, from_retry, ri.due_wall);
    if (j == NULL) {
        event_clear(&ev);
        goto oom;
    }
    if (from_retry)
        join_retry(j, m, ri.attempts);
    if (j->data_url == NULL && ev.data_url != NULL) {
        j->data_url = ev.data_url; /* the bytes of a data: URL travel in its event */
        ev.data_url = NULL;
    }
    revalidate_note_event(j, ev.reason, ev.produced_at_ms);
    LL_PREPEND(j->events, e);
    j->n_events++;
    event_clear(&ev);
    return;
oom:
    log_error("event=out_of_memory");
    offsets_release(t);
    w->outstanding--;
    free(e);
}

void consumer_poll(struct worker *w)
{
    /* at the cap and not yet paused: take nothing (see consumer_sync_pause) */
    if (w->outstanding >= w->max_outstanding && !w->paused)
        return;
    /* enough work that still needs a download slot: leave the rest in
     * Kafka, where a worker that joins the group can take it */
    if (w->n_in_state[JOB_NEW] + w->n_in_state[JOB_READY] > 2 * (size_t)w->cfg->concurrency + BATCH_MAX)
        return;
    for (int i = 0; i < CONSUME_BUDGET; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 0);
        if (m == NULL)
            break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("event=consume_error reason=\"%s\"", rd_kafka_message_errstr(m));
        } else {
            handle_message(w, m);
        }
        rd_kafka_message_destroy(m);
        if (w->outstanding >= w->max_outstanding)
            break;
    }
}

int consumer_open(struct worker *w, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;
    char errstr[512];
    rd_kafka_resp_err_t e;
    int rc;

    /* 8 MiB of prefetch: memory stays flat whatever the backlog */
    rc = kafka_consumer_conf_new(w->cfg->group, "IMGCACHE_GROUP", 8192, &conf, err, errlen);
    if (rc != 0)
        return rc == KAFKA_ERR_GROUP ? WORKER_ERR_CONFIG : -1;
    rc = -1;
    ask_statistics(w, conf);
    if (kafka_conf_apply(conf, w->cfg, w->worker_id, err, errlen) != 0)
        goto out;
    w->lag_from_start = starts_at_beginning(conf);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    kafka_conf_set_logger(conf);
    rd_kafka_conf_set_opaque(conf, w);
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (w->rk == NULL) {
        errmsg_set(err, errlen, "kafka consumer: %s", errstr);
        goto out;
    }
    conf = NULL; /* owned by w->rk */
    rd_kafka_poll_set_consumer(w->rk);
    w->queue = rd_kafka_queue_get_consumer(w->rk);
    if (pipe2(w->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        errmsg_set(err, errlen, "pipe: %s", strerror(errno));
        goto out;
    }
    /* librdkafka writes a byte when its queue becomes non-empty: the loop
     * sleeps in curl_multi_poll on both the sockets and this pipe */
    rd_kafka_queue_io_event_enable(w->queue, w->wake[1], "1", 1);
    topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, w->cfg->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, w->retry_topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(w->rk, topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        errmsg_set(err, errlen, "subscribe to %s and %s: %s", w->cfg->topic, w->retry_topic, rd_kafka_err2str(e));
        goto out;
    }
    rc = 0;
out:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (topics)
        rd_kafka_topic_partition_list_destroy(topics);
    return rc;
}

/* librdkafka 2.0.2 hangs in rd_kafka_consumer_close() when a cooperative
 * assignment arrives while it closes (librdkafka #4527, fixed in 2.4.0; a
 * --drain worker whose group rebalanced as it finished never exited). As
 * its maintainers advise: leave the group first (unsubscribe), serve the
 * rebalance until nothing is assigned, at most LEAVE_WAIT_MS, then close.
 * The revoke goes through on_rebalance as in a close: offsets stored,
 * partitions given up. */
static void leave_group(struct worker *w)
{
    long long deadline = mono_ms() + LEAVE_WAIT_MS;
    rd_kafka_topic_partition_list_t *assignment = NULL;
    int n;

    if (rd_kafka_unsubscribe(w->rk) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    do {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, LOOP_POLL_MS);
        if (m)
            rd_kafka_message_destroy(m); /* not ours to finish: redelivered later */
        if (rd_kafka_assignment(w->rk, &assignment) != RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        n = assignment->cnt;
        rd_kafka_topic_partition_list_destroy(assignment);
    } while (n > 0 && mono_ms() < deadline);
}

void consumer_close(struct worker *w)
{
    if (w->rk == NULL)
        return;
    if (w->queue)
        rd_kafka_queue_io_event_enable(w->queue, -1, NULL, 0);
    consumer_store_offsets(w);
    leave_group(w);
    /* commits the stored offsets and leaves the group */
    rd_kafka_consumer_close(w->rk);
    if (w->queue)
        rd_kafka_queue_destroy(w->queue);
    w->queue = NULL;
    /* librdkafka 2.0.2 asserts when destroying a cooperative-sticky
     * consumer that joined but never received its first assignment (its
     * assignor state is still NULL; fixed upstream in 2.3.0). The group is
     * already left and the process is exiting: leave the handle to the OS
     * in that one case. */
    if (w->assigned_once) {
        rd_kafka_destroy(w->rk);
    } else {
        log_debug("event=consumer_not_destroyed reason=\"never assigned (librdkafka 2.0.2 workaround)\"");
#ifdef __SANITIZE_ADDRESS__
        /* the leak check now, while the handle is still ours: at exit
         * everything under it would be reported, hiding real leaks */
        __lsan_do_leak_check();
#endif
    }
    w->rk = NULL;
}
