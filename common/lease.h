#ifndef IMGCACHE_LEASE_H
#define IMGCACHE_LEASE_H
/* Download leases in Redis, so that no two workers fetch the same URL:
 *   SET imgcache:lease:<sha256(url)> <owner> NX PX <ttl>
 * released after the row is committed with a compare-and-delete script (a
 * lease that expired and was taken by another worker is never deleted).
 * Commands for a batch of URLs are pipelined: one round trip per batch.
 *
 * When Redis is unreachable the calls return -1 and the caller goes on
 * without leases (rows stay unique through PostgreSQL constraints and the
 * store is content-addressed); the next call reconnects, at most once per
 * backoff interval (doubling from 250 ms to 10 s).
 *
 * Ownership: lease_connect() returns a struct lease freed by lease_close();
 * owner and redis_url are copied. URL arrays are borrowed. */
#include <stddef.h>
#include <stdint.h>

#include "errmsg.h"

struct lease;

/* Parses redis://[:password@]host[:port][/db]; connects lazily, so a Redis
 * that is down at start-up is not an error (-1 only for a bad URL). No
 * message, here or later, holds the password or a piece of the URL that
 * may be one. */
int lease_connect(const char *redis_url, const char *owner, long long ttl_ms,
                  struct lease **out, char *err, size_t errlen) MUST_CHECK;
/* The same parse without connecting, for the configuration check: -1 with
 * "REDIS_URL: ..." in err. */
int lease_url_check(const char *redis_url, char *err, size_t errlen) MUST_CHECK;
void lease_close(struct lease *l);

/* got[i] = 1 when this owner now holds the lease of urls[i] (newly taken, or
 * already ours), 0 when another owner holds it. -1: Redis unavailable. */
int lease_acquire(struct lease *l, const char *const *urls, size_t n, uint8_t *got,
                  char *err, size_t errlen) MUST_CHECK;
/* Deletes the leases of urls that this owner still holds. */
int lease_release(struct lease *l, const char *const *urls, size_t n, char *err, size_t errlen)
    MUST_CHECK;

/* "imgcache:lease:" + sha256 hex of url, into key (>= LEASE_KEY_LEN + 1). */
#define LEASE_KEY_LEN (15 + 64)
void lease_key(const char *url, char *key);

#endif
