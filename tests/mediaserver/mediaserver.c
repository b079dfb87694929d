/* imgcache-mediaserver: a test HTTP server that serves a folder, counts
 * requests per path and injects faults on demand. For tests and benchmarks
 * only; never expose it.
 *
 * One thread per connection (libmicrohttpd), so a slow, stalled or delayed
 * answer holds only its own connection. Counters and faults live in one
 * table guarded by one mutex. Control endpoints under /__ are neither
 * counted, delayed nor authenticated.
 *
 * Ownership: every response is built for one request and handed to MHD;
 * a body reader's context is freed by MHD through body_free(); the request
 * context made in on_uri() is freed in on_completed(). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <uthash.h>
#include <zlib.h>

#include "config.h"
#include "log.h"

#define PROGRAM "imgcache-mediaserver"
#define BODY_BLOCK (64 * 1024)
#define STALL_DEFAULT_LENGTH (1024 * 1024)
#define BOMB_DEFAULT_SIZE (16LL << 30)
#define BOMB_MAX_SIZE (1LL << 40)
#define BOMB_UNIT (1024 * 1024)

static const char usage[] =
    "usage: " PROGRAM " --root DIR [options]\n"
    "\n"
    "A test HTTP server FOR TESTS AND BENCHMARKS ONLY: it serves the files of DIR,\n"
    "counts requests per path and injects faults. It prints MEDIA_URL=http://HOST:PORT\n"
    "as its first line on stdout and serves until SIGTERM or SIGINT.\n"
    "\n"
    "Options:\n"
    "  --root DIR            folder to serve (required)\n"
    "  --port N              TCP port, 0 for any free one (default 0)\n"
    "  --bind ADDR           address to listen on (default 127.0.0.1)\n"
    "  --token T             require ?token=T on every file request (else 403)\n"
    "  --bearer T            require 'Authorization: Bearer T' (else 401)\n"
    "  --latency-ms N        add N ms before every file request is answered\n"
    "  --max-connections N   concurrent connections, one thread each (default 1024)\n"
    "  -h, --help            this text\n"
    "Environment: IMGCACHE_LOG_LEVEL=debug logs every request on stderr.\n"
    "\n"
    "Files: GET /P serves DIR/P ('..' refused). With a query string Q it first\n"
    "tries DIR/P@Q (Q exactly as sent), then DIR/P@Q.json, DIR/P, DIR/P.json, so a\n"
    "fake HTTP API can be laid out as files. *.json files, and files without a known\n"
    "extension that start with { or [, are served as application/json.\n"
    "\n"
    "Control (never counted, no token needed):\n"
    "  GET  /__stats                  {\"total\":N,\"paths\":{\"/a.jpg\":3,...},\n"
    "                                  \"conditional\":N,\"not_modified\":N,\"full\":N}\n"
    "                                 conditional: file requests with If-None-Match or\n"
    "                                 If-Modified-Since; not_modified: answered 304;\n"
    "                                 full: answered 200 with the file\n"
    "  GET  /__count?path=/a.jpg      requests of one path, a plain number\n"
    "  POST /__reset                  clear counters and faults\n"
    "  POST /__fault?path=/a.jpg&mode=MODE[&count=K][&...]\n"
    "       count=K: the next K requests of that exact path get the fault, then\n"
    "       normal service (default: every request); count=0 or mode=none clears.\n"
    "       status    reply status=S (100..999, default 503); retry_after=N adds\n"
    "                 Retry-After; body=TEXT replaces the body (JSON when it\n"
    "                 starts with {)\n"
    "       stall     headers with Content-Length length=N (default: the file's size,\n"
    "                 1 MiB without a file), then no body until the client leaves\n"
    "       truncate  the real Content-Length, then close after half the body\n"
    "       redirect  302 (or status=301/303/307/308) to location=URL\n"
    "       slow      wait ms=N (default 1000) before answering normally\n"
    "       chunked   the file with chunked encoding, no Content-Length\n"
    "       bomb      status=S (default 200), Content-Encoding: gzip, gzip and a body\n"
    "                 of some 40 KB that decodes to size=BYTES zeros (default 16GiB)\n"
    "       endless   status=S (default 200), a chunked body that never ends\n"
    "       validators  the file, with ETag etag=E and Last-Modified last_modified=D\n"
    "\n"
    "Validators: every file is served with ETag \"<size>-<mtime ns>\" (hex) and\n"
    "Last-Modified (its mtime). If-None-Match holding that ETag, or else an\n"
    "If-Modified-Since no older than the mtime, is answered 304 without a body.\n"
    "Rewriting or touching a file changes its validators.";

enum fault_mode {
    FAULT_NONE = 0,
    FAULT_STATUS,
    FAULT_STALL,
    FAULT_TRUNCATE,
    FAULT_REDIRECT,
    FAULT_SLOW,
    FAULT_CHUNKED,
    FAULT_BOMB,
    FAULT_ENDLESS,
    FAULT_VALIDATORS,
};

static const char *const fault_names[] = {
    "none", "status", "stall", "truncate", "redirect", "slow", "chunked", "bomb", "endless",
    "validators",
};

struct fault {
    enum fault_mode mode;
    long remaining;             /* -1: forever */
    int status;
    long retry_after;           /* -1: no header */
    long ms;
    long long length;           /* stall: -1 = file size or default */
    long long size;             /* bomb: decoded bytes */
    char *location;
    char *etag;                 /* validators: NULL keeps the real one */
    char *last_modified;
    char *body;                 /* status: the reply body, NULL for "injected fault" */
};

struct path_entry {
    char *path;                 /* key, owned */
    unsigned long count;
    struct fault fault;         /* mode FAULT_NONE: no fault */
    UT_hash_handle hh;
};

struct server {
    int root_fd;
    const char *root;           /* borrowed from argv */
    const char *token;          /* borrowed from argv */
    const char *bearer;         /* borrowed from argv */
    long latency_ms;
    pthread_mutex_t lock;       /* guards paths and total */
    struct path_entry *paths;
    unsigned long total;
    unsigned long conditional;  /* requests with If-None-Match / If-Modified-Since */
    unsigned long not_modified; /* of any request, answered 304 */
    unsigned long full;         /* answered 200 with a file */
};

/* Per request; made by on_uri(), freed by on_completed(). */
struct request {
    char *raw_uri;
    int called;
};

enum body_kind { BODY_CHUNKED, BODY_TRUNCATE, BODY_STALL, BODY_ENDLESS };

/* Per response made from a callback; freed by body_free(). */
struct body {
    enum body_kind kind;
    int fd;                     /* -1 for stall */
    uint64_t limit;             /* truncate: bytes sent before the close */
    struct MHD_Connection *conn;
};

static volatile sig_atomic_t stop_requested;
static atomic_int shutting_down;    /* seen by connection threads */
static struct server srv;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ---- small helpers ---- */

struct strbuf {
    char *buf;
    size_t len, cap;
    int failed;
};

static void sb_add(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->failed)
        return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 256;
        char *grown;
        while (sb->len + n + 1 > cap)
            cap *= 2;
        grown = realloc(sb->buf, cap);
        if (grown == NULL) {
            sb->failed = 1;
            return;
        }
        sb->buf = grown;
        sb->cap = cap;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

static void sb_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        sb->failed = 1;
        return;
    }
    sb_add(sb, tmp, (size_t)n);
}

/* A JSON string; bytes >= 0x80 pass through as they are. */
static void sb_json_string(struct strbuf *sb, const char *s)
{
    sb_add(sb, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            sb_add(sb, esc, 2);
        } else if (c < 0x20) {
            sb_printf(sb, "\\u%04x", c);
        } else {
            sb_add(sb, s, 1);
        }
    }
    sb_add(sb, "\"", 1);
}

/* Sleeps ms in short steps; returns early when the server shuts down. */
static void sleep_ms(long ms)
{
    while (ms > 0 && !atomic_load(&shutting_down)) {
        long step = ms < 50 ? ms : 50;
        struct timespec ts = { 0, step * 1000000L };
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static const char *content_type_for(const char *name)
{
    static const struct { const char *ext; const char *type; } types[] = {
        { "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" }, { "png", "image/png" },
        { "gif", "image/gif" }, { "webp", "image/webp" }, { "avif", "image/avif" },
        { "heic", "image/heic" }, { "bmp", "image/bmp" }, { "ico", "image/x-icon" },
        { "svg", "image/svg+xml" }, { "tif", "image/tiff" }, { "tiff", "image/tiff" },
        { "json", "application/json" }, { "html", "text/html; charset=utf-8" },
        { "txt", "text/plain; charset=utf-8" }, { "css", "text/css" },
        { "js", "text/javascript" }, { "mp4", "video/mp4" }, { "pdf", "application/pdf" },
    };
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash : name, '.');

    if (dot == NULL)
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* 1 when rel has no "." or ".." segment and no backslash trickery. */
static int rel_path_safe(const char *rel)
{
    const char *p = rel;

    while (*p) {
        size_t seg = strcspn(p, "/");
        if ((seg == 2 && p[0] == '.' && p[1] == '.') || (seg == 1 && p[0] == '.'))
            return 0;
        p += seg;
        if (*p == '/')
            p++;
    }
    return 1;
}

/* ---- counters and faults (all under srv.lock) ---- */

static struct path_entry *entry_get_locked(const char *path)
{
    struct path_entry *e = NULL;

    HASH_FIND_STR(srv.paths, path, e);
    if (e != NULL)
        return e;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->path = strdup(path);
    if (e->path == NULL) {
        free(e);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, srv.paths, e->path, strlen(e->path), e);
    return e;
}

static void fault_clear(struct fault *f)
{
    free(f->location);
    free(f->etag);
    free(f->last_modified);
    free(f->body);
    memset(f, 0, sizeof *f);
}

/* Counts one request of path and takes one use of its fault, if any: *out
 * gets a copy (strings duplicated; caller frees it with fault_clear). */
static void count_and_take_fault(const char *path, struct fault *out)
{
    struct path_entry *e;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&srv.lock);
    srv.total++;
    e = entry_get_locked(path);
    if (e != NULL) {
        e->count++;
        if (e->fault.mode != FAULT_NONE) {
            *out = e->fault;
            out->location = e->fault.location ? strdup(e->fault.location) : NULL;
            out->etag = e->fault.etag ? strdup(e->fault.etag) : NULL;
            out->last_modified = e->fault.last_modified ? strdup(e->fault.last_modified) : NULL;
            out->body = e->fault.body ? strdup(e->fault.body) : NULL;
            if (e->fault.remaining > 0 && --e->fault.remaining == 0)
                fault_clear(&e->fault);
        }
    }
    pthread_mutex_unlock(&srv.lock);
}

static void table_reset(void)
{
    struct path_entry *e, *tmp;

    pthread_mutex_lock(&srv.lock);
    HASH_ITER(hh, srv.paths, e, tmp) {
        HASH_DEL(srv.paths, e);
        fault_clear(&e->fault);
        free(e->path);
        free(e);
    }
    srv.total = 0;
    srv.conditional = srv.not_modified = srv.full = 0;
    pthread_mutex_unlock(&srv.lock);
}

/* Adds one to a counter of srv (under its lock). */
static void count_answer(unsigned long *counter)
{
    pthread_mutex_lock(&srv.lock);
    (*counter)++;
    pthread_mutex_unlock(&srv.lock);
}

/* ---- responses ---- */

static enum MHD_Result queue_text(struct MHD_Connection *conn, unsigned status,
                                  const char *type, const char *text,
                                  const char *hname, const char *hvalue)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (hname != NULL && hvalue != NULL)
        MHD_add_response_header(resp, hname, hvalue);
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result queue_plain(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return queue_text(conn, status, "text/plain; charset=utf-8", text, NULL, NULL);
}

/* 1 when the client closed its side (or the socket is gone). */
static int client_gone(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci;
    struct pollfd pfd;
    char c;

    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL)
        return 1;
    pfd.fd = ci->connect_fd;
    pfd.events = POLLIN | POLLRDHUP;
    pfd.revents = 0;
    if (poll(&pfd, 1, 100) <= 0)
        return 0;
    if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
        return 1;
    /* readable without hang-up: pipelined bytes, or EOF on some kernels */
    return recv(pfd.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static ssize_t body_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct body *b = cls;
    ssize_t n;

    if (atomic_load(&shutting_down))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    switch (b->kind) {
    case BODY_STALL:
        /* hold the connection, sending nothing, until the client leaves */
        while (!atomic_load(&shutting_down))
            if (client_gone(b->conn))
                break;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    case BODY_TRUNCATE:
        if (pos >= b->limit)
            return MHD_CONTENT_READER_END_WITH_ERROR;   /* MHD closes the connection */
        if (max > b->limit - pos)
            max = (size_t)(b->limit - pos);
        break;
    case BODY_CHUNKED:
        break;
    case BODY_ENDLESS:
        memset(buf, 'x', max);
        return (ssize_t)max;
    }
    n = pread(b->fd, buf, max, (off_t)pos);
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (n == 0)
        return b->kind == BODY_CHUNKED ? MHD_CONTENT_READER_END_OF_STREAM
                                       : MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

static void body_free(void *cls)
{
    struct body *b = cls;

    if (b->fd >= 0)
        close(b->fd);
    free(b);
}

/* Opens the first candidate file of url (and raw query) that is a regular
 * file. Returns the fd (caller closes) and sets *json when the .json
 * variant was taken, or -1 when none exists. */
static int open_candidate(const char *url, const char *query, struct stat *st, int *json)
{
    const char *rel = url;
    char name[PATH_MAX];
    int fd = -1;

    while (*rel == '/')
        rel++;
    if (*rel == '\0')
        return -1;
    for (int i = 0; i < 4; i++) {
        int with_query = i < 2;
        int n;

        if (with_query && (query == NULL || *query == '\0'))
            continue;
        *json = (i % 2) == 1;
        n = snprintf(name, sizeof name, "%s%s%s%s", rel, with_query ? "@" : "",
                     with_query ? query : "", *json ? ".json" : "");
        if (n < 0 || (size_t)n >= sizeof name || !rel_path_safe(name))
            continue;
        fd = openat(srv.root_fd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (fstat(fd, st) == 0 && S_ISREG(st->st_mode))
            return fd;
        close(fd);
        fd = -1;
    }
    return -1;
}

/* A file without a known extension whose first non-blank byte opens a JSON
 * object or array is served as JSON (a fake API laid out as files). */
static int looks_like_json(int fd)
{
    char head[64];
    ssize_t n = pread(fd, head, sizeof head, 0);

    for (ssize_t i = 0; i < n; i++) {
        if (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n')
            continue;
        return head[i] == '{' || head[i] == '[';
    }
    return 0;
}

static void http_date(time_t t, char *out, size_t outlen)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, outlen, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* 1 when a conditional request's validators match the file's: an
 * If-None-Match holding its ETag or, without If-None-Match (RFC 9110
 * 13.1.3), an If-Modified-Since at or after its mtime. */
static int not_modified(const char *inm, const char *ims, const char *etag, time_t mtime)
{
    struct tm tm;
    const char *end;

    if (inm != NULL)
        return strstr(inm, etag) != NULL || strcmp(inm, "*") == 0;
    if (ims == NULL)
        return 0;
    memset(&tm, 0, sizeof tm);
    end = strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return end != NULL && *end == '\0' && timegm(&tm) >= mtime;
}

static enum MHD_Result serve_file(struct MHD_Connection *conn, const char *url,
                                  const char *query, const struct fault *f, unsigned *status)
{
    enum fault_mode mode = f->mode == FAULT_VALIDATORS ? FAULT_NONE : f->mode;
    struct MHD_Response *resp = NULL;
    struct body *b = NULL;
    struct stat st;
    char etag[64], date[64];
    const char *inm, *ims, *type;
    enum MHD_Result ret = MHD_NO;
    int json = 0;
    int fd;

    inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    ims = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MODIFIED_SINCE);
    if (inm != NULL || ims != NULL)
        count_answer(&srv.conditional);
    fd = open_candidate(url, query, &st, &json);
    if (fd < 0) {
        *status = MHD_HTTP_NOT_FOUND;
        return queue_plain(conn, MHD_HTTP_NOT_FOUND, "not found\n");
    }
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec);
    http_date(st.st_mtim.tv_sec, date, sizeof date);

    if (mode == FAULT_NONE && not_modified(inm, ims, etag, st.st_mtim.tv_sec)) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp == NULL)
            return MHD_NO;
        count_answer(&srv.not_modified);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED, date);
        *status = MHD_HTTP_NOT_MODIFIED;
        ret = MHD_queue_response(conn, MHD_HTTP_NOT_MODIFIED, resp);
        MHD_destroy_response(resp);
        return ret;
    }

    type = json ? "application/json" : content_type_for(url);
    if (strcmp(type, "application/octet-stream") == 0 && looks_like_json(fd))
        type = "application/json";
    if (mode == FAULT_CHUNKED || mode == FAULT_TRUNCATE) {
        b = calloc(1, sizeof *b);
        if (b == NULL) {
            close(fd);
            return MHD_NO;
        }
        b->fd = fd;
        b->conn = conn;
        b->kind = mode == FAULT_CHUNKED ? BODY_CHUNKED : BODY_TRUNCATE;
        b->limit = (uint64_t)st.st_size / 2;
        resp = MHD_create_response_from_callback(
            mode == FAULT_CHUNKED ? MHD_SIZE_UNKNOWN : (uint64_t)st.st_size, BODY_BLOCK,
            body_read, b, body_free);
        if (resp == NULL)
            body_free(b);
    } else {
        resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
        if (resp == NULL)
            close(fd);
    }
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, f->etag ? f->etag : etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_LAST_MODIFIED,
                            f->last_modified ? f->last_modified : date);
    *status = MHD_HTTP_OK;
    count_answer(&srv.full);
    ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result serve_stall(struct MHD_Connection *conn, const char *url,
                                   const char *query, long long length)
{
    struct MHD_Response *resp;
    struct body *b;
    struct stat st;
    enum MHD_Result ret;
    int json = 0;

    if (length < 0) {
        int fd = open_candidate(url, query, &st, &json);
        length = STALL_DEFAULT_LENGTH;
        if (fd >= 0) {
            if (st.st_size > 0)
                length = (long long)st.st_size;
            close(fd);
        }
    }
    b = calloc(1, sizeof *b);
    if (b == NULL)
        return MHD_NO;
    b->kind = BODY_STALL;
    b->fd = -1;
    b->conn = conn;
    resp = MHD_create_response_from_callback((uint64_t)length, BODY_BLOCK, body_read, b, body_free);
    if (resp == NULL) {
        body_free(b);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            json ? "application/json" : content_type_for(url));
    ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- compression bombs and endless bodies ---- */

/* A "Content-Encoding: gzip, gzip" body decoding to `size` zero bytes. Built
 * in memory at its first request (never a file), kept until exit. */
struct bomb {
    long long size;
    unsigned char *data;
    size_t len;
    struct bomb *next;
};

static pthread_mutex_t bomb_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bomb *bombs;              /* guarded by bomb_lock */

static void gzip_header(struct strbuf *sb)
{
    static const char h[10] = { 0x1f, (char)0x8b, 8, 0, 0, 0, 0, 0, 0, (char)0xff };
    sb_add(sb, h, sizeof h);
}

static void gzip_le32(struct strbuf *sb, uint32_t v)
{
    char b[4] = { (char)v, (char)(v >> 8), (char)(v >> 16), (char)(v >> 24) };
    sb_add(sb, b, sizeof b);
}

/* Appends the raw deflate of in, from a fresh compressor. With Z_FULL_FLUSH
 * the piece ends byte-aligned, not final, and refers to nothing before it,
 * so copies of it concatenate into one valid stream: 16 GiB of zeros costs
 * one 1 MiB compression. 0 or -1. */
static int deflate_piece(const void *in, size_t inlen, int flush, struct strbuf *out)
{
    unsigned char buf[65536];
    z_stream z;
    int rc = Z_STREAM_ERROR;

    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)inlen;
    for (;;) {
        z.next_out = buf;
        z.avail_out = sizeof buf;
        rc = deflate(&z, flush);
        if (rc == Z_STREAM_ERROR)
            break;
        sb_add(out, (const char *)buf, sizeof buf - z.avail_out);
        if (flush == Z_FINISH ? rc == Z_STREAM_END : (z.avail_out != 0 || rc == Z_BUF_ERROR))
            break;
    }
    deflateEnd(&z);
    return rc == Z_STREAM_ERROR || out->failed ? -1 : 0;
}

/* gzip(gzip(size zeros)) into b. 0 or -1. */
static int bomb_build(long long size, struct bomb *b)
{
    struct strbuf unit = { 0 }, inner = { 0 }, outer = { 0 };
    unsigned char *zeros = calloc(1, BOMB_UNIT);
    uLong crc = crc32(0L, Z_NULL, 0), unit_crc;
    long long rest = size % BOMB_UNIT;
    int rc = -1;

    if (zeros == NULL)
        goto out;
    gzip_header(&inner);
    if (deflate_piece(zeros, BOMB_UNIT, Z_FULL_FLUSH, &unit) != 0)
        goto out;
    unit_crc = crc32(0L, zeros, BOMB_UNIT);
    for (long long i = 0; i < size / BOMB_UNIT; i++) {
        sb_add(&inner, unit.buf, unit.len);
        crc = crc32_combine(crc, unit_crc, BOMB_UNIT);
    }
    if (rest > 0) {
        if (deflate_piece(zeros, (size_t)rest, Z_FULL_FLUSH, &inner) != 0)
            goto out;
        crc = crc32_combine(crc, crc32(0L, zeros, (uInt)rest), (z_off_t)rest);
    }
    if (deflate_piece(NULL, 0, Z_FINISH, &inner) != 0)    /* the final, empty block */
        goto out;
    gzip_le32(&inner, (uint32_t)crc);
    gzip_le32(&inner, (uint32_t)size);
    if (inner.failed)
        goto out;

    gzip_header(&outer);
    if (deflate_piece(inner.buf, inner.len, Z_FINISH, &outer) != 0)
        goto out;
    gzip_le32(&outer, (uint32_t)crc32(0L, (const Bytef *)inner.buf, (uInt)inner.len));
    gzip_le32(&outer, (uint32_t)inner.len);
    if (outer.failed)
        goto out;
    b->size = size;
    b->data = (unsigned char *)outer.buf;
    b->len = outer.len;
    outer.buf = NULL;
    rc = 0;
out:
    free(zeros);
    free(unit.buf);
    free(inner.buf);
    free(outer.buf);
    return rc;
}

/* The bomb of that size, built at the first call; NULL when out of memory. */
static const struct bomb *bomb_get(long long size)
{
    struct bomb *b;

    pthread_mutex_lock(&bomb_lock);
    for (b = bombs; b != NULL && b->size != size; b = b->next)
        ;
    if (b == NULL && (b = calloc(1, sizeof *b)) != NULL) {
        if (bomb_build(size, b) == 0) {
            b->next = bombs;
            bombs = b;
            log_info("event=bomb_built size=%lld body_bytes=%zu", size, b->len);
        } else {
            free(b);
            b = NULL;
        }
    }
    pthread_mutex_unlock(&bomb_lock);
    return b;
}

static void bombs_free(void)
{
    while (bombs != NULL) {
        struct bomb *next = bombs->next;
        free(bombs->data);
        free(bombs);
        bombs = next;
    }
}

static enum MHD_Result serve_bomb(struct MHD_Connection *conn, unsigned status, long long size)
{
    const struct bomb *b = bomb_get(size);
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (b == NULL)
        return queue_plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    resp = MHD_create_response_from_buffer(b->len, b->data, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "image/png");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip, gzip");
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result serve_endless(struct MHD_Connection *conn, unsigned status)
{
    struct MHD_Response *resp;
    struct body *b = calloc(1, sizeof *b);
    enum MHD_Result ret;

    if (b == NULL)
        return MHD_NO;
    b->kind = BODY_ENDLESS;
    b->fd = -1;
    b->conn = conn;
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BODY_BLOCK, body_read, b, body_free);
    if (resp == NULL) {
        body_free(b);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html");
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- control endpoints ---- */

static enum MHD_Result control_stats(struct MHD_Connection *conn)
{
    struct strbuf sb = { 0 };
    struct path_entry *e, *tmp;
    enum MHD_Result ret;
    int first = 1;

    pthread_mutex_lock(&srv.lock);
    sb_printf(&sb, "{\"total\":%lu,\"paths\":{", srv.total);
    HASH_ITER(hh, srv.paths, e, tmp) {
        if (e->count == 0)
            continue;
        if (!first)
            sb_add(&sb, ",", 1);
        first = 0;
        sb_json_string(&sb, e->path);
        sb_printf(&sb, ":%lu", e->count);
    }
    sb_printf(&sb, "},\"conditional\":%lu,\"not_modified\":%lu,\"full\":%lu}\n", srv.conditional,
              srv.not_modified, srv.full);
    pthread_mutex_unlock(&srv.lock);
    if (sb.failed)
        ret = queue_plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    else
        ret = queue_text(conn, MHD_HTTP_OK, "application/json", sb.buf, NULL, NULL);
    free(sb.buf);
    return ret;
}

static enum MHD_Result control_count(struct MHD_Connection *conn)
{
    const char *path = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "path");
    struct path_entry *e = NULL;
    unsigned long n = 0;
    char text[32];

    if (path == NULL || path[0] == '\0')
        return queue_plain(conn, MHD_HTTP_BAD_REQUEST, "error: path=/... is required\n");
    pthread_mutex_lock(&srv.lock);
    HASH_FIND_STR(srv.paths, path, e);
    if (e != NULL)
        n = e->count;
    pthread_mutex_unlock(&srv.lock);
    snprintf(text, sizeof text, "%lu\n", n);
    return queue_plain(conn, MHD_HTTP_OK, text);
}

static enum MHD_Result control_fault(struct MHD_Connection *conn)
{
    const char *path = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "path");
    const char *mode = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "mode");
    const char *v;
    struct fault f = { .remaining = -1, .retry_after = -1, .ms = 1000, .length = -1,
                       .size = BOMB_DEFAULT_SIZE };
    struct path_entry *e;
    char text[512];
    long n;

    if (path == NULL || path[0] != '/' || mode == NULL)
        return queue_plain(conn, MHD_HTTP_BAD_REQUEST,
                           "error: path=/... and mode=... are required\n");
    for (int i = 0; i < (int)(sizeof fault_names / sizeof fault_names[0]); i++)
        if (strcmp(mode, fault_names[i]) == 0)
            f.mode = (enum fault_mode)i;
    if (f.mode == FAULT_NONE && strcmp(mode, "none") != 0 && strcmp(mode, "clear") != 0)
        return queue_plain(conn, MHD_HTTP_BAD_REQUEST,
                           "error: mode is none, status, stall, truncate, redirect, slow, chunked, "
                           "bomb, endless or validators\n");
    f.status = f.mode == FAULT_REDIRECT ? MHD_HTTP_FOUND
             : f.mode == FAULT_BOMB || f.mode == FAULT_ENDLESS ? MHD_HTTP_OK
             : MHD_HTTP_SERVICE_UNAVAILABLE;

    v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "count");
    if (v != NULL) {
        if (config_parse_long(v, -1, LONG_MAX, &n) != 0)
            return queue_plain(conn, MHD_HTTP_BAD_REQUEST, "error: count is a number >= 0, or -1\n");
        f.remaining = n;
        if (n == 0)
            f.mode = FAULT_NONE;
    }
    v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "status");
    if (v != NULL) {
        /* 600..999 too: what HTTP does not define, a client must survive */
        if (config_parse_long(v, 100, 999, &n) != 0)
            return queue_plain(conn, MHD_HTTP_BAD_REQUEST, "error: status is 100..999\n");
        f.status = (int)n;
    }
    v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "retry_after");
    if (v != NULL && config_parse_long(v, 0, LONG_MAX, &f.retry_after) != 0)
        return queue_plain(conn, MHD_HTTP_BAD_REQUEST, "error: retry_after is seconds >= 0\n");
    v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ms");
    if (v != NULL && config_parse_long(v, 0, 3600000, &f.ms) != 0)
        return queue_plain(conn, MHD_HTTP_BAD_REQUEST, "error: ms is 0..3600000\n");
    v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "length");
    if (v != NULL) {
        if (config_parse_long(v, 1, LONG_MAX, &n) != 0)
            return queue_plain(conn, MHD_HTTP_BAD_REQUEST, "error: length is bytes >= 1\n");
        f.length = n;
    }
    v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "size");
    if (v != NULL && (config_parse_size(v, &f.size) != 0 || f.size < 1 || f.size > BOMB_MAX_SIZE))
        return queue_plain(conn, MHD_HTTP_BAD_REQUEST, "error: size is 1 byte..1TiB\n");
    if (f.mode == FAULT_VALIDATORS) {
        v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "etag");
        if (v != NULL && (f.etag = strdup(v)) == NULL)
            return queue_plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "last_modified");
        if (v != NULL && (f.last_modified = strdup(v)) == NULL) {
            fault_clear(&f);
            return queue_plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
    }
    v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "location");
    if (f.mode == FAULT_REDIRECT) {
        if (v == NULL || v[0] == '\0')
            return queue_plain(conn, MHD_HTTP_BAD_REQUEST, "error: redirect needs location=URL\n");
        f.location = strdup(v);
        if (f.location == NULL) {
            fault_clear(&f);
            return queue_plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
    }

    v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "body");
    if (f.mode == FAULT_STATUS && v != NULL) {
        f.body = strdup(v);
        if (f.body == NULL) {
            fault_clear(&f);
            return queue_plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
    }

    pthread_mutex_lock(&srv.lock);
    e = entry_get_locked(path);
    if (e != NULL) {
        fault_clear(&e->fault);
        if (f.mode != FAULT_NONE) {
            e->fault = f;
            /* owned by the table now */
            f.location = NULL;
            f.etag = NULL;
            f.last_modified = NULL;
            f.body = NULL;
        }
    }
    pthread_mutex_unlock(&srv.lock);
    /* not handed over (mode none, or out of memory); f.mode is still read below */
    free(f.location);
    free(f.etag);
    free(f.last_modified);
    free(f.body);
    if (e == NULL)
        return queue_plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    snprintf(text, sizeof text, "ok fault path=%.300s mode=%s count=%ld\n", path,
             fault_names[f.mode], f.mode == FAULT_NONE ? 0 : f.remaining);
    log_info("event=fault path=%s mode=%s count=%ld", path, fault_names[f.mode], f.remaining);
    return queue_plain(conn, MHD_HTTP_OK, text);
}

static enum MHD_Result handle_control(struct MHD_Connection *conn, const char *url,
                                      const char *method)
{
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int is_post = strcmp(method, "POST") == 0;

    if (strcmp(url, "/__stats") == 0 && is_get)
        return control_stats(conn);
    if (strcmp(url, "/__count") == 0 && is_get)
        return control_count(conn);
    if (strcmp(url, "/__reset") == 0 && is_post) {
        table_reset();
        log_info("event=reset");
        return queue_plain(conn, MHD_HTTP_OK, "ok reset\n");
    }
    if (strcmp(url, "/__fault") == 0 && is_post)
        return control_fault(conn);
    if (strcmp(url, "/__stats") == 0 || strcmp(url, "/__count") == 0 ||
        strcmp(url, "/__reset") == 0 || strcmp(url, "/__fault") == 0)
        return queue_plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                           "error: GET /__stats, GET /__count, POST /__reset, POST /__fault\n");
    return queue_plain(conn, MHD_HTTP_NOT_FOUND, "error: unknown control endpoint\n");
}

/* ---- the request handler ---- */

static enum MHD_Result handle_file(struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *query)
{
    struct fault f;
    enum MHD_Result ret;
    unsigned status = 0;
    char num[32] = "";

    count_and_take_fault(url, &f);
    if (srv.latency_ms > 0)
        sleep_ms(srv.latency_ms);

    switch (f.mode) {
    case FAULT_STATUS:
        status = (unsigned)f.status;
        if (f.retry_after >= 0)
            snprintf(num, sizeof num, "%ld", f.retry_after);
        ret = queue_text(conn, status,
                         f.body && f.body[0] == '{' ? "application/json" : "text/plain; charset=utf-8",
                         f.body ? f.body : "injected fault\n",
                         f.retry_after >= 0 ? MHD_HTTP_HEADER_RETRY_AFTER : NULL, num);
        goto out;
    case FAULT_REDIRECT:
        status = (unsigned)f.status;
        ret = queue_text(conn, status, "text/plain; charset=utf-8", "redirect\n",
                         MHD_HTTP_HEADER_LOCATION, f.location);
        goto out;
    case FAULT_STALL:
        status = MHD_HTTP_OK;
        ret = serve_stall(conn, url, query, f.length);
        goto out;
    case FAULT_BOMB:
        status = (unsigned)f.status;
        ret = serve_bomb(conn, status, f.size);
        goto out;
    case FAULT_ENDLESS:
        status = (unsigned)f.status;
        ret = serve_endless(conn, status);
        goto out;
    case FAULT_SLOW:
        sleep_ms(f.ms);
        break;
    case FAULT_TRUNCATE:
    case FAULT_CHUNKED:
    case FAULT_VALIDATORS:
    case FAULT_NONE:
        break;
    }

    if (srv.token != NULL) {
        const char *t = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
        if (t == NULL || strcmp(t, srv.token) != 0) {
            status = MHD_HTTP_FORBIDDEN;
            ret = queue_plain(conn, status, "forbidden: bad or missing token\n");
            goto out;
        }
    }
    if (srv.bearer != NULL) {
        const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_AUTHORIZATION);
        if (a == NULL || strncasecmp(a, "Bearer ", 7) != 0 || strcmp(a + 7, srv.bearer) != 0) {
            status = MHD_HTTP_UNAUTHORIZED;
            ret = queue_text(conn, status, "text/plain; charset=utf-8",
                             "unauthorized: bad or missing bearer token\n",
                             MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
            goto out;
        }
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        ret = queue_text(conn, status, "text/plain; charset=utf-8", "only GET and HEAD\n",
                         MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        goto out;
    }
    if (!rel_path_safe(url + 1)) {
        status = MHD_HTTP_FORBIDDEN;
        ret = queue_plain(conn, status, "forbidden: '.' or '..' in path\n");
        goto out;
    }
    ret = serve_file(conn, url, query, &f, &status);
out:
    log_debug("event=request method=%s path=%s status=%u fault=%s", method, url, status,
              fault_names[f.mode]);
    fault_clear(&f);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct request *req = *con_cls;
    const char *query = NULL;

    (void)cls;
    (void)version;
    (void)upload_data;
    if (req == NULL)
        return MHD_NO;                  /* on_uri() ran out of memory */
    if (!req->called) {
        req->called = 1;                /* headers only; wait for any body */
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;          /* request bodies are ignored */
        return MHD_YES;
    }
    if (req->raw_uri != NULL) {
        query = strchr(req->raw_uri, '?');
        if (query != NULL)
            query++;
    }
    if (strncmp(url, "/__", 3) == 0)
        return handle_control(conn, url, method);
    return handle_file(conn, url, method, query);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct request *req = calloc(1, sizeof *req);

    (void)cls;
    (void)conn;
    if (req == NULL)
        return NULL;
    req->raw_uri = strdup(uri);
    return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *req = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (req != NULL) {
        free(req->raw_uri);
        free(req);
    }
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    size_t len;

    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    if (strstr(line, "application reported error") != NULL)
        log_debug("event=mhd msg=\"%s\"", line);     /* our stall and truncate faults */
    else
        log_warn("event=mhd msg=\"%s\"", line);
}

/* ---- start-up ---- */

struct options {
    const char *root;
    const char *bind;
    const char *token;
    const char *bearer;
    long port;
    long latency_ms;
    long max_connections;
};

/* 0 ok, 1 help printed, -1 error in err */
static int parse_options(int argc, char **argv, struct options *o, char *err, size_t errlen)
{
    static const struct option longopts[] = {
        { "root", required_argument, NULL, 'r' },
        { "port", required_argument, NULL, 'p' },
        { "bind", required_argument, NULL, 'b' },
        { "token", required_argument, NULL, 't' },
        { "bearer", required_argument, NULL, 'B' },
        { "latency-ms", required_argument, NULL, 'l' },
        { "max-connections", required_argument, NULL, 'm' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    o->bind = "127.0.0.1";
    o->port = 0;
    o->latency_ms = 0;
    o->max_connections = 1024;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': o->root = optarg; break;
        case 'b': o->bind = optarg; break;
        case 't': o->token = optarg; break;
        case 'B': o->bearer = optarg; break;
        case 'p':
            if (config_parse_long(optarg, 0, 65535, &o->port) != 0) {
                snprintf(err, errlen, "--port: '%s' is not 0..65535", optarg);
                return -1;
            }
            break;
        case 'l':
            if (config_parse_long(optarg, 0, 600000, &o->latency_ms) != 0) {
                snprintf(err, errlen, "--latency-ms: '%s' is not 0..600000", optarg);
                return -1;
            }
            break;
        case 'm':
            if (config_parse_long(optarg, 1, 100000, &o->max_connections) != 0) {
                snprintf(err, errlen, "--max-connections: '%s' is not 1..100000", optarg);
                return -1;
            }
            break;
        case 'h':
            puts(usage);
            return 1;
        default:
            snprintf(err, errlen, "unknown or incomplete option '%s' (see --help)",
                     argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
        return -1;
    }
    if (o->root == NULL) {
        snprintf(err, errlen, "--root DIR is required");
        return -1;
    }
    if (o->token != NULL && o->token[0] == '\0')
        o->token = NULL;
    if (o->bearer != NULL && o->bearer[0] == '\0')
        o->bearer = NULL;
    return 0;
}

/* Room for one thread and a few descriptors per connection. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < 65536 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static struct MHD_Daemon *start_daemon(const struct options *o, char *url, size_t urllen,
                                       char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    const union MHD_DaemonInfo *info;
    struct MHD_Daemon *d;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    int v6 = strchr(o->bind, ':') != NULL;
    const char *host = o->bind;

    memset(&ss, 0, sizeof ss);
    if (v6) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET6, o->bind, &sin6->sin6_addr) != 1) {
            snprintf(err, errlen, "--bind: '%s' is not an IPv6 address", o->bind);
            return NULL;
        }
        flags |= MHD_USE_IPv6;
    } else {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)o->port);
        if (inet_pton(AF_INET, o->bind, &sin->sin_addr) != 1) {
            snprintf(err, errlen, "--bind: '%s' is not an IPv4 address", o->bind);
            return NULL;
        }
    }
    d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, NULL,
                         MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
                         MHD_OPTION_CONNECTION_TIMEOUT, 0u,
                         MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024),
                         MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                         MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_END);
    if (d == NULL) {
        snprintf(err, errlen, "cannot listen on %s port %ld (in use, or not an address here?)",
                 o->bind, o->port);
        return NULL;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        snprintf(err, errlen, "cannot learn the listening port");
        MHD_stop_daemon(d);
        return NULL;
    }
    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    snprintf(url, urllen, "http://%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "",
             (unsigned)info->port);
    return d;
}

int main(int argc, char **argv)
{
    struct options o = { 0 };
    struct MHD_Daemon *d = NULL;
    struct sigaction sa;
    char err[512], url[128];
    const char *lvl = getenv("IMGCACHE_LOG_LEVEL");
    int level = lvl != NULL ? log_level_parse(lvl) : LOG_INFO;
    int exit_code = 1;
    int rc;

    srv.root_fd = -1;
    pthread_mutex_init(&srv.lock, NULL);
    rc = parse_options(argc, argv, &o, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "%s: %s\n", PROGRAM, err);
        exit_code = rc > 0 ? 0 : 2;
        goto out;
    }
    if (level < 0) {
        fprintf(stderr, "%s: IMGCACHE_LOG_LEVEL: '%s' is not debug, info, warn or error\n",
                PROGRAM, lvl);
        exit_code = 2;
        goto out;
    }
    log_init(PROGRAM, level);
    srv.root = o.root;
    srv.token = o.token;
    srv.bearer = o.bearer;
    srv.latency_ms = o.latency_ms;
    srv.root_fd = open(o.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (srv.root_fd < 0) {
        fprintf(stderr, "%s: --root '%s': %s\n", PROGRAM, o.root, strerror(errno));
        exit_code = 2;
        goto out;
    }

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    raise_fd_limit();

    d = start_daemon(&o, url, sizeof url, err, sizeof err);
    if (d == NULL) {
        log_error("event=start_failed error=\"%s\"", err);
        goto out;
    }
    printf("MEDIA_URL=%s\n", url);
    fflush(stdout);
    log_info("event=ready url=%s root=%s token=%s bearer=%s latency_ms=%ld max_connections=%ld",
             url, o.root, o.token ? "yes" : "no", o.bearer ? "yes" : "no", o.latency_ms,
             o.max_connections);

    while (!stop_requested) {
        struct timespec tick = { 0, 100 * 1000 * 1000 };
        nanosleep(&tick, NULL);
    }
    log_info("event=stopping");
    exit_code = 0;
out:
    atomic_store(&shutting_down, 1);
    if (d != NULL)
        MHD_stop_daemon(d);
    table_reset();
    bombs_free();
    if (srv.root_fd >= 0)
        close(srv.root_fd);
    pthread_mutex_destroy(&srv.lock);
    return exit_code;
}
