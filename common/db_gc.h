#ifndef IMGCACHE_DB_GC_H
#define IMGCACHE_DB_GC_H
/* The PostgreSQL side of `imgcache-producer gc`. Part of the db module
 * (db_private.h). Every step works in batches taken in key order after
 * `after` (keyset pagination), and locks what it removes with FOR UPDATE
 * SKIP LOCKED, so several collectors never wait on, nor remove twice,
 * the same row.
 *
 * Ownership: a struct db_gc_list is filled by the functions below and
 * freed by the caller with db_gc_list_release() (also after a failure). */
#include <stddef.h>

#include "db.h"

struct db_gc_item {
    char *key;          /* source_url, or a blob's sha256 */
    char *storage_key;  /* blobs only, else NULL */
    long long bytes;    /* blobs only */
};

struct db_gc_list {
    struct db_gc_item *items;
    size_t n;
};
void db_gc_list_release(struct db_gc_list *l);

enum db_gc_table {
    DB_GC_CACHED_IMAGES = 0,
    DB_GC_IMAGE_FAILURES = 1,
};

/* Step 1, one batch of at most limit rows of `table` (key > after; ""
 * for the first) whose URL no chat or participant references and whose
 * unreferenced_at (schema 6: when the URL last lost a reference) is older
 * than grace_ms. dry_run: lists them. Else, in one transaction: takes the
 * import lock exclusive (DB_GC_LOCK, which every import or sync batch
 * holds shared: a batch that references one of these URLs either
 * committed before, and the URL is kept, or starts after our commit, and
 * its look-up finds the URL uncached and announces it), locks the rows,
 * looks up the references again in a new snapshot, deletes and returns
 * those. *scanned gets the last key examined ("" when the batch was empty:
 * done). */
int db_gc_urls(struct db *db, enum db_gc_table table, long long grace_ms, int dry_run,
               const char *after, int limit, struct db_gc_list *out,
               char *scanned, size_t scannedlen, char *err, size_t errlen) MUST_CHECK;

/* Step 2, first half: opens a transaction and locks at most limit
 * image_blobs rows (sha256 > after) that no cached_images row points at,
 * then returns those still unreferenced in a new snapshot. A worker's
 * commit locks the blob rows it points at (the foreign key check), so a
 * blob being committed is skipped, and a commit that comes later waits
 * until db_gc_blobs_finish() (then fails on the foreign key: the worker's
 * committer retries image by image, and the retry inserts the blob anew). dry_run: no lock, no transaction left open,
 * and the cached_images rows step 1 would remove (grace_ms) count as gone.
 * *scanned as for db_gc_urls(). */
int db_gc_blobs_begin(struct db *db, int dry_run, long long grace_ms, const char *after, int limit, struct db_gc_list *out,
                      char *scanned, size_t scannedlen, char *err, size_t errlen) MUST_CHECK;
/* Second half: deletes the n blobs (sha256) and commits; n == 0 commits.
 * On failure the transaction is rolled back (nothing deleted). */
int db_gc_blobs_finish(struct db *db, const char *const *sha256, size_t n, char *err, size_t errlen)
    MUST_CHECK;
/* Rolls back what db_gc_blobs_begin() opened (an error between the two). */
void db_gc_abort(struct db *db);

/* Step 3: of the n storage keys, those with no image_blobs row (*out, key
 * = the storage key). */
int db_gc_unknown_keys(struct db *db, const char *const *keys, size_t n, struct db_gc_list *out,
                       char *err, size_t errlen) MUST_CHECK;

/* Step 3, renditions: removes from l (from db_gc_unknown_keys) the keys an
 * image_renditions row names. A rendition file has no image_blobs row of
 * its own; it goes once no row names it (the rows go with their blob). */
int db_gc_keep_rendition_keys(struct db *db, struct db_gc_list *l, char *err, size_t errlen) MUST_CHECK;

/* S3 stores: a per-content lock (keyed by the sha256; for a rendition,
 * the hash its key is named by) that a worker holds shared, on its own
 * connection, from before its HEAD/PUT of an object until the rows
 * pointing at it are committed; gc takes it exclusive (try, never wait)
 * for its transaction before it deletes an object. So gc never deletes an
 * object a worker found and is about to commit, and a worker that comes
 * while gc deletes waits, then HEADs a missing object and PUTs it again.
 * One statement each, in sorted order. */
int db_store_lock_shared(struct db *db, const char *const *sha256, size_t n, char *err, size_t errlen)
    MUST_CHECK;
/* Releases what db_store_lock_shared() took (the same list). */
void db_store_unlock_shared(struct db *db, const char *const *sha256, size_t n);
/* In gc's open transaction: locked[i] = 1 when the lock of sha256[i] was
 * free and is now gc's until the transaction ends, 0 when a worker holds
 * it (that content is in use: skip it this run). */
int db_gc_try_store_locks(struct db *db, const char *const *sha256, size_t n, unsigned char *locked,
                          char *err, size_t errlen) MUST_CHECK;
/* A transaction for gc's S3 steps (step 3's batches); db_gc_commit()
 * ends it, db_gc_abort() rolls it back. */
int db_gc_begin(struct db *db, char *err, size_t errlen) MUST_CHECK;
int db_gc_commit(struct db *db, char *err, size_t errlen) MUST_CHECK;

#endif
