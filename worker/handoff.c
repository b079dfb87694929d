/* The hand-off to the committer (see handoff.h). */
#include "handoff.h"

#include <utlist.h>

#include "dedup.h"
#include "failure.h"
#include "job.h"
#include "log.h"
#include "revalidate.h"

/* A batch back from the committer: its images are recorded (finish their
 * events), refused or not durable (fail them), or waiting for PostgreSQL
 * (back in line). */
void handoff_collect(struct worker *w)
{
    struct commit_batch *b = committer_take(w->committer);
    struct job *done[COMMIT_BATCH_MAX];
    const char *down = NULL;
    size_t n = 0;

    if (b == NULL)
        return;
    worker_metrics_commit(w->metrics, b->n, mono_ms() - w->batch_submitted_ms);
    for (size_t i = 0; i < b->n; i++) {
        struct commit_item *it = &b->items[i];
        struct job *j = it->owner;
        j->blob = it->blob; /* as the committer left it */
        if (it->body) {
            /* written (or found stored): from now on a blob like any other,
             * to discard if it goes no further, and to commit again without
             * writing if PostgreSQL was down */
            j->blob_open = 1;
            body_release(&w->bodies, &j->body);
            j->in_memory = 0;
        }
        /* counted where the name is made: two jobs with the same bytes
         * both find it missing before either is published */
        if (it->wrote) {
            w->n_new_blobs++;
            j->wrote_blob = 1; /* kept if PostgreSQL was down: announced once committed */
        }
        switch (it->outcome) {
        case COMMIT_OK:
            done[n++] = j;
            break;
        case COMMIT_STORAGE_FAILED:
            failure_record(w, j, "storage", 0, 0, "%s", it->err);
            break;
        case COMMIT_REFUSED:
            failure_record(w, j, "database", 1, 0, "PostgreSQL refused the row: %s", it->err);
            break;
        case COMMIT_DB_DOWN:
            down = it->err;
            job_move(w, j, JOB_COMMIT);
            break;
        }
    }
    if (down)
        dedup_db_trouble(w, "commit", down);
    dedup_release_leases(w, done, n);
    for (size_t i = 0; i < n; i++) {
        log_debug("event=cached url=\"%s\" sha256=%s bytes=%lld type=%s size=%ux%u",
                  done[i]->res.display, done[i]->sha256, done[i]->blob.size,
                  done[i]->sniff.content_type, done[i]->sniff.width, done[i]->sniff.height);
        w->n_committed++;
        if (done[i]->wrote_blob)
            failure_announce_stored(w, done[i]);
        /* a revalidation did not add a row: counted apart, so that
         * jobs_total{outcome="cached"} stays the rows the fleet added */
        if (done[i]->revalidating)
            revalidate_committed(w, done[i]);
        else
            worker_metrics_job_done(w->metrics, OUTCOME_CACHED);
        job_finish(w, done[i]);
    }
}

/* Everything stored since the last batch goes to the committer as the next
 * batch, as soon as it has finished the previous one. */
void handoff_submit(struct worker *w)
{
    struct commit_batch *b = w->batch;
    struct job *j, *tmp;

    if (w->q_commit == NULL || committer_busy(w->committer) || !dedup_db_usable(w))
        return;
    b->n = 0;
    DL_FOREACH_SAFE(w->q_commit, j, tmp) {
        if (b->n == COMMIT_BATCH_MAX)
            break;
        b->items[b->n++] = (struct commit_item){
            .blob = j->blob, /* moved: back in handoff_collect */
            .body = j->in_memory ? &j->body : NULL,
            .owner = j,
            .img = {
                .source_url = j->url, .sha256 = j->sha256, .storage_key = j->key,
                .content_type = j->sniff.content_type,
                .byte_size = job_size(j), .width = j->sniff.width, .height = j->sniff.height,
                .etag = j->etag[0] ? j->etag : NULL,
                .last_modified = j->last_modified[0] ? j->last_modified : NULL,
            },
        };
        job_move(w, j, JOB_COMMITTING);
    }
    w->batch_submitted_ms = mono_ms();
    if (committer_submit(w->committer, b) != 0) {
        /* committer_busy() said no batch is out: not reached; if it were,
         * the jobs wait for the next turn rather than be lost */
        log_error("event=commit_not_submitted reason=\"the committer holds a batch already\"");
        for (size_t i = 0; i < b->n; i++)
            job_move(w, b->items[i].owner, JOB_COMMIT);
    }
}
