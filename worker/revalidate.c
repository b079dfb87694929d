/* Revalidation of cached images on refresh events (see revalidate.h). */
#include "revalidate.h"

#include <stdio.h>
#include <string.h>
#include <utlist.h>

#include "dedup.h"
#include "event.h"
#include "job.h"
#include "log.h"

_Static_assert(sizeof ((struct worker *)0)->n_revalidations / sizeof(long long) == REVALIDATION_RESULTS,
               "one counter per result");

void revalidate_note_event(struct job *j, const char *reason, long long produced_at_ms)
{
    long long at;

    if (reason == NULL || strcmp(reason, "refresh") != 0)
        return;
    /* an event without a time asks from now: anything checked before it
     * is checked again */
    at = produced_at_ms > 0 ? produced_at_ms : event_now_ms();
    if (at > j->refresh_since_ms)
        j->refresh_since_ms = at;
}

struct stale_ctx {
    struct job **jobs;  /* the refresh jobs asked about, by position */
    uint8_t **states;   /* their state slots */
};

static void on_stale(size_t i, const struct db_cached *c, void *arg)
{
    struct stale_ctx *ctx = arg;
    struct job *j = ctx->jobs[i];

    *ctx->states[i] = DB_URL_STALE;
    j->revalidating = 1;
    snprintf(j->old_sha256, sizeof j->old_sha256, "%s", c->sha256);
    snprintf(j->old_etag, sizeof j->old_etag, "%s", c->etag ? c->etag : "");
    snprintf(j->old_last_modified, sizeof j->old_last_modified, "%s", c->last_modified ? c->last_modified : "");
}

int revalidate_mark_stale(struct worker *w, struct job **jobs, uint8_t *state, size_t n, char *err,
                          size_t errlen)
{
    struct job *asked[BATCH_MAX];
    uint8_t *slots[BATCH_MAX];
    const char *urls[BATCH_MAX];
    long long since[BATCH_MAX];
    struct stale_ctx ctx = { asked, slots };
    size_t k = 0;

    for (size_t i = 0; i < n && i < BATCH_MAX; i++) {
        jobs[i]->revalidating = 0; /* as of this look-up */
        if (jobs[i]->refresh_since_ms <= 0 || state[i] != DB_URL_CACHED)
            continue;
        asked[k] = jobs[i];
        slots[k] = &state[i];
        urls[k] = jobs[i]->url;
        since[k] = jobs[i]->refresh_since_ms;
        k++;
    }
    return db_lookup_stale(w->db, urls, since, k, on_stale, &ctx, err, errlen);
}

void revalidate_file_tag(const struct stat *st, char out[REVALIDATE_FILE_TAG_MAX])
{
    snprintf(out, REVALIDATE_FILE_TAG_MAX, "file:size=%lld;mtime=%lld.%09ld", (long long)st->st_size,
             (long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec);
}

void revalidate_not_modified(struct worker *w, struct job *j, const char *etag, const char *last_modified)
{
    job_drop_download(j);
    snprintf(j->etag, sizeof j->etag, "%s", etag ? etag : "");
    snprintf(j->last_modified, sizeof j->last_modified, "%s", last_modified ? last_modified : "");
    log_debug("event=not_modified url=\"%s\"", j->res.display ? j->res.display : "-");
    job_move(w, j, JOB_REVALIDATED);
}

/* Counts a finished revalidation and finishes its job. */
static void count(struct worker *w, enum revalidation_result result)
{
    w->n_revalidations[result]++;
    worker_metrics_revalidation(w->metrics, (int)result);
    worker_metrics_job_done(w->metrics, OUTCOME_REVALIDATED);
}

void revalidate_write_rows(struct worker *w)
{
    struct job *batch[BATCH_MAX];
    struct db_refreshed rows[BATCH_MAX];
    struct job *j;
    size_t n;
    char err[300];

    while (w->q_revalidated && dedup_db_usable(w)) {
        n = 0;
        DL_FOREACH(w->q_revalidated, j) {
            if (n == BATCH_MAX)
                break;
            batch[n] = j;
            rows[n] = (struct db_refreshed){
                .source_url = j->url,
                .etag = j->etag[0] ? j->etag : NULL,
                .last_modified = j->last_modified[0] ? j->last_modified : NULL,
            };
            n++;
        }
        if (db_mark_refreshed(w->db, rows, n, err, sizeof err) != 0) {
            if (!db_ok(w->db)) {
                dedup_db_trouble(w, "mark_refreshed", err);
                return;
            }
            /* refused, not unreachable: the row keeps its old time and the
             * next refresh asks again; retrying now would refuse again */
            log_error("event=refresh_not_recorded images=%zu reason=\"%s\"", n, err);
        }
        dedup_release_leases(w, batch, n);
        for (size_t i = 0; i < n; i++) {
            count(w, REVALIDATION_NOT_MODIFIED);
            job_finish(w, batch[i]);
        }
    }
}

void revalidate_committed(struct worker *w, const struct job *j)
{
    enum revalidation_result r = strcmp(j->sha256, j->old_sha256) == 0 ? REVALIDATION_SAME
                                                                        : REVALIDATION_CHANGED;

    log_info("event=revalidated url=\"%s\" result=%s sha256=%s", j->res.display ? j->res.display : "-",
             r == REVALIDATION_SAME ? "same" : "changed", j->sha256);
    count(w, r);
}

void revalidate_failed(struct worker *w, const struct job *j)
{
    (void)j;
    count(w, REVALIDATION_FAILED);
}
