#ifndef IMGCACHE_NETGUARD_H
#define IMGCACHE_NETGUARD_H
/* Which addresses a download may connect to. Media URLs come from chats we
 * do not control, so a URL (or a redirect) must not reach this machine or
 * the private network behind it: loopback, private, shared (CGNAT),
 * link-local, multicast, unspecified and reserved ranges are refused, for
 * IPv4, IPv6 and IPv4-mapped IPv6 alike. Named hosts (the configured media
 * server and Beeper API, IMGCACHE_ALLOW_HOSTS) are exceptions.
 *
 * Ownership: netguard_new() copies what it needs; netguard_free() frees. */
#include <stddef.h>
#include <sys/socket.h>

/* 1 when the address is one a download must never reach. */
int netguard_is_internal(const struct sockaddr *sa);

struct netguard;

/* allow: comma-separated host names or IP literals (may be NULL/""). Each
 * of extra_urls (NULL-terminated; NULL/"" entries skipped) adds its host. */
int netguard_new(const char *allow, const char *const *extra_urls, struct netguard **out,
                 char *err, size_t errlen);
void netguard_free(struct netguard *g);
/* 1 when connecting to `sa` for a URL with host `host` is allowed. */
int netguard_allows(const struct netguard *g, const char *host, const struct sockaddr *sa);

#endif
