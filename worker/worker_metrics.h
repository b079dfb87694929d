#ifndef IMGCACHE_WORKER_METRICS_H
#define IMGCACHE_WORKER_METRICS_H
/* The worker's metrics and its HTTP endpoint (IMGCACHE_METRICS_ADDR): the
 * only module that knows a metric's name, label or bucket. The others call
 * the small functions below at the points where they already count, so a
 * metric is renamed or relabelled here alone.
 *
 * Every function takes a NULL handle and then does nothing: with the
 * endpoint off (the default) there is no registry, no thread and no port,
 * and the callers need no checks. Updates are single atomic operations on
 * values registered at start-up (common/metrics.h): nothing allocates or
 * locks per event, and the HTTP thread never makes the loop wait.
 *
 * Threads: every function but worker_metrics_start/stop runs on the event
 * loop's thread (the librdkafka statistics callback too: it is served by
 * the consumer's poll).
 *
 * Ownership: worker_metrics_start() returns a handle freed (its thread
 * stopped, its registry freed) by worker_metrics_stop(); it borrows cfg. */
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "errmsg.h"

struct worker_metrics;

/* How a job ended: imgcache_jobs_total{outcome}. */
enum worker_outcome {
    OUTCOME_CACHED,           /* downloaded, stored and recorded */
    OUTCOME_ALREADY_CACHED,   /* the look-up found a cached_images row */
    OUTCOME_LEASE_WAIT,       /* another worker held the lease and settled it meanwhile */
    OUTCOME_FAILED_RETRYABLE, /* published to the retry topic */
    OUTCOME_FAILED_PERMANENT, /* dead-lettered, or a recent permanent failure found */
    OUTCOME_BAD_EVENT,        /* an event that does not decode, dead-lettered */
    OUTCOME_REVALIDATED,      /* a refresh of a cached URL checked its source (any result) */
};

/* Registers every metric and, when cfg->metrics_addr is not empty, starts
 * the endpoint (*out NULL when it is empty). retry_topic is the second
 * value of the topic label. Fails when the endpoint cannot listen (the
 * message names IMGCACHE_METRICS_ADDR). */
int worker_metrics_start(const struct config *cfg, const char *retry_topic, struct worker_metrics **out,
                         char *err, size_t errlen) MUST_CHECK;
void worker_metrics_stop(struct worker_metrics *m);
/* The port the endpoint listens on (useful after asking for port 0). */
unsigned worker_metrics_port(const struct worker_metrics *m);

/* The statistics interval the worker asks for when the endpoint is on and
 * the user set none (-X/IMGCACHE_KAFKA_CONFIG win). */
#define WORKER_METRICS_STATS_INTERVAL "5000"

/* Once per loop turn: /healthz's heartbeat, and the gauges that mirror
 * the loop's own counts (each one atomic store). */
struct worker_metrics_state {
    size_t in_flight;         /* downloads running */
    size_t lease_waiting;     /* jobs waiting for another worker's lease */
    size_t open_circuits;     /* breaker_open_count() */
    int redis_up, postgresql_up;
};
void worker_metrics_turn(struct worker_metrics *m, const struct worker_metrics_state *s);

/* An event read from the main (from_retry 0) or the retry topic. */
void worker_metrics_consumed(struct worker_metrics *m, int from_retry);
void worker_metrics_job_done(struct worker_metrics *m, enum worker_outcome outcome);
/* A finished revalidation, by its enum revalidation_result (revalidate.h):
 * imgcache_revalidations_total{result}. */
void worker_metrics_revalidation(struct worker_metrics *m, int result);
/* A failed attempt, by its error class ("http_503" counts as http_5xx,
 * a class not in the fixed list as other). */
void worker_metrics_failure(struct worker_metrics *m, const char *error_class);
/* The class label a failure counts under: error_class itself when it is in
 * the fixed list, http_4xx/http_5xx for http_4NN/http_5NN, else "other"
 * (a static string). */
const char *worker_metrics_class_label(const char *error_class);
/* A transfer libcurl finished, whatever its outcome. */
void worker_metrics_download(struct worker_metrics *m, long long duration_ms, long long bytes);
/* A batch the committer gave back: its images and the time since submit. */
void worker_metrics_commit(struct worker_metrics *m, size_t images, long long latency_ms);
/* The assignment changed: /readyz needs at least one partition. */
void worker_metrics_assigned(struct worker_metrics *m, int partitions);
/* librdkafka's statistics JSON (the stats callback): publishes the lag of
 * each assigned partition. unstored_from_start: auto.offset.reset is
 * earliest, so a partition with nothing stored yet lags by all it holds. */
void worker_metrics_kafka_stats(struct worker_metrics *m, const char *json, size_t len, int unstored_from_start);

#endif
