/* One image's renditions (see render_image.h). */
#include "render_image.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_gc.h"
#include "db_render.h"
#include "hash.h"
#include "log.h"

const char *render_outcome_name(enum render_outcome o)
{
    switch (o) {
    case RENDER_DONE:
        return "done";
    case RENDER_SKIPPED:
        return "skipped";
    case RENDER_GAVE_UP:
        return "gave_up";
    case RENDER_RETRY:
        break;
    }
    return "retry";
}

/* Test hooks, for tests/integration/75-renditions.sh only: the image whose
 * sha256 IMGCACHE_RENDER_TEST_CRASH names aborts the process, the one
 * IMGCACHE_RENDER_TEST_HANG names never finishes (as a decoder bug
 * would). Unset in any real deployment. */
static void test_hooks(const char *sha256)
{
    const char *crash = getenv("IMGCACHE_RENDER_TEST_CRASH");
    const char *hang = getenv("IMGCACHE_RENDER_TEST_HANG");

    if (crash != NULL && strcmp(crash, sha256) == 0)
        abort();
    while (hang != NULL && strcmp(hang, sha256) == 0)
        pause();
}

/* rendition_make() under the time limit: SIGALRM (default action: the
 * process ends) if it runs past timeout_ms. libvips cannot be stopped
 * safely mid-decode from outside; ending the process and counting the
 * attempt is what stays correct. */
static int render_timed(struct render_ctx *c, const char *sha256, const unsigned char *src, size_t len,
                        const int *sizes, size_t n, struct rendition *outs, char *err, size_t errlen)
{
    unsigned secs = (unsigned)((c->timeout_ms + 999) / 1000);
    int rc;

    signal(SIGALRM, SIG_DFL);
    alarm(secs);
    test_hooks(sha256);
    rc = rendition_make(src, len, sizes, n, &c->opts, outs, err, errlen);
    alarm(0);
    return rc;
}

/* Writes the n renditions into the store (content-addressed, durable on
 * return) and fills rows[i] (keys[i] holds its key, hex[i] its sha256).
 * On S3 the renditions' content locks are taken shared before their
 * HEAD/PUT (*locked = 1, also on failure: the caller releases them after
 * recording the rows), as the committer does (db_gc.h): gc deletes no
 * rendition object a HEAD found until its row is recorded. */
static int store_renditions(struct render_ctx *c, struct rendition *outs, size_t n, struct db_rendition *rows,
                            char (*keys)[STORE_KEY_MAX], char (*hex)[HASH_HEX_LEN + 1], int *locked,
                            char *err, size_t errlen)
{
    struct store_blob blobs[CONFIG_RENDITIONS_MAX];
    struct store_blob *bp[CONFIG_RENDITIONS_MAX];
    const char *kp[CONFIG_RENDITIONS_MAX];
    unsigned char failed[CONFIG_RENDITIONS_MAX];
    size_t put = 0;
    int rc = -1;

    for (; put < n; put++) {
        struct iovec iov = { outs[put].data, outs[put].len };
        int existed = 0;
        if (hash_sha256_hex(outs[put].data, outs[put].len, hex[put]) != 0) {
            errmsg_set(err, errlen, "cannot hash a rendition");
            goto out;
        }
        store_key(hex[put], RENDITION_EXTENSION, keys[put]);
        if (store_blob_put(c->store, &blobs[put], keys[put], &iov, 1, &existed, err, errlen) != 0)
            goto out;
        bp[put] = &blobs[put];
        kp[put] = keys[put];
        rows[put] = (struct db_rendition){
            .preset = outs[put].size, .sha256 = hex[put], .storage_key = keys[put],
            .content_type = RENDITION_CONTENT_TYPE, .width = outs[put].width, .height = outs[put].height,
            .byte_size = (long long)outs[put].len,
        };
    }
    if (store_is_s3(c->store)) {
        const char *shas[CONFIG_RENDITIONS_MAX];
        for (size_t i = 0; i < n; i++)
            shas[i] = hex[i];
        if (db_store_lock_shared(c->db, shas, n, err, errlen) != 0)
            goto out;
        *locked = 1;
    }
    if (store_publish(c->store, bp, kp, n, failed, NULL, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if (failed[i])
            goto out; /* err holds the first failure */
    rc = 0;
out:
    for (size_t i = 0; i < put; i++)
        store_blob_discard(&blobs[i]);
    return rc;
}

/* The presets of c not yet recorded for ev (into sizes); RENDER_SKIPPED
 * when there are none, or nothing should be done. */
static enum render_outcome missing_presets(struct render_ctx *c, const struct stored_event *ev, int *sizes,
                                           size_t *n, char *err, size_t errlen)
{
    struct db_render_state st;
    int rc = db_render_state(c->db, ev->sha256, c->presets, c->n_presets, &st, err, errlen);

    *n = 0;
    if (rc == DB_RENDER_GONE)
        return RENDER_SKIPPED;
    if (rc != 0)
        return RENDER_RETRY;
    if (st.given_up)
        return RENDER_SKIPPED;
    for (size_t i = 0; i < c->n_presets; i++)
        if (!(st.have & (1ull << i)))
            sizes[(*n)++] = c->presets[i];
    return *n == 0 ? RENDER_SKIPPED : RENDER_DONE;
}

/* A permanent failure: described in *v (the caller records it), why in err
 * too for the log. */
static enum render_outcome give_up(struct render_verdict *v, const char *error_class, int attempts,
                                   const char *why, char *err, size_t errlen)
{
    snprintf(v->error_class, sizeof v->error_class, "%s", error_class);
    snprintf(v->message, sizeof v->message, "%s", why);
    v->attempts = attempts > 0 ? attempts : 1;
    errmsg_set(err, errlen, "%s: %s", error_class, why);
    return RENDER_GAVE_UP;
}

/* Counts the attempt and renders; RENDER_DONE with outs filled. */
static enum render_outcome attempt(struct render_ctx *c, const struct stored_event *ev, const unsigned char *src,
                                   size_t len, const int *sizes, size_t n, struct rendition *outs,
                                   struct render_verdict *v, char *err, size_t errlen)
{
    char why[300];
    int attempts = 0, rc;

    rc = db_render_attempt(c->db, ev->sha256, &attempts, err, errlen);
    if (rc != 0)
        return rc == DB_RENDER_GONE ? RENDER_SKIPPED : RENDER_RETRY;
    if (attempts > c->max_attempts) {
        errmsg_set(why, sizeof why, "%d renders did not finish (a crash or over IMGCACHE_RENDER_TIMEOUT)",
                   attempts - 1);
        return give_up(v, "crashed_or_timed_out", attempts, why, err, errlen);
    }
    rc = render_timed(c, ev->sha256, src, len, sizes, n, outs, why, sizeof why);
    if (rc == RENDITION_BAD_IMAGE || rc == RENDITION_TOO_LARGE)
        return give_up(v, rendition_result_name(rc), attempts, why, err, errlen);
    if (rc != RENDITION_OK) {
        /* counted: after max_attempts of these it is given up too */
        errmsg_set(err, errlen, "libvips: %s", why);
        return RENDER_RETRY;
    }
    return RENDER_DONE;
}

enum render_outcome render_image(struct render_ctx *c, const struct stored_event *ev, struct render_verdict *v,
                                 char *err, size_t errlen)
{
    int sizes[CONFIG_RENDITIONS_MAX];
    struct rendition outs[CONFIG_RENDITIONS_MAX];
    struct db_rendition rows[CONFIG_RENDITIONS_MAX];
    char keys[CONFIG_RENDITIONS_MAX][STORE_KEY_MAX];
    char hex[CONFIG_RENDITIONS_MAX][HASH_HEX_LEN + 1];
    unsigned char *src = NULL;
    size_t n = 0, len = 0;
    enum render_outcome o;
    int rc, locked = 0;

    memset(outs, 0, sizeof outs);
    o = missing_presets(c, ev, sizes, &n, err, errlen);
    if (o != RENDER_DONE)
        goto out;
    rc = store_get(c->store, ev->storage_key, &src, &len, err, errlen);
    if (rc == STORE_ERR_MISSING) {
        /* a row without its file: nothing to render from, ever */
        char why[300];
        errmsg_set(why, sizeof why, "%s", err);
        o = give_up(v, "missing", 0, why, err, errlen);
        goto out;
    }
    o = RENDER_RETRY;
    if (rc != 0)
        goto out;
    o = attempt(c, ev, src, len, sizes, n, outs, v, err, errlen);
    if (o != RENDER_DONE)
        goto out;
    o = RENDER_RETRY;
    if (store_renditions(c, outs, n, rows, keys, hex, &locked, err, errlen) != 0)
        goto out;
    rc = db_render_record(c->db, ev->sha256, rows, n, err, errlen);
    o = rc == 0 ? RENDER_DONE : rc == DB_RENDER_GONE ? RENDER_SKIPPED : RENDER_RETRY;
out:
    if (locked) {
        const char *shas[CONFIG_RENDITIONS_MAX];
        for (size_t i = 0; i < n; i++)
            shas[i] = hex[i];
        db_store_unlock_shared(c->db, shas, n);
    }
    for (size_t i = 0; i < n; i++)
        rendition_free(&outs[i]);
    free(src);
    return o;
}
