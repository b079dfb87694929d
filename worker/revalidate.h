#ifndef IMGCACHE_REVALIDATE_H
#define IMGCACHE_REVALIDATE_H
/* Revalidation: a `refresh` event for a URL that is cached asks whether
 * the source still serves the cached picture, instead of counting as a
 * cache hit. The job is a revalidation when its row was last checked
 * before the newest refresh event of the URL was produced (a row checked
 * since, by any worker, finishes the job like a hit: five announcements
 * cost at most one check). Then:
 *  - http(s): a conditional GET with the stored ETag and Last-Modified;
 *    304: only refreshed_at is written (JOB_REVALIDATED), nothing is
 *    downloaded or stored;
 *  - a BEEPER_MEDIA_DIR file: its size and modification time stand in for
 *    an ETag (revalidate_file_tag); the same tag: as a 304;
 *  - a 200 (or a changed file) is stored and committed as usual: the same
 *    bytes update refreshed_at and the validators, new bytes repoint the
 *    row in the committer's transaction (the old blob stays for `gc`);
 *  - a failure writes its image_failures row and ends there: no retry, no
 *    dead letter, the cached row untouched (failure.c); the next `refresh`
 *    run tries again, since refreshed_at did not move.
 *
 * Ownership: borrows the worker's jobs; nothing here allocates. */
#include <sys/stat.h>

#include "worker_private.h"

/* How a revalidation ended: imgcache_revalidations_total{result}. */
enum revalidation_result {
    REVALIDATION_NOT_MODIFIED, /* 304, or a media file with the same size and time */
    REVALIDATION_SAME,         /* downloaded again: the same bytes */
    REVALIDATION_CHANGED,      /* downloaded again: new bytes, the row repointed */
    REVALIDATION_FAILED,       /* the source failed; the cached copy stays */
};
#define REVALIDATION_RESULTS 4

/* An event of j's URL: a `refresh` one (reason "refresh") makes j a
 * refresh, for its production time (now when it has none). */
void revalidate_note_event(struct job *j, const char *reason, long long produced_at_ms);
/* After a cache look-up of jobs[0..n) (state[] from db_lookup_urls): the
 * refresh jobs whose row was checked before their refresh get state
 * DB_URL_STALE, j->revalidating and the stored validators; the others are
 * left as they are. -1 (with err) when PostgreSQL failed. */
int revalidate_mark_stale(struct worker *w, struct job **jobs, uint8_t *state, size_t n, char *err,
                          size_t errlen) MUST_CHECK;
/* The validator of a media file: "file:size=N;mtime=S.NNNNNNNNN". */
#define REVALIDATE_FILE_TAG_MAX 96
void revalidate_file_tag(const struct stat *st, char out[REVALIDATE_FILE_TAG_MAX]);
/* The source answered "not modified" (etag and last_modified, maybe ""
 * or NULL, are what the answer carried): drops any download and queues
 * the job for its refreshed_at (JOB_REVALIDATED). */
void revalidate_not_modified(struct worker *w, struct job *j, const char *etag, const char *last_modified);
/* Writes the rows of JOB_REVALIDATED in batches, releases their leases
 * and finishes them (while PostgreSQL is usable). */
void revalidate_write_rows(struct worker *w);
/* A revalidating job was committed (handoff.c): counts it as the same or
 * changed bytes. */
void revalidate_committed(struct worker *w, const struct job *j);
/* A revalidating job's failure row was written (failure.c): counts it. */
void revalidate_failed(struct worker *w, const struct job *j);

#endif
