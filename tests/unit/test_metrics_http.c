/* The metrics endpoint (common/metrics_http.h): HOST:PORT parsing, then a
 * live server on 127.0.0.1 port 0 asked with plain sockets: the three
 * paths, health going stale, readiness checks, and what it refuses. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "metrics.h"
#include "metrics_http.h"

/* ---- parsing ---- */

static void parse_ok(const char *addr, int family, const char *host, unsigned port)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    char err[256] = "", text[INET6_ADDRSTRLEN];
    const void *a;
    unsigned p;

    if (metrics_http_parse_addr(addr, &ss, &len, err, sizeof err) != 0)
        fail_msg("\"%s\": %s", addr, err);
    assert_int_equal(ss.ss_family, family);
    if (family == AF_INET) {
        a = &((struct sockaddr_in *)&ss)->sin_addr;
        p = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        assert_int_equal(len, sizeof(struct sockaddr_in));
    } else {
        a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        p = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        assert_int_equal(len, sizeof(struct sockaddr_in6));
    }
    assert_non_null(inet_ntop(family, a, text, sizeof text));
    assert_string_equal(text, host);
    assert_int_equal(p, port);
}

static void parse_fails(const char *addr, const char *want)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    char err[256] = "";

    assert_int_equal(metrics_http_parse_addr(addr, &ss, &len, err, sizeof err), -1);
    if (strstr(err, want) == NULL)
        fail_msg("\"%s\": error \"%s\" does not say \"%s\"", addr ? addr : "(null)", err, want);
}

static void test_parse_addr(void **state)
{
    (void)state;
    parse_ok("127.0.0.1:9100", AF_INET, "127.0.0.1", 9100);
    parse_ok("0.0.0.0:0", AF_INET, "0.0.0.0", 0);
    parse_ok("localhost:65535", AF_INET, "127.0.0.1", 65535);
    parse_ok("[::1]:9100", AF_INET6, "::1", 9100);
    parse_ok("[::]:80", AF_INET6, "::", 80);
    parse_fails(NULL, "empty");
    parse_fails("", "empty");
    parse_fails("127.0.0.1", "no port");
    parse_fails("127.0.0.1:", "port \"\" is not a number");
    parse_fails("127.0.0.1:65536", "from 0 to 65535");
    parse_fails("127.0.0.1:-1", "from 0 to 65535");
    parse_fails("127.0.0.1:91OO", "port \"91OO\"");
    parse_fails(":9100", "host is empty");
    parse_fails("::1:9100", "in brackets");
    parse_fails("[::1]9100", "[IPV6]:PORT");
    parse_fails("[::1:9100", "[IPV6]:PORT");
    parse_fails("[127.0.0.1]:9100", "not an IPv6 address");
    parse_fails("example.com:9100", "\"example.com\" is not an IPv4 address (or localhost)");
    parse_fails("[]:9100", "host is empty");
}

/* ---- a live server ---- */

struct reply {
    int status;
    char text[65536];       /* headers and body */
    const char *body;
};

/* Sends raw (ending the headers itself) and reads the answer until the
 * server closes, within 5 s. */
static void raw_request(unsigned port, const char *raw, struct reply *r)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    size_t got = 0;
    struct pollfd pfd;

    memset(r, 0, sizeof *r);
    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(send(fd, raw, strlen(raw), MSG_NOSIGNAL), (ssize_t)strlen(raw));
    pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
    while (got < sizeof r->text - 1 && poll(&pfd, 1, 5000) == 1) {
        ssize_t n = recv(fd, r->text + got, sizeof r->text - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    r->text[got] = '\0';
    if (sscanf(r->text, "HTTP/1.%*d %d", &r->status) != 1)
        fail_msg("no status line in \"%s\"", r->text);
    r->body = strstr(r->text, "\r\n\r\n");
    r->body = r->body != NULL ? r->body + 4 : "";
}

static void get(unsigned port, const char *method, const char *path, struct reply *r)
{
    char raw[512];

    snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", method, path);
    raw_request(port, raw, r);
}

struct server {
    struct metrics *m;
    struct metric *turns;
    struct metrics_http *h;
};

static const char *const checks[] = { "no partition assignment", "PostgreSQL unreachable", NULL };

static int server_up(void **state)
{
    struct server *s = calloc(1, sizeof *s);
    struct metric_def def = { .name = "turns_total", .help = "Loop turns.", .type = METRIC_COUNTER };
    struct metrics_http_options opt = { .stale_ms = 300, .checks = checks, .max_per_address = 4 };
    char err[256];

    if (s == NULL || metrics_new(&s->m, err, sizeof err) != 0 ||
        metrics_add(s->m, &def, &s->turns, err, sizeof err) != 0 ||
        metrics_http_start("127.0.0.1:0", s->m, &opt, &s->h, err, sizeof err) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    *state = s;
    return 0;
}

static int server_down(void **state)
{
    struct server *s = *state;

    metrics_http_stop(s->h);
    metrics_free(s->m);
    free(s);
    return 0;
}

static void test_metrics_path(void **state)
{
    struct server *s = *state;
    struct reply r;

    assert_true(metrics_http_port(s->h) > 0);
    metric_add(s->turns, 0, 7);
    get(metrics_http_port(s->h), "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.text, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert_string_equal(r.body, "# HELP turns_total Loop turns.\n# TYPE turns_total counter\nturns_total 7\n");
    get(metrics_http_port(s->h), "HEAD", "/metrics?x=1", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_health_goes_stale(void **state)
{
    struct server *s = *state;
    struct reply r;
    long long until = now_ms() + 5000;

    metrics_http_heartbeat(s->h);
    get(metrics_http_port(s->h), "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    /* no heartbeat: within stale_ms (300) plus scheduling, 503 */
    do {
        get(metrics_http_port(s->h), "GET", "/healthz", &r);
    } while (r.status == 200 && now_ms() < until);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "stalled: the loop has not turned for "));
    metrics_http_heartbeat(s->h);
    get(metrics_http_port(s->h), "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
}

static void test_readiness(void **state)
{
    struct server *s = *state;
    struct reply r;
    unsigned port = metrics_http_port(s->h);

    get(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: no partition assignment\n");
    metrics_http_set_check(s->h, 0, 1);
    get(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: PostgreSQL unreachable\n");
    metrics_http_set_check(s->h, 1, 1);
    metrics_http_set_check(s->h, 7, 0);        /* no such check: ignored */
    get(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready\n");
    metrics_http_set_check(s->h, 1, 0);
    get(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: PostgreSQL unreachable\n");
    /* NULL: the endpoint is off, and the owner need not check */
    metrics_http_set_check(NULL, 0, 1);
    metrics_http_heartbeat(NULL);
    metrics_http_stop(NULL);
    assert_int_equal(metrics_http_port(NULL), 0);
}

static void test_refusals(void **state)
{
    struct server *s = *state;
    unsigned port = metrics_http_port(s->h);
    struct reply r;
    char *huge;
    size_t n = 64 * 1024;

    get(port, "GET", "/", &r);
    assert_int_equal(r.status, 404);
    get(port, "GET", "/metrics/", &r);
    assert_int_equal(r.status, 404);
    get(port, "POST", "/metrics", &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.text, "Allow: GET, HEAD\r\n"));
    get(port, "DELETE", "/readyz", &r);
    assert_int_equal(r.status, 405);
    raw_request(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", &r);
    assert_int_equal(r.status, 413);
    /* request headers far past the limit: refused, not buffered */
    huge = malloc(n + 128);
    assert_non_null(huge);
    memcpy(huge, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
    memset(huge + 30, 'a', n);
    memcpy(huge + 30 + n, "\r\nConnection: close\r\n\r\n", 24);
    raw_request(port, huge, &r);
    free(huge);
    assert_true(r.status == 431 || r.status == 413);
    /* and the server still answers */
    get(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
}

static void test_port_in_use(void **state)
{
    struct server *s = *state;
    struct metrics_http *other = NULL;
    char addr[64], err[256] = "";

    snprintf(addr, sizeof addr, "127.0.0.1:%u", metrics_http_port(s->h));
    assert_int_equal(metrics_http_start(addr, s->m, NULL, &other, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot listen on \""));
    assert_int_equal(metrics_http_start("nonsense", s->m, NULL, &other, err, sizeof err), -1);
    assert_non_null(strstr(err, "no port"));
}

static void test_too_many_checks(void **state)
{
    static const char *const nine[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", NULL };
    struct server *s = *state;
    struct metrics_http_options opt = { .checks = nine };
    struct metrics_http *other = NULL;
    char err[256] = "";

    assert_int_equal(metrics_http_start("127.0.0.1:0", s->m, &opt, &other, err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 8 readiness checks"));
    assert_null(other);
}

/* [::1]:0 serves on IPv6 loopback (skipped where this host has none). */
static void test_ipv6(void **state)
{
    struct server *s = *state;
    struct metrics_http *h6 = NULL;
    struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    const char *req = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char err[256] = "", buf[256] = "";
    struct pollfd pfd;
    int fd;
    ssize_t n = 0;

    if (metrics_http_start("[::1]:0", s->m, NULL, &h6, err, sizeof err) != 0) {
        if (strstr(err, "Cannot assign requested address") != NULL || strstr(err, "not supported") != NULL)
            skip();
        fail_msg("%s", err);
    }
    assert_true(metrics_http_port(h6) > 0);
    sin6.sin6_port = htons((uint16_t)metrics_http_port(h6));
    fd = socket(AF_INET6, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin6, sizeof sin6), 0);
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
    if (poll(&pfd, 1, 5000) == 1)
        n = recv(fd, buf, sizeof buf - 1, 0);
    close(fd);
    metrics_http_stop(h6);
    assert_true(n > 0);
    /* no checks given: ready at once */
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test_setup_teardown(test_metrics_path, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_health_goes_stale, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_readiness, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_refusals, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_port_in_use, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_ipv6, server_up, server_down),
        cmocka_unit_test_setup_teardown(test_too_many_checks, server_up, server_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
