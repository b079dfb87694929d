#include "producer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "db_settings.h"
#include "log.h"

/* The base URL migrate writes when IMGCACHE_PUBLIC_URL is empty:
 * file://<absolute storage dir> (the folder need not exist yet). */
static void default_public_base(const char *storage_dir, char *out, size_t outlen)
{
    char real[PATH_MAX], cwd[PATH_MAX];

    if (realpath(storage_dir, real) != NULL)
        snprintf(out, outlen, "file://%s", real);
    else if (storage_dir[0] != '/' && getcwd(cwd, sizeof cwd) != NULL)
        snprintf(out, outlen, "file://%s/%s", cwd, storage_dir);
    else
        snprintf(out, outlen, "file://%s", storage_dir);
}

/* IMGCACHE_PUBLIC_URL, when given, replaces the base the views use; the
 * file:// default only fills a base never set, so a migrate run without
 * the variable leaves an operator's CDN URL alone. */
static int write_public_base(const struct config *cfg, struct db *db, char *err, size_t errlen)
{
    char base[PATH_MAX + 16], current[PATH_MAX + 16];
    int explicit_base = cfg->public_url[0] != '\0';
    int changed = 0;

    if (explicit_base)
        snprintf(base, sizeof base, "%s", cfg->public_url);
    else
        default_public_base(cfg->storage_dir, base, sizeof base);
    if (db_settings_set_public_base(db, base, !explicit_base, &changed, current, sizeof current, err, errlen) != 0)
        return -1;
    log_info("event=public_base_url url=\"%s\" changed=%d", current, changed);
    return 0;
}

/* migrate: applies the embedded migrations the database lacks, then
 * writes the public base URL. Safe to run concurrently and repeatedly (the
 * second run applies nothing). */
int cmd_migrate(const struct config *cfg)
{
    struct db *db = NULL;
    char err[512];
    int applied = 0;
    int rc = PRODUCER_EXIT_FAIL;

    if (cfg->nargs > 1) {
        producer_error("migrate takes no arguments (see --help)");
        return PRODUCER_EXIT_USAGE;
    }
    if (producer_open_db(cfg, 0, &db) != 0)
        goto out;
    if (db_migrate(db, &applied, err, sizeof err) != 0 || write_public_base(cfg, db, err, sizeof err) != 0) {
        producer_error("%s", err);
        goto out;
    }
    log_info("event=migrate_done applied=%d version=%d", applied, db_expected_version());
    printf("applied=%d version=%d\n", applied, db_expected_version());
    rc = PRODUCER_EXIT_OK;
out:
    db_close(db);
    return rc;
}
