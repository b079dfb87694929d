#ifndef IMGCACHE_DB_H
#define IMGCACHE_DB_H
/* PostgreSQL access for the producer and the worker (libpq, blocking calls,
 * one round trip per batch, values always passed as parameters).
 *
 * Ownership: db_connect() returns a struct db the caller frees with
 * db_close() (also after a failed connect: *out is NULL then). Input arrays
 * and strings are borrowed for the duration of the call. */
#include <stddef.h>
#include <stdint.h>

#include "beeper.h"
#include "errmsg.h"

struct db;

/* Checks a conninfo (keyword string or URI) without connecting: libpq must
 * parse it, and its host, port and database name must not show the marks
 * of a password whose '@' or '/' was not percent-encoded (libpq would take
 * pieces of that password for a host, port or database name and print
 * them). -1 with "DATABASE_URL: ..." in err, which never holds a value of
 * the conninfo: libpq's parse message is given with every quoted piece
 * replaced by "***". */
int db_conninfo_check(const char *conninfo, char *err, size_t errlen) MUST_CHECK;

/* conninfo: libpq keyword string or URI; "" = libpq defaults + PG* vars.
 * Checked with db_conninfo_check() first. The message on failure never
 * contains the password (libpq's message is searched for it as well). */
int db_connect(const char *conninfo, struct db **out, char *err, size_t errlen) MUST_CHECK;
void db_close(struct db *db);
/* Reconnects after the server went away; 0 when the connection is good. */
int db_reset(struct db *db, char *err, size_t errlen) MUST_CHECK;
/* One round trip to the server (an empty query): -1 with a message when it
 * does not answer. For a caller that must know before its next real use. */
int db_ping(struct db *db, char *err, size_t errlen) MUST_CHECK;
/* 1 when the connection is up. */
int db_ok(const struct db *db);

/* Schema version the code expects (= the newest embedded migration). */
int db_expected_version(void);
/* 0 when the schema is exactly at db_expected_version(); -1 otherwise, with
 * "database schema is at version N, this program needs M: run
 * `imgcache-producer migrate`" (or "is newer than this program"). */
int db_check_schema(struct db *db, char *err, size_t errlen) MUST_CHECK;
/* Applies every missing migration, each in its own transaction, under an
 * advisory lock so concurrent runs are safe. *applied gets how many ran. */
int db_migrate(struct db *db, int *applied, char *err, size_t errlen) MUST_CHECK;

/* --- producer --- */

/* Upserts chats and their participants in one transaction. A chat whose
 * participant list is complete (participants_has_more == 0) loses
 * participants no longer listed. Never touches chats.contact_image_url.
 * Writes nothing for the image URLs it sees (schema 6's triggers note a
 * URL that loses a reference, for `gc`), and holds gc's lock shared while
 * it writes, so a `gc` batch never removes a URL this batch references. */
int db_upsert_chats(struct db *db, const struct beeper_chat *chats, size_t n,
                    char *err, size_t errlen) MUST_CHECK;

/* --- shared look-up --- */

enum db_url_state {
    DB_URL_NONE = 0,     /* neither cached nor failed */
    DB_URL_CACHED = 1,   /* has a cached_images row */
    DB_URL_FAILED = 2,   /* has a permanent image_failures row */
    DB_URL_RETRYING = 3, /* a retryable failure whose retry is scheduled
                            (next_retry_at in the future) */
    DB_URL_STALE = 4,    /* cached, but checked before a refresh asked:
                            set from db_lookup_stale(), never by db_lookup_urls */
};
/* One query for n URLs: state[i] for urls[i]. failure_ttl_ms > 0: a
 * permanent failure older than that counts as DB_URL_NONE (try again);
 * 0: every permanent failure counts. */
int db_lookup_urls(struct db *db, const char *const *urls, size_t n, long long failure_ttl_ms,
                   uint8_t *state, char *err, size_t errlen) MUST_CHECK;

/* Calls fn for every distinct image URL referenced by chats or participants
 * that has no cached_images row (and, unless include_failed, no permanent
 * failure younger than failure_ttl_ms), together with one chat and
 * participant referencing it. Streams with a cursor: memory stays flat.
 * fn returns 0 to go on, -1 to stop (then db_each_uncached returns -1). */
struct db_url_ref {
    const char *source_url;
    const char *chat_id;
    const char *participant_id; /* NULL for a chat's own image */
    const char *account_id;
};
int db_each_uncached(struct db *db, long long failure_ttl_ms, int include_failed,
                     int (*fn)(const struct db_url_ref *ref, void *arg), void *arg,
                     char *err, size_t errlen) MUST_CHECK;

/* Calls fn for every cached image (one referencing chat or participant
 * each, as db_each_uncached) not refreshed for older_than_ms, the oldest
 * first: of chats of `network` only when not NULL, at most limit when
 * limit > 0. data: keys are left out (their URL is their bytes). Streams
 * with a cursor. For `refresh`. */
int db_each_stale(struct db *db, long long older_than_ms, const char *network, long long limit,
                  int (*fn)(const struct db_url_ref *ref, void *arg), void *arg, char *err, size_t errlen)
    MUST_CHECK;

/* Turns every permanent failure back into an ordinary one (permanent =
 * false, no retry time), so workers try those URLs again when asked:
 * `backfill --retry-failed`. The rows keep their history. *n = rows. */
int db_reopen_failures(struct db *db, long long *n, char *err, size_t errlen) MUST_CHECK;

/* --- worker --- */

/* A cached row as a revalidation needs it; the strings are valid during
 * the callback only. */
struct db_cached {
    const char *sha256;
    const char *etag;          /* NULL when none was stored */
    const char *last_modified; /* NULL when none was stored */
};
/* One query: calls on_stale(i, row) for each urls[i] that has a
 * cached_images row refreshed before since_ms[i] (Unix ms); the others
 * are cached and fresh, or not cached at all (db_lookup_urls says which). */
int db_lookup_stale(struct db *db, const char *const *urls, const long long *since_ms, size_t n,
                    void (*on_stale)(size_t i, const struct db_cached *c, void *arg), void *arg,
                    char *err, size_t errlen) MUST_CHECK;

struct db_refreshed {
    const char *source_url;
    const char *etag;          /* NULL: keep the stored one */
    const char *last_modified; /* NULL: keep the stored one */
};
/* One transaction: a revalidation found these sources unchanged, so their
 * cached_images rows get refreshed_at = now (and the validators given),
 * and their image_failures rows go. A URL without a row is skipped. */
int db_mark_refreshed(struct db *db, const struct db_refreshed *r, size_t n, char *err, size_t errlen)
    MUST_CHECK;

struct db_image {
    const char *source_url;
    const char *sha256;        /* 64 lowercase hex */
    const char *storage_key;   /* path relative to the storage dir; the views add the base URL */
    const char *content_type;
    long long byte_size;
    unsigned width, height;
    const char *etag;          /* may be NULL */
    const char *last_modified; /* may be NULL (HTTP date as received) */
};
/* One transaction: image_blobs (insert, keep existing) and cached_images
 * (upsert; refreshed_at = now on conflict) for all n; clears any
 * image_failures row of those URLs. */
int db_commit_images(struct db *db, const struct db_image *imgs, size_t n, char *err, size_t errlen)
    MUST_CHECK;

struct db_failure {
    const char *source_url;
    const char *error_class;   /* e.g. "http_404", "not_image", "timeout" */
    const char *last_error;    /* redacted, human readable */
    int http_status;           /* 0 when none */
    int permanent;
    int attempts;              /* attempts this failure represents (>= 1) */
    long long next_retry_ms;   /* Unix ms, 0 when none */
};
/* One transaction: upsert image_failures (attempts accumulate,
 * first_failed_at kept, last_failed_at = now). */
int db_record_failures(struct db *db, const struct db_failure *f, size_t n, char *err, size_t errlen)
    MUST_CHECK;

#endif
