#ifndef IMGCACHE_OUTAGE_H
#define IMGCACHE_OUTAGE_H
/* The state of a server we cannot reach: whether an outage is on, and when
 * to try again. The first failure starts the outage (the caller logs it
 * once); each failure pushes the next try back by a delay doubling from
 * OUTAGE_BACKOFF_MIN_MS to OUTAGE_BACKOFF_MAX_MS; a success ends it (the
 * caller logs that once). Used for Redis (lease.c) and PostgreSQL (the
 * worker's dedup.c), so both back off alike.
 *
 * Ownership: a struct outage lives in the caller's memory; nothing is
 * allocated. Times are monotonic milliseconds. Not thread-safe. */

#define OUTAGE_BACKOFF_MIN_MS 250
#define OUTAGE_BACKOFF_MAX_MS 10000

struct outage {
    int down;               /* an outage is on (and was reported) */
    long long retry_at_ms;  /* no try before this */
    long long backoff_ms;   /* the delay after the next failure */
};

void outage_init(struct outage *o);
/* A failure at now_ms. 1 when it starts an outage (report it), else 0. */
int outage_failed(struct outage *o, long long now_ms);
/* 1 when a try may be made at now_ms: the backoff of the last failure is over. */
int outage_may_try(const struct outage *o, long long now_ms);
/* A success. 1 when it ends an outage (report it), else 0. */
int outage_recovered(struct outage *o);

#endif
