#include "netguard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errmsg.h"

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

/* ---------------------------------------------------------- origins -- */

static int default_port(const char *scheme)
{
    if (scheme == NULL)
        return 0;
    if (strcmp(scheme, "http") == 0)
        return 80;
    if (strcmp(scheme, "https") == 0)
        return 443;
    return 0;
}

int netguard_normalize_host(const char *host, char *out, size_t outlen, char *err, size_t errlen)
{
    size_t len = host ? strlen(host) : 0;
    char buf[NETGUARD_HOST_MAX];
    struct in6_addr a6;
    struct in_addr a4;

    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    /* "localhost." is the same name as "localhost" */
    while (len > 1 && host[len - 1] == '.')
        len--;
    if (len == 0 || len >= sizeof buf || len >= outlen) {
        errmsg_set(err, errlen, len == 0 ? "empty host name" : "host name is too long");
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)host[i]);
    buf[len] = '\0';
    /* one spelling per address, so that comparing text compares addresses */
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        if (inet_ntop(AF_INET6, &a6, out, (socklen_t)outlen) == NULL) {
            errmsg_set(err, errlen, "host name is too long");
            return -1;
        }
        return 0;
    }
    /* inet_aton() also reads the forms curl's URL parser turns into dotted
     * quads ("127.1", "0x7f.1", "2130706433"), so a name without its
     * trailing dot gets the same spelling as curl gives the URL */
    if (inet_aton(buf, &a4) != 0 && inet_ntop(AF_INET, &a4, out, (socklen_t)outlen) != NULL)
        return 0;
    memcpy(out, buf, len + 1);
    return 0;
}

int netguard_origin_of(const char *url, struct netguard_origin *out, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    char *end;
    long p;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (u == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    if (url == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        errmsg_set(err, errlen, "not an absolute URL with a host");
        goto out;
    }
    if (default_port(scheme) == 0) {
        errmsg_set(err, errlen, "scheme is not http or https");
        goto out;
    }
    p = strtol(port, &end, 10);
    if (*end != '\0' || p < 1 || p > 65535) {
        errmsg_set(err, errlen, "port is not 1-65535");
        goto out;
    }
    if (netguard_normalize_host(host, out->host, sizeof out->host, err, errlen) != 0)
        goto out;
    snprintf(out->scheme, sizeof out->scheme, "%s", scheme);
    out->port = (int)p;
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

void netguard_origin_key(const struct netguard_origin *o, char *out, size_t outlen)
{
    int v6 = strchr(o->host, ':') != NULL;
    snprintf(out, outlen, "%s://%s%s%s:%d", o->scheme, v6 ? "[" : "", o->host, v6 ? "]" : "", o->port);
}

/* ------------------------------------------------------- the allow list -- */

/* One trusted origin. An empty scheme stands for http and https; port 0
 * for the scheme's default. */
struct trusted {
    char scheme[8];
    char host[NETGUARD_HOST_MAX];
    int port;
    int family;                 /* AF_INET/AF_INET6 when host is an IP literal, else 0 */
    unsigned char addr[16];
};

struct netguard {
    struct trusted *list;
    size_t n;
};

static int add_trusted(struct netguard *g, const struct trusted *t, char *err, size_t errlen)
{
    struct trusted *grown = realloc(g->list, (g->n + 1) * sizeof *grown);
    if (grown == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    g->list = grown;
    g->list[g->n++] = *t;
    return 0;
}

/* Fills t's host and address from a host name or IP literal. */
static int set_host(struct trusted *t, const char *host, char *err, size_t errlen)
{
    if (netguard_normalize_host(host, t->host, sizeof t->host, err, errlen) != 0)
        return -1;
    if (inet_pton(AF_INET, t->host, t->addr) == 1)
        t->family = AF_INET;
    else if (inet_pton(AF_INET6, t->host, t->addr) == 1)
        t->family = AF_INET6;
    return 0;
}

/* `host`, `host:port`, `[v6]`, `[v6]:port`, bare v6, or a URL. */
static int parse_entry(const char *entry, struct trusted *t, char *err, size_t errlen)
{
    char host[NETGUARD_HOST_MAX];
    const char *port = NULL;
    const char *colon;
    char msg[200];
    size_t hlen;

    memset(t, 0, sizeof *t);
    if (strstr(entry, "://") != NULL) {
        struct netguard_origin o;
        if (netguard_origin_of(entry, &o, msg, sizeof msg) != 0)
            goto bad;
        snprintf(t->scheme, sizeof t->scheme, "%s", o.scheme);
        t->port = o.port;
        return set_host(t, o.host, err, errlen);
    }
    if (entry[0] == '[') {
        const char *close = strchr(entry, ']');
        if (close == NULL) {
            snprintf(msg, sizeof msg, "no ']' after the IPv6 address");
            goto bad;
        }
        hlen = (size_t)(close - entry) + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0') {
            snprintf(msg, sizeof msg, "only ':port' may follow ']'");
            goto bad;
        }
    } else {
        colon = strchr(entry, ':');
        /* two colons or more: an IPv6 address without brackets, no port */
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            hlen = (size_t)(colon - entry);
            port = colon + 1;
        } else {
            hlen = strlen(entry);
        }
    }
    if (hlen >= sizeof host) {
        snprintf(msg, sizeof msg, "host name is too long");
        goto bad;
    }
    memcpy(host, entry, hlen);
    host[hlen] = '\0';
    if (strpbrk(host, "/@?#% ") != NULL) {
        snprintf(msg, sizeof msg, "not a host name");
        goto bad;
    }
    if (port != NULL) {
        char *end;
        long p = strtol(port, &end, 10);
        if (port[0] < '0' || port[0] > '9' || *end != '\0' || p < 1 || p > 65535) {
            snprintf(msg, sizeof msg, "port is not 1-65535");
            goto bad;
        }
        t->port = (int)p;
    }
    if (set_host(t, host, msg, sizeof msg) != 0)
        goto bad;
    return 0;
bad:
    errmsg_set(err, errlen, "IMGCACHE_ALLOW_HOSTS (--allow-hosts) entry '%s': %s", entry, msg);
    return -1;
}

int netguard_new(const char *allow, const char *const *extra_urls, struct netguard **out,
                 char *err, size_t errlen)
{
    struct netguard *g = calloc(1, sizeof *g);
    char *entry = NULL;
    int rc = -1;

    *out = NULL;
    if (g == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (const char *p = allow ? allow : ""; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p;
        size_t n = len;
        struct trusted t;

        p += len + (comma ? 1 : 0);
        while (n > 0 && (*s == ' ' || *s == '\t'))
            s++, n--;
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n == 0)
            continue;
        free(entry);
        entry = strndup(s, n);
        if (entry == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        if (parse_entry(entry, &t, err, errlen) != 0 || add_trusted(g, &t, err, errlen) != 0)
            goto out;
    }
    for (size_t i = 0; extra_urls && extra_urls[i]; i++) {
        struct netguard_origin o;
        struct trusted t;
        char ignored[200];

        /* a URL that does not parse cannot be downloaded from either */
        if (extra_urls[i][0] == '\0' || netguard_origin_of(extra_urls[i], &o, ignored, sizeof ignored) != 0)
            continue;
        memset(&t, 0, sizeof t);
        snprintf(t.scheme, sizeof t.scheme, "%s", o.scheme);
        t.port = o.port;
        if (set_host(&t, o.host, err, errlen) != 0 || add_trusted(g, &t, err, errlen) != 0)
            goto out;
    }
    *out = g;
    g = NULL;
    rc = 0;
out:
    free(entry);
    netguard_free(g);
    return rc;
}

void netguard_free(struct netguard *g)
{
    if (g == NULL)
        return;
    free(g->list);
    free(g);
}

static int sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* Does trusted origin t cover a connection to sa for scheme + host? */
static int trusted_covers(const struct trusted *t, const char *scheme, const char *host,
                          const struct sockaddr *sa)
{
    int port = t->port ? t->port : default_port(scheme);

    if (scheme == NULL || default_port(scheme) == 0)
        return 0;
    if (t->scheme[0] != '\0' && strcmp(t->scheme, scheme) != 0)
        return 0;
    if (port != sockaddr_port(sa))
        return 0;
    if (t->family == AF_INET)
        return sa->sa_family == AF_INET &&
               memcmp(t->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4) == 0;
    if (t->family == AF_INET6)
        return sa->sa_family == AF_INET6 &&
               memcmp(t->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0;
    return host != NULL && strcmp(t->host, host) == 0;
}

int netguard_allows(const struct netguard *g, const char *scheme, const char *host,
                    const struct sockaddr *sa)
{
    char norm[NETGUARD_HOST_MAX];
    const char *h = NULL;

    if (!netguard_is_internal(sa))
        return 1;
    if (host != NULL && netguard_normalize_host(host, norm, sizeof norm, NULL, 0) == 0)
        h = norm;
    for (size_t i = 0; g && i < g->n; i++)
        if (trusted_covers(&g->list[i], scheme, h, sa))
            return 1;
    return 0;
}
