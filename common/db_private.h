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

struct db {
    PGconn *conn; /* owned; PQfinish()ed by db_close() */
};

#endif
