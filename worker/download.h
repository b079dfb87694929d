#ifndef IMGCACHE_DOWNLOAD_H
#define IMGCACHE_DOWNLOAD_H
/* Downloads: a JOB_READY job's source (http(s), a BEEPER_MEDIA_DIR file or
 * a data: URL) is read, streamed into memory or the store, sniffed and
 * hashed, and classified once: a complete image goes to JOB_COMMIT, any
 * failure to failure_record().
 *
 * Ownership: the bytes belong to the job (j->body or j->blob); the
 * strings returned by download_origin_of() are the caller's to free. */
#include "errmsg.h"
#include "worker_private.h"

/* Creates w->fetch and w->finished (freed by worker_free); the fetcher's
 * callbacks are this module's: on_data streams and sniffs, on_done only
 * queues the finished transfer. */
int download_open(struct worker *w, char *err, size_t errlen) MUST_CHECK;
/* 1 when another download may start: a free slot, and the committer not
 * too far behind. */
int download_may_start(const struct worker *w);
/* Starts the ready jobs while download_may_start() says so. */
void download_start_ready(struct worker *w);
/* Settles the transfers fetch_perform() finished: classified, then
 * stored (JOB_COMMIT) or failed. Call right after fetch_perform(). */
void download_settle_finished(struct worker *w);
/* resolve_source() of the job's URL (into j->res); RESOLVE_ERR_CONFIG for
 * a missing setting, -1 for a bad URL, with the reason in err. */
int download_resolve(struct worker *w, struct job *j, char *err, size_t errlen)
    MUST_CHECK;
/* IMGCACHE_HTTP_PROXY must be an http(s) proxy URL with a host. */
int download_check_proxy(const char *proxy, char *err, size_t errlen) MUST_CHECK;
/* The circuit breaker's key for url ("scheme://host:port", malloc'd), NULL
 * when url has no http(s) origin. */
char *download_origin_of(const char *url);

#endif
