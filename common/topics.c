#include "topics.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "errmsg.h"
#include "kafka.h"

/* ---- options ------------------------------------------------------------------ */

void topics_usage(FILE *out)
{
    fprintf(out,
            "Usage: imgcache-producer [options] topics [topic options]\n"
            "\n"
            "Creates the topics imgcache uses, through the Kafka Admin API:\n"
            "  TOPIC        cleanup.policy=compact (the key is the source URL: a replay\n"
            "               from the beginning sees every URL ever needed, once)\n"
            "  TOPIC-retry  cleanup.policy=delete, retention.ms from --retry-retention\n"
            "  TOPIC-dlt    cleanup.policy=delete, retention.ms from --dlt-retention\n"
            "  STORED       cleanup.policy=compact (image-stored events, keyed by the\n"
            "               blob's sha256: a new renderer group replays every blob once)\n"
            "  STORED-dlt   cleanup.policy=delete, retention.ms from --dlt-retention\n"
            "               (images imgcache-renderer gave up)\n"
            "TOPIC is IMGCACHE_TOPIC (--topic), STORED IMGCACHE_STORED_TOPIC (--stored-topic). A topic that exists is left unchanged;\n"
            "a setting that differs is reported on stderr.\n"
            "\n"
            "Topic options:\n"
            "  --partitions N             partitions of each new topic (default %d)\n"
            "  --replication-factor N     replicas of each partition; -1: the broker's\n"
            "                             default.replication.factor (default %d)\n"
            "  --retry-retention DUR      retention of TOPIC-retry (default 7d)\n"
            "  --dlt-retention DUR        retention of TOPIC-dlt and STORED-dlt (default 30d)\n"
            "  --config KEY=VALUE         a topic config of TOPIC, repeatable\n"
            "                             (e.g. segment.ms=100 for a compaction test)\n"
            "  --timeout DUR              bound on each request to the cluster (default 30s)\n"
            "  -h, --help                 this text\n"
            "DUR: 500ms, 5s, 2m, 1h, 7d or seconds. KAFKA_BROKERS and -X properties\n"
            "(SASL, TLS) are the producer's options, given before `topics`.\n"
            "\n"
            "Prints one line per topic (created, or exists with its partitions and\n"
            "configs) and a summary: created=N existing=N differing=N\n"
            "Exit status: 0 done (a differing partition count or retention is only a\n"
            "warning); 1 the cluster did not answer or failed, or TOPIC exists with\n"
            "another cleanup.policy or --config value; 2 a bad option, or a setting the\n"
            "cluster refused (e.g. a replication factor above its broker count).\n",
            TOPICS_DEFAULT_PARTITIONS, TOPICS_DEFAULT_REPLICATION);
}

static int kv_append(struct config_kv **items, size_t *n, const char *key, size_t keylen,
                     const char *value, char *err, size_t errlen)
{
    struct config_kv *grown = realloc(*items, (*n + 1) * sizeof *grown);

    if (grown == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    *items = grown;
    grown[*n].key = strndup(key, keylen);
    grown[*n].value = strdup(value);
    (*n)++;
    if (grown[*n - 1].key == NULL || grown[*n - 1].value == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void kv_free(struct config_kv *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].key);
        free(items[i].value);
    }
    free(items);
}

/* The value of option `name` at argv[*i]: after '=' in the same word, or
 * the next word. NULL when argv[*i] is not this option; *missing = 1 when
 * it is but has no value. */
static const char *option_value(const char *name, int argc, char **argv, int *i, int *missing)
{
    size_t len = strlen(name);
    const char *word = argv[*i];

    if (strncmp(word, name, len) != 0)
        return NULL;
    if (word[len] == '=')
        return word + len + 1;
    if (word[len] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

int topics_options_parse(struct topics_options *opts, int argc, char **argv, char *err, size_t errlen)
{
    memset(opts, 0, sizeof *opts);
    opts->partitions = TOPICS_DEFAULT_PARTITIONS;
    opts->replication_factor = TOPICS_DEFAULT_REPLICATION;
    opts->retry_retention_ms = TOPICS_DEFAULT_RETRY_RETENTION_MS;
    opts->dlt_retention_ms = TOPICS_DEFAULT_DLT_RETENTION_MS;
    opts->timeout_ms = TOPICS_DEFAULT_TIMEOUT_MS;

    for (int i = 0; i < argc; i++) {
        const char *word = argv[i];
        const char *v;
        int missing = 0;

        if (strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0) {
            opts->help = 1;
        } else if ((v = option_value("--partitions", argc, argv, &i, &missing)) != NULL) {
            if (config_parse_long(v, 1, 100000, &opts->partitions) != 0) {
                errmsg_set(err, errlen, "topics --partitions: '%s' is not a whole number in 1..100000", v);
                return -1;
            }
        } else if (!missing && (v = option_value("--replication-factor", argc, argv, &i, &missing)) != NULL) {
            /* 0 and below -1 mean nothing to the broker */
            if (config_parse_long(v, -1, 32767, &opts->replication_factor) != 0 ||
                opts->replication_factor == 0) {
                errmsg_set(err, errlen,
                           "topics --replication-factor: '%s' is not a whole number in 1..32767, or -1 "
                           "(the broker's default)", v);
                return -1;
            }
        } else if (!missing && (v = option_value("--retry-retention", argc, argv, &i, &missing)) != NULL) {
            if (config_parse_duration(v, &opts->retry_retention_ms) != 0 || opts->retry_retention_ms < 1) {
                errmsg_set(err, errlen, "topics --retry-retention: '%s' is not a duration "
                           "(500ms, 5s, 2m, 1h, 7d or seconds)", v);
                return -1;
            }
        } else if (!missing && (v = option_value("--dlt-retention", argc, argv, &i, &missing)) != NULL) {
            if (config_parse_duration(v, &opts->dlt_retention_ms) != 0 || opts->dlt_retention_ms < 1) {
                errmsg_set(err, errlen, "topics --dlt-retention: '%s' is not a duration "
                           "(500ms, 5s, 2m, 1h, 7d or seconds)", v);
                return -1;
            }
        } else if (!missing && (v = option_value("--timeout", argc, argv, &i, &missing)) != NULL) {
            /* librdkafka takes the timeouts as int milliseconds */
            if (config_parse_duration(v, &opts->timeout_ms) != 0 || opts->timeout_ms < 100 ||
                opts->timeout_ms > 3600000) {
                errmsg_set(err, errlen, "topics --timeout: '%s' is not a duration from 100ms to 1h", v);
                return -1;
            }
        } else if (!missing && (v = option_value("--config", argc, argv, &i, &missing)) != NULL) {
            const char *eq = strchr(v, '=');
            if (eq == NULL || eq == v || eq[1] == '\0') {
                errmsg_set(err, errlen, "topics --config: '%s' is not KEY=VALUE", v);
                return -1;
            }
            if (opts->n_extra >= TOPICS_MAX_EXTRA) {
                errmsg_set(err, errlen, "topics --config: more than %d", TOPICS_MAX_EXTRA);
                return -1;
            }
            if (kv_append(&opts->extra, &opts->n_extra, v, (size_t)(eq - v), eq + 1, err, errlen) != 0)
                return -1;
        } else if (missing) {
            errmsg_set(err, errlen, "topics %s: needs a value (see topics --help)", word);
            return -1;
        } else {
            /* never echo a value: "--x=SECRET" is shown up to '=' */
            errmsg_set(err, errlen, "topics: unknown option or argument '%.*s' (see topics --help)",
                       (int)strcspn(word, "="), word);
            return -1;
        }
    }
    return 0;
}

void topics_options_release(struct topics_options *opts)
{
    kv_free(opts->extra, opts->n_extra);
    opts->extra = NULL;
    opts->n_extra = 0;
}

/* ---- the plan ----------------------------------------------------------------- */

/* Sets key to value in spec, replacing an earlier value of the same key. */
static int spec_set(struct topic_spec *spec, const char *key, const char *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < spec->n_configs; i++) {
        if (strcmp(spec->configs[i].key, key) == 0) {
            char *copy = strdup(value);
            if (copy == NULL) {
                errmsg_set(err, errlen, "out of memory");
                return -1;
            }
            free(spec->configs[i].value);
            spec->configs[i].value = copy;
            return 0;
        }
    }
    return kv_append(&spec->configs, &spec->n_configs, key, strlen(key), value, err, errlen);
}

int topics_plan_build(struct topics_plan *plan, const char *topic, const char *stored_topic,
                      const struct topics_options *opts, char *err, size_t errlen)
{
    static const char *const suffix[TOPICS_COUNT] = { "", "-retry", "-dlt", "", "-dlt" };
    char ms[32];
    int rc = -1;

    memset(plan, 0, sizeof *plan);
    plan->partitions = opts->partitions;
    plan->replication_factor = opts->replication_factor;
    for (int t = 0; t < TOPICS_COUNT; t++) {
        int stored = t == TOPICS_STORED || t == TOPICS_STORED_DLT;
        const char *base = stored ? stored_topic : topic;
        size_t len = strlen(base) + strlen(suffix[t]) + 1;
        /* Kafka's limit on a topic name */
        if (len - 1 > 249) {
            errmsg_set(err, errlen, "%s: '%s%s' is longer than Kafka's 249 characters",
                       stored ? "IMGCACHE_STORED_TOPIC" : "IMGCACHE_TOPIC", base, suffix[t]);
            goto out;
        }
        plan->topics[t].name = malloc(len);
        if (plan->topics[t].name == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        snprintf(plan->topics[t].name, len, "%s%s", base, suffix[t]);
    }

    plan->topics[0].configs_required = 1;
    if (spec_set(&plan->topics[0], "cleanup.policy", "compact", err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < opts->n_extra; i++)
        if (spec_set(&plan->topics[0], opts->extra[i].key, opts->extra[i].value, err, errlen) != 0)
            goto out;

    snprintf(ms, sizeof ms, "%lld", opts->retry_retention_ms);
    if (spec_set(&plan->topics[1], "cleanup.policy", "delete", err, errlen) != 0 ||
        spec_set(&plan->topics[1], "retention.ms", ms, err, errlen) != 0)
        goto out;
    snprintf(ms, sizeof ms, "%lld", opts->dlt_retention_ms);
    if (spec_set(&plan->topics[2], "cleanup.policy", "delete", err, errlen) != 0 ||
        spec_set(&plan->topics[2], "retention.ms", ms, err, errlen) != 0 ||
        spec_set(&plan->topics[TOPICS_STORED_DLT], "cleanup.policy", "delete", err, errlen) != 0 ||
        spec_set(&plan->topics[TOPICS_STORED_DLT], "retention.ms", ms, err, errlen) != 0)
        goto out;
    /* a replay under a new group is bounded by the number of blobs */
    if (spec_set(&plan->topics[TOPICS_STORED], "cleanup.policy", "compact", err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        topics_plan_release(plan);
    return rc;
}

void topics_plan_release(struct topics_plan *plan)
{
    for (int t = 0; t < TOPICS_COUNT; t++) {
        free(plan->topics[t].name);
        plan->topics[t].name = NULL;
        kv_free(plan->topics[t].configs, plan->topics[t].n_configs);
        plan->topics[t].configs = NULL;
        plan->topics[t].n_configs = 0;
    }
}

enum topics_diff topics_compare(const struct topic_spec *spec, size_t config_index, const char *actual,
                                char *msg, size_t msglen)
{
    const struct config_kv *want = &spec->configs[config_index];

    if (actual != NULL && strcmp(actual, want->value) == 0)
        return TOPICS_DIFF_NONE;
    errmsg_set(msg, msglen, "topic %s: %s is %s, expected %s (left unchanged)", spec->name, want->key,
               actual ? actual : "not reported", want->value);
    return spec->configs_required ? TOPICS_DIFF_REQUIRED : TOPICS_DIFF_NOTE;
}

/* ---- the cluster -------------------------------------------------------------- */

static long long monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "30s" or "1500ms", for messages. */
static void format_ms(long long ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%llds", ms / 1000);
    else
        snprintf(buf, len, "%lldms", ms);
}

/* Room for every config of a planned topic: the main topic has
 * cleanup.policy and each --config, the others retention.ms. */
#define TOPIC_CONFIGS_MAX (TOPICS_MAX_EXTRA + 2)

/* What the metadata says of one planned topic. */
struct topic_state {
    int exists;
    int partitions;    /* -1: not known yet (created by this run or a racer) */
    int replicas;      /* of partition 0 */
    int created;       /* by this run */
};

static int read_metadata(rd_kafka_t *rk, const struct config *cfg, const struct topics_plan *plan,
                         long long timeout_ms, struct topic_state *state, int *brokers,
                         char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t rerr;
    char t[32];

    rerr = rd_kafka_metadata(rk, 1, NULL, &md, (int)timeout_ms);
    if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        format_ms(timeout_ms, t, sizeof t);
        errmsg_set(err, errlen, "the cluster at KAFKA_BROKERS=%s did not answer within %s (--timeout): %s",
                   cfg->kafka_brokers, t, rd_kafka_err2str(rerr));
        return -1;
    }
    *brokers = md->broker_cnt;
    for (int p = 0; p < TOPICS_COUNT; p++) {
        memset(&state[p], 0, sizeof state[p]);
        for (int i = 0; i < md->topic_cnt; i++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[i];
            if (strcmp(mt->topic, plan->topics[p].name) != 0 || mt->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                continue;
            state[p].exists = 1;
            state[p].partitions = mt->partition_cnt;
            state[p].replicas = mt->partition_cnt > 0 ? mt->partitions[0].replica_cnt : 0;
        }
    }
    rd_kafka_metadata_destroy(md);
    return 0;
}

/* CreateTopics answers once the controller has the topic; the broker's
 * metadata shows it a moment later, and until then a producer, a worker
 * or DescribeConfigs would not find it. So a topic created here (or by a
 * racer) counts once the metadata shows its partitions. */
static int wait_for_metadata(rd_kafka_t *rk, const struct config *cfg, const struct topics_plan *plan,
                             long long timeout_ms, struct topic_state *state, char *err, size_t errlen)
{
    const struct timespec pause = { 0, 100 * 1000000L };
    long long deadline = monotonic_ms() + timeout_ms;
    struct topic_state now[TOPICS_COUNT];
    int brokers, pending;
    char t[32];

    for (;;) {
        pending = -1;
        for (int p = 0; p < TOPICS_COUNT; p++)
            if (state[p].exists && state[p].partitions < 0)
                pending = p;
        if (pending < 0)
            return 0;
        if (monotonic_ms() > deadline) {
            format_ms(timeout_ms, t, sizeof t);
            errmsg_set(err, errlen, "topic %s exists, but the metadata of the cluster at KAFKA_BROKERS=%s "
                       "does not show it after %s (--timeout)", plan->topics[pending].name,
                       cfg->kafka_brokers, t);
            return -1;
        }
        /* the last look may take what is left, at least 100 ms */
        if (read_metadata(rk, cfg, plan, deadline - monotonic_ms() > 100 ? deadline - monotonic_ms() : 100,
                          now, &brokers, err, errlen) != 0)
            return -1;
        for (int p = 0; p < TOPICS_COUNT; p++) {
            if (state[p].exists && state[p].partitions < 0 && now[p].exists && now[p].partitions > 0) {
                state[p].partitions = now[p].partitions;
                state[p].replicas = now[p].replicas;
            }
        }
        nanosleep(&pause, NULL);
    }
}

/* Sets the request timeout (and the broker-side operation timeout, which
 * must end first so the broker's answer still arrives) on options. */
static int admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op, long long timeout_ms,
                         rd_kafka_AdminOptions_t **out, char *err, size_t errlen)
{
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, op);
    char errstr[512];

    if (o == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    if (rd_kafka_AdminOptions_set_request_timeout(o, (int)timeout_ms, errstr, sizeof errstr) != 0 ||
        (op == RD_KAFKA_ADMIN_OP_CREATETOPICS &&
         rd_kafka_AdminOptions_set_operation_timeout(o, (int)(timeout_ms * 2 / 3), errstr, sizeof errstr) != 0)) {
        errmsg_set(err, errlen, "admin options: %s", errstr);
        rd_kafka_AdminOptions_destroy(o);
        return -1;
    }
    *out = o;
    return 0;
}

/* Waits for the result of an admin request (its own request timeout
 * fires first; the margin is for a librdkafka that never answers). The
 * event is the caller's, freed with rd_kafka_event_destroy(). */
static int admin_wait(rd_kafka_queue_t *q, const struct config *cfg, const char *what, long long timeout_ms,
                      rd_kafka_event_t **out, char *err, size_t errlen)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, (int)timeout_ms + 5000);
    char t[32];

    format_ms(timeout_ms, t, sizeof t);
    if (ev == NULL) {
        errmsg_set(err, errlen, "%s: no answer from the cluster at KAFKA_BROKERS=%s within %s (--timeout)",
                   what, cfg->kafka_brokers, t);
        return -1;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__TIMED_OUT)
            errmsg_set(err, errlen, "%s: no answer from the cluster at KAFKA_BROKERS=%s within %s (--timeout); "
                       "a broker without the Admin API (such as imgcache-devbroker) never answers",
                       what, cfg->kafka_brokers, t);
        else
            errmsg_set(err, errlen, "%s at KAFKA_BROKERS=%s: %s", what, cfg->kafka_brokers,
                       rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return -1;
    }
    *out = ev;
    return 0;
}

/* Prints "KEY VALUE, KEY VALUE" of spec's configs (values from `values`,
 * or the plan's when NULL). */
static void print_configs(FILE *out, const struct topic_spec *spec, const char *const *values)
{
    for (size_t c = 0; c < spec->n_configs; c++)
        fprintf(out, ", %s %s", spec->configs[c].key,
                values ? (values[c] ? values[c] : "?") : spec->configs[c].value);
}

/* Handles the answer of CreateTopics for each topic: prints "created"
 * (unless validate_only), marks a topic created meanwhile by someone else
 * as existing, and turns the first refusal into a message naming the
 * setting. */
static int create_results(const struct config *cfg, const struct topics_plan *plan,
                          const rd_kafka_topic_result_t **results, size_t n_results, int validate_only,
                          int brokers, struct topic_state *state, FILE *out, struct topics_result *res,
                          char *err, size_t errlen)
{
    int rc = 0;

    for (size_t r = 0; r < n_results; r++) {
        const char *name = rd_kafka_topic_result_name(results[r]);
        rd_kafka_resp_err_t terr = rd_kafka_topic_result_error(results[r]);
        const char *msg = rd_kafka_topic_result_error_string(results[r]);
        int p = 0;

        while (p < TOPICS_COUNT && strcmp(plan->topics[p].name, name) != 0)
            p++;
        if (p == TOPICS_COUNT)
            continue;
        if (msg == NULL)
            msg = rd_kafka_err2str(terr);
        if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (validate_only)
                continue;
            fprintf(out, "topic %s created (partitions %ld, replication-factor ", name, plan->partitions);
            if (plan->replication_factor < 0)
                fprintf(out, "default");
            else
                fprintf(out, "%ld", plan->replication_factor);
            print_configs(out, &plan->topics[p], NULL);
            fprintf(out, ")\n");
            res->created++;
            state[p].exists = 1;
            state[p].partitions = -1;
            state[p].created = 1;
            continue;
        }
        if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            /* created by someone else since the metadata: read it back */
            state[p].exists = 1;
            state[p].partitions = -1;
            continue;
        }
        if (rc != 0)
            continue; /* the first error is the one reported */
        rc = -1;
        if (terr == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR && plan->replication_factor > brokers) {
            errmsg_set(err, errlen, "--replication-factor %ld is more than the %d broker(s) of the cluster",
                       plan->replication_factor, brokers);
            res->bad_setting = 1;
        } else if (terr == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR) {
            errmsg_set(err, errlen, "--replication-factor %ld: the cluster refused it: %s",
                       plan->replication_factor, msg);
            res->bad_setting = 1;
        } else if (terr == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS) {
            errmsg_set(err, errlen, "--partitions %ld: the cluster refused it: %s", plan->partitions, msg);
            res->bad_setting = 1;
        } else if (terr == RD_KAFKA_RESP_ERR_INVALID_CONFIG || terr == RD_KAFKA_RESP_ERR_POLICY_VIOLATION) {
            errmsg_set(err, errlen, "topic %s: the cluster refused its configuration (--config, "
                       "--retry-retention, --dlt-retention): %s", name, msg);
            res->bad_setting = 1;
        } else {
            errmsg_set(err, errlen, "topic %s: CreateTopics at KAFKA_BROKERS=%s failed: %s: %s", name,
                       cfg->kafka_brokers, rd_kafka_err2name(terr), msg);
        }
    }
    return rc;
}

/* Creates the topics of the plan that state marks missing; marks those
 * that appeared meanwhile as existing. */
static int create_missing(rd_kafka_t *rk, rd_kafka_queue_t *q, const struct config *cfg,
                          const struct topics_plan *plan, long long timeout_ms, int brokers,
                          struct topic_state *state, FILE *out, struct topics_result *res,
                          char *err, size_t errlen)
{
    rd_kafka_NewTopic_t *nt[TOPICS_COUNT] = { NULL };
    rd_kafka_AdminOptions_t *options = NULL;
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_topic_result_t **results;
    size_t n_new = 0, n_results = 0;
    char errstr[512];
    int rc = -1;

    for (int p = 0; p < TOPICS_COUNT; p++) {
        const struct topic_spec *spec = &plan->topics[p];
        if (state[p].exists)
            continue;
        nt[n_new] = rd_kafka_NewTopic_new(spec->name, (int)plan->partitions, (int)plan->replication_factor,
                                          errstr, sizeof errstr);
        if (nt[n_new] == NULL) {
            errmsg_set(err, errlen, "topic %s: %s", spec->name, errstr);
            res->bad_setting = 1;
            goto out;
        }
        n_new++;
        for (size_t c = 0; c < spec->n_configs; c++) {
            if (rd_kafka_NewTopic_set_config(nt[n_new - 1], spec->configs[c].key, spec->configs[c].value) != 0) {
                errmsg_set(err, errlen, "topic %s: cannot set %s", spec->name, spec->configs[c].key);
                goto out;
            }
        }
    }
    if (n_new == 0)
        return 0;

    /* A dry run first: a setting the cluster refuses (a replication factor
     * above its broker count, an unknown --config) creates none of the
     * three, instead of some */
    for (int validate_only = 1; validate_only >= 0; validate_only--) {
        if (options)
            rd_kafka_AdminOptions_destroy(options);
        options = NULL;
        if (ev)
            rd_kafka_event_destroy(ev);
        ev = NULL;
        if (admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms, &options, err, errlen) != 0)
            goto out;
        if (rd_kafka_AdminOptions_set_validate_only(options, validate_only, errstr, sizeof errstr) != 0) {
            errmsg_set(err, errlen, "admin options: %s", errstr);
            goto out;
        }
        rd_kafka_CreateTopics(rk, nt, n_new, options, q);
        if (admin_wait(q, cfg, "CreateTopics", timeout_ms, &ev, err, errlen) != 0)
            goto out;
        results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n_results);
        if (create_results(cfg, plan, results, n_results, validate_only, brokers, state, out, res,
                           err, errlen) != 0)
            goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < n_new; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    if (options)
        rd_kafka_AdminOptions_destroy(options);
    if (ev)
        rd_kafka_event_destroy(ev);
    return rc;
}

/* 1 when the answer names a topic the broker does not know (yet). */
static int describe_unknown_topic(rd_kafka_event_t *ev)
{
    size_t n = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);

    for (size_t i = 0; i < n; i++)
        if (rd_kafka_ConfigResource_error(rs[i]) == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            return 1;
    return 0;
}

/* DescribeConfigs of the existing topics; *out is the caller's. A topic
 * created a moment ago (by this run's race or another run) is in the
 * metadata before the broker describes it: such an answer is asked again
 * until timeout_ms has passed. */
static int describe_configs(rd_kafka_t *rk, rd_kafka_queue_t *q, const struct config *cfg,
                            const struct topics_plan *plan, long long timeout_ms,
                            const struct topic_state *state, rd_kafka_event_t **out,
                            char *err, size_t errlen)
{
    rd_kafka_ConfigResource_t *cr[TOPICS_COUNT] = { NULL };
    rd_kafka_AdminOptions_t *options = NULL;
    rd_kafka_event_t *ev = NULL;
    long long deadline = monotonic_ms() + timeout_ms;
    size_t n_cr = 0;
    int rc = -1;

    for (int p = 0; p < TOPICS_COUNT; p++) {
        if (!state[p].exists || state[p].created)
            continue;
        cr[n_cr] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, plan->topics[p].name);
        if (cr[n_cr] == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        n_cr++;
    }
    if (admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout_ms, &options, err, errlen) != 0)
        goto out;
    for (;;) {
        const struct timespec pause = { 0, 200 * 1000000L };
        rd_kafka_DescribeConfigs(rk, cr, n_cr, options, q);
        if (admin_wait(q, cfg, "DescribeConfigs", timeout_ms, &ev, err, errlen) != 0)
            goto out;
        if (!describe_unknown_topic(ev) || monotonic_ms() + 200 > deadline)
            break;
        rd_kafka_event_destroy(ev);
        ev = NULL;
        nanosleep(&pause, NULL);
    }
    *out = ev;
    ev = NULL;
    rc = 0;
out:
    for (size_t i = 0; i < n_cr; i++)
        rd_kafka_ConfigResource_destroy(cr[i]);
    if (options)
        rd_kafka_AdminOptions_destroy(options);
    if (ev)
        rd_kafka_event_destroy(ev);
    return rc;
}

/* Warns of each way an existing topic differs from the plan: its configs
 * (values[i] is the value of spec->configs[i], NULL when unset), its
 * partition count and its replication factor; counts them in res. */
static void warn_differences(const struct topic_spec *spec, const char *const *values,
                             const struct topic_state *state, const struct topics_plan *plan, FILE *warn,
                             struct topics_result *res)
{
    char msg[512];

    for (size_t c = 0; c < spec->n_configs && c < TOPIC_CONFIGS_MAX; c++) {
        enum topics_diff diff = topics_compare(spec, c, values[c], msg, sizeof msg);
        if (diff == TOPICS_DIFF_NONE)
            continue;
        fprintf(warn, "imgcache-producer: warning: %s\n", msg);
        if (diff == TOPICS_DIFF_REQUIRED)
            res->required++;
        else
            res->notes++;
    }
    /* more or fewer partitions only change how far the fleet scales */
    if (state->partitions >= 0 && state->partitions != plan->partitions) {
        fprintf(warn, "imgcache-producer: warning: topic %s: partitions is %d, expected %ld (left unchanged)\n",
                spec->name, state->partitions, plan->partitions);
        res->notes++;
    }
    if (plan->replication_factor > 0 && state->partitions > 0 && state->replicas != plan->replication_factor) {
        fprintf(warn, "imgcache-producer: warning: topic %s: replication-factor is %d, expected %ld "
                "(left unchanged)\n", spec->name, state->replicas, plan->replication_factor);
        res->notes++;
    }
}

/* Reads the configs of the existing topics and reports what differs. */
static int check_existing(rd_kafka_t *rk, rd_kafka_queue_t *q, const struct config *cfg,
                          const struct topics_plan *plan, long long timeout_ms,
                          const struct topic_state *state, FILE *out, FILE *warn,
                          struct topics_result *res, char *err, size_t errlen)
{
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_ConfigResource_t **described;
    size_t n_described = 0;
    int any = 0;
    int rc = -1;

    for (int p = 0; p < TOPICS_COUNT; p++)
        any |= state[p].exists && !state[p].created;
    if (!any)
        return 0;
    if (describe_configs(rk, q, cfg, plan, timeout_ms, state, &ev, err, errlen) != 0)
        goto out;
    described = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n_described);

    for (int p = 0; p < TOPICS_COUNT; p++) {
        const struct topic_spec *spec = &plan->topics[p];
        const rd_kafka_ConfigResource_t *found = NULL;
        const rd_kafka_ConfigEntry_t **entries = NULL;
        const char *values[TOPIC_CONFIGS_MAX] = { NULL };
        size_t n_entries = 0;

        if (!state[p].exists || state[p].created)
            continue;
        for (size_t d = 0; d < n_described; d++)
            if (strcmp(rd_kafka_ConfigResource_name(described[d]), spec->name) == 0)
                found = described[d];
        if (found == NULL || rd_kafka_ConfigResource_error(found) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            errmsg_set(err, errlen, "topic %s: DescribeConfigs at KAFKA_BROKERS=%s failed: %s", spec->name,
                       cfg->kafka_brokers, found ? rd_kafka_ConfigResource_error_string(found) : "no answer for it");
            goto out;
        }
        entries = rd_kafka_ConfigResource_configs(found, &n_entries);
        for (size_t c = 0; c < spec->n_configs && c < sizeof values / sizeof values[0]; c++)
            for (size_t e = 0; e < n_entries; e++)
                if (strcmp(rd_kafka_ConfigEntry_name(entries[e]), spec->configs[c].key) == 0)
                    values[c] = rd_kafka_ConfigEntry_value(entries[e]);

        fprintf(out, "topic %s exists (partitions ", spec->name);
        if (state[p].partitions >= 0)
            fprintf(out, "%d", state[p].partitions);
        else
            fprintf(out, "?");
        print_configs(out, spec, values);
        fprintf(out, ")\n");
        res->existing++;
        warn_differences(spec, values, &state[p], plan, warn, res);
    }
    rc = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    return rc;
}

int topics_ensure(const struct config *cfg, const struct topics_plan *plan, long long timeout_ms,
                  FILE *out, FILE *warn, struct topics_result *res, char *err, size_t errlen)
{
    struct topic_state state[TOPICS_COUNT];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    char errstr[512];
    int brokers = 0;
    int rc = -1;

    memset(res, 0, sizeof *res);
    if (conf == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    if (kafka_conf_apply(conf, cfg, "imgcache-topics", err, errlen) != 0) {
        res->bad_setting = 1;
        goto out;
    }
    kafka_conf_set_logger(conf);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        errmsg_set(err, errlen, "cannot create a Kafka client: %s", errstr);
        res->bad_setting = 1;
        goto out;
    }
    conf = NULL; /* rk owns it now */
    q = rd_kafka_queue_new(rk);
    if (q == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }

    if (read_metadata(rk, cfg, plan, timeout_ms, state, &brokers, err, errlen) != 0)
        goto out;
    if (create_missing(rk, q, cfg, plan, timeout_ms, brokers, state, out, res, err, errlen) != 0)
        goto out;
    if (wait_for_metadata(rk, cfg, plan, timeout_ms, state, err, errlen) != 0)
        goto out;
    if (check_existing(rk, q, cfg, plan, timeout_ms, state, out, warn, res, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (q)
        rd_kafka_queue_destroy(q);
    if (rk)
        rd_kafka_destroy(rk);
    if (conf)
        rd_kafka_conf_destroy(conf);
    return rc;
}
