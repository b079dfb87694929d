#include "producer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "log.h"

/* 1 when the line holds only whitespace. */
static int blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n' && s[i] != '\f' && s[i] != '\v')
            return 0;
    return 1;
}

/* import FILE|-: one JSON chat object per line (as GET /v1/chats items).
 * Blank lines are skipped; a line that is not a valid chat is reported with
 * its number and skipped, the others go on. Lines may be of any length. */
int cmd_import(const struct config *cfg)
{
    struct publisher pub;
    struct chat_batch batch = { 0 };
    struct db *db = NULL;
    FILE *in = NULL;
    const char *path;
    char *line = NULL;
    size_t linecap = 0;
    ssize_t len;
    unsigned long long lineno = 0;
    long long bad_lines = 0;
    char err[512];
    int have_pub = 0, done = 0;
    int rc = PRODUCER_EXIT_FAIL;

    if (cfg->nargs != 2) {
        producer_error("import needs exactly one FILE (or - for standard input; see --help)");
        return PRODUCER_EXIT_USAGE;
    }
    path = cfg->args[1];
    if (strcmp(path, "-") == 0) {
        in = stdin;
    } else {
        in = fopen(path, "r");
        if (in == NULL) {
            producer_error("cannot open %s: %s", path, strerror(errno));
            goto out;
        }
    }
    if (producer_open_db(cfg, 1, &db) != 0)
        goto out;
    if (publisher_init(&pub, cfg, db, "import", err, sizeof err) != 0) {
        producer_error("%s", err);
        goto out;
    }
    have_pub = 1;
    log_info("event=import_start file=\"%s\" batch_size=%ld", path, cfg->batch_size);

    errno = 0;
    while (!producer_stop) {
        struct beeper_chat *slot;

        len = getline(&line, &linecap, in);
        if (len < 0)
            break;
        lineno++;
        if (blank(line, (size_t)len))
            continue;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        slot = chat_batch_slot(&batch);
        if (slot == NULL) {
            producer_error("out of memory");
            goto out;
        }
        if (beeper_chat_parse(line, (size_t)len, slot, err, sizeof err) != 0) {
            producer_error("line %llu: %s", lineno, err);
            bad_lines++;
            continue;
        }
        chat_batch_commit(&batch);
        if (batch.n >= (size_t)cfg->batch_size) {
            if (publisher_add_chats(&pub, batch.items, batch.n, err, sizeof err) != 0) {
                producer_error("%s", err);
                goto out;
            }
            chat_batch_clear(&batch);
            publisher_progress(&pub, 0);
        }
    }
    if (ferror(in) && !producer_stop) {
        producer_error("read %s: %s", path, strerror(errno));
        goto out;
    }
    if (publisher_add_chats(&pub, batch.items, batch.n, err, sizeof err) != 0) {
        producer_error("%s", err);
        goto out;
    }
    chat_batch_clear(&batch);
    done = 1;
out:
    if (have_pub) {
        char where[64];
        snprintf(where, sizeof where, "after line %llu", lineno);
        rc = publisher_finish(&pub, done, bad_lines, where);
    }
    chat_batch_release(&batch);
    free(line);
    if (in && in != stdin)
        fclose(in);
    db_close(db);
    return rc;
}
