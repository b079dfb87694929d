#ifndef IMGCACHE_DB_STATS_H
#define IMGCACHE_DB_STATS_H
/* The PostgreSQL side of `imgcache-producer stats`: counts read in one
 * read-only REPEATABLE READ transaction, so every figure describes the
 * same moment. Part of the db module (db_private.h).
 *
 * Ownership: db_stats_read() fills a struct db_stats the caller frees with
 * db_stats_release() (also after a failure). */
#include <stddef.h>

#include "db.h"
#include "errmsg.h"

/* Chats of one network (chats.network; NULL when the chat has none) by
 * the source of their chat_avatars picture. */
struct db_stats_network {
    char *network;      /* owned; NULL: none */
    long long chats, cached, contact, initials;
};

/* Failures of one error class (image_failures.error_class). */
struct db_stats_failure {
    char *error_class;  /* owned */
    long long permanent, pending_retry;
};

struct db_stats {
    long long chats, participants;
    long long avatars_cached, avatars_contact, avatars_initials;
    struct db_stats_network *networks; /* owned, by network name, NULL last */
    size_t n_networks;
    long long cached_images;   /* URLs with a cached copy */
    long long url_bytes;       /* their byte sizes summed: what storing each URL would take */
    long long blobs;           /* distinct contents stored */
    long long stored_bytes;    /* what they take */
    long long failures_permanent, failures_pending_retry;
    struct db_stats_failure *failures; /* owned, by class */
    size_t n_failures;
    char oldest_refreshed_at[40]; /* ISO 8601 UTC, "" when nothing is cached */
    /* renditions (imgcache-renderer), against the presets asked about */
    long long renditions;          /* image_renditions rows */
    long long renditions_missing;  /* blobs lacking one of the presets, not given up */
    long long renders_given_up;    /* render_failures rows marked permanent */
};

/* presets: the n rendition sizes (IMGCACHE_RENDITIONS) a blob should have. */
int db_stats_read(struct db *db, const int *presets, size_t n_presets, struct db_stats *out, char *err,
                  size_t errlen) MUST_CHECK;
void db_stats_release(struct db_stats *s);

#endif
