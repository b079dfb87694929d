#ifndef IMGCACHE_LOG_H
#define IMGCACHE_LOG_H
/* One line per event on stderr: "<UTC time> <program>[pid] <level> <message>".
 * Messages are key=value fields written by the caller. A %s written between
 * quotes in the format (key="%s") is escaped ('"', '\\' and control
 * characters), so an outside value cannot end its quotes and forge fields.
 * Never pass a secret: print URLs through resolve_redact() first. Nothing
 * here allocates. */
#include <stdarg.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

extern int log_min_level;

/* program is borrowed and must outlive all logging (a string literal). */
void log_init(const char *program, int min_level);
/* Parses "debug|info|warn|error"; -1 when the name is unknown. */
int log_level_parse(const char *name);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The level is checked before the arguments are evaluated. */
#define log_debug(...) do { if (log_min_level <= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_min_level <= LOG_INFO)  log_msg(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_min_level <= LOG_WARN)  log_msg(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
