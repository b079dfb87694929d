#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db.h"
#include "errmsg.h"
#include "kafka.h"
#include "lease.h"
#include "log.h"
#include "metrics_http.h"

enum opt_type { OPT_STRING, OPT_SECRET, OPT_LONG, OPT_DURATION, OPT_SIZE, OPT_FLAG };

struct opt_def {
    const char *env;        /* NULL: flag only */
    const char *flag;       /* NULL: environment only (secrets) */
    enum opt_type type;
    size_t offset;
    const char *def;
    long long min, max;     /* for numbers, durations and sizes */
    unsigned programs;
    const char *help;
    /* optional: 0 when the final value is usable, else -1 with a reason
     * (without the option's name: the caller adds the one the user typed) */
    int (*check)(const char *value, char *why, size_t whylen);
};

static int check_log_level(const char *value, char *why, size_t whylen);
static int check_not_empty(const char *value, char *why, size_t whylen);
static int check_public_url(const char *value, char *why, size_t whylen);
static int check_retry_backoff(const char *value, char *why, size_t whylen);
static int check_metrics_addr(const char *value, char *why, size_t whylen);
static int check_renditions(const char *value, char *why, size_t whylen);

#define P CONFIG_PRODUCER
#define W CONFIG_WORKER
#define B CONFIG_DEVBROKER
#define R CONFIG_RENDERER
/* The programs that talk to Kafka take librdkafka properties. */
#define KAFKA_PROGRAMS (CONFIG_PRODUCER | CONFIG_WORKER | CONFIG_RENDERER)
#define OFF(f) offsetof(struct config, f)
#define BIG LLONG_MAX

static const struct opt_def opts[] = {
    { "KAFKA_BROKERS", "brokers", OPT_STRING, OFF(kafka_brokers), "localhost:9092", 0, 0, P | W | R,
      "Kafka bootstrap servers, host:port[,host:port]", check_not_empty },
    { "IMGCACHE_TOPIC", "topic", OPT_STRING, OFF(topic), "image-needed", 0, 0, P | W,
      "topic of image-needed events (retry and dead-letter topics add -retry, -dlt)", check_not_empty },
    { "IMGCACHE_GROUP", "group", OPT_STRING, OFF(group), "imgcache-workers", 0, 0, W,
      "consumer group of the workers", NULL },
    { "IMGCACHE_KAFKA_CONFIG_FILE", NULL, OPT_STRING, OFF(kafka_config_file), "", 0, 0, P | W | R,
      "file of librdkafka properties, one key=value a line, '#' comments (as kcat -F); values verbatim", NULL },
    { "IMGCACHE_KAFKA_CONFIG", NULL, OPT_STRING, OFF(kafka_config), "", 0, 0, P | W | R,
      "extra librdkafka properties, comma-separated key=value; in a value \\, is a comma, \\\\ a backslash", NULL },
    { "REDIS_URL", "redis-url", OPT_STRING, OFF(redis_url), "redis://127.0.0.1:6379/0", 0, 0, W,
      "Redis for download leases, redis://[:password@]host:port/db", NULL },
    { "DATABASE_URL", "database-url", OPT_STRING, OFF(database_url), "", 0, 0, P | W | R,
      "PostgreSQL conninfo or URI; empty: libpq defaults and PG* variables", NULL },
    { "IMGCACHE_STORAGE_DIR", "storage-dir", OPT_STRING, OFF(storage_dir), "./var/images", 0, 0, P | W | R,
      "folder of stored image blobs", NULL },
    { "IMGCACHE_PUBLIC_URL", "public-url", OPT_STRING, OFF(public_url), "", 0, 0, P | W,
      "base URL the storage folder is served under, http(s)://host[:port][/path] or file:///path; "
      "`migrate` writes it to settings.public_base_url, which the views read (empty: keep the one set, "
      "else file://<storage dir>); the worker only checks it",
      check_public_url },
    { "BEEPER_API_URL", "beeper-api-url", OPT_STRING, OFF(beeper_api_url), "http://localhost:23373", 0, 0, P | W,
      "Beeper Desktop API (sync, mxc:// images, and file:// images without a media dir or server)", NULL },
    { "BEEPER_API_TOKEN", NULL, OPT_SECRET, OFF(beeper_api_token), "", 0, 0, P | W,
      "Beeper Desktop API token, from Beeper Desktop > Settings > Developers (environment only, never logged)", NULL },
    { "BEEPER_MEDIA_SERVER", "beeper-media-server", OPT_STRING, OFF(beeper_media_server), "", 0, 0, W,
      "media proxy that serves Beeper's media folder (file:// images)", NULL },
    { "BEEPER_MEDIA_TOKEN", NULL, OPT_SECRET, OFF(beeper_media_token), "", 0, 0, W,
      "token for BEEPER_MEDIA_SERVER (environment only, never logged)", NULL },
    { "BEEPER_MEDIA_DIR", "beeper-media-dir", OPT_STRING, OFF(beeper_media_dir), "", 0, 0, W,
      "Beeper's media folder on this machine; file:// images are read from it", NULL },
    { "IMGCACHE_LOG_LEVEL", "log-level", OPT_STRING, OFF(log_level), "info", 0, 0, P | W | B | R,
      "debug, info, warn or error", check_log_level },

    { "IMGCACHE_CONCURRENCY", "concurrency", OPT_LONG, OFF(concurrency), "64", 1, 4096, W,
      "downloads in flight per worker", NULL },
    { "IMGCACHE_MAX_BYTES", "max-bytes", OPT_SIZE, OFF(max_bytes), "10MiB", 1024, BIG, W,
      "largest image accepted, stopped while streaming", NULL },
    { "IMGCACHE_BODY_MEMORY", "body-memory", OPT_SIZE, OFF(body_memory), "16MiB", 0, BIG, W,
      "downloads held in memory and written by the committer thread; past it, streamed to disk (0: always)", NULL },
    { "IMGCACHE_MAX_PIXELS", "max-pixels", OPT_LONG, OFF(max_pixels), "40000000", 1, BIG, W | R,
      "largest width*height accepted, read from the image header", NULL },
    { "IMGCACHE_LEASE_TTL", "lease-ttl", OPT_DURATION, OFF(lease_ttl_ms), "2m", 1000, BIG, W,
      "how long a Redis download lease lives if its holder dies", NULL },
    { "IMGCACHE_CONNECT_TIMEOUT", "connect-timeout", OPT_DURATION, OFF(connect_timeout_ms), "5s", 100, BIG, W,
      "connect timeout per download", NULL },
    { "IMGCACHE_FETCH_TIMEOUT", "fetch-timeout", OPT_DURATION, OFF(fetch_timeout_ms), "30s", 100, BIG, W,
      "total time allowed per download", NULL },
    { "IMGCACHE_SHUTDOWN_GRACE", "grace", OPT_DURATION, OFF(grace_ms), "20s", 0, BIG, W,
      "on SIGTERM, how long in-flight downloads may finish", NULL },
    { "IMGCACHE_DRAIN_WAIT", "drain-wait", OPT_DURATION, OFF(drain_wait_ms), "60s", 0, BIG, W,
      "with --drain, how long to wait for a partition assignment; also waited for: retries due within it", NULL },
    { "IMGCACHE_RECHECK", "recheck", OPT_DURATION, OFF(recheck_ms), "500ms", 10, BIG, W,
      "how often an event whose URL another worker is fetching is checked again", NULL },
    { "IMGCACHE_FAILURE_TTL", "failure-ttl", OPT_DURATION, OFF(failure_ttl_ms), "7d", 0, BIG, P | W,
      "a permanent failure younger than this is not tried again", NULL },
    { "IMGCACHE_RETRY_BACKOFF", "retry-backoff", OPT_STRING, OFF(retry_backoff), "2s,8s,32s,2m,8m", 0, 0, W,
      "delay before each retry (through the -retry topic), comma-separated, 1 to 16 of them, each at most 7d; "
      "then permanent", check_retry_backoff },
    { "IMGCACHE_RETRY_AFTER_MAX", "retry-after-max", OPT_DURATION, OFF(retry_after_max_ms), "1h", 0,
      604800000LL, W,
      "longest delay a server's Retry-After may ask for; also bounds how long a retry event is held", NULL },
    { "IMGCACHE_RETRY_HOLD_MAX", "retry-hold-max", OPT_LONG, OFF(retry_hold_max), "1000", 1, 1000000, W,
      "retry events held in memory until due; at this many, the retry topic's partitions pause", NULL },
    { "IMGCACHE_BREAKER_THRESHOLD", "breaker-threshold", OPT_LONG, OFF(breaker_threshold), "20", 1, 1000000, W,
      "consecutive retryable failures to one host that open its circuit", NULL },
    { "IMGCACHE_BREAKER_COOLDOWN", "breaker-cooldown", OPT_DURATION, OFF(breaker_cooldown_ms), "30s", 10, BIG, W,
      "first pause of an open circuit; doubles on each failed probe, up to 10m", NULL },
    { "IMGCACHE_ALLOW_HOSTS", "allow-hosts", OPT_STRING, OFF(allow_hosts), "", 0, 0, W,
      "trusted origins on private/loopback networks that downloads may reach, comma-separated "
      "host, host:port or scheme://host:port (no port: 80/443)", NULL },
    { "IMGCACHE_HTTP_PROXY", NULL, OPT_SECRET, OFF(http_proxy), "", 0, 0, W,
      "proxy for downloads, http(s)://[user:password@]host:port (environment only, never logged); "
      "empty: none, and http_proxy/HTTPS_PROXY/ALL_PROXY are ignored", NULL },
    { "IMGCACHE_METRICS_ADDR", "metrics-addr", OPT_STRING, OFF(metrics_addr), "", 0, 0, W,
      "HOST:PORT of /metrics, /healthz and /readyz (IPv6 in brackets, port 0: any free one); empty: off",
      check_metrics_addr },
    { "IMGCACHE_WORKER_ID", "worker-id", OPT_STRING, OFF(worker_id), "", 0, 0, W,
      "name of this worker in leases and logs; empty: host:pid", NULL },
    { NULL, "drain", OPT_FLAG, OFF(drain), "0", 0, 0, W,
      "exit 0 once caught up with every assigned partition and idle; exit 1 when no partition was "
      "assigned within --drain-wait while the group has unconsumed events", NULL },
    { NULL, "from-beginning", OPT_FLAG, OFF(from_beginning), "0", 0, 0, W,
      "each partition first assigned to this process starts at the topic's beginning, whatever the "
      "group committed (replay; with --drain: until that replay is read to the end)", NULL },

    { "IMGCACHE_STORED_TOPIC", "stored-topic", OPT_STRING, OFF(stored_topic), "image-stored", 0, 0, P | W | R | B,
      "topic of image-stored events (a new blob, keyed by its sha256), read by imgcache-renderer",
      check_not_empty },
    { "IMGCACHE_RENDITIONS", "renditions", OPT_STRING, OFF(renditions), "64,128,256", 0, 0, P | R,
      "rendition sizes in px (square WebP), comma-separated, each 16..2048, no duplicates", check_renditions },
    { "IMGCACHE_RENDER_GROUP", "group", OPT_STRING, OFF(render_group), "imgcache-renderer", 0, 0, R,
      "consumer group of the renderers (a new one replays every image-stored event)", check_not_empty },
    { "IMGCACHE_RENDER_QUALITY", "quality", OPT_LONG, OFF(render_quality), "80", 1, 100, R,
      "WebP quality of the renditions", NULL },
    { "IMGCACHE_RENDER_TIMEOUT", "render-timeout", OPT_DURATION, OFF(render_timeout_ms), "30s", 1000,
      86400000LL, R,
      "longest time one image may take to render; past it the renderer exits (SIGALRM) and the attempt counts",
      NULL },
    { "IMGCACHE_RENDER_ATTEMPTS", "render-attempts", OPT_LONG, OFF(render_attempts), "3", 1, 100, R,
      "renders of one image that crashed or timed out before it is given up (a render_failures row)", NULL },

    { "IMGCACHE_BATCH_SIZE", "batch-size", OPT_LONG, OFF(batch_size), "500", 1, 100000, P,
      "chats per database transaction and cache look-up", NULL },
    { "IMGCACHE_SYNC_TIMEOUT", "sync-timeout", OPT_DURATION, OFF(sync_timeout_ms), "30s", 100, BIG, P,
      "timeout of one request to the Beeper Desktop API", NULL },

    { NULL, "partitions", OPT_LONG, OFF(partitions), "12", 1, 1000, B,
      "partitions of each topic", NULL },
    { NULL, "brokers-count", OPT_LONG, OFF(brokers), "1", 1, 9, B,
      "number of mock brokers", NULL },
};
#define N_OPTS (sizeof opts / sizeof opts[0])

int config_parse_duration(const char *s, long long *ms_out)
{
    char *end;
    double v;
    double mult = 1000;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || v < 0)
        return -1;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else if (strcmp(end, "d") == 0)
        mult = 86400000;
    else
        return -1;
    if (v * mult > 9.2e18)
        return -1;
    *ms_out = (long long)(v * mult + 0.5);
    return 0;
}

int config_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int config_parse_size(const char *s, long long *bytes_out)
{
    static const struct { const char *suffix; double mult; } units[] = {
        { "", 1 }, { "B", 1 }, { "k", 1e3 }, { "kB", 1e3 }, { "KB", 1e3 }, { "KiB", 1024.0 },
        { "M", 1e6 }, { "MB", 1e6 }, { "MiB", 1048576.0 }, { "G", 1e9 }, { "GB", 1e9 },
        { "GiB", 1073741824.0 },
    };
    char *end;
    double v;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || v < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            if (v * units[i].mult > 9.2e18)
                return -1;
            *bytes_out = (long long)(v * units[i].mult + 0.5);
            return 0;
        }
    }
    return -1;
}

int config_parse_duration_list(const char *s, long long *steps, int max_steps, long long step_max_ms,
                               int *n_out, char *why, size_t whylen)
{
    const char *p = s;
    int n = 0;

    *n_out = 0;
    if (s == NULL || *s == '\0') {
        /* it used to mean "no retries" silently: every retryable failure
         * would become permanent at once */
        errmsg_set(why, whylen, "empty; give at least one delay, e.g. 2s,8s,32s");
        return -1;
    }
    for (;;) {
        size_t len = strcspn(p, ",");
        char item[32];
        long long ms;

        if (len == 0) {
            errmsg_set(why, whylen, "'%s' has an empty step (delay %d)", s, n + 1);
            return -1;
        }
        if (n == max_steps) {
            errmsg_set(why, whylen, "'%s' has more than %d steps", s, max_steps);
            return -1;
        }
        if (len >= sizeof item) {
            errmsg_set(why, whylen, "step '%.*s...' is not a duration", 16, p);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (config_parse_duration(item, &ms) != 0) {
            errmsg_set(why, whylen, "step '%s' is not a duration (500ms, 5s, 2m, 1h, 7d or seconds)", item);
            return -1;
        }
        if (ms > step_max_ms) {
            errmsg_set(why, whylen, "step '%s' is longer than %lldms", item, step_max_ms);
            return -1;
        }
        steps[n++] = ms;
        p += len;
        if (*p == '\0')
            break;
        p++; /* the comma */
    }
    *n_out = n;
    return 0;
}

static int check_log_level(const char *value, char *why, size_t whylen)
{
    if (log_level_parse(value) >= 0)
        return 0;
    errmsg_set(why, whylen, "'%s' is not debug, info, warn or error", value);
    return -1;
}

static int check_not_empty(const char *value, char *why, size_t whylen)
{
    if (value[0] != '\0')
        return 0;
    errmsg_set(why, whylen, "empty");
    return -1;
}

/* The public base is the prefix of every image URL the views give: refuse
 * a typo before migrate writes it. */
static int check_public_url(const char *value, char *why, size_t whylen)
{
    static const char *const schemes[] = { "http://", "https://", "file://" };
    const char *rest = NULL;

    if (value[0] == '\0')
        return 0; /* file://<storage dir> */
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strncasecmp(value, schemes[i], strlen(schemes[i])) == 0)
            rest = value + strlen(schemes[i]);
    if (rest == NULL) {
        errmsg_set(why, whylen, "'%s' is not a URL (give http://host[:port][/path], https://... or file:///path)",
                   value);
        return -1;
    }
    for (const char *c = value; *c; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            errmsg_set(why, whylen, "'%s' holds a space or control character", value);
            return -1;
        }
    }
    if (strncasecmp(value, "file://", 7) != 0 && (rest[0] == '\0' || rest[0] == '/')) {
        errmsg_set(why, whylen, "'%s' has no host", value);
        return -1;
    }
    return 0;
}

static int check_retry_backoff(const char *value, char *why, size_t whylen)
{
    long long steps[CONFIG_RETRY_STEPS_MAX];
    int n;

    return config_parse_duration_list(value, steps, CONFIG_RETRY_STEPS_MAX, CONFIG_RETRY_STEP_MAX_MS, &n,
                                      why, whylen);
}

/* Parsed again when the endpoint starts: a typo fails here, at start-up,
 * rather than after the worker has connected to everything. */
static int check_metrics_addr(const char *value, char *why, size_t whylen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;

    if (value[0] == '\0')
        return 0; /* off */
    return metrics_http_parse_addr(value, &ss, &sslen, why, whylen);
}

int config_parse_renditions(const char *s, int *sizes, int max_sizes, int *n_out, char *why, size_t whylen)
{
    const char *p = s;
    int n = 0;

    *n_out = 0;
    for (;;) {
        size_t len = strcspn(p, ",");
        char item[16];
        long v;

        if (len == 0 || len >= sizeof item) {
            errmsg_set(why, whylen, "'%s' is not a list of sizes in px, e.g. 64,128,256", s);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (config_parse_long(item, CONFIG_RENDITION_MIN, CONFIG_RENDITION_MAX, &v) != 0) {
            errmsg_set(why, whylen, "size '%s' is not a whole number of px from %d to %d", item,
                       CONFIG_RENDITION_MIN, CONFIG_RENDITION_MAX);
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (sizes[i] == (int)v) {
                errmsg_set(why, whylen, "size %ld is given twice", v);
                return -1;
            }
        }
        if (n == max_sizes) {
            errmsg_set(why, whylen, "'%s' has more than %d sizes", s, max_sizes);
            return -1;
        }
        sizes[n++] = (int)v;
        p += len;
        if (*p == '\0')
            break;
        p++; /* the comma */
    }
    *n_out = n;
    return 0;
}

static int check_renditions(const char *value, char *why, size_t whylen)
{
    int sizes[CONFIG_RENDITIONS_MAX], n;

    return config_parse_renditions(value, sizes, CONFIG_RENDITIONS_MAX, &n, why, whylen);
}

/* Appends key (its first keylen bytes) and value to cfg->kafka_props. */
static int append_kafka_prop(struct config *cfg, const char *key, size_t keylen, const char *value,
                             char *err, size_t errlen)
{
    struct config_kv kv = { strndup(key, keylen), strdup(value) };
    struct config_kv *grown;
    int rc = -1;

    if (kv.key == NULL || kv.value == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    grown = realloc(cfg->kafka_props, (cfg->n_kafka_props + 1) * sizeof *grown);
    if (grown == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    cfg->kafka_props = grown;
    grown[cfg->n_kafka_props++] = kv;
    kv.key = NULL;
    kv.value = NULL;
    rc = 0;
out:
    free(kv.key);
    free(kv.value);
    return rc;
}

int config_add_kafka_prop(struct config *cfg, const char *item, char *err, size_t errlen)
{
    const char *eq = strchr(item, '=');

    if (eq == NULL || eq == item) {
        errmsg_set(err, errlen, "not key=value (the text is not shown: it may hold a secret)");
        return -1;
    }
    return append_kafka_prop(cfg, item, (size_t)(eq - item), eq + 1, err, errlen);
}

int config_add_kafka_props(struct config *cfg, const char *list, char *err, size_t errlen)
{
    char *item = malloc(strlen(list) + 1);
    const char *p = list;
    size_t n_items = 0;
    int rc = -1;

    if (item == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (;;) {
        size_t len = 0;
        char *eq;

        /* one item: up to the next comma that is not escaped */
        while (*p != '\0' && *p != ',') {
            if (p[0] == '\\' && (p[1] == ',' || p[1] == '\\'))
                p++;
            item[len++] = *p++;
        }
        item[len] = '\0';
        n_items++;
        if (len > 0) { /* "a=1,,b=2" has always been fine */
            eq = strchr(item, '=');
            if (eq == NULL || eq == item) {
                /* the item may be the tail of a password cut at an
                 * unescaped comma: only its position is given */
                errmsg_set(err, errlen,
                           "item %zu is not key=value (the text is not shown: it may hold a secret; "
                           "a comma inside a value is written \\,)", n_items);
                goto out;
            }
            if (append_kafka_prop(cfg, item, (size_t)(eq - item), eq + 1, err, errlen) != 0)
                goto out;
        }
        if (*p == '\0')
            break;
        p++; /* the comma */
    }
    rc = 0;
out:
    free(item);
    return rc;
}

int config_read_kafka_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = -1;

    if (f == NULL) {
        errmsg_set(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t len = getline(&line, &cap, f);
        char *key, *eq, *key_end;

        if (len < 0)
            break;
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        if (strlen(line) != (size_t)len) {
            errmsg_set(err, errlen, "'%s' line %ld holds a NUL byte", path, lineno);
            goto out;
        }
        key = line + strspn(line, " \t");
        if (*key == '\0' || *key == '#')
            continue;
        eq = strchr(key, '=');
        key_end = eq;
        while (key_end != NULL && key_end > key && (key_end[-1] == ' ' || key_end[-1] == '\t'))
            key_end--;
        if (eq == NULL || key_end == key) {
            errmsg_set(err, errlen, "'%s' line %ld is not key=value (the text is not shown: it may hold a secret)",
                       path, lineno);
            goto out;
        }
        if (append_kafka_prop(cfg, key, (size_t)(key_end - key), eq + 1, err, errlen) != 0)
            goto out;
    }
    if (ferror(f)) {
        errmsg_set(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(line);
    if (f)
        fclose(f);
    return rc;
}

int config_kafka_key_is_secret(const char *key)
{
    static const char *const suffixes[] = { "password", "secret", "key", "token" };
    /* a private key, and the OAUTHBEARER settings, which may carry a token */
    static const char *const names[] = { "ssl.key.pem", "sasl.oauthbearer.config" };
    size_t len = strlen(key);

    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t n = strlen(suffixes[i]);
        if (len >= n && strcasecmp(key + len - n, suffixes[i]) == 0)
            return 1;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(key, names[i]) == 0)
            return 1;
    return 0;
}

/* Sets one option from text; `origin` names where it came from for errors. */
static int set_option(struct config *cfg, const struct opt_def *o, const char *value,
                      const char *origin, char *err, size_t errlen)
{
    char *base = (char *)cfg + o->offset;
    long long n;
    char *end;

    switch (o->type) {
    case OPT_STRING:
    case OPT_SECRET: {
        char **slot = (char **)base;
        free(*slot);
        *slot = strdup(value);
        return 0;
    }
    case OPT_FLAG:
        *(int *)base = (strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0);
        return 0;
    case OPT_LONG:
        errno = 0;
        n = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0') {
            errmsg_set(err, errlen, "%s: '%s' is not a whole number", origin, value);
            return -1;
        }
        break;
    case OPT_DURATION:
        if (config_parse_duration(value, &n) != 0) {
            errmsg_set(err, errlen, "%s: '%s' is not a duration (500ms, 5s, 2m, 1h, 7d or seconds)",
                       origin, value);
            return -1;
        }
        break;
    case OPT_SIZE:
        if (config_parse_size(value, &n) != 0) {
            errmsg_set(err, errlen, "%s: '%s' is not a size (bytes, or with kB, KiB, MB, MiB, GiB)",
                       origin, value);
            return -1;
        }
        break;
    default:
        return -1;
    }
    if (n < o->min || n > o->max) {
        if (o->max == BIG)
            errmsg_set(err, errlen, "%s: '%s' is below the minimum %lld%s", origin, value, o->min,
                       o->type == OPT_DURATION ? "ms" : "");
        else
            errmsg_set(err, errlen, "%s: '%s' is out of range %lld..%lld%s", origin, value, o->min, o->max,
                       o->type == OPT_DURATION ? "ms" : "");
        return -1;
    }
    if (o->type == OPT_LONG)
        *(long *)base = (long)n;
    else
        *(long long *)base = n;
    return 0;
}

void config_usage(FILE *out, unsigned program, const char *usage)
{
    fprintf(out, "%s\n\nOptions (each flag overrides its environment variable):\n", usage);
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_def *o = &opts[i];
        char left[64];
        if (!(o->programs & program))
            continue;
        if (o->flag)
            snprintf(left, sizeof left, "--%s%s", o->flag,
                     o->type == OPT_FLAG ? "" : o->type == OPT_LONG ? " N" : " VALUE");
        else
            snprintf(left, sizeof left, "(environment only)");
        fprintf(out, "  %-26s %s\n", left, o->help);
        if (o->env)
            fprintf(out, "  %-26s   env %s, default '%s'\n", "", o->env, o->type == OPT_SECRET ? "" : o->def);
    }
    if (program & KAFKA_PROGRAMS)
        fprintf(out, "  %-26s %s\n", "-X key=value",
                "any librdkafka property, repeatable, value verbatim (as kcat -X)");
    fprintf(out, "  %-26s %s\n", "-h, --help", "this text");
}

/* Where each value came from, so an error names what the user typed. */
enum opt_origin { FROM_DEFAULT, FROM_ENV, FROM_FLAG };


/* Every option's default, then its variable when `program` has it. */
static int load_defaults_and_env(struct config *cfg, unsigned program, enum opt_origin *from,
                                 char *err, size_t errlen)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_def *o = &opts[i];
        const char *env = o->env ? getenv(o->env) : NULL;

        from[i] = FROM_DEFAULT;
        if (set_option(cfg, o, o->def, "default", err, errlen) != 0)
            return -1;
        if (!(o->programs & program) || env == NULL)
            continue;
        if (o->type == OPT_FLAG) {
            errmsg_set(err, errlen, "%s cannot be set from the environment", o->env);
            return -1;
        }
        from[i] = FROM_ENV;
        if (set_option(cfg, o, env, o->env, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* librdkafka properties from the environment, in the order they win: the
 * file, then the variable (each -X comes later, from the flags). */
static int load_kafka_env(struct config *cfg, unsigned program, char *err, size_t errlen)
{
    char inner[384];

    if (!(program & KAFKA_PROGRAMS))
        return 0;
    if (cfg->kafka_config_file[0] &&
        config_read_kafka_file(cfg, cfg->kafka_config_file, inner, sizeof inner) != 0) {
        errmsg_set(err, errlen, "IMGCACHE_KAFKA_CONFIG_FILE: %s", inner);
        return -1;
    }
    if (cfg->kafka_config[0] && config_add_kafka_props(cfg, cfg->kafka_config, inner, sizeof inner) != 0) {
        errmsg_set(err, errlen, "IMGCACHE_KAFKA_CONFIG: %s", inner);
        return -1;
    }
    return 0;
}

/* getopt_long's table of `program`'s flags plus --help, ended by a zero
 * entry. Flag n has val FLAG_VAL_BASE + n and stands for opts[map[n]].
 * Returns how many flags (--help included) there are. */
#define FLAG_VAL_BASE 1000
static size_t build_longopts(unsigned program, struct option *longopts, int *map)
{
    size_t n = 0;

    for (size_t i = 0; i < N_OPTS; i++) {
        if (!(opts[i].programs & program) || opts[i].flag == NULL)
            continue;
        longopts[n].name = opts[i].flag;
        longopts[n].has_arg = opts[i].type == OPT_FLAG ? no_argument : required_argument;
        longopts[n].flag = NULL;
        longopts[n].val = FLAG_VAL_BASE + (int)n;
        map[n] = (int)i;
        n++;
    }
    longopts[n].name = "help";
    longopts[n].has_arg = no_argument;
    longopts[n].flag = NULL;
    longopts[n].val = 'h';
    n++;
    memset(&longopts[n], 0, sizeof longopts[n]);
    return n;
}

/* The message for getopt_long's '?' or ':' on argv[optind - 1]. */
static void set_getopt_error(const int *map, size_t n, char **argv, char *err, size_t errlen)
{
    /* optopt is getopt_long's val of a long option missing its argument:
     * our FLAG_VAL_BASE + n, not a character to print */
    if (optopt >= FLAG_VAL_BASE && optopt < FLAG_VAL_BASE + (int)n)
        errmsg_set(err, errlen, "--%s needs a value", opts[map[optopt - FLAG_VAL_BASE]].flag);
    else if (optopt == 'X')
        errmsg_set(err, errlen, "-X needs key=value");
    else if (optopt)
        errmsg_set(err, errlen, "unknown option '-%c' (see --help)", optopt);
    else /* never echo a value: "--some-token=SECRET" is shown up to '=' */
        errmsg_set(err, errlen, "unknown or incomplete option '%.*s' (see --help)",
                   (int)strcspn(argv[optind - 1], "="), argv[optind - 1]);
}

/* The command line over what the environment set: 0, 1 when --help was
 * printed, -1 with a message. Leaves optind at the first argument. */
static int load_flags(struct config *cfg, unsigned program, const char *usage, int argc, char **argv,
                      enum opt_origin *from, char *err, size_t errlen)
{
    struct option longopts[N_OPTS + 2];
    int map[N_OPTS + 2];
    size_t n = build_longopts(program, longopts, map);
    char origin[96];
    char inner[384];
    int c, idx;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+hX:", longopts, &idx)) != -1) {
        if (c == 'h') {
            config_usage(stdout, program, usage);
            return 1;
        }
        if (c == 'X') {
            if (!(program & KAFKA_PROGRAMS)) {
                errmsg_set(err, errlen, "-X is not an option of this program");
                return -1;
            }
            /* one property, its value verbatim (as kcat -X): commas too */
            if (config_add_kafka_prop(cfg, optarg, inner, sizeof inner) != 0) {
                errmsg_set(err, errlen, "-X: %s", inner);
                return -1;
            }
            continue;
        }
        if (c == '?' || c == ':') {
            set_getopt_error(map, n, argv, err, errlen);
            return -1;
        }
        if (c >= FLAG_VAL_BASE && c < FLAG_VAL_BASE + (int)n) {
            int i = map[c - FLAG_VAL_BASE];
            const struct opt_def *o = &opts[i];

            snprintf(origin, sizeof origin, "--%s", o->flag);
            if (set_option(cfg, o, o->type == OPT_FLAG ? "1" : optarg, origin, err, errlen) != 0)
                return -1;
            from[i] = FROM_FLAG;
        }
    }
    return 0;
}

/* Runs each option's check on its final value, naming it as the user gave
 * it: the flag, the variable, or the default and both ways to change it. */
static int check_final_values(const struct config *cfg, unsigned program, const enum opt_origin *from,
                              char *err, size_t errlen)
{
    char inner[384];

    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_def *o = &opts[i];

        if (!(o->programs & program) || o->check == NULL)
            continue;
        if (o->check(*(char *const *)((const char *)cfg + o->offset), inner, sizeof inner) == 0)
            continue;
        if (from[i] == FROM_FLAG)
            errmsg_set(err, errlen, "--%s: %s", o->flag, inner);
        else if (from[i] == FROM_ENV || o->flag == NULL)
            errmsg_set(err, errlen, "%s: %s", o->env, inner);
        else
            errmsg_set(err, errlen, "%s (default, set by env %s or --%s): %s", o->env, o->env, o->flag,
                       inner);
        return -1;
    }
    return 0;
}

/* The servers' addresses and librdkafka's properties, checked now, not at
 * the first connect: libpq's own parse errors quote the conninfo, password
 * included, and a bad URL is a configuration error. */
static int check_connections(const struct config *cfg, unsigned program, char *err, size_t errlen)
{
    if ((program & KAFKA_PROGRAMS) && db_conninfo_check(cfg->database_url, err, errlen) != 0)
        return -1;
    if ((program & CONFIG_WORKER) && lease_url_check(cfg->redis_url, err, errlen) != 0)
        return -1;
    if ((program & KAFKA_PROGRAMS) && kafka_conf_check(cfg, err, errlen) != 0)
        return -1;
    return 0;
}

int config_load(struct config *cfg, unsigned program, const char *usage,
                int argc, char **argv, char *err, size_t errlen)
{
    enum opt_origin from[N_OPTS];
    int rc;

    memset(cfg, 0, sizeof *cfg);
    if (load_defaults_and_env(cfg, program, from, err, errlen) != 0 ||
        load_kafka_env(cfg, program, err, errlen) != 0)
        return -1;
    rc = load_flags(cfg, program, usage, argc, argv, from, err, errlen);
    if (rc != 0)
        return rc;
    cfg->args = argv + optind;
    cfg->nargs = argc - optind;
    if (check_final_values(cfg, program, from, err, errlen) != 0 ||
        check_connections(cfg, program, err, errlen) != 0)
        return -1;
    return 0;
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].type == OPT_STRING || opts[i].type == OPT_SECRET) {
            char **slot = (char **)((char *)cfg + opts[i].offset);
            free(*slot);
            *slot = NULL;
        }
    }
    for (size_t i = 0; i < cfg->n_kafka_props; i++) {
        free(cfg->kafka_props[i].key);
        free(cfg->kafka_props[i].value);
    }
    free(cfg->kafka_props);
    cfg->kafka_props = NULL;
    cfg->n_kafka_props = 0;
}
