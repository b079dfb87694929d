#include "producer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <uthash.h>

#include "errmsg.h"
#include "log.h"

#define API_MAX_BODY (64L * 1024 * 1024) /* one response; a page of chats is far smaller */
#define API_MAX_TRIES 8                   /* per request, when rate limited (HTTP 429) */
#define API_BACKOFF_FIRST_MS 1000
#define API_BACKOFF_MAX_MS 30000
#define API_RETRY_AFTER_MAX_S 60          /* a longer Retry-After is waited this long */
#define PATH_SHOWN 200                    /* of a request path in messages */
#define API_MESSAGE_SHOWN 200             /* of the server's own error message */

/* The Beeper Desktop API client: one easy handle reused for every request
 * (keeps the connection). The token lives only in the header list. */
struct api {
    CURL *curl;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    char *base;             /* BEEPER_API_URL without a trailing '/' */
    const char *token;      /* borrowed from the config: only to keep it out of messages */
    char *body;             /* response of the last request */
    size_t len, cap;
    int too_big;
};

struct seen_cursor {
    UT_hash_handle hh;
    char cursor[];
};

static size_t api_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct api *a = arg;
    size_t n = size * nmemb;

    if (a->len + n + 1 > (size_t)API_MAX_BODY) {
        a->too_big = 1;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 65536;
        char *grown;
        while (cap < a->len + n + 1)
            cap *= 2;
        grown = realloc(a->body, cap);
        if (grown == NULL)
            return 0;
        a->body = grown;
        a->cap = cap;
    }
    memcpy(a->body + a->len, data, n);
    a->len += n;
    a->body[a->len] = '\0';
    return n;
}

static void api_release(struct api *a)
{
    if (a->curl)
        curl_easy_cleanup(a->curl);
    curl_slist_free_all(a->headers);
    free(a->base);
    free(a->body);
    memset(a, 0, sizeof *a);
}

static int api_init(struct api *a, const struct config *cfg, char *err, size_t errlen)
{
    size_t toklen = strlen(cfg->beeper_api_token);
    size_t hlen = toklen + sizeof "Authorization: Bearer ";
    char *auth = NULL;
    size_t blen;
    int rc = -1;

    memset(a, 0, sizeof *a);
    a->token = cfg->beeper_api_token;
    a->base = strdup(cfg->beeper_api_url);
    auth = malloc(hlen);
    a->curl = curl_easy_init();
    if (a->base == NULL || auth == NULL || a->curl == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    blen = strlen(a->base);
    while (blen > 0 && a->base[blen - 1] == '/')
        a->base[--blen] = '\0';
    snprintf(auth, hlen, "Authorization: Bearer %s", cfg->beeper_api_token);
    a->headers = curl_slist_append(a->headers, auth);
    if (a->headers)
        a->headers = curl_slist_append(a->headers, "Accept: application/json");
    if (a->headers == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    /* never CURLOPT_VERBOSE: it would print the Authorization header */
    if (curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, a->headers) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_ERRORBUFFER, a->errbuf) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, api_write) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, a) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, (long)cfg->sync_timeout_ms) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->sync_timeout_ms) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK ||
        curl_easy_setopt(a->curl, CURLOPT_USERAGENT, PRODUCER_NAME) != CURLE_OK) {
        errmsg_set(err, errlen, "cannot set up libcurl");
        goto out;
    }
    rc = 0;
out:
    if (auth) {
        memset(auth, 0, hlen);
        free(auth);
    }
    return rc;
}

/* Sleeps ms in 100 ms steps; 1 when a stop was asked meanwhile. */
static int nap(long long ms)
{
    while (ms > 0 && !producer_stop) {
        long long step = ms < 100 ? ms : 100;
        struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)(step * 1000000) };
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return producer_stop ? 1 : 0;
}

/* The server's own words from an error body: the "message" (else "error")
 * string of a JSON object, else the first line of a text body. At most
 * API_MESSAGE_SHOWN bytes, control characters as '?', and the token (should
 * a server echo it) as REDACTED. Empty when the body says nothing. */
static void server_message(const struct api *a, char *out, size_t outlen)
{
    json_t *root = NULL;
    const char *text = a->body ? a->body : "";
    size_t n;
    char *tok;

    out[0] = '\0';
    if (outlen == 0)
        return;
    root = json_loadb(text, a->len, 0, NULL);
    if (root != NULL) {
        const json_t *m = json_object_get(root, "message");
        if (!json_is_string(m) || json_string_length(m) == 0)
            m = json_object_get(root, "error");
        text = json_is_string(m) ? json_string_value(m) : "";
    }
    n = strcspn(text, "\r\n");
    if (n > API_MESSAGE_SHOWN)
        n = API_MESSAGE_SHOWN;
    snprintf(out, outlen, "%.*s", (int)n, text);
    json_decref(root);
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    if (a->token[0] != '\0') {
        while ((tok = strstr(out, a->token)) != NULL) {
            size_t toklen = strlen(a->token);
            memset(tok, '*', toklen);
        }
    }
}

/* The message for a non-2xx answer: status, what it usually means for the
 * Beeper Desktop API, and the server's own message. */
static void describe_status(const struct api *a, const char *path, long status, char *err,
                            size_t errlen)
{
    char said[API_MESSAGE_SHOWN + 1];
    const char *hint = "";

    server_message(a, said, sizeof said);
    if (status == 401)
        hint = "BEEPER_API_TOKEN was refused (wrong or expired); create a token in "
               "Beeper Desktop → Settings → Developers";
    else if (status == 403)
        hint = "BEEPER_API_TOKEN lacks the permission (scope) to read chats; create a token "
               "with read access in Beeper Desktop → Settings → Developers";
    else if (status == 404)
        hint = "no such endpoint: a Beeper Desktop older than the /v1 API? Update Beeper "
               "Desktop, or check BEEPER_API_URL";
    errmsg_set(err, errlen, "GET %.*s: HTTP %ld%s%s%s%s", PATH_SHOWN, path, status,
               said[0] ? ": " : "", said, hint[0] ? "; " : "", hint);
}

/* The message for a transfer that failed before any status arrived. */
static void describe_transfer_error(const struct api *a, const char *path, CURLcode cc, char *err,
                                    size_t errlen)
{
    const char *why = a->errbuf[0] ? a->errbuf : curl_easy_strerror(cc);

    if (a->too_big)
        errmsg_set(err, errlen, "GET %.*s: response larger than %ld bytes", PATH_SHOWN, path,
                   API_MAX_BODY);
    else if (cc == CURLE_COULDNT_CONNECT)
        errmsg_set(err, errlen, "GET %.*s: %s; is Beeper Desktop running, with its API "
                   "enabled (Settings → Developers), at BEEPER_API_URL?", PATH_SHOWN, path, why);
    else
        errmsg_set(err, errlen, "GET %.*s: %s", PATH_SHOWN, path, why);
}

/* After an HTTP 429: waits Retry-After seconds when given (capped), else
 * *backoff_ms, which doubles up to API_BACKOFF_MAX_MS. -1 once
 * API_MAX_TRIES attempts were made, or when a stop is asked meanwhile. */
static int wait_rate_limited(struct api *a, const char *path, int attempt, long long *backoff_ms,
                             char *err, size_t errlen)
{
    curl_off_t retry_after = 0;
    long long wait_ms;

    if (attempt >= API_MAX_TRIES) {
        errmsg_set(err, errlen, "GET %.*s: HTTP 429 (rate limited) %d times; giving up",
                   PATH_SHOWN, path, attempt);
        return -1;
    }
    curl_easy_getinfo(a->curl, CURLINFO_RETRY_AFTER, &retry_after);
    if (retry_after > 0) {
        wait_ms = (retry_after > API_RETRY_AFTER_MAX_S ? API_RETRY_AFTER_MAX_S
                                                       : (long long)retry_after) * 1000;
    } else {
        wait_ms = *backoff_ms;
        *backoff_ms = *backoff_ms * 2 > API_BACKOFF_MAX_MS ? API_BACKOFF_MAX_MS : *backoff_ms * 2;
    }
    producer_warn("event=api_rate_limited path=\"%.*s\" attempt=%d wait_ms=%lld", PATH_SHOWN,
                  path, attempt, wait_ms);
    if (nap(wait_ms)) {
        errmsg_set(err, errlen, "GET %.*s: interrupted", PATH_SHOWN, path);
        return -1;
    }
    return 0;
}

/* GET base+path and parse the JSON answer into *out (caller decrefs).
 * HTTP 429 is retried: Retry-After seconds when given, else exponential
 * back-off from 1 s, capped at 30 s, API_MAX_TRIES tries in all. Any other
 * non-2xx fails with *status set; messages name the path, never the token
 * (nor the base URL, which could hold credentials). */
static int api_get(struct api *a, const char *path, json_t **out, long *status, char *err,
                   size_t errlen)
{
    long long backoff_ms = API_BACKOFF_FIRST_MS;
    size_t ulen = strlen(a->base) + strlen(path) + 1;
    char *url = malloc(ulen);
    int rc = -1;

    *out = NULL;
    *status = 0;
    if (url == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    snprintf(url, ulen, "%s%s", a->base, path);
    if (curl_easy_setopt(a->curl, CURLOPT_URL, url) != CURLE_OK) {
        errmsg_set(err, errlen, "GET %.*s: bad URL (check BEEPER_API_URL)", PATH_SHOWN, path);
        goto out;
    }
    for (int attempt = 1;; attempt++) {
        CURLcode cc;
        json_error_t jerr;

        a->len = 0;
        a->too_big = 0;
        a->errbuf[0] = '\0';
        cc = curl_easy_perform(a->curl);
        if (cc != CURLE_OK) {
            describe_transfer_error(a, path, cc, err, errlen);
            goto out;
        }
        curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, status);
        if (*status == 429) {
            if (wait_rate_limited(a, path, attempt, &backoff_ms, err, errlen) != 0)
                goto out;
            continue;
        }
        if (*status < 200 || *status > 299) {
            describe_status(a, path, *status, err, errlen);
            goto out;
        }
        *out = json_loadb(a->body ? a->body : "", a->len, 0, &jerr);
        if (*out == NULL) {
            errmsg_set(err, errlen, "GET %.*s: response is not JSON: %s", PATH_SHOWN, path, jerr.text);
            goto out;
        }
        break;
    }
    rc = 0;
out:
    free(url);
    return rc;
}

/* "/v1/chats/<id escaped>?maxParticipantCount=-1": the chat with all its
 * participants. Replaces *chat on success; a chat that vanished meanwhile
 * (404) or an unreadable answer keeps the partial one (still marked
 * partial, so no participant is removed). */
static int fetch_full_chat(struct api *a, struct beeper_chat *chat, char *err, size_t errlen)
{
    char *id = curl_easy_escape(a->curl, chat->id, 0);
    char *path = NULL;
    json_t *obj = NULL;
    struct beeper_chat full;
    char why[512];
    long status = 0;
    size_t plen;
    int rc = -1;

    if (id == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    plen = strlen(id) + 64;
    path = malloc(plen);
    if (path == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    snprintf(path, plen, "/v1/chats/%s?maxParticipantCount=-1", id);
    if (api_get(a, path, &obj, &status, err, errlen) != 0) {
        if (status == 404) {
            producer_warn("event=chat_vanished path=\"%.*s\"", PATH_SHOWN, path);
            rc = 0;
        }
        goto out;
    }
    if (beeper_chat_from_json(obj, &full, why, sizeof why) != 0) {
        producer_warn("event=full_chat_refused path=\"%.*s\" reason=\"%s\"", PATH_SHOWN, path, why);
        rc = 0;
        goto out;
    }
    beeper_chat_clear(chat);
    *chat = full;
    rc = 0;
out:
    json_decref(obj);
    free(path);
    curl_free(id);
    return rc;
}

/* 1 when cursor was seen before (and remembers it), -1 out of memory. */
static int cursor_seen(struct seen_cursor **set, const char *cursor)
{
    struct seen_cursor *s = NULL;
    size_t len = strlen(cursor);

    HASH_FIND(hh, *set, cursor, len, s);
    if (s)
        return 1;
    s = malloc(sizeof *s + len + 1);
    if (s == NULL)
        return -1;
    memcpy(s->cursor, cursor, len + 1);
    HASH_ADD_KEYPTR(hh, *set, s->cursor, len, s);
    return 0;
}

/* Reads one page's items into the batch, publishing full batches. */
static int take_page(const struct config *cfg, struct api *a, struct publisher *pub,
                     struct chat_batch *batch, const json_t *items, long long *bad,
                     char *err, size_t errlen)
{
    char why[512];

    for (size_t i = 0; i < json_array_size(items) && !producer_stop; i++) {
        struct beeper_chat *slot = chat_batch_slot(batch);
        if (slot == NULL) {
            errmsg_set(err, errlen, "out of memory");
            return -1;
        }
        if (beeper_chat_from_json(json_array_get(items, i), slot, why, sizeof why) != 0) {
            producer_error("chat refused: %s", why);
            (*bad)++;
            continue;
        }
        chat_batch_commit(batch);
        if (slot->participants_has_more && fetch_full_chat(a, slot, err, errlen) != 0)
            return -1;
        if (batch->n >= (size_t)cfg->batch_size) {
            if (publisher_add_chats(pub, batch->items, batch->n, err, errlen) != 0)
                return -1;
            chat_batch_clear(batch);
            publisher_progress(pub, 0);
        }
    }
    return 0;
}

/* The path of the page after this one, in *path (replaced; caller frees):
 * ?cursor=<oldestCursor>&direction=before. A cursor seen before would loop
 * for ever: that is an error. */
static int next_page_path(struct api *a, const json_t *page, struct seen_cursor **cursors, int pages,
                          char **path, char *err, size_t errlen)
{
    const json_t *cur = json_object_get(page, "oldestCursor");
    char *esc = NULL;
    size_t plen;
    int seen, rc = -1;

    if (!json_is_string(cur) || json_string_length(cur) == 0) {
        errmsg_set(err, errlen, "GET %.*s: hasMore without an oldestCursor", PATH_SHOWN, *path);
        goto out;
    }
    seen = cursor_seen(cursors, json_string_value(cur));
    if (seen > 0) {
        errmsg_set(err, errlen, "the Beeper API returned the same cursor again after %d pages; "
                   "stopping instead of looping", pages);
        goto out;
    }
    esc = seen == 0 ? curl_easy_escape(a->curl, json_string_value(cur), 0) : NULL;
    if (esc == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    plen = strlen(esc) + 64;
    free(*path);
    *path = malloc(plen);
    if (*path == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    snprintf(*path, plen, "/v1/chats?cursor=%s&direction=before", esc);
    rc = 0;
out:
    curl_free(esc);
    return rc;
}

static void cursors_release(struct seen_cursor **cursors)
{
    struct seen_cursor *s, *tmp;

    HASH_ITER(hh, *cursors, s, tmp) {
        HASH_DEL(*cursors, s);
        free(s);
    }
}

/* Walks GET /v1/chats, then the page before while hasMore, and publishes
 * every chat. */
static int sync_all(const struct config *cfg, struct api *a, struct publisher *pub,
                    long long *bad, char *err, size_t errlen)
{
    struct chat_batch batch = { 0 };
    struct seen_cursor *cursors = NULL;
    json_t *page = NULL;
    char *path = strdup("/v1/chats");
    long status = 0;
    int pages = 0;
    int rc = -1;

    if (path == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    while (!producer_stop) {
        const json_t *items;

        json_decref(page);
        page = NULL;
        if (api_get(a, path, &page, &status, err, errlen) != 0)
            goto out;
        pages++;
        items = json_object_get(page, "items");
        if (!json_is_array(items)) {
            errmsg_set(err, errlen, "GET %.*s: answer has no items array", PATH_SHOWN, path);
            goto out;
        }
        log_debug("event=api_page page=%d items=%zu", pages, json_array_size(items));
        if (take_page(cfg, a, pub, &batch, items, bad, err, errlen) != 0)
            goto out;
        if (!json_is_true(json_object_get(page, "hasMore")))
            break;
        if (next_page_path(a, page, &cursors, pages, &path, err, errlen) != 0)
            goto out;
    }
    if (publisher_add_chats(pub, batch.items, batch.n, err, errlen) != 0)
        goto out;
    chat_batch_clear(&batch);
    producer_info("event=sync_pages pages=%d", pages);
    rc = 0;
out:
    cursors_release(&cursors);
    json_decref(page);
    free(path);
    chat_batch_release(&batch);
    return rc;
}

/* sync [--quiet]: every chat from the Beeper Desktop API, like import. */
int cmd_sync(const struct config *cfg)
{
    struct command_args args;
    struct publisher pub;
    struct api a = { 0 };
    struct db *db = NULL;
    long long bad = 0;
    char err[512];
    int have_pub = 0, done = 0;
    int rc = PRODUCER_EXIT_FAIL;

    if (command_args_parse(cfg, ARG_QUIET, 0, &args) != 0)
        return PRODUCER_EXIT_USAGE;
    if (cfg->beeper_api_token == NULL || cfg->beeper_api_token[0] == '\0') {
        producer_error("BEEPER_API_TOKEN is not set; create a token in Beeper Desktop → "
                       "Settings → Developers");
        return PRODUCER_EXIT_USAGE;
    }
    if (api_init(&a, cfg, err, sizeof err) != 0) {
        producer_error("%s", err);
        goto out;
    }
    if (producer_start_run(cfg, "sync", args.quiet, &db, &pub) != 0)
        goto out;
    have_pub = 1;
    log_info("event=sync_start batch_size=%ld", cfg->batch_size);
    if (sync_all(cfg, &a, &pub, &bad, err, sizeof err) != 0)
        producer_error("%s", err);
    else
        done = 1;
out:
    if (have_pub)
        rc = publisher_finish(&pub, done, bad, NULL);
    api_release(&a);
    db_close(db);
    return rc;
}
