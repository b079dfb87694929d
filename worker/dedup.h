#ifndef IMGCACHE_DEDUP_H
#define IMGCACHE_DEDUP_H
/* Dedup across the fleet: a new job's URL is looked up in PostgreSQL (a
 * cached image or a recorded failure finishes it), the rest are leased in
 * Redis (SET NX) so that one worker downloads each URL, and looked up once
 * more under the lease. Also the PostgreSQL outage state of the loop:
 * while the database is down the loop holds offsets and retries with
 * backoff.
 *
 * Ownership: borrows the worker's jobs; URL arrays live on the stack. */
#include "worker_private.h"

/* Notes a PostgreSQL failure during `what`: logs the outage once, backs off. */
void dedup_db_trouble(struct worker *w, const char *what, const char *err);
/* 1 when the database may be used now (reconnecting when it was down). */
int dedup_db_usable(struct worker *w);
/* Asks PostgreSQL whether it answers (an empty query; while it is down, a
 * reconnect when the backoff allows): for /readyz and dependency_up, which
 * must not wait for the next batch to learn it. Run every DB_PROBE_EVERY_MS
 * when the metrics endpoint is on. */
void dedup_db_probe(struct worker *w);
/* Jobs from q (JOB_NEW or JOB_WAITING, at most limit): finished when
 * cached or failed already, JOB_WAITING when another worker holds the
 * lease, else resolved and JOB_READY. */
void dedup_lookup_and_lease(struct worker *w, struct job **q, size_t limit);
/* Releases the leases this worker holds among batch[0..n), in one round
 * trip. n is at most BATCH_MAX. */
void dedup_release_leases(struct worker *w, struct job **batch, size_t n);
/* At shutdown: releases the lease of every job, in batches. */
void dedup_release_all_leases(struct worker *w);

#endif
