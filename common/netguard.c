#include "netguard.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct netguard {
    char **hosts;
    size_t n;
};

struct range4 {
    uint32_t net;
    int bits;
};

static const struct range4 internal4[] = {
    { 0x00000000, 8 },  /* 0/8 "this network" */
    { 0x0A000000, 8 },  /* 10/8 */
    { 0x64400000, 10 }, /* 100.64/10 shared (CGNAT) */
    { 0x7F000000, 8 },  /* 127/8 loopback */
    { 0xA9FE0000, 16 }, /* 169.254/16 link-local (cloud metadata) */
    { 0xAC100000, 12 }, /* 172.16/12 */
    { 0xC0000000, 24 }, /* 192.0.0/24 IETF protocol assignments */
    { 0xC0000200, 24 }, /* 192.0.2/24 TEST-NET-1 */
    { 0xC0A80000, 16 }, /* 192.168/16 */
    { 0xC6120000, 15 }, /* 198.18/15 benchmarking */
    { 0xC6336400, 24 }, /* 198.51.100/24 TEST-NET-2 */
    { 0xCB007100, 24 }, /* 203.0.113/24 TEST-NET-3 */
    { 0xE0000000, 4 },  /* 224/4 multicast */
    { 0xF0000000, 4 },  /* 240/4 reserved, broadcast */
};

static int internal_v4(uint32_t a)
{
    for (size_t i = 0; i < sizeof internal4 / sizeof internal4[0]; i++) {
        uint32_t mask = internal4[i].bits == 0 ? 0 : 0xFFFFFFFFu << (32 - internal4[i].bits);
        if ((a & mask) == internal4[i].net)
            return 1;
    }
    return 0;
}

static int internal_v6(const struct in6_addr *a)
{
    const uint8_t *b = a->s6_addr;
    static const uint8_t zero[16];

    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
        uint32_t v4 = ((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) | ((uint32_t)b[14] << 8) | b[15];
        /* ::/128 and ::1 are also "v4-compatible" by shape */
        if (IN6_IS_ADDR_V4COMPAT(a) && (memcmp(b, zero, 16) == 0 || IN6_IS_ADDR_LOOPBACK(a)))
            return 1;
        return internal_v4(v4);
    }
    if (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a))
        return 1;
    if ((b[0] & 0xFE) == 0xFC)                  /* fc00::/7 unique local */
        return 1;
    if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80)  /* fe80::/10 link-local */
        return 1;
    if (b[0] == 0xFE && (b[1] & 0xC0) == 0xC0)  /* fec0::/10 site-local (deprecated) */
        return 1;
    if (b[0] == 0xFF)                           /* ff00::/8 multicast */
        return 1;
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B) { /* 64:ff9b::/96 NAT64 */
        uint32_t v4 = ((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) | ((uint32_t)b[14] << 8) | b[15];
        return internal_v4(v4);
    }
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8) /* 2001:db8::/32 docs */
        return 1;
    if (b[0] == 0x20 && b[1] == 0x02) {         /* 2002::/16 6to4 embeds a v4 */
        uint32_t v4 = ((uint32_t)b[2] << 24) | ((uint32_t)b[3] << 16) | ((uint32_t)b[4] << 8) | b[5];
        return internal_v4(v4);
    }
    return 0;
}

int netguard_is_internal(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 1;
    if (sa->sa_family == AF_INET)
        return internal_v4(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6)
        return internal_v6(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 1; /* unix sockets and anything else */
}

static int add_host(struct netguard *g, const char *host, size_t len)
{
    char **grown;
    while (len > 0 && (*host == ' ' || *host == '\t'))
        host++, len--;
    while (len > 0 && (host[len - 1] == ' ' || host[len - 1] == '\t'))
        len--;
    if (len == 0)
        return 0;
    /* bare IPv6 in brackets: keep what curl's URL API would give */
    grown = realloc(g->hosts, (g->n + 1) * sizeof *grown);
    if (grown == NULL)
        return -1;
    g->hosts = grown;
    g->hosts[g->n] = strndup(host, len);
    if (g->hosts[g->n] == NULL)
        return -1;
    g->n++;
    return 0;
}

int netguard_new(const char *allow, const char *const *extra_urls, struct netguard **out,
                 char *err, size_t errlen)
{
    struct netguard *g = calloc(1, sizeof *g);
    int rc = -1;

    *out = NULL;
    if (g == NULL)
        goto oom;
    for (const char *p = allow ? allow : ""; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (add_host(g, p, len) != 0)
            goto oom;
        p += len + (comma ? 1 : 0);
    }
    for (size_t i = 0; extra_urls && extra_urls[i]; i++) {
        CURLU *u;
        char *host = NULL;
        if (extra_urls[i][0] == '\0')
            continue;
        u = curl_url();
        if (u && curl_url_set(u, CURLUPART_URL, extra_urls[i], 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
            rc = add_host(g, host, strlen(host));
            curl_free(host);
        } else {
            rc = 0;
        }
        curl_url_cleanup(u);
        if (rc != 0)
            goto oom;
    }
    *out = g;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    netguard_free(g);
    return -1;
}

void netguard_free(struct netguard *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->n; i++)
        free(g->hosts[i]);
    free(g->hosts);
    free(g);
}

/* Does allow-list entry `entry` name address `sa`? (IP literal entries) */
static int entry_is_address(const char *entry, const struct sockaddr *sa)
{
    char buf[64];
    const char *e = entry;
    size_t len = strlen(entry);

    if (len >= 2 && entry[0] == '[' && entry[len - 1] == ']' && len - 2 < sizeof buf) {
        memcpy(buf, entry + 1, len - 2);
        buf[len - 2] = '\0';
        e = buf;
    }
    if (sa->sa_family == AF_INET) {
        struct in_addr a;
        return inet_pton(AF_INET, e, &a) == 1 &&
               a.s_addr == ((const struct sockaddr_in *)sa)->sin_addr.s_addr;
    }
    if (sa->sa_family == AF_INET6) {
        struct in6_addr a;
        return inet_pton(AF_INET6, e, &a) == 1 &&
               memcmp(&a, &((const struct sockaddr_in6 *)sa)->sin6_addr, sizeof a) == 0;
    }
    return 0;
}

int netguard_allows(const struct netguard *g, const char *host, const struct sockaddr *sa)
{
    if (!netguard_is_internal(sa))
        return 1;
    for (size_t i = 0; g && i < g->n; i++) {
        if (host && strcasecmp(g->hosts[i], host) == 0)
            return 1;
        if (entry_is_address(g->hosts[i], sa))
            return 1;
    }
    return 0;
}
