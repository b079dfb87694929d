#ifndef IMGCACHE_RENDER_IMAGE_H
#define IMGCACHE_RENDER_IMAGE_H
/* imgcache-renderer's work on one image-stored event: skip what is done,
 * count the attempt, read the blob, render the missing presets under a
 * time limit, store each rendition content-addressed (<aa>/<sha256>.webp)
 * and record the rows.
 *
 * A decoder that crashes, or runs past the time limit (alarm(): SIGALRM
 * ends the process), leaves its attempt counted in render_failures: once
 * max_attempts renders did not finish, the blob is given up without
 * decoding it again, so one hostile image cannot keep a renderer
 * restarting.
 *
 * Ownership: struct render_ctx borrows everything it points to. */
#include <stddef.h>

#include "config.h"
#include "db.h"
#include "errmsg.h"
#include "event.h"
#include "rendition.h"
#include "store.h"

struct render_ctx {
    struct db *db;
    struct store *store;
    const int *presets;
    size_t n_presets;
    struct rendition_opts opts;
    long long timeout_ms;
    int max_attempts;
};

enum render_outcome {
    RENDER_DONE,     /* the missing renditions are stored and recorded */
    RENDER_SKIPPED,  /* nothing to do: all there, given up before, or the blob is gone */
    RENDER_GAVE_UP,  /* a permanent failure, described in the verdict, NOT recorded yet */
    RENDER_RETRY,    /* a failure of the moment (PostgreSQL, the store, libvips): err says why */
};

/* Why an image is given up. The caller publishes its dead letter and,
 * once Kafka acknowledged it, writes the render_failures row
 * (db_render_give_up): a renderer stopped in between gives it up again. */
struct render_verdict {
    char error_class[32];  /* bad_image, too_large, crashed_or_timed_out, missing */
    char message[300];     /* our words and libvips' (no URL, no secret) */
    int attempts;          /* renders counted so far (at least 1) */
};

/* The outcome of ev; err says why for RENDER_RETRY, *v for RENDER_GAVE_UP. */
enum render_outcome render_image(struct render_ctx *c, const struct stored_event *ev, struct render_verdict *v,
                                 char *err, size_t errlen);
/* "done", "skipped", "gave_up", "retry". */
const char *render_outcome_name(enum render_outcome o);

#endif
