#ifndef IMGCACHE_BREAKER_H
#define IMGCACHE_BREAKER_H
/* Per-origin circuit breaker: after `threshold` consecutive retryable
 * failures to one origin, stop sending to it for a cool-down instead of burning
 * attempts. When the cool-down ends one probe goes through: success closes
 * the circuit, failure opens it again for twice as long (up to max). Opening
 * and closing are logged once each.
 *
 * The `host` key is the caller's choice; the worker passes the origin,
 * "scheme://host:port" (netguard_origin_key()), so that failures of one
 * port never hold back another service on the same host.
 *
 * Only failing keys take memory, and at most BREAKER_MAX_HOSTS of them.
 * Ownership: breaker_new() returns a breaker freed by breaker_free(); key
 * strings are copied. Times are the caller's monotonic milliseconds. */
#include <stddef.h>

#include "errmsg.h"

#define BREAKER_MAX_HOSTS 10000

struct breaker;

int breaker_new(long threshold, long long cooldown_ms, long long max_cooldown_ms, struct breaker **out)
    MUST_CHECK;
void breaker_free(struct breaker *b);
/* 0: send now (circuit closed, or this caller is the half-open probe).
 * Otherwise the time before which nothing should be sent to host. */
long long breaker_check(struct breaker *b, const char *host, long long now_ms);
/* The outcome of a request to host: retryable_failure = 1 for a timeout,
 * connection error, 408, 429 or 5xx; 0 for anything the host answered.
 * Outcomes that say nothing about the host's health (an address the guard
 * refused, a bad URL) must not be recorded at all. */
void breaker_record(struct breaker *b, const char *host, int retryable_failure, long long now_ms);
/* Opens host's circuit now, whatever its count: for a failure that is
 * certain to repeat for every request (our own credentials refused). An
 * open circuit's cool-down doubles (up to max), as after a failed probe.
 * Logged by the caller, which knows why. */
void breaker_open(struct breaker *b, const char *host, long long now_ms);
/* 1 when host's circuit is open or half-open. */
int breaker_is_open(struct breaker *b, const char *host);
/* How many hosts' circuits are open or half-open now (for a gauge: kept
 * up to date at each change, so reading it costs nothing). 0 for NULL. */
size_t breaker_open_count(const struct breaker *b);

#endif
