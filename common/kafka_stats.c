#include "kafka_stats.h"

#include "errmsg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An integer member of obj, or fallback when absent or not an integer. */
static json_int_t int_member(const json_t *obj, const char *key, json_int_t fallback)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

/* The lag of one partition object, or -1 when it has none to report. */
static int64_t partition_lag(const json_t *p, int unstored_from_start)
{
    json_int_t lag = int_member(p, "consumer_lag_stored", -1);
    json_int_t end, lo;

    if (!json_is_true(json_object_get(p, "desired")))
        return -1;
    if (lag >= 0 || !unstored_from_start)
        return lag;
    /* nothing stored or committed yet: the whole partition waits */
    if (int_member(p, "stored_offset", -1) >= 0 || int_member(p, "committed_offset", -1) >= 0)
        return -1;
    end = int_member(p, "ls_offset", -1);
    if (end < 0)
        end = int_member(p, "hi_offset", -1);
    lo = int_member(p, "lo_offset", -1);
    if (end < 0 || lo < 0 || end < lo)
        return -1;
    return end - lo;
}

static int by_topic_partition(const void *a, const void *b)
{
    const struct kafka_lag *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);

    if (c != 0)
        return c;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

/* Appends the lags of one topic's partitions to lags (room for max). */
static int add_topic(const char *topic, const json_t *t, int unstored_from_start, struct kafka_lag *lags,
                     size_t max, size_t *n, char *err, size_t errlen)
{
    const json_t *parts = json_object_get(t, "partitions");
    const char *key;
    json_t *p;

    if (!json_is_object(parts))
        return 0;       /* a topic known from metadata only */
    json_object_foreach((json_t *)parts, key, p) {
        json_int_t partition = int_member(p, "partition", -1);
        int64_t lag;

        if (partition < 0 || partition > INT32_MAX)
            continue;   /* -1: librdkafka's unassigned partition */
        lag = partition_lag(p, unstored_from_start);
        if (lag < 0)
            continue;
        if (*n >= max) {
            errmsg_set(err, errlen, "kafka statistics: more than %d partitions", KAFKA_STATS_MAX_PARTITIONS);
            return -1;
        }
        snprintf(lags[*n].topic, sizeof lags[*n].topic, "%s", topic);
        lags[*n].partition = (int32_t)partition;
        lags[*n].lag = lag;
        (*n)++;
    }
    return 0;
}

static size_t count_partitions(const json_t *topics)
{
    const char *key;
    json_t *t;
    size_t total = 0;

    json_object_foreach((json_t *)topics, key, t)
        total += json_object_size(json_object_get(t, "partitions"));
    return total;
}

int kafka_stats_lag(const char *json, size_t len, int unstored_from_start, struct kafka_lag **out, size_t *n,
                    char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    const json_t *topics = json_object_get(root, "topics");
    struct kafka_lag *lags = NULL;
    size_t count = 0, max;
    const char *name;
    json_t *t;
    int rc = -1;

    *out = NULL;
    *n = 0;
    if (root == NULL) {
        errmsg_set(err, errlen, "kafka statistics: not JSON: %s at line %d", jerr.text, jerr.line);
        goto out;
    }
    if (!json_is_object(topics)) {
        errmsg_set(err, errlen, "kafka statistics: no \"topics\" object");
        goto out;
    }
    max = count_partitions(topics);
    if (max > KAFKA_STATS_MAX_PARTITIONS)
        max = KAFKA_STATS_MAX_PARTITIONS;
    if (max > 0 && (lags = calloc(max, sizeof *lags)) == NULL) {
        errmsg_set(err, errlen, "kafka statistics: out of memory");
        goto out;
    }
    json_object_foreach((json_t *)topics, name, t) {
        if (strlen(name) > KAFKA_STATS_TOPIC_MAX)
            continue;
        if (add_topic(name, t, unstored_from_start, lags, max, &count, err, errlen) != 0)
            goto out;
    }
    if (count > 0)
        qsort(lags, count, sizeof *lags, by_topic_partition);
    *out = count > 0 ? lags : NULL;
    *n = count;
    if (count > 0)
        lags = NULL;
    rc = 0;
out:
    free(lags);
    json_decref(root);
    return rc;
}

size_t kafka_stats_publish(struct metric *gauge, const struct kafka_lag *lags, size_t n)
{
    unsigned char seen[METRICS_MAX_SERIES] = { 0 };
    size_t ntopics = metrics_nvalues(gauge, 0), nparts = metrics_nvalues(gauge, 1);
    size_t left_out = 0;
    char label[16];

    if (gauge == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        size_t t = metrics_value_index(gauge, 0, lags[i].topic);
        size_t s;

        snprintf(label, sizeof label, "%d", (int)lags[i].partition);
        s = metrics_series(gauge, t, metrics_value_index(gauge, 1, label));
        if (s == METRICS_NO_SERIES || s >= METRICS_MAX_SERIES) {
            left_out++;
            continue;
        }
        metric_set(gauge, s, (double)lags[i].lag);
        seen[s] = 1;
    }
    for (size_t t = 0; t < ntopics; t++) {
        for (size_t p = 0; p < nparts; p++) {
            size_t s = metrics_series(gauge, t, p);
            if (s < METRICS_MAX_SERIES && !seen[s])
                metric_clear(gauge, s);
        }
    }
    return left_out;
}
