#ifndef IMGCACHE_TOPICS_H
#define IMGCACHE_TOPICS_H
/* imgcache's five Kafka topics, created through librdkafka's Admin API
 * (`imgcache-producer topics`), so a cluster needs no kafka-topics.sh:
 *
 *   TOPIC        cleanup.policy=compact: the key is the source URL, so a
 *                replay from the beginning sees each URL ever needed once
 *   TOPIC-retry  cleanup.policy=delete, retention.ms (default 7 days)
 *   TOPIC-dlt    cleanup.policy=delete, retention.ms (default 30 days)
 *   STORED       cleanup.policy=compact: image-stored events keyed by sha256
 *                (IMGCACHE_STORED_TOPIC), read by imgcache-renderer
 *   STORED-dlt   cleanup.policy=delete, retention.ms as TOPIC-dlt: the
 *                renderer's dead letters (images it gave up)
 *
 * An existing topic is never changed: what differs from the plan is
 * reported (TOPICS_DIFF_* below).
 *
 * Two halves: pure parsing and planning (topics_options_parse,
 * topics_plan_build, topics_compare), unit-tested without a broker; and
 * topics_ensure(), which talks to the cluster.
 *
 * Ownership: struct topics_options owns its config_kv strings and
 * struct topics_plan owns everything in it; release them with
 * topics_options_release() and topics_plan_release() (safe on a zeroed or
 * half-filled struct). argv passed to topics_options_parse() is borrowed. */
#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "errmsg.h"

#define TOPICS_DEFAULT_PARTITIONS 12
#define TOPICS_DEFAULT_REPLICATION (-1) /* the broker's default.replication.factor */
#define TOPICS_DEFAULT_RETRY_RETENTION_MS (7LL * 86400000)
#define TOPICS_DEFAULT_DLT_RETENTION_MS (30LL * 86400000)
#define TOPICS_DEFAULT_TIMEOUT_MS 30000LL
#define TOPICS_COUNT 5
#define TOPICS_STORED 3        /* the plan's image-stored topic */
#define TOPICS_STORED_DLT 4    /* the renderer's dead letters */
#define TOPICS_MAX_EXTRA 32    /* --config items */

struct topics_options {
    long partitions;               /* >= 1 */
    long replication_factor;       /* >= 1, or -1: the broker's default */
    long long retry_retention_ms;
    long long dlt_retention_ms;
    long long timeout_ms;          /* bound on every request to the cluster */
    struct config_kv *extra;       /* --config KEY=VALUE for the main topic */
    size_t n_extra;
    int help;                      /* --help was given */
};

/* Parses the arguments after the word "topics" (argv[0] is the first of
 * them): --partitions N, --replication-factor N, --retry-retention DUR,
 * --dlt-retention DUR, --timeout DUR, --config KEY=VALUE (repeatable),
 * --help; each flag also as --flag=VALUE. Fills *opts from the defaults
 * first. -1 with a message naming the option on a bad or unknown one. */
int topics_options_parse(struct topics_options *opts, int argc, char **argv,
                         char *err, size_t errlen) MUST_CHECK;
void topics_options_release(struct topics_options *opts);
/* The command's --help text. */
void topics_usage(FILE *out);

struct topic_spec {
    char *name;
    struct config_kv *configs;     /* what the topic is created with */
    size_t n_configs;
    /* 1: a differing value of this topic's configs makes the command fail
     * (the main topic: without compaction a replay is not bounded) */
    int configs_required;
};

struct topics_plan {
    struct topic_spec topics[TOPICS_COUNT]; /* main, retry, dead letter, image-stored, its dead letter */
    long partitions;
    long replication_factor;
};

/* The topics for main topic `topic`: names (as the worker derives
 * them) and configs, and the image-stored topic `stored_topic`. An extra
 * config (the main topic's) may override cleanup.policy. */
int topics_plan_build(struct topics_plan *plan, const char *topic, const char *stored_topic,
                      const struct topics_options *opts, char *err, size_t errlen) MUST_CHECK;
void topics_plan_release(struct topics_plan *plan);

enum topics_diff {
    TOPICS_DIFF_NONE = 0,
    TOPICS_DIFF_NOTE = 1,      /* reported, exit status unchanged */
    TOPICS_DIFF_REQUIRED = 2,  /* reported, the command exits 1 */
};

/* Compares one config of an existing topic with the plan: `actual` is the
 * cluster's value (NULL: the cluster did not report it). Writes a line
 * "topic T: KEY is A, expected E (left unchanged)" into msg when it
 * differs. */
enum topics_diff topics_compare(const struct topic_spec *spec, size_t config_index, const char *actual,
                                char *msg, size_t msglen);

/* What topics_ensure() did. */
struct topics_result {
    int created;
    int existing;
    int notes;         /* differences reported as notes */
    int required;      /* differences that make the command fail */
    int bad_setting;   /* on -1: the cluster refused a setting (exit 2) */
};

/* Creates each topic of the plan that does not exist on the cluster of
 * cfg (KAFKA_BROKERS, -X properties) and reads back the configs of each
 * existing one. Prints one line per topic to out and each difference as a
 * "warning:" line to warn. A validate-only CreateTopics goes first, so a
 * refused setting creates none of the topics; a created topic counts once
 * the broker's metadata shows it. Every request (and each wait) is bounded
 * by timeout_ms.
 * -1 with a message (naming KAFKA_BROKERS when the cluster does not answer,
 * or the setting the cluster refused, with res->bad_setting = 1). */
int topics_ensure(const struct config *cfg, const struct topics_plan *plan, long long timeout_ms,
                  FILE *out, FILE *warn, struct topics_result *res,
                  char *err, size_t errlen) MUST_CHECK;

#endif
