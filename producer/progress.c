#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "event.h"

#define MS_PER_SECOND 1000
#define SECONDS_PER_MINUTE 60
#define SECONDS_PER_HOUR 3600

/* The live line on screen without its newline, for progress_break(). */
static struct progress *open_line;

void progress_start(struct progress *pr, const char *what, const char *unit, int quiet)
{
    memset(pr, 0, sizeof *pr);
    pr->out = stderr;
    pr->what = what;
    pr->unit = unit;
    pr->start_ms = event_now_ms();
    pr->last_ms = pr->start_ms;
    if (quiet)
        pr->mode = PROGRESS_QUIET;
    else if (isatty(STDERR_FILENO))
        pr->mode = PROGRESS_TERMINAL;
    else
        pr->mode = PROGRESS_LOG;
}

int progress_due(struct progress *pr, int force)
{
    long long now = event_now_ms();
    long long every = pr->mode == PROGRESS_TERMINAL ? PROGRESS_LINE_EVERY_MS : PROGRESS_LOG_EVERY_MS;

    if (pr->mode == PROGRESS_QUIET)
        return 0;
    if (!force && now - pr->last_ms < every)
        return 0;
    pr->last_ms = now;
    return 1;
}

int progress_on_terminal(const struct progress *pr)
{
    return pr->mode == PROGRESS_TERMINAL;
}

void progress_thousands(long long n, char *out, size_t outlen)
{
    char digits[32];
    char grouped[48];
    size_t len, j = 0;
    int neg = n < 0;

    snprintf(digits, sizeof digits, "%lld", n);
    len = strlen(digits);
    for (size_t i = (size_t)neg; i < len; i++) {
        if (i > (size_t)neg && (len - i) % 3 == 0)
            grouped[j++] = ',';
        grouped[j++] = digits[i];
    }
    grouped[j] = '\0';
    snprintf(out, outlen, "%s%s", neg ? "-" : "", grouped);
}

/* "9.8s" under a minute, then "4:05", then "1:02:03". */
static void format_elapsed(long long ms, char *out, size_t outlen)
{
    long long s = ms / MS_PER_SECOND;

    if (s < SECONDS_PER_MINUTE)
        snprintf(out, outlen, "%lld.%llds", s, (ms % MS_PER_SECOND) / 100);
    else if (s < SECONDS_PER_HOUR)
        snprintf(out, outlen, "%lld:%02lld", s / SECONDS_PER_MINUTE, s % SECONDS_PER_MINUTE);
    else
        snprintf(out, outlen, "%lld:%02lld:%02lld", s / SECONDS_PER_HOUR,
                 (s % SECONDS_PER_HOUR) / SECONDS_PER_MINUTE, s % SECONDS_PER_MINUTE);
}

void progress_line(struct progress *pr, long long count, const char *detail)
{
    long long elapsed_ms = event_now_ms() - pr->start_ms;
    long long rate = elapsed_ms > 0 ? count * MS_PER_SECOND / elapsed_ms : 0;
    char n[32], r[32], t[32];

    if (pr->mode != PROGRESS_TERMINAL)
        return;
    progress_thousands(count, n, sizeof n);
    progress_thousands(rate, r, sizeof r);
    format_elapsed(elapsed_ms, t, sizeof t);
    /* "\033[K" clears what a longer previous line left on the right */
    fprintf(pr->out, "\r%s: %s %s%s%s%s, %s %s/s, %s\033[K", pr->what, n, pr->unit,
            detail ? " (" : "", detail ? detail : "", detail ? ")" : "", r, pr->unit, t);
    fflush(pr->out);
    pr->line_open = 1;
    open_line = pr;
}

void progress_end(struct progress *pr)
{
    if (!pr->line_open)
        return;
    fputc('\n', pr->out);
    fflush(pr->out);
    pr->line_open = 0;
    if (open_line == pr)
        open_line = NULL;
}

void progress_break(void)
{
    if (open_line != NULL)
        progress_end(open_line);
}
