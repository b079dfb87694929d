#include "producer.h"

#include "log.h"

/* How long a cached image may go unchecked when --older-than is not given. */
#define REFRESH_DEFAULT_AGE_MS (30LL * 24 * 3600 * 1000)

/* refresh [--older-than D] [--network NAME] [--limit N] [--quiet]:
 * announces (reason "refresh") every cached image that a chat or
 * participant references and that no worker checked for D, the oldest
 * first, streaming them from the database. Workers revalidate each with
 * its source; the row's refreshed_at moves only when a check succeeds, so
 * what failed is announced again by the next run. */
int cmd_refresh(const struct config *cfg)
{
    struct command_args args;
    struct publisher pub;
    struct ref_run run = { 0 };
    struct db *db = NULL;
    char err[512];
    long long age;
    int have_pub = 0, done = 0;
    int rc = PRODUCER_EXIT_FAIL;

    if (command_args_parse(cfg, ARG_OLDER_THAN | ARG_NETWORK | ARG_LIMIT | ARG_QUIET, 0, &args) != 0)
        return PRODUCER_EXIT_USAGE;
    age = args.older_than_ms >= 0 ? args.older_than_ms : REFRESH_DEFAULT_AGE_MS;
    if (producer_start_run(cfg, "refresh", args.quiet, &db, &pub) != 0)
        goto out;
    have_pub = 1;
    run.pub = &pub;
    log_info("event=refresh_start older_than_ms=%lld network=\"%s\" limit=%lld", age,
             args.network ? args.network : "", args.limit);
    if (db_each_stale(db, age, args.network, args.limit, publisher_ref_step, &run, err, sizeof err) != 0)
        publisher_ref_report(&run, err);
    else
        done = 1;
out:
    if (have_pub)
        rc = publisher_finish_urls(&pub, done);
    db_close(db);
    return rc;
}
