#include "producer.h"

#include "log.h"

/* migrate: applies the embedded migrations the database lacks. Safe to run
 * concurrently and repeatedly (the second run applies nothing). */
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
    if (db_migrate(db, &applied, err, sizeof err) != 0) {
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
