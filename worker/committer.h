#ifndef IMGCACHE_COMMITTER_H
#define IMGCACHE_COMMITTER_H
/* Makes batches of downloaded images durable and records them, on a thread
 * of its own, so that the event loop keeps downloading meanwhile: for each
 * batch, store_publish() (flush, rename, flush; or on S3 a HEAD and a PUT
 * per blob, each acknowledged) and then db_commit_images()
 * on the committer's own PostgreSQL connection. The flushes wait for the
 * disk and the commit for the server; neither stops a download now.
 *
 * A download held in memory (body set) is written into the store here
 * first (store_blob_put), so the loop never waits for the disk for it.
 *
 * One batch at a time: the loop submits a batch, goes on, and takes it back
 * when a byte arrives on notify_fd (the loop's wake pipe). The next batch
 * is whatever completed meanwhile, so batches grow when the disk or the
 * database is slow (group commit).
 *
 * Ownership: committer_new() returns a struct committer freed by
 * committer_free(), which waits for a batch in progress. The batch and
 * everything its items point to belong to the caller, but between
 * committer_submit() and the committer_take() that returns it the
 * committer reads the items' bodies and writes the items (their blob and
 * outcome: nothing outside the batch), and the caller must not touch
 * them. */
#include <stddef.h>

#include "body.h"
#include "db.h"
#include "errmsg.h"
#include "store.h"

#define COMMIT_BATCH_MAX 256

enum commit_outcome {
    COMMIT_OK = 0,
    COMMIT_STORAGE_FAILED, /* the blob could not be made durable (err says why) */
    COMMIT_REFUSED,        /* PostgreSQL refused this row (err says why) */
    COMMIT_DB_DOWN,        /* the server could not be reached: nothing recorded */
    COMMIT_STORE_DOWN,     /* S3 unreachable, 5xx or SlowDown: not stored, nothing recorded */
    COMMIT_STORE_DENIED,   /* S3 refused the credentials, bucket or region (err names the setting) */
};

struct commit_item {
    struct store_blob blob;     /* in: the sealed blob, moved here (unused with body); out:
                                   the blob as published, or filled here from body, for the
                                   caller to move back; img.storage_key is its key */
    const struct body *body;    /* NULL: the blob is sealed; else its bytes, hashed */
    int wrote;                  /* out: its blob is a new file (its content was not stored yet) */
    struct db_image img;
    void *owner;                /* the caller's, untouched */
    enum commit_outcome outcome;
    char err[300];
};

struct commit_batch {
    struct commit_item items[COMMIT_BATCH_MAX];
    size_t n;
};

struct committer;

/* Connects to conninfo (failing here, not later, when it cannot) and
 * starts the thread. notify_fd gets one byte per finished batch. */
int committer_new(const char *conninfo, struct store *store, int notify_fd, struct committer **out,
                  char *err, size_t errlen) MUST_CHECK;
/* 1 while a batch is submitted and not yet taken back. */
int committer_busy(const struct committer *c);
/* Hands over batch b; -1 when one is already submitted. */
int committer_submit(struct committer *c, struct commit_batch *b) MUST_CHECK;
/* The submitted batch once it is finished (outcome set on every item);
 * NULL while it is still being worked on or when none is submitted. */
struct commit_batch *committer_take(struct committer *c);
void committer_free(struct committer *c);

#endif
