/* Cache look-up and leases (see dedup.h). */
#include "dedup.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utlist.h>
#include <uthash.h>

#include "errmsg.h"
#include "event.h"
#include "hash.h"
#include "log.h"
#include "outage.h"
#include "netguard.h"
#include "retry.h"
#include "download.h"
#include "failure.h"
#include "job.h"

void dedup_db_trouble(struct worker *w, const char *what, const char *err)
{
    if (outage_failed(&w->db_outage, mono_ms()))
        log_warn("event=db_down during=%s reason=\"%s\" action=\"holding offsets, retrying\"", what, err);
}

/* 1 when the database may be used now (reconnecting when it was down). */
int dedup_db_usable(struct worker *w)
{
    char err[300];

    if (!w->db_outage.down)
        return 1;
    if (!outage_may_try(&w->db_outage, mono_ms()))
        return 0;
    if (db_reset(w->db, err, sizeof err) != 0) {
        dedup_db_trouble(w, "reconnect", err);
        return 0;
    }
    if (outage_recovered(&w->db_outage))
        log_info("event=db_up");
    return 1;
}

static void dedup_note_redis(struct worker *w, int ok)
{
    /* lease.c logs the outage once and reconnects with backoff */
    w->redis_down = !ok;
}

/* Jobs from `q` (NEW or WAITING): look up, then lease the rest. */
void dedup_lookup_and_lease(struct worker *w, struct job **q, size_t limit)
{
    struct job *batch[BATCH_MAX];
    const char *urls[BATCH_MAX];
    uint8_t state[BATCH_MAX], got[BATCH_MAX];
    struct job *j, *tmp;
    size_t n = 0, m = 0;
    char err[300];
    long long now = mono_ms();

    if (!dedup_db_usable(w))
        return;
    DL_FOREACH_SAFE(*q, j, tmp) {
        if (n == BATCH_MAX || n == limit)
            break;
        if (j->state == JOB_WAITING && j->due_ms > now)
            continue;
        batch[n] = j;
        urls[n] = j->url;
        n++;
    }
    if (n == 0)
        return;
    if (db_lookup_urls(w->db, urls, n, w->cfg->failure_ttl_ms, state, err, sizeof err) != 0) {
        dedup_db_trouble(w, "lookup", err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        /* a scheduled retry is the retry event's work; other events of
         * that URL are finished by it */
        if (state[i] == DB_URL_NONE || (state[i] == DB_URL_RETRYING && batch[i]->from_retry)) {
            batch[m] = batch[i];
            urls[m] = urls[i];
            m++;
            continue;
        }
        if (state[i] == DB_URL_CACHED)
            w->n_already_cached++;
        job_finish(w, batch[i]);
    }
    if (m == 0)
        return;
    if (lease_acquire(w->lease, urls, m, got, err, sizeof err) != 0) {
        /* Redis down: go on without leases; rows stay unique in PostgreSQL
         * and the store is content-addressed, at worst a URL is fetched twice */
        dedup_note_redis(w, 0);
        memset(got, 1, m);
    } else {
        dedup_note_redis(w, 1);
    }
    /* double check under the lease: a worker may have committed the row and
     * released its lease between our look-up and our SET NX */
    if (!w->redis_down) {
        const char *leased[BATCH_MAX];
        size_t k = 0;
        for (size_t i = 0; i < m; i++)
            if (got[i])
                leased[k++] = urls[i];
        if (k > 0 && db_lookup_urls(w->db, leased, k, w->cfg->failure_ttl_ms, state, err, sizeof err) != 0) {
            lease_release(w->lease, leased, k, err, sizeof err);
            dedup_db_trouble(w, "lookup", err);
            return;
        }
        k = 0;
        for (size_t i = 0; i < m; i++) {
            if (!got[i])
                continue;
            if (state[k] == DB_URL_NONE || (state[k] == DB_URL_RETRYING && batch[i]->from_retry)) {
                k++;
                continue;
            }
            lease_release(w->lease, &urls[i], 1, err, sizeof err);
            if (state[k] == DB_URL_CACHED)
                w->n_already_cached++;
            k++;
            got[i] = 2; /* finished below */
        }
    }
    for (size_t i = 0; i < m; i++) {
        j = batch[i];
        if (got[i] == 2) {
            job_finish(w, j);
            continue;
        }
        if (!got[i]) {
            if (j->state != JOB_WAITING)
                w->n_waited++;
            j->due_ms = now + w->cfg->recheck_ms;
            if (j->state == JOB_WAITING) { /* to the back of the queue */
                DL_DELETE(w->q_waiting, j);
                DL_APPEND(w->q_waiting, j);
            } else {
                job_move(w, j, JOB_WAITING);
            }
            continue;
        }
        j->leased = !w->redis_down;
        if (!j->resolved) {
            int rrc = download_resolve(w, j, err, sizeof err);
            if (rrc == RESOLVE_ERR_CONFIG) {
                /* a try like a download: the backoff list runs its course */
                j->attempts++;
                failure_record(w, j, "config", 0, 0, "%s", err);
                continue;
            }
            if (rrc != 0) {
                failure_record(w, j, "bad_url", 1, 0, "%s", err);
                continue;
            }
            j->resolved = 1;
            if (j->res.kind == RESOLVE_HTTP)
                j->origin = download_origin_of(j->res.url);
        }
        job_move(w, j, JOB_READY);
    }
}

void dedup_release_leases(struct worker *w, struct job **batch, size_t n)
{
    const char *urls[BATCH_MAX];
    size_t m = 0;
    char err[300];

    for (size_t i = 0; i < n; i++)
        if (batch[i]->leased)
            urls[m++] = batch[i]->url;
    if (m > 0 && lease_release(w->lease, urls, m, err, sizeof err) != 0)
        dedup_note_redis(w, 0); /* leases expire by themselves */
}
