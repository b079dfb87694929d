/* imgcache-renderer's loop (see renderer.h). */
#include "renderer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "db.h"
#include "db_render.h"
#include "event.h"
#include "kafka.h"
#include "log.h"
#include "render_failure.h"
#include "render_image.h"
#include "store.h"

#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS 30000

struct renderer {
    const struct config *cfg;
    struct db *db;
    struct store *store;
    rd_kafka_t *rk;
    struct render_failure *failures; /* the dead letters' producer */
    int presets[CONFIG_RENDITIONS_MAX];
    size_t n_presets;
    struct render_ctx ctx;
    long long n_events, n_done, n_skipped, n_gave_up, n_retries, n_bad_events;
};

static int open_consumer(struct renderer *r, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;
    char errstr[512];
    rd_kafka_resp_err_t e;
    int rc;

    /* one image at a time: nothing to gain from a deep prefetch */
    rc = kafka_consumer_conf_new(r->cfg->render_group, "IMGCACHE_RENDER_GROUP", 1024, &conf, err, errlen);
    if (rc != 0)
        return rc == KAFKA_ERR_GROUP ? RENDERER_ERR_CONFIG : -1;
    rc = -1;
    if (kafka_conf_apply(conf, r->cfg, "imgcache-renderer", err, errlen) != 0)
        goto out;
    kafka_conf_set_logger(conf);
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (r->rk == NULL) {
        errmsg_set(err, errlen, "kafka consumer: %s", errstr);
        goto out;
    }
    conf = NULL; /* owned by r->rk */
    rd_kafka_poll_set_consumer(r->rk);
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, r->cfg->stored_topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(r->rk, topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        errmsg_set(err, errlen, "subscribe to %s: %s", r->cfg->stored_topic, rd_kafka_err2str(e));
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

int renderer_new(const struct config *cfg, struct renderer **out, char *err, size_t errlen)
{
    struct renderer *r = calloc(1, sizeof *r);
    char why[300];
    int n = 0, rc = -1;

    *out = NULL;
    if (r == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    r->cfg = cfg;
    /* checked by config_load() already; parsed here */
    if (config_parse_renditions(cfg->renditions, r->presets, CONFIG_RENDITIONS_MAX, &n, why, sizeof why) != 0) {
        errmsg_set(err, errlen, "IMGCACHE_RENDITIONS: %s", why);
        rc = RENDERER_ERR_CONFIG;
        goto out;
    }
    r->n_presets = (size_t)n;
    /* in order: the database (schema), the store, the dead letters' producer, then the group, so that
     * nothing is consumed by a renderer that could not record it */
    if (db_connect(cfg->database_url, &r->db, err, errlen) != 0 || db_check_schema(r->db, err, errlen) != 0)
        goto out;
    rc = store_open_config(cfg, &r->store, err, errlen);
    if (rc != 0) {
        rc = rc == STORE_ERR_NOT_WRITABLE || rc == STORE_ERR_DENIED ? RENDERER_ERR_CONFIG : -1;
        goto out;
    }
    /* the producer before the group: nothing is consumed that could not
     * be given up */
    if (render_failure_open(cfg, &r->failures, err, errlen) != 0)
        goto out;
    rc = open_consumer(r, err, errlen);
    if (rc != 0)
        goto out;
    r->ctx = (struct render_ctx){
        .db = r->db, .store = r->store, .presets = r->presets, .n_presets = r->n_presets,
        .opts = { .quality = (int)cfg->render_quality, .max_pixels = cfg->max_pixels, .attention = 0 },
        .timeout_ms = cfg->render_timeout_ms, .max_attempts = (int)cfg->render_attempts,
    };
    *out = r;
    r = NULL;
    rc = 0;
out:
    renderer_free(r);
    return rc;
}

/* Sleeps ms in steps of 100 ms, returning early once *stop is set. */
static void nap(long long ms, volatile sig_atomic_t *stop)
{
    struct timespec step = { 0, 100 * 1000000L };

    for (long long slept = 0; slept < ms && !*stop; slept += 100)
        nanosleep(&step, NULL);
}

/* After a failure of the moment: logs it, reconnects PostgreSQL if it is
 * gone, sleeps *delay (doubled for the next time, up to RETRY_MAX_MS);
 * -1 when *stop came first. */
static int back_off(struct renderer *r, const char *sha256, long long *delay, const char *why,
                    volatile sig_atomic_t *stop)
{
    char err[512];

    r->n_retries++;
    log_warn("event=render_retry sha256=%s delay_ms=%lld reason=\"%s\"", sha256, *delay, why);
    if (!db_ok(r->db) && db_reset(r->db, err, sizeof err) != 0)
        log_warn("event=db_unreachable reason=\"%s\"", err);
    nap(*delay, stop);
    *delay = *delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : *delay * 2;
    return *stop ? -1 : 0;
}

/* Gives the image up for good: its dead letter first, acknowledged, then
 * the render_failures row (which makes a redelivery skip it), each
 * retried in place; 0 when its offset may be stored. */
static int give_up(struct renderer *r, const rd_kafka_message_t *m, const struct stored_event *ev,
                   const struct render_verdict *v, volatile sig_atomic_t *stop)
{
    long long delay = RETRY_FIRST_MS;
    int published = 0, rc;
    char err[512];

    for (;;) {
        if (!published)
            published = render_failure_publish(r->failures, m, ev->sha256, v, stop, err, sizeof err) == 0;
        if (published) {
            rc = db_render_give_up(r->db, ev->sha256, v->error_class, v->message, err, sizeof err);
            /* gone: gc removed the blob meanwhile; the dead letter stands */
            if (rc == 0 || rc == DB_RENDER_GONE)
                break;
        }
        if (*stop || back_off(r, ev->sha256, &delay, err, stop) != 0)
            return -1;
    }
    r->n_gave_up++;
    log_warn("event=render_failed sha256=%s class=%s attempts=%d dead_letter=%s reason=\"%s\"", ev->sha256,
             v->error_class, v->attempts, render_failure_topic(r->failures), v->message);
    return 0;
}

/* Renders one event until it is finished (retrying failures of the moment
 * with backoff); 0 when its offset may be stored, -1 when *stop came first. */
static int handle_event(struct renderer *r, const rd_kafka_message_t *m, const struct stored_event *ev,
                        volatile sig_atomic_t *stop)
{
    long long delay = RETRY_FIRST_MS;
    struct render_verdict v;
    char err[512];

    for (;;) {
        enum render_outcome o = render_image(&r->ctx, ev, &v, err, sizeof err);
        switch (o) {
        case RENDER_DONE:
            r->n_done++;
            log_debug("event=rendered sha256=%s presets=%zu", ev->sha256, r->n_presets);
            return 0;
        case RENDER_SKIPPED:
            r->n_skipped++;
            return 0;
        case RENDER_GAVE_UP:
            return give_up(r, m, ev, &v, stop);
        case RENDER_RETRY:
            break;
        }
        if (back_off(r, ev->sha256, &delay, err, stop) != 0)
            return -1;
    }
}

/* The offset after m, stored for the next commit. */
static void store_offset(struct renderer *r, const rd_kafka_message_t *m)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t e;

    rd_kafka_topic_partition_list_add(l, rd_kafka_topic_name(m->rkt), m->partition)->offset = m->offset + 1;
    e = rd_kafka_offsets_store(r->rk, l);
    /* a partition revoked meanwhile: its new owner renders it again */
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_warn("event=offset_not_stored partition=%d reason=\"%s\"", (int)m->partition, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* One message; -1 when *stop interrupted it (its offset is not stored). */
static int handle_message(struct renderer *r, const rd_kafka_message_t *m, volatile sig_atomic_t *stop)
{
    struct stored_event ev;
    char err[512];
    int rc;

    r->n_events++;
    if (stored_event_decode(m->payload, m->len, &ev, err, sizeof err) != 0) {
        /* nothing any renderer could do with it: skipped, logged */
        r->n_bad_events++;
        log_warn("event=bad_event partition=%d offset=%lld reason=\"%s\"", (int)m->partition,
                 (long long)m->offset, err);
        store_offset(r, m);
        return 0;
    }
    rc = handle_event(r, m, &ev, stop);
    if (rc == 0)
        store_offset(r, m);
    stored_event_clear(&ev);
    return rc;
}

int renderer_run(struct renderer *r, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    int rc = 0;

    log_info("event=started group=%s topic=%s renditions=%s", r->cfg->render_group, r->cfg->stored_topic,
             r->cfg->renditions);
    while (!*stop) {
        /* 100 ms: a stop is seen quickly */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
            errmsg_set(err, errlen, "kafka consumer: %s", rd_kafka_message_errstr(m));
            rc = -1;
        } else if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("event=consume_error reason=\"%s\"", rd_kafka_message_errstr(m));
        } else {
            handle_message(r, m, stop);
        }
        rd_kafka_message_destroy(m);
        if (rc != 0)
            break;
    }
    log_info("event=stopped events=%lld rendered=%lld skipped=%lld gave_up=%lld retries=%lld bad_events=%lld",
             r->n_events, r->n_done, r->n_skipped, r->n_gave_up, r->n_retries, r->n_bad_events);
    return rc;
}

void renderer_free(struct renderer *r)
{
    if (r == NULL)
        return;
    if (r->rk) {
        /* commits the stored offsets, leaves the group */
        rd_kafka_resp_err_t e = rd_kafka_consumer_close(r->rk);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_warn("event=consumer_close_failed reason=\"%s\"", rd_kafka_err2str(e));
        rd_kafka_destroy(r->rk);
    }
    render_failure_free(r->failures);
    store_close(r->store);
    db_close(r->db);
    free(r);
}
