/* The S3 backend of the store (see store_private.h). Requests are signed by
 * libcurl (CURLOPT_AWS_SIGV4); curl 7.88 leaves x-amz-content-sha256 to us
 * and signs the query string as given, so queries are built sorted and
 * encoded here (../shared/KAFKA-NOTES.md). No signature code of our own. */
#include "store_private.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#define S3_URL_MAX 2048
#define S3_CONNECT_TIMEOUT_MS 5000L
#define S3_REQUEST_TIMEOUT_MS 60000L
#define S3_REPLY_MAX 4096           /* an error document's start: enough for its <Code> */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#define S3_OBJECT_MAX (256LL << 20) /* a GET larger than this is refused */
/* uploads of a batch in parallel: one request costs a round trip and the
 * service's own work (s3proxy: ~20 ms), so one at a time would cap a
 * worker at a few dozen images per second */
#define S3_LANES 16
#define S3_LIST_MAX 1000 /* keys in one ListObjectsV2 page (its default max-keys) */

/* One connection, kept alive, for one request at a time. */
struct s3_lane {
    CURL *easy;
    char errbuf[CURL_ERROR_SIZE];
};

struct s3_client {
    pthread_mutex_t lock;     /* the lanes: one batch or one request at a time */
    struct s3_lane lanes[S3_LANES];
    char base[S3_URL_MAX];    /* the bucket's URL */
    char bucket[256];
    char prefix[512];
    char sigv4[128];
    char *userpwd;            /* key:secret (a secret: never printed) */
};

/* A reply, capped: only an error document's code is read from it. */
struct s3_reply {
    char text[S3_REPLY_MAX + 1];
    size_t len;
};

int s3_parse_url(const char *url, char *bucket, size_t bucketlen, char *prefix, size_t prefixlen,
                 char *why, size_t whylen)
{
    const char *p, *slash;
    size_t blen, plen;

    if (strncasecmp(url, "s3://", 5) != 0) {
        errmsg_set(why, whylen, "'%s' is not an s3://bucket[/prefix] URL", url);
        return -1;
    }
    p = url + 5;
    slash = strchr(p, '/');
    blen = slash ? (size_t)(slash - p) : strlen(p);
    /* S3's bucket names: 3-63 of a-z 0-9 . - */
    if (blen < 3 || blen > 63 || blen >= bucketlen || strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789.-") < blen) {
        errmsg_set(why, whylen, "'%s': the bucket name must be 3 to 63 of a-z, 0-9, '.' and '-'", url);
        return -1;
    }
    memcpy(bucket, p, blen);
    bucket[blen] = '\0';
    p = slash ? slash + 1 : p + blen;
    plen = strlen(p);
    while (plen > 0 && p[plen - 1] == '/')
        plen--;
    if (plen >= prefixlen || plen > 400) {
        errmsg_set(why, whylen, "'%s': the prefix is too long", url);
        return -1;
    }
    for (size_t i = 0; i < plen; i++) {
        /* keys are put in URLs unencoded: keep the prefix to safe bytes */
        if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./", p[i]) == NULL) {
            errmsg_set(why, whylen, "'%s': the prefix may hold only letters, digits, '-', '_', '.' and '/'",
                       url);
            return -1;
        }
    }
    memcpy(prefix, p, plen);
    prefix[plen] = '\0';
    return 0;
}

int s3_bucket_base(const char *endpoint, const char *region, const char *bucket, int path_style,
                   char *out, size_t outlen)
{
    char aws[256];
    const char *host;
    size_t scheme_len, n;
    int w;

    if (endpoint == NULL || endpoint[0] == '\0') {
        snprintf(aws, sizeof aws, "https://s3.%s.amazonaws.com", region);
        endpoint = aws;
    }
    n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/')
        n--;
    if (path_style) {
        w = snprintf(out, outlen, "%.*s/%s", (int)n, endpoint, bucket);
        return w < 0 || (size_t)w >= outlen ? -1 : 0;
    }
    host = strstr(endpoint, "://");
    if (host == NULL)
        return -1;
    scheme_len = (size_t)(host - endpoint) + 3;
    w = snprintf(out, outlen, "%.*s%s.%.*s", (int)scheme_len, endpoint, bucket, (int)(n - scheme_len),
                 endpoint + scheme_len);
    return w < 0 || (size_t)w >= outlen ? -1 : 0;
}

int s3_object_url(const char *base, const char *prefix, const char *key, char *out, size_t outlen)
{
    int w = snprintf(out, outlen, "%s/%s%s%s", base, prefix, prefix[0] ? "/" : "", key);
    return w < 0 || (size_t)w >= outlen ? -1 : 0;
}

/* RFC 3986 unreserved bytes stay, every other byte is %XX (upper case), as
 * SigV4's canonical query wants; -1 when out is too small. */
static int uri_encode(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            if (o + 1 >= outlen)
                return -1;
            out[o++] = (char)*p;
        } else {
            if (o + 3 >= outlen)
                return -1;
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    if (o >= outlen)
        return -1;
    out[o] = '\0';
    return 0;
}

int s3_list_query(const char *prefix, const char *token, char *out, size_t outlen)
{
    char enc_prefix[1600], enc_token[3200];
    int w;

    if (uri_encode(prefix, enc_prefix, sizeof enc_prefix) != 0 ||
        uri_encode(token ? token : "", enc_token, sizeof enc_token) != 0)
        return -1;
    /* sorted by name: continuation-token < list-type < prefix */
    if (token && token[0])
        w = snprintf(out, outlen, "continuation-token=%s&list-type=2&prefix=%s", enc_token, enc_prefix);
    else
        w = snprintf(out, outlen, "list-type=2&prefix=%s", enc_prefix);
    return w < 0 || (size_t)w >= outlen ? -1 : 0;
}

const char *s3_content_type(const char *key)
{
    static const char *const types[][2] = {
        { "jpg", "image/jpeg" }, { "png", "image/png" }, { "gif", "image/gif" }, { "webp", "image/webp" },
    };
    const char *dot = strrchr(key, '.');

    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot + 1, types[i][0]) == 0)
            return types[i][1];
    return "application/octet-stream";
}

static size_t keep_reply(char *data, size_t size, size_t n, void *arg)
{
    struct s3_reply *r = arg;
    size_t len = size * n, take = S3_REPLY_MAX - r->len < len ? S3_REPLY_MAX - r->len : len;

    memcpy(r->text + r->len, data, take);
    r->len += take;
    r->text[r->len] = '\0';
    return len;
}

/* The <Code> of an S3 error document ("" when none): a fixed word, never
 * the document's other fields (s3proxy echoes the access key there). */
static void error_code(const struct s3_reply *r, char *code, size_t codelen)
{
    const char *p = strstr(r->text, "<Code>"), *e;

    code[0] = '\0';
    if (p == NULL || (e = strstr(p + 6, "</Code>")) == NULL)
        return;
    p += 6;
    if ((size_t)(e - p) < codelen && strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") >= (size_t)(e - p))
        snprintf(code, codelen, "%.*s", (int)(e - p), p);
}

/* The easy handle set up for one request to url; headers (may be NULL)
 * stay the caller's. */
static void prepare(struct s3_client *c, struct s3_lane *l, const char *url, struct curl_slist *headers, struct s3_reply *r)
{
    CURL *e = l->easy;

    curl_easy_reset(e);
    l->errbuf[0] = '\0';
    r->len = 0;
    r->text[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, l->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, S3_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, S3_REQUEST_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, c->sigv4);
    curl_easy_setopt(e, CURLOPT_USERPWD, c->userpwd);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep_reply);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
}

/* What an answer means: 0 for 2xx; else a message and the class. what
 * names the request ("PUT <key>"). */
static int classify(struct s3_lane *l, struct s3_client *c, CURLcode cc, long status, const struct s3_reply *r, const char *what,
                    char *err, size_t errlen)
{
    char code[64];

    if (cc != CURLE_OK) {
        errmsg_set(err, errlen, "storage: S3 %s: cannot reach AWS_ENDPOINT_URL: %s", what,
                   l->errbuf[0] ? l->errbuf : curl_easy_strerror(cc));
        return STORE_ERR_UNAVAILABLE;
    }
    if (status >= 200 && status < 300)
        return 0;
    error_code(r, code, sizeof code);
    if (status >= 500 || status == 429 || strcmp(code, "SlowDown") == 0) {
        errmsg_set(err, errlen, "storage: S3 %s: HTTP %ld %s (the service is busy or down)", what, status, code);
        return STORE_ERR_UNAVAILABLE;
    }
    if (status == 401 || status == 403 || strcmp(code, "InvalidAccessKeyId") == 0 || strcmp(code, "SignatureDoesNotMatch") == 0) {
        errmsg_set(err, errlen, "storage: S3 refused the credentials (%s: HTTP %ld %s): check "
                   "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION", what, status, code);
        return STORE_ERR_DENIED;
    }
    if (strcmp(code, "NoSuchBucket") == 0) {
        errmsg_set(err, errlen, "storage: bucket '%s' does not exist: check IMGCACHE_STORAGE_URL and "
                   "AWS_ENDPOINT_URL", c->bucket);
        return STORE_ERR_DENIED;
    }
    if (status == 301 || strcmp(code, "AuthorizationHeaderMalformed") == 0 ||
        strcmp(code, "PermanentRedirect") == 0) {
        errmsg_set(err, errlen, "storage: bucket '%s' is in another region (HTTP %ld %s): check AWS_REGION",
                   c->bucket, status, code);
        return STORE_ERR_DENIED;
    }
    errmsg_set(err, errlen, "storage: S3 %s: HTTP %ld %s", what, status, code);
    return -1;
}

/* HEAD of the object: 1 when it is there with size bytes, 0 when not, 2
 * when with another size (a PUT replaces it), else an error class. */
static int head_object(struct s3_client *c, struct s3_lane *l, const char *key, long long size, char *err, size_t errlen)
{
    char url[S3_URL_MAX], what[160];
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: " S3_EMPTY_SHA256);
    struct s3_reply r;
    curl_off_t have = -1;
    long status = 0;
    int rc;

    if (h == NULL || s3_object_url(c->base, c->prefix, key, url, sizeof url) != 0) {
        curl_slist_free_all(h);
        errmsg_set(err, errlen, "storage: S3 key %s: out of memory or too long", key);
        return -1;
    }
    snprintf(what, sizeof what, "HEAD %s", key);
    prepare(c, l, url, h, &r);
    curl_easy_setopt(l->easy, CURLOPT_NOBODY, 1L);
    rc = (int)curl_easy_perform(l->easy);
    curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(l->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &have);
    curl_slist_free_all(h);
    if (rc == CURLE_OK && status == 404)
        return 0;
    rc = classify(l, c, (CURLcode)rc, status, &r, what, err, errlen);
    if (rc != 0)
        return rc;
    return have == size ? 1 : 2;
}

/* The headers of an object's PUT; NULL when out of memory. */
/* create_only: If-None-Match: *, so that of two writers of the same
 * bytes one makes the object and the other is told it exists (412), as
 * link() does for the folder (AWS, MinIO, R2 and s3proxy honour it). */
static struct curl_slist *put_headers(const char *key, int create_only)
{
    char line[200];
    const char *dot = strrchr(key, '.'), *slash = strrchr(key, '/');
    struct curl_slist *h = NULL, *t;

    /* the key is <aa>/<sha256>.<ext>: the payload's hash is in its name */
    snprintf(line, sizeof line, "x-amz-content-sha256: %.*s", slash && dot > slash ? (int)(dot - slash - 1) : 0,
             slash ? slash + 1 : "");
    const char *lines[] = {
        line, "Cache-Control: public, max-age=31536000, immutable", "Expect:",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        if ((t = curl_slist_append(h, lines[i])) == NULL)
            goto fail;
        h = t;
    }
    snprintf(line, sizeof line, "Content-Type: %s", s3_content_type(key));
    if ((t = curl_slist_append(h, line)) == NULL)
        goto fail;
    h = t;
    if (create_only && (t = curl_slist_append(h, "If-None-Match: *")) == NULL)
        goto fail;
    return t;
fail:
    curl_slist_free_all(h);
    return NULL;
}

/* 0 when stored, 1 when create_only found it there already (412), else
 * an error class. */
static int put_object(struct s3_client *c, struct s3_lane *l, const char *key, const char *path, long long size,
                      int create_only, char *err, size_t errlen)
{
    char url[S3_URL_MAX], what[160];
    struct curl_slist *h = put_headers(key, create_only);
    FILE *f = NULL;
    struct s3_reply r;
    long status = 0;
    int rc = -1;
    CURLcode cc;

    snprintf(what, sizeof what, "PUT %s", key);
    if (h == NULL || s3_object_url(c->base, c->prefix, key, url, sizeof url) != 0) {
        errmsg_set(err, errlen, "storage: S3 %s: out of memory or too long", what);
        goto out;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        errmsg_set(err, errlen, "storage: cannot read %s: %m", path);
        goto out;
    }
    prepare(c, l, url, h, &r);
    curl_easy_setopt(l->easy, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(l->easy, CURLOPT_READDATA, f);
    curl_easy_setopt(l->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    cc = curl_easy_perform(l->easy);
    curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_OK && status == 412 && create_only)
        rc = 1;
    else if (cc == CURLE_OK && status == 409) {
        /* AWS: another conditional write of the key is in progress; it
         * may yet fail, so the batch waits and looks again */
        errmsg_set(err, errlen, "storage: S3 %s: HTTP 409 (a concurrent upload of the same key)", what);
        rc = STORE_ERR_UNAVAILABLE;
    } else
        rc = classify(l, c, cc, status, &r, what, err, errlen);
out:
    if (f)
        fclose(f);
    curl_slist_free_all(h);
    return rc;
}

/* One blob: HEAD, and a PUT when missing. 1 when it PUT it, 0 when it
 * was there, else an error class. */
static int publish_one(struct s3_client *c, struct s3_lane *l, struct s3_upload *u)
{
    int rc = head_object(c, l, u->key, u->size, u->err, sizeof u->err);

    if (rc == 1)
        return 0;
    if (rc != 0 && rc != 2)
        return rc;
    /* S3 shows an object only once its PUT is complete: a worker killed
     * mid-upload leaves nothing half-written under the key. Another size
     * under a content address (rc 2) is replaced, else only created. */
    rc = put_object(c, l, u->key, u->path, u->size, rc == 0, u->err, sizeof u->err);
    if (rc == 1)
        return 0;
    return rc == 0 ? 1 : rc;
}

/* A batch shared by the lanes' threads: each takes the next blob. */
struct s3_batch {
    struct s3_client *c;
    struct s3_upload *u;
    size_t n;
    atomic_size_t next;
    atomic_int stop;          /* the service failed as a whole: try no more */
};

struct s3_lane_run {
    struct s3_batch *batch;
    struct s3_lane *lane;
    pthread_t thread;
};

static void *lane_main(void *arg)
{
    struct s3_lane_run *run = arg;
    struct s3_batch *b = run->batch;

    for (;;) {
        size_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->n)
            break;
        if (atomic_load(&b->stop)) {
            b->u[i].result = STORE_ERR_UNAVAILABLE; /* not tried; err stays "" */
            continue;
        }
        b->u[i].result = publish_one(b->c, run->lane, &b->u[i]);
        if (b->u[i].result == STORE_ERR_UNAVAILABLE || b->u[i].result == STORE_ERR_DENIED)
            atomic_store(&b->stop, 1);
    }
    return NULL;
}

void s3_publish_files(struct s3_client *c, struct s3_upload *u, size_t n)
{
    struct s3_lane_run runs[S3_LANES];
    struct s3_batch b = { .c = c, .u = u, .n = n };
    size_t lanes = n < S3_LANES ? n : S3_LANES, started = 0;

    for (size_t i = 0; i < n; i++) {
        u[i].result = STORE_ERR_UNAVAILABLE;
        u[i].err[0] = '\0';
    }
    atomic_init(&b.next, 0);
    atomic_init(&b.stop, 0);
    pthread_mutex_lock(&c->lock);
    /* lane 0 on this thread, the others on threads of their own */
    for (size_t i = 1; i < lanes; i++) {
        runs[i] = (struct s3_lane_run){ .batch = &b, .lane = &c->lanes[i] };
        if (pthread_create(&runs[i].thread, NULL, lane_main, &runs[i]) != 0)
            break; /* fewer lanes: the others take the rest */
        started = i;
    }
    runs[0] = (struct s3_lane_run){ .batch = &b, .lane = &c->lanes[0] };
    lane_main(&runs[0]);
    for (size_t i = 1; i <= started; i++)
        pthread_join(runs[i].thread, NULL);
    pthread_mutex_unlock(&c->lock);
}

/* A GET's body, growing up to S3_OBJECT_MAX. */
struct s3_body {
    unsigned char *data;
    size_t len, cap;
    int too_big;
};

static size_t keep_body(char *data, size_t size, size_t n, void *arg)
{
    struct s3_body *b = arg;
    size_t len = size * n;

    if (b->len + len > (size_t)S3_OBJECT_MAX) {
        b->too_big = 1;
        return 0;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + len)
            cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (p == NULL)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return len;
}

static int get_locked(struct s3_client *c, const char *key, struct s3_body *body, char *err, size_t errlen)
{
    struct s3_lane *l = &c->lanes[0];
    char url[S3_URL_MAX], what[160];
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: " S3_EMPTY_SHA256);
    struct s3_reply r;
    long status = 0;
    CURLcode cc;
    int rc;

    snprintf(what, sizeof what, "GET %s", key);
    if (h == NULL || s3_object_url(c->base, c->prefix, key, url, sizeof url) != 0) {
        curl_slist_free_all(h);
        errmsg_set(err, errlen, "storage: S3 %s: out of memory or too long", what);
        return -1;
    }
    prepare(c, l, url, h, &r);
    curl_easy_setopt(l->easy, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(l->easy, CURLOPT_WRITEDATA, body);
    cc = curl_easy_perform(l->easy);
    curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    if (body->too_big) {
        errmsg_set(err, errlen, "storage: S3 %s: larger than %lld bytes", what, S3_OBJECT_MAX);
        return -1;
    }
    if (cc == CURLE_OK && status == 404) {
        errmsg_set(err, errlen, "storage: S3 %s: no such object", what);
        return STORE_ERR_MISSING;
    }
    if (cc == CURLE_OK && (status < 200 || status >= 300)) {
        /* the error document went to body: classify from there */
        size_t n = body->len < S3_REPLY_MAX ? body->len : S3_REPLY_MAX;
        memcpy(r.text, body->data ? (const char *)body->data : "", n);
        r.text[n] = '\0';
        r.len = n;
    }
    rc = classify(l, c, cc, status, &r, what, err, errlen);
    return rc;
}

int s3_get_object(struct s3_client *c, const char *key, unsigned char **data, size_t *len, char *err,
                  size_t errlen)
{
    struct s3_body body = { 0 };
    int rc;

    pthread_mutex_lock(&c->lock);
    rc = get_locked(c, key, &body, err, errlen);
    pthread_mutex_unlock(&c->lock);
    if (rc != 0) {
        free(body.data);
        return rc;
    }
    if (body.data == NULL && (body.data = malloc(1)) == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    *data = body.data;
    *len = body.len;
    return 0;
}


/* "auto": path-style for a custom endpoint (MinIO, Ceph, s3proxy serve
 * buckets under a path; their host names rarely resolve per bucket),
 * virtual-hosted for AWS (which is retiring path-style). */
static int use_path_style(const struct store_s3_settings *st)
{
    if (strcmp(st->addressing, "path") == 0)
        return 1;
    if (strcmp(st->addressing, "virtual") == 0)
        return 0;
    return st->endpoint != NULL && st->endpoint[0] != '\0';
}

int s3_public_base_of(const struct store_s3_settings *st, char *out, size_t outlen)
{
    char bucket[256], prefix[512], base[S3_URL_MAX], why[300];
    int w;

    if (s3_parse_url(st->url, bucket, sizeof bucket, prefix, sizeof prefix, why, sizeof why) != 0 ||
        s3_bucket_base(st->endpoint, st->region, bucket, use_path_style(st), base, sizeof base) != 0)
        return -1;
    w = snprintf(out, outlen, "%s%s%s", base, prefix[0] ? "/" : "", prefix);
    return w < 0 || (size_t)w >= outlen ? -1 : 0;
}

static int client_init(struct s3_client *c, const struct store_s3_settings *st, char *err, size_t errlen)
{
    char why[300];
    size_t n;

    if (s3_parse_url(st->url, c->bucket, sizeof c->bucket, c->prefix, sizeof c->prefix, why, sizeof why) != 0) {
        errmsg_set(err, errlen, "IMGCACHE_STORAGE_URL: %s", why);
        return STORE_ERR_DENIED;
    }
    if (s3_bucket_base(st->endpoint, st->region, c->bucket, use_path_style(st), c->base, sizeof c->base) != 0) {
        errmsg_set(err, errlen, "AWS_ENDPOINT_URL: too long, or not scheme://host[:port]");
        return STORE_ERR_DENIED;
    }
    snprintf(c->sigv4, sizeof c->sigv4, "aws:amz:%s:s3", st->region);
    n = strlen(st->access_key) + strlen(st->secret_key) + 2;
    c->userpwd = malloc(n);
    int lanes_ok = 1;
    for (size_t i = 0; i < S3_LANES; i++)
        lanes_ok &= (c->lanes[i].easy = curl_easy_init()) != NULL;
    if (c->userpwd == NULL || !lanes_ok) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    snprintf(c->userpwd, n, "%s:%s", st->access_key, st->secret_key);
    return 0;
}

/* A signed HEAD of the bucket: wrong credentials, region or bucket are
 * found at start, not at the first image. */
static int check_bucket(struct s3_client *c, char *err, size_t errlen)
{
    struct s3_lane *l = &c->lanes[0];
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: " S3_EMPTY_SHA256);
    struct s3_reply r;
    char url[S3_URL_MAX + 2], what[300];
    long status = 0;
    CURLcode cc;
    int rc;

    if (h == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    snprintf(url, sizeof url, "%s/", c->base);
    snprintf(what, sizeof what, "HEAD bucket %s", c->bucket);
    prepare(c, l, url, h, &r);
    curl_easy_setopt(l->easy, CURLOPT_NOBODY, 1L);
    cc = curl_easy_perform(l->easy);
    curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    if (cc == CURLE_OK && status == 404) {
        errmsg_set(err, errlen, "storage: bucket '%s' does not exist: check IMGCACHE_STORAGE_URL and "
                   "AWS_ENDPOINT_URL", c->bucket);
        return STORE_ERR_DENIED;
    }
    rc = classify(l, c, cc, status, &r, what, err, errlen);
    if (rc == STORE_ERR_UNAVAILABLE) {
        log_warn("event=storage_down during=start reason=\"%s\" action=\"starting anyway; uploads wait for it\"",
                 err);
        rc = 0;
    }
    return rc;
}

int s3_client_new(const struct store_s3_settings *st, struct s3_client **out, char *err, size_t errlen)
{
    struct s3_client *c = calloc(1, sizeof *c);
    int rc = -1;

    *out = NULL;
    if (c == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&c->lock, NULL);
    rc = client_init(c, st, err, errlen);
    if (rc == 0)
        rc = check_bucket(c, err, errlen);
    if (rc != 0)
        goto out;
    *out = c;
    c = NULL;
out:
    s3_client_free(c);
    return rc;
}

void s3_client_free(struct s3_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < S3_LANES; i++)
        if (c->lanes[i].easy)
            curl_easy_cleanup(c->lanes[i].easy);
    if (c->userpwd) {
        /* a secret: not left in freed memory */
        memset(c->userpwd, 0, strlen(c->userpwd));
        free(c->userpwd);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* DELETE of the object key: 0 when it is gone (a 404 too: another
 * collector was first), else an error class. */
int s3_delete_object(struct s3_client *c, const char *key, char *err, size_t errlen)
{
    struct s3_lane *l = &c->lanes[0];
    char url[S3_URL_MAX], what[160];
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: " S3_EMPTY_SHA256);
    struct s3_reply r;
    long status = 0;
    CURLcode cc;
    int rc = -1;

    snprintf(what, sizeof what, "DELETE %s", key);
    if (h == NULL || s3_object_url(c->base, c->prefix, key, url, sizeof url) != 0) {
        errmsg_set(err, errlen, "storage: S3 %s: out of memory or too long", what);
        goto out;
    }
    pthread_mutex_lock(&c->lock);
    prepare(c, l, url, h, &r);
    curl_easy_setopt(l->easy, CURLOPT_CUSTOMREQUEST, "DELETE");
    cc = curl_easy_perform(l->easy);
    curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_unlock(&c->lock);
    rc = cc == CURLE_OK && status == 404 ? 0 : classify(l, c, cc, status, &r, what, err, errlen);
out:
    curl_slist_free_all(h);
    return rc;
}

/* The text between <tag> and </tag> from p on, not past end, into out
 * (XML's five entities decoded); NULL when absent, else past the close. */
static const char *xml_field(const char *p, const char *end, const char *tag, char *out, size_t outlen)
{
    char open[40], close[40];
    const char *a, *b;
    size_t o = 0;

    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    a = strstr(p, open);
    if (a == NULL || a >= end || (b = strstr(a, close)) == NULL || b > end)
        return NULL;
    static const char *const ent[][2] = { { "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" },
                                          { "&quot;", "\"" }, { "&apos;", "'" } };
    for (const char *s = a + strlen(open); s < b && o + 1 < outlen;) {
        size_t e = 0;
        while (e < 5 && strncmp(s, ent[e][0], strlen(ent[e][0])) != 0)
            e++;
        out[o++] = e < 5 ? ent[e][1][0] : *s;
        s += e < 5 ? strlen(ent[e][0]) : 1;
    }
    out[o] = '\0';
    return b + strlen(close);
}

/* 2026-12-06T11:35:08.000Z -> seconds since the epoch; -1 when not so. */
static long long s3_time(const char *t)
{
    struct tm tm = { 0 };

    if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm);
}

int s3_list_parse(const char *xml, size_t plen, struct store_object *objs, size_t max, size_t *n,
                  char *token, size_t tokenlen)
{
    const char *p = xml, *end;
    char truncated[8] = "", field[64];

    *n = 0;
    token[0] = '\0';
    while ((p = strstr(p, "<Contents>")) != NULL && (end = strstr(p, "</Contents>")) != NULL) {
        char key[STORE_KEY_MAX + 1024];
        if (*n == max)
            return -1;
        if (xml_field(p, end, "Key", key, sizeof key) == NULL || strlen(key) <= plen ||
            strlen(key + plen) >= STORE_KEY_MAX)
            goto next; /* not under the prefix, or not one of our keys */
        snprintf(objs[*n].key, sizeof objs[*n].key, "%s", key + plen);
        objs[*n].size = xml_field(p, end, "Size", field, sizeof field) ? strtoll(field, NULL, 10) : -1;
        objs[*n].mtime = xml_field(p, end, "LastModified", field, sizeof field) ? s3_time(field) : -1;
        (*n)++;
    next:
        p = end + 11;
    }
    end = xml + strlen(xml);
    xml_field(xml, end, "IsTruncated", truncated, sizeof truncated);
    if (strcmp(truncated, "true") == 0 &&
        (xml_field(xml, end, "NextContinuationToken", token, tokenlen) == NULL || token[0] == '\0'))
        return -1; /* more to come, but no way to ask for it */
    return 0;
}

/* One ListObjectsV2 page's reply (the caller frees body->data). */
static int list_get(struct s3_client *c, const char *token, struct s3_body *body, char *err, size_t errlen)
{
    struct s3_lane *l = &c->lanes[0];
    char url[S3_URL_MAX + 4100], query[4096], prefix[600];
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: " S3_EMPTY_SHA256);
    struct s3_reply r;
    long status = 0;
    CURLcode cc;
    int rc = -1;

    snprintf(prefix, sizeof prefix, "%s%s", c->prefix, c->prefix[0] ? "/" : "");
    if (h == NULL || s3_list_query(prefix, token, query, sizeof query) != 0) {
        errmsg_set(err, errlen, "storage: S3 list: out of memory or too long a token");
        goto out;
    }
    snprintf(url, sizeof url, "%s/?%s", c->base, query);
    pthread_mutex_lock(&c->lock);
    prepare(c, l, url, h, &r);
    curl_easy_setopt(l->easy, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(l->easy, CURLOPT_WRITEDATA, body);
    cc = curl_easy_perform(l->easy);
    curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &status);
    pthread_mutex_unlock(&c->lock);
    if (cc == CURLE_OK && (status < 200 || status >= 300)) {
        size_t n = body->len < S3_REPLY_MAX ? body->len : S3_REPLY_MAX;
        memcpy(r.text, body->data ? (const char *)body->data : "", n);
        r.text[n] = '\0';
    }
    rc = classify(l, c, cc, status, &r, "list", err, errlen);
    if (rc == 0 && (body->too_big || keep_body((char *)"", 1, 1, body) != 1)) {
        errmsg_set(err, errlen, "storage: S3 list: reply too large or out of memory");
        rc = -1;
    }
out:
    curl_slist_free_all(h);
    return rc;
}

int s3_list_objects(struct s3_client *c, store_list_fn fn, void *arg, char *err, size_t errlen)
{
    char token[2048] = "";
    size_t plen = strlen(c->prefix) + (c->prefix[0] ? 1 : 0);
    struct store_object *objs = calloc(S3_LIST_MAX, sizeof *objs);
    int rc = -1;

    if (objs == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    do {
        struct s3_body body = { 0 };
        size_t n = 0;
        rc = list_get(c, token, &body, err, errlen);
        if (rc == 0 && s3_list_parse((const char *)body.data, plen, objs, S3_LIST_MAX, &n, token,
                                     sizeof token) != 0) {
            errmsg_set(err, errlen, "storage: S3 list: a reply that does not parse");
            rc = -1;
        }
        free(body.data);
        if (rc == 0)
            rc = fn(arg, objs, n, err, errlen);
    } while (rc == 0 && token[0] != '\0');
    free(objs);
    return rc;
}
