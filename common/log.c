#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <sys/types.h>
#include <unistd.h>

int log_min_level = LOG_INFO;
static const char *log_program = "imgcache";

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_init(const char *program, int min_level)
{
    log_program = program;
    log_min_level = min_level;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

/* Appends s (at most prec bytes, or all when prec < 0) to out, with '"',
 * '\' and control characters escaped: a value printed between quotes then
 * cannot end its quotes early and forge fields of its own
 * (url="…/evil" class=ok injected="…"). */
static size_t put_escaped(char *out, size_t room, const char *s, int prec)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    if (s == NULL)
        s = "(null)";
    for (size_t i = 0; (prec < 0 || i < (size_t)prec) && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[4];
        size_t len = 0;

        if (c == '"' || c == '\\') {
            esc[len++] = '\\';
            esc[len++] = (char)c;
        } else if (c == '\n') {
            esc[len++] = '\\';
            esc[len++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            esc[len++] = '\\';
            esc[len++] = 'x';
            esc[len++] = hex[c >> 4];
            esc[len++] = hex[c & 15];
        } else {
            esc[len++] = (char)c;
        }
        if (n + len >= room)
            break;
        memcpy(out + n, esc, len);
        n += len;
    }
    out[n] = '\0';
    return n;
}

/* vsnprintf, except that a %s (or %.*s, %.Ns) written between two '"' of
 * the format is escaped with put_escaped(). Every other conversion is
 * formatted by snprintf one at a time, with its argument fetched at the
 * type its length modifier names, so the format checking of log_msg's
 * callers stays exact. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void format_line(char *out, size_t room, const char *fmt, va_list ap)
{
    size_t n = 0;
    const char *p = fmt;

    while (*p != '\0' && n + 1 < room) {
        const char *spec = p, *conv;
        char one[32];
        int width = 0, prec = -1, has_width = 0, has_prec = 0, quoted;
        size_t speclen;
        int w;

        if (*p != '%') {
            out[n++] = *p++;
            continue;
        }
        if (p[1] == '%') {
            out[n++] = '%';
            p += 2;
            continue;
        }
        p++;
        p += strspn(p, "-+ #0");
        if (*p == '*') {
            width = va_arg(ap, int);
            has_width = 1;
            p++;
        } else {
            p += strspn(p, "0123456789");
        }
        if (*p == '.') {
            p++;
            if (*p == '*') {
                prec = va_arg(ap, int);
                has_prec = 1;
                p++;
            } else {
                prec = atoi(p);
                p += strspn(p, "0123456789");
            }
        }
        p += strspn(p, "hljztL");
        conv = p;
        if (*conv == '\0')
            break;
        p++;
        speclen = (size_t)(p - spec);
        if (speclen >= sizeof one)
            break;
        memcpy(one, spec, speclen);
        one[speclen] = '\0';
        quoted = spec > fmt && spec[-1] == '"' && *p == '"';
        if (*conv == 's' && quoted) {
            n += put_escaped(out + n, room - n, va_arg(ap, const char *), prec);
            continue;
        }
#define ONE(type)                                                                          \
    (has_width && has_prec ? snprintf(out + n, room - n, one, width, prec, va_arg(ap, type)) \
     : has_width          ? snprintf(out + n, room - n, one, width, va_arg(ap, type))       \
     : has_prec           ? snprintf(out + n, room - n, one, prec, va_arg(ap, type))        \
                          : snprintf(out + n, room - n, one, va_arg(ap, type)))
        switch (*conv) {
        case 'd': case 'i':
            if (conv[-1] == 'l' && conv - 1 > spec && conv[-2] == 'l') w = ONE(long long);
            else if (conv[-1] == 'l') w = ONE(long);
            else if (conv[-1] == 'z' || conv[-1] == 't') w = ONE(ssize_t);
            else if (conv[-1] == 'j') w = ONE(intmax_t);
            else w = ONE(int);
            break;
        case 'u': case 'x': case 'X': case 'o':
            if (conv[-1] == 'l' && conv - 1 > spec && conv[-2] == 'l') w = ONE(unsigned long long);
            else if (conv[-1] == 'l') w = ONE(unsigned long);
            else if (conv[-1] == 'z' || conv[-1] == 't') w = ONE(size_t);
            else if (conv[-1] == 'j') w = ONE(uintmax_t);
            else w = ONE(unsigned);
            break;
        case 'c': w = ONE(int); break;
        case 's': w = ONE(const char *); break;
        case 'p': w = ONE(void *); break;
        case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': case 'a': case 'A':
            w = conv[-1] == 'L' ? ONE(long double) : ONE(double);
            break;
        default:
            /* %n and anything unknown: stop rather than guess at the
             * argument list */
            out[n] = '\0';
            return;
        }
#undef ONE
        if (w < 0)
            break;
        n += (size_t)w < room - n ? (size_t)w : room - n - 1;
    }
    out[n < room ? n : room - 1] = '\0';
}
#pragma GCC diagnostic pop

void log_msg(int level, const char *fmt, ...)
{
    char line[4096];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n;

    if (level < log_min_level)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d] %s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, (int)(tv.tv_usec / 1000), log_program, (int)getpid(),
                 level_names[level < 0 || level > 3 ? 3 : level]);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    va_start(ap, fmt);
    format_line(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* one write per line so lines from several processes do not interleave */
    size_t len = strnlen(line, sizeof line - 2);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}
