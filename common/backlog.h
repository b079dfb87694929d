#ifndef IMGCACHE_BACKLOG_H
#define IMGCACHE_BACKLOG_H
/* The Kafka side of `imgcache-producer stats`: how many events each of
 * imgcache's topics holds, and how many of them each consumer group has
 * not consumed yet (its committed offsets against the end offsets).
 *
 * One short-lived client that never joins a group reads it all: metadata,
 * rd_kafka_query_watermark_offsets() per partition, the Admin API's
 * ListConsumerGroups (every group of the cluster) and
 * ListConsumerGroupOffsets (one group at a time, as librdkafka 2.0 allows).
 * A group is shown when it has committed offsets on TOPIC, TOPIC-retry or
 * STORED (IMGCACHE_STORED_TOPIC, the renderers' groups); the workers' own
 * group (IMGCACHE_GROUP) always is. A group's backlog counts the topics it
 * reads: TOPIC and TOPIC-retry when it is IMGCACHE_GROUP or committed on
 * either, STORED when it committed there. Nobody consumes TOPIC-dlt and
 * STORED-dlt: they have a size (dead letters), not a backlog.
 *
 * A partition the group never committed counts from its first offset, as
 * the workers start there (auto.offset.reset=earliest).
 *
 * Ownership: backlog_read() fills a struct backlog the caller frees with
 * backlog_release() (also after a failure). */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum {
    BACKLOG_MAIN = 0,       /* TOPIC (image-needed) */
    BACKLOG_RETRY = 1,      /* TOPIC-retry */
    BACKLOG_STORED = 2,     /* STORED (image-stored) */
    BACKLOG_DLT = 3,        /* TOPIC-dlt */
    BACKLOG_STORED_DLT = 4, /* STORED-dlt, the renderer's dead letters */
    BACKLOG_TOPICS = 5
};

/* Groups consume the topics before BACKLOG_DLT. */
#define BACKLOG_CONSUMED_TOPICS 3

struct backlog_topic {
    char *name;              /* owned */
    int exists;              /* 0: the cluster does not have it */
    int n_partitions;
    int64_t *start, *end;    /* per partition: first and next offset; owned */
    long long events;        /* sum of end - start */
};

struct backlog_group {
    char *id;                                   /* owned */
    int64_t *committed[BACKLOG_CONSUMED_TOPICS]; /* per partition, -1 when none; owned */
    int reads[BACKLOG_CONSUMED_TOPICS];          /* 1: the group reads this topic (see above) */
    long long backlog[BACKLOG_CONSUMED_TOPICS];  /* events not consumed, per topic read */
    long long total;                             /* the sum of backlog[] */
};

struct backlog {
    struct backlog_topic topics[BACKLOG_TOPICS];
    struct backlog_group *groups; /* owned; the configured group first */
    size_t n_groups;
    /* Why other groups may be missing (the cluster would not list its
     * groups), or "" when every group was looked at. */
    char groups_note[256];
};

/* Reads the topics' offsets and every group's backlog, each request
 * waiting at most timeout_ms. -1 with "Kafka (KAFKA_BROKERS): ..." when the
 * cluster cannot be reached or refuses; what was read before stays in out. */
int backlog_read(const struct config *cfg, int timeout_ms, struct backlog *out, char *err,
                 size_t errlen) __attribute__((warn_unused_result));
void backlog_release(struct backlog *b);

#endif
