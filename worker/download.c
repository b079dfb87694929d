/* Downloads, and the one place their outcome is classified (see download.h). */
#include "download.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <curl/curl.h>

#include "errmsg.h"
#include "failure.h"
#include "job.h"
#include "log.h"
#include "revalidate.h"

/* The first bytes of the download, for the sniffers. */
static const unsigned char *job_head(const struct job *j, size_t *len)
{
    if (j->in_memory) {
        const unsigned char *data;
        return body_block(&j->body, 0, &data, len) && *len > 0 ? data : NULL;
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
    const unsigned char *data;
    size_t len;

    for (size_t i = 0; body_block(&j->body, i, &data, &len); i++)
        if (store_blob_write(&j->blob, data, len, err, errlen) != 0)
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

/* The verdict on the bytes sniffed so far: 0 when they may go on
 * (j->sniff_done once the format and size are known), else -1 with the
 * failure's class in *cls (permanent either way) and the reason in msg.
 * complete: the whole body was sniffed, so a sniffer that still needs more
 * bytes means a truncated image. Run while streaming and, when the format
 * was not settled by then, once at the end. */
static int judge_sniff(struct job *j, enum sniff_status st, int complete, const char *why, const char **cls,
                       char *msg, size_t msglen)
{
    if (st == SNIFF_REJECT || (complete && st == SNIFF_NEED_MORE)) {
        *cls = "not_image";
        snprintf(msg, msglen, "%s", st == SNIFF_NEED_MORE ? "truncated image" : why);
        return -1;
    }
    if (st == SNIFF_OK)
        j->sniff_done = 1;
    /* also while more is needed: a GIF frame seen so far may already be
     * over the cap */
    if (over_pixel_cap(j, msg, msglen)) {
        *cls = "too_many_pixels";
        return -1;
    }
    return 0;
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
        if (judge_sniff(j, st, 0, err, &j->abort_class, j->abort_msg, sizeof j->abort_msg) != 0) {
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
            errmsg_set(err, errlen, "out of memory");
            return SNIFF_REJECT;
        }
        const unsigned char *data;
        size_t n;
        for (size_t i = 0; body_block(&j->body, i, &data, &n); i++) {
            memcpy(flat + len, data, n);
            len += n;
        }
        st = sniff_image(flat, len, 1, &j->sniff, err, errlen);
        free(flat);
        return st;
    }
    const unsigned char *all = store_blob_map(&j->blob, &len);
    if (all == NULL) {
        errmsg_set(err, errlen, "cannot read back the download");
        return SNIFF_REJECT;
    }
    st = sniff_image(all, len, 1, &j->sniff, err, errlen);
    store_unmap(all, len);
    return st;
}

/* The name of a body held in memory: its SHA-256 in one pass. */
static int hash_body(struct job *j, char *err, size_t errlen)
{
    const unsigned char *data;
    size_t len;
    struct hash h;

    if (hash_init(&h) != 0) {
        errmsg_set(err, errlen, "sha256: cannot initialise");
        return -1;
    }
    for (size_t i = 0; body_block(&j->body, i, &data, &len); i++) {
        if (hash_update(&h, data, len) != 0) {
            hash_clear(&h);
            errmsg_set(err, errlen, "sha256: cannot update");
            return -1;
        }
    }
    if (hash_final_hex(&h, j->sha256) != 0) {
        errmsg_set(err, errlen, "sha256: cannot finish");
        return -1;
    }
    store_key(j->sha256, j->sniff.extension, j->key);
    return 0;
}

/* After the whole body is in: the last sniff and pixel cap when the
 * stream did not settle them, then the name (SHA-256). A body in memory is
 * written by the committer; a file is sealed here. */
static void download_finish(struct worker *w, struct job *j)
{
    char err[300];
    int existed = 0;

    /* settled while streaming (the pixel cap included), or now */
    if (!j->sniff_done) {
        size_t head_len;
        const unsigned char *head = job_head(j, &head_len);
        int complete = (long long)head_len == job_size(j);
        enum sniff_status st = sniff_image(head, head_len, complete, &j->sniff, err, sizeof err);
        const char *cls = NULL;
        char msg[300];
        if (st == SNIFF_NEED_MORE)
            st = sniff_whole(j, err, sizeof err);
        if (judge_sniff(j, st, 1, err, &cls, msg, sizeof msg) != 0) {
            failure_record(w, j, cls, 1, 0, "%s", msg);
            return;
        }
    }
    if (j->in_memory) {
        if (hash_body(j, err, sizeof err) != 0) {
            failure_record(w, j, "internal", 0, 0, "%s", err);
            return;
        }
    } else {
        /* named now, made durable with the rest of its commit batch */
        if (store_blob_seal(w->store, &j->blob, j->sniff.extension, j->sha256, j->key, &existed,
                            err, sizeof err) != 0) {
            failure_record(w, j, "storage", 0, 0, "%s", err);
            return;
        }
        /* a new blob is counted when the committer names it (handoff_collect) */
    }
    w->n_downloaded++;
    job_move(w, j, JOB_COMMIT);
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
    failure_record(w, j, "auth_refused", 0, (int)status, "HTTP %ld from %s: %s refused, not this image's fault",
             status, j->origin, variable);
}

/* libcurl finished a transfer (inside fetch_perform): only note it; the
 * loop settles it right after, in download_settle_finished(). */
static void on_done(void *arg, const struct fetch_result *r)
{
    struct job *j = arg;
    struct worker *w = j->w;

    /* at most one per transfer started, and at most concurrency of those */
    if (w->n_finished == w->cap_finished) {
        log_error("event=internal reason=\"more finished transfers than download slots\"");
        return;
    }
    w->finished[w->n_finished].job = j;
    w->finished[w->n_finished].result = *r;
    w->n_finished++;
}

/* The message of a failed transfer. */
static void fail_transfer(struct worker *w, struct job *j, const struct fetch_result *r,
                          const struct fetch_verdict *v)
{
    switch (r->outcome) {
    case FETCH_ABORTED:
        failure_record(w, j, j->abort_class ? j->abort_class : v->error_class, j->abort_permanent, 0, "%s",
                       j->abort_msg);
        break;
    case FETCH_HTTP_ERROR:
        failure_record(w, j, v->error_class, v->permanent, (int)v->http_status, "HTTP %ld", r->http_status);
        break;
    case FETCH_TOO_LARGE:
        failure_record(w, j, v->error_class, v->permanent, (int)v->http_status, "body is over the %lld-byte cap",
                       w->cfg->max_bytes);
        break;
    default:
        failure_record(w, j, v->error_class, v->permanent, (int)v->http_status, "%s", r->error);
        break;
    }
}

/* A finished transfer: classified once (fetch_judge), counted by the
 * origin's circuit breaker, then stored or failed. */
static void settle(struct worker *w, struct job *j, const struct fetch_result *r)
{
    struct fetch_verdict v;
    long status = r->http_status;
    int *auth_logged = NULL;
    const char *auth_variable = our_endpoint(w, j->origin, &auth_logged);

    w->n_fetching--;
    worker_metrics_download(w->metrics, mono_ms() - j->fetch_started_ms, r->bytes);
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
    fetch_judge(r, &v);
    if (v.sent)
        breaker_record(w->breaker, j->origin, v.origin_failing, mono_ms());
    if (j->revalidating && r->outcome == FETCH_HTTP_ERROR && status == 304) {
        revalidate_not_modified(w, j, r->etag, r->last_modified);
        return;
    }
    if (r->outcome != FETCH_OK) {
        fail_transfer(w, j, r, &v);
        return;
    }
    snprintf(j->etag, sizeof j->etag, "%s", r->etag);
    snprintf(j->last_modified, sizeof j->last_modified, "%s", r->last_modified);
    download_finish(w, j);
}

void download_settle_finished(struct worker *w)
{
    for (size_t i = 0; i < w->n_finished; i++)
        settle(w, w->finished[i].job, &w->finished[i].result);
    w->n_finished = 0;
}

/* A data: URL: decoded already, taken at once like a local file. */
static void read_data(struct worker *w, struct job *j)
{
    if ((long long)j->res.data_len > w->cfg->max_bytes) {
        failure_record(w, j, "too_large", 1, 0, "data: URL holds %zu bytes, over the %lld-byte cap",
                 j->res.data_len, w->cfg->max_bytes);
        return;
    }
    if (on_data(j, j->res.data, j->res.data_len) != 0) {
        failure_record(w, j, j->abort_class, j->abort_permanent, 0, "%s", j->abort_msg);
        return;
    }
    download_finish(w, j);
}

/* A file from BEEPER_MEDIA_DIR: local, small, read at once. Its size and
 * modification time are its ETag: a revalidation that finds them as
 * stored reads nothing. */
static void read_local(struct worker *w, struct job *j)
{
    char err[300];
    char buf[65536];
    char tag[REVALIDATE_FILE_TAG_MAX];
    struct stat st;
    int fd = resolve_open_confined(w->resolve_cfg.media_dir, j->res.path, err, sizeof err);
    ssize_t n;

    if (fd < 0) {
        /* a missing file may still appear (Beeper downloads lazily) */
        failure_record(w, j, errno == ENOENT ? "file_missing" : "file_refused", errno != ENOENT, 0, "%s", err);
        return;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        failure_record(w, j, "file_error", 0, 0, "stat failed: %s", strerror(errno));
        return;
    }
    revalidate_file_tag(&st, tag);
    if (j->revalidating && strcmp(tag, j->old_etag) == 0) {
        close(fd);
        revalidate_not_modified(w, j, tag, NULL);
        return;
    }
    snprintf(j->etag, sizeof j->etag, "%s", tag);
    j->last_modified[0] = '\0';
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        if (job_size(j) + n > w->cfg->max_bytes) {
            close(fd);
            failure_record(w, j, "too_large", 1, 0, "file is over the %lld-byte cap", w->cfg->max_bytes);
            return;
        }
        if (on_data(j, buf, (size_t)n) != 0) {
            close(fd);
            failure_record(w, j, j->abort_class, j->abort_permanent, 0, "%s", j->abort_msg);
            return;
        }
    }
    close(fd);
    if (n < 0) {
        failure_record(w, j, "file_error", 0, 0, "read failed: %s", strerror(errno));
        return;
    }
    download_finish(w, j);
}

/* 1 when another download may start: a free slot, and the committer not
 * too far behind (each stored image waiting for it holds a temporary file
 * and its job, so a slow disk or database slows the downloads down instead
 * of piling them up) */
int download_may_start(const struct worker *w)
{
    return (long)w->n_fetching < w->cfg->concurrency &&
           w->n_in_state[JOB_COMMIT] + w->n_in_state[JOB_COMMITTING] < COMMIT_PENDING_MAX;
}

void download_start_ready(struct worker *w)
{
    char err[300];

    while (w->q_ready && download_may_start(w)) {
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
                failure_record(w, j, "storage", 0, 0, "%s", err);
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
        j->fetch_started_ms = mono_ms();
        struct fetch_conditions cond = { j->old_etag, j->old_last_modified };
        if (fetch_start_if(w->fetch, j->res.url, j->res.auth_header, j->revalidating ? &cond : NULL, j, err,
                           sizeof err) != 0) {
            failure_record(w, j, "internal", 0, 0, "%s", err);
            continue;
        }
        w->n_fetching++;
    }
}

/* resolve_source() of the job's URL; for a data: key, of the data: URL its
 * event carried, which must hash to that key (else any event could store
 * any bytes under any key). */
int download_resolve(struct worker *w, struct job *j, char *err, size_t errlen)
{
    char key[RESOLVE_DATA_KEY_LEN + 1];

    if (j->data_url == NULL)
        return resolve_source(&w->resolve_cfg, j->url, &j->res, err, errlen);
    if (!resolve_is_data_url(j->data_url)) {
        errmsg_set(err, errlen, "the event's data_url is not a data: URL");
        return -1;
    }
    if (resolve_data_key(j->data_url, key) != 0) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    if (strcmp(key, j->url) != 0) {
        errmsg_set(err, errlen, "the event's data_url does not hash to its source_url");
        return -1;
    }
    return resolve_source(&w->resolve_cfg, j->data_url, &j->res, err, errlen);
}

/* IMGCACHE_HTTP_PROXY must be an http(s) proxy URL with a host. The value
 * may carry a password: the message never quotes it. */
int download_check_proxy(const char *proxy, char *err, size_t errlen)
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
char *download_origin_of(const char *url)
{
    struct netguard_origin o;
    char key[NETGUARD_HOST_MAX + 32];
    char ignored[128];

    if (netguard_origin_of(url, &o, ignored, sizeof ignored) != 0)
        return NULL;
    netguard_origin_key(&o, key, sizeof key);
    return strdup(key);
}

int download_open(struct worker *w, char *err, size_t errlen)
{
    const struct config *cfg = w->cfg;
    struct fetch_callbacks cb = { on_data, on_done };
    struct fetch_opts options = {
        .connect_timeout_ms = cfg->connect_timeout_ms, .timeout_ms = cfg->fetch_timeout_ms,
        .max_bytes = cfg->max_bytes, .max_redirects = 3,
        .max_connections = cfg->concurrency, .user_agent = "imgcache/1", .guard = w->guard,
        .proxy = cfg->http_proxy,
    };

    w->cap_finished = cfg->concurrency > 0 ? (size_t)cfg->concurrency : 1;
    w->finished = calloc(w->cap_finished, sizeof *w->finished);
    if (w->finished == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    return fetch_new(&options, &cb, &w->fetch, err, errlen);
}
