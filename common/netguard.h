#ifndef IMGCACHE_NETGUARD_H
#define IMGCACHE_NETGUARD_H
/* Which addresses a download may connect to. Media URLs come from chats we
 * do not control, so a URL (or a redirect) must not reach this machine or
 * the private network behind it: loopback, private, shared (CGNAT),
 * link-local, multicast, unspecified and reserved ranges are refused, for
 * IPv4, IPv6 and IPv4-mapped IPv6 alike. Trusted origins (the configured
 * media server and Beeper API, IMGCACHE_ALLOW_HOSTS) are exceptions.
 *
 * Trust is for scheme + host + port, never a whole host: trusting
 * http://localhost:23373 must not open every other service on localhost.
 * Host names are compared after netguard_normalize_host().
 *
 * Ownership: netguard_new() copies what it needs; netguard_free() frees.
 * struct netguard_origin is a plain value owned by whoever declares it. */
#include <stddef.h>
#include <sys/socket.h>

#include "errmsg.h"

#define NETGUARD_HOST_MAX 256

/* 1 when the address is one a download must never reach. */
int netguard_is_internal(const struct sockaddr *sa);

/* What a trust decision (and a circuit breaker) is about. */
struct netguard_origin {
    char scheme[8];                /* "http" or "https" */
    char host[NETGUARD_HOST_MAX];  /* normalised */
    int port;                      /* explicit, or the scheme's default */
};

/* Lower case, trailing dots dropped, IP literals in their canonical
 * text form without brackets ("[::FFFF:7f00:1]" -> "::ffff:127.0.0.1").
 * -1 (message in err) when the result does not fit or host is empty. */
int netguard_normalize_host(const char *host, char *out, size_t outlen, char *err, size_t errlen)
    MUST_CHECK;
/* The origin of an absolute http(s) URL; -1 (message in err, without the
 * URL, which may carry a token) for anything else. */
int netguard_origin_of(const char *url, struct netguard_origin *out, char *err, size_t errlen)
    MUST_CHECK;
/* "scheme://host:port" ("[v6]" in brackets): the origin as one key. */
void netguard_origin_key(const struct netguard_origin *o, char *out, size_t outlen);

struct netguard;

/* allow: comma-separated entries, each `host`, `host:port` or
 * `scheme://host[:port]` (IPv6 as `[addr]` or `[addr]:port`; a bare IPv6
 * address is taken without a port). Without a port an entry means the
 * scheme's default port (80 for http, 443 for https); without a scheme,
 * either of http and https. An IP literal trusts that address whatever
 * name the URL used. Each of extra_urls (NULL-terminated; NULL/"" and
 * unparseable entries skipped) adds exactly its scheme + host + port.
 * -1 with the offending entry named in err for an entry it cannot read. */
int netguard_new(const char *allow, const char *const *extra_urls, struct netguard **out,
                 char *err, size_t errlen) MUST_CHECK;
void netguard_free(struct netguard *g);
/* 1 when connecting to `sa` (address and port) for a URL of scheme
 * `scheme` and (normalised or not) host `host` is allowed: a public address
 * always is; an internal one only when a trusted origin names this scheme
 * (or any), this port and this host name or address. */
int netguard_allows(const struct netguard *g, const char *scheme, const char *host,
                    const struct sockaddr *sa);

#endif
