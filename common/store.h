#ifndef IMGCACHE_STORE_H
#define IMGCACHE_STORE_H
/* Content-addressed blob store, in a local folder (file://, described
 * first) or in an S3 bucket (s3://bucket/prefix: the same keys under the
 * prefix; see store_open_config). On a local filesystem:
 *   <dir>/<aa>/<sha256>.<ext>      (aa: the hash's first 2 hex digits; the 256
 *                                   shard folders are made by store_open())
 * A blob is streamed into <dir>/.tmp/<unique>.part while it downloads and
 * hashed on the way. Sealing it names it by its hash; publishing a batch of
 * sealed blobs makes their bytes durable (one syncfs for the batch), renames
 * each to its final name, and makes the renames durable (one more syncfs):
 * a final name never shows a torn or half-written file, and the flushes are
 * batched, not skipped. A blob that already exists is not written again: the
 * temporary file is dropped.
 *
 * Ownership: store_open() returns a struct store freed by store_close().
 * A struct store_blob lives in the caller's memory; store_blob_begin() opens
 * its fd and hash; store_publish() (after store_blob_seal) or
 * store_blob_discard() ends it (always one of the two; discarding a
 * published blob is harmless). */
#include <stddef.h>
#include <sys/uio.h>

#include "errmsg.h"
#include "hash.h"

#define STORE_HEAD_MAX 16384  /* bytes kept in memory for sniffing; the rest is mapped when needed */
#define STORE_KEY_MAX 128
#define STORE_SHARDS 256     /* <aa> folders, one per first byte of the hash */
/* A blob file written, or found already stored (then its mtime is set to
 * now), less than this long ago is in use: `imgcache-producer gc` leaves
 * it, and temporary files as young, alone. */
#define STORE_IN_USE_S 3600

struct store;

struct store_blob {
    int fd;
    const struct store *store;
    char tmp_name[48];        /* under <dir>/.tmp; "" once renamed or dropped */
    struct hash hash;
    long long size;
    unsigned char *head;      /* first bytes, up to STORE_HEAD_MAX (malloc'd) */
    size_t head_len;
};

/* Creates dir and dir/.tmp when missing. Removes temporary files older
 * than an hour (left by a crash). -1 with a message, or
 * STORE_ERR_NOT_WRITABLE when the folder exists but may not be written
 * (a setting to fix, not a failure of the moment). */
#define STORE_ERR_NOT_WRITABLE (-2)
int store_open(const char *dir, struct store **out, char *err, size_t errlen)
    MUST_CHECK;
void store_close(struct store *s);

/* S3 failures of store_open_config() and store_publish(): credentials,
 * bucket or region refused (a setting to fix: the message names it, never
 * the secret), or the service unreachable, answering 5xx or SlowDown (an
 * outage: try again later). */
#define STORE_ERR_DENIED (-4)
#define STORE_ERR_UNAVAILABLE (-5)
struct config;
/* The store IMGCACHE_STORAGE_URL names: file:///path or "" for
 * IMGCACHE_STORAGE_DIR (as store_open; config_load puts a file:// path
 * into storage_dir), or s3://bucket[/prefix] with the
 * AWS_* settings; downloads are then spooled in IMGCACHE_STORAGE_DIR/.tmp
 * until their PUT, and the bucket is checked at once (a signed HEAD):
 * STORE_ERR_DENIED when refused. An unreachable service is logged, not an
 * error: uploads wait for it. Call after curl_global_init(). */
int store_open_config(const struct config *cfg, struct store **out, char *err, size_t errlen)
    MUST_CHECK;
/* The settings' consistency (for config.c): the URL's form, and for s3://
 * the key pair and the region. A message names the setting. */
int store_config_check(const struct config *cfg, char *err, size_t errlen) MUST_CHECK;
int store_is_s3_url(const char *url);
/* For an s3:// IMGCACHE_STORAGE_URL, the URL its objects are read from
 * (the bucket's, with the prefix: a key's URL is base/key), the public
 * base `migrate` writes when IMGCACHE_PUBLIC_URL is empty. No request is
 * made. -1 when the URL is not s3:// or does not parse. */
int store_s3_public_base(const struct config *cfg, char *out, size_t outlen) MUST_CHECK;

int store_blob_begin(struct store *s, struct store_blob *b, char *err, size_t errlen)
    MUST_CHECK;
int store_blob_write(struct store_blob *b, const void *data, size_t len, char *err, size_t errlen)
    MUST_CHECK;
/* Maps the whole temporary file read-only (for sniffers that need more than
 * the head). *len gets its size; unmap with store_unmap(). NULL on error. */
const unsigned char *store_blob_map(struct store_blob *b, size_t *len);
void store_unmap(const unsigned char *p, size_t len);
/* Finishes the hash and names the blob: sha256 gets the hex digest, key
 * the storage key relative to the store's folder. *existed = 1 when that
 * content is already stored (the temporary file is dropped then). Closes
 * the fd and frees the head (the sniffers are done with it); the temporary
 * file stays until store_publish() or discard. */
int store_blob_seal(struct store *s, struct store_blob *b, const char *ext,
                    char sha256[HASH_HEX_LEN + 1], char key[STORE_KEY_MAX], int *existed,
                    char *err, size_t errlen) MUST_CHECK;
/* The storage key of content sha256 with extension ext. */
void store_key(const char sha256[HASH_HEX_LEN + 1], const char *ext, char key[STORE_KEY_MAX]);
/* A whole body already in memory and already hashed (key from store_key):
 * when key exists with that size, *existed = 1 and nothing is written;
 * else the bytes go to a new temporary file of b, closed, to be made
 * durable by store_publish() like a sealed blob. b is (re)initialised
 * here; on error it is discarded. May run on another thread than
 * store_blob_begin(): the two share only the store's name counter. */
int store_blob_put(struct store *s, struct store_blob *b, const char *key, const struct iovec *iov,
                   int iovcnt, int *existed, char *err, size_t errlen) MUST_CHECK;
/* Makes n sealed blobs durable under their keys (keys[i] from seal).
 * failed[i] = 1 (with the message of the first failure in err) for a blob
 * that could not be renamed or uploaded; returns -1 when nothing could be
 * made durable, STORE_ERR_UNAVAILABLE or STORE_ERR_DENIED when S3 failed
 * so (failed[] says which blobs; the others are stored). On S3 each blob
 * is a HEAD and, when missing, a PUT (Content-Type, Cache-Control: public,
 * max-age=31536000, immutable), acknowledged before this returns.
 * created (NULL: not wanted): created[i] = 1 when this call made blob i's
 * name, 0 when the same content was stored already, by an earlier blob of
 * the same batch too (its temporary file is then dropped): the count of
 * new files. Published blobs need no discard (calling it is harmless),
 * except on S3: there a blob keeps its spool file until discarded, so that
 * publishing it again (its rows did not commit) HEADs the object again and
 * PUTs it if gc deleted it meanwhile. */
int store_publish(struct store *s, struct store_blob **blobs, const char *const *keys, size_t n,
                  unsigned char *failed, unsigned char *created, char *err, size_t errlen)
    MUST_CHECK;
void store_blob_discard(struct store_blob *b);

/* Reads the object under key whole: *data (malloc'd, the caller frees it)
 * and *len. STORE_ERR_MISSING (with a message) when there is no such
 * object (gc took it), -1 with a message on any other error. */
#define STORE_ERR_MISSING (-3)
int store_get(struct store *s, const char *key, unsigned char **data, size_t *len, char *err,
              size_t errlen) MUST_CHECK;

/* gc of an S3 store. An object as listed: key relative to the prefix,
 * size, LastModified (seconds since the epoch; -1 when not given). */
struct store_object {
    char key[STORE_KEY_MAX];
    long long size;
    long long mtime;
};
/* Called with each page of a listing (objs borrowed for the call); a
 * non-zero return (with err set) stops the listing and is returned. */
typedef int (*store_list_fn)(void *arg, const struct store_object *objs, size_t n, char *err, size_t errlen);
int store_is_s3(const struct store *s);
/* Lists every object of an S3 store (ListObjectsV2, page by page; a page
 * holds up to 1000). -1 for a folder store (gc walks its folders). */
int store_list(struct store *s, store_list_fn fn, void *arg, char *err, size_t errlen) MUST_CHECK;
/* Deletes the object under key (S3: one DELETE; a missing one counts as
 * deleted; a folder: unlink). 0, or an error class as store_publish's. */
int store_delete(struct store *s, const char *key, char *err, size_t errlen) MUST_CHECK;

#endif
