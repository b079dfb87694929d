#ifndef IMGCACHE_RENDER_FAILURE_H
#define IMGCACHE_RENDER_FAILURE_H
/* imgcache-renderer's dead letters: an image given up (render_image.h's
 * verdict) is published to <IMGCACHE_STORED_TOPIC>-dlt (image-stored-dlt),
 * keyed by its sha256, in the shape of the worker's dead letters: the
 * value is the image-stored event as consumed, the headers say where it
 * came from and why (source_topic, source_partition, source_offset,
 * attempts, error_class, error_message, first_failed_at). The renderer
 * stores the event's offset only once the dead letter is acknowledged and
 * the render_failures row written.
 *
 * Ownership: render_failure_open() returns a struct render_failure (the
 * renderer's one librdkafka producer) freed by render_failure_free(); cfg
 * is borrowed and must outlive it. */
#include <signal.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "errmsg.h"
#include "render_image.h"

struct render_failure;

/* Creates the producer and asks for the dead-letter topic's metadata (a
 * missing topic is logged, not fatal: publishes wait for it). */
int render_failure_open(const struct config *cfg, struct render_failure **out, char *err, size_t errlen)
    MUST_CHECK;
/* The dead-letter topic's name. */
const char *render_failure_topic(const struct render_failure *f);
/* Publishes m's dead letter (key sha256, why in v) and waits for Kafka's
 * acknowledgement, polling every 100 ms so that *stop is seen. 0 once
 * acknowledged; -1 with a message when the delivery failed or *stop came
 * first (then the offset stays where it is: a restart publishes again). */
int render_failure_publish(struct render_failure *f, const rd_kafka_message_t *m, const char *sha256,
                           const struct render_verdict *v, volatile sig_atomic_t *stop, char *err,
                           size_t errlen) MUST_CHECK;
/* Waits a while for what is in flight, then frees (NULL is fine). */
void render_failure_free(struct render_failure *f);

#endif
