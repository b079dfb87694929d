/* Retry, dead letter and failure rows (see failure.h). */
#include "failure.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "dedup.h"
#include "event.h"
#include "job.h"
#include "log.h"
#include "retry.h"
#include "revalidate.h"

/* Bytes that do not form UTF-8 become '?'. A reason can carry a decoded
 * file:// path ("%ff") or be cut inside a character, and the failure row
 * goes through JSON, which refuses anything but UTF-8. */
static void scrub_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (*p) {
        unsigned c = *p;
        size_t n = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2
                 : c >= 0xF0 && c <= 0xF4 ? 3 : 4;
        int ok = n < 4;
        for (size_t i = 1; ok && i <= n; i++)
            ok = (p[i] & 0xC0) == 0x80; /* stops at the NUL too */
        /* overlong forms, surrogates, above U+10FFFF */
        if (ok && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) ||
                   (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F)))
            ok = 0;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n + 1;
    }
}

void failure_record(struct worker *w, struct job *j, const char *error_class, int permanent,
                     int http_status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error_msg, sizeof j->error_msg, fmt, ap);
    va_end(ap);
    scrub_utf8(j->error_msg);
    snprintf(j->error_class, sizeof j->error_class, "%s", error_class);
    j->permanent = permanent;
    j->http_status = http_status;
    worker_metrics_failure(w->metrics, j->error_class);
    /* a URL refused before any download was still tried once: its header
     * must say what its failure row counts */
    if (j->attempts == 0)
        j->attempts = 1;
    job_drop_download(j);
    if (j->first_failed_ms == 0)
        j->first_failed_ms = event_now_ms();
    if (j->res.display == NULL && j->url) {
        /* not resolved (a refused URL): log its redacted, scrubbed form */
        char shown[512];
        resolve_redact(j->url, shown, sizeof shown);
        scrub_utf8(shown);
        j->res.display = strdup(shown);
    }
    if (j->revalidating) {
        /* the cached copy stays served as it is; no retry, no dead letter:
         * the next `refresh` run asks again (refreshed_at did not move) */
        j->permanent = 0;
        j->dead_letter = 0;
        j->next_attempt_ms = 0;
        log_warn("event=revalidation_failed url=\"%s\" class=%s reason=\"%s\" action=\"keeping the cached copy\"",
                 j->res.display ? j->res.display : "-", j->error_class, j->error_msg);
        j->due_ms = 0;
        job_move(w, j, JOB_FAILURE_ROW);
        return;
    }
    if (!permanent && j->attempts <= w->n_retry_delays) {
        /* exponential backoff from the list, +-20% jitter so that a burst
         * of failures does not come back as one burst */
        int jitter_pct = RETRY_JITTER_MIN_PCT +
                         (int)(random() % (RETRY_JITTER_MAX_PCT - RETRY_JITTER_MIN_PCT + 1));
        long long delay = retry_delay_ms(w->retry_delays[j->attempts - 1], jitter_pct, j->retry_after_s,
                                         w->cfg->retry_after_max_ms);
        j->next_attempt_ms = event_now_ms() + delay;
        j->dead_letter = 0;
        log_info("event=retry_scheduled url=\"%s\" class=%s attempt=%d delay_ms=%lld reason=\"%s\"",
                 j->res.display ? j->res.display : "-", j->error_class, j->attempts, delay, j->error_msg);
    } else {
        /* after the last retry, a retryable failure is final too; but a
         * missing setting is the worker's fault, not the image's: its row
         * stays retryable, so the next import, sync or backfill announces
         * it again instead of skipping it for IMGCACHE_FAILURE_TTL */
        j->permanent = strcmp(j->error_class, "config") != 0;
        j->dead_letter = 1;
        log_warn("event=image_failed url=\"%s\" class=%s attempts=%d reason=\"%s\"",
                 j->res.display ? j->res.display : "-", j->error_class, j->attempts, j->error_msg);
    }
    j->due_ms = 0;
    job_move(w, j, JOB_PUBLISH);
}

void failure_write_rows(struct worker *w)
{
    struct job *batch[BATCH_MAX];
    struct db_failure fails[BATCH_MAX];
    struct job *j;
    size_t n;
    char err[300];

    while (w->q_failure_row && dedup_db_usable(w)) {
        n = 0;
        DL_FOREACH(w->q_failure_row, j) {
            if (n == BATCH_MAX)
                break;
            batch[n] = j;
            /* one row per URL; each recorded failure adds its attempt */
            fails[n] = (struct db_failure){
                .source_url = j->url, .error_class = j->error_class, .last_error = j->error_msg,
                .http_status = j->http_status, .permanent = j->permanent, .attempts = 1,
                .next_retry_ms = j->dead_letter ? 0 : j->next_attempt_ms,
            };
            n++;
        }
        if (db_record_failures(w->db, fails, n, err, sizeof err) != 0) {
            if (!db_ok(w->db)) {
                dedup_db_trouble(w, "record_failure", err);
                return;
            }
            /* refused, not unreachable: its dead letter is already published,
             * so log and finish rather than retry forever */
            for (size_t i = 0; i < n; i++) {
                if (db_record_failures(w->db, &fails[i], 1, err, sizeof err) == 0)
                    continue;
                if (!db_ok(w->db)) {
                    dedup_db_trouble(w, "record_failure", err);
                    return;
                }
                log_error("event=failure_not_recorded url=\"%s\" reason=\"%s\"",
                          batch[i]->res.display ? batch[i]->res.display : "-", err);
            }
        }
        dedup_release_leases(w, batch, n);
        for (size_t i = 0; i < n; i++) {
            if (batch[i]->dead_letter)
                w->n_failed++;
            if (batch[i]->revalidating)
                revalidate_failed(w, batch[i]);
            else
                worker_metrics_job_done(w->metrics, batch[i]->dead_letter ? OUTCOME_FAILED_PERMANENT
                                                                         : OUTCOME_FAILED_RETRYABLE);
            job_finish(w, batch[i]);
        }
    }
}

static void on_published(void *opaque, int ok, const char *errstr, void *ctx)
{
    struct job *j = opaque;
    struct worker *w = ctx;

    if (!ok) {
        /* not finished: publish again shortly (nothing is lost meanwhile) */
        log_warn("event=publish_failed topic=%s reason=\"%s\"", j->dead_letter ? w->dlt_topic : w->retry_topic,
                 errstr ? errstr : "?");
        j->due_ms = mono_ms() + PUBLISH_RETRY_MS;
        job_move(w, j, JOB_PUBLISH);
        return;
    }
    if (j->dead_letter) {
        w->n_dead_letters++;
    } else {
        w->n_retries++;
    }
    if (j->url == NULL) {
        worker_metrics_job_done(w->metrics, OUTCOME_BAD_EVENT);
        job_finish(w, j); /* an undecodable event: the dead letter is all */
        return;
    }
    job_move(w, j, JOB_FAILURE_ROW);
}

void failure_publish(struct worker *w)
{
    struct job *j, *tmp;
    long long now = mono_ms();
    char err[300];

    DL_FOREACH_SAFE(w->q_publish, j, tmp) {
        char attempts[16], status[16], partition[16], offset[24], first[32], next[32];
        struct kafka_header h[9];
        size_t nh = 0;

        if (j->due_ms > now)
            continue;
        snprintf(attempts, sizeof attempts, "%d", j->attempts);
        snprintf(status, sizeof status, "%d", j->http_status);
        snprintf(partition, sizeof partition, "%d", (int)j->src_partition);
        snprintf(offset, sizeof offset, "%lld", (long long)j->src_offset);
        event_format_time(j->first_failed_ms ? j->first_failed_ms : event_now_ms(), first, sizeof first);
        event_format_time(j->next_attempt_ms, next, sizeof next);
#define HDR(n, v) h[nh++] = (struct kafka_header){ n, v, strlen(v) }
        HDR("source_topic", j->src_topic);
        HDR("source_partition", partition);
        HDR("source_offset", offset);
        HDR("attempts", attempts);
        HDR("error_class", j->error_class);
        HDR("error_message", j->error_msg); /* built from redacted parts only */
        HDR("first_failed_at", first);
        if (j->http_status)
            HDR("http_status", status);
        if (!j->dead_letter)
            HDR("next_attempt_at", next);
#undef HDR
        if (kafka_produce(w->publisher, j->dead_letter ? w->dlt_topic : w->retry_topic, j->msg_key,
                          j->msg_keylen, j->msg_value, j->msg_valuelen, h, nh, j, err, sizeof err) != 0) {
            log_warn("event=publish_failed reason=\"%s\"", err);
            j->due_ms = now + PUBLISH_RETRY_MS;
            continue;
        }
        job_move(w, j, JOB_PUBLISHING);
    }
}

void failure_announce_stored(struct worker *w, const struct job *j)
{
    struct stored_event ev = {
        .storage_key = (char *)j->key, .content_type = (char *)j->sniff.content_type,
        .byte_size = job_size(j), .produced_at_ms = event_now_ms(),
    };
    char err[300];
    char *value;

    memcpy(ev.sha256, j->sha256, sizeof ev.sha256);
    value = stored_event_encode(&ev, err, sizeof err);
    /* opaque NULL: no job waits for this delivery report */
    if (value == NULL || kafka_produce(w->publisher, w->cfg->stored_topic, j->sha256, strlen(j->sha256), value,
                                       strlen(value), NULL, 0, NULL, err, sizeof err) != 0)
        log_warn("event=stored_not_announced sha256=%s reason=\"%s\"", j->sha256, err);
    free(value);
}

int failure_open(struct worker *w, char *err, size_t errlen)
{
    const char *topics[] = { w->retry_topic, w->dlt_topic, w->cfg->stored_topic };

    if (kafka_producer_new(w->cfg, w->worker_id, &w->publisher, err, errlen) != 0)
        return -1;
    w->publisher->on_delivery = on_published;
    w->publisher->on_delivery_ctx = w;
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        char why[300];
        /* not fatal: publishes wait for the topic; but say so now */
        if (kafka_producer_prepare(w->publisher, topics[i], BROKER_ASK_TIMEOUT_MS, why, sizeof why) != 0)
            log_warn("event=topic_unavailable reason=\"%s\"", why);
    }
    return 0;
}

void failure_settle(struct worker *w)
{
    char err[256];

    if (w->publisher == NULL)
        return;
    /* what is not delivered by now is redone after a restart */
    if (kafka_producer_flush(w->publisher, BROKER_ASK_TIMEOUT_MS, err, sizeof err) != 0)
        log_warn("event=publish_incomplete reason=\"%s\"", err);
    rd_kafka_purge(w->publisher->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(w->publisher->rk, 0);
    w->publisher->on_delivery = NULL;
}

void failure_serve_reports(struct worker *w)
{
    kafka_producer_poll(w->publisher);
}

int failure_publishing(const struct worker *w)
{
    const struct kafka_producer *p = w->publisher;

    return p->queued > p->delivered + p->failed;
}
