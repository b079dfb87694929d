#include "fetch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errmsg.h"

struct transfer {
    struct fetcher *f;
    CURL *easy;
    struct curl_slist *headers;      /* for the first URL's origin: auth and conditions */
    struct curl_slist *cond_headers; /* for any other origin: the conditions alone */
    void *job;
    char *url;          /* this hop's URL: each redirect replaces it */
    struct netguard_origin origin;       /* of url */
    struct netguard_origin first_origin; /* the only origin that gets the auth header */
    long hops;          /* redirects followed */
    int in_multi;
    int aborted;        /* on_data said stop */
    int too_large;
    int decided;        /* res.outcome and res.error are set (refused, bad redirect...) */
    int refused_socket; /* on_open_socket refused an address: refusal says why */
    char refusal[160];
    int done_early;     /* decided without (more) network: reported by fetch_perform */
    int status_stop;    /* the final status said stop: its body is not wanted */
    char *location;     /* this hop's Location header (malloc'd), as sent */
    struct fetch_result res;
    char errbuf[CURL_ERROR_SIZE];
    struct transfer *next, *prev;
};

struct fetcher {
    CURLM *multi;
    struct fetch_opts opts;
    struct fetch_callbacks cb;
    struct transfer *active; /* doubly linked, for cancel and free */
    int n_active;
    int n_early;             /* of them, done_early */
};

int fetch_status_retryable(long status)
{
    return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

void fetch_judge(const struct fetch_result *r, struct fetch_verdict *v)
{
    static const char *const names[] = {
        [FETCH_OK] = "ok", [FETCH_HTTP_ERROR] = "http", [FETCH_TOO_LARGE] = "too_large",
        [FETCH_ABORTED] = "aborted", [FETCH_TIMEOUT] = "timeout", [FETCH_NETWORK] = "network",
        [FETCH_TRUNCATED] = "truncated", [FETCH_REDIRECTS] = "redirects", [FETCH_BAD_URL] = "bad_url",
        [FETCH_REFUSED] = "refused_address", [FETCH_PROTOCOL] = "protocol",
    };
    enum fetch_outcome o = r->outcome;

    memset(v, 0, sizeof *v);
    if ((size_t)o >= sizeof names / sizeof names[0] || names[o] == NULL)
        o = FETCH_NETWORK;
    if (o == FETCH_HTTP_ERROR)
        snprintf(v->error_class, sizeof v->error_class, "http_%ld", r->http_status);
    else
        snprintf(v->error_class, sizeof v->error_class, "%s", names[o]);
    switch (o) {
    case FETCH_HTTP_ERROR:
        v->permanent = !fetch_status_retryable(r->http_status);
        break;
    case FETCH_TOO_LARGE:
    case FETCH_REDIRECTS:
    case FETCH_BAD_URL:
    case FETCH_REFUSED:
    case FETCH_PROTOCOL:
        v->permanent = 1;
        break;
    default:
        v->permanent = 0;
        break;
    }
    /* the server's status, where its answer is what failed */
    v->http_status = o == FETCH_BAD_URL || o == FETCH_REFUSED || o == FETCH_NETWORK || o == FETCH_ABORTED
                         ? 0 : r->http_status;
    v->sent = o != FETCH_REFUSED && o != FETCH_BAD_URL;
    v->origin_failing = o == FETCH_TIMEOUT || o == FETCH_NETWORK || o == FETCH_TRUNCATED ||
                        (o == FETCH_HTTP_ERROR && fetch_status_retryable(r->http_status));
}

int fetch_new(const struct fetch_opts *opts, const struct fetch_callbacks *cb,
              struct fetcher **out, char *err, size_t errlen)
{
    struct fetcher *f = calloc(1, sizeof *f);
    *out = NULL;
    if (f == NULL || (f->multi = curl_multi_init()) == NULL) {
        errmsg_set(err, errlen, "libcurl: cannot create a multi handle");
        free(f);
        return -1;
    }
    f->opts = *opts;
    f->cb = *cb;
    if (opts->max_connections > 0)
        curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, opts->max_connections);
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, opts->max_connections > 0 ? opts->max_connections : 64L);
    *out = f;
    return 0;
}

static void transfer_free(struct transfer *t)
{
    struct fetcher *f = t->f;
    if (t->prev)
        t->prev->next = t->next;
    else
        f->active = t->next;
    if (t->next)
        t->next->prev = t->prev;
    f->n_active--;
    if (t->done_early)
        f->n_early--;
    if (t->in_multi)
        curl_multi_remove_handle(f->multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    curl_slist_free_all(t->cond_headers);
    free(t->url);
    free(t->location);
    free(t);
}

void fetch_free(struct fetcher *f)
{
    if (f == NULL)
        return;
    while (f->active)
        transfer_free(f->active);
    curl_multi_cleanup(f->multi);
    free(f);
}

/* 1 for a status whose body may be an image. */
static int status_has_image(long status)
{
    return status >= 200 && status <= 299;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct transfer *t = userp;
    size_t len = size * nmemb;
    long status = 0;

    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (!status_has_image(status)) {
        /* on_header stops every status >= 300 before its body; a body
         * without a final status is not taken either */
        t->status_stop = 1;
        return 0;
    }
    /* decoded bytes, checked before each piece (libcurl decodes at most
     * CURL_MAX_WRITE_SIZE ahead of us): a 2xx gzip bomb stops at the cap */
    if (t->res.bytes + (long long)len > t->f->opts.max_bytes) {
        t->too_large = 1;
        return 0;
    }
    t->res.bytes += (long long)len;
    if (t->f->cb.on_data(t->job, data, len) != 0) {
        t->aborted = 1;
        return 0;
    }
    return len;
}

/* Copies one header value (trimmed) into out when its name matches; a value
 * that does not fit leaves out empty, as a cut value would mean something
 * else (a validator that never matches, a different Retry-After). */
static int header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    size_t i, j;

    if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
        return 0;
    for (i = nlen + 1; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
        ;
    for (j = len; j > i && (line[j - 1] == '\r' || line[j - 1] == '\n' || line[j - 1] == ' '); j--)
        ;
    if (j - i >= outlen) {
        out[0] = '\0';
        return 1;
    }
    memcpy(out, line + i, j - i);
    out[j - i] = '\0';
    return 1;
}

/* 1 when s is printable ASCII. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userp)
{
    struct transfer *t = userp;
    size_t len = size * nmemb;
    char tmp[32];

    /* a new status line: headers of an earlier (1xx) response are void */
    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        t->res.etag[0] = '\0';
        t->res.last_modified[0] = '\0';
        t->res.retry_after_s = -1;
        free(t->location);
        t->location = NULL;
        return len;
    }
    /* kept here: libcurl says where a redirect goes only once its body was
     * read to the end, and on_header stops it before */
    if (len > 9 && strncasecmp(line, "Location:", 9) == 0 && t->location == NULL) {
        char value[FETCH_LOCATION_MAX];
        if (header_value(line, len, "Location", value, sizeof value) && value[0] != '\0')
            t->location = strdup(value);
        return len;
    }
    if (line[0] == '\r' || line[0] == '\n') {
        /* the end of one response's headers; 1xx and 2xx go on */
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 300) {
            /* 3xx (fetch_perform follows it from its Location, read by
             * now), 4xx, 5xx, 600-999: the body is never used, and may be
             * endless or a compression bomb that libcurl would decode
             * inside curl_multi_perform(), where no timeout is checked.
             * Stop before its first byte and go by the status (the
             * connection is closed, not reused). */
            t->status_stop = 1;
            return 0;
        }
        return len;
    }
    /* stored as text in a JSON batch: a value with bytes outside printable
     * ASCII (maybe not UTF-8, which would fail its row) is not kept */
    if (header_value(line, len, "ETag", t->res.etag, sizeof t->res.etag) && !printable(t->res.etag))
        t->res.etag[0] = '\0';
    if (header_value(line, len, "Last-Modified", t->res.last_modified, sizeof t->res.last_modified) &&
        !printable(t->res.last_modified))
        t->res.last_modified[0] = '\0';
    if (header_value(line, len, "Retry-After", tmp, sizeof tmp)) {
        char *end;
        long long v = strtoll(tmp, &end, 10);
        /* an HTTP date is also allowed; we treat it as "unknown" */
        t->res.retry_after_s = (end != tmp && *end == '\0' && v >= 0) ? v : -1;
    }
    return len;
}

/* Sets the outcome now; classify() keeps it. */
__attribute__((format(printf, 3, 4)))
static void decide(struct transfer *t, enum fetch_outcome outcome, const char *fmt, ...)
{
    va_list ap;

    t->decided = 1;
    t->res.outcome = outcome;
    va_start(ap, fmt);
    vsnprintf(t->res.error, sizeof t->res.error, fmt, ap);
    va_end(ap);
}

/* The transfer ends without (more) network; fetch_perform() reports it. */
static void finish_early(struct transfer *t)
{
    t->done_early = 1;
    t->f->n_early++;
}

/* Says why sa is refused, in the same words for every port: whether
 * something listens there must not show. */
static void refusal_text(const struct transfer *t, const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    snprintf(out, outlen, "refused to connect to internal address %s port %d (not a trusted origin)", ip,
             t->origin.port);
}

/* Runs before curl opens each socket: the last moment before a packet.
 * Redirects are followed by fetch_perform(), so t->origin is the origin of
 * the URL this socket is for. */
static curl_socket_t on_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct transfer *t = userp;

    (void)purpose;
    if (!netguard_allows(t->f->opts.guard, t->origin.scheme, t->origin.host, &addr->addr)) {
        /* not decided yet: curl may go on to another address of the name
         * that is allowed (::1 refused, then 127.0.0.1 trusted) */
        t->refused_socket = 1;
        refusal_text(t, &addr->addr, t->refusal, sizeof t->refusal);
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

/* Through a proxy, curl opens sockets to the proxy only, so on_open_socket
 * would judge the proxy's address. The target's own addresses are checked
 * here instead, before anything is sent. The proxy resolves the name again
 * and may get another answer (DNS rebinding): it must enforce its own
 * egress rules. 0: every address is allowed. */
static int check_target_addresses(struct transfer *t)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int rc = -1, gai;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", t->origin.port);
    gai = getaddrinfo(t->origin.host, port, &hints, &res);
    if (gai != 0) {
        decide(t, FETCH_NETWORK, "cannot resolve the host: %s", gai_strerror(gai));
        goto out;
    }
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        /* the proxy chooses among them: every one must be allowed */
        if (!netguard_allows(t->f->opts.guard, t->origin.scheme, t->origin.host, a->ai_addr)) {
            char why[160];
            refusal_text(t, a->ai_addr, why, sizeof why);
            decide(t, FETCH_REFUSED, "%s", why);
            goto out;
        }
    }
    rc = 0;
out:
    if (res != NULL)
        freeaddrinfo(res);
    return rc;
}

static int same_origin(const struct netguard_origin *a, const struct netguard_origin *b)
{
    return a->port == b->port && strcmp(a->scheme, b->scheme) == 0 && strcmp(a->host, b->host) == 0;
}

/* Starts the request for t->url (the first, or a redirect's target). A URL
 * the transfer may not go to ends it early; -1 only when libcurl refuses
 * the handle. */
static int start_hop(struct transfer *t, char *err, size_t errlen)
{
    struct fetcher *f = t->f;
    char msg[128];

    if (netguard_origin_of(t->url, &t->origin, msg, sizeof msg) != 0) {
        decide(t, FETCH_BAD_URL, "%s URL: %s", t->hops ? "redirect" : "bad", msg);
        finish_early(t);
        return 0;
    }
    if (t->hops == 0)
        t->first_origin = t->origin;
    if (f->opts.proxy != NULL && f->opts.proxy[0] != '\0' && f->opts.guard != NULL &&
        check_target_addresses(t) != 0) {
        finish_early(t);
        return 0;
    }
    /* credentials are for the origin they were given for, not for wherever
     * it redirects (what curl does when it follows redirects itself) */
    if (curl_easy_setopt(t->easy, CURLOPT_URL, t->url) != CURLE_OK ||
        curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER,
                         same_origin(&t->origin, &t->first_origin) ? t->headers : t->cond_headers) != CURLE_OK) {
        errmsg_set(err, errlen, "libcurl: cannot set the URL of a hop");
        return -1;
    }
    if (curl_multi_add_handle(f->multi, t->easy) != CURLM_OK) {
        errmsg_set(err, errlen, "libcurl: cannot add a transfer");
        return -1;
    }
    t->in_multi = 1;
    return 0;
}

/* A server that sends headers and then stalls fails after this long (or
 * the total timeout, if shorter) below 1 byte/s. */
#define FETCH_LOW_SPEED_TIME_MAX_MS 10000

/* Every option of a new transfer; CURLE_OK or the first refusal. */
static CURLcode set_options(const struct fetcher *f, struct transfer *t)
{
    CURL *e = t->easy;
    long long low_speed_ms = f->opts.timeout_ms < FETCH_LOW_SPEED_TIME_MAX_MS ? f->opts.timeout_ms
                                                                              : FETCH_LOW_SPEED_TIME_MAX_MS;
    CURLcode c = CURLE_OK;

#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_PRIVATE, t);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    /* fetch_perform() follows redirects, so that each hop's origin is known
     * (and checked, through a proxy too) before its request */
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    /* "" also ignores http_proxy, HTTPS_PROXY, ALL_PROXY and NO_PROXY from
     * the environment: only IMGCACHE_HTTP_PROXY chooses a proxy */
    SET(CURLOPT_PROXY, f->opts.proxy ? f->opts.proxy : "");
    SET(CURLOPT_NOPROXY, "");
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)f->opts.connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)f->opts.timeout_ms);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, (long)((low_speed_ms + 999) / 1000));
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->opts.max_bytes);
    SET(CURLOPT_FAILONERROR, 0L);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_USERAGENT, f->opts.user_agent ? f->opts.user_agent : "imgcache");
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, t);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, t);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* through a proxy every socket goes to the proxy: the target is checked
     * by check_target_addresses() instead */
    if (f->opts.guard && (f->opts.proxy == NULL || f->opts.proxy[0] == '\0')) {
        SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
        SET(CURLOPT_OPENSOCKETDATA, t);
    }
#undef SET
    return c;
}

/* Appends "name: value" to *list; -1 when out of memory (*list is kept). */
static int append_header(struct curl_slist **list, const char *name, const char *value)
{
    char line[FETCH_ETAG_MAX + 32];
    struct curl_slist *grown;

    snprintf(line, sizeof line, "%s: %s", name, value);
    grown = curl_slist_append(*list, line);
    if (grown == NULL)
        return -1;
    *list = grown;
    return 0;
}

/* The request headers of t: auth for the first origin only, the
 * conditions for every hop (a redirect's target gave the validators as
 * well, when it served the stored copy). -1 when out of memory. */
static int build_headers(struct transfer *t, const char *auth_header, const struct fetch_conditions *cond)
{
    const char *names[] = { "If-None-Match", "If-Modified-Since" };
    const char *values[] = { cond ? cond->etag : NULL, cond ? cond->last_modified : NULL };

    if (auth_header && (t->headers = curl_slist_append(NULL, auth_header)) == NULL)
        return -1;
    for (size_t i = 0; i < 2; i++) {
        /* a stored validator that would not fit a header line is never sent */
        if (values[i] == NULL || values[i][0] == '\0' || strlen(values[i]) > FETCH_ETAG_MAX ||
            !printable(values[i]))
            continue;
        if (append_header(&t->headers, names[i], values[i]) != 0 ||
            append_header(&t->cond_headers, names[i], values[i]) != 0)
            return -1;
    }
    return 0;
}

int fetch_start(struct fetcher *f, const char *url, const char *auth_header, void *job,
                char *err, size_t errlen)
{
    return fetch_start_if(f, url, auth_header, NULL, job, err, errlen);
}

int fetch_start_if(struct fetcher *f, const char *url, const char *auth_header,
                   const struct fetch_conditions *cond, void *job, char *err, size_t errlen)
{
    struct transfer *t = calloc(1, sizeof *t);
    CURLcode code;
    CURL *e;

    if (t == NULL || (t->easy = curl_easy_init()) == NULL || (t->url = strdup(url)) == NULL) {
        errmsg_set(err, errlen, "libcurl: cannot create a transfer");
        if (t != NULL)
            curl_easy_cleanup(t->easy);
        free(t);
        return -1;
    }
    e = t->easy;
    t->f = f;
    t->job = job;
    t->res.retry_after_s = -1;
    if (build_headers(t, auth_header, cond) != 0) {
        errmsg_set(err, errlen, "out of memory");
        code = CURLE_OUT_OF_MEMORY;
    } else {
        code = set_options(f, t);
        if (code != CURLE_OK)
            errmsg_set(err, errlen, "libcurl: %s", curl_easy_strerror(code));
    }
    if (code != CURLE_OK) {
        curl_slist_free_all(t->headers);
        curl_slist_free_all(t->cond_headers);
        curl_easy_cleanup(e);
        free(t->url);
        free(t);
        return -1;
    }
    t->next = f->active;
    if (f->active)
        f->active->prev = t;
    f->active = t;
    f->n_active++;
    if (start_hop(t, err, errlen) != 0) {
        transfer_free(t);
        return -1;
    }
    return 0;
}

/* A final response that is not 2xx, by its status alone. */
static void classify_status(struct fetch_result *r, long status)
{
    if (status < 100 || status > 599) {
        /* no HTTP meaning, so nothing says a retry could help */
        r->outcome = FETCH_PROTOCOL;
        snprintf(r->error, sizeof r->error, "HTTP status %ld is outside 100-599", status);
        return;
    }
    r->outcome = FETCH_HTTP_ERROR;
    snprintf(r->error, sizeof r->error, "HTTP %ld", status);
}

/* 1 when the transfer's current URL is http(s): libcurl's "unsupported
 * protocol" then means the server's answer (a status outside 100-999 or
 * below 100, HTTP/0.9), not a scheme. */
static int on_http_url(CURL *easy)
{
    char *url = NULL;

    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url);
    return url != NULL && (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0);
}

static void classify(struct transfer *t, CURLcode code)
{
    struct fetch_result *r = &t->res;
    long status = 0;

    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    r->http_status = status;
    if (t->decided)
        return;
    /* no connection was made because the guard refused the address(es) */
    if (t->refused_socket && code == CURLE_COULDNT_CONNECT) {
        r->outcome = FETCH_REFUSED;
        snprintf(r->error, sizeof r->error, "%s", t->refusal);
        return;
    }
    if (t->status_stop) {
        /* CURLE_WRITE_ERROR, because on_header or on_write said stop */
        classify_status(r, status);
        return;
    }
    snprintf(r->error, sizeof r->error, "%s", t->errbuf[0] ? t->errbuf : curl_easy_strerror(code));
    if (t->too_large || code == CURLE_FILESIZE_EXCEEDED) {
        r->outcome = FETCH_TOO_LARGE;
    } else if (t->aborted) {
        r->outcome = FETCH_ABORTED;
    } else if (code == CURLE_OK) {
        if (status_has_image(status)) {
            r->outcome = FETCH_OK;
            r->error[0] = '\0';
        } else {
            classify_status(r, status);
        }
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        r->outcome = FETCH_TIMEOUT;
    } else if (code == CURLE_PARTIAL_FILE) {
        r->outcome = FETCH_TRUNCATED;
    } else if (code == CURLE_TOO_MANY_REDIRECTS) {
        r->outcome = FETCH_REDIRECTS;
    } else if (code == CURLE_UNSUPPORTED_PROTOCOL && on_http_url(t->easy)) {
        r->outcome = FETCH_PROTOCOL;
        r->http_status = 0; /* unreadable; libcurl still shows an earlier hop's */
    } else if (code == CURLE_URL_MALFORMAT || code == CURLE_UNSUPPORTED_PROTOCOL) {
        r->outcome = FETCH_BAD_URL;
    } else {
        r->outcome = FETCH_NETWORK;
    }
}

/* After a finished response: 1 when it was a redirect now being followed;
 * 0 when the transfer ends here (maybe with a decided outcome). */
static int follow_redirect(struct transfer *t)
{
    struct fetcher *f = t->f;
    long status = 0;
    char *next = NULL;
    char err[128];
    CURLU *u;

    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
        return 0;
    /* a 3xx without a Location (or with one over FETCH_LOCATION_MAX) ends
     * as an HTTP error */
    if (t->location == NULL)
        return 0;
    if (t->hops >= f->opts.max_redirects) {
        decide(t, FETCH_REDIRECTS, "more than %ld redirects", f->opts.max_redirects);
        return 0;
    }
    /* a relative Location is resolved against this hop's URL, as libcurl
     * does when it follows */
    u = curl_url();
    if (u == NULL || curl_url_set(u, CURLUPART_URL, t->url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_URL, t->location, CURLU_NON_SUPPORT_SCHEME | CURLU_URLENCODE) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &next, 0) != CURLUE_OK) {
        curl_url_cleanup(u);
        decide(t, FETCH_BAD_URL, "redirect URL: the Location header is not a URL");
        return 0;
    }
    curl_url_cleanup(u);
    curl_multi_remove_handle(f->multi, t->easy);
    t->in_multi = 0;
    free(t->url);
    t->url = strdup(next); /* ours, freed with free(): next is libcurl's */
    curl_free(next);
    free(t->location);
    t->location = NULL;
    if (t->url == NULL) {
        decide(t, FETCH_NETWORK, "out of memory");
        finish_early(t);
        return 1;
    }
    t->hops++;
    t->res.bytes = 0;
    t->refused_socket = 0;
    t->status_stop = 0;
    if (start_hop(t, err, sizeof err) != 0) {
        decide(t, FETCH_NETWORK, "%s", err);
        finish_early(t);
    }
    return 1;
}

/* Reports t to the caller and frees it. */
static void finish(struct transfer *t, CURLcode code)
{
    struct fetcher *f = t->f;
    struct fetch_result res;
    void *job;

    classify(t, code);
    /* copy out first: on_done may start new transfers */
    res = t->res;
    res.redirects = t->hops;
    job = t->job;
    transfer_free(t);
    f->cb.on_done(job, &res);
}

void fetch_perform(struct fetcher *f)
{
    CURLMsg *msg;
    int running = 0, left = 0;

    while (f->n_early > 0) {
        struct transfer *t = f->active;
        while (t != NULL && !t->done_early)
            t = t->next;
        if (t == NULL)
            break;
        finish(t, CURLE_OK);
    }
    curl_multi_perform(f->multi, &running);
    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        struct transfer *t = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        /* a redirect ends in CURLE_WRITE_ERROR: on_header stopped it */
        if ((msg->data.result == CURLE_OK || t->status_stop) && !t->aborted && !t->too_large &&
            follow_redirect(t))
            continue;
        finish(t, msg->data.result);
    }
}

void fetch_wait(struct fetcher *f, int extra_fd, int timeout_ms)
{
    struct curl_waitfd wfd = { .fd = extra_fd, .events = CURL_WAIT_POLLIN, .revents = 0 };
    int numfds = 0;

    if (f->n_early > 0)
        timeout_ms = 0; /* results are ready to report */
    curl_multi_poll(f->multi, extra_fd >= 0 ? &wfd : NULL, extra_fd >= 0 ? 1 : 0, timeout_ms, &numfds);
}

void fetch_cancel(struct fetcher *f, void *job)
{
    for (struct transfer *t = f->active; t; t = t->next) {
        if (t->job == job) {
            transfer_free(t);
            return;
        }
    }
}
