#ifndef IMGCACHE_KAFKA_H
#define IMGCACHE_KAFKA_H
/* librdkafka set-up shared by the programs: consumer and producer configuration
 * from struct config (bootstrap servers, then IMGCACHE_KAFKA_CONFIG and -X
 * properties, which win), an idempotent producer with checked delivery
 * reports, and the configuration check at start-up. Nothing here knows
 * the development broker: the same code runs against a real Kafka.
 *
 * Ownership: kafka_producer_new() returns a producer freed by
 * kafka_producer_free() (which flushes nothing: call kafka_producer_flush()
 * first). kafka_conf_apply() only sets properties: the rd_kafka_conf_t stays
 * the caller's until rd_kafka_new() succeeds with it. */
#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "errmsg.h"

/* Sets bootstrap.servers, client.id and every cfg->kafka_props entry. A
 * refused property is named in err, never with the value of a secret
 * (config_kafka_key_is_secret()). */
int kafka_conf_apply(rd_kafka_conf_t *conf, const struct config *cfg, const char *client_id,
                     char *err, size_t errlen) MUST_CHECK;

/* kafka_conf_apply() on a scratch configuration, for the configuration
 * check at start-up: a property librdkafka refuses is a configuration
 * error before anything connects. */
int kafka_conf_check(const struct config *cfg, char *err, size_t errlen) MUST_CHECK;

/* Routes librdkafka's log lines through log.h (configuration warnings at
 * debug level). */
void kafka_conf_set_logger(rd_kafka_conf_t *conf);

/* --- consumer --- */

/* A new consumer configuration with what every imgcache consumer group
 * shares: cooperative-sticky assignment; offsets stored by the program
 * once an event's work is recorded, committed each second; a new group
 * starts from the earliest event (a replay or a new preset depends on
 * it); librdkafka's prefetch bounded to queued_kbytes. group_setting names
 * the setting in errors. Returns KAFKA_ERR_GROUP for a group.id librdkafka
 * refuses (a setting to fix). On success *out is the caller's (to
 * rd_kafka_new, or rd_kafka_conf_destroy). */
#define KAFKA_ERR_GROUP (-2)
int kafka_consumer_conf_new(const char *group, const char *group_setting, int queued_kbytes,
                            rd_kafka_conf_t **out, char *err, size_t errlen) MUST_CHECK;

/* --- producer --- */

struct kafka_header {
    const char *name;
    const void *value;
    size_t len;
};

/* Called from kafka_producer_poll()/flush() for each message produced with a
 * non-NULL opaque: ok = 1 when the broker acknowledged it. */
typedef void (*kafka_delivery_fn)(void *opaque, int ok, const char *errstr, void *ctx);

struct kafka_producer {
    rd_kafka_t *rk;
    long long queued;      /* produce() calls accepted */
    long long delivered;   /* acknowledged by the broker */
    long long failed;      /* delivery report with an error */
    char last_error[256];  /* of the last failed delivery */
    kafka_delivery_fn on_delivery; /* may be NULL */
    void *on_delivery_ctx;
};

/* enable.idempotence=true, partitioner=murmur2_random (the Java client's
 * partition for the same key), acks=all. */
int kafka_producer_new(const struct config *cfg, const char *client_id,
                       struct kafka_producer **out, char *err, size_t errlen) MUST_CHECK;
/* Fetches the topic's metadata now (at most timeout_ms), so the first
 * message does not wait for librdkafka's once-a-second scan of topics it
 * has not seen. A cluster that refuses connections (a broker restarting) is
 * asked again until timeout_ms. -1 with a message when the topic is unknown
 * or the cluster does not answer in time. */
int kafka_producer_prepare(struct kafka_producer *p, const char *topic, int timeout_ms,
                           char *err, size_t errlen) MUST_CHECK;
/* Copies key, value and headers. When the local queue is full it serves
 * delivery reports and waits, so it only fails for real errors. */
int kafka_produce(struct kafka_producer *p, const char *topic, const void *key, size_t keylen,
                  const void *value, size_t valuelen, const struct kafka_header *headers,
                  size_t nheaders, void *opaque, char *err, size_t errlen) MUST_CHECK;
/* Serves delivery reports without waiting. */
void kafka_producer_poll(struct kafka_producer *p);
/* Waits up to timeout_ms for every queued message; -1 when some were not
 * delivered (failed > 0 or still queued), with a message. */
int kafka_producer_flush(struct kafka_producer *p, int timeout_ms, char *err, size_t errlen) MUST_CHECK;
void kafka_producer_free(struct kafka_producer *p);

#endif
