#ifndef IMGCACHE_METRICS_H
#define IMGCACHE_METRICS_H
/* A small Prometheus registry: counters, gauges and histograms with fixed
 * buckets, rendered in the text exposition format 0.0.4.
 *
 * Labels: a metric has at most METRICS_MAX_LABELS label names, and every
 * label's values are declared when the metric is registered. Updates name a
 * series by the index of each value in those lists (metrics_series()), never
 * by a string, so no URL, host name or chat id can become a label value at
 * run time: the set of series is fixed up front.
 *
 * Threads: register every metric first (metrics_add() is not safe against a
 * concurrent render). After that, updates (any thread, typically the event
 * loop) and metrics_render() (the HTTP thread) run concurrently without a
 * lock: every value is a C11 atomic, so an update never waits for a scrape.
 * A render reads each value once; a histogram's _count is the sum of the
 * bucket counts it read, so a scrape is always self-consistent.
 *
 * Ownership: metrics_new() returns a registry freed by metrics_free(), which
 * also frees every metric registered in it. Names, help texts and label
 * values are copied at registration. metrics_render() returns a buffer the
 * caller frees with free(). */
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_LABELS 2
/* Per label, and per metric across its labels: keeps a scrape small. */
#define METRICS_MAX_VALUES 256
#define METRICS_MAX_SERIES 1024
#define METRICS_MAX_BUCKETS 32
/* The media type of what metrics_render() writes. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

/* What metrics_add() registers. Counters' names end in _total (checked).
 * sparse = 1: a series is rendered only once it was set (and not since
 * cleared): for per-partition lag, where a partition this process does not
 * own must not appear. Otherwise every series is rendered from the start (at
 * 0), so rate() sees the first increment. */
struct metric_def {
    const char *name;
    const char *help;
    enum metric_type type;
    const char *labels[METRICS_MAX_LABELS];             /* NULL: unused */
    const char *const *values[METRICS_MAX_LABELS];      /* NULL-terminated */
    const double *bounds;     /* histograms: upper bounds, increasing, finite */
    size_t nbounds;           /* +Inf is added */
    int sparse;
};

struct metrics;
struct metric;

int metrics_new(struct metrics **out, char *err, size_t errlen) __attribute__((warn_unused_result));
void metrics_free(struct metrics *m);

/* Registers def in m; *out (borrowed, lives as long as m) is the handle for
 * updates. Fails on a bad name, a repeated name, an invalid label, too many
 * values or series, or bounds that do not increase. */
int metrics_add(struct metrics *m, const struct metric_def *def, struct metric **out,
                char *err, size_t errlen) __attribute__((warn_unused_result));

/* The series for value index v0 of the first label and v1 of the second
 * (0 when the metric has fewer labels). An index out of range gives
 * METRICS_NO_SERIES, which every update ignores. */
#define METRICS_NO_SERIES ((size_t)-1)
size_t metrics_series(const struct metric *mt, size_t v0, size_t v1);
/* The index of value in the list of label `label` (0 or 1), or
 * METRICS_NO_SERIES: for callers that hold a value as text (a topic name). */
size_t metrics_value_index(const struct metric *mt, int label, const char *value);

/* The number of declared values of label `label` (1 for a label the metric
 * does not have, 0 when mt is NULL). */
size_t metrics_nvalues(const struct metric *mt, int label);

/* Updates. mt may be NULL (metrics are off) and series out of range: both
 * do nothing, so callers need no checks. A call of the wrong kind for the
 * metric's type does nothing either. */
void metric_inc(struct metric *mt, size_t series);                 /* counter +1 */
void metric_add(struct metric *mt, size_t series, uint64_t n);     /* counter +n */
void metric_set(struct metric *mt, size_t series, double v);       /* gauge */
void metric_gauge_add(struct metric *mt, size_t series, double delta);
void metric_observe(struct metric *mt, size_t series, double v);   /* histogram */
/* A sparse series no longer rendered (until set again). */
void metric_clear(struct metric *mt, size_t series);

/* Adds the standard process metrics to every render, read from /proc/self
 * at scrape time: process_resident_memory_bytes, process_open_fds,
 * process_max_fds, process_cpu_seconds_total. */
void metrics_add_process(struct metrics *m);

/* Registers <prefix>_build_info{version,commit} 1 (a gauge). */
int metrics_add_build_info(struct metrics *m, const char *prefix, const char *version,
                           const char *commit, char *err, size_t errlen) __attribute__((warn_unused_result));

/* The text format of every metric, in registration order, then the process
 * metrics. *out is NUL-terminated and the caller's to free(). */
int metrics_render(struct metrics *m, char **out, size_t *outlen, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Reads the value a series would render (counter or gauge; for histograms
 * the count): for tests and for an owner's own log lines. */
double metrics_value(const struct metric *mt, size_t series);

#endif
