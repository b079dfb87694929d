#include "breaker.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "log.h"

enum circuit { CLOSED, OPEN, HALF_OPEN };

struct host_state {
    char *host;
    enum circuit state;
    long failures;          /* consecutive retryable failures */
    long long open_until;
    long long cooldown;
    int probing;            /* half-open: the probe is in flight */
    UT_hash_handle hh;
};

struct breaker {
    long threshold;
    long long base_cooldown, max_cooldown;
    struct host_state *hosts;
    size_t n_open;          /* hosts OPEN or HALF_OPEN: kept at each change */
};

int breaker_new(long threshold, long long cooldown_ms, long long max_cooldown_ms, struct breaker **out)
{
    struct breaker *b = calloc(1, sizeof *b);
    *out = NULL;
    if (b == NULL)
        return -1;
    b->threshold = threshold;
    b->base_cooldown = cooldown_ms;
    b->max_cooldown = max_cooldown_ms < cooldown_ms ? cooldown_ms : max_cooldown_ms;
    *out = b;
    return 0;
}

static void drop(struct breaker *b, struct host_state *h)
{
    if (h->state != CLOSED)
        b->n_open--;
    HASH_DEL(b->hosts, h);
    free(h->host);
    free(h);
}

void breaker_free(struct breaker *b)
{
    struct host_state *h, *tmp;
    if (b == NULL)
        return;
    HASH_ITER(hh, b->hosts, h, tmp)
        drop(b, h);
    free(b);
}

static struct host_state *find(struct breaker *b, const char *host)
{
    struct host_state *h = NULL;
    HASH_FIND_STR(b->hosts, host, h);
    return h;
}

long long breaker_check(struct breaker *b, const char *host, long long now_ms)
{
    struct host_state *h = host ? find(b, host) : NULL;

    if (h == NULL || h->state == CLOSED)
        return 0;
    if (h->state == OPEN) {
        if (now_ms < h->open_until)
            return h->open_until;
        h->state = HALF_OPEN;
        h->probing = 0;
    }
    if (h->probing)
        return now_ms + 1000; /* the probe decides; look again soon */
    h->probing = 1;
    return 0;
}

/* host's state, made (closed) when missing; NULL when out of memory or
 * at BREAKER_MAX_HOSTS with every circuit open. */
static struct host_state *find_or_add(struct breaker *b, const char *host)
{
    struct host_state *h = find(b, host);

    if (h != NULL)
        return h;
    if (HASH_COUNT(b->hosts) >= BREAKER_MAX_HOSTS) {
        struct host_state *x, *tmp;
        HASH_ITER(hh, b->hosts, x, tmp)
            if (x->state == CLOSED)
                drop(b, x);
        if (HASH_COUNT(b->hosts) >= BREAKER_MAX_HOSTS)
            return NULL;
    }
    h = calloc(1, sizeof *h);
    if (h == NULL || (h->host = strdup(host)) == NULL) {
        free(h);
        return NULL;
    }
    h->state = CLOSED;
    HASH_ADD_KEYPTR(hh, b->hosts, h->host, strlen(h->host), h);
    return h;
}

void breaker_open(struct breaker *b, const char *host, long long now_ms)
{
    struct host_state *h;

    if (host == NULL)
        return;
    h = find_or_add(b, host);
    if (h == NULL)
        return;
    h->failures++;
    if (h->state == CLOSED) {
        h->cooldown = b->base_cooldown;
        b->n_open++;
    } else
        h->cooldown = h->cooldown * 2 > b->max_cooldown ? b->max_cooldown : h->cooldown * 2;
    h->state = OPEN;
    h->open_until = now_ms + h->cooldown;
    h->probing = 0;
}

void breaker_record(struct breaker *b, const char *host, int retryable_failure, long long now_ms)
{
    struct host_state *h;

    if (host == NULL)
        return;
    h = find(b, host);
    if (!retryable_failure) {
        if (h == NULL)
            return;
        if (h->state != CLOSED)
            log_info("event=circuit_closed origin=%s", host);
        drop(b, h); /* healthy hosts cost no memory */
        return;
    }
    if (h == NULL)
        h = find_or_add(b, host);
    if (h == NULL)
        return;
    h->failures++;
    if (h->state == HALF_OPEN) {
        h->cooldown = h->cooldown * 2 > b->max_cooldown ? b->max_cooldown : h->cooldown * 2;
        h->state = OPEN;
        h->open_until = now_ms + h->cooldown;
        h->probing = 0;
        log_debug("event=circuit_still_open origin=%s cooldown_ms=%lld", host, h->cooldown);
    } else if (h->state == CLOSED && h->failures >= b->threshold) {
        b->n_open++;
        h->cooldown = b->base_cooldown;
        h->state = OPEN;
        h->open_until = now_ms + h->cooldown;
        log_warn("event=circuit_open origin=%s consecutive_failures=%ld cooldown_ms=%lld", host,
                 h->failures, h->cooldown);
    }
}

int breaker_is_open(struct breaker *b, const char *host)
{
    struct host_state *h = host ? find(b, host) : NULL;
    return h != NULL && h->state != CLOSED;
}

size_t breaker_open_count(const struct breaker *b)
{
    return b ? b->n_open : 0;
}
