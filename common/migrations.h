#ifndef IMGCACHE_MIGRATIONS_H
#define IMGCACHE_MIGRATIONS_H
/* The schema migrations, compiled in from common/migrations/NNN_name.sql by
 * common/embed-sql.sh. Static data: nothing to free. */
struct migration {
    int version;          /* NNN from the file name, strictly increasing */
    const char *name;     /* file name without .sql */
    const char *sql;      /* the whole file, run in one transaction */
};
extern const struct migration migrations[];
extern const int migrations_count;
#endif
