/* config: durations, sizes, librdkafka passthrough, and config_load()'s
 * order (defaults < environment < flags) and refusals. Each test starts from
 * an environment without any of our variables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "config.h"

#define USAGE "usage: test [options]"
#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

static const char *vars[] = {
    "KAFKA_BROKERS", "IMGCACHE_TOPIC", "IMGCACHE_GROUP", "IMGCACHE_KAFKA_CONFIG",
    "IMGCACHE_KAFKA_CONFIG_FILE", "REDIS_URL",
    "DATABASE_URL", "IMGCACHE_STORAGE_DIR", "IMGCACHE_PUBLIC_URL", "BEEPER_API_URL",
    "BEEPER_API_TOKEN", "BEEPER_MEDIA_SERVER", "BEEPER_MEDIA_TOKEN", "BEEPER_MEDIA_DIR",
    "IMGCACHE_LOG_LEVEL", "IMGCACHE_CONCURRENCY", "IMGCACHE_MAX_BYTES", "IMGCACHE_MAX_PIXELS",
    "IMGCACHE_LEASE_TTL", "IMGCACHE_CONNECT_TIMEOUT", "IMGCACHE_FETCH_TIMEOUT",
    "IMGCACHE_SHUTDOWN_GRACE", "IMGCACHE_DRAIN_WAIT", "IMGCACHE_RECHECK", "IMGCACHE_WORKER_ID",
    "IMGCACHE_BATCH_SIZE", "IMGCACHE_SYNC_TIMEOUT", "IMGCACHE_RETRY_BACKOFF", "IMGCACHE_METRICS_ADDR",
    "IMGCACHE_STORED_TOPIC", "IMGCACHE_RENDITIONS", "IMGCACHE_RENDER_GROUP", "IMGCACHE_RENDER_QUALITY",
    "IMGCACHE_RENDER_TIMEOUT", "IMGCACHE_RENDER_ATTEMPTS",
};

static int clean_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

/* config_load() with argv; err must contain want (NULL: must succeed). */
static int load(struct config *cfg, unsigned program, int argc, char **argv, char *err, size_t errlen)
{
    memset(err, 0, errlen);
    return config_load(cfg, program, USAGE, argc, argv, err, errlen);
}

static void expect_load_error(unsigned program, int argc, char **argv, const char *want)
{
    struct config cfg;
    char err[512];

    assert_int_equal(load(&cfg, program, argc, argv, err, sizeof err), -1);
    if (strstr(err, want) == NULL)
        fail_msg("err '%s' does not contain '%s'", err, want);
    config_free(&cfg);
}

static void test_parse_duration(void **state)
{
    static const struct {
        const char *text;
        long long ms;
    } ok[] = {
        { "500ms", 500 }, { "5s", 5000 }, { "2m", 120000 }, { "1h", 3600000 }, { "7d", 604800000 },
        { "30", 30000 }, { "1.5s", 1500 }, { "0", 0 }, { "0.25", 250 },
    };
    static const char *bad[] = { "", "s", "5x", "-1s", "5 s", "5S", "ms", "1e30d" };
    long long ms;
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ms = -1;
        assert_int_equal(config_parse_duration(ok[i].text, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms = 42;
        if (config_parse_duration(bad[i], &ms) != -1)
            fail_msg("'%s' accepted as %lld ms", bad[i], ms);
        assert_int_equal(ms, 42);
    }
    assert_int_equal(config_parse_duration(NULL, &ms), -1);
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *text;
        long long bytes;
    } ok[] = {
        { "10MiB", 10485760 }, { "512KiB", 524288 }, { "1GiB", 1073741824 }, { "10MB", 10000000 },
        { "10kB", 10000 }, { "100", 100 }, { "100B", 100 }, { "1.5MiB", 1572864 },
    };
    static const char *bad[] = { "", "10XB", "-1", "MiB", "10 MiB", "10mib", "1e30GiB" };
    long long bytes;
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        bytes = -1;
        assert_int_equal(config_parse_size(ok[i].text, &bytes), 0);
        assert_int_equal(bytes, ok[i].bytes);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (config_parse_size(bad[i], &bytes) != -1)
            fail_msg("'%s' accepted as %lld bytes", bad[i], bytes);
    }
    assert_int_equal(config_parse_size(NULL, &bytes), -1);
}

static void test_kafka_props(void **state)
{
    struct config cfg;
    char err[256] = "";
    (void)state;

    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(config_add_kafka_props(&cfg, "acks=all,linger.ms=5", err, sizeof err), 0);
    assert_int_equal(config_add_kafka_props(&cfg, "sasl.password=a=b", err, sizeof err), 0);
    assert_int_equal(cfg.n_kafka_props, 3);
    assert_string_equal(cfg.kafka_props[0].key, "acks");
    assert_string_equal(cfg.kafka_props[0].value, "all");
    assert_string_equal(cfg.kafka_props[1].key, "linger.ms");
    assert_string_equal(cfg.kafka_props[1].value, "5");
    assert_string_equal(cfg.kafka_props[2].key, "sasl.password");
    assert_string_equal(cfg.kafka_props[2].value, "a=b"); /* split at the first '=' only */

    assert_int_equal(config_add_kafka_props(&cfg, "x=1,novalue", err, sizeof err), -1);
    assert_non_null(strstr(err, "item 2 is not key=value"));
    assert_null(strstr(err, "novalue"));
    assert_int_equal(config_add_kafka_props(&cfg, "=v", err, sizeof err), -1);
    assert_non_null(strstr(err, "item 1 is not key=value"));
    config_free(&cfg);
    assert_null(cfg.kafka_props);
    assert_int_equal(cfg.n_kafka_props, 0);
}

/* A password can hold commas and backslashes; a comma that is not escaped
 * splits it, and the refusal shows no piece of it. */
static void test_kafka_props_escapes(void **state)
{
    struct config cfg;
    char err[256] = "";
    (void)state;

    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(config_add_kafka_props(&cfg, "sasl.password=Kafka\\,Secret\\,Pw,acks=1", err, sizeof err), 0);
    assert_int_equal(config_add_kafka_props(&cfg, "a=back\\\\slash\\\\,b=\\x\\", err, sizeof err), 0);
    assert_int_equal(cfg.n_kafka_props, 4);
    assert_string_equal(cfg.kafka_props[0].key, "sasl.password");
    assert_string_equal(cfg.kafka_props[0].value, "Kafka,Secret,Pw");
    assert_string_equal(cfg.kafka_props[1].value, "1");
    assert_string_equal(cfg.kafka_props[2].value, "back\\slash\\"); /* \\ then the separating comma */
    assert_string_equal(cfg.kafka_props[3].value, "\\x\\");        /* other backslashes are kept */

    assert_int_equal(config_add_kafka_props(&cfg, "sasl.password=Kafka,Secret,Pw", err, sizeof err), -1);
    assert_non_null(strstr(err, "item 2 is not key=value"));
    assert_non_null(strstr(err, "\\,"));
    assert_null(strstr(err, "Secret"));
    assert_null(strstr(err, "Kafka"));

    /* -X takes one property, its value verbatim */
    assert_int_equal(config_add_kafka_prop(&cfg, "sasl.password=X,Y\\,Z", err, sizeof err), 0);
    assert_string_equal(cfg.kafka_props[cfg.n_kafka_props - 1].value, "X,Y\\,Z");
    assert_int_equal(config_add_kafka_prop(&cfg, "SecretNoEquals", err, sizeof err), -1);
    assert_null(strstr(err, "SecretNoEquals"));
    config_free(&cfg);
}

static void test_kafka_file(void **state)
{
    char path[] = "/tmp/test_config_kafka.XXXXXX";
    int fd = mkstemp(path);
    struct config cfg;
    char err[512] = "";
    FILE *f;
    (void)state;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("# a comment\n"
          "\n"
          "   \t\n"
          "  sasl.username \t= user\n"
          "sasl.password=Kafka,Secret #not a comment= \r\n"
          "  # an indented comment\n"
          "security.protocol=sasl_plaintext", f); /* no newline at the end */
    fclose(f);

    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(config_read_kafka_file(&cfg, path, err, sizeof err), 0);
    assert_int_equal(cfg.n_kafka_props, 3);
    assert_string_equal(cfg.kafka_props[0].key, "sasl.username");
    assert_string_equal(cfg.kafka_props[0].value, " user");   /* the value is verbatim */
    assert_string_equal(cfg.kafka_props[1].key, "sasl.password");
    assert_string_equal(cfg.kafka_props[1].value, "Kafka,Secret #not a comment= ");
    assert_string_equal(cfg.kafka_props[2].key, "security.protocol");
    assert_string_equal(cfg.kafka_props[2].value, "sasl_plaintext");
    config_free(&cfg);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("acks=all\nSecretWithoutEquals\n", f);
    fclose(f);
    assert_int_equal(config_read_kafka_file(&cfg, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2 is not key=value"));
    assert_null(strstr(err, "SecretWithoutEquals"));
    config_free(&cfg);

    unlink(path);
    assert_int_equal(config_read_kafka_file(&cfg, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
    config_free(&cfg);
}

/* The file first, then IMGCACHE_KAFKA_CONFIG, then -X: the last one wins in
 * librdkafka. */
static void test_kafka_sources_order(void **state)
{
    char path[] = "/tmp/test_config_kafka.XXXXXX";
    char *argv[] = { "imgcache-worker", "-X", "client.rack=x,y", NULL };
    int fd = mkstemp(path);
    struct config cfg;
    char err[512] = "";
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "client.rack=file\n", 17), 17);
    close(fd);
    setenv("IMGCACHE_KAFKA_CONFIG_FILE", path, 1);
    setenv("IMGCACHE_KAFKA_CONFIG", "client.rack=env", 1);
    assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err), 0);
    assert_int_equal(cfg.n_kafka_props, 3);
    assert_string_equal(cfg.kafka_props[0].value, "file");
    assert_string_equal(cfg.kafka_props[1].value, "env");
    assert_string_equal(cfg.kafka_props[2].value, "x,y");
    config_free(&cfg);

    unlink(path);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_KAFKA_CONFIG_FILE: cannot open");
    unsetenv("IMGCACHE_KAFKA_CONFIG_FILE");

    /* a property librdkafka refuses is a configuration error at start-up;
     * here the password's tail after an unescaped comma looks like a key */
    setenv("IMGCACHE_KAFKA_CONFIG", "sasl.password=Kafka,KSecret=Pw", 1);
    {
        char *plain[] = { "imgcache-producer", NULL };
        assert_int_equal(load(&cfg, CONFIG_PRODUCER, ARGC(plain), plain, err, sizeof err), -1);
        assert_non_null(strstr(err, "after sasl.password"));
        assert_null(strstr(err, "KSecret"));
        config_free(&cfg);
    }
    unsetenv("IMGCACHE_KAFKA_CONFIG");
}

static void test_kafka_key_is_secret(void **state)
{
    (void)state;
    assert_true(config_kafka_key_is_secret("sasl.password"));
    assert_true(config_kafka_key_is_secret("ssl.key.password"));
    assert_true(config_kafka_key_is_secret("ssl.keystore.password"));
    assert_true(config_kafka_key_is_secret("sasl.oauthbearer.client.secret"));
    assert_true(config_kafka_key_is_secret("ssl.key.pem"));
    assert_true(config_kafka_key_is_secret("sasl.oauthbearer.config"));
    assert_true(config_kafka_key_is_secret("some.api.key"));
    assert_true(config_kafka_key_is_secret("some.TOKEN"));
    assert_false(config_kafka_key_is_secret("sasl.username"));
    assert_false(config_kafka_key_is_secret("ssl.key.location"));
    assert_false(config_kafka_key_is_secret("acks"));
}

/* libpq quotes pieces of a conninfo it cannot parse, and reads pieces of a
 * password with a bare '/' or '@' as host, port or database: each is a
 * configuration error naming DATABASE_URL that shows none of it. */
static void test_database_url_refused_without_its_values(void **state)
{
    static const char *const bad[] = {
        "postgresql://u:S3cr%ZZetPw@127.0.0.1:5432/x",     /* a bad percent escape */
        "postgresql://u:ab/S3cretPw@127.0.0.1:5432/x",     /* '/': port "ab" */
        "postgresql://u:12/S3cretPw@127.0.0.1:5432/x",     /* '/': port 12, database "S3cretPw@..." */
        "postgresql://u:pw@S3cretPw@127.0.0.1:5432/x",     /* '@': host "S3cretPw@127.0.0.1" */
        "postgresql://u:pw@127.0.0.1:5432/x?S3cretPw",     /* a query parameter without '=' */
        "host=127.0.0.1 password=S3cret Pw",               /* a space, unquoted */
        "host=127.0.0.1 password='S3cretPw",               /* an unterminated quote */
    };
    char *argv[] = { "imgcache-worker", NULL };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config cfg;
        char err[512];

        setenv("DATABASE_URL", bad[i], 1);
        assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err), -1);
        if (strncmp(err, "DATABASE_URL: ", 14) != 0 || strstr(err, "S3cr") != NULL || strstr(err, "Pw") != NULL)
            fail_msg("%s: err '%s'", bad[i], err);
        config_free(&cfg);
        assert_int_equal(load(&cfg, CONFIG_PRODUCER, ARGC(argv), argv, err, sizeof err), -1);
        assert_null(strstr(err, "S3cr"));
        config_free(&cfg);
    }
    /* what is fine stays fine: an encoded password, a quoted one with a
     * space, a space in a URL's password, several hosts and ports */
    {
        static const char *const good[] = {
            "postgresql://u:a%2Fb%40c%25d@127.0.0.1:5432/x",
            "postgresql://u:a b@127.0.0.1:5432/x",
            "host=127.0.0.1 password='a b\\'c'",
            "postgresql://u@h1:5432,h2:5433/x",
            "",
        };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
            struct config cfg;
            char err[512] = "";
            setenv("DATABASE_URL", good[i], 1);
            if (load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err) != 0)
                fail_msg("%s refused: %s", good[i], err);
            config_free(&cfg);
        }
    }
    unsetenv("DATABASE_URL");
}

/* A REDIS_URL is checked at start-up too, and its refusal shows no piece of
 * it: with a bare '/', the password's tail is the URL's path. */
static void test_redis_url_refused_without_its_values(void **state)
{
    static const char *const bad[] = {
        "redis://u:12/RedisSecret@127.0.0.1:6379/0",
        "redis://:ab/RedisSecret@127.0.0.1:6379/0",
        "redis://:Redis Secret@127.0.0.1:6379/0",
        "http://:RedisSecret@127.0.0.1:6379/0",
    };
    char *argv[] = { "imgcache-worker", NULL };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config cfg;
        char err[512];

        setenv("REDIS_URL", bad[i], 1);
        assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err), -1);
        if (strncmp(err, "REDIS_URL: ", 11) != 0 || strstr(err, "Secret") != NULL)
            fail_msg("%s: err '%s'", bad[i], err);
        config_free(&cfg);
    }
    setenv("REDIS_URL", "redis://:a%2Fb%40c@127.0.0.1:6379/2", 1);
    {
        struct config cfg;
        char err[512] = "";
        assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err), 0);
        config_free(&cfg);
    }
    unsetenv("REDIS_URL");
}

static void test_defaults(void **state)
{
    char *argv[] = { "imgcache-worker", NULL };
    struct config cfg;
    char err[256];
    (void)state;

    assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err), 0);
    assert_string_equal(cfg.kafka_brokers, "localhost:9092");
    assert_string_equal(cfg.topic, "image-needed");
    assert_string_equal(cfg.group, "imgcache-workers");
    assert_string_equal(cfg.beeper_api_url, "http://localhost:23373");
    assert_string_equal(cfg.beeper_api_token, "");
    assert_string_equal(cfg.beeper_media_dir, "");
    assert_string_equal(cfg.log_level, "info");
    assert_int_equal(cfg.concurrency, 64);
    assert_int_equal(cfg.max_bytes, 10485760);
    assert_int_equal(cfg.max_pixels, 40000000);
    assert_int_equal(cfg.lease_ttl_ms, 120000);
    assert_int_equal(cfg.connect_timeout_ms, 5000);
    assert_int_equal(cfg.fetch_timeout_ms, 30000);
    assert_int_equal(cfg.recheck_ms, 500);
    assert_int_equal(cfg.retry_after_max_ms, 3600000);
    assert_int_equal(cfg.retry_hold_max, 1000);
    assert_int_equal(cfg.drain, 0);
    assert_int_equal(cfg.from_beginning, 0);
    assert_int_equal(cfg.n_kafka_props, 0);
    assert_int_equal(cfg.nargs, 0);
    config_free(&cfg);
    assert_null(cfg.topic);
}

static void test_env_overrides_default(void **state)
{
    char *argv[] = { "imgcache-worker", NULL };
    struct config cfg;
    char err[256];
    (void)state;

    setenv("IMGCACHE_CONCURRENCY", "8", 1);
    setenv("IMGCACHE_MAX_BYTES", "512KiB", 1);
    setenv("IMGCACHE_LEASE_TTL", "90s", 1);
    setenv("KAFKA_BROKERS", "k1:9092,k2:9092", 1);
    setenv("BEEPER_MEDIA_TOKEN", "media-secret", 1);
    setenv("IMGCACHE_KAFKA_CONFIG", "acks=all,linger.ms=5", 1);
    assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err), 0);
    assert_int_equal(cfg.concurrency, 8);
    assert_int_equal(cfg.max_bytes, 524288);
    assert_int_equal(cfg.lease_ttl_ms, 90000);
    assert_string_equal(cfg.kafka_brokers, "k1:9092,k2:9092");
    assert_string_equal(cfg.beeper_media_token, "media-secret");
    assert_string_equal(cfg.kafka_config, "acks=all,linger.ms=5");
    assert_int_equal(cfg.n_kafka_props, 2);
    assert_string_equal(cfg.kafka_props[1].key, "linger.ms");
    config_free(&cfg);
}

static void test_flag_overrides_env(void **state)
{
    char *argv[] = { "imgcache-worker", "--concurrency", "16", "--lease-ttl=5m", "--drain",
                     "-X", "acks=1", "--brokers=b:1", "rest1", "rest2", NULL };
    struct config cfg;
    char err[256];
    (void)state;

    setenv("IMGCACHE_CONCURRENCY", "8", 1);
    setenv("KAFKA_BROKERS", "env:9092", 1);
    setenv("IMGCACHE_KAFKA_CONFIG", "acks=all", 1);
    assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err), 0);
    assert_int_equal(cfg.concurrency, 16);
    assert_int_equal(cfg.lease_ttl_ms, 300000);
    assert_int_equal(cfg.drain, 1);
    assert_string_equal(cfg.kafka_brokers, "b:1");
    /* the environment's properties first, then each -X, so -X wins in librdkafka */
    assert_int_equal(cfg.n_kafka_props, 2);
    assert_string_equal(cfg.kafka_props[0].value, "all");
    assert_string_equal(cfg.kafka_props[1].value, "1");
    assert_int_equal(cfg.nargs, 2);
    assert_string_equal(cfg.args[0], "rest1");
    assert_string_equal(cfg.args[1], "rest2");
    config_free(&cfg);
}

static void test_bad_values_name_the_variable(void **state)
{
    char *argv[] = { "imgcache-worker", NULL };
    char *bad_flag[] = { "imgcache-worker", "--concurrency=5000", NULL };
    char *bad_dur_flag[] = { "imgcache-worker", "--fetch-timeout", "soon", NULL };
    (void)state;

    setenv("IMGCACHE_CONCURRENCY", "abc", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_CONCURRENCY: 'abc' is not a whole number");
    setenv("IMGCACHE_CONCURRENCY", "0", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_CONCURRENCY: '0' is out of range 1..4096");
    unsetenv("IMGCACHE_CONCURRENCY");

    expect_load_error(CONFIG_WORKER, ARGC(bad_flag), bad_flag, "--concurrency: '5000' is out of range 1..4096");
    expect_load_error(CONFIG_WORKER, ARGC(bad_dur_flag), bad_dur_flag, "--fetch-timeout: 'soon' is not a duration");

    setenv("IMGCACHE_RETRY_AFTER_MAX", "8d", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv,
                      "IMGCACHE_RETRY_AFTER_MAX: '8d' is out of range 0..604800000ms");
    unsetenv("IMGCACHE_RETRY_AFTER_MAX");
    setenv("IMGCACHE_RETRY_HOLD_MAX", "0", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_RETRY_HOLD_MAX: '0' is out of range 1..1000000");
    unsetenv("IMGCACHE_RETRY_HOLD_MAX");

    setenv("IMGCACHE_LEASE_TTL", "10ms", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_LEASE_TTL: '10ms' is below the minimum 1000ms");
    unsetenv("IMGCACHE_LEASE_TTL");

    setenv("IMGCACHE_MAX_BYTES", "lots", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_MAX_BYTES: 'lots' is not a size");
    unsetenv("IMGCACHE_MAX_BYTES");

    setenv("IMGCACHE_LOG_LEVEL", "loud", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_LOG_LEVEL: 'loud'");
    unsetenv("IMGCACHE_LOG_LEVEL");

    setenv("KAFKA_BROKERS", "", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "KAFKA_BROKERS: empty");
    unsetenv("KAFKA_BROKERS");

    setenv("IMGCACHE_KAFKA_CONFIG", "acks", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_KAFKA_CONFIG: item 1 is not key=value");
}

static void test_options_refused(void **state)
{
    char *secret_flag[] = { "imgcache-worker", "--beeper-api-token=x", NULL };
    char *media_secret[] = { "imgcache-worker", "--beeper-media-token", "x", NULL };
    char *unknown[] = { "imgcache-worker", "--no-such-thing", NULL };
    char *short_unknown[] = { "imgcache-worker", "-q", NULL };
    char *x_missing[] = { "imgcache-worker", "-X", NULL };
    char *x_bad[] = { "imgcache-worker", "-X", "acks", NULL };
    char *worker_flag[] = { "imgcache-producer", "--concurrency=4", NULL };
    char *x_devbroker[] = { "imgcache-devbroker", "-X", "a=b", NULL };
    (void)state;

    /* secrets come from the environment only, never from a flag (ps shows flags) */
    expect_load_error(CONFIG_WORKER, ARGC(secret_flag), secret_flag, "--beeper-api-token");
    expect_load_error(CONFIG_WORKER, ARGC(media_secret), media_secret, "--beeper-media-token");
    {
        /* the refusal must not echo the value it refuses */
        char *leak[] = { "imgcache-worker", "--beeper-api-token=SeCrEt-42", NULL };
        struct config cfg;
        char err[512];
        assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(leak), leak, err, sizeof err), -1);
        assert_null(strstr(err, "SeCrEt-42"));
        assert_non_null(strstr(err, "'--beeper-api-token'"));
        config_free(&cfg);
    }
    expect_load_error(CONFIG_WORKER, ARGC(unknown), unknown, "unknown or incomplete option '--no-such-thing'");
    expect_load_error(CONFIG_WORKER, ARGC(short_unknown), short_unknown, "unknown option '-q'");
    expect_load_error(CONFIG_WORKER, ARGC(x_missing), x_missing, "-X needs key=value");
    expect_load_error(CONFIG_WORKER, ARGC(x_bad), x_bad, "-X: not key=value");
    /* a worker's option is not the producer's */
    expect_load_error(CONFIG_PRODUCER, ARGC(worker_flag), worker_flag, "--concurrency");
    expect_load_error(CONFIG_DEVBROKER, ARGC(x_devbroker), x_devbroker, "-X is not an option of this program");
}

/* A flag's error names the flag; a missing value says so (it printed a
 * garbage byte, getopt_long's val of the option, as '-\357'). */
static void test_errors_name_what_the_user_typed(void **state)
{
    char *level[] = { "imgcache-worker", "--log-level", "loud", NULL };
    char *no_value[] = { "imgcache-producer", "--sync-timeout", NULL };
    char *no_value_w[] = { "imgcache-worker", "--concurrency", NULL };
    char *empty_step[] = { "imgcache-worker", "--retry-backoff", "2s,,5s", NULL };
    char *no_steps[] = { "imgcache-worker", "--retry-backoff", "", NULL };
    char *bad_step[] = { "imgcache-worker", "--retry-backoff=2s,soon", NULL };
    char *long_step[] = { "imgcache-worker", "--retry-backoff=2s,8d", NULL };
    char *not_url[] = { "imgcache-worker", "--public-url", "not a url", NULL };
    char *no_host[] = { "imgcache-worker", "--public-url", "https:///x", NULL };
    char *good[] = { "imgcache-worker", "--public-url", "https://cdn.example/avatars", "--retry-backoff",
                     "1s,2s", NULL };
    char *argv[] = { "imgcache-worker", NULL };
    struct config cfg;
    char err[512];
    (void)state;

    expect_load_error(CONFIG_WORKER, ARGC(level), level, "--log-level: 'loud' is not debug, info, warn or error");
    expect_load_error(CONFIG_PRODUCER, ARGC(no_value), no_value, "--sync-timeout needs a value");
    expect_load_error(CONFIG_WORKER, ARGC(no_value_w), no_value_w, "--concurrency needs a value");
    expect_load_error(CONFIG_WORKER, ARGC(empty_step), empty_step, "--retry-backoff: '2s,,5s' has an empty step");
    expect_load_error(CONFIG_WORKER, ARGC(no_steps), no_steps, "--retry-backoff: empty");
    expect_load_error(CONFIG_WORKER, ARGC(bad_step), bad_step, "--retry-backoff: step 'soon' is not a duration");
    expect_load_error(CONFIG_WORKER, ARGC(long_step), long_step, "--retry-backoff: step '8d' is longer");
    expect_load_error(CONFIG_WORKER, ARGC(not_url), not_url, "--public-url: 'not a url' is not a URL");
    expect_load_error(CONFIG_WORKER, ARGC(no_host), no_host, "--public-url: 'https:///x' has no host");

    /* the same values from the environment name the variable */
    setenv("IMGCACHE_LOG_LEVEL", "loud", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_LOG_LEVEL: 'loud'");
    unsetenv("IMGCACHE_LOG_LEVEL");
    setenv("IMGCACHE_RETRY_BACKOFF", "", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_RETRY_BACKOFF: empty");
    /* ...unless a flag overrides it */
    assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(good), good, err, sizeof err), 0);
    assert_string_equal(cfg.retry_backoff, "1s,2s");
    config_free(&cfg);
    unsetenv("IMGCACHE_RETRY_BACKOFF");
}

/* IMGCACHE_METRICS_ADDR: empty is off (the default), a HOST:PORT is kept
 * as given, anything else fails at load naming what the user typed. */
static void test_metrics_addr(void **state)
{
    char *bad_host[] = { "imgcache-worker", "--metrics-addr", "1.2.3:9100", NULL };
    char *bad_port[] = { "imgcache-worker", "--metrics-addr", "127.0.0.1:70000", NULL };
    char *no_port[] = { "imgcache-worker", "--metrics-addr", "127.0.0.1", NULL };
    char *v6[] = { "imgcache-worker", "--metrics-addr", "[::1]:0", NULL };
    char *argv[] = { "imgcache-worker", NULL };
    struct config cfg;
    char err[512];
    (void)state;

    assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err), 0);
    assert_string_equal(cfg.metrics_addr, "");
    config_free(&cfg);
    assert_int_equal(load(&cfg, CONFIG_WORKER, ARGC(v6), v6, err, sizeof err), 0);
    assert_string_equal(cfg.metrics_addr, "[::1]:0");
    config_free(&cfg);
    expect_load_error(CONFIG_WORKER, ARGC(bad_host), bad_host, "--metrics-addr: metrics address \"1.2.3:9100\"");
    expect_load_error(CONFIG_WORKER, ARGC(bad_port), bad_port, "--metrics-addr: ");
    expect_load_error(CONFIG_WORKER, ARGC(no_port), no_port, "--metrics-addr: ");
    setenv("IMGCACHE_METRICS_ADDR", "0.0.0.0:x", 1);
    expect_load_error(CONFIG_WORKER, ARGC(argv), argv, "IMGCACHE_METRICS_ADDR: ");
    unsetenv("IMGCACHE_METRICS_ADDR");
}

static void test_duration_list(void **state)
{
    long long steps[4];
    int n = -1;
    char why[256];
    (void)state;

    assert_int_equal(config_parse_duration_list("2s,8s,2m", steps, 4, 1000000, &n, why, sizeof why), 0);
    assert_int_equal(n, 3);
    assert_true(steps[0] == 2000 && steps[1] == 8000 && steps[2] == 120000);
    assert_int_equal(config_parse_duration_list("1s,1s,1s,1s,1s", steps, 4, 1000000, &n, why, sizeof why), -1);
    assert_non_null(strstr(why, "more than 4 steps"));
    assert_int_equal(config_parse_duration_list("2s,", steps, 4, 1000000, &n, why, sizeof why), -1);
    assert_int_equal(config_parse_duration_list(",2s", steps, 4, 1000000, &n, why, sizeof why), -1);
    assert_int_equal(config_parse_duration_list("", steps, 4, 1000000, &n, why, sizeof why), -1);
}

static void test_secret_from_env(void **state)
{
    char *argv[] = { "imgcache-producer", NULL };
    struct config cfg;
    char err[256];
    (void)state;

    setenv("BEEPER_API_TOKEN", "tok-123", 1);
    assert_int_equal(load(&cfg, CONFIG_PRODUCER, ARGC(argv), argv, err, sizeof err), 0);
    assert_string_equal(cfg.beeper_api_token, "tok-123");
    config_free(&cfg);
}

static void test_help(void **state)
{
    char *argv[] = { "imgcache-worker", "--help", NULL };
    char *argv_short[] = { "imgcache-worker", "-h", NULL };
    struct config cfg;
    char err[256];
    int saved, devnull, rc, rc_short;
    (void)state;

    /* keep the usage text out of the test report */
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    devnull = open("/dev/null", O_WRONLY);
    assert_true(saved >= 0 && devnull >= 0);
    dup2(devnull, STDOUT_FILENO);
    rc = load(&cfg, CONFIG_WORKER, ARGC(argv), argv, err, sizeof err);
    config_free(&cfg);
    rc_short = load(&cfg, CONFIG_WORKER, ARGC(argv_short), argv_short, err, sizeof err);
    config_free(&cfg);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(devnull);
    assert_int_equal(rc, 1);
    assert_int_equal(rc_short, 1);
}

static void test_usage_text(void **state)
{
    FILE *f = tmpfile();
    char text[16384];
    size_t n;
    (void)state;

    assert_non_null(f);
    setenv("BEEPER_API_TOKEN", "must-not-show", 1);
    config_usage(f, CONFIG_WORKER, USAGE);
    rewind(f);
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_non_null(strstr(text, USAGE));
    assert_non_null(strstr(text, "--concurrency N"));
    assert_non_null(strstr(text, "env IMGCACHE_CONCURRENCY, default '64'"));
    assert_non_null(strstr(text, "env BEEPER_API_TOKEN, default ''"));
    assert_non_null(strstr(text, "(environment only)"));
    assert_null(strstr(text, "must-not-show"));
    assert_null(strstr(text, "--beeper-api-token"));
    assert_null(strstr(text, "--batch-size")); /* producer only */
}

/* IMGCACHE_RENDITIONS: sizes 16..2048, no duplicates; the renderer's
 * settings and its own --group. */
static void test_renditions(void **state)
{
    int sizes[CONFIG_RENDITIONS_MAX], n = -1;
    char why[256];
    struct config cfg;
    char err[512];
    char *group[] = { "prog", "--group", "replay-1", NULL };
    char *dup[] = { "prog", "--renditions", "64,128,64", NULL };
    char *small[] = { "prog", "--renditions", "8", NULL };
    static const char *bad[] = { "", ",", "64,", "64,,128", "abc", "15", "2049", "64.5", "-64", "64 ,128" };

    (void)state;
    assert_int_equal(config_parse_renditions("64,128,256", sizes, CONFIG_RENDITIONS_MAX, &n, why, sizeof why), 0);
    assert_int_equal(n, 3);
    assert_int_equal(sizes[0], 64);
    assert_int_equal(sizes[2], 256);
    assert_int_equal(config_parse_renditions("16,2048", sizes, CONFIG_RENDITIONS_MAX, &n, why, sizeof why), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (config_parse_renditions(bad[i], sizes, CONFIG_RENDITIONS_MAX, &n, why, sizeof why) == 0)
            fail_msg("'%s' accepted", bad[i]);
    assert_int_equal(config_parse_renditions("16,17,18", sizes, 2, &n, why, sizeof why), -1);

    assert_int_equal(load(&cfg, CONFIG_RENDERER, 1, group, err, sizeof err), 0);
    assert_string_equal(cfg.render_group, "imgcache-renderer");
    assert_string_equal(cfg.renditions, "64,128,256");
    assert_string_equal(cfg.stored_topic, "image-stored");
    assert_int_equal(cfg.render_quality, 80);
    assert_int_equal(cfg.render_timeout_ms, 30000);
    assert_int_equal(cfg.render_attempts, 3);
    config_free(&cfg);
    assert_int_equal(load(&cfg, CONFIG_RENDERER, ARGC(group), group, err, sizeof err), 0);
    assert_string_equal(cfg.render_group, "replay-1");
    assert_string_equal(cfg.group, "imgcache-workers"); /* the workers' group is another setting */
    config_free(&cfg);
    expect_load_error(CONFIG_RENDERER, ARGC(dup), dup, "--renditions: size 64 is given twice");
    expect_load_error(CONFIG_RENDERER, ARGC(small), small, "--renditions: size '8' is not a whole number of px from 16 to 2048");
    setenv("IMGCACHE_RENDITIONS", "64,x", 1);
    expect_load_error(CONFIG_RENDERER, 1, group, "IMGCACHE_RENDITIONS: size 'x'");
    unsetenv("IMGCACHE_RENDITIONS");
    /* the worker has no such setting */
    expect_load_error(CONFIG_WORKER, ARGC(dup), dup, "unknown or incomplete option '--renditions'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_renditions, clean_env),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_kafka_props),
        cmocka_unit_test(test_kafka_props_escapes),
        cmocka_unit_test(test_kafka_file),
        cmocka_unit_test_setup(test_kafka_sources_order, clean_env),
        cmocka_unit_test(test_kafka_key_is_secret),
        cmocka_unit_test_setup(test_database_url_refused_without_its_values, clean_env),
        cmocka_unit_test_setup(test_redis_url_refused_without_its_values, clean_env),
        cmocka_unit_test_setup(test_defaults, clean_env),
        cmocka_unit_test_setup(test_env_overrides_default, clean_env),
        cmocka_unit_test_setup(test_flag_overrides_env, clean_env),
        cmocka_unit_test_setup(test_bad_values_name_the_variable, clean_env),
        cmocka_unit_test_setup(test_options_refused, clean_env),
        cmocka_unit_test_setup(test_errors_name_what_the_user_typed, clean_env),
        cmocka_unit_test(test_duration_list),
        cmocka_unit_test_setup(test_secret_from_env, clean_env),
        cmocka_unit_test_setup(test_help, clean_env),
        cmocka_unit_test_setup(test_usage_text, clean_env),
        cmocka_unit_test_setup(test_metrics_addr, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
