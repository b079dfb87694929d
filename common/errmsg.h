#ifndef IMGCACHE_ERRMSG_H
#define IMGCACHE_ERRMSG_H
/* The house error convention: a function returns -1 and writes one line
 * into the caller's err buffer. errmsg_set() is that write, tolerating a
 * NULL or empty buffer. Nothing is allocated. A message is lower case,
 * without a full stop, and quotes what it is about: "cannot open 'x': ...".
 *
 * MUST_CHECK marks a function whose result a caller may not ignore (an
 * error status, or something to free), as curl's WARN_UNUSED_RESULT does:
 * with -Werror, ignoring it does not build. A (void) cast does not silence
 * it on GCC; handle the result. */
#include <stddef.h>

#define MUST_CHECK __attribute__((warn_unused_result))

void errmsg_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Copies the first line of msg into out with the text of every
 * double-quoted piece replaced by ***, except a piece equal to an entry of
 * keep (NULL-terminated, may be NULL); an unmatched quote hides the rest.
 * For library messages that quote what they were given (libpq's conninfo
 * parser, librdkafka's property values), which may be a secret. */
void errmsg_redact_quoted(char *out, size_t outlen, const char *msg, const char *const *keep);

#endif
