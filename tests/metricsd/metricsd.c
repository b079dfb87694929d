/* imgcache-metricsd: a stand-in worker for the metrics endpoint's tests
 * (tests/integration/70-metrics.sh). It registers metrics named as the
 * worker's, serves them with common/metrics_http, and runs a loop that
 * turns about once a millisecond, as the worker's event loop does, so a
 * test can see whether a hostile scraper slows the loop.
 *
 * The loop counts its turns (imgcache_metricsd_loop_turns_total) and also
 * writes the count to --turns-file, a channel that does not go through the
 * HTTP thread. For its first --jobs turns it records one cached job each
 * (imgcache_jobs_total{outcome="cached"}, then constant: a value to find in
 * Prometheus), with a download time and bytes, while the lag of
 * image-needed partition 0 falls from --jobs to 0.
 *
 * SIGUSR1 pauses the loop (no turns, no heartbeats: /healthz goes 503),
 * SIGUSR2 resumes it, SIGTERM or SIGINT stops the program. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errmsg.h"
#include "kafka_stats.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "version.h"

#define PROGRAM "imgcache-metricsd"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t paused;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        paused = 1;
    else if (sig == SIGUSR2)
        paused = 0;
    else
        stop_requested = 1;
}

struct options {
    const char *addr;
    const char *port_file;
    const char *turns_file;
    long jobs;
    long long stale_ms;
};

struct sample {
    struct metrics *m;
    struct metric *turns;
    struct metric *jobs;
    struct metric *bytes;
    struct metric *download;
    struct metric *in_flight;
    struct metric *lag;
};

static const char usage[] =
    "usage: " PROGRAM " [--metrics-addr HOST:PORT] [--port-file FILE] [--turns-file FILE]\n"
    "                         [--jobs N] [--stale-ms MS]\n"
    "A stand-in worker FOR TESTS: serves /metrics, /healthz and /readyz on HOST:PORT\n"
    "(default 127.0.0.1:0, any free port; the port bound is written to FILE) while a\n"
    "loop turns every millisecond. SIGUSR1 pauses the loop, SIGUSR2 resumes it.\n";

static int parse_options(int argc, char **argv, struct options *o)
{
    *o = (struct options){ .addr = "127.0.0.1:0", .jobs = 500, .stale_ms = 2000 };
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;

        if (strcmp(argv[i], "--help") == 0 || v == NULL) {
            fputs(usage, v == NULL && strcmp(argv[i], "--help") != 0 ? stderr : stdout);
            return strcmp(argv[i], "--help") == 0 ? 1 : -1;
        }
        if (strcmp(argv[i], "--metrics-addr") == 0)
            o->addr = v;
        else if (strcmp(argv[i], "--port-file") == 0)
            o->port_file = v;
        else if (strcmp(argv[i], "--turns-file") == 0)
            o->turns_file = v;
        else if (strcmp(argv[i], "--jobs") == 0)
            o->jobs = strtol(v, &end, 10);
        else if (strcmp(argv[i], "--stale-ms") == 0)
            o->stale_ms = strtoll(v, &end, 10);
        else {
            fprintf(stderr, PROGRAM ": unknown option \"%s\"\n%s", argv[i], usage);
            return -1;
        }
        if (end != NULL && (*end != '\0' || end == v)) {
            fprintf(stderr, PROGRAM ": %s: \"%s\" is not a number\n", argv[i], v);
            return -1;
        }
        i++;
    }
    return 0;
}

static int register_metrics(struct sample *s, char *err, size_t errlen)
{
    static const char *const outcomes[] = { "cached", "already_cached", "lease_wait", "failed_retryable",
                                            "failed_permanent", "bad_event", NULL };
    static const char *const topics[] = { "image-needed", "image-needed-retry", NULL };
    static const char *const partitions[] = { "0", "1", "2", NULL };
    static const double seconds[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 };
    const struct metric_def defs[] = {
        { .name = "imgcache_metricsd_loop_turns_total", .help = "Turns of the stand-in loop.",
          .type = METRIC_COUNTER },
        { .name = "imgcache_jobs_total", .help = "Jobs finished, by outcome.", .type = METRIC_COUNTER,
          .labels = { "outcome" }, .values = { outcomes } },
        { .name = "imgcache_downloaded_bytes_total", .help = "Bytes of image bodies downloaded.",
          .type = METRIC_COUNTER },
        { .name = "imgcache_download_duration_seconds", .help = "Time of one download, first byte sent to last received.",
          .type = METRIC_HISTOGRAM, .bounds = seconds, .nbounds = sizeof seconds / sizeof seconds[0] },
        { .name = "imgcache_downloads_in_flight", .help = "Downloads running now.", .type = METRIC_GAUGE },
        { .name = "imgcache_consumer_lag", .help = "Messages of a partition not yet processed (consumer_lag_stored).",
          .type = METRIC_GAUGE, .labels = { "topic", "partition" }, .values = { topics, partitions }, .sparse = 1 },
    };
    struct metric **out[] = { &s->turns, &s->jobs, &s->bytes, &s->download, &s->in_flight, &s->lag };

    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (metrics_add(s->m, &defs[i], out[i], err, errlen) != 0)
            return -1;
    metrics_add_process(s->m);
    return metrics_add_build_info(s->m, "imgcache", IMGCACHE_VERSION, IMGCACHE_COMMIT, err, errlen);
}

/* Writes "value\n" to path through a temp file and rename(), so a reader
 * never sees half a number. */
static void write_number(const char *path, long long value)
{
    char tmp[4096];
    FILE *f;

    if (path == NULL)
        return;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        return;
    fprintf(f, "%lld\n", value);
    if (fclose(f) == 0)
        rename(tmp, path);
}

static void turn(struct sample *s, struct metrics_http *h, const struct options *o, long long n)
{
    struct kafka_lag lag = { .topic = "image-needed", .partition = 0 };

    metric_inc(s->turns, 0);
    metrics_http_heartbeat(h);
    if (n <= o->jobs) {
        metric_inc(s->jobs, metrics_series(s->jobs, 0, 0));
        metric_add(s->bytes, 0, 1000);
        metric_observe(s->download, 0, (double)(n % 100) / 50.0);
    }
    metric_set(s->in_flight, 0, (double)(n % 8));
    if (n % 100 == 0) {
        lag.lag = n < o->jobs ? o->jobs - n : 0;
        kafka_stats_publish(s->lag, &lag, 1);
        write_number(o->turns_file, n);
    }
}

static void run_loop(struct sample *s, struct metrics_http *h, const struct options *o)
{
    const struct timespec tick = { .tv_sec = 0, .tv_nsec = 1000000 };
    long long n = 0;

    while (!stop_requested) {
        if (paused) {
            nanosleep(&tick, NULL);
            continue;
        }
        turn(s, h, o, ++n);
        if (n == 1) {
            metrics_http_set_check(h, 0, 1);
            metrics_http_set_check(h, 1, 1);
        }
        nanosleep(&tick, NULL);
    }
    write_number(o->turns_file, n);
    log_info("event=stop turns=%lld", n);
}

int main(int argc, char **argv)
{
    static const char *const checks[] = { "no partition assignment", "PostgreSQL unreachable", NULL };
    struct options o;
    struct sample s = { 0 };
    struct metrics_http *h = NULL;
    struct metrics_http_options hopt = { .checks = checks };
    char err[512] = "";
    int rc = 1;

    log_init(PROGRAM, LOG_INFO);
    switch (parse_options(argc, argv, &o)) {
    case 1: return 0;
    case -1: return 2;
    }
    hopt.stale_ms = o.stale_ms;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGUSR1, on_signal);
    signal(SIGUSR2, on_signal);
    if (metrics_new(&s.m, err, sizeof err) != 0 || register_metrics(&s, err, sizeof err) != 0 ||
        metrics_http_start(o.addr, s.m, &hopt, &h, err, sizeof err) != 0) {
        log_error("event=start_failed error=\"%s\"", err);
        goto out;
    }
    log_info("event=listening port=%u", metrics_http_port(h));
    write_number(o.port_file, metrics_http_port(h));
    run_loop(&s, h, &o);
    rc = 0;
out:
    metrics_http_stop(h);
    metrics_free(s.m);
    return rc;
}
