#include "kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errmsg.h"
#include "log.h"

int kafka_conf_apply(rd_kafka_conf_t *conf, const struct config *cfg, const char *client_id,
                     char *err, size_t errlen)
{
    char errstr[512];

    if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        errmsg_set(err, errlen, "KAFKA_BROKERS: %s", errstr);
        return -1;
    }
    if (client_id && rd_kafka_conf_set(conf, "client.id", client_id, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        errmsg_set(err, errlen, "client.id: %s", errstr);
        return -1;
    }
    for (size_t i = 0; i < cfg->n_kafka_props; i++) {
        const struct config_kv *kv = &cfg->kafka_props[i];
        rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, kv->key, kv->value, errstr, sizeof errstr);

        if (res == RD_KAFKA_CONF_OK)
            continue;
        /* an unknown key right after a secret may be the rest of that
         * secret, cut at a comma; librdkafka's message may quote the value
         * ("Invalid value ... for configuration property") */
        if (res == RD_KAFKA_CONF_UNKNOWN && i > 0 && config_kafka_key_is_secret(cfg->kafka_props[i - 1].key)) {
            const char *prev = cfg->kafka_props[i - 1].key;
            errmsg_set(err, errlen, "librdkafka property #%zu, after %s, is unknown (not shown: it may be the "
                       "rest of %s's value; a comma inside a value is written \\,)", i + 1, prev, prev);
        } else if (config_kafka_key_is_secret(kv->key)) {
            const char *keep[] = { kv->key, NULL };
            char redacted[512];
            errmsg_redact_quoted(redacted, sizeof redacted, errstr, keep);
            errmsg_set(err, errlen, "librdkafka property %s: %s", kv->key, redacted);
        } else {
            errmsg_set(err, errlen, "librdkafka property %s: %s", kv->key, errstr);
        }
        return -1;
    }
    return 0;
}

int kafka_conf_check(const struct config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc;

    if (conf == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    rc = kafka_conf_apply(conf, cfg, NULL, err, errlen);
    rd_kafka_conf_destroy(conf);
    return rc;
}

static void delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    struct kafka_producer *p = opaque;
    (void)rk;
    if (msg->err) {
        p->failed++;
        snprintf(p->last_error, sizeof p->last_error, "%s", rd_kafka_err2str(msg->err));
    } else {
        p->delivered++;
    }
    if (p->on_delivery && msg->_private)
        p->on_delivery(msg->_private, msg->err == 0, msg->err ? rd_kafka_err2str(msg->err) : NULL,
                       p->on_delivery_ctx);
}

static void error_cb(rd_kafka_t *rk, int errcode, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    /* librdkafka reconnects by itself; transport errors are information */
    if (errcode == RD_KAFKA_RESP_ERR__FATAL)
        log_error("event=kafka_fatal reason=\"%s\"", reason);
    else
        log_debug("event=kafka_error code=%s reason=\"%s\"", rd_kafka_err2name(errcode), reason);
}

/* librdkafka's own log lines, in our format. Configuration warnings about
 * consumer-only properties (from a -X shared with the consumer) are noise. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (strcmp(fac, "CONFWARN") == 0 || level > 4)
        log_debug("event=librdkafka facility=%s msg=\"%s\"", fac, buf);
    else if (level > 3)
        log_warn("event=librdkafka facility=%s msg=\"%s\"", fac, buf);
    else
        log_error("event=librdkafka facility=%s msg=\"%s\"", fac, buf);
}

int kafka_consumer_conf_new(const char *group, const char *group_setting, int queued_kbytes,
                            rd_kafka_conf_t **out, char *err, size_t errlen)
{
    static const char *const shared[][2] = {
        { "partition.assignment.strategy", "cooperative-sticky" },
        { "enable.auto.commit", "true" },
        { "enable.auto.offset.store", "false" },
        { "auto.commit.interval.ms", "1000" },
        { "auto.offset.reset", "earliest" },
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512], kbytes[32];

    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++)
        rd_kafka_conf_set(conf, shared[i][0], shared[i][1], errstr, sizeof errstr);
    snprintf(kbytes, sizeof kbytes, "%d", queued_kbytes);
    rd_kafka_conf_set(conf, "queued.max.messages.kbytes", kbytes, errstr, sizeof errstr);
    if (rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        errmsg_set(err, errlen, "%s: %s", group_setting, errstr);
        rd_kafka_conf_destroy(conf);
        return KAFKA_ERR_GROUP;
    }
    *out = conf;
    return 0;
}

void kafka_conf_set_logger(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_log_cb(conf, log_cb);
}

int kafka_producer_new(const struct config *cfg, const char *client_id,
                       struct kafka_producer **out, char *err, size_t errlen)
{
    static const char *const defaults[][2] = {
        { "enable.idempotence", "true" },
        { "acks", "all" },
        { "partitioner", "murmur2_random" },
        { "linger.ms", "5" },
        { "message.timeout.ms", "120000" },
    };
    struct kafka_producer *p = calloc(1, sizeof *p);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    int rc = -1;

    *out = NULL;
    if (p == NULL || conf == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            errmsg_set(err, errlen, "%s: %s", defaults[i][0], errstr);
            goto out;
        }
    }
    if (kafka_conf_apply(conf, cfg, client_id, err, errlen) != 0)
        goto out;
    rd_kafka_conf_set_dr_msg_cb(conf, delivery_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (p->rk == NULL) {
        errmsg_set(err, errlen, "kafka producer: %s", errstr);
        goto out;
    }
    conf = NULL; /* owned by p->rk now */
    *out = p;
    p = NULL;
    rc = 0;
out:
    if (conf)
        rd_kafka_conf_destroy(conf);
    free(p);
    return rc;
}

/* how often an unreachable cluster is asked again for metadata */
#define KAFKA_METADATA_RETRY_MS 250

static long long kafka_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kafka_producer_prepare(struct kafka_producer *p, const char *topic, int timeout_ms,
                           char *err, size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e;
    int rc = -1;

    if (rkt == NULL) {
        errmsg_set(err, errlen, "topic '%s': %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    /* a broker that is down for a moment (restarting) answers "transport
     * failure" at once: ask again until timeout_ms, so a short outage
     * delays the producer instead of failing it */
    for (long long end = kafka_mono_ms() + timeout_ms;;) {
        int left = (int)(end - kafka_mono_ms());
        e = rd_kafka_metadata(p->rk, 0, rkt, &md, left > 0 ? left : 1);
        if ((e != RD_KAFKA_RESP_ERR__TRANSPORT && e != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) ||
            kafka_mono_ms() + KAFKA_METADATA_RETRY_MS >= end)
            break;
        usleep(KAFKA_METADATA_RETRY_MS * 1000);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        errmsg_set(err, errlen, "metadata of topic '%s': %s (is KAFKA_BROKERS right?)", topic,
                   rd_kafka_err2str(e));
        goto out;
    }
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        errmsg_set(err, errlen, "topic '%s': %s", topic,
                   md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not in the cluster's metadata");
        goto out;
    }
    rc = 0;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

int kafka_produce(struct kafka_producer *p, const char *topic, const void *key, size_t keylen,
                  const void *value, size_t valuelen, const struct kafka_header *headers,
                  size_t nheaders, void *opaque, char *err, size_t errlen)
{
    for (;;) {
        rd_kafka_headers_t *hdrs = NULL;
        rd_kafka_resp_err_t e;

        if (nheaders > 0) {
            hdrs = rd_kafka_headers_new(nheaders);
            for (size_t i = 0; i < nheaders; i++)
                rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value, (ssize_t)headers[i].len);
        }
        if (hdrs)
            e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_KEY((void *)key, keylen),
                                  RD_KAFKA_V_VALUE((void *)value, valuelen),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_HEADERS(hdrs),
                                  RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic),
                                  RD_KAFKA_V_KEY((void *)key, keylen),
                                  RD_KAFKA_V_VALUE((void *)value, valuelen),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            p->queued++;
            return 0; /* headers are owned by the message now */
        }
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            errmsg_set(err, errlen, "produce to '%s': %s", topic, rd_kafka_err2str(e));
            return -1;
        }
        /* local queue full: serve delivery reports until there is room */
        rd_kafka_poll(p->rk, 100);
    }
}

void kafka_producer_poll(struct kafka_producer *p)
{
    rd_kafka_poll(p->rk, 0);
}

int kafka_producer_flush(struct kafka_producer *p, int timeout_ms, char *err, size_t errlen)
{
    rd_kafka_flush(p->rk, timeout_ms);
    rd_kafka_poll(p->rk, 0);
    int pending = rd_kafka_outq_len(p->rk);
    if (p->failed > 0) {
        errmsg_set(err, errlen, "%lld of %lld messages were not delivered: %s", p->failed, p->queued,
                   p->last_error);
        return -1;
    }
    if (pending > 0) {
        errmsg_set(err, errlen, "%d messages still undelivered after %d ms (is the broker reachable?)",
                   pending, timeout_ms);
        return -1;
    }
    return 0;
}

void kafka_producer_free(struct kafka_producer *p)
{
    if (p == NULL)
        return;
    if (p->rk)
        rd_kafka_destroy(p->rk);
    free(p);
}
