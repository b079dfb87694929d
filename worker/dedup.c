/* Cache look-up and leases (see dedup.h). */
#include "dedup.h"

#include <string.h>
#include <uthash.h>
#include <utlist.h>

#include "download.h"
#include "failure.h"
#include "job.h"
#include "log.h"
#include "revalidate.h"

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

void dedup_db_probe(struct worker *w)
{
    char err[300];

    if (w->db_outage.down) {
        if (dedup_db_usable(w))
            log_debug("event=db_probe ok=1");
        return;
    }
    if (db_ping(w->db, err, sizeof err) != 0)
        dedup_db_trouble(w, "probe", err);
}

static void dedup_note_redis(struct worker *w, int ok)
{
    /* lease.c logs the outage once and reconnects with backoff */
    w->redis_down = !ok;
}

/* What the look-ups and the lease left for each job of a batch. */
enum verdict {
    VERDICT_WAIT = 0,  /* another worker holds the lease */
    VERDICT_MINE,      /* leased (or Redis down): download it */
    VERDICT_KNOWN,     /* cached or failed meanwhile: finish it */
};

/* 1 when the database's answer leaves the URL to this job: nothing known,
 * a scheduled retry and this is the retry event (other events of that
 * URL are finished by the retry's work), or a cached row a refresh asks
 * to check again. */
static int is_ours(uint8_t state, const struct job *j)
{
    return state == DB_URL_NONE || (state == DB_URL_RETRYING && j->from_retry) || state == DB_URL_STALE;
}

/* The cache look-up of jobs[0..n) (urls[] theirs) into state[]: one query,
 * and one more when refresh jobs found their URL cached. -1 (with err)
 * when PostgreSQL failed. */
static int look_up(struct worker *w, struct job **jobs, const char **urls, size_t n, uint8_t *state,
                   char *err, size_t errlen)
{
    if (db_lookup_urls(w->db, urls, n, w->cfg->failure_ttl_ms, state, err, errlen) != 0)
        return -1;
    return revalidate_mark_stale(w, jobs, state, n, err, errlen);
}

/* Up to limit jobs of q that may be looked up now. */
static size_t take_due(struct job **q, size_t limit, long long now, struct job **jobs, const char **urls)
{
    struct job *j, *tmp;
    size_t n = 0;

    DL_FOREACH_SAFE(*q, j, tmp) {
        if (n == BATCH_MAX || n == limit)
            break;
        if (j->state == JOB_WAITING && j->due_ms > now)
            continue;
        jobs[n] = j;
        urls[n] = j->url;
        n++;
    }
    return n;
}

/* A job the database's answer finishes: counted by what it found. A job
 * that was waiting for another worker's lease ends because that worker
 * settled it. */
static void count_known(struct worker *w, const struct job *j, uint8_t state)
{
    enum worker_outcome outcome = state == DB_URL_CACHED    ? OUTCOME_ALREADY_CACHED
                                : state == DB_URL_RETRYING ? OUTCOME_FAILED_RETRYABLE
                                                           : OUTCOME_FAILED_PERMANENT;

    if (state == DB_URL_CACHED)
        w->n_already_cached++;
    worker_metrics_job_done(w->metrics, j->state == JOB_WAITING ? OUTCOME_LEASE_WAIT : outcome);
}

/* Finishes the jobs whose URL the database knows; keeps the rest in
 * order and returns how many. */
static size_t finish_known(struct worker *w, struct job **jobs, const char **urls, const uint8_t *state,
                           size_t n)
{
    size_t m = 0;

    for (size_t i = 0; i < n; i++) {
        if (is_ours(state[i], jobs[i])) {
            jobs[m] = jobs[i];
            urls[m] = urls[i];
            m++;
            continue;
        }
        count_known(w, jobs[i], state[i]);
        job_finish(w, jobs[i]);
    }
    return m;
}

/* Looks the leased URLs up once more: a worker may have committed the row
 * and released its lease between our look-up and our SET NX. A URL known
 * now gives its lease back (all in one round trip) and is VERDICT_KNOWN.
 * -1 when the database failed (every lease given back). */
static int recheck_leased(struct worker *w, struct job **jobs, const char **urls, size_t m,
                          uint8_t *verdict)
{
    const char *leased[BATCH_MAX], *known[BATCH_MAX];
    struct job *leased_jobs[BATCH_MAX];
    uint8_t state[BATCH_MAX];
    size_t k = 0, n_known = 0;
    char err[300], why[300];

    for (size_t i = 0; i < m; i++) {
        if (verdict[i] == VERDICT_MINE) {
            leased_jobs[k] = jobs[i];
            leased[k++] = urls[i];
        }
    }
    if (k > 0 && look_up(w, leased_jobs, leased, k, state, err, sizeof err) != 0) {
        /* leases expire by themselves when this fails too */
        if (lease_release(w->lease, leased, k, why, sizeof why) != 0)
            log_debug("event=lease_release_failed reason=\"%s\"", why);
        dedup_db_trouble(w, "lookup", err);
        return -1;
    }
    k = 0;
    for (size_t i = 0; i < m; i++) {
        if (verdict[i] != VERDICT_MINE)
            continue;
        if (!is_ours(state[k], jobs[i])) {
            known[n_known++] = urls[i];
            count_known(w, jobs[i], state[k]);
            verdict[i] = VERDICT_KNOWN;
        }
        k++;
    }
    if (n_known > 0 && lease_release(w->lease, known, n_known, why, sizeof why) != 0)
        log_debug("event=lease_release_failed reason=\"%s\"", why);
    return 0;
}

/* A job leased to us: resolved (once) and ready to download, or failed
 * when its URL cannot be resolved. */
static void make_ready(struct worker *w, struct job *j)
{
    char err[300];

    j->leased = !w->redis_down;
    if (j->revalidating && j->data_url == NULL && resolve_is_data_url(j->url)) {
        /* a data: key without its URL: the bytes are the URL, which
         * cannot have changed */
        revalidate_not_modified(w, j, NULL, NULL);
        return;
    }
    if (!j->resolved) {
        int rrc = download_resolve(w, j, err, sizeof err);
        if (rrc == RESOLVE_ERR_CONFIG) {
            /* a try like a download: the backoff list runs its course */
            j->attempts++;
            failure_record(w, j, "config", 0, 0, "%s", err);
            return;
        }
        if (rrc != 0) {
            failure_record(w, j, "bad_url", 1, 0, "%s", err);
            return;
        }
        j->resolved = 1;
        if (j->res.kind == RESOLVE_HTTP)
            j->origin = download_origin_of(j->res.url);
    }
    job_move(w, j, JOB_READY);
}

/* Another worker holds the job's lease: check again after IMGCACHE_RECHECK,
 * behind the others that wait. */
static void wait_for_other(struct worker *w, struct job *j, long long now)
{
    if (j->state != JOB_WAITING)
        w->n_waited++;
    j->due_ms = now + w->cfg->recheck_ms;
    if (j->state == JOB_WAITING) { /* to the back of the queue */
        DL_DELETE(w->q_waiting, j);
        DL_APPEND(w->q_waiting, j);
    } else {
        job_move(w, j, JOB_WAITING);
    }
}

void dedup_lookup_and_lease(struct worker *w, struct job **q, size_t limit)
{
    struct job *jobs[BATCH_MAX];
    const char *urls[BATCH_MAX];
    uint8_t state[BATCH_MAX], verdict[BATCH_MAX];
    size_t n, m;
    char err[300];
    long long now = mono_ms();

    if (!dedup_db_usable(w))
        return;
    n = take_due(q, limit, now, jobs, urls);
    if (n == 0)
        return;
    if (look_up(w, jobs, urls, n, state, err, sizeof err) != 0) {
        dedup_db_trouble(w, "lookup", err);
        return;
    }
    m = finish_known(w, jobs, urls, state, n);
    if (m == 0)
        return;
    _Static_assert(VERDICT_WAIT == 0 && VERDICT_MINE == 1, "lease_acquire's got[] is a verdict");
    if (lease_acquire(w->lease, urls, m, verdict, err, sizeof err) != 0) {
        /* Redis down: go on without leases; rows stay unique in PostgreSQL
         * and the store is content-addressed, at worst a URL is fetched twice */
        dedup_note_redis(w, 0);
        memset(verdict, VERDICT_MINE, m);
    } else {
        dedup_note_redis(w, 1);
    }
    if (!w->redis_down && recheck_leased(w, jobs, urls, m, verdict) != 0)
        return;
    for (size_t i = 0; i < m; i++) {
        if (verdict[i] == VERDICT_KNOWN)
            job_finish(w, jobs[i]);
        else if (verdict[i] == VERDICT_WAIT)
            wait_for_other(w, jobs[i], now);
        else
            make_ready(w, jobs[i]);
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

/* Adds j to the batch of leases to give back when it holds one; a full
 * batch goes at once. */
static void batch_lease(struct worker *w, struct job **batch, size_t *n, struct job *j)
{
    if (!j->leased)
        return;
    batch[(*n)++] = j;
    if (*n == BATCH_MAX) {
        dedup_release_leases(w, batch, *n);
        *n = 0;
    }
}

/* Gives back the lease of every job, in batches. */
void dedup_release_all_leases(struct worker *w)
{
    struct job *batch[BATCH_MAX];
    struct job *lists[] = { w->q_publish, w->q_failure_row };
    struct job *j, *tmp;
    size_t n = 0;

    HASH_ITER(hh, w->jobs, j, tmp)
        batch_lease(w, batch, &n, j);
    /* jobs out of the table (undecodable events, failures whose retry
     * started anew) are only in their queues */
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        DL_FOREACH(lists[i], j) {
            if (!j->in_table)
                batch_lease(w, batch, &n, j);
        }
    }
    if (n > 0)
        dedup_release_leases(w, batch, n);
}
