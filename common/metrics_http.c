#include "metrics_http.h"

#include "errmsg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct metrics_http {
    struct MHD_Daemon *daemon;
    struct metrics *metrics;
    long long stale_ms;
    unsigned port;
    const char *checks[METRICS_HTTP_MAX_CHECKS];
    unsigned nchecks;
    /* Written by the owner's loop, read by the HTTP thread. */
    _Atomic long long last_turn_ms;
    _Atomic unsigned unmet;         /* bit i: checks[i] is not met */
};

static long long monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- HOST:PORT ------------------------------------------------------------------- */

static int parse_port(const char *addr, const char *s, unsigned *port, char *err, size_t errlen)
{
    unsigned long v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 5 || strspn(s, "0123456789") != n || (v = strtoul(s, NULL, 10)) > 65535) {
        errmsg_set(err, errlen, "metrics address \"%s\": port \"%s\" is not a number from 0 to 65535", addr, s);
        return -1;
    }
    *port = (unsigned)v;
    return 0;
}

/* Splits addr into host (written to host, at most hostlen) and port text. */
static int split_addr(const char *addr, char *host, size_t hostlen, const char **port, char *err, size_t errlen)
{
    const char *start = addr, *end, *colon;

    if (addr[0] == '[') {
        start = addr + 1;
        end = strchr(start, ']');
        if (end == NULL || end[1] != ':') {
            errmsg_set(err, errlen, "metrics address \"%s\": expected [IPV6]:PORT", addr);
            return -1;
        }
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            errmsg_set(err, errlen, "metrics address \"%s\": no port: expected HOST:PORT", addr);
            return -1;
        }
        if (memchr(addr, ':', (size_t)(colon - addr)) != NULL) {
            errmsg_set(err, errlen, "metrics address \"%s\": an IPv6 address goes in brackets: [ADDR]:PORT", addr);
            return -1;
        }
        end = colon;
    }
    if (end == start) {
        errmsg_set(err, errlen, "metrics address \"%s\": the host is empty (0.0.0.0:PORT listens on every address)",
                   addr);
        return -1;
    }
    if ((size_t)(end - start) >= hostlen) {
        errmsg_set(err, errlen, "metrics address \"%s\": the host is too long", addr);
        return -1;
    }
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    *port = colon + 1;
    return 0;
}

int metrics_http_parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                            size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_text = NULL;
    unsigned port = 0;
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    if (addr == NULL || addr[0] == '\0') {
        errmsg_set(err, errlen, "metrics address is empty: expected HOST:PORT");
        return -1;
    }
    if (split_addr(addr, host, sizeof host, &port_text, err, errlen) != 0 ||
        parse_port(addr, port_text, &port, err, errlen) != 0)
        return -1;
    memset(ss, 0, sizeof *ss);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (addr[0] != '[' && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *sslen = sizeof *in4;
        return 0;
    }
    if (addr[0] == '[' && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *sslen = sizeof *in6;
        return 0;
    }
    errmsg_set(err, errlen, "metrics address \"%s\": \"%s\" is not an %s address%s", addr, host,
               addr[0] == '[' ? "IPv6" : "IPv4", addr[0] == '[' ? "" : " (or localhost)");
    return -1;
}

/* ---- requests -------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body,
                             size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
    enum MHD_Result ret;

    if (resp == NULL) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;      /* MHD closes the connection */
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return reply(conn, status, "text/plain; charset=utf-8", (char *)text, strlen(text), MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result serve_metrics(struct metrics_http *h, struct MHD_Connection *conn)
{
    char *body = NULL;
    size_t len = 0;
    char err[256];

    if (metrics_render(h->metrics, &body, &len, err, sizeof err) != 0)
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot render the metrics\n");
    return reply(conn, MHD_HTTP_OK, METRICS_CONTENT_TYPE, body, len, MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result serve_health(struct metrics_http *h, struct MHD_Connection *conn)
{
    char text[128];
    long long idle = monotonic_ms() - atomic_load(&h->last_turn_ms);

    if (idle < h->stale_ms)
        return reply_text(conn, MHD_HTTP_OK, "ok\n");
    snprintf(text, sizeof text, "stalled: the loop has not turned for %lld ms\n", idle);
    return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

static enum MHD_Result serve_ready(struct metrics_http *h, struct MHD_Connection *conn)
{
    char text[256];
    unsigned unmet = atomic_load(&h->unmet);

    for (unsigned i = 0; i < h->nchecks; i++) {
        if (unmet & (1u << i)) {
            snprintf(text, sizeof text, "not ready: %s\n", h->checks[i]);
            return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text);
        }
    }
    return reply_text(conn, MHD_HTTP_OK, "ready\n");
}

/* A request with a body: GET and HEAD need none, and reading one would let
 * a client make us take in whatever it sends. */
static int has_body(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL)
        return 1;
    return cl != NULL && strcmp(cl, "0") != 0;
}

/* Answers on the first call, before any body is read: libmicrohttpd then
 * closes a connection whose body was not consumed. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct metrics_http *h = cls;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (has_body(conn))
        return reply_text(conn, MHD_HTTP_CONTENT_TOO_LARGE, "a request body is not accepted\n");
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(h, conn);
    if (strcmp(url, "/healthz") == 0)
        return serve_health(h, conn);
    if (strcmp(url, "/readyz") == 0)
        return serve_ready(h, conn);
    return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n");
}

/* ---- the daemon ------------------------------------------------------------------ */

static int set_checks(struct metrics_http *h, const char *const *checks, char *err, size_t errlen)
{
    for (unsigned i = 0; checks != NULL && checks[i] != NULL; i++) {
        if (i >= METRICS_HTTP_MAX_CHECKS) {
            errmsg_set(err, errlen, "metrics endpoint: more than %d readiness checks", METRICS_HTTP_MAX_CHECKS);
            return -1;
        }
        h->checks[i] = checks[i];
        h->nchecks = i + 1;
    }
    atomic_init(&h->unmet, h->nchecks == 0 ? 0u : (1u << h->nchecks) - 1);
    return 0;
}

static unsigned bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (info == NULL || getsockname(info->listen_fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

#define OR_DEFAULT(v, d) ((v) != 0 ? (v) : (d))

int metrics_http_start(const char *addr, struct metrics *m, const struct metrics_http_options *opt,
                       struct metrics_http **out, char *err, size_t errlen)
{
    static const struct metrics_http_options defaults = { 0 };
    struct metrics_http *h = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD;
    int rc = -1;

    if (opt == NULL)
        opt = &defaults;
    if (metrics_http_parse_addr(addr, &ss, &sslen, err, errlen) != 0)
        goto out;
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        errmsg_set(err, errlen, "metrics endpoint: out of memory");
        goto out;
    }
    h->metrics = m;
    h->stale_ms = OR_DEFAULT(opt->stale_ms, 30000);
    atomic_init(&h->last_turn_ms, monotonic_ms());     /* the loop's first turn is due within stale_ms */
    if (set_checks(h, opt->checks, err, errlen) != 0)
        goto out;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The memory limit holds the request line and headers plus the reply's
     * headers; a larger request is answered 431/414 and closed. */
    errno = 0;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, OR_DEFAULT(opt->max_connections, 64u),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, OR_DEFAULT(opt->max_per_address, 8u),
        MHD_OPTION_CONNECTION_TIMEOUT, OR_DEFAULT(opt->timeout_s, 10u),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, OR_DEFAULT(opt->max_request_bytes, (size_t)8192) + (size_t)4096,
        MHD_OPTION_END);
    if (h->daemon == NULL) {
        errmsg_set(err, errlen, "metrics endpoint: cannot listen on \"%s\" (%s)", addr,
                   errno != 0 ? strerror(errno) : "address in use, or not an address of this host?");
        goto out;
    }
    h->port = bound_port(h->daemon);
    *out = h;
    h = NULL;
    rc = 0;
out:
    free(h);
    return rc;
}

void metrics_http_stop(struct metrics_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}

unsigned metrics_http_port(const struct metrics_http *h)
{
    return h != NULL ? h->port : 0;
}

void metrics_http_heartbeat(struct metrics_http *h)
{
    if (h != NULL)
        atomic_store_explicit(&h->last_turn_ms, monotonic_ms(), memory_order_relaxed);
}

void metrics_http_set_check(struct metrics_http *h, unsigned check, int met)
{
    if (h == NULL || check >= h->nchecks)
        return;
    if (met)
        atomic_fetch_and(&h->unmet, ~(1u << check));
    else
        atomic_fetch_or(&h->unmet, 1u << check);
}
