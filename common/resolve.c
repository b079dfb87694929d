#include "resolve.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errmsg.h"
#include "hash.h"

#define RESOLVE_MAX_URL 8192
#define RESOLVE_MAX_DATA_URL 65536 /* an event's size: no data: URL that travels is longer */

static int empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* A growing string; every add keeps it NUL-terminated. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static int sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *grown = realloc(b->p, cap);
        if (grown == NULL)
            return -1;
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sbuf_str(struct sbuf *b, const char *s)
{
    return sbuf_add(b, s, strlen(s));
}

/* Hands the string over and leaves b empty for reuse. */
static char *sbuf_take(struct sbuf *b)
{
    char *p = b->p;

    memset(b, 0, sizeof *b);
    return p;
}

/* Log lines are one line each: control characters become '?'. */
static void scrub_controls(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

/* Query values become REDACTED; a bare item ("?sometoken") is all value. */
static char *redact_query(const char *q)
{
    struct sbuf b = { 0 };
    const char *item = q;

    if (sbuf_add(&b, "", 0) != 0)
        return NULL;
    for (;;) {
        size_t n = strcspn(item, "&");
        const char *eq = memchr(item, '=', n);
        int rc;

        if (eq != NULL)
            rc = sbuf_add(&b, item, (size_t)(eq - item) + 1) || sbuf_str(&b, "REDACTED");
        else
            rc = n > 0 ? sbuf_str(&b, "REDACTED") : 0;
        if (rc != 0)
            goto fail;
        if (item[n] == '\0')
            break;
        if (sbuf_add(&b, "&", 1) != 0)
            goto fail;
        item += n + 1;
    }
    return b.p;
fail:
    free(b.p);
    return NULL;
}

/* Replaces the part if the URL has it. */
static CURLUcode redact_part(CURLU *h, CURLUPart part)
{
    char *v = NULL;
    CURLUcode rc = curl_url_get(h, part, &v, 0);

    curl_free(v);
    if (rc != CURLUE_OK)
        return CURLUE_OK; /* absent */
    return curl_url_set(h, part, "REDACTED", 0);
}

/* When curl cannot parse the URL: cut at the first '?' or '#', and hide
 * anything before an '@' in what looks like the authority. */
static char *redact_unparsed(const char *url)
{
    size_t keep = strcspn(url, "?#");
    struct sbuf b = { 0 };
    const char *auth;

    if (sbuf_add(&b, url, keep) != 0)
        return NULL;
    auth = strstr(b.p, "://");
    if (auth != NULL) {
        char *start = (char *)auth + 3;
        char *end = start + strcspn(start, "/");
        char *at = NULL;
        for (char *c = start; c < end; c++)
            if (*c == '@')
                at = c;
        if (at != NULL) {
            struct sbuf r = { 0 };
            if (sbuf_add(&r, b.p, (size_t)(start - b.p)) || sbuf_str(&r, "REDACTED") ||
                sbuf_str(&r, at)) {
                free(r.p);
                free(b.p);
                return NULL;
            }
            free(b.p);
            b = r;
        }
    }
    if (url[keep] != '\0' && sbuf_str(&b, url[keep] == '?' ? "?REDACTED" : "#REDACTED") != 0) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* The redacted form of url, malloc'd; NULL only when out of memory. */
static char *redact_dup(const char *url)
{
    CURLU *h = curl_url();
    char *q = NULL, *newq = NULL, *full = NULL, *result = NULL;

    if (h == NULL)
        goto out;
    if (curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS) != CURLUE_OK) {
        result = redact_unparsed(url);
        goto out;
    }
    if (redact_part(h, CURLUPART_USER) != CURLUE_OK ||
        redact_part(h, CURLUPART_PASSWORD) != CURLUE_OK ||
        redact_part(h, CURLUPART_OPTIONS) != CURLUE_OK ||
        redact_part(h, CURLUPART_FRAGMENT) != CURLUE_OK)
        goto out;
    if (curl_url_get(h, CURLUPART_QUERY, &q, 0) == CURLUE_OK) {
        newq = redact_query(q);
        if (newq == NULL || curl_url_set(h, CURLUPART_QUERY, newq, 0) != CURLUE_OK)
            goto out;
    }
    if (curl_url_get(h, CURLUPART_URL, &full, 0) != CURLUE_OK)
        goto out;
    result = strdup(full);
out:
    curl_free(q);
    curl_free(full);
    free(newq);
    curl_url_cleanup(h);
    if (result != NULL)
        scrub_controls(result);
    return result;
}

void resolve_redact(const char *url, char *out, size_t outlen)
{
    char *r;

    if (out == NULL || outlen == 0)
        return;
    r = url ? redact_dup(url) : NULL;
    /* out of memory must not fall back to the unredacted URL */
    snprintf(out, outlen, "%s", r ? r : "REDACTED");
    free(r);
}

/* The scheme for a message when curl could not parse the URL: letters,
 * digits, + - . before the first ':' (RFC 3986), lower-cased, at most 32. */
static void scheme_for_message(const char *url, char *out, size_t outlen)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.";
    size_t n = strspn(url, chars), i;

    out[0] = '\0';
    if (n == 0 || url[n] != ':' || !((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z')))
        return;
    for (i = 0; i < n && i < 32 && i + 1 < outlen; i++)
        out[i] = (url[i] >= 'A' && url[i] <= 'Z') ? (char)(url[i] - 'A' + 'a') : url[i];
    out[i] = '\0';
}

/* A configured base URL (media server, API) must be http(s) without query. */
static int check_base(const char *base, const char *name, char *err, size_t errlen)
{
    CURLU *h = curl_url();
    char *scheme = NULL, *v = NULL;
    CURLUcode rc;
    int ret = -1;

    if (h == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    rc = curl_url_set(h, CURLUPART_URL, base, CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK) {
        errmsg_set(err, errlen, "%s is not a URL: %s", name, curl_url_strerror(rc));
        goto out;
    }
    curl_url_get(h, CURLUPART_SCHEME, &scheme, 0);
    if (scheme == NULL || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        errmsg_set(err, errlen, "%s is not an http(s) URL", name);
        goto out;
    }
    if (curl_url_get(h, CURLUPART_QUERY, &v, 0) == CURLUE_OK ||
        curl_url_get(h, CURLUPART_FRAGMENT, &v, 0) == CURLUE_OK) {
        errmsg_set(err, errlen, "%s must not have a query or fragment", name);
        goto out;
    }
    ret = 0;
out:
    curl_free(scheme);
    curl_free(v);
    curl_url_cleanup(h);
    return ret;
}

/* base without trailing slashes, then suffix. */
static int add_base(struct sbuf *b, const char *base)
{
    size_t n = strlen(base);

    while (n > 0 && base[n - 1] == '/')
        n--;
    return sbuf_add(b, base, n);
}

/* The part after the last "/media/" of a decoded file path, checked to be a
 * plain relative path. Points into path. */
static const char *media_relative(const char *path, size_t len, char *err, size_t errlen)
{
    const char *last = NULL, *rel, *seg;

    if (memchr(path, '\0', len) != NULL) {
        errmsg_set(err, errlen, "file:// path has a NUL byte");
        return NULL;
    }
    for (const char *m = strstr(path, "/media/"); m != NULL; m = strstr(m + 1, "/media/"))
        last = m;
    if (last == NULL) {
        errmsg_set(err, errlen, "file:// path has no /media/ segment");
        return NULL;
    }
    rel = last + strlen("/media/");
    if (rel[0] == '\0') {
        errmsg_set(err, errlen, "file:// path is empty after /media/");
        return NULL;
    }
    if (rel[0] == '/') {
        errmsg_set(err, errlen, "file:// path after /media/ is absolute");
        return NULL;
    }
    for (const char *c = rel; *c; c++) {
        if (*c == '\\') {
            errmsg_set(err, errlen, "file:// path has a backslash");
            return NULL;
        }
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            errmsg_set(err, errlen, "file:// path has a control character");
            return NULL;
        }
    }
    for (seg = rel;;) {
        size_t n = strcspn(seg, "/");
        if (n == 0) {
            errmsg_set(err, errlen, "file:// path has an empty segment after /media/");
            return NULL;
        }
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            errmsg_set(err, errlen, "file:// path has a '%.*s' segment", (int)n, seg);
            return NULL;
        }
        if (seg[n] == '\0')
            break;
        seg += n + 1;
    }
    return rel;
}

/* media_server/<escaped segments>?token=<escaped token> */
static int media_server_url(const struct resolve_config *cfg, const char *rel, struct sbuf *b,
                            char *err, size_t errlen)
{
    const char *seg = rel;

    if (check_base(cfg->media_server, "BEEPER_MEDIA_SERVER", err, errlen) != 0)
        return -1;
    if (add_base(b, cfg->media_server) != 0)
        goto oom;
    for (;;) {
        size_t n = strcspn(seg, "/");
        char *esc = curl_easy_escape(NULL, seg, (int)n);
        int rc;
        if (esc == NULL)
            goto oom;
        rc = sbuf_add(b, "/", 1) || sbuf_str(b, esc);
        curl_free(esc);
        if (rc != 0)
            goto oom;
        if (seg[n] == '\0')
            break;
        seg += n + 1;
    }
    if (!empty(cfg->media_token)) {
        char *esc = curl_easy_escape(NULL, cfg->media_token, 0);
        int rc;
        if (esc == NULL)
            goto oom;
        rc = sbuf_str(b, "?token=") || sbuf_str(b, esc);
        curl_free(esc);
        if (rc != 0)
            goto oom;
    }
    return 0;
oom:
    errmsg_set(err, errlen, "out of memory");
    return -1;
}

/* GET api_url/v1/assets/serve?url=<escaped source> with the bearer token:
 * Beeper Desktop serves mxc://, localmxc:// and (4.2.509 and later)
 * file:// URLs there. `what` names the source kind for messages. */
static int resolve_via_api(const struct resolve_config *cfg, const char *source, const char *what,
                           struct resolved *out, char *err, size_t errlen)
{
    struct sbuf b = { 0 };
    char *esc = NULL;
    int ret = -1;

    if (empty(cfg->api_url)) {
        errmsg_set(err, errlen, "%s needs BEEPER_API_URL", what);
        ret = RESOLVE_ERR_CONFIG;
        goto out;
    }
    if (check_base(cfg->api_url, "BEEPER_API_URL", err, errlen) != 0)
        goto out;
    if (!empty(cfg->api_token) && strpbrk(cfg->api_token, "\r\n") != NULL) {
        errmsg_set(err, errlen, "BEEPER_API_TOKEN has a line break");
        goto out;
    }
    esc = curl_easy_escape(NULL, source, 0);
    if (esc == NULL || add_base(&b, cfg->api_url) != 0 ||
        sbuf_str(&b, "/v1/assets/serve?url=") != 0 || sbuf_str(&b, esc) != 0)
        goto oom;
    out->url = sbuf_take(&b);
    if (!empty(cfg->api_token)) {
        if (sbuf_str(&b, "Authorization: Bearer ") != 0 || sbuf_str(&b, cfg->api_token) != 0)
            goto oom;
        out->auth_header = sbuf_take(&b);
    }
    out->kind = RESOLVE_HTTP;
    ret = 0;
    goto out;
oom:
    errmsg_set(err, errlen, "out of memory");
out:
    curl_free(esc);
    free(b.p);
    return ret;
}

/* "file://" + path with every segment percent-encoded: the file:// URL
 * matching a bare local path, for the Beeper API. NULL when out of memory. */
static char *file_url_of_path(const char *path)
{
    struct sbuf b = { 0 };
    const char *seg = path;

    if (sbuf_str(&b, "file://") != 0)
        goto oom;
    for (;;) {
        size_t n = strcspn(seg, "/");
        char *esc = n > 0 ? curl_easy_escape(NULL, seg, (int)n) : NULL;
        int rc;
        if (n > 0 && esc == NULL)
            goto oom;
        rc = (esc && sbuf_str(&b, esc) != 0) || (seg[n] == '/' && sbuf_add(&b, "/", 1) != 0);
        curl_free(esc);
        if (rc)
            goto oom;
        if (seg[n] == '\0')
            break;
        seg += n + 1;
    }
    return b.p;
oom:
    free(b.p);
    return NULL;
}

/* A local file, as a decoded path (from a file:// URL, or an absolute path
 * as Beeper Desktop 4.2.808+ gives chat images): BEEPER_MEDIA_DIR, else
 * BEEPER_MEDIA_SERVER, else the Beeper API's assets/serve with file_url. */
static int resolve_local(const struct resolve_config *cfg, const char *path, size_t len,
                         const char *file_url, struct resolved *out, char *err, size_t errlen)
{
    const char *rel = media_relative(path, len, err, errlen);
    struct sbuf b = { 0 };
    int ret = -1;

    if (rel == NULL)
        goto out;
    if (!empty(cfg->media_dir)) {
        if (add_base(&b, cfg->media_dir) != 0 || sbuf_add(&b, "/", 1) != 0 || sbuf_str(&b, rel) != 0)
            goto oom;
        out->kind = RESOLVE_FILE;
        out->path = sbuf_take(&b);
        if (sbuf_str(&b, "file:") != 0 || sbuf_str(&b, rel) != 0)
            goto oom;
        out->display = sbuf_take(&b);
    } else if (!empty(cfg->media_server)) {
        if (media_server_url(cfg, rel, &b, err, errlen) != 0)
            goto out;
        out->kind = RESOLVE_HTTP;
        out->url = sbuf_take(&b);
    } else if (!empty(cfg->api_token)) {
        ret = resolve_via_api(cfg, file_url, "a file:// URL", out, err, errlen);
        goto out;
    } else {
        /* the worker's configuration, not the image: retryable once set */
        errmsg_set(err, errlen, "a file:// URL or local path needs BEEPER_MEDIA_DIR (the media "
                   "folder), BEEPER_MEDIA_SERVER or BEEPER_API_TOKEN (Beeper Desktop serves it) "
                   "set on the worker");
        ret = RESOLVE_ERR_CONFIG;
        goto out;
    }
    ret = 0;
    goto out;
oom:
    errmsg_set(err, errlen, "out of memory");
out:
    free(b.p);
    return ret;
}

static int resolve_file(const struct resolve_config *cfg, CURLU *h, const char *source,
                        struct resolved *out, char *err, size_t errlen)
{
    char *raw = NULL, *dec = NULL;
    int declen = 0;
    int ret = -1;

    if (curl_url_get(h, CURLUPART_PATH, &raw, 0) != CURLUE_OK) {
        errmsg_set(err, errlen, "file:// URL has no path");
        goto out;
    }
    dec = curl_easy_unescape(NULL, raw, 0, &declen);
    if (dec == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    ret = resolve_local(cfg, dec, (size_t)declen, source, out, err, errlen);
out:
    curl_free(dec);
    curl_free(raw);
    return ret;
}

/* An absolute local path: the matching file:// URL, same confinement. */
static int resolve_bare_path(const struct resolve_config *cfg, const char *path,
                             struct resolved *out, char *err, size_t errlen)
{
    char *file_url = file_url_of_path(path);
    int ret;

    if (file_url == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    ret = resolve_local(cfg, path, strlen(path), file_url, out, err, errlen);
    free(file_url);
    return ret;
}

static int resolve_http(CURLU *h, struct resolved *out, char *err, size_t errlen)
{
    char *host = NULL, *full = NULL;
    int ret = -1;

    if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
        errmsg_set(err, errlen, "http URL has no host");
        goto out;
    }
    if (curl_url_get(h, CURLUPART_URL, &full, 0) != CURLUE_OK) {
        errmsg_set(err, errlen, "http URL cannot be rebuilt");
        goto out;
    }
    if (strlen(full) > RESOLVE_MAX_URL) {
        errmsg_set(err, errlen, "URL is %zu bytes, over the %d-byte limit", strlen(full), RESOLVE_MAX_URL);
        goto out;
    }
    out->url = strdup(full);
    if (out->url == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    out->kind = RESOLVE_HTTP;
    ret = 0;
out:
    curl_free(host);
    curl_free(full);
    return ret;
}

/* ---- data: URLs ---- */

int resolve_is_data_url(const char *url)
{
    return url != NULL && strncasecmp(url, "data:", 5) == 0;
}

int resolve_data_key(const char *data_url, char key[RESOLVE_DATA_KEY_LEN + 1])
{
    char hex[HASH_HEX_LEN + 1];

    if (hash_sha256_hex(data_url, strlen(data_url), hex) != 0)
        return -1;
    snprintf(key, RESOLVE_DATA_KEY_LEN + 1, RESOLVE_DATA_KEY_PREFIX "%s", hex);
    return 0;
}

/* 0..63 for a base64 character, -1 for anything else. */
static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes base64 in place (the output is never longer than the input).
 * Whitespace is skipped (wrapped base64 is common); '=' may only end it;
 * a missing final padding is tolerated, a lone trailing character is not. */
static int base64_decode_inplace(unsigned char *s, size_t len, size_t *outlen, char *err,
                                 size_t errlen)
{
    size_t o = 0, i;
    unsigned acc = 0;
    int bits = 0, pad = 0, n = 0;

    for (i = 0; i < len; i++) {
        unsigned char c = s[i];
        int v;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        v = base64_value(c);
        if (v < 0 || pad > 0) {
            errmsg_set(err, errlen, "data: URL has %s at byte %zu of its base64 data",
                       v < 0 ? "a character that is not base64" : "data after '='", i);
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        n++;
        if (bits >= 8) {
            bits -= 8;
            s[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (n % 4 == 1 || pad > 2 || (pad > 0 && (n + pad) % 4 != 0)) {
        errmsg_set(err, errlen, "data: URL has truncated base64 data");
        return -1;
    }
    *outlen = o;
    return 0;
}

/* data:[<mediatype>][;base64],<data> -> out->data. The mediatype is not
 * trusted: the worker sniffs the bytes like any download. */
static int resolve_data(const char *source, struct resolved *out, char *err, size_t errlen)
{
    const char *comma = strchr(source, ',');
    char key[RESOLVE_DATA_KEY_LEN + 1];
    char *dec = NULL;
    size_t hlen, n;
    int declen = 0, is_base64;
    int ret = -1;

    if (strncasecmp(source, RESOLVE_DATA_KEY_PREFIX, strlen(RESOLVE_DATA_KEY_PREFIX)) == 0) {
        errmsg_set(err, errlen, "a %s key without the data: URL it stands for (the event has no "
                   "data_url; run import or sync again)", RESOLVE_DATA_KEY_PREFIX);
        goto out;
    }
    if (comma == NULL) {
        errmsg_set(err, errlen, "data: URL has no ',' before its data");
        goto out;
    }
    hlen = (size_t)(comma - source);
    is_base64 = hlen >= 12 && strncasecmp(comma - 7, ";base64", 7) == 0;
    dec = curl_easy_unescape(NULL, comma + 1, 0, &declen);
    if (dec == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    n = (size_t)declen;
    if (is_base64 && base64_decode_inplace((unsigned char *)dec, n, &n, err, errlen) != 0)
        goto out;
    if (n == 0) {
        errmsg_set(err, errlen, "data: URL has no data");
        goto out;
    }
    if (resolve_data_key(source, key) != 0)
        goto oom;
    out->data = malloc(n);
    out->display = strdup(key);
    if (out->data == NULL || out->display == NULL)
        goto oom;
    memcpy(out->data, dec, n);
    out->data_len = n;
    out->kind = RESOLVE_DATA;
    ret = 0;
    goto out;
oom:
    errmsg_set(err, errlen, "out of memory");
out:
    curl_free(dec);
    return ret;
}

/* A data: URL within its length cap -> out. */
static int resolve_data_source(const char *source_url, struct resolved *out, char *err, size_t errlen)
{
    if (strlen(source_url) > RESOLVE_MAX_DATA_URL) {
        errmsg_set(err, errlen, "data: URL is %zu bytes, over the %d-byte limit", strlen(source_url),
                   RESOLVE_MAX_DATA_URL);
        return -1;
    }
    return resolve_data(source_url, out, err, errlen);
}

/* Parses source_url into h (as given: dot segments kept) and its scheme
 * into *scheme (curl_free() it), or says what is wrong with it. */
static int parse_url(CURLU *h, const char *source_url, char **scheme, char *err, size_t errlen)
{
    char shown[40];
    CURLUcode rc;

    /* PATH_AS_IS: curl would quietly fold "/media/a/../b"; we refuse dot segments instead */
    rc = curl_url_set(h, CURLUPART_URL, source_url, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
    if (rc == CURLUE_OK)
        rc = curl_url_get(h, CURLUPART_SCHEME, scheme, 0);
    if (rc == CURLUE_OK)
        return 0;
    scheme_for_message(source_url, shown, sizeof shown);
    if (shown[0] == '\0')
        errmsg_set(err, errlen, "URL has no scheme");
    else if (strcmp(shown, "http") == 0 || strcmp(shown, "https") == 0 || strcmp(shown, "file") == 0 ||
             strcmp(shown, "mxc") == 0 || strcmp(shown, "localmxc") == 0)
        errmsg_set(err, errlen, "bad %s URL: %s", shown, curl_url_strerror(rc));
    else
        errmsg_set(err, errlen, "unsupported URL scheme '%s'", shown);
    return -1;
}

/* The parsed URL h of the given scheme -> out: 0, -1, or
 * RESOLVE_ERR_CONFIG (a file:// or mxc:// URL this configuration cannot
 * reach). */
static int resolve_by_scheme(const struct resolve_config *cfg, CURLU *h, const char *scheme,
                             const char *source_url, struct resolved *out, char *err, size_t errlen)
{
    CURLUcode rc;

    if (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) {
        /* parsed again without PATH_AS_IS: fetch what curl would normalise to */
        rc = curl_url_set(h, CURLUPART_URL, source_url, CURLU_NON_SUPPORT_SCHEME);
        if (rc != CURLUE_OK) {
            errmsg_set(err, errlen, "bad %s URL: %s", scheme, curl_url_strerror(rc));
            return -1;
        }
        return resolve_http(h, out, err, errlen);
    }
    if (strcmp(scheme, "file") == 0)
        return resolve_file(cfg, h, source_url, out, err, errlen);
    if (strcmp(scheme, "mxc") == 0 || strcmp(scheme, "localmxc") == 0)
        return resolve_via_api(cfg, source_url, "an mxc:// URL", out, err, errlen);
    errmsg_set(err, errlen, "unsupported URL scheme '%.32s'", scheme);
    return -1;
}

/* A URL resolved from a bare path or a parsed URL -> out; out->display
 * defaults to the redacted out->url. */
static int resolve_url(const struct resolve_config *cfg, const char *source_url, struct resolved *out,
                       char *err, size_t errlen)
{
    CURLU *h = NULL;
    char *scheme = NULL;
    int ret = -1;

    if (source_url[0] == '/') {
        ret = resolve_bare_path(cfg, source_url, out, err, errlen);
    } else {
        h = curl_url();
        if (h == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        if (parse_url(h, source_url, &scheme, err, errlen) != 0)
            goto out;
        ret = resolve_by_scheme(cfg, h, scheme, source_url, out, err, errlen);
    }
    if (ret == 0 && out->display == NULL) {
        out->display = redact_dup(out->url);
        if (out->display == NULL) {
            errmsg_set(err, errlen, "out of memory");
            ret = -1;
        }
    }
out:
    curl_free(scheme);
    curl_url_cleanup(h);
    return ret;
}

int resolve_source(const struct resolve_config *cfg, const char *source_url,
                   struct resolved *out, char *err, size_t errlen)
{
    int ret = -1;

    memset(out, 0, sizeof *out);
    if (empty(source_url)) {
        errmsg_set(err, errlen, "empty URL");
        goto out;
    }
    if (resolve_is_data_url(source_url)) {
        ret = resolve_data_source(source_url, out, err, errlen);
        goto out;
    }
    if (strlen(source_url) > RESOLVE_MAX_URL) {
        errmsg_set(err, errlen, "URL is %zu bytes, over the %d-byte limit", strlen(source_url),
                   RESOLVE_MAX_URL);
        goto out;
    }
    ret = resolve_url(cfg, source_url, out, err, errlen);
out:
    if (ret != 0)
        resolved_clear(out);
    return ret;
}

void resolved_clear(struct resolved *r)
{
    free(r->url);
    free(r->auth_header);
    free(r->path);
    free(r->data);
    free(r->display);
    memset(r, 0, sizeof *r);
}

int resolve_open_confined(const char *media_dir, const char *path, char *err, size_t errlen)
{
    char *rdir = NULL, *rpath = NULL;
    size_t dlen;
    struct stat st;
    int fd = -1;
    int flags;

    if (empty(media_dir) || empty(path)) {
        errmsg_set(err, errlen, "BEEPER_MEDIA_DIR or the path is not set");
        goto out;
    }
    rdir = realpath(media_dir, NULL);
    if (rdir == NULL) {
        errmsg_set(err, errlen, "BEEPER_MEDIA_DIR '%s': %s", media_dir, strerror(errno));
        goto out;
    }
    rpath = realpath(path, NULL);
    if (rpath == NULL) {
        if (errno == ENOENT)
            errmsg_set(err, errlen, "'%s' does not exist", path);
        else
            errmsg_set(err, errlen, "'%s': %s", path, strerror(errno));
        goto out;
    }
    /* strictly inside: "<dir>/" is a prefix and something follows it */
    dlen = strlen(rdir);
    if (dlen > 0 && rdir[dlen - 1] == '/')
        dlen--; /* media_dir is "/" */
    if (strncmp(rpath, rdir, dlen) != 0 || rpath[dlen] != '/' || rpath[dlen + 1] == '\0') {
        errmsg_set(err, errlen, "'%s' resolves outside BEEPER_MEDIA_DIR", path);
        goto out;
    }
    /* O_NONBLOCK so a FIFO planted in the folder cannot hang the worker */
    fd = open(rpath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        errmsg_set(err, errlen, "'%s': %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        errmsg_set(err, errlen, "'%s' is not a regular file", path);
        goto fail;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        errmsg_set(err, errlen, "'%s': %s", path, strerror(errno));
        goto fail;
    }
    goto out;
fail:
    close(fd);
    fd = -1;
out:
    free(rdir);
    free(rpath);
    return fd;
}
