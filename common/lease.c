#include "lease.h"

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errmsg.h"
#include "hash.h"
#include "log.h"
#include "outage.h"

/* compare-and-delete: only the owner that set the lease may remove it */
static const char release_script[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

struct lease {
    char *host;
    int port;
    char *password; /* may be NULL */
    int db;
    char *owner;
    long long ttl_ms;
    redisContext *ctx;
    struct outage outage;      /* reconnect backoff */
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void lease_key(const char *url, char *key)
{
    char hex[HASH_HEX_LEN + 1];
    if (hash_sha256_hex(url, strlen(url), hex) != 0)
        memset(hex, '0', HASH_HEX_LEN), hex[HASH_HEX_LEN] = '\0';
    snprintf(key, LEASE_KEY_LEN + 1, "imgcache:lease:%s", hex);
}

static int parse_redis_url(struct lease *l, const char *url, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *password = NULL, *path = NULL;
    int rc = -1;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
        errmsg_set(err, errlen, "REDIS_URL: not a URL (expected redis://host:port/db)");
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (scheme == NULL || strcmp(scheme, "redis") != 0) {
        errmsg_set(err, errlen, "REDIS_URL: scheme must be redis://");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        errmsg_set(err, errlen, "REDIS_URL: no host");
        goto out;
    }
    l->port = 6379;
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
        l->port = atoi(port);
    if (curl_url_get(u, CURLUPART_PASSWORD, &password, CURLU_URLDECODE) == CURLUE_OK && password[0])
        l->password = strdup(password);
    l->db = 0;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path[0] == '/' && path[1]) {
        char *end;
        long db = strtol(path + 1, &end, 10);
        if (*end != '\0' || db < 0 || db > 1000000) {
            /* not quoted: a password with a bare '/' would land here */
            errmsg_set(err, errlen, "REDIS_URL: the database (the path after host:port) is not a number "
                     "(not shown; percent-encode a '/' in the password as %%2F)");
            goto out;
        }
        l->db = (int)db;
    }
    /* curl keeps IPv6 brackets; hiredis wants the bare address */
    if (host[0] == '[') {
        size_t n = strlen(host);
        memmove(host, host + 1, n - 1);
        host[n - 2] = '\0';
    }
    l->host = strdup(host);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(password);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

int lease_url_check(const char *redis_url, char *err, size_t errlen)
{
    struct lease l;
    int rc;

    memset(&l, 0, sizeof l);
    rc = parse_redis_url(&l, redis_url, err, errlen);
    free(l.host);
    free(l.password);
    return rc;
}

int lease_connect(const char *redis_url, const char *owner, long long ttl_ms,
                  struct lease **out, char *err, size_t errlen)
{
    struct lease *l = calloc(1, sizeof *l);
    *out = NULL;
    if (l == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    if (parse_redis_url(l, redis_url, err, errlen) != 0) {
        lease_close(l);
        return -1;
    }
    l->owner = strdup(owner);
    l->ttl_ms = ttl_ms;
    outage_init(&l->outage);
    *out = l;
    return 0;
}

void lease_close(struct lease *l)
{
    if (l == NULL)
        return;
    if (l->ctx)
        redisFree(l->ctx);
    free(l->host);
    free(l->password);
    free(l->owner);
    free(l);
}

static void mark_down(struct lease *l, const char *why)
{
    if (l->ctx) {
        redisFree(l->ctx);
        l->ctx = NULL;
    }
    if (outage_failed(&l->outage, mono_ms()))
        log_warn("event=redis_down host=%s port=%d reason=\"%s\" action=\"continuing without leases\"",
                 l->host, l->port, why);
}

static int ensure_connected(struct lease *l, char *err, size_t errlen)
{
    struct timeval tv = { 1, 0 };
    redisReply *r = NULL;

    if (l->ctx)
        return 0;
    if (!outage_may_try(&l->outage, mono_ms())) {
        errmsg_set(err, errlen, "redis unavailable (retrying later)");
        return -1;
    }
    l->ctx = redisConnectWithTimeout(l->host, l->port, tv);
    if (l->ctx == NULL || l->ctx->err) {
        errmsg_set(err, errlen, "redis %s:%d: %s", l->host, l->port, l->ctx ? l->ctx->errstr : "out of memory");
        mark_down(l, err);
        return -1;
    }
    redisSetTimeout(l->ctx, tv);
    if (l->password) {
        r = redisCommand(l->ctx, "AUTH %s", l->password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            errmsg_set(err, errlen, "redis AUTH failed");
            goto fail;
        }
        freeReplyObject(r);
    }
    if (l->db) {
        r = redisCommand(l->ctx, "SELECT %d", l->db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            errmsg_set(err, errlen, "redis SELECT %d failed", l->db);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (outage_recovered(&l->outage))
        log_info("event=redis_up host=%s port=%d", l->host, l->port);
    return 0;
fail:
    if (r)
        freeReplyObject(r);
    mark_down(l, err);
    return -1;
}

int lease_acquire(struct lease *l, const char *const *urls, size_t n, uint8_t *got,
                  char *err, size_t errlen)
{
    char key[LEASE_KEY_LEN + 1];
    char ttl[32];

    if (n == 0)
        return 0;
    if (ensure_connected(l, err, errlen) != 0)
        return -1;
    snprintf(ttl, sizeof ttl, "%lld", l->ttl_ms);
    for (size_t i = 0; i < n; i++) {
        lease_key(urls[i], key);
        /* SET NX, then GET: a lease we already hold (a redelivered event)
         * counts as ours */
        redisAppendCommand(l->ctx, "SET %s %s NX PX %s", key, l->owner, ttl);
        redisAppendCommand(l->ctx, "GET %s", key);
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *set = NULL, *get = NULL;
        if (redisGetReply(l->ctx, (void **)&set) != REDIS_OK ||
            redisGetReply(l->ctx, (void **)&get) != REDIS_OK) {
            errmsg_set(err, errlen, "redis: %s", l->ctx->errstr);
            if (set)
                freeReplyObject(set);
            mark_down(l, err);
            return -1;
        }
        got[i] = (set->type == REDIS_REPLY_STATUS) ||
                 (get->type == REDIS_REPLY_STRING && strcmp(get->str, l->owner) == 0);
        freeReplyObject(set);
        freeReplyObject(get);
    }
    return 0;
}

int lease_release(struct lease *l, const char *const *urls, size_t n, char *err, size_t errlen)
{
    char key[LEASE_KEY_LEN + 1];

    if (n == 0)
        return 0;
    if (ensure_connected(l, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        lease_key(urls[i], key);
        redisAppendCommand(l->ctx, "EVAL %s 1 %s %s", release_script, key, l->owner);
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(l->ctx, (void **)&r) != REDIS_OK) {
            errmsg_set(err, errlen, "redis: %s", l->ctx->errstr);
            mark_down(l, err);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}
