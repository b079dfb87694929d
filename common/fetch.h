#ifndef IMGCACHE_FETCH_H
#define IMGCACHE_FETCH_H
/* Many HTTP downloads at once on one libcurl multi handle, driven by the
 * caller's event loop: fetch_start() queues a transfer, fetch_perform()
 * moves every transfer forward without blocking and reports finished ones,
 * fetch_wait() sleeps until a socket (or one extra fd) is ready.
 * Connections are kept alive and reused per host; HTTP/2 is multiplexed when
 * the server offers it. Bodies stream to the caller's on_data callback.
 *
 * Redirects are followed here, not by libcurl, so each hop's origin
 * (scheme + host + port) is known before its request. Every connection, on
 * every hop, is checked against the netguard (with that origin) before its
 * socket is opened: no packet reaches a refused address. The auth header
 * goes to the first URL's origin only.
 *
 * Proxy variables of the environment (http_proxy, HTTPS_PROXY, ALL_PROXY,
 * NO_PROXY) are ignored; only opts.proxy sets a proxy. Through a proxy,
 * every hop's host is resolved here and each address checked before the
 * request (a blocking look-up; the proxy resolves again, so it must enforce
 * its own egress rules against DNS rebinding).
 * Limits enforced here: connect timeout, total timeout, low-speed timeout
 * (a server that stalls), byte cap (Content-Length checked up front, and a
 * running count of the decoded bytes), at most max_redirects hops, and
 * http/https only (also for redirects).
 *
 * A final response that is not 2xx is classified by its status alone: the
 * transfer stops at the end of its headers (a 3xx that is not followed: at
 * its first body byte), so libcurl neither reads nor decodes its body, which
 * may be endless or a compression bomb. A status outside 100-599 is a
 * protocol error, never an HTTP error.
 *
 * Ownership: fetch_new() returns a fetcher freed by fetch_free(), which
 * aborts unfinished transfers without calling on_done. url and auth_header
 * are copied. `job` is the caller's, passed back untouched. */
#include <stddef.h>

#include "errmsg.h"
#include "netguard.h"

struct fetch_opts {
    long long connect_timeout_ms;
    long long timeout_ms;
    long long max_bytes;
    long max_redirects;
    long max_connections;   /* total open connections (0: no limit) */
    const char *user_agent; /* borrowed for the fetcher's life */
    const struct netguard *guard; /* borrowed; NULL: connect anywhere */
    const char *proxy;      /* borrowed; NULL or "": no proxy */
};

enum fetch_outcome {
    FETCH_OK = 0,          /* 2xx with a complete body */
    FETCH_HTTP_ERROR,      /* final status 3xx-5xx (http_status) */
    FETCH_TOO_LARGE,       /* over max_bytes */
    FETCH_ABORTED,         /* on_data returned -1 (caller's reason) */
    FETCH_TIMEOUT,         /* connect, total or low-speed timeout */
    FETCH_NETWORK,         /* connection refused/reset, DNS, TLS... */
    FETCH_TRUNCATED,       /* body shorter than Content-Length */
    FETCH_REDIRECTS,       /* more than max_redirects hops */
    FETCH_BAD_URL,         /* malformed URL or scheme not allowed */
    FETCH_REFUSED,         /* the address is internal and not allowed */
    FETCH_PROTOCOL,        /* not HTTP we accept: a status outside 100-599
                              (in http_status when libcurl could read it) */
};

/* Validators are kept whole or not at all: a cut one would never match.
 * Longer values are dropped (an HTTP-date is 29 characters). */
#define FETCH_ETAG_MAX 255
#define FETCH_LAST_MODIFIED_MAX 63
/* a longer Location header is not followed (the 3xx ends as an HTTP error) */
#define FETCH_LOCATION_MAX 4096

struct fetch_result {
    enum fetch_outcome outcome;
    long http_status;
    long long bytes;
    long long retry_after_s;  /* Retry-After of the final response, -1 if none */
    long redirects;           /* redirects followed: 0 when the first URL's origin answered */
    char etag[FETCH_ETAG_MAX + 1];                   /* "" when absent or too long */
    char last_modified[FETCH_LAST_MODIFIED_MAX + 1]; /* "" when absent or too long */
    char error[256];          /* curl's message; never contains the URL */
};

/* How a finished transfer counts, decided here once for every user. */
#define FETCH_CLASS_MAX 24
struct fetch_verdict {
    char error_class[FETCH_CLASS_MAX]; /* "timeout", "http_503", ...; "ok" for FETCH_OK,
                                          "aborted" for FETCH_ABORTED (on_data knows why) */
    int permanent;          /* retrying cannot help */
    long http_status;       /* the status to record with the failure; 0 when the
                               failure is not the server's answer */
    int sent;               /* the request went out: the outcome says something of
                               the origin's health (a refused address or a bad URL
                               was never sent, and must not open an origin's circuit) */
    int origin_failing;     /* sent, and the origin (or the way to it) is failing:
                               a timeout, a network error, a cut body, 408/429/5xx */
};

/* The verdict on a finished transfer. */
void fetch_judge(const struct fetch_result *r, struct fetch_verdict *v);
/* 408, 429 and 5xx may pass on a later try; any other status will not. */
int fetch_status_retryable(long status);

struct fetch_callbacks {
    /* Body bytes in order; return -1 to abort the transfer (FETCH_ABORTED). */
    int (*on_data)(void *job, const void *data, size_t len);
    /* Called once per transfer from fetch_perform(); result is valid during
     * the call only. */
    void (*on_done)(void *job, const struct fetch_result *result);
};

struct fetcher;

int fetch_new(const struct fetch_opts *opts, const struct fetch_callbacks *cb,
              struct fetcher **out, char *err, size_t errlen) MUST_CHECK;
void fetch_free(struct fetcher *f);

int fetch_start(struct fetcher *f, const char *url, const char *auth_header, void *job,
                char *err, size_t errlen) MUST_CHECK;
/* A revalidation: the validators stored with a cached copy, sent as
 * If-None-Match and If-Modified-Since (NULL or "": not sent). A 304 then
 * ends as FETCH_HTTP_ERROR with http_status 304, its body unread; the
 * caller, who asked, knows it means "not modified". Borrowed for the call. */
struct fetch_conditions {
    const char *etag;
    const char *last_modified;
};
/* fetch_start() with conditions (cond may be NULL: none). */
int fetch_start_if(struct fetcher *f, const char *url, const char *auth_header,
                   const struct fetch_conditions *cond, void *job, char *err, size_t errlen) MUST_CHECK;
/* Drives transfers; calls on_data/on_done. */
void fetch_perform(struct fetcher *f);
/* Waits at most timeout_ms for network activity or extra_fd (-1: none)
 * becoming readable. */
void fetch_wait(struct fetcher *f, int extra_fd, int timeout_ms);
/* Aborts the transfer of `job` (no on_done). */
void fetch_cancel(struct fetcher *f, void *job);

#endif
