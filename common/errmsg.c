#include "errmsg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void errmsg_set(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int is_kept(const char *piece, size_t len, const char *const *keep)
{
    for (size_t i = 0; keep != NULL && keep[i] != NULL; i++)
        if (strlen(keep[i]) == len && memcmp(keep[i], piece, len) == 0)
            return 1;
    return 0;
}

void errmsg_redact_quoted(char *out, size_t outlen, const char *msg, const char *const *keep)
{
    size_t used = 0;
    const char *p = msg;

    if (out == NULL || outlen == 0)
        return;
    out[0] = '\0';
    while (*p != '\0' && *p != '\n' && *p != '\r' && used + 1 < outlen) {
        const char *close = *p == '"' ? strchr(p + 1, '"') : NULL;
        if (*p == '"' && close == NULL) {
            errmsg_set(out + used, outlen - used, "\"***");
            break;
        }
        if (*p == '"') {
            size_t len = (size_t)(close - p - 1);
            if (is_kept(p + 1, len, keep))
                errmsg_set(out + used, outlen - used, "\"%.*s\"", (int)len, p + 1);
            else
                errmsg_set(out + used, outlen - used, "\"***\"");
            used = strlen(out);
            p = close + 1;
        } else {
            out[used++] = *p++;
            out[used] = '\0';
        }
    }
}
