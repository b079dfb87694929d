/* imgcache-producer: parse the configuration, dispatch on the command, tear
 * down. The commands are in migrate.c, import.c, sync.c, backfill.c, refresh.c,
 * topics.c, stats.c, gc.c and renditions.c; adding one is a line in `commands` and a file. */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "config.h"
#include "log.h"
#include "stop_signal.h"
#include "producer.h"

volatile sig_atomic_t producer_stop = 0;

static const char usage[] =
    "Usage: imgcache-producer [options] COMMAND [ARGS]\n"
    "\n"
    "Stores Beeper chats in PostgreSQL and announces on Kafka (image-needed events)\n"
    "every chat or participant image that is not cached yet; imgcache-worker\n"
    "downloads them in the background.\n"
    "\n"
    "Commands:\n"
    "  migrate                    create or upgrade the database schema (safe to repeat),\n"
    "                             then set the base of the image URLs the views build:\n"
    "                             IMGCACHE_PUBLIC_URL, or file://<storage dir> if none is set\n"
    "  import [--quiet] FILE|-    read chats from a file, one JSON chat per line (- : stdin)\n"
    "  sync [--quiet]             read every chat from the Beeper Desktop API\n"
    "                             (BEEPER_API_URL, BEEPER_API_TOKEN)\n"
    "  backfill [--retry-failed] [--quiet]\n"
    "                             announce every referenced image that is not cached;\n"
    "                             --retry-failed: also those that failed permanently\n"
    "  refresh [--older-than 30d] [--network NAME] [--limit N] [--quiet]\n"
    "                             announce cached images not checked for that long\n"
    "                             (default 30d; oldest first; of one network; at most N):\n"
    "                             workers revalidate them (If-None-Match/If-Modified-Since)\n"
    "  stats [--json]             chats, avatar coverage, cached images, dedup savings,\n"
    "                             failures, and the Kafka backlog of each consumer group\n"
    "                             (--json: one JSON object for scripts)\n"
    "  topics [--partitions N] [--replication-factor N] [--config KEY=VALUE]...\n"
    "                             create the Kafka topics TOPIC (compacted), TOPIC-retry,\n"
    "                             TOPIC-dlt, STORED_TOPIC (compacted) and STORED_TOPIC-dlt\n"
    "                             that do not exist; report those that differ (safe to\n"
    "                             repeat; see topics --help)\n"
    "  gc [--grace 30d] [--dry-run] [--quiet]\n"
    "                             remove cached images (and failures) whose URL no chat\n"
    "                             or participant has referenced for longer than --grace,\n"
    "                             then blobs no cached image points at and their files,\n"
    "                             then store files without a blob older than an hour;\n"
    "                             publishes a tombstone (null value) per URL removed.\n"
    "                             Prints rows=N failures=N blobs=N files=N bytes=N\n"
    "                             tombstones=N; --dry-run: counts, removes nothing.\n"
    "                             Safe to run at any time, from several hosts at once;\n"
    "                             on an s3:// store, objects instead of files\n"
    "  renditions backfill        announce (image-stored) every blob that lacks one of\n"
    "                             IMGCACHE_RENDITIONS and was not given up, for\n"
    "                             imgcache-renderer (safe to repeat)\n"
    "\n"
    "import, sync, backfill and refresh show a live progress line (count, rate, elapsed) when\n"
    "standard error is a terminal, else a progress log line every 10 s; --quiet: neither.\n"
    "\n"
    "import and sync end with one line on stdout:\n"
    "  chats=N participants=N urls=N published=N already_cached=N known_failures=N\n"
    "  dropped=N bad_lines=N\n"
    "  urls = published + already_cached + known_failures + dropped. known_failures:\n"
    "  failed permanently, or a retry is scheduled, so not announced again;\n"
    "  dropped: an image URL left out (logged with the reason), its chat kept.\n"
    "\n"
    "Exit status: 0 done; 1 error (database, Kafka, API) or events not delivered\n"
    "(stats: PostgreSQL or Kafka unreachable; what could be read is printed);\n"
    "2 bad configuration or command line; 3 done, but some lines or chats were\n"
    "refused (reported on stderr, the others were imported).";

struct command {
    const char *name;
    int (*run)(const struct config *cfg);
};

static const struct command commands[] = {
    { "migrate", cmd_migrate },
    { "import", cmd_import },
    { "sync", cmd_sync },
    { "backfill", cmd_backfill },
    { "refresh", cmd_refresh },
    { "topics", cmd_topics },
    { "stats", cmd_stats },
    { "gc", cmd_gc },
    { "renditions", cmd_renditions },
};

int main(int argc, char **argv)
{
    struct config cfg;
    const struct command *cmd = NULL;
    char err[512];
    int rc;

    rc = config_load(&cfg, CONFIG_PRODUCER, usage, argc, argv, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            producer_error("%s", err);
        config_free(&cfg);
        return rc > 0 ? PRODUCER_EXIT_OK : PRODUCER_EXIT_USAGE;
    }
    log_init(PRODUCER_NAME, log_level_parse(cfg.log_level));

    for (size_t i = 0; cfg.nargs > 0 && i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cfg.args[0], commands[i].name) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        if (cfg.nargs == 0)
            producer_error("no command given: migrate, import FILE, sync, backfill, refresh, topics, stats or gc "
                           "(see --help)");
        else
            producer_error("unknown command '%s': migrate, import FILE, sync, backfill, refresh, topics, stats or gc "
                           "(see --help)",
                           cfg.args[0]);
        config_free(&cfg);
        return PRODUCER_EXIT_USAGE;
    }

    /* The first SIGINT/SIGTERM stops at the next line, page or URL (what
     * is queued is still delivered); a second one is fatal. */
    stop_signal_install(&producer_stop);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        producer_error("cannot initialize libcurl");
        config_free(&cfg);
        return PRODUCER_EXIT_FAIL;
    }
    rc = cmd->run(&cfg);

    curl_global_cleanup();
    config_free(&cfg);
    return rc;
}
