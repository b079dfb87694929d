#ifndef IMGCACHE_PROGRESS_H
#define IMGCACHE_PROGRESS_H
/* How a long import, sync or backfill shows that it is moving, one module
 * for the three:
 *  - standard error is a terminal: one live line, rewritten in place with
 *    '\r' at most PROGRESS_LINE_EVERY_MS apart ("import: 12,345 chats
 *    (...), 1,234 chats/s, 10.0s"), ended with a newline by progress_end();
 *  - it is not (a log file, a pipe, systemd): the caller's periodic
 *    key=value log line, at most PROGRESS_LOG_EVERY_MS apart, as before;
 *  - quiet (--quiet): neither.
 * The caller asks progress_due() and then writes either progress_line() or
 * its own log line, depending on progress_on_terminal().
 *
 * Ownership: a struct progress holds no resources; `what` and `unit` are
 * borrowed (string literals). */
#include <stdio.h>

#define PROGRESS_LINE_EVERY_MS 250   /* a terminal: 4 updates a second at most */
#define PROGRESS_LOG_EVERY_MS 10000  /* a log: one line every 10 s */

enum progress_mode {
    PROGRESS_QUIET = 0,
    PROGRESS_TERMINAL,
    PROGRESS_LOG,
};

struct progress {
    enum progress_mode mode;
    FILE *out;              /* stderr; borrowed */
    const char *what;       /* "import", "sync", "backfill" */
    const char *unit;       /* what count counts: "chats", "urls" */
    long long start_ms;
    long long last_ms;      /* of the last update written */
    int line_open;          /* a live line is on screen without its newline */
};

/* Picks the mode: quiet wins, else a terminal on stderr, else the log. */
void progress_start(struct progress *pr, const char *what, const char *unit, int quiet);
/* 1 when an update should be written now: force, or the mode's interval
 * has passed since the last one; 0 always when quiet. Marks the update as
 * written. */
int progress_due(struct progress *pr, int force);
/* 1 in terminal mode (the caller writes progress_line()), 0 otherwise. */
int progress_on_terminal(const struct progress *pr);
/* Terminal mode: rewrites the live line with count, detail (may be NULL),
 * the rate and the elapsed time. */
void progress_line(struct progress *pr, long long count, const char *detail);
/* Ends the live line with a newline, so what follows starts on its own
 * line. Safe to call in any mode, and more than once. */
void progress_end(struct progress *pr);

/* Ends whichever live line is open, before a message is printed on
 * stderr (producer_error()), so that message gets a line of its own. */
void progress_break(void);

/* "1,234,567" into out (at least 27 bytes for any long long). */
void progress_thousands(long long n, char *out, size_t outlen);

#endif
