#ifndef IMGCACHE_CONSUMER_H
#define IMGCACHE_CONSUMER_H
/* The Kafka consumer: subscription to <topic> and <topic>-retry,
 * rebalances, messages -> events -> jobs, storing the offsets of finished
 * events, and pausing partitions for backpressure.
 *
 * Ownership: consumer_open() sets w->rk, w->queue and w->wake (the loop's
 * wake pipe), which worker_free() closes. */
#include "errmsg.h"
#include "worker_private.h"

/* -1 with a message, or WORKER_ERR_CONFIG for a bad IMGCACHE_GROUP. */
int consumer_open(struct worker *w, char *err, size_t errlen) MUST_CHECK;
/* Takes up to a budget of messages (none at the cap; see consumer.c). */
void consumer_poll(struct worker *w);
/* Stores each partition's finished prefix with librdkafka (auto-committed). */
void consumer_store_offsets(struct worker *w);
/* Pauses or resumes partitions for backpressure. */
void consumer_sync_pause(struct worker *w);
/* At shutdown, after the jobs are gone: stores the finished offsets,
 * commits them, leaves the group and destroys the consumer (w->rk NULL
 * after). Nothing without a consumer. */
void consumer_close(struct worker *w);

#endif
