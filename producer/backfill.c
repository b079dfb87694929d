#include "producer.h"

#include <string.h>

#include "log.h"

/* backfill [--retry-failed] [--quiet]: announces every image URL that chats or
 * participants reference and that is not cached, streaming them from the
 * database. A permanent failure younger than IMGCACHE_FAILURE_TTL is left
 * out, unless --retry-failed. */
int cmd_backfill(const struct config *cfg)
{
    struct command_args args;
    struct publisher pub;
    struct ref_run run = { 0 };
    struct db *db = NULL;
    char err[512];
    int retry_failed, have_pub = 0, done = 0;
    int rc = PRODUCER_EXIT_FAIL;

    if (command_args_parse(cfg, ARG_RETRY_FAILED | ARG_QUIET, 0, &args) != 0)
        return PRODUCER_EXIT_USAGE;
    retry_failed = args.retry_failed;
    if (producer_start_run(cfg, "backfill", args.quiet, &db, &pub) != 0)
        goto out;
    have_pub = 1;
    run.pub = &pub;
    log_info("event=backfill_start retry_failed=%d", retry_failed);
    if (retry_failed) {
        long long reopened = 0;
        /* workers skip a URL with a young permanent failure: make those
         * failures ordinary first, or the republished events do nothing */
        if (db_reopen_failures(db, &reopened, err, sizeof err) != 0) {
            producer_error("%s", err);
            goto out;
        }
        log_info("event=failures_reopened count=%lld", reopened);
    }
    if (db_each_uncached(db, cfg->failure_ttl_ms, retry_failed, publisher_ref_step, &run, err, sizeof err) != 0)
        publisher_ref_report(&run, err);
    else
        done = 1;
out:
    if (have_pub)
        rc = publisher_finish_urls(&pub, done);
    db_close(db);
    return rc;
}
