#ifndef IMGCACHE_WORKER_H
#define IMGCACHE_WORKER_H
/* One worker process: a consumer-group member that turns image-needed
 * events into cached images. See worker.c for the event loop.
 *
 * Ownership: worker_new() borrows cfg (it must outlive the worker) and
 * returns a worker freed by worker_free(). `stop` is the signal flag. */
#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "errmsg.h"

struct worker;

/* worker_new() fails with WORKER_ERR_CONFIG when a setting is wrong (the
 * message names it; imgcache-worker exits 2), else with -1. */
#define WORKER_ERR_CONFIG (-2)
int worker_new(const struct config *cfg, struct worker **out, char *err, size_t errlen)
    MUST_CHECK;
/* Runs until *stop is set (then shuts down gracefully) or, with --drain,
 * until caught up and idle. 0 on a clean exit; -1 with a message when
 * --drain could not drain; WORKER_ERR_CONFIG when the store refused the
 * settings while running (credentials, bucket, region). */
int worker_run(struct worker *w, volatile sig_atomic_t *stop, char *err, size_t errlen)
    MUST_CHECK;
void worker_free(struct worker *w);

#endif
