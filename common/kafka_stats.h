#ifndef IMGCACHE_KAFKA_STATS_H
#define IMGCACHE_KAFKA_STATS_H
/* Consumer lag of processed work, from the statistics JSON librdkafka hands
 * to its stats callback (statistics.interval.ms).
 *
 * The lag of a partition is its consumer_lag_stored: the log end (or last
 * stable) offset less the offset stored for commit, which the worker stores
 * only once a job is finished, so it counts work not yet done, not messages
 * not yet fetched. Partition -1 (librdkafka's internal "unassigned"
 * partition) and partitions no longer desired (revoked: another consumer
 * reports them) are skipped.
 *
 * librdkafka reports -1 for a partition with no offset stored or committed
 * yet (a new group). With unstored_from_start = 1 (the consumer's
 * auto.offset.reset is earliest) such a partition's lag is everything it
 * holds (end offset less lo_offset), so a new group's backlog is visible
 * before its first commit; with 0 it is skipped.
 *
 * kafka_stats_lag() is a pure function of its input. Ownership: *out is
 * the caller's to free() (one allocation). */
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

#define KAFKA_STATS_TOPIC_MAX 249       /* Kafka's limit on a topic name */
#define KAFKA_STATS_MAX_PARTITIONS 65536

struct kafka_lag {
    char topic[KAFKA_STATS_TOPIC_MAX + 1];
    int32_t partition;
    int64_t lag;
};

/* Parses json (len bytes, not necessarily NUL-terminated) into *out, *n
 * entries sorted by topic and partition (*out NULL when *n is 0). Fails on
 * JSON that is not librdkafka's statistics object. */
int kafka_stats_lag(const char *json, size_t len, int unstored_from_start, struct kafka_lag **out, size_t *n,
                    char *err, size_t errlen) __attribute__((warn_unused_result));

/* Publishes lags into gauge, a sparse gauge whose labels are topic then
 * partition (values "0", "1", ...): every listed partition's series is set,
 * every other series cleared (revoked partitions vanish). A partition or
 * topic the gauge did not declare is left out; the count of those is
 * returned, so the owner can log it once. */
size_t kafka_stats_publish(struct metric *gauge, const struct kafka_lag *lags, size_t n);

#endif
