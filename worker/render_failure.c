/* imgcache-renderer's dead letters (see render_failure.h). */
#include "render_failure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "kafka.h"
#include "log.h"

#define RENDER_DLT_SUFFIX "-dlt"
#define PREPARE_TIMEOUT_MS 10000
#define SETTLE_TIMEOUT_MS 5000

/* The delivery report of the one dead letter in flight. */
enum delivery { DELIVERY_PENDING, DELIVERY_OK, DELIVERY_FAILED };

struct render_failure {
    struct kafka_producer *producer;
    char topic[256];
    enum delivery state;
    char delivery_error[256];
};

static void on_delivery(void *opaque, int ok, const char *errstr, void *ctx)
{
    struct render_failure *f = ctx;

    (void)opaque;
    f->state = ok ? DELIVERY_OK : DELIVERY_FAILED;
    snprintf(f->delivery_error, sizeof f->delivery_error, "%s", ok || errstr == NULL ? "" : errstr);
}

int render_failure_open(const struct config *cfg, struct render_failure **out, char *err, size_t errlen)
{
    struct render_failure *f = calloc(1, sizeof *f);
    char why[300];
    int rc = -1;

    *out = NULL;
    if (f == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    if (strlen(cfg->stored_topic) + strlen(RENDER_DLT_SUFFIX) >= sizeof f->topic) {
        errmsg_set(err, errlen, "IMGCACHE_STORED_TOPIC: '%s' is too long for a topic name", cfg->stored_topic);
        goto out;
    }
    snprintf(f->topic, sizeof f->topic, "%s%s", cfg->stored_topic, RENDER_DLT_SUFFIX);
    if (kafka_producer_new(cfg, "imgcache-renderer", &f->producer, err, errlen) != 0)
        goto out;
    f->producer->on_delivery = on_delivery;
    f->producer->on_delivery_ctx = f;
    /* not fatal: a dead letter waits for the topic; but say so now */
    if (kafka_producer_prepare(f->producer, f->topic, PREPARE_TIMEOUT_MS, why, sizeof why) != 0)
        log_warn("event=topic_unavailable reason=\"%s\"", why);
    *out = f;
    f = NULL;
    rc = 0;
out:
    render_failure_free(f);
    return rc;
}

const char *render_failure_topic(const struct render_failure *f)
{
    return f->topic;
}

/* Produces m's dead letter (the headers of failure.c's, minus what a
 * download has and a render has not: http_status, next_attempt_at). */
static int produce(struct render_failure *f, const rd_kafka_message_t *m, const char *sha256,
                   const struct render_verdict *v, char *err, size_t errlen)
{
    char attempts[16], partition[16], offset[24], first[32];
    struct kafka_header h[7];
    size_t nh = 0;

    snprintf(attempts, sizeof attempts, "%d", v->attempts);
    snprintf(partition, sizeof partition, "%d", (int)m->partition);
    snprintf(offset, sizeof offset, "%lld", (long long)m->offset);
    event_format_time(event_now_ms(), first, sizeof first);
#define HDR(n, val) h[nh++] = (struct kafka_header){ n, val, strlen(val) }
    HDR("source_topic", rd_kafka_topic_name(m->rkt));
    HDR("source_partition", partition);
    HDR("source_offset", offset);
    HDR("attempts", attempts);
    HDR("error_class", v->error_class);
    HDR("error_message", v->message); /* our words and libvips': no URL, no secret */
    HDR("first_failed_at", first);
#undef HDR
    /* the opaque only marks the message as one whose report is awaited */
    return kafka_produce(f->producer, f->topic, sha256, strlen(sha256), m->payload, m->len, h, nh, f, err,
                         errlen);
}

int render_failure_publish(struct render_failure *f, const rd_kafka_message_t *m, const char *sha256,
                           const struct render_verdict *v, volatile sig_atomic_t *stop, char *err,
                           size_t errlen)
{
    f->state = DELIVERY_PENDING;
    if (produce(f, m, sha256, v, err, errlen) != 0)
        return -1;
    /* 100 ms: a stop is seen quickly; librdkafka's message.timeout.ms
     * bounds the wait otherwise */
    while (f->state == DELIVERY_PENDING && !*stop)
        rd_kafka_poll(f->producer->rk, 100);
    switch (f->state) {
    case DELIVERY_OK:
        return 0;
    case DELIVERY_FAILED:
        errmsg_set(err, errlen, "dead letter to %s not delivered: %s", f->topic, f->delivery_error);
        return -1;
    case DELIVERY_PENDING:
        break;
    }
    errmsg_set(err, errlen, "stopped before the dead letter to %s was acknowledged", f->topic);
    return -1;
}

void render_failure_free(struct render_failure *f)
{
    char err[300];

    if (f == NULL)
        return;
    if (f->producer && rd_kafka_outq_len(f->producer->rk) > 0) {
        /* what is not acknowledged by now is published again after a
         * restart (its offset was not stored) */
        if (kafka_producer_flush(f->producer, SETTLE_TIMEOUT_MS, err, sizeof err) != 0)
            log_warn("event=publish_incomplete reason=\"%s\"", err);
    }
    if (f->producer) {
        f->producer->on_delivery = NULL;
        kafka_producer_free(f->producer);
    }
    free(f);
}
