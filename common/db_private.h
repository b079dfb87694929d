#ifndef IMGCACHE_DB_PRIVATE_H
#define IMGCACHE_DB_PRIVATE_H
/* struct db's inside, for the files of the db module only (db.c,
 * db_stats.c), as hiredis keeps async_private.h: nobody else includes
 * this. */
#include <libpq-fe.h>

struct db {
    PGconn *conn; /* owned; PQfinish()ed by db_close() */
};

#endif
