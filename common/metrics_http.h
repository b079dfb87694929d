#ifndef IMGCACHE_METRICS_HTTP_H
#define IMGCACHE_METRICS_HTTP_H
/* The operator's HTTP endpoint: GET /metrics (a struct metrics rendered in
 * the Prometheus text format), /healthz (is the event loop turning?) and
 * /readyz (has the owner said it is ready?), served by libmicrohttpd on a
 * thread of its own.
 *
 * The owner's loop never waits for this thread: it calls
 * metrics_http_heartbeat() once per turn (one atomic store of the monotonic
 * time) and metrics_http_set_check() when a readiness condition changes (one
 * atomic bit); the HTTP thread only reads them. Every function accepts a
 * NULL handle and then does nothing, so an owner with the endpoint off needs
 * no checks around the calls.
 *
 * Bounds against a slow or hostile client: a global and a per-address
 * connection limit, an idle timeout, a cap on the request's size (line and
 * headers; a body is refused), GET and HEAD only. libmicrohttpd's idle
 * timeout restarts with every byte, so a client sending one byte a second
 * holds its connections: the per-address limit keeps such a client to its
 * own slots, and nothing it does reaches the owner's loop.
 *
 * Ownership: metrics_http_start() returns a handle freed (its thread
 * stopped) by metrics_http_stop(). The registry and the options' strings are
 * borrowed and must outlive the handle. */
#include <stddef.h>
#include <sys/socket.h>

#include "metrics.h"

#define METRICS_HTTP_MAX_CHECKS 8

struct metrics_http_options {
    unsigned max_connections;       /* all clients together (default 64) */
    unsigned max_per_address;       /* one client address (default 8) */
    unsigned timeout_s;             /* idle connection timeout (default 10) */
    size_t max_request_bytes;       /* request line and headers (default 8192) */
    long long stale_ms;             /* /healthz is 503 after this long without
                                       a heartbeat (default 30000) */
    /* Readiness conditions, NULL-terminated, at most METRICS_HTTP_MAX_CHECKS:
     * each is the one-line reason /readyz gives while it is not met
     * ("no partition assignment"). Every condition starts unmet. */
    const char *const *checks;
};

struct metrics_http;

/* Parses "HOST:PORT" (IPv6 in brackets: "[::1]:9100"; HOST an IP address
 * or "localhost"; PORT 0 to 65535, 0 for any free port) into *ss. */
int metrics_http_parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                            size_t errlen) __attribute__((warn_unused_result));

/* Binds addr and starts serving m. opt may be NULL (defaults); a zero field
 * takes its default. */
int metrics_http_start(const char *addr, struct metrics *m, const struct metrics_http_options *opt,
                       struct metrics_http **out, char *err, size_t errlen) __attribute__((warn_unused_result));
void metrics_http_stop(struct metrics_http *h);

/* The port bound (useful after asking for port 0). */
unsigned metrics_http_port(const struct metrics_http *h);

/* The owner's loop turned: stores the monotonic time. */
void metrics_http_heartbeat(struct metrics_http *h);
/* Condition `check` (its index in opt->checks) is now met (1) or not (0). */
void metrics_http_set_check(struct metrics_http *h, unsigned check, int met);

#endif
