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

/* One conversion of a format: its text (one, for snprintf), the
 * conversion character, and the width and precision given as '*'
 * arguments (already fetched, in argument order). */
struct conv_spec {
    char one[32];
    char conv;
    char length[3];     /* "", "h", "hh", "l", "ll", "j", "z", "t" or "L" */
    int width, prec;    /* prec < 0: none */
    int has_width, has_prec;
};

/* Reads the conversion that starts at *pp (just after its '%'), fetching
 * '*' width and precision from ap, and moves *pp past it. -1 on a format
 * that ends inside it or a conversion too long to copy. */
static int parse_spec(const char **pp, const char *spec, va_list *ap, struct conv_spec *cs)
{
    const char *p = *pp;
    const char *len_start;
    size_t speclen;

    cs->width = 0;
    cs->prec = -1;
    cs->has_width = cs->has_prec = 0;
    p += strspn(p, "-+ #0");
    if (*p == '*') {
        cs->width = va_arg(*ap, int);
        cs->has_width = 1;
        p++;
    } else {
        p += strspn(p, "0123456789");
    }
    if (*p == '.') {
        p++;
        if (*p == '*') {
            cs->prec = va_arg(*ap, int);
            cs->has_prec = 1;
            p++;
        } else {
            cs->prec = atoi(p);
            p += strspn(p, "0123456789");
        }
    }
    len_start = p;
    p += strspn(p, "hljztL");
    if (*p == '\0' || (size_t)(p - len_start) >= sizeof cs->length)
        return -1;
    memcpy(cs->length, len_start, (size_t)(p - len_start));
    cs->length[p - len_start] = '\0';
    cs->conv = *p++;
    speclen = (size_t)(p - spec);
    if (speclen >= sizeof cs->one)
        return -1;
    memcpy(cs->one, spec, speclen);
    cs->one[speclen] = '\0';
    *pp = p;
    return 0;
}

/* snprintf of one conversion, its argument fetched from ap at the type
 * its length modifier names. Returns what snprintf returns, or -1 for %n
 * and anything unknown: stop rather than guess at the argument list. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static int format_one(char *out, size_t room, const struct conv_spec *cs, va_list *ap)
{
    const char *len = cs->length;
    int w;

#define ONE(type)                                                                                        \
    (cs->has_width && cs->has_prec ? snprintf(out, room, cs->one, cs->width, cs->prec, va_arg(*ap, type)) \
     : cs->has_width               ? snprintf(out, room, cs->one, cs->width, va_arg(*ap, type))           \
     : cs->has_prec                ? snprintf(out, room, cs->one, cs->prec, va_arg(*ap, type))            \
                                   : snprintf(out, room, cs->one, va_arg(*ap, type)))
    switch (cs->conv) {
    case 'd': case 'i':
        if (strcmp(len, "ll") == 0) w = ONE(long long);
        else if (strcmp(len, "l") == 0) w = ONE(long);
        else if (strcmp(len, "z") == 0 || strcmp(len, "t") == 0) w = ONE(ssize_t);
        else if (strcmp(len, "j") == 0) w = ONE(intmax_t);
        else w = ONE(int);
        break;
    case 'u': case 'x': case 'X': case 'o':
        if (strcmp(len, "ll") == 0) w = ONE(unsigned long long);
        else if (strcmp(len, "l") == 0) w = ONE(unsigned long);
        else if (strcmp(len, "z") == 0 || strcmp(len, "t") == 0) w = ONE(size_t);
        else if (strcmp(len, "j") == 0) w = ONE(uintmax_t);
        else w = ONE(unsigned);
        break;
    case 'c': w = ONE(int); break;
    case 's': w = ONE(const char *); break;
    case 'p': w = ONE(void *); break;
    case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': case 'a': case 'A':
        w = strcmp(len, "L") == 0 ? ONE(long double) : ONE(double);
        break;
    default:
        w = -1;
        break;
    }
#undef ONE
    return w;
}
#pragma GCC diagnostic pop

/* vsnprintf, except that a %s (or %.*s, %.Ns) written between two '"' of
 * the format is escaped with put_escaped(). Every other conversion is
 * formatted by snprintf one at a time, with its argument fetched at the
 * type its length modifier names, so the format checking of log_msg's
 * callers stays exact. */
static void format_line(char *out, size_t room, const char *fmt, va_list *ap)
{
    size_t n = 0;
    const char *p = fmt;

    while (*p != '\0' && n + 1 < room) {
        const char *spec = p;
        struct conv_spec cs;
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
        if (parse_spec(&p, spec, ap, &cs) != 0)
            break;
        if (cs.conv == 's' && spec > fmt && spec[-1] == '"' && *p == '"') {
            n += put_escaped(out + n, room - n, va_arg(*ap, const char *), cs.prec);
            continue;
        }
        w = format_one(out + n, room - n, &cs, ap);
        if (w < 0)
            break;
        n += (size_t)w < room - n ? (size_t)w : room - n - 1;
    }
    out[n < room ? n : room - 1] = '\0';
}

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
    format_line(line + n, sizeof line - (size_t)n, fmt, &ap);
    va_end(ap);
    /* one write per line so lines from several processes do not interleave */
    size_t len = strnlen(line, sizeof line - 2);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}
