/* imgcache-worker: parse configuration, build the worker, run its loop,
 * tear down in order. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "stop_signal.h"
#include "worker.h"

static volatile sig_atomic_t stop_requested;

static const char usage[] =
    "Usage: imgcache-worker [--concurrency N] [--drain] [--from-beginning] [--group NAME] [options]\n"
    "\n"
    "Consumes image-needed events (a member of consumer group IMGCACHE_GROUP),\n"
    "downloads each image once across the fleet (Redis leases), checks that it\n"
    "is a JPEG, PNG, GIF or WebP, stores it by SHA-256 under IMGCACHE_STORAGE_DIR\n"
    "and records it in PostgreSQL. Retryable failures go to TOPIC-retry (also\n"
    "consumed, each after its delay), permanent ones to TOPIC-dlt and a row in\n"
    "image_failures. SIGTERM or SIGINT: finish in-flight work (at most --grace),\n"
    "commit offsets, exit 0; a second one stops at once.\n"
    "\n"
    "Exit status: 0 clean stop or drained, 1 runtime error or not drained (no assignment\n"
    "within --drain-wait while the group has unconsumed events), 2 bad configuration.";

int main(int argc, char **argv)
{
    struct config cfg;
    struct worker *w = NULL;
    char err[512];
    int rc, status = 1;

    rc = config_load(&cfg, CONFIG_WORKER, usage, argc, argv, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "imgcache-worker: %s\n", err);
        config_free(&cfg);
        return rc > 0 ? 0 : 2;
    }
    if (cfg.nargs > 0) {
        fprintf(stderr, "imgcache-worker: unexpected argument '%s' (see --help)\n", cfg.args[0]);
        config_free(&cfg);
        return 2;
    }
    log_init("imgcache-worker", log_level_parse(cfg.log_level));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("event=start_failed reason=\"libcurl could not be initialised\"");
        config_free(&cfg);
        return 1;
    }

    stop_signal_install(&stop_requested);

    rc = worker_new(&cfg, &w, err, sizeof err);
    if (rc != 0) {
        /* one line: the log goes to stderr already */
        log_error("event=start_failed reason=\"%s\"", err);
        status = rc == WORKER_ERR_CONFIG ? 2 : 1;
        goto out;
    }
    rc = worker_run(w, &stop_requested, err, sizeof err);
    if (rc != 0) {
        log_error("event=stopped reason=\"%s\"", err);
        status = rc == WORKER_ERR_CONFIG ? 2 : 1;
        goto out;
    }
    status = 0;
out:
    worker_free(w);
    curl_global_cleanup();
    config_free(&cfg);
    return status;
}
