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
 * Failures are classified once, in on_done()/job_fail(): a retryable one is
 * republished to <topic>-retry (due time in a header; the worker consumes
 * that topic too and holds each event in memory until it is due, at most
 * IMGCACHE_RETRY_HOLD_MAX of them, so one late event does not stop those
 * behind it), a permanent one (or the last retry) goes to <topic>-dlt;
 * either counts as finished only once the publish is acknowledged and the
 * image_failures row is committed. A per-origin (scheme + host + port)
 * circuit breaker stops hammering a failing service. */
#include "worker.h"

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <curl/curl.h>
#include <limits.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utlist.h>
#include <uthash.h>

#include "body.h"
#include "breaker.h"
#include "committer.h"
#include "db.h"
#include "errmsg.h"
#include "event.h"
#include "fetch.h"
#include "kafka.h"
#include "lease.h"
#include "log.h"
#include "netguard.h"
#include "offsets.h"
#include "resolve.h"
#include "retry.h"
#include "sniff.h"
#include "store.h"

#define BATCH_MAX 256          /* URLs per look-up, lease round trip or failure batch */
#define CONSUME_BUDGET 512     /* messages taken per loop turn */
#define MAX_RETRIES_LIST CONFIG_RETRY_STEPS_MAX
#define REVOKE_WAIT_MS 3000    /* how long a revoked partition's work may finish */
/* release_leases() takes a committed batch */
_Static_assert(COMMIT_BATCH_MAX <= BATCH_MAX, "a commit batch must fit release_leases()");
#define COMMIT_PENDING_MAX (2 * COMMIT_BATCH_MAX) /* stored images waiting for the committer */
#define DRAIN_IDLE_MS 250      /* --drain: idle this long before asking the broker */
#define DRAIN_OFFSETS_TIMEOUT_MS 5000 /* --drain without assignment: the group's offsets */

enum job_state {
    JOB_HELD,       /* from the retry topic, not due yet */
    JOB_NEW,        /* needs the cache look-up */
    JOB_WAITING,    /* another worker holds the lease: check again later */
    JOB_READY,      /* lease held (or Redis down): may download */
    JOB_BREAKER,    /* its host's circuit is open: waits, no attempt used */
    JOB_FETCHING,
    JOB_PUBLISH,    /* failed: to publish to the retry or dead-letter topic */
    JOB_PUBLISHING, /* waiting for that publish's delivery report */
    JOB_COMMIT,     /* stored; to hand to the committer */
    JOB_COMMITTING, /* with the committer: being made durable and recorded */
    JOB_FAILED,     /* failure row to write */
};

struct wevent {
    struct ptrack *pt;
    uint64_t seq;
    struct wevent *next;
};

struct worker;

struct job {
    struct worker *w;
    char *url;                  /* NULL for an undecodable event */
    char *data_url;             /* the data: URL url is the key of, from the event */
    enum job_state state;
    struct wevent *events;
    size_t n_events;
    int leased;                 /* we hold its Redis lease */
    int in_table;               /* in w->jobs: new events of its URL join it */
    int attempts;               /* downloads tried, across retries */
    int from_retry;             /* an event came from the retry topic */
    long long due_ms;           /* timed states: when to go on */
    /* the first event, as received: what retry and dead-letter carry on */
    void *msg_key, *msg_value;
    size_t msg_keylen, msg_valuelen;
    char src_topic[256];
    int32_t src_partition;
    int64_t src_offset;
    long long first_failed_ms;  /* wall clock, 0 before the first failure */
    long long next_attempt_ms;  /* wall clock, for a retry */
    int dead_letter;            /* publishing to -dlt (else to -retry) */
    char *origin;               /* "scheme://host:port", the circuit breaker's key */
    struct resolved res;
    int resolved;
    struct store_blob blob;
    int blob_open;
    struct body body;           /* the download so far, while in_memory */
    int in_memory;              /* held in w->bodies, no file yet (see body.h) */
    struct sniff_result sniff;
    int sniff_done;
    /* set when the job aborts its own download */
    const char *abort_class;
    int abort_permanent;
    char abort_msg[256];
    /* outcome */
    char sha256[HASH_HEX_LEN + 1];
    char key[STORE_KEY_MAX];
    char *public_url;
    char etag[FETCH_ETAG_MAX + 1];
    char last_modified[FETCH_LAST_MODIFIED_MAX + 1];
    char error_class[32];
    char error_msg[300];
    int http_status;
    long long retry_after_s;
    int permanent;
    struct job *prev, *next;    /* the queue of its state */
    UT_hash_handle hh;          /* by url */
};

struct worker {
    const struct config *cfg;
    char worker_id[256];
    char public_base[4200];
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int wake[2];
    struct db *db;
    struct lease *lease;
    struct store *store;
    struct fetcher *fetch;
    struct committer *committer;
    struct commit_batch *batch;  /* the one batch the committer may hold */
    struct body_pool bodies;     /* downloads held in memory for the committer */
    struct netguard *guard;
    struct breaker *breaker;
    struct kafka_producer *dlq;  /* retry and dead-letter publishes */
    char retry_topic[300];
    char dlt_topic[300];
    struct resolve_config rcfg;
    struct offsets offsets;
    long long retry_delays[MAX_RETRIES_LIST];
    int n_retry_delays;
    long long hold_limit_ms;    /* a retry event is held at most this long */
    size_t hold_max;            /* held jobs at which the retry partitions pause */
    long long drain_hold_ms;    /* --drain waits for held retries due within this */
    long long next_held_due_ms; /* the earliest held job's due_ms */

    struct job *jobs;           /* hash by url */
    size_t n_jobs;              /* also counts undecodable events' jobs */
    struct job *q_held, *q_new, *q_waiting, *q_ready, *q_breaker, *q_publish, *q_commit, *q_failed;
    size_t n_in[JOB_FAILED + 1]; /* jobs per state */
    size_t n_fetching;
    size_t outstanding;         /* events not finished */
    size_t max_outstanding;
    int paused;                 /* every partition paused for backpressure */
    long long over_since_ms;    /* when outstanding reached the cap; 0: below */
    int stopping;
    int closing;                /* consumer_close: no waiting in callbacks */

    int assigned_once;
    /* a cooperative revoke is followed by an assignment (maybe empty):
     * until it comes, and for DRAIN_IDLE_MS after any rebalance call, the
     * assignment is not the one the drain check must judge */
    int rebalance_pending;
    long long last_rebalance_ms;
    long long started_ms;
    long long next_recheck_ms;
    long long next_drain_check_ms;
    long long idle_since_ms;    /* 0 while there is work */
    long long db_retry_ms;
    long long db_backoff_ms;
    int db_down;
    int redis_down;
    /* our own configured endpoints, whose 401/403 refuses our token, not
     * an image: origins of BEEPER_API_URL and BEEPER_MEDIA_SERVER (NULL
     * when unset), and whether that refusal was logged since it last
     * answered */
    char *api_origin, *media_origin;
    int api_auth_logged, media_auth_logged;
    int seen_count;             /* partitions ever assigned (for --from-beginning) */
    char **seen;

    /* counters for progress lines and the summary */
    long long n_consumed, n_bad_events, n_already_cached, n_downloaded, n_new_blobs,
        n_committed, n_failed, n_waited, n_retries, n_dead_letters, n_spilled, n_tombstones;
    long long next_progress_ms;
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *url_origin(const char *url);
static int resolve_job(struct worker *w, struct job *j, char *err, size_t errlen);

/* ---------------------------------------------------------------- jobs -- */

static struct job **queue_of(struct worker *w, enum job_state s)
{
    switch (s) {
    case JOB_HELD: return &w->q_held;
    case JOB_NEW: return &w->q_new;
    case JOB_WAITING: return &w->q_waiting;
    case JOB_READY: return &w->q_ready;
    case JOB_BREAKER: return &w->q_breaker;
    case JOB_PUBLISH: return &w->q_publish;
    case JOB_COMMIT: return &w->q_commit;
    case JOB_FAILED: return &w->q_failed;
    case JOB_FETCHING:
    case JOB_COMMITTING:
    case JOB_PUBLISHING: return NULL;
    }
    return NULL;
}

static void job_move(struct worker *w, struct job *j, enum job_state to)
{
    struct job **from = queue_of(w, j->state);
    struct job **dest = queue_of(w, to);
    if (from)
        DL_DELETE(*from, j);
    w->n_in[j->state]--;
    j->state = to;
    w->n_in[to]++;
    if (dest)
        DL_APPEND(*dest, j);
}

/* Whatever the job holds of its download: a temporary file, a body. */
static void drop_download(struct job *j)
{
    if (j->blob_open)
        store_blob_discard(&j->blob);
    j->blob_open = 0;
    body_release(&j->w->bodies, &j->body);
    j->in_memory = 0;
}

static void job_free(struct job *j)
{
    struct wevent *e, *tmp;
    LL_FOREACH_SAFE(j->events, e, tmp) {
        offsets_release(e->pt);
        free(e);
    }
    drop_download(j);
    resolved_clear(&j->res);
    free(j->public_url);
    free(j->data_url);
    free(j->url);
    free(j->origin);
    free(j->msg_key);
    free(j->msg_value);
    free(j);
}

/* Every event of the job is finished: mark their offsets, drop the job. */
static void job_finish(struct worker *w, struct job *j)
{
    struct wevent *e;
    struct job **q = queue_of(w, j->state);

    LL_FOREACH(j->events, e)
        offsets_finish(e->pt, e->seq);
    w->outstanding -= j->n_events;
    w->n_in[j->state]--;
    if (q)
        DL_DELETE(*q, j);
    if (j->in_table)
        HASH_DEL(w->jobs, j);
    w->n_jobs--;
    job_free(j);
}

static void job_fail(struct worker *w, struct job *j, const char *error_class, int permanent,
                     int http_status, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

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

static void job_fail(struct worker *w, struct job *j, const char *error_class, int permanent,
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
    /* a URL refused before any download was still tried once: its header
     * must say what its failure row counts */
    if (j->attempts == 0)
        j->attempts = 1;
    drop_download(j);
    if (j->first_failed_ms == 0)
        j->first_failed_ms = event_now_ms();
    if (j->res.display == NULL && j->url) {
        /* not resolved (a refused URL): log its redacted, scrubbed form */
        char shown[512];
        resolve_redact(j->url, shown, sizeof shown);
        scrub_utf8(shown);
        j->res.display = strdup(shown);
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

/* ----------------------------------------------------------- downloads -- */

static long long job_size(const struct job *j)
{
    return j->in_memory ? (long long)j->body.len : j->blob.size;
}

/* The first bytes of the download, for the sniffers. */
static const unsigned char *job_head(const struct job *j, size_t *len)
{
    if (j->in_memory) {
        *len = body_block_len(&j->body, 0);
        return *len ? j->body.blocks[0] : NULL;
    }
    *len = j->blob.head_len;
    return j->blob.head;
}

/* The memory budget is spent: the body so far goes to a temporary file,
 * and the rest of the download streams there (on the loop). */
static int spill(struct worker *w, struct job *j, char *err, size_t errlen)
{
    int rc = -1;

    j->in_memory = 0;
    if (store_blob_begin(w->store, &j->blob, err, errlen) != 0)
        goto out;
    j->blob_open = 1;
    for (size_t i = 0; i < j->body.n_blocks; i++)
        if (store_blob_write(&j->blob, j->body.blocks[i], body_block_len(&j->body, i), err, errlen) != 0)
            goto out;
    w->n_spilled++;
    rc = 0;
out:
    body_release(&w->bodies, &j->body);
    return rc;
}

static int keep_bytes(struct worker *w, struct job *j, const void *data, size_t len, char *err,
                      size_t errlen)
{
    if (j->in_memory) {
        if (body_append(&w->bodies, &j->body, data, len) == 0)
            return 0;
        if (spill(w, j, err, errlen) != 0)
            return -1;
    }
    return store_blob_write(&j->blob, data, len, err, errlen);
}

/* 1, with the reason in msg, when the area a decoder may allocate for
 * what was sniffed so far (every GIF frame included) is over the cap. */
static int over_pixel_cap(const struct job *j, char *msg, size_t msglen)
{
    const struct sniff_result *s = &j->sniff;
    long long cap = j->w->cfg->max_pixels;

    if ((long long)s->canvas_width * s->canvas_height <= cap)
        return 0;
    if (s->canvas_width == s->width && s->canvas_height == s->height)
        snprintf(msg, msglen, "%ux%u pixels is over the %lld-pixel cap", s->width, s->height, cap);
    else
        snprintf(msg, msglen, "a frame reaches %ux%u pixels past the %ux%u screen, over the %lld-pixel cap",
                 s->canvas_width, s->canvas_height, s->width, s->height, cap);
    return 1;
}

static int on_data(void *arg, const void *data, size_t len)
{
    struct job *j = arg;
    const unsigned char *head;
    size_t head_len;
    char err[256];

    if (keep_bytes(j->w, j, data, len, err, sizeof err) != 0) {
        j->abort_class = "storage";
        j->abort_permanent = 0;
        snprintf(j->abort_msg, sizeof j->abort_msg, "%s", err);
        return -1;
    }
    /* decide as early as the bytes allow: no need to download a whole HTML
     * page or a 60000x60000 PNG to refuse it */
    head = job_head(j, &head_len);
    if (!j->sniff_done && head_len >= 32) {
        enum sniff_status st = sniff_image(head, head_len, 0, &j->sniff, err, sizeof err);
        if (st == SNIFF_REJECT) {
            j->abort_class = "not_image";
            j->abort_permanent = 1;
            snprintf(j->abort_msg, sizeof j->abort_msg, "%s", err);
            return -1;
        }
        if (st == SNIFF_OK)
            j->sniff_done = 1;
        /* also while more is needed: a GIF frame seen so far may already
         * be over the cap */
        if (over_pixel_cap(j, j->abort_msg, sizeof j->abort_msg)) {
            j->abort_class = "too_many_pixels";
            j->abort_permanent = 1;
            return -1;
        }
    }
    return 0;
}

/* Sniffs the whole download, for a format whose size comes after the
 * first bytes. */
static enum sniff_status sniff_whole(struct job *j, char *err, size_t errlen)
{
    enum sniff_status st;
    size_t len = 0;

    if (j->in_memory) {
        unsigned char *flat = malloc(j->body.len ? j->body.len : 1);
        if (flat == NULL) {
            snprintf(err, errlen, "out of memory");
            return SNIFF_REJECT;
        }
        for (size_t i = 0; i < j->body.n_blocks; i++) {
            memcpy(flat + len, j->body.blocks[i], body_block_len(&j->body, i));
            len += body_block_len(&j->body, i);
        }
        st = sniff_image(flat, len, 1, &j->sniff, err, errlen);
        free(flat);
        return st;
    }
    const unsigned char *all = store_blob_map(&j->blob, &len);
    if (all == NULL) {
        snprintf(err, errlen, "cannot read back the download");
        return SNIFF_REJECT;
    }
    st = sniff_image(all, len, 1, &j->sniff, err, errlen);
    store_unmap(all, len);
    return st;
}

/* The name of a body held in memory: its SHA-256 in one pass. */
static int hash_body(struct job *j, char *err, size_t errlen)
{
    struct hash h;

    if (hash_init(&h) != 0) {
        snprintf(err, errlen, "sha256: cannot initialise");
        return -1;
    }
    for (size_t i = 0; i < j->body.n_blocks; i++)
        hash_update(&h, j->body.blocks[i], body_block_len(&j->body, i));
    if (hash_final_hex(&h, j->sha256) != 0) {
        snprintf(err, errlen, "sha256: cannot finish");
        return -1;
    }
    store_key(j->sha256, j->sniff.extension, j->key);
    return 0;
}

/* After the whole body is in: final sniff, pixel cap, name. A body in
 * memory is written by the committer; a file is sealed here. */
static void job_store(struct worker *w, struct job *j)
{
    char err[300];
    int existed = 0;

    if (!j->sniff_done) {
        size_t head_len;
        const unsigned char *head = job_head(j, &head_len);
        int complete = (long long)head_len == job_size(j);
        enum sniff_status st = sniff_image(head, head_len, complete, &j->sniff, err, sizeof err);
        if (st == SNIFF_NEED_MORE)
            st = sniff_whole(j, err, sizeof err);
        if (st != SNIFF_OK) {
            job_fail(w, j, "not_image", 1, 0, "%s", st == SNIFF_NEED_MORE ? "truncated image" : err);
            return;
        }
        j->sniff_done = 1;
    }
    if (over_pixel_cap(j, err, sizeof err)) {
        job_fail(w, j, "too_many_pixels", 1, 0, "%s", err);
        return;
    }
    if (j->in_memory) {
        if (hash_body(j, err, sizeof err) != 0) {
            job_fail(w, j, "internal", 0, 0, "%s", err);
            return;
        }
    } else {
        /* named now, made durable with the rest of its commit batch */
        if (store_blob_seal(w->store, &j->blob, j->sniff.extension, j->sha256, j->key, &existed,
                            err, sizeof err) != 0) {
            job_fail(w, j, "storage", 0, 0, "%s", err);
            return;
        }
        /* a new blob is counted when the committer names it (collect_commits) */
    }
    if (asprintf(&j->public_url, "%s/%s", w->public_base, j->key) < 0) {
        j->public_url = NULL;
        job_fail(w, j, "storage", 0, 0, "out of memory");
        return;
    }
    w->n_downloaded++;
    job_move(w, j, JOB_COMMIT);
}

/* 408, 429 and 5xx may pass; any other status will not. */
static int http_status_retryable(long status)
{
    return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

/* The variable whose token our own endpoint at origin refused, or NULL
 * when origin is not one of ours; *logged is its "said once" flag. */
static const char *our_endpoint(struct worker *w, const char *origin, int **logged)
{
    if (origin && w->api_origin && strcmp(origin, w->api_origin) == 0) {
        *logged = &w->api_auth_logged;
        return "BEEPER_API_TOKEN";
    }
    if (origin && w->media_origin && strcmp(origin, w->media_origin) == 0) {
        *logged = &w->media_auth_logged;
        return "BEEPER_MEDIA_TOKEN";
    }
    return NULL;
}

/* A 401/403 from BEEPER_API_URL or BEEPER_MEDIA_SERVER refuses our token,
 * not the image: every image behind that endpoint would get the same
 * answer. The image stays retryable and does not spend an attempt, the
 * endpoint's circuit opens (waiting images spend none either), and the
 * variable to fix is named once until the endpoint answers again. */
static void fail_our_auth(struct worker *w, struct job *j, const char *variable, int *logged, long status)
{
    breaker_open(w->breaker, j->origin, mono_ms());
    if (!*logged) {
        log_error("event=auth_refused origin=%s status=%ld reason=\"%s is %s by our own endpoint: "
                  "images from it wait (retryable, circuit open) until it is fixed\"", j->origin, status,
                  variable, status == 401 ? "refused (missing, wrong or expired)" : "not allowed (scope)");
        *logged = 1;
    }
    if (j->attempts > 0)
        j->attempts--; /* the image was not judged */
    job_fail(w, j, "auth_refused", 0, (int)status, "HTTP %ld from %s: %s refused, not this image's fault",
             status, j->origin, variable);
}

/* The one place a download failure is classified. */
static void on_done(void *arg, const struct fetch_result *r)
{
    struct job *j = arg;
    struct worker *w = j->w;
    long status = r->http_status;
    int *auth_logged = NULL;
    const char *auth_variable = our_endpoint(w, j->origin, &auth_logged);

    w->n_fetching--;
    j->retry_after_s = r->retry_after_s;
    /* only when our endpoint itself answered: a redirect's target never
     * gets our token, so its 401 is about the image */
    if (auth_variable && r->redirects == 0 && r->outcome == FETCH_HTTP_ERROR &&
        (status == 401 || status == 403)) {
        fail_our_auth(w, j, auth_variable, auth_logged, status);
        return;
    }
    if (auth_variable && r->outcome == FETCH_OK)
        *auth_logged = 0;
    /* a refused address or a bad URL was never sent: it says nothing about
     * the origin's health (and must not let an outsider open its circuit) */
    if (r->outcome != FETCH_REFUSED && r->outcome != FETCH_BAD_URL)
        breaker_record(w->breaker, j->origin,
                       r->outcome == FETCH_TIMEOUT || r->outcome == FETCH_NETWORK ||
                           r->outcome == FETCH_TRUNCATED ||
                           (r->outcome == FETCH_HTTP_ERROR && http_status_retryable(status)),
                       mono_ms());
    if (r->outcome == FETCH_OK) {
        snprintf(j->etag, sizeof j->etag, "%s", r->etag);
        snprintf(j->last_modified, sizeof j->last_modified, "%s", r->last_modified);
        job_store(w, j);
        return;
    }
    switch (r->outcome) {
    case FETCH_ABORTED:
        job_fail(w, j, j->abort_class ? j->abort_class : "aborted", j->abort_permanent, 0, "%s",
                 j->abort_msg);
        break;
    case FETCH_HTTP_ERROR: {
        char cls[16];
        snprintf(cls, sizeof cls, "http_%ld", status);
        job_fail(w, j, cls, !http_status_retryable(status), (int)status, "HTTP %ld", status);
        break;
    }
    case FETCH_TOO_LARGE:
        job_fail(w, j, "too_large", 1, (int)status, "body is over the %lld-byte cap", w->cfg->max_bytes);
        break;
    case FETCH_TIMEOUT:
        job_fail(w, j, "timeout", 0, (int)status, "%s", r->error);
        break;
    case FETCH_TRUNCATED:
        job_fail(w, j, "truncated", 0, (int)status, "%s", r->error);
        break;
    case FETCH_REDIRECTS:
        job_fail(w, j, "redirects", 1, (int)status, "%s", r->error);
        break;
    case FETCH_BAD_URL:
        job_fail(w, j, "bad_url", 1, 0, "%s", r->error);
        break;
    case FETCH_REFUSED:
        job_fail(w, j, "refused_address", 1, 0, "%s", r->error);
        break;
    case FETCH_PROTOCOL:
        job_fail(w, j, "protocol", 1, (int)status, "%s", r->error);
        break;
    case FETCH_NETWORK:
    default:
        job_fail(w, j, "network", 0, 0, "%s", r->error);
        break;
    }
}

/* A data: URL: decoded already, taken at once like a local file. */
static void read_data(struct worker *w, struct job *j)
{
    if ((long long)j->res.data_len > w->cfg->max_bytes) {
        job_fail(w, j, "too_large", 1, 0, "data: URL holds %zu bytes, over the %lld-byte cap",
                 j->res.data_len, w->cfg->max_bytes);
        return;
    }
    if (on_data(j, j->res.data, j->res.data_len) != 0) {
        job_fail(w, j, j->abort_class, j->abort_permanent, 0, "%s", j->abort_msg);
        return;
    }
    job_store(w, j);
}

/* A file from BEEPER_MEDIA_DIR: local, small, read at once. */
static void read_local(struct worker *w, struct job *j)
{
    char err[300];
    char buf[65536];
    int fd = resolve_open_confined(w->rcfg.media_dir, j->res.path, err, sizeof err);
    ssize_t n;

    if (fd < 0) {
        /* a missing file may still appear (Beeper downloads lazily) */
        job_fail(w, j, errno == ENOENT ? "file_missing" : "file_refused", errno != ENOENT, 0, "%s", err);
        return;
    }
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (job_size(j) + n > w->cfg->max_bytes) {
            close(fd);
            job_fail(w, j, "too_large", 1, 0, "file is over the %lld-byte cap", w->cfg->max_bytes);
            return;
        }
        if (on_data(j, buf, (size_t)n) != 0) {
            close(fd);
            job_fail(w, j, j->abort_class, j->abort_permanent, 0, "%s", j->abort_msg);
            return;
        }
    }
    close(fd);
    if (n < 0) {
        job_fail(w, j, "file_error", 0, 0, "read failed: %s", strerror(errno));
        return;
    }
    job_store(w, j);
}

/* 1 when another download may start: a free slot, and the committer not
 * too far behind (each stored image waiting for it holds a temporary file
 * and its job, so a slow disk or database slows the downloads down instead
 * of piling them up) */
static int may_start(const struct worker *w)
{
    return (long)w->n_fetching < w->cfg->concurrency &&
           w->n_in[JOB_COMMIT] + w->n_in[JOB_COMMITTING] < COMMIT_PENDING_MAX;
}

static void start_ready(struct worker *w)
{
    char err[300];

    while (w->q_ready && may_start(w)) {
        struct job *j = w->q_ready;
        if (j->res.kind == RESOLVE_HTTP && j->origin) {
            long long until = breaker_check(w->breaker, j->origin, mono_ms());
            if (until > 0) {
                log_debug("event=circuit_wait url=\"%s\" origin=%s wait_ms=%lld", j->res.display, j->origin,
                          until - mono_ms());
                j->due_ms = until; /* no attempt is spent while the circuit is open */
                job_move(w, j, JOB_BREAKER);
                continue;
            }
        }
        j->attempts++;
        j->sniff_done = 0;
        j->abort_class = NULL;
        /* held in memory while the budget lasts (no pool: a file at once) */
        if (w->bodies.max_blocks > 0) {
            j->in_memory = 1;
        } else {
            if (store_blob_begin(w->store, &j->blob, err, sizeof err) != 0) {
                job_fail(w, j, "storage", 0, 0, "%s", err);
                continue;
            }
            j->blob_open = 1;
        }
        if (j->res.kind == RESOLVE_FILE) {
            read_local(w, j);
            continue;
        }
        if (j->res.kind == RESOLVE_DATA) {
            read_data(w, j);
            continue;
        }
        job_move(w, j, JOB_FETCHING);
        if (fetch_start(w->fetch, j->res.url, j->res.auth_header, j, err, sizeof err) != 0) {
            job_fail(w, j, "internal", 0, 0, "%s", err);
            continue;
        }
        w->n_fetching++;
    }
}

/* ------------------------------------------------- database and leases -- */

static void db_trouble(struct worker *w, const char *what, const char *err)
{
    if (!w->db_down)
        log_warn("event=db_down during=%s reason=\"%s\" action=\"holding offsets, retrying\"", what, err);
    w->db_down = 1;
    w->db_retry_ms = mono_ms() + w->db_backoff_ms;
    w->db_backoff_ms = w->db_backoff_ms * 2 > 10000 ? 10000 : w->db_backoff_ms * 2;
}

/* 1 when the database may be used now (reconnecting when it was down). */
static int db_usable(struct worker *w)
{
    char err[300];
    if (!w->db_down)
        return 1;
    if (mono_ms() < w->db_retry_ms)
        return 0;
    if (db_reset(w->db, err, sizeof err) != 0) {
        db_trouble(w, "reconnect", err);
        return 0;
    }
    log_info("event=db_up");
    w->db_down = 0;
    w->db_backoff_ms = 250;
    return 1;
}

static void note_redis(struct worker *w, int ok)
{
    /* lease.c logs the outage once and reconnects with backoff */
    w->redis_down = !ok;
}

/* Jobs from `q` (NEW or WAITING): look up, then lease the rest. */
static void lookup_and_lease(struct worker *w, struct job **q, size_t limit)
{
    struct job *batch[BATCH_MAX];
    const char *urls[BATCH_MAX];
    uint8_t state[BATCH_MAX], got[BATCH_MAX];
    struct job *j, *tmp;
    size_t n = 0, m = 0;
    char err[300];
    long long now = mono_ms();

    if (!db_usable(w))
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
        db_trouble(w, "lookup", err);
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
        note_redis(w, 0);
        memset(got, 1, m);
    } else {
        note_redis(w, 1);
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
            db_trouble(w, "lookup", err);
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
            int rrc = resolve_job(w, j, err, sizeof err);
            if (rrc == RESOLVE_ERR_CONFIG) {
                /* a try like a download: the backoff list runs its course */
                j->attempts++;
                job_fail(w, j, "config", 0, 0, "%s", err);
                continue;
            }
            if (rrc != 0) {
                job_fail(w, j, "bad_url", 1, 0, "%s", err);
                continue;
            }
            j->resolved = 1;
            if (j->res.kind == RESOLVE_HTTP)
                j->origin = url_origin(j->res.url);
        }
        job_move(w, j, JOB_READY);
    }
}

/* resolve_source() of the job's URL; for a data: key, of the data: URL its
 * event carried, which must hash to that key (else any event could store
 * any bytes under any key). */
static int resolve_job(struct worker *w, struct job *j, char *err, size_t errlen)
{
    char key[RESOLVE_DATA_KEY_LEN + 1];

    if (j->data_url == NULL)
        return resolve_source(&w->rcfg, j->url, &j->res, err, errlen);
    if (!resolve_is_data_url(j->data_url)) {
        snprintf(err, errlen, "the event's data_url is not a data: URL");
        return -1;
    }
    if (resolve_data_key(j->data_url, key) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (strcmp(key, j->url) != 0) {
        snprintf(err, errlen, "the event's data_url does not hash to its source_url");
        return -1;
    }
    return resolve_source(&w->rcfg, j->data_url, &j->res, err, errlen);
}

/* IMGCACHE_HTTP_PROXY must be an http(s) proxy URL with a host. The value
 * may carry a password: the message never quotes it. */
static int check_proxy_url(const char *proxy, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;

    if (u == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, proxy, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        errmsg_set(err, errlen, "IMGCACHE_HTTP_PROXY is not an http:// or https:// URL with a host "
                                "(the value is not shown: it may hold a password)");
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* The breaker's key for url; NULL (no breaker) for a URL without an http(s)
 * origin, which the fetcher refuses as a bad URL anyway. */
static char *url_origin(const char *url)
{
    struct netguard_origin o;
    char key[NETGUARD_HOST_MAX + 32];
    char ignored[128];

    if (netguard_origin_of(url, &o, ignored, sizeof ignored) != 0)
        return NULL;
    netguard_origin_key(&o, key, sizeof key);
    return strdup(key);
}

static void release_leases(struct worker *w, struct job **batch, size_t n)
{
    const char *urls[BATCH_MAX];
    size_t m = 0;
    char err[300];

    for (size_t i = 0; i < n; i++)
        if (batch[i]->leased)
            urls[m++] = batch[i]->url;
    if (m > 0 && lease_release(w->lease, urls, m, err, sizeof err) != 0)
        note_redis(w, 0); /* leases expire by themselves */
}

/* A batch back from the committer: its images are recorded (finish their
 * events), refused or not durable (fail them), or waiting for PostgreSQL
 * (back in line). */
static void collect_commits(struct worker *w)
{
    struct commit_batch *b = committer_take(w->committer);
    struct job *done[COMMIT_BATCH_MAX];
    const char *down = NULL;
    size_t n = 0;

    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        struct commit_item *it = &b->items[i];
        struct job *j = it->owner;
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
        if (it->wrote)
            w->n_new_blobs++;
        switch (it->outcome) {
        case COMMIT_OK:
            done[n++] = j;
            break;
        case COMMIT_STORAGE_FAILED:
            job_fail(w, j, "storage", 0, 0, "%s", it->err);
            break;
        case COMMIT_REFUSED:
            job_fail(w, j, "database", 1, 0, "PostgreSQL refused the row: %s", it->err);
            break;
        case COMMIT_DB_DOWN:
            down = it->err;
            job_move(w, j, JOB_COMMIT);
            break;
        }
    }
    if (down)
        db_trouble(w, "commit", down);
    release_leases(w, done, n);
    for (size_t i = 0; i < n; i++) {
        log_debug("event=cached url=\"%s\" sha256=%s bytes=%lld type=%s size=%ux%u",
                  done[i]->res.display, done[i]->sha256, done[i]->blob.size,
                  done[i]->sniff.content_type, done[i]->sniff.width, done[i]->sniff.height);
        w->n_committed++;
        job_finish(w, done[i]);
    }
}

/* Everything stored since the last batch goes to the committer as the next
 * batch, as soon as it has finished the previous one. */
static void submit_commits(struct worker *w)
{
    struct commit_batch *b = w->batch;
    struct job *j, *tmp;

    if (w->q_commit == NULL || committer_busy(w->committer) || !db_usable(w))
        return;
    b->n = 0;
    DL_FOREACH_SAFE(w->q_commit, j, tmp) {
        if (b->n == COMMIT_BATCH_MAX)
            break;
        b->items[b->n++] = (struct commit_item){
            .blob = &j->blob,
            .body = j->in_memory ? &j->body : NULL,
            .owner = j,
            .img = {
                .source_url = j->url, .sha256 = j->sha256, .storage_key = j->key,
                .public_url = j->public_url, .content_type = j->sniff.content_type,
                .byte_size = job_size(j), .width = j->sniff.width, .height = j->sniff.height,
                .etag = j->etag[0] ? j->etag : NULL,
                .last_modified = j->last_modified[0] ? j->last_modified : NULL,
            },
        };
        job_move(w, j, JOB_COMMITTING);
    }
    committer_submit(w->committer, b);
}

static void write_results(struct worker *w)
{
    struct job *batch[BATCH_MAX];
    struct db_failure fails[BATCH_MAX];
    struct job *j;
    size_t n;
    char err[300];

    collect_commits(w);
    submit_commits(w);
    while (w->q_failed && db_usable(w)) {
        n = 0;
        DL_FOREACH(w->q_failed, j) {
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
                db_trouble(w, "record_failure", err);
                return;
            }
            /* refused, not unreachable: its dead letter is already published,
             * so log and finish rather than retry forever */
            for (size_t i = 0; i < n; i++) {
                if (db_record_failures(w->db, &fails[i], 1, err, sizeof err) == 0)
                    continue;
                if (!db_ok(w->db)) {
                    db_trouble(w, "record_failure", err);
                    return;
                }
                log_error("event=failure_not_recorded url=\"%s\" reason=\"%s\"",
                          batch[i]->res.display ? batch[i]->res.display : "-", err);
            }
        }
        release_leases(w, batch, n);
        for (size_t i = 0; i < n; i++) {
            if (batch[i]->dead_letter)
                w->n_failed++;
            job_finish(w, batch[i]);
        }
    }
}

/* Timed states whose time has come go on. Held retries stay held while
 * stopping: new work would only lengthen the shutdown. */
static void wake_timed(struct worker *w)
{
    struct job *j, *tmp;
    long long now = mono_ms();

    w->next_held_due_ms = LLONG_MAX;
    DL_FOREACH_SAFE(w->q_held, j, tmp) {
        if (j->due_ms > now || w->stopping) {
            if (j->due_ms < w->next_held_due_ms)
                w->next_held_due_ms = j->due_ms;
            continue;
        }
        job_move(w, j, JOB_NEW);
    }
    DL_FOREACH_SAFE(w->q_breaker, j, tmp) {
        if (j->due_ms <= now)
            job_move(w, j, JOB_READY);
    }
}

/* ------------------------------------------------ retry and dead letters -- */

static void on_published(void *opaque, int ok, const char *errstr, void *ctx)
{
    struct job *j = opaque;
    struct worker *w = ctx;

    if (!ok) {
        /* not finished: publish again shortly (nothing is lost meanwhile) */
        log_warn("event=publish_failed topic=%s reason=\"%s\"", j->dead_letter ? w->dlt_topic : w->retry_topic,
                 errstr ? errstr : "?");
        j->due_ms = mono_ms() + 1000;
        job_move(w, j, JOB_PUBLISH);
        return;
    }
    if (j->dead_letter) {
        w->n_dead_letters++;
    } else {
        w->n_retries++;
    }
    if (j->url == NULL) {
        job_finish(w, j); /* an undecodable event: the dead letter is all */
        return;
    }
    job_move(w, j, JOB_FAILED);
}

static void publish_failures(struct worker *w)
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
        if (kafka_produce(w->dlq, j->dead_letter ? w->dlt_topic : w->retry_topic, j->msg_key,
                          j->msg_keylen, j->msg_value, j->msg_valuelen, h, nh, j, err, sizeof err) != 0) {
            log_warn("event=publish_failed reason=\"%s\"", err);
            j->due_ms = now + 1000;
            continue;
        }
        job_move(w, j, JOB_PUBLISHING);
    }
}

/* --------------------------------------------------------------- kafka -- */

static void store_offsets(struct worker *w)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    struct ptrack *t, *tmp;
    int64_t off;

    HASH_ITER(hh, w->offsets.table, t, tmp) {
        if (!offsets_advance(t, &off))
            continue;
        if (list == NULL)
            list = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(list, t->topic, t->partition)->offset = off;
    }
    if (list == NULL)
        return;
    /* a partition revoked meanwhile answers _STATE: harmless */
    rd_kafka_offsets_store(w->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Backpressure in two steps. At the cap the loop first just stops taking
 * messages (consume() returns at once): librdkafka's own prefetch limit
 * holds memory, and a backlog of quick events (a replay) drains without the
 * cost of a pause, which drops and refetches what was prefetched. Only an
 * overload lasting over a second pauses every partition, so that the loop
 * can poll again and answer the group's rebalances meanwhile.
 * Also paused: a partition whose window is full, and every retry partition
 * while IMGCACHE_RETRY_HOLD_MAX retry events are held until due (they are
 * the memory a late retry costs; below that, events behind a held one are
 * taken and done as they come due). */
#define PAUSE_AFTER_MS 1000

static void sync_pause(struct worker *w)
{
    rd_kafka_topic_partition_list_t *pause = NULL, *resume = NULL;
    struct ptrack *t, *tmp;
    long long now = mono_ms();

    if (w->outstanding >= w->max_outstanding) {
        if (w->over_since_ms == 0)
            w->over_since_ms = now;
        if (now - w->over_since_ms >= PAUSE_AFTER_MS)
            w->paused = 1;
    } else if (w->outstanding <= w->max_outstanding / 2) {
        w->over_since_ms = 0;
        w->paused = 0;
    }
    HASH_ITER(hh, w->offsets.table, t, tmp) {
        int holding_enough = w->n_in[JOB_HELD] >= w->hold_max &&
                             strcmp(t->topic, w->retry_topic) == 0;
        int want = w->paused || holding_enough || offsets_full(t);
        rd_kafka_topic_partition_list_t **list = want ? &pause : &resume;
        if (want == t->paused)
            continue;
        if (*list == NULL)
            *list = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(*list, t->topic, t->partition);
        t->paused = want;
    }
    if (pause) {
        rd_kafka_pause_partitions(w->rk, pause);
        rd_kafka_topic_partition_list_destroy(pause);
    }
    if (resume) {
        rd_kafka_resume_partitions(w->rk, resume);
        rd_kafka_topic_partition_list_destroy(resume);
    }
}

static void io_step(struct worker *w);

static int seen_before(struct worker *w, const char *topic, int32_t partition)
{
    char key[300];
    char **grown;
    snprintf(key, sizeof key, "%s\x1f%d", topic, (int)partition);
    for (int i = 0; i < w->seen_count; i++)
        if (strcmp(w->seen[i], key) == 0)
            return 1;
    grown = realloc(w->seen, (size_t)(w->seen_count + 1) * sizeof *grown);
    if (grown == NULL)
        return 1;
    w->seen = grown;
    w->seen[w->seen_count] = strdup(key);
    if (w->seen[w->seen_count])
        w->seen_count++;
    return 0;
}

/* Unfinished events of the revoked partitions, but for retries held until
 * due: those will not finish while a revoke waits (the next owner holds them
 * again), so waiting for them would only stall the rebalance. */
static size_t revoked_in_flight(struct worker *w, rd_kafka_topic_partition_list_t *parts)
{
    size_t n = 0;
    struct job *j;
    struct wevent *e;

    for (int i = 0; i < parts->cnt; i++) {
        struct ptrack *t = offsets_find(&w->offsets, parts->elems[i].topic, parts->elems[i].partition);
        if (t)
            n += t->len - t->n_done;
    }
    DL_FOREACH(w->q_held, j) {
        LL_FOREACH(j->events, e) {
            if (n > 0 && e->pt->attached &&
                rd_kafka_topic_partition_list_find(parts, e->pt->topic, e->pt->partition))
                n--;
        }
    }
    return n;
}

/* Jobs not downloading yet whose every event belongs to a revoked
 * partition: the partition's new owner gets those events again (their
 * offsets were not stored), so drop them here rather than hoard work the
 * group has moved elsewhere. */
static void drop_orphans(struct worker *w)
{
    struct job *j, *tmp;

    HASH_ITER(hh, w->jobs, j, tmp) {
        struct wevent *e;
        int orphan = 1;

        if (j->state != JOB_NEW && j->state != JOB_WAITING && j->state != JOB_READY &&
            j->state != JOB_BREAKER && j->state != JOB_HELD)
            continue;
        LL_FOREACH(j->events, e) {
            if (e->pt->attached) {
                orphan = 0;
                break;
            }
        }
        if (!orphan)
            continue;
        if (j->leased)
            release_leases(w, &j, 1);
        DL_DELETE(*queue_of(w, j->state), j);
        w->n_in[j->state]--;
        HASH_DEL(w->jobs, j);
        w->n_jobs--;
        w->outstanding -= j->n_events;
        job_free(j);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct worker *w = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;

    w->last_rebalance_ms = mono_ms();
    w->rebalance_pending = err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *p = &parts->elems[i];
            struct ptrack *t = offsets_assign(&w->offsets, p->topic, p->partition);
            if (!seen_before(w, p->topic, p->partition) && w->cfg->from_beginning) {
                /* an explicit offset overrides the group's committed one */
                p->offset = RD_KAFKA_OFFSET_BEGINNING;
                if (t)
                    t->from_beginning = 1;
            }
        }
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        /* librdkafka 2.0.2 keeps a partition paused across a rebalance:
         * the new trackers' state is unknown (-1), so sync_pause sets it */
        sync_pause(w);
        w->assigned_once = 1;
        log_info("event=assigned partitions=%d protocol=%s", parts->cnt, cooperative ? "cooperative" : "eager");
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        int lost = rd_kafka_assignment_lost(rk);
        long long deadline = mono_ms() + (w->cfg->grace_ms < REVOKE_WAIT_MS ? w->cfg->grace_ms : REVOKE_WAIT_MS);
        /* let the revoked partitions' work finish briefly, so the next owner
         * does not redo it; what is left is redone there (at-least-once) */
        while (!lost && !w->closing && revoked_in_flight(w, parts) > 0 && mono_ms() < deadline) {
            io_step(w);
            fetch_wait(w->fetch, -1, 20);
        }
        if (!lost)
            store_offsets(w);
        for (int i = 0; i < parts->cnt; i++) {
            struct ptrack *t = offsets_revoke(&w->offsets, parts->elems[i].topic, parts->elems[i].partition);
            if (t)
                offsets_release(t);
        }
        drop_orphans(w);
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
        log_info("event=revoked partitions=%d lost=%d", parts->cnt, lost);
    } else {
        log_warn("event=rebalance_error reason=\"%s\"", rd_kafka_err2str(err));
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
    }
    if (error) {
        log_warn("event=assign_failed reason=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

/* A header's value as a NUL-terminated string in buf; "" when absent. */
static const char *header(rd_kafka_message_t *m, const char *name, char *buf, size_t len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t n = 0;

    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR && v) {
        if (n >= len)
            n = len - 1;
        memcpy(buf, v, n);
        buf[n] = '\0';
    }
    return buf;
}

static struct job *job_new(struct worker *w, rd_kafka_message_t *m, char *url)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->w = w;
    j->url = url;
    snprintf(j->src_topic, sizeof j->src_topic, "%s", rd_kafka_topic_name(m->rkt));
    j->src_partition = m->partition;
    j->src_offset = m->offset;
    /* keep the message as received: retry and dead letter carry it on */
    j->msg_keylen = m->key_len;
    j->msg_valuelen = m->len;
    j->msg_key = malloc(m->key_len ? m->key_len : 1);
    j->msg_value = malloc(m->len ? m->len : 1);
    if (j->msg_key == NULL || j->msg_value == NULL) {
        j->url = NULL;
        job_free(j);
        return NULL;
    }
    if (m->key_len)
        memcpy(j->msg_key, m->key, m->key_len);
    if (m->len)
        memcpy(j->msg_value, m->payload, m->len);
    w->n_jobs++;
    return j;
}

static void handle_message(struct worker *w, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    struct ptrack *t = offsets_find(&w->offsets, topic, m->partition);
    int from_retry = strcmp(topic, w->retry_topic) == 0;
    struct wevent *e;
    struct event ev;
    struct job *j = NULL;
    char err[300], buf[64];
    long long due_wall = 0;
    int attempts = 0;

    if (t == NULL)
        return; /* not ours (any more): the owner gets it */
    e = calloc(1, sizeof *e);
    if (e == NULL || offsets_push(t, m->offset, &e->seq) != 0) {
        free(e);
        log_error("event=out_of_memory");
        return;
    }
    e->pt = t;
    w->n_consumed++;
    if (m->payload == NULL) {
        /* a tombstone (null value), normal on a compacted topic: nothing to
         * fetch, nothing to dead-letter; done once the events before it are */
        w->n_tombstones++;
        log_debug("event=tombstone topic=%s partition=%d offset=%lld", topic, (int)m->partition,
                  (long long)m->offset);
        offsets_finish(t, e->seq);
        offsets_release(t);
        free(e);
        return;
    }
    w->outstanding++;
    if (from_retry) {
        long long v;
        if (event_parse_time(header(m, "next_attempt_at", buf, sizeof buf), &v) == 0) {
            long long now_wall = event_now_ms();
            due_wall = retry_due_clamp(v, now_wall, w->hold_limit_ms);
            if (due_wall != v)
                log_warn("event=retry_due_clamped topic=%s partition=%d offset=%lld next_attempt_at=\"%s\" "
                         "held_ms=%lld", topic, (int)m->partition, (long long)m->offset, buf,
                         w->hold_limit_ms);
        }
        attempts = atoi(header(m, "attempts", buf, sizeof buf));
        if (attempts < 0 || attempts > 1000)
            attempts = 0;
    }
    if (event_decode(m->payload, m->len, &ev, err, sizeof err) != 0) {
        /* nothing to fetch: the event goes to the dead-letter topic */
        w->n_bad_events++;
        log_warn("event=bad_event topic=%s partition=%d offset=%lld reason=\"%s\"", topic,
                 (int)m->partition, (long long)m->offset, err);
        j = job_new(w, m, NULL);
        if (j == NULL)
            goto oom;
        LL_PREPEND(j->events, e);
        j->n_events = 1;
        snprintf(j->error_class, sizeof j->error_class, "bad_event");
        snprintf(j->error_msg, sizeof j->error_msg, "%s", err);
        j->permanent = 1;
        j->dead_letter = 1;
        j->attempts = attempts;
        j->first_failed_ms = event_now_ms();
        j->state = JOB_PUBLISH;
        w->n_in[JOB_PUBLISH]++;
        DL_APPEND(w->q_publish, j);
        return;
    }
    HASH_FIND_STR(w->jobs, ev.source_url, j);
    if (j && from_retry &&
        (j->state == JOB_PUBLISH || j->state == JOB_PUBLISHING || j->state == JOB_FAILED)) {
        /* the retry of a failure still being recorded (it can arrive before
         * its own delivery report): it is new work, not part of that outcome.
         * Other events of the URL do join the failing job and finish with it. */
        HASH_DEL(w->jobs, j);
        j->in_table = 0;
        j = NULL;
    }
    if (j == NULL) {
        j = job_new(w, m, ev.source_url);
        if (j == NULL) {
            event_clear(&ev);
            goto oom;
        }
        ev.source_url = NULL; /* owned by the job now */
        HASH_ADD_KEYPTR(hh, w->jobs, j->url, strlen(j->url), j);
        j->in_table = 1;
        j->state = JOB_NEW;
        if (from_retry && due_wall > event_now_ms()) {
            /* not due: hold it in memory until it is; the partition goes on
             * (its stored offset stays before this event until it is done) */
            j->due_ms = mono_ms() + (due_wall - event_now_ms());
            j->state = JOB_HELD;
            log_debug("event=retry_held topic=%s partition=%d offset=%lld due_in_ms=%lld", topic,
                      (int)m->partition, (long long)m->offset, due_wall - event_now_ms());
        }
        w->n_in[j->state]++;
        DL_APPEND(*queue_of(w, j->state), j);
    }
    if (from_retry) {
        long long first;
        j->from_retry = 1;
        if (attempts > j->attempts)
            j->attempts = attempts;
        if (event_parse_time(header(m, "first_failed_at", buf, sizeof buf), &first) == 0 &&
            (j->first_failed_ms == 0 || first < j->first_failed_ms))
            j->first_failed_ms = first;
    }
    if (j->data_url == NULL && ev.data_url != NULL) {
        j->data_url = ev.data_url; /* the bytes of a data: URL travel in its event */
        ev.data_url = NULL;
    }
    LL_PREPEND(j->events, e);
    j->n_events++;
    event_clear(&ev);
    return;
oom:
    log_error("event=out_of_memory");
    offsets_release(t);
    w->outstanding--;
    free(e);
}

static void consume(struct worker *w)
{
    /* at the cap and not yet paused: take nothing (see sync_pause) */
    if (w->outstanding >= w->max_outstanding && !w->paused)
        return;
    /* enough work that still needs a download slot: leave the rest in
     * Kafka, where a worker that joins the group can take it */
    if (w->n_in[JOB_NEW] + w->n_in[JOB_READY] > 2 * (size_t)w->cfg->concurrency + BATCH_MAX)
        return;
    for (int i = 0; i < CONSUME_BUDGET; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 0);
        if (m == NULL)
            break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("event=consume_error reason=\"%s\"", rd_kafka_message_errstr(m));
        } else {
            handle_message(w, m);
        }
        rd_kafka_message_destroy(m);
        if (w->outstanding >= w->max_outstanding)
            break;
    }
}

/* Everything but taking new messages: used by the loop and during revoke. */
static void io_step(struct worker *w)
{
    if (w->q_new)
        lookup_and_lease(w, &w->q_new, BATCH_MAX);
    if (w->q_waiting && mono_ms() >= w->next_recheck_ms) {
        lookup_and_lease(w, &w->q_waiting, BATCH_MAX);
        w->next_recheck_ms = mono_ms() + w->cfg->recheck_ms / 4;
    }
    wake_timed(w);
    start_ready(w);
    fetch_perform(w->fetch);
    publish_failures(w);
    kafka_producer_poll(w->dlq);
    write_results(w);
    start_ready(w);
    store_offsets(w);
}

/* ---------------------------------------------------------------- drain -- */

/* 1 when this assignment of the partition started at its beginning. */
static int replaying(struct worker *w, const char *topic, int32_t partition)
{
    struct ptrack *t = offsets_find(&w->offsets, topic, partition);
    return t != NULL && t->from_beginning;
}

/* The group's committed offsets of parts, asked through a handle of its
 * own that never joins the group: this worker's own consumer, a member
 * waiting in a rebalance (as when it got no assignment), has its OffsetFetch
 * held until the rebalance ends. */
static int group_committed(struct worker *w, rd_kafka_topic_partition_list_t *parts, char *err,
                           size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t e;
    char errstr[512];
    int rc = -1;

    kafka_conf_set_logger(conf);
    if (kafka_conf_apply(conf, w->cfg, w->worker_id, err, errlen) != 0)
        goto out;
    if (rd_kafka_conf_set(conf, "group.id", w->cfg->group, errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        errmsg_set(err, errlen, "cannot configure the offsets reader: %s", errstr);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        errmsg_set(err, errlen, "cannot create the offsets reader: %s", errstr);
        goto out;
    }
    conf = NULL; /* the handle owns it */
    e = rd_kafka_committed(rk, parts, DRAIN_OFFSETS_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        errmsg_set(err, errlen, "cannot read the group's committed offsets: %s", rd_kafka_err2str(e));
        goto out;
    }
    rc = 0;
out:
    if (rk != NULL)
        rd_kafka_destroy(rk); /* never subscribed: no group to leave */
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rc;
}

/* Events of the topic the group has not consumed: its end offsets minus
 * its committed ones (from the beginning with --from-beginning when
 * honour_from_beginning: this run replays them), for a drain that has no
 * partition of its own. -1 with a reason when the broker cannot tell. */
static long long group_lag(struct worker *w, int honour_from_beginning, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(w->rk, w->cfg->topic, NULL);
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t e;
    long long lag = -1;

    if (rkt == NULL) {
        errmsg_set(err, errlen, "cannot look up topic %s", w->cfg->topic);
        goto out;
    }
    e = rd_kafka_metadata(w->rk, 0, rkt, &md, 5000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1) {
        errmsg_set(err, errlen, "no metadata for topic %s: %s", w->cfg->topic, rd_kafka_err2str(e));
        goto out;
    }
    if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        lag = 0; /* no topic, no events */
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, w->cfg->topic, md->topics[0].partitions[i].id);
    if (group_committed(w, parts, err, errlen) != 0)
        goto out;
    lag = 0;
    for (int i = 0; i < parts->cnt; i++) {
        int64_t low = 0, high = 0, pos = parts->elems[i].offset;
        e = rd_kafka_query_watermark_offsets(w->rk, w->cfg->topic, parts->elems[i].partition, &low, &high, 5000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            errmsg_set(err, errlen, "cannot read the end offsets of %s: %s", w->cfg->topic, rd_kafka_err2str(e));
            lag = -1;
            goto out;
        }
        if (pos < low || (honour_from_beginning && w->cfg->from_beginning))
            pos = low;
        if (high > pos)
            lag += high - pos;
    }
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return lag;
}

/* 1 when every assigned partition's position is at its end. */
static int caught_up(struct worker *w)
{
    rd_kafka_topic_partition_list_t *assignment = NULL, *unread = NULL, *ends = NULL;
    int ok = 1;

    if (rd_kafka_assignment(w->rk, &assignment) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (assignment->cnt == 0) {
        /* nothing of its own to read (more workers than partitions, or a
         * member between the two steps of a cooperative rebalance): done
         * only when the group as a whole has read everything */
        char why[300];
        rd_kafka_topic_partition_list_destroy(assignment);
        return group_lag(w, 0, why, sizeof why) == 0;
    }
    rd_kafka_position(w->rk, assignment);
    /* partitions with nothing consumed in this run: their committed offset
     * tells where the group is (one request for all of them), unless this
     * run replays them from the beginning (--from-beginning): the group's
     * offsets, at the end, say nothing about what this run has read */
    for (int i = 0; i < assignment->cnt; i++) {
        if (assignment->elems[i].offset >= 0 ||
            replaying(w, assignment->elems[i].topic, assignment->elems[i].partition))
            continue;
        if (unread == NULL)
            unread = rd_kafka_topic_partition_list_new(assignment->cnt);
        rd_kafka_topic_partition_list_add(unread, assignment->elems[i].topic, assignment->elems[i].partition);
    }
    if (unread && rd_kafka_committed(w->rk, unread, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        ok = 0;
    /* the cached end offsets of the retry topic may predate a retry just
     * published (by us or by another worker into a partition we own): ask
     * the broker, all in one request (END as the time: the end offset) */
    if (ok) {
        ends = rd_kafka_topic_partition_list_new(assignment->cnt);
        for (int i = 0; i < assignment->cnt; i++)
            if (strcmp(assignment->elems[i].topic, w->retry_topic) == 0)
                rd_kafka_topic_partition_list_add(ends, assignment->elems[i].topic,
                                                  assignment->elems[i].partition)->offset = RD_KAFKA_OFFSET_END;
        if (ends->cnt > 0 && rd_kafka_offsets_for_times(w->rk, ends, 5000) != RD_KAFKA_RESP_ERR_NO_ERROR)
            ok = 0;
    }
    for (int i = 0; i < assignment->cnt && ok; i++) {
        rd_kafka_topic_partition_t *p = &assignment->elems[i];
        int64_t low = 0, high = 0, pos = p->offset;
        if (pos < 0 && unread && !replaying(w, p->topic, p->partition)) {
            rd_kafka_topic_partition_t *c = rd_kafka_topic_partition_list_find(unread, p->topic, p->partition);
            pos = c ? c->offset : -1;
        }
        /* every fetch response refreshes the cached end offset; asking the
         * broker waits behind the fetcher's long poll, so only when unknown */
        if ((rd_kafka_get_watermark_offsets(w->rk, p->topic, p->partition, &low, &high) !=
                 RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 || low < 0) &&
            rd_kafka_query_watermark_offsets(w->rk, p->topic, p->partition, &low, &high, 2000) !=
                RD_KAFKA_RESP_ERR_NO_ERROR) {
            ok = 0;
            break;
        }
        if (ends) {
            rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(ends, p->topic, p->partition);
            if (e && (e->err != RD_KAFKA_RESP_ERR_NO_ERROR || e->offset < 0)) {
                ok = 0;
                break;
            }
            if (e && e->offset > high)
                high = e->offset;
        }
        if (pos < 0)
            pos = low; /* no commit: the group starts at the beginning */
        if (pos < high) {
            log_debug("event=not_caught_up topic=%s partition=%d position=%lld end=%lld", p->topic,
                      (int)p->partition, (long long)pos, (long long)high);
            ok = 0;
        }
    }
    if (ends)
        rd_kafka_topic_partition_list_destroy(ends);
    if (unread)
        rd_kafka_topic_partition_list_destroy(unread);
    rd_kafka_topic_partition_list_destroy(assignment);
    return ok;
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

    if (w->n_fetching != 0 || w->n_jobs != w->n_in[JOB_HELD])
        return 0;
    DL_FOREACH(w->q_held, j) {
        if (j->due_ms < not_before_ms)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ lifecycle -- */

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

static int kafka_consumer_new(struct worker *w, char *err, size_t errlen)
{
    static const char *const defaults[][2] = {
        { "partition.assignment.strategy", "cooperative-sticky" },
        { "enable.auto.commit", "true" },
        { "enable.auto.offset.store", "false" },
        { "auto.commit.interval.ms", "1000" },
        /* a new group must not miss events produced before it existed */
        { "auto.offset.reset", "earliest" },
        /* bound what librdkafka prefetches: memory stays flat */
        { "queued.max.messages.kbytes", "8192" },
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *topics = NULL;
    char errstr[512];
    rd_kafka_resp_err_t e;
    int rc = -1;

    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], errstr, sizeof errstr);
    if (rd_kafka_conf_set(conf, "group.id", w->cfg->group, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "IMGCACHE_GROUP: %s", errstr);
        goto out;
    }
    if (kafka_conf_apply(conf, w->cfg, w->worker_id, err, errlen) != 0)
        goto out;
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    kafka_conf_set_logger(conf);
    rd_kafka_conf_set_opaque(conf, w);
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (w->rk == NULL) {
        snprintf(err, errlen, "kafka consumer: %s", errstr);
        goto out;
    }
    conf = NULL; /* owned by w->rk */
    rd_kafka_poll_set_consumer(w->rk);
    w->queue = rd_kafka_queue_get_consumer(w->rk);
    if (pipe2(w->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto out;
    }
    /* librdkafka writes a byte when its queue becomes non-empty: the loop
     * sleeps in curl_multi_poll on both the sockets and this pipe */
    rd_kafka_queue_io_event_enable(w->queue, w->wake[1], "1", 1);
    topics = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(topics, w->cfg->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(topics, w->retry_topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(w->rk, topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "subscribe to %s and %s: %s", w->cfg->topic, w->retry_topic, rd_kafka_err2str(e));
        goto out;
    }
    rc = 0;
out:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (topics)
        rd_kafka_topic_partition_list_destroy(topics);
    return rc;
}

int worker_new(const struct config *cfg, struct worker **out, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof *w);
    struct fetch_opts fo;
    struct fetch_callbacks cb = { on_data, on_done };
    char host[128], real[PATH_MAX];
    int rc = -1;

    *out = NULL;
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->cfg = cfg;
    w->wake[0] = w->wake[1] = -1;
    w->db_backoff_ms = 250;
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
    if (parse_retry_delays(w, cfg->retry_backoff, err, errlen) != 0)
        goto out;
    w->hold_limit_ms = retry_hold_limit_ms(w->retry_delays, w->n_retry_delays, cfg->retry_after_max_ms);
    /* the retries this worker schedules itself and short Retry-Afters, not
     * a server's long ask */
    w->drain_hold_ms = retry_hold_limit_ms(w->retry_delays, w->n_retry_delays, cfg->drain_wait_ms);
    w->next_held_due_ms = LLONG_MAX;
    if (cfg->http_proxy[0] && check_proxy_url(cfg->http_proxy, err, errlen) != 0)
        goto out;
    {
        const char *trusted[] = { cfg->beeper_media_server, cfg->beeper_api_url, NULL };
        if (netguard_new(cfg->allow_hosts, trusted, &w->guard, err, errlen) != 0)
            goto out;
    }
    snprintf(w->retry_topic, sizeof w->retry_topic, "%s-retry", cfg->topic);
    snprintf(w->dlt_topic, sizeof w->dlt_topic, "%s-dlt", cfg->topic);
    srandom((unsigned)getpid() ^ (unsigned)mono_ms());
    if (breaker_new(cfg->breaker_threshold, cfg->breaker_cooldown_ms, 600000, &w->breaker) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (cfg->beeper_api_url[0])
        w->api_origin = url_origin(cfg->beeper_api_url);
    if (cfg->beeper_media_server[0])
        w->media_origin = url_origin(cfg->beeper_media_server);
    if (store_open(cfg->storage_dir, &w->store, err, errlen) != 0)
        goto out;
    if (cfg->public_url[0]) {
        snprintf(w->public_base, sizeof w->public_base, "%s", cfg->public_url);
    } else {
        if (realpath(cfg->storage_dir, real) == NULL)
            snprintf(real, sizeof real, "%s", cfg->storage_dir);
        snprintf(w->public_base, sizeof w->public_base, "file://%s", real);
    }
    while (w->public_base[0] && w->public_base[strlen(w->public_base) - 1] == '/')
        w->public_base[strlen(w->public_base) - 1] = '\0';
    w->rcfg = (struct resolve_config){
        .media_dir = cfg->beeper_media_dir, .media_server = cfg->beeper_media_server,
        .media_token = cfg->beeper_media_token, .api_url = cfg->beeper_api_url,
        .api_token = cfg->beeper_api_token,
    };
    if (db_connect(cfg->database_url, &w->db, err, errlen) != 0)
        goto out;
    if (db_check_schema(w->db, err, errlen) != 0)
        goto out;
    if (lease_connect(cfg->redis_url, w->worker_id, cfg->lease_ttl_ms, &w->lease, err, errlen) != 0)
        goto out;
    fo = (struct fetch_opts){
        .connect_timeout_ms = cfg->connect_timeout_ms, .timeout_ms = cfg->fetch_timeout_ms,
        .max_bytes = cfg->max_bytes, .max_redirects = 3,
        .max_connections = cfg->concurrency, .user_agent = "imgcache/1", .guard = w->guard,
        .proxy = cfg->http_proxy,
    };
    if (fetch_new(&fo, &cb, &w->fetch, err, errlen) != 0)
        goto out;
    if (kafka_producer_new(cfg, w->worker_id, &w->dlq, err, errlen) != 0)
        goto out;
    w->dlq->on_delivery = on_published;
    w->dlq->on_delivery_ctx = w;
    {
        const char *topics[] = { w->retry_topic, w->dlt_topic };
        for (size_t i = 0; i < 2; i++) {
            char why[300];
            /* not fatal: publishes wait for the topic; but say so now */
            if (kafka_producer_prepare(w->dlq, topics[i], 5000, why, sizeof why) != 0)
                log_warn("event=topic_unavailable reason=\"%s\"", why);
        }
    }
    if (kafka_consumer_new(w, err, errlen) != 0)
        goto out;
    w->batch = calloc(1, sizeof *w->batch);
    if (w->batch == NULL || body_pool_init(&w->bodies, (size_t)cfg->body_memory) != 0) {
        snprintf(err, errlen, "out of memory");
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
             "in_flight=%zu outstanding=%zu held=%zu spilled_to_disk=%lld tombstones=%lld",
             event, w->n_consumed, w->n_already_cached, w->n_downloaded, w->n_new_blobs, w->n_committed,
             w->n_failed, w->n_retries, w->n_dead_letters, w->n_bad_events, w->n_waited, w->n_fetching,
             w->outstanding, w->n_in[JOB_HELD], w->n_spilled, w->n_tombstones);
}

static void drain_wake_pipe(struct worker *w)
{
    char buf[64];
    while (read(w->wake[0], buf, sizeof buf) > 0)
        ;
}

int worker_run(struct worker *w, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    long long grace_deadline = 0;
    int rc = 0;

    w->started_ms = mono_ms();
    w->next_progress_ms = w->started_ms + 10000;
    log_info("event=started worker_id=%s group=%s topic=%s concurrency=%ld drain=%d from_beginning=%d",
             w->worker_id, w->cfg->group, w->cfg->topic, w->cfg->concurrency, w->cfg->drain,
             w->cfg->from_beginning);
    if ((w->cfg->beeper_media_dir == NULL || w->cfg->beeper_media_dir[0] == '\0') &&
        (w->cfg->beeper_media_server == NULL || w->cfg->beeper_media_server[0] == '\0') &&
        (w->cfg->beeper_api_token == NULL || w->cfg->beeper_api_token[0] == '\0'))
        log_warn("event=config_warning reason=\"file:// avatars and local paths cannot be read: set "
                 "BEEPER_MEDIA_DIR (Beeper's media folder), BEEPER_MEDIA_SERVER or BEEPER_API_TOKEN "
                 "(Beeper Desktop serves them); until then they fail as class config, retryable\"");
    for (;;) {
        long long now = mono_ms();
        int timeout = 100;

        if (*stop && !w->stopping) {
            /* keep partitions whose events we will not finish from being
             * fetched further; in-flight work still completes */
            w->stopping = 1;
            grace_deadline = now + w->cfg->grace_ms;
            log_info("event=stopping in_flight=%zu outstanding=%zu grace_ms=%lld", w->n_fetching,
                     w->outstanding, w->cfg->grace_ms);
        }
        drain_wake_pipe(w);
        if (!w->stopping) {
            consume(w);
        } else {
            /* keep serving group events, take no new work */
            rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 0);
            if (m)
                rd_kafka_message_destroy(m); /* not ours to finish: redelivered later */
        }
        io_step(w);
        if (!w->stopping)
            sync_pause(w);

        /* held retries need no grace: nothing of theirs is in flight */
        if (w->stopping && (idle(w) || only_held(w, 0) || now >= grace_deadline))
            break;
        /* --drain does not wait for a retry due later than this worker's own
         * longest backoff or IMGCACHE_DRAIN_WAIT (a server's long
         * Retry-After): the next run does */
        if (!idle(w) && !(w->cfg->drain && only_held(w, now + w->drain_hold_ms)))
            w->idle_since_ms = 0;
        else if (w->idle_since_ms == 0)
            w->idle_since_ms = now;
        if (w->cfg->drain && !w->stopping) {
            if (!w->assigned_once && now - w->started_ms > w->cfg->drain_wait_ms) {
                /* nothing assigned has not drained anything, unless there
                 * was nothing to drain */
                char why[300];
                long long lag = group_lag(w, 1, why, sizeof why);
                if (lag == 0) {
                    log_info("event=drained reason=\"no partition assignment within %lld ms, and group %s "
                             "has no unconsumed event on %s\"", w->cfg->drain_wait_ms, w->cfg->group,
                             w->cfg->topic);
                    break;
                }
                if (lag > 0)
                    errmsg_set(err, errlen, "not drained: no partition assignment within %lld ms "
                               "(IMGCACHE_DRAIN_WAIT) while group %s has %lld unconsumed events on %s",
                               w->cfg->drain_wait_ms, w->cfg->group, lag, w->cfg->topic);
                else
                    errmsg_set(err, errlen, "not drained: no partition assignment within %lld ms "
                               "(IMGCACHE_DRAIN_WAIT), and %s", w->cfg->drain_wait_ms, why);
                rc = -1;
                break;
            }
            /* only after a while with nothing to do: a backlog's loop is
             * idle for moments too, and the check blocks on the broker */
            if (w->assigned_once && w->idle_since_ms && now - w->idle_since_ms >= DRAIN_IDLE_MS &&
                now >= w->next_drain_check_ms && !w->rebalance_pending &&
                now - w->last_rebalance_ms >= DRAIN_IDLE_MS) {
                w->next_drain_check_ms = now + 300;
                if (caught_up(w)) {
                    log_info("event=drained reason=\"caught up with every assigned partition\" held=%zu",
                             w->n_in[JOB_HELD]);
                    break;
                }
            }
        }
        if (now >= w->next_progress_ms) {
            progress(w, "progress");
            w->next_progress_ms = now + 10000;
        }
        if (w->q_new || (w->q_ready && may_start(w)))
            timeout = 0;
        else if (w->db_down || w->q_waiting || w->q_breaker || w->q_publish ||
                 w->dlq->queued > w->dlq->delivered + w->dlq->failed)
            timeout = 20;
        /* a retry held for an hour must not wake the loop 50 times a second */
        if (w->q_held && !w->stopping && w->next_held_due_ms - now < timeout)
            timeout = w->next_held_due_ms > now ? (int)(w->next_held_due_ms - now) : 0;
        fetch_wait(w->fetch, w->wake[0], timeout);
    }
    store_offsets(w);
    progress(w, "summary");
    return rc;
}

static void abandon_jobs(struct worker *w)
{
    struct job *j, *tmp;
    struct job *batch[BATCH_MAX];
    size_t n = 0;

    /* unfinished work: its offsets stay unstored, so it is redelivered */
    HASH_ITER(hh, w->jobs, j, tmp) {
        if (j->state == JOB_FETCHING)
            fetch_cancel(w->fetch, j);
        if (j->leased && n < BATCH_MAX)
            batch[n++] = j;
    }
    if (w->lease && n > 0)
        release_leases(w, batch, n);
    HASH_ITER(hh, w->jobs, j, tmp) {
        struct job **q = queue_of(w, j->state);
        if (q)
            DL_DELETE(*q, j);
        HASH_DEL(w->jobs, j);
        w->n_jobs--;
        job_free(j);
    }
    /* jobs out of the table (undecodable events, failures whose retry
     * started anew) are only in their queues */
    while (w->q_publish || w->q_failed) {
        struct job **q = w->q_publish ? &w->q_publish : &w->q_failed;
        j = *q;
        if (j->leased && n < BATCH_MAX)
            release_leases(w, &j, 1);
        DL_DELETE(*q, j);
        w->n_jobs--;
        job_free(j);
    }
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    w->closing = 1;
    /* first: its thread works on jobs until the batch in progress is done */
    committer_free(w->committer);
    w->committer = NULL;
    if (w->dlq) {
        /* delivery reports point at jobs: collect them all before the jobs
         * go (what is not delivered by now is redone after a restart) */
        char err[256];
        if (kafka_producer_flush(w->dlq, 5000, err, sizeof err) != 0)
            log_warn("event=publish_incomplete reason=\"%s\"", err);
        rd_kafka_purge(w->dlq->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(w->dlq->rk, 0);
        w->dlq->on_delivery = NULL;
    }
    if (w->rk) {
        if (w->queue)
            rd_kafka_queue_io_event_enable(w->queue, -1, NULL, 0);
        abandon_jobs(w);
        store_offsets(w);
        /* commits the stored offsets and leaves the group */
        rd_kafka_consumer_close(w->rk);
        if (w->queue)
            rd_kafka_queue_destroy(w->queue);
        /* librdkafka 2.0.2 asserts when destroying a cooperative-sticky
         * consumer that joined but never received its first assignment
         * (its assignor state is still NULL; fixed upstream in 2.3.0). The
         * group is already left and the process is exiting: leave the
         * handle to the OS in that one case. */
        if (w->assigned_once) {
            rd_kafka_destroy(w->rk);
        } else {
            log_debug("event=consumer_not_destroyed reason=\"never assigned (librdkafka 2.0.2 workaround)\"");
#ifdef __SANITIZE_ADDRESS__
            /* the leak check now, while the handle is still ours: at exit
             * everything under it would be reported, hiding real leaks */
            __lsan_do_leak_check();
#endif
        }
    } else {
        abandon_jobs(w);
    }
    offsets_clear(&w->offsets);
    fetch_free(w->fetch);
    kafka_producer_free(w->dlq);
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
    for (int i = 0; i < w->seen_count; i++)
        free(w->seen[i]);
    free(w->seen);
    free(w->batch);
    body_pool_release(&w->bodies); /* after the jobs: they give their blocks back */
    free(w);
}
