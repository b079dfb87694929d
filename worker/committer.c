#include "committer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_gc.h"
#include "errmsg.h"

struct committer {
    struct store *store;
    struct db *db;              /* used by the thread only, once it runs */
    int notify_fd;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct commit_batch *todo;  /* submitted, not started */
    struct commit_batch *done;  /* finished, not taken */
    int quit;
    int submitted;              /* caller's side only: a batch is out */
};

static void mark(struct commit_item *it, enum commit_outcome o, const char *why)
{
    it->outcome = o;
    snprintf(it->err, sizeof it->err, "%s", why);
}

/* Writes an item held in memory into a temporary file of its blob, or
 * finds its content already stored; an item it cannot write is marked. */
static int put_body(struct committer *c, struct commit_item *it)
{
    const struct body *body = it->body;
    struct iovec *iov = calloc(body->n_blocks ? body->n_blocks : 1, sizeof *iov);
    int existed = 0, rc = -1;

    if (iov == NULL) {
        mark(it, COMMIT_STORAGE_FAILED, "out of memory");
        return -1;
    }
    const unsigned char *data;
    size_t len;

    for (size_t i = 0; body_block(body, i, &data, &len); i++)
        iov[i] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
    if (store_blob_put(c->store, &it->blob, it->img.storage_key, iov, (int)body->n_blocks, &existed,
                       it->err, sizeof it->err) != 0) {
        it->outcome = COMMIT_STORAGE_FAILED;
        goto out;
    }
    rc = 0;
out:
    free(iov);
    return rc;
}

/* Every item of b gets its outcome. */
static void publish_and_record(struct committer *c, struct commit_batch *b)
{
    struct store_blob *blobs[COMMIT_BATCH_MAX];
    const char *keys[COMMIT_BATCH_MAX];
    unsigned char failed[COMMIT_BATCH_MAX], unwritten[COMMIT_BATCH_MAX], created[COMMIT_BATCH_MAX];
    struct db_image imgs[COMMIT_BATCH_MAX];
    size_t idx[COMMIT_BATCH_MAX], m = 0, k = 0;
    char err[300] = "";
    int published;

    for (size_t i = 0; i < b->n; i++) {
        blobs[i] = &b->items[i].blob;
        keys[i] = b->items[i].img.storage_key;
        mark(&b->items[i], COMMIT_OK, "");
        unwritten[i] = b->items[i].body && put_body(c, &b->items[i]) != 0;
    }
    /* blobs durable under their names before the rows that point at them */
    published = store_publish(c->store, blobs, keys, b->n, failed, created, err, sizeof err);
    if (published == -1)
        memset(failed, 1, b->n);
    for (size_t i = 0; i < b->n; i++) {
        b->items[i].wrote = !unwritten[i] && !failed[i] && created[i];
        if (unwritten[i])
            continue; /* put_body() said why */
        if (failed[i]) {
            mark(&b->items[i], published == STORE_ERR_UNAVAILABLE ? COMMIT_STORE_DOWN
                               : published == STORE_ERR_DENIED  ? COMMIT_STORE_DENIED
                                                                : COMMIT_STORAGE_FAILED, err);
            continue;
        }
        imgs[m] = b->items[i].img;
        idx[m++] = i;
    }
    if (m == 0)
        return;
    if (!db_ok(c->db) && db_reset(c->db, err, sizeof err) != 0)
        goto down;
    if (db_commit_images(c->db, imgs, m, err, sizeof err) == 0)
        return;
    if (!db_ok(c->db))
        goto down;
    /* the server is fine but refused the statement: find the image it
     * refuses, so that one bad row cannot hold up the rest forever */
    for (; k < m; k++) {
        if (db_commit_images(c->db, &imgs[k], 1, err, sizeof err) == 0)
            continue;
        if (!db_ok(c->db))
            goto down;
        mark(&b->items[idx[k]], COMMIT_REFUSED, err);
    }
    return;
down:
    /* from the first image not recorded on */
    for (; k < m; k++)
        mark(&b->items[idx[k]], COMMIT_DB_DOWN, err);
}

/* On S3, the batch's content locks are held shared (db_gc.h) from before
 * the HEAD/PUTs until the rows are committed or failed: gc deletes no
 * object between a HEAD that found it and the commit of a row pointing at
 * it, and one that gc is deleting is waited for, then HEADed as missing and
 * PUT again. With the lock held, gc never removes a blob row of the batch
 * either, so the image-by-image retry needs no second HEAD; a batch that
 * comes back because PostgreSQL was down is published again (store.h: its
 * spool files are kept), HEADs included. Two statements per batch: the
 * locks before, their release after. */
static void commit_batch(struct committer *c, struct commit_batch *b)
{
    const char *shas[COMMIT_BATCH_MAX];
    char err[300] = "";
    int s3 = store_is_s3(c->store);

    for (size_t i = 0; s3 && i < b->n; i++)
        shas[i] = b->items[i].img.sha256;
    if (s3 && ((!db_ok(c->db) && db_reset(c->db, err, sizeof err) != 0) ||
               db_store_lock_shared(c->db, shas, b->n, err, sizeof err) != 0)) {
        for (size_t i = 0; i < b->n; i++) {
            struct commit_item *it = &b->items[i];
            it->wrote = 0;
            mark(it, COMMIT_DB_DOWN, err); /* nothing uploaded nor recorded */
            /* the caller takes a body as written from here on: spool it
             * (a failure marks the item so) */
            if (it->body)
                put_body(c, it);
        }
        return;
    }
    publish_and_record(c, b);
    if (s3)
        db_store_unlock_shared(c->db, shas, b->n);
}

static void *run(void *arg)
{
    struct committer *c = arg;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        struct commit_batch *b;
        while (c->todo == NULL && !c->quit)
            pthread_cond_wait(&c->wake, &c->lock);
        if (c->todo == NULL)
            break; /* quit, and nothing left to do */
        b = c->todo;
        c->todo = NULL;
        pthread_mutex_unlock(&c->lock);
        commit_batch(c, b);
        pthread_mutex_lock(&c->lock);
        c->done = b;
        /* a full pipe already wakes the loop: a lost byte does not matter */
        ssize_t wrote = write(c->notify_fd, "c", 1);
        (void)wrote;
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int committer_new(const char *conninfo, struct store *store, int notify_fd, struct committer **out,
                  char *err, size_t errlen)
{
    struct committer *c = calloc(1, sizeof *c);
    int rc = -1;

    *out = NULL;
    if (c == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    c->store = store;
    c->notify_fd = notify_fd;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (db_connect(conninfo, &c->db, err, errlen) != 0)
        goto out;
    if (pthread_create(&c->thread, NULL, run, c) != 0) {
        errmsg_set(err, errlen, "cannot start the committer thread");
        goto out;
    }
    c->started = 1;
    *out = c;
    c = NULL;
    rc = 0;
out:
    committer_free(c);
    return rc;
}

int committer_busy(const struct committer *c)
{
    return c->submitted;
}

int committer_submit(struct committer *c, struct commit_batch *b)
{
    if (c->submitted)
        return -1;
    c->submitted = 1;
    pthread_mutex_lock(&c->lock);
    c->todo = b;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

struct commit_batch *committer_take(struct committer *c)
{
    struct commit_batch *b;

    if (!c->submitted)
        return NULL;
    pthread_mutex_lock(&c->lock);
    b = c->done;
    c->done = NULL;
    pthread_mutex_unlock(&c->lock);
    if (b)
        c->submitted = 0;
    return b;
}

void committer_free(struct committer *c)
{
    if (c == NULL)
        return;
    if (c->started) {
        pthread_mutex_lock(&c->lock);
        c->quit = 1;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL); /* after the batch in progress */
    }
    db_close(c->db);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
