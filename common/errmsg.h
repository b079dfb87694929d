#ifndef IMGCACHE_ERRMSG_H
#define IMGCACHE_ERRMSG_H
/* The house error convention: a function returns -1 and writes one line
 * into the caller's err buffer. errmsg_set() is that write, tolerating a
 * NULL or empty buffer. Nothing is allocated. */
#include <stddef.h>

void errmsg_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
