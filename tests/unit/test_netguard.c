/* netguard_is_internal() and netguard_allows() on addresses built with
 * inet_pton(): no socket is ever opened, no name is ever resolved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "netguard.h"

/* A sockaddr_in or sockaddr_in6 for an IP literal (which family is chosen by
 * the literal: a ':' means IPv6). */
static struct sockaddr_storage addr_of(const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(443);
        if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
            fail_msg("not an IPv6 literal: %s", ip);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(443);
        if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
            fail_msg("not an IPv4 literal: %s", ip);
    }
    return ss;
}

static int internal(const char *ip)
{
    struct sockaddr_storage ss = addr_of(ip);
    return netguard_is_internal((const struct sockaddr *)&ss);
}

/* Every address of the list must be classified as `expected`; the message
 * names the first that is not. */
static void expect_all(const char *const *ips, size_t n, int expected)
{
    for (size_t i = 0; i < n; i++) {
        int got = internal(ips[i]);
        if (got != expected)
            fail_msg("netguard_is_internal(%s) = %d, expected %d", ips[i], got, expected);
    }
}

#define EXPECT_INTERNAL(...)                                                              \
    do {                                                                                  \
        static const char *const ips_[] = { __VA_ARGS__ };                                \
        expect_all(ips_, sizeof ips_ / sizeof ips_[0], 1);                                \
    } while (0)
#define EXPECT_PUBLIC(...)                                                                \
    do {                                                                                  \
        static const char *const ips_[] = { __VA_ARGS__ };                                \
        expect_all(ips_, sizeof ips_ / sizeof ips_[0], 0);                                \
    } while (0)

static void test_v4_private_ranges(void **state)
{
    (void)state;
    EXPECT_INTERNAL("10.0.0.0", "10.0.0.1", "10.255.255.255");
    EXPECT_INTERNAL("172.16.0.0", "172.16.0.1", "172.20.1.2", "172.31.255.255");
    EXPECT_PUBLIC("172.15.255.255", "172.32.0.0", "172.32.0.1", "9.255.255.255", "11.0.0.0");
    EXPECT_INTERNAL("192.168.0.0", "192.168.1.1", "192.168.255.255");
    EXPECT_PUBLIC("192.167.255.255", "192.169.0.0");
}

static void test_v4_special_ranges(void **state)
{
    (void)state;
    EXPECT_INTERNAL("169.254.0.0", "169.254.169.254", "169.254.255.255");
    EXPECT_PUBLIC("169.253.255.255", "169.255.0.0");
    EXPECT_INTERNAL("100.64.0.0", "100.64.0.1", "100.100.100.100", "100.127.255.255");
    EXPECT_PUBLIC("100.63.255.255", "100.128.0.0", "100.128.0.1");
    EXPECT_INTERNAL("127.0.0.1", "127.0.0.0", "127.1.2.3", "127.255.255.255");
    EXPECT_INTERNAL("0.0.0.0", "0.1.2.3", "0.255.255.255");
    EXPECT_INTERNAL("224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255");
    EXPECT_PUBLIC("223.255.255.255");
}

static void test_v4_public(void **state)
{
    (void)state;
    EXPECT_PUBLIC("1.1.1.1", "8.8.8.8", "93.184.216.34", "128.0.0.1", "1.0.0.0", "126.255.255.255");
}

static void test_v6(void **state)
{
    (void)state;
    EXPECT_INTERNAL("::1", "::");
    EXPECT_INTERNAL("fc00::", "fc00::1", "fd12:3456:789a::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    EXPECT_INTERNAL("fe80::", "fe80::1", "febf:ffff::1");
    EXPECT_INTERNAL("ff02::1");
    EXPECT_INTERNAL("fec0::1", "2001:db8::1");
    EXPECT_PUBLIC("fbff:ffff::1", "fe00::1", "fe7f::1");
    EXPECT_PUBLIC("2606:4700::1", "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450::1");
}

static void test_v6_embedded_v4(void **state)
{
    (void)state;
    EXPECT_INTERNAL("::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
                    "::ffff:192.168.1.1", "::ffff:0.0.0.0");
    EXPECT_PUBLIC("::ffff:8.8.8.8", "::ffff:1.1.1.1");
    EXPECT_INTERNAL("64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b::10.1.2.3");
    EXPECT_PUBLIC("64:ff9b::808:808");
}

static void test_other_families(void **state)
{
    struct sockaddr_storage ss;

    (void)state;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNIX;
    assert_int_equal(netguard_is_internal((const struct sockaddr *)&ss), 1);
    ss.ss_family = AF_UNSPEC;
    assert_int_equal(netguard_is_internal((const struct sockaddr *)&ss), 1);
    assert_int_equal(netguard_is_internal(NULL), 1);
}

static struct netguard *guard(const char *allow, const char *const *extra)
{
    struct netguard *g = NULL;
    char err[256] = "";

    if (netguard_new(allow, extra, &g, err, sizeof err) != 0)
        fail_msg("netguard_new(%s): %s", allow ? allow : "NULL", err);
    assert_non_null(g);
    return g;
}

/* Would a connection to ip:port for a URL scheme://host... be allowed? */
static int allows_at(const struct netguard *g, const char *scheme, const char *host, const char *ip,
                     int port)
{
    struct sockaddr_storage ss = addr_of(ip);

    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    return netguard_allows(g, scheme, host, (const struct sockaddr *)&ss);
}

/* The same for https on its default port. */
static int allows(const struct netguard *g, const char *host, const char *ip)
{
    return allows_at(g, "https", host, ip, 443);
}

static void test_allows_without_list(void **state)
{
    struct netguard *g = guard(NULL, NULL);

    (void)state;
    assert_int_equal(allows(g, "example.com", "93.184.216.34"), 1);
    assert_int_equal(allows(g, "example.com", "2606:4700::1"), 1);
    assert_int_equal(allows(g, "localhost", "127.0.0.1"), 0);
    assert_int_equal(allows(g, "evil.test", "169.254.169.254"), 0);
    assert_int_equal(allows(g, "evil.test", "::ffff:10.0.0.1"), 0);
    assert_int_equal(allows(g, NULL, "10.0.0.1"), 0);
    assert_int_equal(allows(g, NULL, "1.1.1.1"), 1);
    /* public addresses on any port */
    assert_int_equal(allows_at(g, "http", "example.com", "93.184.216.34", 8080), 1);
    netguard_free(g);
    /* NULL guard: only public addresses */
    assert_int_equal(allows(NULL, "x", "10.0.0.1"), 0);
    assert_int_equal(allows(NULL, "x", "1.1.1.1"), 1);
    /* empty allow list is the same as none */
    g = guard("", NULL);
    assert_int_equal(allows(g, "", "127.0.0.1"), 0);
    netguard_free(g);
}

static void test_allows_names_and_literals(void **state)
{
    struct netguard *g = guard(" media.internal , 127.0.0.1,[::1],fd00::7,, Beeper.Local ", NULL);

    (void)state;
    /* names, case-insensitively, whatever address they resolve to */
    assert_int_equal(allows(g, "media.internal", "10.1.2.3"), 1);
    assert_int_equal(allows(g, "MEDIA.internal", "192.168.0.5"), 1);
    assert_int_equal(allows(g, "beeper.local", "169.254.1.1"), 1);
    assert_int_equal(allows(g, "media.internal.evil.test", "10.1.2.3"), 0);
    assert_int_equal(allows(g, "other.internal", "10.1.2.3"), 0);
    /* IP literals name their address whatever the URL's host */
    assert_int_equal(allows(g, "anything", "127.0.0.1"), 1);
    assert_int_equal(allows(g, "anything", "127.0.0.2"), 0);
    assert_int_equal(allows(g, "anything", "::1"), 1);
    assert_int_equal(allows(g, "anything", "fd00::7"), 1);
    assert_int_equal(allows(g, "anything", "fd00::8"), 0);
    /* a v4 literal does not open its v4-mapped twin, nor the other way */
    assert_int_equal(allows(g, "anything", "::ffff:127.0.0.1"), 0);
    /* public addresses need no entry */
    assert_int_equal(allows(g, "example.com", "1.1.1.1"), 1);
    /* without a port an entry means the scheme's default port, no other */
    assert_int_equal(allows_at(g, "http", "media.internal", "10.1.2.3", 80), 1);
    assert_int_equal(allows_at(g, "http", "media.internal", "10.1.2.3", 443), 0);
    assert_int_equal(allows_at(g, "https", "media.internal", "10.1.2.3", 80), 0);
    assert_int_equal(allows_at(g, "http", "anything", "127.0.0.1", 6379), 0);
    assert_int_equal(allows_at(g, "http", "anything", "::1", 5432), 0);
    /* no scheme (or another one): no default port to match */
    assert_int_equal(allows_at(g, NULL, "media.internal", "10.1.2.3", 443), 0);
    assert_int_equal(allows_at(g, "ftp", "media.internal", "10.1.2.3", 21), 0);
    netguard_free(g);
}

static void test_allows_extra_urls(void **state)
{
    static const char *const extra[] = {
        "http://media-proxy.lan:8080/path?token=secret", "", "http://[fd00::1]:23373", "not a url",
        NULL,
    };
    struct netguard *g = guard(NULL, extra);

    (void)state;
    assert_int_equal(allows_at(g, "http", "media-proxy.lan", "192.168.1.20", 8080), 1);
    assert_int_equal(allows_at(g, "http", "other.lan", "192.168.1.20", 8080), 0);
    /* curl gives the host of an IPv6 URL in brackets: it must still match */
    assert_int_equal(allows_at(g, "http", "[fd00::1]", "fd00::1", 23373), 1);
    assert_int_equal(allows_at(g, "http", "x", "fd00::1", 23373), 1);
    assert_int_equal(allows_at(g, "http", "x", "fd00::2", 23373), 0);
    /* a trusted URL trusts its scheme + host + port, nothing else */
    assert_int_equal(allows_at(g, "http", "media-proxy.lan", "192.168.1.20", 8081), 0);
    assert_int_equal(allows_at(g, "http", "media-proxy.lan", "192.168.1.20", 80), 0);
    assert_int_equal(allows_at(g, "https", "media-proxy.lan", "192.168.1.20", 8080), 0);
    assert_int_equal(allows_at(g, "http", "x", "fd00::1", 80), 0);
    netguard_free(g);
}

/* The issue: the default BEEPER_API_URL made localhost trusted on every
 * port, so Redis, PostgreSQL and internal-only services could be reached. */
static void test_trusted_url_is_one_port(void **state)
{
    static const char *const extra[] = { "", "http://localhost:23373", NULL };
    struct netguard *g = guard(NULL, extra);

    (void)state;
    assert_int_equal(allows_at(g, "http", "localhost", "127.0.0.1", 23373), 1);
    assert_int_equal(allows_at(g, "http", "localhost", "::1", 23373), 1);
    /* spelling of the name does not matter */
    assert_int_equal(allows_at(g, "http", "LocalHost", "127.0.0.1", 23373), 1);
    assert_int_equal(allows_at(g, "http", "LOCALHOST.", "127.0.0.1", 23373), 1);
    /* every other port of the same host is refused, also a redirect's */
    assert_int_equal(allows_at(g, "http", "localhost", "127.0.0.1", 6379), 0);
    assert_int_equal(allows_at(g, "http", "LocalHost", "127.0.0.1", 5432), 0);
    assert_int_equal(allows_at(g, "http", "localhost", "127.0.0.1", 80), 0);
    assert_int_equal(allows_at(g, "https", "localhost", "127.0.0.1", 23373), 0);
    /* the name is trusted, not the address */
    assert_int_equal(allows_at(g, "http", "127.0.0.1", "127.0.0.1", 23373), 0);
    netguard_free(g);
}

static void test_allow_entries_with_ports(void **state)
{
    struct netguard *g = guard("127.0.0.1:8080, [::1]:9000, Media.LAN:8443, https://cdn.lan, "
                               "http://x.lan:81/ignored/path, [fd00::5]",
                               NULL);

    (void)state;
    /* host:port: that port, http or https */
    assert_int_equal(allows_at(g, "http", "a", "127.0.0.1", 8080), 1);
    assert_int_equal(allows_at(g, "https", "a", "127.0.0.1", 8080), 1);
    assert_int_equal(allows_at(g, "http", "a", "127.0.0.1", 8081), 0);
    assert_int_equal(allows_at(g, "http", "a", "127.0.0.1", 80), 0);
    assert_int_equal(allows_at(g, "http", "a", "::1", 9000), 1);
    assert_int_equal(allows_at(g, "http", "a", "::1", 8080), 0);
    assert_int_equal(allows_at(g, "https", "media.lan", "10.0.0.9", 8443), 1);
    assert_int_equal(allows_at(g, "https", "media.lan", "10.0.0.9", 443), 0);
    /* a URL: its scheme only, its port (or the scheme's default) only */
    assert_int_equal(allows_at(g, "https", "cdn.lan", "10.0.0.10", 443), 1);
    assert_int_equal(allows_at(g, "http", "cdn.lan", "10.0.0.10", 443), 0);
    assert_int_equal(allows_at(g, "http", "cdn.lan", "10.0.0.10", 80), 0);
    assert_int_equal(allows_at(g, "http", "x.lan", "10.0.0.11", 81), 1);
    assert_int_equal(allows_at(g, "https", "x.lan", "10.0.0.11", 81), 0);
    /* [v6] without a port: the default ports */
    assert_int_equal(allows_at(g, "http", "a", "fd00::5", 80), 1);
    assert_int_equal(allows_at(g, "http", "a", "fd00::5", 8080), 0);
    netguard_free(g);
}

static void expect_bad_entry(const char *allow, const char *named)
{
    struct netguard *g = NULL;
    char err[256] = "";

    if (netguard_new(allow, NULL, &g, err, sizeof err) == 0) {
        netguard_free(g);
        fail_msg("netguard_new(%s) accepted it", allow);
    }
    assert_null(g);
    if (strstr(err, "IMGCACHE_ALLOW_HOSTS") == NULL || strstr(err, named) == NULL)
        fail_msg("netguard_new(%s): message '%s' does not name '%s'", allow, err, named);
}

static void test_bad_entries(void **state)
{
    (void)state;
    expect_bad_entry("ok.lan,host:", "'host:'");
    expect_bad_entry("host:0", "'host:0'");
    expect_bad_entry("host:65536", "'host:65536'");
    expect_bad_entry("host:8o", "'host:8o'");
    expect_bad_entry("host:-1", "'host:-1'");
    expect_bad_entry("[::1", "'[::1'");
    expect_bad_entry("[::1]x", "'[::1]x'");
    expect_bad_entry("[::1]:", "'[::1]:'");
    expect_bad_entry("a/b", "'a/b'");
    expect_bad_entry("user@host", "'user@host'");
    expect_bad_entry("ftp://files.lan", "'ftp://files.lan'");
    expect_bad_entry(":8080", "':8080'");
}

static void expect_origin(const char *url, const char *key)
{
    struct netguard_origin o;
    char err[128] = "", got[NETGUARD_HOST_MAX + 32];

    if (netguard_origin_of(url, &o, err, sizeof err) != 0)
        fail_msg("netguard_origin_of(%s): %s", url, err);
    netguard_origin_key(&o, got, sizeof got);
    if (strcmp(got, key) != 0)
        fail_msg("netguard_origin_of(%s) = %s, expected %s", url, got, key);
}

static void test_origins(void **state)
{
    struct netguard_origin o;
    char err[128] = "";

    (void)state;
    expect_origin("http://localhost:23373/v1/x", "http://localhost:23373");
    expect_origin("HTTP://LocalHost.:80/x?y", "http://localhost:80");
    expect_origin("http://127.0.0.1/a.png", "http://127.0.0.1:80");
    expect_origin("https://cdn.example/a.png", "https://cdn.example:443");
    expect_origin("https://[::FFFF:7F00:1]:8443/", "https://[::ffff:127.0.0.1]:8443");
    expect_origin("http://[fd00:0::1]/", "http://[fd00::1]:80");
    /* one port, however it is written */
    expect_origin("http://127.0.0.1:080/", "http://127.0.0.1:80");
    assert_int_equal(netguard_origin_of("ftp://files.example/a.png", &o, err, sizeof err), -1);
    assert_int_equal(netguard_origin_of("not a url?token=s3cret", &o, err, sizeof err), -1);
    /* the URL may carry a token: the message never quotes it */
    assert_null(strstr(err, "s3cret"));
    assert_int_equal(netguard_origin_of(NULL, &o, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4_private_ranges),
        cmocka_unit_test(test_v4_special_ranges),
        cmocka_unit_test(test_v4_public),
        cmocka_unit_test(test_v6),
        cmocka_unit_test(test_v6_embedded_v4),
        cmocka_unit_test(test_other_families),
        cmocka_unit_test(test_allows_without_list),
        cmocka_unit_test(test_allows_names_and_literals),
        cmocka_unit_test(test_allows_extra_urls),
        cmocka_unit_test(test_trusted_url_is_one_port),
        cmocka_unit_test(test_allow_entries_with_ports),
        cmocka_unit_test(test_bad_entries),
        cmocka_unit_test(test_origins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
