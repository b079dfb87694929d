#ifndef IMGCACHE_CONFIG_H
#define IMGCACHE_CONFIG_H
/* Configuration from the environment, overridden by --flags, for every
 * program. One table in config.c lists each setting once: its variable, its
 * flag, its type, its default and its help; --help is printed from it, so
 * README, --help and behaviour stay in agreement.
 *
 * Ownership: config_load() fills a struct config that owns all its strings
 * (including kafka_props); config_free() frees them. args points into argv
 * and is borrowed. Secrets (tokens) are read from the environment only, never
 * from flags, so they do not show in `ps`. */
#include <stddef.h>
#include <stdio.h>

#include "errmsg.h"

enum config_program {
    CONFIG_PRODUCER = 1u << 0,
    CONFIG_WORKER = 1u << 1,
    CONFIG_DEVBROKER = 1u << 2,
    CONFIG_RENDERER = 1u << 3,
};

struct config_kv {
    char *key;
    char *value;
};

struct config {
    /* shared */
    char *kafka_brokers;
    char *topic;
    char *group;
    char *redis_url;
    char *database_url;
    char *storage_dir;
    char *public_url;
    char *beeper_api_url;
    char *beeper_api_token;
    char *beeper_media_server;
    char *beeper_media_token;
    char *beeper_media_dir;
    char *log_level;
    char *kafka_config;             /* IMGCACHE_KAFKA_CONFIG as given */
    char *kafka_config_file;        /* IMGCACHE_KAFKA_CONFIG_FILE */
    struct config_kv *kafka_props;  /* the file, IMGCACHE_KAFKA_CONFIG, then each -X */
    size_t n_kafka_props;

    /* worker */
    long concurrency;
    long long max_bytes;
    long long body_memory;
    long long max_pixels;
    long long lease_ttl_ms;
    long long connect_timeout_ms;
    long long fetch_timeout_ms;
    long long grace_ms;
    long long drain_wait_ms;
    long long recheck_ms;
    long long failure_ttl_ms;
    char *retry_backoff;
    long long retry_after_max_ms;
    long retry_hold_max;
    char *allow_hosts;
    char *http_proxy;           /* a secret: may carry the proxy's password */
    long breaker_threshold;
    long long breaker_cooldown_ms;
    char *worker_id;
    char *metrics_addr;         /* IMGCACHE_METRICS_ADDR; "" when off */
    int drain;
    int from_beginning;

    /* renderer (and the producer's `renditions` command, the worker's topic) */
    char *stored_topic;         /* IMGCACHE_STORED_TOPIC */
    char *renditions;           /* IMGCACHE_RENDITIONS as given; parse with config_parse_renditions() */
    char *render_group;
    long render_quality;
    long long render_timeout_ms;
    long render_attempts;

    /* producer */
    long batch_size;
    long long sync_timeout_ms;

    /* devbroker */
    long partitions;
    long brokers;

    /* positional arguments after the options; borrowed from argv */
    char **args;
    int nargs;
};

/* Fills cfg for `program` from the environment and argv.
 * Returns 0 on success, 1 when --help was printed to stdout (exit 0), and -1
 * with a one-line message naming the variable or flag in err (exit 2).
 * Call config_free() afterwards in every case. */
int config_load(struct config *cfg, unsigned program, const char *usage,
                int argc, char **argv, char *err, size_t errlen) MUST_CHECK;
void config_free(struct config *cfg);
void config_usage(FILE *out, unsigned program, const char *usage);

/* "500ms", "5s", "2m", "1h", "7d" or a bare number of seconds -> ms. */
int config_parse_duration(const char *s, long long *ms_out) MUST_CHECK;
/* A whole decimal number in [min, max] -> *out; -1 otherwise. */
int config_parse_long(const char *s, long min, long max, long *out) MUST_CHECK;
/* "10MiB", "512KiB", "1GiB", "10MB", "10kB" or bare bytes -> bytes. */
int config_parse_size(const char *s, long long *bytes_out) MUST_CHECK;
/* IMGCACHE_RETRY_BACKOFF's bounds: how many steps, and the longest one. */
#define CONFIG_RETRY_STEPS_MAX 16
#define CONFIG_RETRY_STEP_MAX_MS (7LL * 24 * 3600 * 1000)
/* "2s,8s,32s": at least one step, none empty, each a duration of at most
 * step_max_ms; at most max_steps of them into steps[]. 0, or -1 with a
 * reason in why (the list is quoted: it holds no secret). */
int config_parse_duration_list(const char *s, long long *steps, int max_steps, long long step_max_ms,
                               int *n_out, char *why, size_t whylen) MUST_CHECK;
/* IMGCACHE_RENDITIONS' bounds: preset sizes in px, how many. */
#define CONFIG_RENDITION_MIN 16
#define CONFIG_RENDITION_MAX 2048
#define CONFIG_RENDITIONS_MAX 16
/* "64,128,256": 1 to max_sizes whole numbers in
 * [CONFIG_RENDITION_MIN, CONFIG_RENDITION_MAX], no duplicates, into sizes[]
 * in the order given. 0, or -1 with a reason in why. */
int config_parse_renditions(const char *s, int *sizes, int max_sizes, int *n_out, char *why, size_t whylen)
    MUST_CHECK;
/* librdkafka properties. None of these ever puts a value, or a piece of
 * the text it refuses, into err: a value may be a password.
 *
 * Splits "a=b,c=d" and appends to cfg->kafka_props; inside an item "\,"
 * is a comma and "\\" a backslash (any other backslash is kept), so a
 * value can carry any byte. -1 on an item without a key or '='. */
int config_add_kafka_props(struct config *cfg, const char *list, char *err, size_t errlen)
    MUST_CHECK;
/* Appends one "key=value" (as -X): the value is everything after the first
 * '=', verbatim. */
int config_add_kafka_prop(struct config *cfg, const char *item, char *err, size_t errlen)
    MUST_CHECK;
/* Appends the properties of a file in kcat -F's format: one key=value a
 * line, blank lines and lines starting with '#' skipped, whitespace around
 * the key trimmed, the value verbatim to the end of the line (a trailing
 * CR dropped). */
int config_read_kafka_file(struct config *cfg, const char *path, char *err, size_t errlen)
    MUST_CHECK;
/* 1 when a librdkafka property holds a secret (its name ends in password,
 * secret, key or token, or it is ssl.key.pem or sasl.oauthbearer.config):
 * its value is never printed. */
int config_kafka_key_is_secret(const char *key);

#endif
