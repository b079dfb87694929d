#ifndef IMGCACHE_RENDERER_H
#define IMGCACHE_RENDERER_H
/* imgcache-renderer's loop: a member of consumer group
 * IMGCACHE_RENDER_GROUP on IMGCACHE_STORED_TOPIC, one event at a time
 * (libvips spreads one image over its own threads; more renderers scale
 * out through the group). An event's offset is stored once its image is
 * done, skipped or given up, and committed by librdkafka within a second
 * and on close (at-least-once; the rows are idempotent). A given-up image
 * is dead-lettered first (render_failure.h), acknowledged, then recorded.
 * A failure of the moment (PostgreSQL, the store, Kafka) is retried in
 * place, 1s doubling to 30s, the offset left where it is.
 *
 * Ownership: renderer_new() returns a struct renderer freed by
 * renderer_free(); cfg is borrowed and must outlive it. */
#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "errmsg.h"

struct renderer;

/* Connects to PostgreSQL (schema checked), opens the store, creates the
 * dead letters' producer, joins the group. -1 with a message; RENDERER_ERR_CONFIG for a setting to fix. */
#define RENDERER_ERR_CONFIG (-2)
int renderer_new(const struct config *cfg, struct renderer **out, char *err, size_t errlen) MUST_CHECK;
/* Until *stop: the image in hand is finished, its offset stored, the
 * consumer closed (committing). -1 on a fatal consumer error. */
int renderer_run(struct renderer *r, volatile sig_atomic_t *stop, char *err, size_t errlen) MUST_CHECK;
void renderer_free(struct renderer *r);

#endif
