#ifndef IMGCACHE_PRODUCER_H
#define IMGCACHE_PRODUCER_H
/* imgcache-producer internals: one function per command, and the publisher
 * they share. The producer never downloads anything: it stores chats and
 * announces the image URLs that are not cached yet (image-needed events);
 * workers do the rest in the background.
 *
 * Each cmd_* validates its arguments, opens the database, runs, closes
 * everything it opened, and returns the process exit code.
 *
 * Ownership: commands borrow cfg. A struct publisher owns its Kafka
 * producer and its set of seen URLs; publisher_release() frees them. */
#include <signal.h>
#include <stdio.h>

#include "beeper.h"
#include "config.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "progress.h"

#define PRODUCER_NAME "imgcache-producer"

/* Exit codes (also in --help). */
enum {
    PRODUCER_EXIT_OK = 0,
    PRODUCER_EXIT_FAIL = 1,      /* runtime error, or events not delivered */
    PRODUCER_EXIT_USAGE = 2,     /* bad configuration or command line */
    PRODUCER_EXIT_BAD_INPUT = 3, /* finished, but some input lines/chats were refused */
};

/* Set by SIGINT/SIGTERM; loops stop at the next line, page or URL. */
extern volatile sig_atomic_t producer_stop;

/* log_warn()/log_info() for what is logged while a live progress line may
 * be on screen: when the level lets the line through, the live line is
 * ended first, so the log line starts a line of its own. */
#define producer_warn(...) \
    do { if (log_min_level <= LOG_WARN) { progress_break(); log_msg(LOG_WARN, __VA_ARGS__); } } while (0)
#define producer_info(...) \
    do { if (log_min_level <= LOG_INFO) { progress_break(); log_msg(LOG_INFO, __VA_ARGS__); } } while (0)

/* Prints "imgcache-producer: <message>" on stderr (ending a live progress
 * line first). */
void producer_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Connects to DATABASE_URL and, when check_schema, refuses a schema at
 * another version (the message says to run `imgcache-producer migrate`).
 * Prints the error itself; *out is freed with db_close(). */
int producer_open_db(const struct config *cfg, int check_schema, struct db **out);

/* ---- args.c ---- */

/* The flags a command may take after its name (import --quiet FILE). */
enum {
    ARG_QUIET = 1u << 0,        /* --quiet: no progress line, no progress log lines */
    ARG_RETRY_FAILED = 1u << 1, /* backfill --retry-failed */
    ARG_JSON = 1u << 2,         /* stats --json */
    ARG_DRY_RUN = 1u << 3,      /* gc --dry-run */
    /* options with a value ("--older-than 7d" or "--older-than=7d") */
    ARG_OLDER_THAN = 1u << 4,   /* refresh --older-than DURATION */
    ARG_NETWORK = 1u << 5,      /* refresh --network NAME */
    ARG_LIMIT = 1u << 6,        /* refresh --limit N */
    ARG_GRACE = 1u << 7,        /* gc --grace DURATION (out->grace, parsed by gc) */
};
#define ARGS_MAX_POSITIONAL 4

struct command_args {
    int quiet, retry_failed, json, dry_run;
    long long older_than_ms;    /* -1 when not given */
    const char *network;        /* NULL when not given; borrowed from argv */
    long long limit;            /* 0 when not given */
    const char *grace;          /* --grace's value, NULL when absent; borrowed from argv */
    const char *positional[ARGS_MAX_POSITIONAL]; /* borrowed from argv */
    int npositional;
};
/* Reads cfg->args after the command name: the flags in `allowed`, in any
 * order, and up to max_positional other arguments ("-" is one). Prints
 * "<command>: unknown argument ..." or "... takes at most N" and returns
 * -1 on anything else. */
int command_args_parse(const struct config *cfg, unsigned allowed, int max_positional,
                       struct command_args *out);

/* ---- migrate.c ---- */
int cmd_migrate(const struct config *cfg);

/* ---- import.c ---- */
/* import [--quiet] FILE|-: one JSON chat per line. */
int cmd_import(const struct config *cfg);

/* ---- sync.c ---- */
/* sync [--quiet]: reads every chat from the Beeper Desktop API. */
int cmd_sync(const struct config *cfg);

/* ---- backfill.c ---- */
/* backfill [--retry-failed] [--quiet]: announces every referenced URL not cached. */
int cmd_backfill(const struct config *cfg);

/* ---- refresh.c ---- */
/* refresh [--older-than D] [--network NAME] [--limit N] [--quiet]:
 * announces cached images not checked for D (reason "refresh"). */
int cmd_refresh(const struct config *cfg);

/* ---- stats.c ---- */
/* stats [--json]: what is cached, what failed, the backlog per group. */
int cmd_stats(const struct config *cfg);

/* ---- gc.c ---- */
/* gc [--grace 30d] [--dry-run] [--quiet]: removes what no chat references
 * any more (rows, blobs, files) and publishes a tombstone per URL dropped. */
int cmd_gc(const struct config *cfg);

/* ---- topics.c ---- */
/* topics [options]: creates the Kafka topics (common/topics.h). */
int cmd_topics(const struct config *cfg);

/* ---- renditions.c ---- */
/* renditions backfill: publishes image-stored for every blob missing a
 * rendition preset (imgcache-renderer renders them). */
int cmd_renditions(const struct config *cfg);

/* ---- publish.c ---- */

struct seen_url; /* uthash set, defined in publish.c */

struct publisher {
    const struct config *cfg;   /* borrowed */
    struct db *db;              /* borrowed */
    struct kafka_producer *kp;  /* owned */
    const char *reason;         /* "import", "sync", "backfill" or "refresh"; static */
    struct seen_url *seen;      /* URLs already handled in this run */
    /* counters for the summary */
    long long chats;            /* chats stored */
    long long participants;     /* participants stored */
    long long urls;             /* distinct image URLs seen */
    long long published;        /* events queued */
    long long already_cached;   /* URLs with a cached_images row */
    long long known_failed;     /* URLs known to fail (or being retried): not announced */
    long long dropped;          /* URLs left out, with a log line: over a limit, not
                                   UTF-8, or a data: key backfill cannot announce */
    struct progress progress;   /* the live line, or the periodic log line */
};

/* The start of a run that publishes (import, sync, backfill, refresh): opens
 * the database (schema checked) into *db, then pub for reason. Prints its
 * error and returns -1; *db may then be open: the caller closes it with
 * db_close(), as on success. pub is released with publisher_finish*(). */
int producer_start_run(const struct config *cfg, const char *reason, int quiet, struct db **db,
                       struct publisher *pub) MUST_CHECK;
/* quiet: no progress line nor progress log lines (--quiet). */
int publisher_init(struct publisher *p, const struct config *cfg, struct db *db, const char *reason,
                   int quiet, char *err, size_t errlen);
/* Stores a batch of chats (one transaction), then announces each of their
 * image URLs (chat image and participants' images) that this run has not
 * handled yet and that is neither cached nor known to fail: one database
 * look-up for the batch, one event per URL. */
int publisher_add_chats(struct publisher *p, const struct beeper_chat *chats, size_t n,
                        char *err, size_t errlen);
/* Announces one URL known to be uncached (backfill): no look-up. */
int publisher_add_ref(struct publisher *p, const struct db_url_ref *ref, char *err, size_t errlen);
/* Shows the counters (progress.h: a live line on a terminal, else a log
 * line at most every 10 s), unless quiet; force: now. */
void publisher_progress(struct publisher *p, int force);
/* Waits for every event to be acknowledged; -1 when some were not. */
int publisher_flush(struct publisher *p, char *err, size_t errlen);
/* "chats=N participants=N urls=N published=N already_cached=N known_failures=N
 * dropped=N bad_lines=N"; urls = published + already_cached + known_failures
 * + dropped */
void publisher_print_summary(const struct publisher *p, long long bad_lines, FILE *out);
/* The end of an import or sync run: delivers what was queued (also after an
 * error), logs the last progress line, prints the summary when the run
 * got to the end (done), releases the publisher. Returns the exit status:
 * 1 when interrupted or a publish was not delivered, 3 when bad > 0 input
 * items were skipped, else 0 (1 also when !done). `interrupted` names where
 * a stop request cut the run ("after line 17"). */
int publisher_finish(struct publisher *p, int done, long long bad, const char *interrupted);
/* A run over database rows (backfill, refresh): publisher_ref_step() is
 * the callback of db_each_uncached()/db_each_stale() (arg: a struct
 * ref_run), announcing each URL; it stops the walk on a stop request or a
 * publish error (kept in err). */
struct ref_run {
    struct publisher *pub;      /* borrowed */
    char err[512];
    int failed;                 /* a publish failed: err says why */
};
int publisher_ref_step(const struct db_url_ref *ref, void *arg);
/* After the walk failed with err: prints why (the publish error, or err
 * when the walk itself failed; nothing for a stop request). */
void publisher_ref_report(const struct ref_run *run, const char *err);
/* The end of a backfill or refresh run: delivers what was queued, logs the
 * last progress line, prints "urls=N published=N" when the run got to the
 * end (done), releases the publisher. Returns the exit status (1 when
 * interrupted, not done, or a publish was not delivered). */
int publisher_finish_urls(struct publisher *p, int done);
void publisher_release(struct publisher *p);

/* A growing array of parsed chats, cleared after each batch. */
struct chat_batch {
    struct beeper_chat *items;
    size_t n, cap;
};
/* The next free slot (zeroed), or NULL when out of memory; the caller
 * fills it and calls chat_batch_commit() when it holds a chat. */
struct beeper_chat *chat_batch_slot(struct chat_batch *b);
void chat_batch_commit(struct chat_batch *b);
/* Clears every chat (keeps the memory). */
void chat_batch_clear(struct chat_batch *b);
void chat_batch_release(struct chat_batch *b);

#endif
