#include "producer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "errmsg.h"
#include "log.h"

/* Where an import stands: the input, the chats parsed and not yet stored,
 * how far it got. */
struct import_run {
    const struct config *cfg;   /* borrowed */
    struct publisher *pub;      /* borrowed */
    FILE *in;                   /* borrowed */
    const char *path;           /* as the user gave it */
    struct chat_batch batch;    /* owned */
    unsigned long long lineno;  /* lines read */
    long long bad_lines;        /* refused, reported, skipped */
};

/* 1 when the line holds only whitespace. */
static int blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n' && s[i] != '\f' && s[i] != '\v')
            return 0;
    return 1;
}

/* Parses one line into the batch (a bad one is reported and counted) and
 * stores the batch when it is full. */
static int import_line(struct import_run *run, char *line, ssize_t len, char *err, size_t errlen)
{
    struct beeper_chat *slot;
    char why[512];

    if (blank(line, (size_t)len))
        return 0;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    slot = chat_batch_slot(&run->batch);
    if (slot == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    if (beeper_chat_parse(line, (size_t)len, slot, why, sizeof why) != 0) {
        producer_error("line %llu: %s", run->lineno, why);
        run->bad_lines++;
        return 0;
    }
    chat_batch_commit(&run->batch);
    if (run->batch.n < (size_t)run->cfg->batch_size)
        return 0;
    if (publisher_add_chats(run->pub, run->batch.items, run->batch.n, err, errlen) != 0)
        return -1;
    chat_batch_clear(&run->batch);
    publisher_progress(run->pub, 0);
    return 0;
}

/* Reads every line (until a stop request), then stores the last batch.
 * Lines may be of any length. */
static int import_lines(struct import_run *run, char *err, size_t errlen)
{
    char *line = NULL;
    size_t linecap = 0;
    ssize_t len;
    int rc = -1;

    errno = 0;
    while (!producer_stop) {
        len = getline(&line, &linecap, run->in);
        if (len < 0)
            break;
        run->lineno++;
        if (import_line(run, line, len, err, errlen) != 0)
            goto out;
    }
    if (ferror(run->in) && !producer_stop) {
        errmsg_set(err, errlen, "read %s: %s", run->path, strerror(errno));
        goto out;
    }
    if (publisher_add_chats(run->pub, run->batch.items, run->batch.n, err, errlen) != 0)
        goto out;
    chat_batch_clear(&run->batch);
    rc = 0;
out:
    free(line);
    return rc;
}

/* import [--quiet] FILE|-: one JSON chat object per line (as GET /v1/chats
 * items). Blank lines are skipped; a line that is not a valid chat is
 * reported with its number and skipped, the others go on. */
int cmd_import(const struct config *cfg)
{
    struct command_args args;
    struct publisher pub;
    struct import_run run = { .cfg = cfg, .pub = &pub };
    struct db *db = NULL;
    char err[512];
    int have_pub = 0, done = 0;
    int rc = PRODUCER_EXIT_FAIL;

    if (command_args_parse(cfg, ARG_QUIET, 1, &args) != 0)
        return PRODUCER_EXIT_USAGE;
    if (args.npositional != 1) {
        producer_error("import needs exactly one FILE (or - for standard input; see --help)");
        return PRODUCER_EXIT_USAGE;
    }
    run.path = args.positional[0];
    run.in = strcmp(run.path, "-") == 0 ? stdin : fopen(run.path, "r");
    if (run.in == NULL) {
        producer_error("cannot open %s: %s", run.path, strerror(errno));
        goto out;
    }
    if (producer_start_run(cfg, "import", args.quiet, &db, &pub) != 0)
        goto out;
    have_pub = 1;
    log_info("event=import_start file=\"%s\" batch_size=%ld", run.path, cfg->batch_size);
    if (import_lines(&run, err, sizeof err) != 0)
        producer_error("%s", err);
    else
        done = 1;
out:
    if (have_pub) {
        char where[64];
        snprintf(where, sizeof where, "after line %llu", run.lineno);
        rc = publisher_finish(&pub, done, run.bad_lines, where);
    }
    chat_batch_release(&run.batch);
    if (run.in && run.in != stdin)
        fclose(run.in);
    db_close(db);
    return rc;
}
