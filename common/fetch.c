#include "fetch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct transfer {
    struct fetcher *f;
    CURL *easy;
    struct curl_slist *headers;
    void *job;
    int aborted;        /* on_data said stop */
    int too_large;
    int refused;        /* the guard refused an address */
    int status_stop;    /* the final status said stop: its body is not wanted */
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
};

const char *fetch_outcome_name(enum fetch_outcome o)
{
    switch (o) {
    case FETCH_OK: return "ok";
    case FETCH_HTTP_ERROR: return "http_error";
    case FETCH_TOO_LARGE: return "too_large";
    case FETCH_ABORTED: return "aborted";
    case FETCH_TIMEOUT: return "timeout";
    case FETCH_NETWORK: return "network";
    case FETCH_TRUNCATED: return "truncated";
    case FETCH_REDIRECTS: return "redirects";
    case FETCH_BAD_URL: return "bad_url";
    case FETCH_REFUSED: return "refused_address";
    case FETCH_PROTOCOL: return "protocol";
    }
    return "unknown";
}

int fetch_new(const struct fetch_opts *opts, const struct fetch_callbacks *cb,
              struct fetcher **out, char *err, size_t errlen)
{
    struct fetcher *f = calloc(1, sizeof *f);
    *out = NULL;
    if (f == NULL || (f->multi = curl_multi_init()) == NULL) {
        snprintf(err, errlen, "libcurl: cannot create a multi handle");
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
    curl_multi_remove_handle(f->multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
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
        /* a 3xx that is not followed (on_header stopped the others): its
         * status says all, and returning 0 keeps libcurl from decoding
         * more of a body that may be a compression bomb */
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

    /* a new status line: headers of an earlier (redirect) response are void */
    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        t->res.etag[0] = '\0';
        t->res.last_modified[0] = '\0';
        t->res.retry_after_s = -1;
        return len;
    }
    if (line[0] == '\r' || line[0] == '\n') {
        /* the end of one response's headers; 1xx, 2xx and 3xx (a redirect
         * libcurl follows without decoding its body) go on */
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 400) {
            /* 4xx, 5xx, 600-999: the body is never used, and may be endless
             * or a compression bomb that libcurl would decode inside
             * curl_multi_perform(), where no timeout is checked. Stop before
             * its first byte and classify by the status (the connection is
             * closed, not reused). */
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

/* Runs before curl opens each socket: the last moment before a packet. */
static curl_socket_t on_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct transfer *t = userp;
    char *url = NULL, *host = NULL;
    CURLU *u;
    int allowed;

    (void)purpose;
    curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &url);
    u = curl_url();
    if (u && url && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK)
        curl_url_get(u, CURLUPART_HOST, &host, 0);
    allowed = netguard_allows(t->f->opts.guard, host, &addr->addr);
    curl_free(host);
    curl_url_cleanup(u);
    if (!allowed) {
        char ip[INET6_ADDRSTRLEN] = "?";
        if (addr->family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&addr->addr)->sin_addr, ip, sizeof ip);
        else if (addr->family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr->addr)->sin6_addr, ip, sizeof ip);
        t->refused = 1;
        snprintf(t->res.error, sizeof t->res.error,
                 "refused to connect to internal address %s (not in IMGCACHE_ALLOW_HOSTS)", ip);
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

int fetch_start(struct fetcher *f, const char *url, const char *auth_header, void *job,
                char *err, size_t errlen)
{
    struct transfer *t = calloc(1, sizeof *t);
    CURL *e;

    if (t == NULL || (t->easy = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "libcurl: cannot create a transfer");
        free(t);
        return -1;
    }
    e = t->easy;
    t->f = f;
    t->job = job;
    t->res.retry_after_s = -1;
    if (auth_header && (t->headers = curl_slist_append(NULL, auth_header)) == NULL) {
        snprintf(err, errlen, "out of memory");
        curl_easy_cleanup(e);
        free(t);
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, f->opts.max_redirects);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->opts.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)f->opts.timeout_ms);
    /* a server that sends headers and then stalls: fail after 10 s (or the
     * total timeout, if shorter) below 1 byte/s */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                     (long)(f->opts.timeout_ms < 10000 ? (f->opts.timeout_ms + 999) / 1000 : 10));
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->opts.max_bytes);
    curl_easy_setopt(e, CURLOPT_FAILONERROR, 0L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, f->opts.user_agent ? f->opts.user_agent : "imgcache");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (f->opts.guard) {
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
    }
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
        snprintf(err, errlen, "libcurl: cannot add a transfer");
        curl_slist_free_all(t->headers);
        curl_easy_cleanup(e);
        free(t);
        return -1;
    }
    t->next = f->active;
    if (f->active)
        f->active->prev = t;
    f->active = t;
    f->n_active++;
    return 0;
}

int fetch_active(const struct fetcher *f)
{
    return f->n_active;
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
    if (t->refused) {
        r->outcome = FETCH_REFUSED; /* the message was set by the guard */
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

void fetch_perform(struct fetcher *f)
{
    CURLMsg *msg;
    int running = 0, left = 0;

    curl_multi_perform(f->multi, &running);
    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        struct transfer *t = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        classify(t, msg->data.result);
        /* copy out first: on_done may start new transfers */
        struct fetch_result res = t->res;
        void *job = t->job;
        transfer_free(t);
        f->cb.on_done(job, &res);
    }
}

void fetch_wait(struct fetcher *f, int extra_fd, int timeout_ms)
{
    struct curl_waitfd wfd = { .fd = extra_fd, .events = CURL_WAIT_POLLIN, .revents = 0 };
    int numfds = 0;
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
