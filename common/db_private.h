#ifndef IMGCACHE_DB_PRIVATE_H
#define IMGCACHE_DB_PRIVATE_H
/* struct db's inside, for the files of the db module only (db.c,
 * db_stats.c), as hiredis keeps async_private.h: nobody else includes
 * this. */
#include <libpq-fe.h>

/* Key of the advisory lock that keeps gc's removals out of import and
 * sync batches: each batch takes it shared, each gc batch that removes
 * cached_images or image_failures rows exclusive (the migration lock's
 * key + 1). */
#define DB_GC_LOCK "31093368184218473"

/* Per-content locks of an S3 store's objects: the two-int4 key space of
 * PostgreSQL's advisory locks (which does not overlap the bigint one of
 * DB_MIGRATE_LOCK and DB_GC_LOCK), this namespace ("imgs") and the
 * content hash's first 32 bits. Two contents sharing those bits only make
 * a worker wait for, or gc skip, the other: never a wrong removal. */
#define DB_STORE_LOCK_NS "1768777587"
#define DB_STORE_LOCK_KEY(s) DB_STORE_LOCK_NS ", ('x' || substr(" s ", 1, 8))::bit(32)::int"

struct db {
    PGconn *conn; /* owned; PQfinish()ed by db_close() */
};

#endif
