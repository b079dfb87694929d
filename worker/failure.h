#ifndef IMGCACHE_FAILURE_H
#define IMGCACHE_FAILURE_H
/* Failures: the retry and dead-letter policy, publishing to <topic>-retry
 * or <topic>-dlt, and the image_failures rows. A failed job goes
 * JOB_PUBLISH -> JOB_PUBLISHING -> JOB_FAILURE_ROW -> finished: it counts
 * as finished only once the publish is acknowledged and its row written.
 *
 * Ownership: nothing here allocates what it returns; the jobs stay the
 * worker's. */
#include "errmsg.h"
#include "worker_private.h"

/* Creates w->publisher (freed by worker_free) for -retry and -dlt, whose
 * delivery reports move jobs on, and for image-stored; asks for the
 * topics' metadata now. */
int failure_open(struct worker *w, char *err, size_t errlen) MUST_CHECK;
/* Before the jobs go: waits a while for every outstanding delivery
 * report, purges the rest and detaches the reports from the jobs. */
void failure_settle(struct worker *w);
/* Serves the delivery reports that arrived (on_published moves their jobs on). */
void failure_serve_reports(struct worker *w);
/* 1 while a publish waits for its delivery report. */
int failure_publishing(const struct worker *w);
/* Records why j failed (a printf message, scrubbed to UTF-8), decides
 * retry or dead letter and moves j to JOB_PUBLISH. Drops its download. */
void failure_record(struct worker *w, struct job *j, const char *error_class, int permanent,
                    int http_status, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Publishes the due jobs of JOB_PUBLISH. */
void failure_publish(struct worker *w);
/* Publishes image-stored for j's new blob (committed), for the renderer,
 * on the same producer, without waiting for its delivery: a lost event
 * costs only a delay (`imgcache-producer renditions` publishes again what
 * lacks a rendition). */
void failure_announce_stored(struct worker *w, const struct job *j);
/* Writes the rows of JOB_FAILURE_ROW in batches, releases their leases and
 * finishes them (while PostgreSQL is usable). */
void failure_write_rows(struct worker *w);

#endif
