/* The worker's event loop.
 *
 * One thread drives everything without blocking on a single download:
 *   Kafka messages -> events -> jobs (one per distinct URL in this process)
 *   -> batched cache look-up (PostgreSQL) -> batched leases (Redis)
 *   -> downloads on one curl multi handle (or a read from BEEPER_MEDIA_DIR)
 *   -> sniff + SHA-256 while streaming into the store -> batched commit
 *   -> lease release -> events finished -> contiguous offsets stored.
 *
 * An event is finished only when its URL has a cached_images row or a
 * recorded failure; only then may its offset be stored (at-least-once). An
 * event whose URL another worker holds the lease for waits and is checked
 * again every IMGCACHE_RECHECK.
 *
 * Downloads are classified once, in download.c (fetch_judge, judge_sniff),
 * and failures in failure.c (failure_record): a retryable one is
 * republished to <topic>-retry (due time in a header; the worker consumes
 * that topic too and holds each event in memory until it is due, at most
 * IMGCACHE_RETRY_HOLD_MAX of them, so one late event does not stop those
 * behind it), a permanent one (or the last retry) goes to <topic>-dlt;
 * either counts as finished only once the publish is acknowledged and the
 * image_failures row is committed. A per-origin (scheme + host + port)
 * circuit breaker stops hammering a failing service.
 *
 * This file builds the modules (worker_private.h says which does what),
 * runs the loop and tears down; the work itself is in the modules. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utlist.h>
#include <uthash.h>

#include "consumer.h"
#include "dedup.h"
#include "download.h"
#include "drain.h"
#include "errmsg.h"
#include "failure.h"
#include "handoff.h"
#include "job.h"
#include "log.h"
#include "retry.h"
#include "revalidate.h"

/* One turn of work (everything but taking new messages; also run while a
 * revoke waits), in the order a job moves: look-up and lease, wake
 * what is due, start downloads, move transfers, settle the finished ones,
 * publish failures and serve their reports, take back and hand over
 * commit batches, write failure rows, start downloads again, store the
 * offsets of what finished.
 *
 * download_start_ready() runs twice on purpose: the first fills the slots
 * before fetch_perform, so new transfers start moving in this very turn;
 * the second refills the slots the settled transfers and the collected
 * commit batch (COMMIT_PENDING_MAX) freed, instead of leaving them empty
 * until the next turn, which may come after a sleep in fetch_wait. */
void worker_io_step(struct worker *w)
{
    if (w->q_new)
        dedup_lookup_and_lease(w, &w->q_new, BATCH_MAX);
    if (w->q_waiting && mono_ms() >= w->next_recheck_ms) {
        dedup_lookup_and_lease(w, &w->q_waiting, BATCH_MAX);
        w->next_recheck_ms = mono_ms() + w->cfg->recheck_ms / RECHECK_SCANS;
    }
    job_wake_timed(w);
    download_start_ready(w);
    fetch_perform(w->fetch);
    download_settle_finished(w);
    failure_publish(w);
    failure_serve_reports(w);
    handoff_collect(w);
    handoff_submit(w);
    failure_write_rows(w);
    revalidate_write_rows(w);
    download_start_ready(w);
    consumer_store_offsets(w);
}

static int idle(const struct worker *w)
{
    return w->outstanding == 0 && w->n_fetching == 0 && w->n_jobs == 0;
}

/* 1 when nothing is left but retries held until due, each due no earlier
 * than not_before_ms (monotonic): leaving them costs nothing, their
 * offsets stay unstored and whoever owns the partition next holds them. */
static int only_held(const struct worker *w, long long not_before_ms)
{
    struct job *j;

    if (w->n_fetching != 0 || w->n_jobs != w->n_in_state[JOB_HELD])
        return 0;
    DL_FOREACH(w->q_held, j) {
        if (j->due_ms < not_before_ms)
            return 0;
    }
    return 1;
}

/* config_load() checked the list already; read it with the same parser. */
static int parse_retry_delays(struct worker *w, const char *list, char *err, size_t errlen)
{
    char why[256];

    if (config_parse_duration_list(list, w->retry_delays, MAX_RETRIES_LIST, RETRY_STEP_MAX_MS,
                                   &w->n_retry_delays, why, sizeof why) != 0) {
        errmsg_set(err, errlen, "IMGCACHE_RETRY_BACKOFF: %s", why);
        return -1;
    }
    return 0;
}

/* Sizes and names that follow from the configuration alone. */
static void worker_init_limits(struct worker *w, const struct config *cfg)
{
    char host[128];

    w->cfg = cfg;
    w->wake[0] = w->wake[1] = -1;
    outage_init(&w->db_outage);
    /* events are cheap (a few hundred bytes; the 16 KiB sniff head exists
     * only while downloading), so the cap is generous: 16 per download
     * slot, at least 4096 */
    w->max_outstanding = (size_t)cfg->concurrency * 16 < 4096 ? 4096 : (size_t)cfg->concurrency * 16;
    offsets_init(&w->offsets, w->max_outstanding);
    /* held retries count as outstanding: at most half of them, so that they
     * never stop the main topic */
    w->hold_max = (size_t)cfg->retry_hold_max < w->max_outstanding / 2 ? (size_t)cfg->retry_hold_max
                                                                        : w->max_outstanding / 2;
    if (cfg->worker_id[0]) {
        snprintf(w->worker_id, sizeof w->worker_id, "%s", cfg->worker_id);
    } else {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "worker");
        host[sizeof host - 1] = '\0';
        snprintf(w->worker_id, sizeof w->worker_id, "%s:%d", host, (int)getpid());
    }
    snprintf(w->retry_topic, sizeof w->retry_topic, "%s-retry", cfg->topic);
    snprintf(w->dlt_topic, sizeof w->dlt_topic, "%s-dlt", cfg->topic);
    w->next_held_due_ms = LLONG_MAX;
    w->resolve_cfg = (struct resolve_config){
        .media_dir = cfg->beeper_media_dir, .media_server = cfg->beeper_media_server,
        .media_token = cfg->beeper_media_token, .api_url = cfg->beeper_api_url,
        .api_token = cfg->beeper_api_token,
    };
}

/* The settings config_load() could not judge alone; every failure here is
 * the configuration's. */
static int worker_check_settings(struct worker *w, char *err, size_t errlen)
{
    const struct config *cfg = w->cfg;
    const char *trusted[] = { cfg->beeper_media_server, cfg->beeper_api_url, NULL };

    if (parse_retry_delays(w, cfg->retry_backoff, err, errlen) != 0)
        return -1;
    w->hold_limit_ms = retry_hold_limit_ms(w->retry_delays, w->n_retry_delays, cfg->retry_after_max_ms);
    /* the retries this worker schedules itself and short Retry-Afters, not
     * a server's long ask */
    w->drain_hold_ms = retry_hold_limit_ms(w->retry_delays, w->n_retry_delays, cfg->drain_wait_ms);
    if (cfg->http_proxy[0] && download_check_proxy(cfg->http_proxy, err, errlen) != 0)
        return -1;
    return netguard_new(cfg->allow_hosts, trusted, &w->guard, err, errlen);
}

/* The store. Its public base URL is no concern of the worker's: the views
 * build image URLs at read time from settings.public_base_url. */
static int worker_open_store(struct worker *w, char *err, size_t errlen)
{
    int rc = store_open(w->cfg->storage_dir, &w->store, err, errlen);

    if (rc != 0)
        return rc == STORE_ERR_NOT_WRITABLE ? WORKER_ERR_CONFIG : -1;
    return 0;
}

/* Builds the worker in a fixed order: the checks that need no server
 * first (a wrong setting fails at once), then the metrics endpoint (every
 * later module counts into it, and an orchestrator sees the process alive
 * while it connects), the store, PostgreSQL, Redis, the fetcher, the
 * retry/dead-letter producer, the consumer (and with it the wake pipe),
 * and last the committer, which writes to that pipe. worker_free() undoes
 * it in reverse. */
int worker_new(const struct config *cfg, struct worker **out, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof *w);
    int rc = -1;

    *out = NULL;
    if (w == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    worker_init_limits(w, cfg);
    if (worker_check_settings(w, err, errlen) != 0) {
        rc = WORKER_ERR_CONFIG;
        goto out;
    }
    /* a port in use is the setting's fault too: another process has it */
    if (worker_metrics_start(cfg, w->retry_topic, &w->metrics, err, errlen) != 0) {
        rc = WORKER_ERR_CONFIG;
        goto out;
    }
    srandom((unsigned)getpid() ^ (unsigned)mono_ms());
    if (breaker_new(cfg->breaker_threshold, cfg->breaker_cooldown_ms, BREAKER_MAX_COOLDOWN_MS, &w->breaker) != 0) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    if (cfg->beeper_api_url[0])
        w->api_origin = download_origin_of(cfg->beeper_api_url);
    if (cfg->beeper_media_server[0])
        w->media_origin = download_origin_of(cfg->beeper_media_server);
    rc = worker_open_store(w, err, errlen);
    if (rc != 0)
        goto out;
    rc = -1;
    if (db_connect(cfg->database_url, &w->db, err, errlen) != 0 || db_check_schema(w->db, err, errlen) != 0)
        goto out;
    /* fails only for a REDIS_URL it cannot parse: Redis itself may be down */
    if (lease_connect(cfg->redis_url, w->worker_id, cfg->lease_ttl_ms, &w->lease, err, errlen) != 0) {
        rc = WORKER_ERR_CONFIG;
        goto out;
    }
    if (download_open(w, err, errlen) != 0 || failure_open(w, err, errlen) != 0)
        goto out;
    rc = consumer_open(w, err, errlen);
    if (rc != 0)
        goto out;
    rc = -1;
    w->batch = calloc(1, sizeof *w->batch);
    if (w->batch == NULL || body_pool_init(&w->bodies, (size_t)cfg->body_memory) != 0) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    /* after the wake pipe exists: the committer wakes the loop through it */
    if (committer_new(cfg->database_url, w->store, w->wake[1], &w->committer, err, errlen) != 0)
        goto out;
    *out = w;
    w = NULL;
    rc = 0;
out:
    worker_free(w);
    return rc;
}

static void progress(struct worker *w, const char *event)
{
    log_info("event=%s consumed=%lld already_cached=%lld downloaded=%lld new_blobs=%lld committed=%lld "
             "failed=%lld retries=%lld dead_letters=%lld bad_events=%lld waited_for_other_worker=%lld "
             "in_flight=%zu outstanding=%zu held=%zu spilled_to_disk=%lld tombstones=%lld "
             "not_modified=%lld refreshed_same=%lld refreshed_changed=%lld refresh_failed=%lld",
             event, w->n_consumed, w->n_already_cached, w->n_downloaded, w->n_new_blobs, w->n_committed,
             w->n_failed, w->n_retries, w->n_dead_letters, w->n_bad_events, w->n_waited, w->n_fetching,
             w->outstanding, w->n_in_state[JOB_HELD], w->n_spilled, w->n_tombstones,
             w->n_revalidations[REVALIDATION_NOT_MODIFIED], w->n_revalidations[REVALIDATION_SAME],
             w->n_revalidations[REVALIDATION_CHANGED], w->n_revalidations[REVALIDATION_FAILED]);
}

static void drain_wake_pipe(struct worker *w)
{
    char buf[64];
    while (read(w->wake[0], buf, sizeof buf) > 0)
        ;
}

static void log_start(const struct worker *w)
{
    const struct config *cfg = w->cfg;

    log_info("event=started worker_id=%s group=%s topic=%s concurrency=%ld drain=%d from_beginning=%d",
             w->worker_id, cfg->group, cfg->topic, cfg->concurrency, cfg->drain, cfg->from_beginning);
    if ((cfg->beeper_media_dir == NULL || cfg->beeper_media_dir[0] == '\0') &&
        (cfg->beeper_media_server == NULL || cfg->beeper_media_server[0] == '\0') &&
        (cfg->beeper_api_token == NULL || cfg->beeper_api_token[0] == '\0'))
        log_warn("event=config_warning reason=\"file:// avatars and local paths cannot be read: set "
                 "BEEPER_MEDIA_DIR (Beeper's media folder), BEEPER_MEDIA_SERVER or BEEPER_API_TOKEN "
                 "(Beeper Desktop serves them); until then they fail as class config, retryable\"");
}

/* New messages while running; while stopping, only the group's events
 * (a message is not ours to finish: it is redelivered later). */
static void take_messages(struct worker *w)
{
    rd_kafka_message_t *m;

    if (!w->stopping) {
        consumer_poll(w);
        return;
    }
    m = rd_kafka_consumer_poll(w->rk, 0);
    if (m)
        rd_kafka_message_destroy(m);
}

/* idle_since_ms: since when there is nothing to do. --drain does not wait
 * for a retry due later than this worker's own longest backoff or
 * IMGCACHE_DRAIN_WAIT (a server's long Retry-After): the next run does. */
static void note_idle(struct worker *w, long long now)
{
    if (!idle(w) && !(w->cfg->drain && only_held(w, now + w->drain_hold_ms)))
        w->idle_since_ms = 0;
    else if (w->idle_since_ms == 0)
        w->idle_since_ms = now;
}

/* How long the loop may sleep: not at all with work at hand, briefly while
 * something timed or unacknowledged waits, until the first held retry is
 * due (a retry held for an hour must not wake the loop 50 times a second). */
static int loop_timeout(struct worker *w, long long now)
{
    int timeout = LOOP_WAIT_MS;

    if (w->q_new || (w->q_ready && download_may_start(w)))
        timeout = 0;
    else if (w->db_outage.down || w->q_waiting || w->q_breaker || w->q_publish || failure_publishing(w))
        timeout = LOOP_POLL_MS;
    if (w->q_held && !w->stopping && w->next_held_due_ms - now < timeout)
        timeout = w->next_held_due_ms > now ? (int)(w->next_held_due_ms - now) : 0;
    return timeout;
}

/* The metrics endpoint's share of a loop turn: the heartbeat, the gauges
 * that mirror the loop's counts, and now and then a PostgreSQL probe so
 * that /readyz follows the database while the worker is idle too. */
static void note_turn(struct worker *w, long long now)
{
    struct worker_metrics_state st;

    if (w->metrics == NULL)
        return;
    if (now >= w->next_db_probe_ms) {
        dedup_db_probe(w);
        w->next_db_probe_ms = now + DB_PROBE_EVERY_MS;
    }
    st = (struct worker_metrics_state){
        .in_flight = w->n_fetching, .lease_waiting = w->n_in_state[JOB_WAITING],
        .open_circuits = breaker_open_count(w->breaker), .redis_up = !w->redis_down,
        .postgresql_up = !w->db_outage.down,
    };
    worker_metrics_turn(w->metrics, &st);
}

int worker_run(struct worker *w, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    long long grace_deadline = 0;
    int rc = 0;

    w->started_ms = mono_ms();
    w->next_progress_ms = w->started_ms + PROGRESS_EVERY_MS;
    log_start(w);
    for (;;) {
        long long now = mono_ms();
        int drained;

        if (*stop && !w->stopping) {
            /* keep partitions whose events we will not finish from being
             * fetched further; in-flight work still completes */
            w->stopping = 1;
            grace_deadline = now + w->cfg->grace_ms;
            log_info("event=stopping in_flight=%zu outstanding=%zu grace_ms=%lld", w->n_fetching,
                     w->outstanding, w->cfg->grace_ms);
        }
        drain_wake_pipe(w);
        note_turn(w, now);
        take_messages(w);
        worker_io_step(w);
        if (!w->stopping)
            consumer_sync_pause(w);
        /* held retries need no grace: nothing of theirs is in flight */
        if (w->stopping && (idle(w) || only_held(w, 0) || now >= grace_deadline))
            break;
        note_idle(w, now);
        drained = w->cfg->drain && !w->stopping ? drain_check(w, now, err, errlen) : 0;
        if (drained != 0) {
            rc = drained < 0 ? -1 : 0;
            break;
        }
        if (now >= w->next_progress_ms) {
            progress(w, "progress");
            w->next_progress_ms = now + PROGRESS_EVERY_MS;
        }
        fetch_wait(w->fetch, w->wake[0], loop_timeout(w, now));
    }
    consumer_store_offsets(w);
    progress(w, "summary");
    return rc;
}

/* Unfinished work at shutdown: its offsets stay unstored, so it is
 * redelivered; its leases go back so that another worker may take it. */
static void abandon_jobs(struct worker *w)
{
    struct job *j, *tmp;

    HASH_ITER(hh, w->jobs, j, tmp) {
        if (j->state == JOB_FETCHING)
            fetch_cancel(w->fetch, j);
    }
    if (w->lease)
        dedup_release_all_leases(w);
    HASH_ITER(hh, w->jobs, j, tmp)
        job_remove(w, j);
    while (w->q_publish || w->q_failure_row)
        job_remove(w, w->q_publish ? w->q_publish : w->q_failure_row);
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    w->closing = 1;
    /* first: its thread works on jobs until the batch in progress is done */
    committer_free(w->committer);
    w->committer = NULL;
    /* delivery reports point at jobs: collect them all before the jobs go */
    failure_settle(w);
    /* unfinished jobs go (their offsets unstored), then the consumer
     * stores what finished and leaves the group */
    abandon_jobs(w);
    consumer_close(w);
    offsets_clear(&w->offsets);
    fetch_free(w->fetch);
    free(w->finished);
    kafka_producer_free(w->publisher);
    breaker_free(w->breaker);
    free(w->api_origin);
    free(w->media_origin);
    netguard_free(w->guard);
    lease_close(w->lease);
    db_close(w->db);
    store_close(w->store);
    if (w->wake[0] >= 0)
        close(w->wake[0]);
    if (w->wake[1] >= 0)
        close(w->wake[1]);
    free(w->batch);
    body_pool_release(&w->bodies); /* after the jobs: they give their blocks back */
    worker_metrics_stop(w->metrics); /* last: the modules above counted into it */
    free(w);
}
