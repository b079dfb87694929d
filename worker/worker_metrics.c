/* The worker's metrics (see worker_metrics.h). README's "Metrics and
 * health" lists them; a change here changes that table. */
#include "worker_metrics.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_stats.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "version.h"

/* Lag series per topic: partitions 0..255 (a topic with more reports the
 * rest as left out, logged once). METRICS_MAX_VALUES bounds it. */
#define LAG_PARTITIONS 256
_Static_assert(LAG_PARTITIONS <= METRICS_MAX_VALUES, "one label value per partition");

/* /readyz's conditions, in the order of their indexes */
enum { CHECK_ASSIGNMENT, CHECK_POSTGRESQL };
static const char *const checks[] = { "no partition assignment", "PostgreSQL unreachable", NULL };

static const char *const outcomes[] = { "cached", "already_cached", "lease_wait", "failed_retryable",
                                        "failed_permanent", "bad_event", "revalidated", NULL };
/* by enum revalidation_result */
static const char *const revalidation_results[] = { "not_modified", "same", "changed", "failed", NULL };
/* failure classes as fetch_judge, download.c and failure.c name them;
 * http_NNN folds into its hundred, anything else into "other" */
static const char *const classes[] = {
    "timeout", "network", "truncated", "too_large", "too_many_pixels", "not_image", "redirects",
    "refused_address", "bad_url", "protocol", "auth_refused", "file_missing", "file_refused", "file_error",
    "storage", "database", "config", "internal", "http_4xx", "http_5xx", "other", NULL,
};
enum { DEPENDENCY_REDIS, DEPENDENCY_POSTGRESQL };
static const char *const dependencies[] = { "redis", "postgresql", NULL };
static const double download_bounds[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };
static const double batch_bounds[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500 };
static const double commit_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

struct worker_metrics {
    struct metrics *registry;
    struct metrics_http *http;
    struct metric *consumed, *jobs, *failures, *bytes, *download, *batch, *commit_latency, *in_flight,
        *lease_waiting, *open_circuits, *dependency_up, *lag, *revalidations;
    int assigned, postgresql_up;  /* as last told to /readyz: -1 before */
    int lag_left_out_logged;
    /* label values, copied by metrics_add() but kept for its arguments */
    const char *topics[3];
    char partition_text[LAG_PARTITIONS][4];
    const char *partitions[LAG_PARTITIONS + 1];
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static int register_all(struct worker_metrics *m, char *err, size_t errlen)
{
    const struct metric_def defs[] = {
        { .name = "imgcache_events_consumed_total", .help = "Events read from Kafka, by topic.",
          .type = METRIC_COUNTER, .labels = { "topic" }, .values = { m->topics } },
        { .name = "imgcache_jobs_total", .help = "Jobs finished, by how.", .type = METRIC_COUNTER,
          .labels = { "outcome" }, .values = { outcomes } },
        { .name = "imgcache_failures_total", .help = "Failed attempts, by error class.", .type = METRIC_COUNTER,
          .labels = { "class" }, .values = { classes } },
        { .name = "imgcache_downloaded_bytes_total", .help = "Bytes of image bodies downloaded.",
          .type = METRIC_COUNTER },
        { .name = "imgcache_download_duration_seconds", .help = "Time of one download.",
          .type = METRIC_HISTOGRAM, .bounds = download_bounds, .nbounds = N_OF(download_bounds) },
        { .name = "imgcache_commit_batch_images", .help = "Images per committer transaction.",
          .type = METRIC_HISTOGRAM, .bounds = batch_bounds, .nbounds = N_OF(batch_bounds) },
        { .name = "imgcache_commit_latency_seconds", .help = "Time from submit to committed.",
          .type = METRIC_HISTOGRAM, .bounds = commit_bounds, .nbounds = N_OF(commit_bounds) },
        { .name = "imgcache_downloads_in_flight", .help = "Downloads running now.", .type = METRIC_GAUGE },
        { .name = "imgcache_lease_waiting_jobs", .help = "Jobs waiting for another worker's lease.",
          .type = METRIC_GAUGE },
        { .name = "imgcache_open_circuits", .help = "Origins whose circuit breaker is open or half-open.",
          .type = METRIC_GAUGE },
        { .name = "imgcache_dependency_up", .help = "1 when the last use of the dependency succeeded.",
          .type = METRIC_GAUGE, .labels = { "dependency" }, .values = { dependencies } },
        { .name = "imgcache_consumer_lag",
          .help = "Messages of an assigned partition not yet processed (librdkafka's consumer_lag_stored).",
          .type = METRIC_GAUGE, .labels = { "topic", "partition" }, .values = { m->topics, m->partitions },
          .sparse = 1 },
        { .name = "imgcache_revalidations_total",
          .help = "Refreshes of cached images that checked their source, by result.",
          .type = METRIC_COUNTER, .labels = { "result" }, .values = { revalidation_results } },
    };
    struct metric **handles[] = { &m->consumed, &m->jobs, &m->failures, &m->bytes, &m->download, &m->batch,
                                  &m->commit_latency, &m->in_flight, &m->lease_waiting, &m->open_circuits,
                                  &m->dependency_up, &m->lag, &m->revalidations };
    _Static_assert(N_OF(defs) == N_OF(handles), "one handle per metric");

    for (size_t i = 0; i < N_OF(defs); i++)
        if (metrics_add(m->registry, &defs[i], handles[i], err, errlen) != 0)
            return -1;
    metrics_add_process(m->registry);
    return metrics_add_build_info(m->registry, "imgcache", IMGCACHE_VERSION, IMGCACHE_COMMIT, err, errlen);
}

int worker_metrics_start(const struct config *cfg, const char *retry_topic, struct worker_metrics **out,
                         char *err, size_t errlen)
{
    struct metrics_http_options opt = { .checks = checks };
    struct worker_metrics *m = NULL;
    char why[512];
    int rc = -1;

    *out = NULL;
    if (cfg->metrics_addr == NULL || cfg->metrics_addr[0] == '\0')
        return 0;
    m = calloc(1, sizeof *m);
    if (m == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    m->assigned = m->postgresql_up = -1;
    m->topics[0] = cfg->topic;
    m->topics[1] = retry_topic;
    for (int i = 0; i < LAG_PARTITIONS; i++) {
        snprintf(m->partition_text[i], sizeof m->partition_text[i], "%d", i);
        m->partitions[i] = m->partition_text[i];
    }
    if (metrics_new(&m->registry, err, errlen) != 0 || register_all(m, err, errlen) != 0)
        goto out;
    if (metrics_http_start(cfg->metrics_addr, m->registry, &opt, &m->http, why, sizeof why) != 0) {
        errmsg_set(err, errlen, "IMGCACHE_METRICS_ADDR (--metrics-addr) %s: %s", cfg->metrics_addr, why);
        goto out;
    }
    log_info("event=metrics_listening addr=%s port=%u", cfg->metrics_addr, worker_metrics_port(m));
    *out = m;
    m = NULL;
    rc = 0;
out:
    worker_metrics_stop(m);
    return rc;
}

void worker_metrics_stop(struct worker_metrics *m)
{
    if (m == NULL)
        return;
    metrics_http_stop(m->http); /* first: its thread renders the registry */
    metrics_free(m->registry);
    free(m);
}

unsigned worker_metrics_port(const struct worker_metrics *m)
{
    return m ? metrics_http_port(m->http) : 0;
}

void worker_metrics_turn(struct worker_metrics *m, const struct worker_metrics_state *s)
{
    if (m == NULL)
        return;
    metrics_http_heartbeat(m->http);
    metric_set(m->in_flight, 0, (double)s->in_flight);
    metric_set(m->lease_waiting, 0, (double)s->lease_waiting);
    metric_set(m->open_circuits, 0, (double)s->open_circuits);
    metric_set(m->dependency_up, DEPENDENCY_REDIS, s->redis_up ? 1 : 0);
    metric_set(m->dependency_up, DEPENDENCY_POSTGRESQL, s->postgresql_up ? 1 : 0);
    if (s->postgresql_up != m->postgresql_up) {
        metrics_http_set_check(m->http, CHECK_POSTGRESQL, s->postgresql_up);
        m->postgresql_up = s->postgresql_up;
    }
}

void worker_metrics_consumed(struct worker_metrics *m, int from_retry)
{
    if (m)
        metric_inc(m->consumed, from_retry ? 1 : 0);
}

void worker_metrics_job_done(struct worker_metrics *m, enum worker_outcome outcome)
{
    if (m)
        metric_inc(m->jobs, (size_t)outcome);
}

const char *worker_metrics_class_label(const char *error_class)
{
    if (error_class == NULL)
        return "other";
    if (strncmp(error_class, "http_", 5) == 0 && strlen(error_class) == 8 &&
        (error_class[5] == '4' || error_class[5] == '5') && isdigit((unsigned char)error_class[6]) &&
        isdigit((unsigned char)error_class[7]))
        return error_class[5] == '4' ? "http_4xx" : "http_5xx";
    for (size_t i = 0; classes[i] != NULL; i++)
        if (strcmp(classes[i], error_class) == 0)
            return classes[i];
    return "other";
}

void worker_metrics_failure(struct worker_metrics *m, const char *error_class)
{
    /* a short scan of a fixed list, only on the failure path */
    if (m)
        metric_inc(m->failures, metrics_value_index(m->failures, 0, worker_metrics_class_label(error_class)));
}

void worker_metrics_revalidation(struct worker_metrics *m, int result)
{
    if (m && result >= 0 && result < (int)N_OF(revalidation_results) - 1)
        metric_inc(m->revalidations, (size_t)result);
}

void worker_metrics_download(struct worker_metrics *m, long long duration_ms, long long bytes)
{
    if (m == NULL)
        return;
    metric_observe(m->download, 0, (double)duration_ms / 1000.0);
    if (bytes > 0)
        metric_add(m->bytes, 0, (uint64_t)bytes);
}

void worker_metrics_commit(struct worker_metrics *m, size_t images, long long latency_ms)
{
    if (m == NULL)
        return;
    metric_observe(m->batch, 0, (double)images);
    metric_observe(m->commit_latency, 0, (double)latency_ms / 1000.0);
}

void worker_metrics_assigned(struct worker_metrics *m, int partitions)
{
    if (m == NULL || (partitions > 0) == m->assigned)
        return;
    m->assigned = partitions > 0;
    metrics_http_set_check(m->http, CHECK_ASSIGNMENT, m->assigned);
}

void worker_metrics_kafka_stats(struct worker_metrics *m, const char *json, size_t len, int unstored_from_start)
{
    struct kafka_lag *lags = NULL;
    size_t n = 0, left_out;
    char err[256];

    if (m == NULL)
        return;
    if (kafka_stats_lag(json, len, unstored_from_start, &lags, &n, err, sizeof err) != 0) {
        log_debug("event=kafka_stats_unreadable reason=\"%s\"", err);
        return;
    }
    left_out = kafka_stats_publish(m->lag, lags, n);
    free(lags);
    if (left_out > 0 && !m->lag_left_out_logged) {
        log_warn("event=lag_partitions_left_out count=%zu reason=\"imgcache_consumer_lag has series for "
                 "partitions 0 to %d only\"", left_out, LAG_PARTITIONS - 1);
        m->lag_left_out_logged = 1;
    }
}
