/* libFuzzer: netguard_is_internal() and netguard_allows() on any address,
 * any allow list and any host name. No socket is opened, no name resolved.
 * Input: byte 0 picks the family (even: IPv4, odd: IPv6), bytes 1..16 are
 * the address (IPv4 uses the first 4), the rest is "allow list\nhost\nurl".
 * The address is taken on port 443 for an https URL.
 * Invariants: the IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d)
 * forms of an IPv4 address are classified like the address itself; a public
 * address is allowed by every guard; without a guard only public addresses
 * are; an allow list naming the address (or the host) allows it on the
 * scheme's default port and not on another; origins of URLs are stable
 * (the key of a key's origin is the key).
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *   tests/fuzz/fuzz_netguard.c common/netguard.c common/errmsg.c -lcurl -o build/fuzz_netguard */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "netguard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An exact-size NUL-terminated copy of the next line of [*p, end). */
static char *next_line(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t len = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
    char *s = malloc(len + 1);

    if (s == NULL)
        abort();
    memcpy(s, *p, len);
    s[len] = '\0';
    *p += len + (nl ? 1 : 0);
    return s;
}

/* NULL when the allow list does not parse (a bad entry is an error). */
static struct netguard *guard_of(const char *allow, const char *url)
{
    const char *const extra[] = { url, NULL };
    struct netguard *g = NULL;
    char err[128];

    if (netguard_new(allow, extra, &g, err, sizeof err) != 0) {
        if (g != NULL)
            abort();
        return NULL;
    }
    if (g == NULL)
        abort();
    return g;
}

static int is_ip_literal(const char *host)
{
    char norm[NETGUARD_HOST_MAX];
    unsigned char buf[16];

    if (netguard_normalize_host(host, norm, sizeof norm, NULL, 0) != 0)
        return 0;
    return inet_pton(AF_INET, norm, buf) == 1 || inet_pton(AF_INET6, norm, buf) == 1;
}

static void set_port(struct sockaddr *sa, int port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

static void check_origin(const char *url)
{
    struct netguard_origin o, again;
    char key[NETGUARD_HOST_MAX + 32], key2[NETGUARD_HOST_MAX + 32], err[128];

    if (netguard_origin_of(url, &o, err, sizeof err) != 0)
        return;
    if (o.port < 1 || o.port > 65535)
        abort();
    netguard_origin_key(&o, key, sizeof key);
    if (netguard_origin_of(key, &again, err, sizeof err) != 0)
        abort();
    netguard_origin_key(&again, key2, sizeof key2);
    if (strcmp(key, key2) != 0)
        abort();
}

static void check_address(struct sockaddr *sa, const char *allow, const char *host,
                          const char *url)
{
    int internal = netguard_is_internal(sa);
    struct netguard *g = guard_of(allow, url);
    int allowed;
    char literal[INET6_ADDRSTRLEN + 2];
    const void *addr;
    struct netguard *own;

    set_port(sa, 443);
    allowed = netguard_allows(g, "https", host, sa);
    if (internal != 0 && internal != 1)
        abort();
    if (!internal && allowed != 1)
        abort();
    if (netguard_allows(NULL, "https", host, sa) != !internal)
        abort();
    netguard_free(g);

    /* the address's own literal in the list allows it, whatever the host */
    addr = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (inet_ntop(sa->sa_family, addr, literal, sizeof literal) == NULL)
        abort();
    own = guard_of(literal, NULL);
    if (own == NULL || netguard_allows(own, "https", host, sa) != 1)
        abort();
    /* ...on the scheme's default port only */
    set_port(sa, 8443);
    if (netguard_allows(own, "https", host, sa) != !internal)
        abort();
    set_port(sa, 443);
    netguard_free(own);

    /* a host name in the list (when the list accepts it as an entry
     * without a port) is allowed; an IP literal entry is about its address
     * instead, checked above */
    if (host[0] != '\0' && strpbrk(host, ":[], \t") == NULL && !is_ip_literal(host)) {
        own = guard_of(host, NULL);
        if (own != NULL && netguard_allows(own, "https", host, sa) != 1)
            abort();
        netguard_free(own);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p, *end = data + size;
    char *allow, *host, *url;
    struct sockaddr_storage ss;

    if (size < 17)
        return 0;
    p = data + 17;
    allow = next_line(&p, end);
    host = next_line(&p, end);
    url = next_line(&p, end);
    check_origin(url);

    memset(&ss, 0, sizeof ss);
    if ((data[0] & 1) == 0) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 mapped, nat64;
        int v4;

        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, data + 1, 4);
        check_address((struct sockaddr *)s4, allow, host, url);
        v4 = netguard_is_internal((const struct sockaddr *)s4);

        memset(&mapped, 0, sizeof mapped);
        mapped.sin6_family = AF_INET6;
        mapped.sin6_addr.s6_addr[10] = 0xff;
        mapped.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&mapped.sin6_addr.s6_addr[12], data + 1, 4);
        if (netguard_is_internal((const struct sockaddr *)&mapped) != v4)
            abort();
        check_address((struct sockaddr *)&mapped, allow, host, url);

        nat64 = mapped;
        memset(&nat64.sin6_addr, 0, 12);
        nat64.sin6_addr.s6_addr[1] = 0x64;
        nat64.sin6_addr.s6_addr[2] = 0xff;
        nat64.sin6_addr.s6_addr[3] = 0x9b;
        if (netguard_is_internal((const struct sockaddr *)&nat64) != v4)
            abort();
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, data + 1, 16);
        check_address((struct sockaddr *)s6, allow, host, url);
    }
    free(allow);
    free(host);
    free(url);
    return 0;
}
