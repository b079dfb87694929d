#ifndef IMGCACHE_DB_RENDER_H
#define IMGCACHE_DB_RENDER_H
/* The PostgreSQL side of the renditions (imgcache-renderer and
 * `imgcache-producer renditions`): image_renditions rows and
 * render_failures rows (schema 8). Part of the db module (db_private.h).
 *
 * Every function returns 0, -1 with a message (db_ok() tells a server
 * gone from a refusal), or DB_RENDER_GONE when the blob has no
 * image_blobs row any more (gc removed it: nothing to do).
 *
 * Ownership: inputs are borrowed for the call; a struct db_render_list is
 * freed with db_render_list_release() (also after a failure). */
#include <stddef.h>

#include "db.h"
#include "errmsg.h"

#define DB_RENDER_GONE (-2)

/* What is known of one blob before rendering it. */
struct db_render_state {
    unsigned long long have;  /* bit i set: presets[i] has a row */
    int given_up;             /* a permanent render_failures row */
};
/* presets: n (<= 64) sizes in px. */
int db_render_state(struct db *db, const char *sha256, const int *presets, size_t n,
                    struct db_render_state *out, char *err, size_t errlen) MUST_CHECK;

/* Counts a render about to start (render_failures.attempts + 1, the row
 * made when missing, class "started"), before any pixel is decoded: a
 * render that crashes or is killed is counted all the same. *attempts gets
 * the count including this one. */
int db_render_attempt(struct db *db, const char *sha256, int *attempts, char *err, size_t errlen)
    MUST_CHECK;

/* Marks the blob as given up: permanent, with error_class and a message. */
int db_render_give_up(struct db *db, const char *sha256, const char *error_class, const char *message,
                      char *err, size_t errlen) MUST_CHECK;

struct db_rendition {
    int preset;
    const char *sha256;        /* of the WebP bytes */
    const char *storage_key;
    const char *content_type;
    int width, height;
    long long byte_size;
};
/* One statement: the n rows (an existing (source, preset) row is kept:
 * replays and redeliveries are harmless), and the blob's render_failures
 * row deleted. */
int db_render_record(struct db *db, const char *source_sha256, const struct db_rendition *r, size_t n,
                     char *err, size_t errlen) MUST_CHECK;

/* A blob that lacks at least one of the presets and is not given up. */
struct db_render_blob {
    char *sha256;
    char *storage_key;
    char *content_type;
    long long byte_size;
};
struct db_render_list {
    struct db_render_blob *items;
    size_t n;
};
void db_render_list_release(struct db_render_list *l);
/* At most limit such blobs with sha256 > after ("" first), in sha256
 * order (keyset pagination: an empty list is the end). */
int db_render_missing(struct db *db, const int *presets, size_t n, const char *after, int limit,
                      struct db_render_list *out, char *err, size_t errlen) MUST_CHECK;

#endif
