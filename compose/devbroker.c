/* imgcache-devbroker: librdkafka's in-process mock cluster as a Kafka
 * stand-in for development and tests. Everything lives in memory and dies
 * with the process.
 *
 * Start-up order: options, mock cluster, topics, then the bootstrap list as
 * the first stdout line (clients may connect from that moment). After that
 * it serves until SIGTERM/SIGINT and reads fault-injection commands, one per
 * line, from stdin; each command gets exactly one answer line on stdout.
 * End of stdin only stops the reading, never the broker. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"
#include "errmsg.h"
#include "log.h"

#define PROGRAM "imgcache-devbroker"
#define DEFAULT_TOPIC "image-needed"
#define LINE_MAX_LEN 1024
#define N_TOPICS 5 /* main, -retry, -dlt, IMGCACHE_STORED_TOPIC and its -dlt */
#define FIRST_STORED 3 /* topics[3] and [4] derive from IMGCACHE_STORED_TOPIC */

static const char usage[] =
    "usage: " PROGRAM " [options] [TOPIC]\n"
    "\n"
    "A Kafka stand-in FOR DEVELOPMENT AND TESTS ONLY: librdkafka's mock cluster,\n"
    "in memory, no durability, no security; everything is lost when it exits.\n"
    "It creates TOPIC (default " DEFAULT_TOPIC "), TOPIC-retry, TOPIC-dlt,\n"
    "IMGCACHE_STORED_TOPIC (--stored-topic, default image-stored) and its -dlt, prints\n"
    "KAFKA_BROKERS=<bootstrap list> as its first line on stdout and serves until\n"
    "SIGTERM or SIGINT.\n"
    "\n"
    "Commands on stdin, one per line; each answers one line 'ok ...' or 'error ...':\n"
    "  down BROKER                 disconnect a broker and refuse connections (-1: all)\n"
    "  up BROKER                   accept connections again (-1: all)\n"
    "  rtt BROKER MS               delay every answer of a broker (-1: all)\n"
    "  leader TOPIC PARTITION BROKER   move a partition leader (-1: no leader)\n"
    "  coordinator group|transaction KEY BROKER   set the coordinator of a key\n"
    "  errors APIKEY COUNT ERRCODE fail the next COUNT requests of APIKEY (a number\n"
    "                              or Produce, Fetch, ListOffsets, Metadata,\n"
    "                              OffsetCommit, OffsetFetch, FindCoordinator,\n"
    "                              JoinGroup, Heartbeat, LeaveGroup, SyncGroup,\n"
    "                              InitProducerId) with ERRCODE (a number or a name\n"
    "                              such as NOT_LEADER_FOR_PARTITION or _TRANSPORT)\n"
    "  clear APIKEY                drop the pending errors of APIKEY\n"
    "  help                        list the commands\n"
    "Broker ids run from 1 to --brokers-count. End of stdin is not a stop signal.\n"
    "Defaults: --partitions 12, --brokers-count 1.";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

struct devbroker {
    struct config cfg;
    rd_kafka_t *rk;                  /* owns the mock cluster's book keeping */
    rd_kafka_mock_cluster_t *mcluster;
    char *topics[N_TOPICS];
    int stdin_open;
    char line[LINE_MAX_LEN + 1];
    size_t line_len;
    int line_too_long;
};

static const struct {
    const char *name;
    int key;
} api_keys[] = {
    { "Produce", 0 }, { "Fetch", 1 }, { "ListOffsets", 2 }, { "Metadata", 3 },
    { "OffsetCommit", 8 }, { "OffsetFetch", 9 }, { "FindCoordinator", 10 },
    { "JoinGroup", 11 }, { "Heartbeat", 12 }, { "LeaveGroup", 13 }, { "SyncGroup", 14 },
    { "DescribeGroups", 15 }, { "ListGroups", 16 }, { "ApiVersions", 18 },
    { "InitProducerId", 22 }, { "AddPartitionsToTxn", 24 }, { "AddOffsetsToTxn", 25 },
    { "EndTxn", 26 }, { "TxnOffsetCommit", 28 },
};

/* Prints one answer line and flushes; the test scripts wait for it. */
static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* -1 (all brokers) or 1..brokers */
static int parse_broker(const struct devbroker *db, const char *s, int32_t *out, int allow_all)
{
    long v;

    if (config_parse_long(s, -1, INT32_MAX, &v) != 0)
        return -1;
    if (v == -1 ? !allow_all : (v < 1 || v > db->cfg.brokers))
        return -1;
    *out = (int32_t)v;
    return 0;
}

static int parse_api_key(const char *s, int16_t *out)
{
    long v;

    for (size_t i = 0; i < sizeof api_keys / sizeof api_keys[0]; i++) {
        if (strcasecmp(s, api_keys[i].name) == 0) {
            *out = (int16_t)api_keys[i].key;
            return 0;
        }
    }
    if (config_parse_long(s, 0, 100, &v) != 0)
        return -1;
    *out = (int16_t)v;
    return 0;
}

/* A number, or a name as rd_kafka_err2name() spells it (with or without
 * the RD_KAFKA_RESP_ERR_ prefix). */
static int parse_err_code(const char *s, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *descs;
    size_t n;
    long v;

    if (config_parse_long(s, INT_MIN, INT_MAX, &v) == 0) {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
        s += 18;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name != NULL && strcasecmp(descs[i].name, s) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    return -1;
}

static int known_partitions(const struct devbroker *db, const char *topic)
{
    for (int i = 0; i < N_TOPICS; i++)
        if (strcmp(db->topics[i], topic) == 0)
            return (int)db->cfg.partitions;
    return -1;
}

static void answer_mock(const char *what, rd_kafka_resp_err_t err)
{
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        reply("ok %s", what);
    else
        reply("error %s: %s", what, rd_kafka_err2str(err));
}

/* Splits line in place on blanks; at most max words. Returns the count. */
static int split_words(char *line, char **words, int max)
{
    int n = 0;
    char *save = NULL;

    for (char *w = strtok_r(line, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save)) {
        if (n == max)
            return max + 1;
        words[n++] = w;
    }
    return n;
}

/* One command: its words w[0..] (w[0] is its name) and the line as typed
 * (echo) for the answer. Each handler answers exactly one line. */
typedef void (*command_fn)(struct devbroker *db, char **w, const char *echo);

static void cmd_help(struct devbroker *db, char **w, const char *echo)
{
    (void)db;
    (void)w;
    (void)echo;
    reply("ok commands: down B, up B, rtt B MS, leader TOPIC P B, "
          "coordinator group|transaction KEY B, errors APIKEY COUNT ERRCODE, clear APIKEY");
}

/* down BROKER, up BROKER */
static void cmd_down_up(struct devbroker *db, char **w, const char *echo)
{
    int32_t broker;

    if (parse_broker(db, w[1], &broker, 1) != 0) {
        reply("error %s: broker '%s' is not -1 or 1..%ld", w[0], w[1], db->cfg.brokers);
        return;
    }
    if (w[0][0] == 'd')
        answer_mock(echo, rd_kafka_mock_broker_set_down(db->mcluster, broker));
    else
        answer_mock(echo, rd_kafka_mock_broker_set_up(db->mcluster, broker));
}

/* rtt BROKER MS */
static void cmd_rtt(struct devbroker *db, char **w, const char *echo)
{
    int32_t broker;
    long ms;

    if (parse_broker(db, w[1], &broker, 1) != 0) {
        reply("error rtt: broker '%s' is not -1 or 1..%ld", w[1], db->cfg.brokers);
        return;
    }
    if (config_parse_long(w[2], 0, 3600000, &ms) != 0) {
        reply("error rtt: '%s' is not a number of milliseconds", w[2]);
        return;
    }
    answer_mock(echo, rd_kafka_mock_broker_set_rtt(db->mcluster, broker, (int)ms));
}

/* leader TOPIC PARTITION BROKER */
static void cmd_leader(struct devbroker *db, char **w, const char *echo)
{
    int parts = known_partitions(db, w[1]);
    int32_t broker;
    long partition;

    if (parts < 0) {
        reply("error leader: unknown topic '%s'", w[1]);
        return;
    }
    if (config_parse_long(w[2], 0, parts - 1, &partition) != 0) {
        reply("error leader: partition '%s' is not 0..%d", w[2], parts - 1);
        return;
    }
    if (parse_broker(db, w[3], &broker, 1) != 0) {
        reply("error leader: broker '%s' is not -1 or 1..%ld", w[3], db->cfg.brokers);
        return;
    }
    answer_mock(echo, rd_kafka_mock_partition_set_leader(db->mcluster, w[1], (int32_t)partition, broker));
}

/* coordinator group|transaction KEY BROKER */
static void cmd_coordinator(struct devbroker *db, char **w, const char *echo)
{
    int32_t broker;

    if (strcmp(w[1], "group") != 0 && strcmp(w[1], "transaction") != 0) {
        reply("error coordinator: key type '%s' is not group or transaction", w[1]);
        return;
    }
    if (parse_broker(db, w[3], &broker, 0) != 0) {
        reply("error coordinator: broker '%s' is not 1..%ld", w[3], db->cfg.brokers);
        return;
    }
    answer_mock(echo, rd_kafka_mock_coordinator_set(db->mcluster, w[1], w[2], broker));
}

/* errors APIKEY COUNT ERRCODE */
static void cmd_errors(struct devbroker *db, char **w, const char *echo)
{
    rd_kafka_resp_err_t *codes;
    rd_kafka_resp_err_t code;
    int16_t api;
    long cnt;

    if (parse_api_key(w[1], &api) != 0) {
        reply("error errors: '%s' is not an api key", w[1]);
        return;
    }
    if (config_parse_long(w[2], 1, 100000, &cnt) != 0) {
        reply("error errors: count '%s' is not 1..100000", w[2]);
        return;
    }
    if (parse_err_code(w[3], &code) != 0) {
        reply("error errors: '%s' is not a librdkafka error code or name", w[3]);
        return;
    }
    codes = malloc((size_t)cnt * sizeof *codes);
    if (codes == NULL) {
        reply("error errors: out of memory");
        return;
    }
    for (long i = 0; i < cnt; i++)
        codes[i] = code;
    rd_kafka_mock_push_request_errors_array(db->mcluster, api, (size_t)cnt, codes);
    free(codes);
    reply("ok %s (%s)", echo, rd_kafka_err2name(code));
}

/* clear APIKEY */
static void cmd_clear(struct devbroker *db, char **w, const char *echo)
{
    int16_t api;

    if (parse_api_key(w[1], &api) != 0) {
        reply("error clear: '%s' is not an api key", w[1]);
        return;
    }
    rd_kafka_mock_clear_request_errors(db->mcluster, api);
    reply("ok %s", echo);
}

/* The commands, each with its number of words (the name included). */
static const struct {
    const char *name;
    int words;
    command_fn fn;
} commands[] = {
    { "help", 1, cmd_help },
    { "down", 2, cmd_down_up },
    { "up", 2, cmd_down_up },
    { "rtt", 3, cmd_rtt },
    { "leader", 4, cmd_leader },
    { "coordinator", 4, cmd_coordinator },
    { "errors", 4, cmd_errors },
    { "clear", 2, cmd_clear },
};

static void run_command(struct devbroker *db, char *line)
{
    char echo[LINE_MAX_LEN + 1];
    char *w[6];
    int n;

    snprintf(echo, sizeof echo, "%s", line);
    echo[strcspn(echo, "\r")] = '\0';
    n = split_words(line, w, 5);
    if (n == 0)
        return;
    log_info("event=command line=\"%s\"", echo);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(w[0], commands[i].name) == 0 && n == commands[i].words) {
            commands[i].fn(db, w, echo);
            return;
        }
    }
    reply("error unknown or malformed command '%s' (try: help)", echo);
}

/* Reads what stdin has, runs every complete line. Returns after at most
 * timeout_ms. At end of input the last unterminated line still runs. */
static void serve_stdin(struct devbroker *db, int timeout_ms)
{
    struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
    char buf[4096];
    ssize_t got;
    int rc;

    rc = poll(&pfd, 1, timeout_ms);
    if (rc <= 0)
        return;                         /* timeout, or EINTR from a signal */
    if (pfd.revents & POLLNVAL) {
        db->stdin_open = 0;
        return;
    }
    got = read(STDIN_FILENO, buf, sizeof buf);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (got <= 0) {
        if (got < 0)
            log_warn("event=stdin_error error=\"%s\"", strerror(errno));
        if (db->line_len > 0 && !db->line_too_long) {
            db->line[db->line_len] = '\0';
            run_command(db, db->line);
        }
        db->line_len = 0;
        db->stdin_open = 0;
        log_info("event=stdin_closed note=\"still serving until SIGTERM\"");
        return;
    }
    for (ssize_t i = 0; i < got; i++) {
        if (buf[i] == '\n') {
            db->line[db->line_len] = '\0';
            if (db->line_too_long)
                reply("error command longer than %d bytes", LINE_MAX_LEN);
            else
                run_command(db, db->line);
            db->line_len = 0;
            db->line_too_long = 0;
        } else if (db->line_len < LINE_MAX_LEN) {
            db->line[db->line_len++] = buf[i];
        } else {
            db->line_too_long = 1;
        }
    }
}

static void kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (strcmp(fac, "CONFWARN") == 0)   /* no bootstrap.servers: expected, we host it */
        log_debug("event=rdkafka fac=%s msg=\"%s\"", fac, buf);
    else if (level <= 3)
        log_error("event=rdkafka fac=%s msg=\"%s\"", fac, buf);
    else if (level <= 5)
        log_warn("event=rdkafka fac=%s msg=\"%s\"", fac, buf);
    else if (level == 6)
        log_info("event=rdkafka fac=%s msg=\"%s\"", fac, buf);
    else
        log_debug("event=rdkafka fac=%s msg=\"%s\"", fac, buf);
}

/* Kafka's own rule for topic names, with room for the -retry suffix. */
static int topic_name_ok(const char *name)
{
    size_t len = strlen(name);

    return len > 0 && len <= 200 &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

static int devbroker_start(struct devbroker *db, char *err, size_t errlen)
{
    char errstr[512];
    const char *base = db->cfg.nargs > 0 ? db->cfg.args[0] : DEFAULT_TOPIC;
    const char *suffix[N_TOPICS] = { "", "-retry", "-dlt", "", "-dlt" };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_resp_err_t kerr;
    int rc = -1;

    for (int i = 0; i < N_TOPICS; i++) {
        const char *name = i >= FIRST_STORED ? db->cfg.stored_topic : base;
        size_t len = strlen(name) + strlen(suffix[i]) + 1;
        db->topics[i] = malloc(len);
        if (db->topics[i] == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        snprintf(db->topics[i], len, "%s%s", name, suffix[i]);
    }

    rd_kafka_conf_set_log_cb(conf, kafka_log);
    if (rd_kafka_conf_set(conf, "client.id", PROGRAM, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        errmsg_set(err, errlen, "librdkafka conf: %s", errstr);
        goto out;
    }
    db->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (db->rk == NULL) {
        errmsg_set(err, errlen, "rd_kafka_new: %s", errstr);
        goto out;
    }
    conf = NULL; /* owned by db->rk now */

    db->mcluster = rd_kafka_mock_cluster_new(db->rk, (int)db->cfg.brokers);
    if (db->mcluster == NULL) {
        errmsg_set(err, errlen, "could not create a mock cluster of %ld brokers", db->cfg.brokers);
        goto out;
    }
    for (int i = 0; i < N_TOPICS; i++) {
        kerr = rd_kafka_mock_topic_create(db->mcluster, db->topics[i], (int)db->cfg.partitions, 1);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            errmsg_set(err, errlen, "creating topic '%s': %s", db->topics[i], rd_kafka_err2str(kerr));
            goto out;
        }
    }
    rc = 0;
out:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rc;
}

static void devbroker_free(struct devbroker *db)
{
    if (db->mcluster != NULL)
        rd_kafka_mock_cluster_destroy(db->mcluster);
    db->mcluster = NULL;
    if (db->rk != NULL)
        rd_kafka_destroy(db->rk);
    db->rk = NULL;
    for (int i = 0; i < N_TOPICS; i++) {
        free(db->topics[i]);
        db->topics[i] = NULL;
    }
    config_free(&db->cfg);
}

int main(int argc, char **argv)
{
    static struct devbroker db;
    struct sigaction sa;
    struct timespec tick = { 0, 100 * 1000 * 1000 };
    char err[1024];
    int exit_code = 1;
    int rc;

    rc = config_load(&db.cfg, CONFIG_DEVBROKER, usage, argc, argv, err, sizeof err);
    if (rc == 1) {
        exit_code = 0;
        goto out;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", PROGRAM, err);
        exit_code = 2;
        goto out;
    }
    if (db.cfg.nargs > 1) {
        fprintf(stderr, "%s: at most one positional argument (the topic), got %d\n", PROGRAM,
                db.cfg.nargs);
        exit_code = 2;
        goto out;
    }
    if (db.cfg.nargs == 1 && !topic_name_ok(db.cfg.args[0])) {
        fprintf(stderr, "%s: topic '%s' is not 1..200 characters of [a-zA-Z0-9._-]\n", PROGRAM,
                db.cfg.args[0]);
        exit_code = 2;
        goto out;
    }
    log_init(PROGRAM, log_level_parse(db.cfg.log_level));

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);  /* a gone reader of stdout must not kill the broker */

    if (devbroker_start(&db, err, sizeof err) != 0) {
        log_error("event=start_failed error=\"%s\"", err);
        goto out;
    }
    printf("KAFKA_BROKERS=%s\n", rd_kafka_mock_cluster_bootstraps(db.mcluster));
    fflush(stdout);
    log_info("event=ready brokers=%s topics=%s,%s,%s partitions=%ld broker_count=%ld",
             rd_kafka_mock_cluster_bootstraps(db.mcluster), db.topics[0], db.topics[1],
             db.topics[2], db.cfg.partitions, db.cfg.brokers);

    db.stdin_open = 1;
    while (!stop_requested) {
        if (db.stdin_open)
            serve_stdin(&db, 100);
        else
            nanosleep(&tick, NULL);
    }
    log_info("event=stopping");
    exit_code = 0;
out:
    devbroker_free(&db);
    return exit_code;
}
