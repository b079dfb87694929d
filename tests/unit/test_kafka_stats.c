/* Consumer lag from librdkafka's statistics (common/kafka_stats.h), on a
 * real sample: tests/fixtures/librdkafka-2.0.2-stats.json was captured from
 * a librdkafka 2.0.2 consumer (group imgcache-workers, topics image-needed
 * and image-needed-retry, 3 partitions each, 10 messages in each partition
 * of image-needed, all 30 consumed; offsets stored for all of partition 0,
 * offsets 0-3 of partition 1 and none of partition 2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kafka_stats.h"
#include "metrics.h"

/* TEST_FIXTURES when set, else tests/fixtures from the repo root. */
static char *load_sample(size_t *len)
{
    const char *dir = getenv("TEST_FIXTURES");
    char path[1024];
    char *buf;
    FILE *f;
    long size;

    snprintf(path, sizeof path, "%s/librdkafka-2.0.2-stats.json", dir && *dir ? dir : "tests/fixtures");
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (run from the repo root or set TEST_FIXTURES)", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    buf = malloc((size_t)size);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void assert_lag(const struct kafka_lag *l, const char *topic, int32_t partition, int64_t lag)
{
    assert_string_equal(l->topic, topic);
    assert_int_equal(l->partition, partition);
    assert_int_equal(l->lag, lag);
}

static void test_sample_stored_only(void **state)
{
    size_t len = 0, n = 99;
    char *json = load_sample(&len);
    struct kafka_lag *lags = NULL;
    char err[256] = "";

    (void)state;
    assert_int_equal(kafka_stats_lag(json, len, 0, &lags, &n, err, sizeof err), 0);
    /* partition 2 of image-needed and the retry topic's: nothing stored yet
     * (-1); both -1 partitions: librdkafka's own */
    assert_int_equal(n, 2);
    assert_lag(&lags[0], "image-needed", 0, 0);
    assert_lag(&lags[1], "image-needed", 1, 6);     /* 10 messages, offsets 0-3 done */
    free(lags);
    free(json);
}

static void test_sample_unstored_from_start(void **state)
{
    size_t len = 0, n = 0;
    char *json = load_sample(&len);
    struct kafka_lag *lags = NULL;
    char err[256] = "";

    (void)state;
    assert_int_equal(kafka_stats_lag(json, len, 1, &lags, &n, err, sizeof err), 0);
    assert_int_equal(n, 6);
    assert_lag(&lags[0], "image-needed", 0, 0);
    assert_lag(&lags[1], "image-needed", 1, 6);
    assert_lag(&lags[2], "image-needed", 2, 10);    /* consumed, but nothing done yet */
    assert_lag(&lags[3], "image-needed-retry", 0, 0);
    assert_lag(&lags[4], "image-needed-retry", 1, 0);
    assert_lag(&lags[5], "image-needed-retry", 2, 0);
    free(lags);
    free(json);
}

static void test_revoked_and_odd(void **state)
{
    /* a revoked partition (desired false) keeps its last numbers: another
     * consumer owns it now */
    const char *json =
        "{\"topics\":{\"t\":{\"partitions\":{"
        "\"0\":{\"partition\":0,\"desired\":false,\"consumer_lag_stored\":5},"
        "\"1\":{\"partition\":1,\"desired\":true,\"consumer_lag_stored\":7},"
        "\"2\":{\"partition\":2,\"desired\":true},"
        "\"3\":{\"partition\":\"3\",\"desired\":true,\"consumer_lag_stored\":1},"
        "\"-1\":{\"partition\":-1,\"desired\":true,\"consumer_lag_stored\":9}}},"
        "\"meta-only\":{}}}";
    struct kafka_lag *lags = NULL;
    size_t n = 0;
    char err[256] = "";

    (void)state;
    assert_int_equal(kafka_stats_lag(json, strlen(json), 1, &lags, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_lag(&lags[0], "t", 1, 7);
    free(lags);
}

static void test_bad_input(void **state)
{
    struct kafka_lag *lags = NULL;
    size_t n = 5;
    char err[256] = "";

    (void)state;
    assert_int_equal(kafka_stats_lag("{\"topics\":", 10, 1, &lags, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "not JSON"));
    assert_null(lags);
    assert_int_equal(n, 0);
    assert_int_equal(kafka_stats_lag("[]", 2, 1, &lags, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "no \"topics\""));
    assert_int_equal(kafka_stats_lag("{\"topics\":{}}", 13, 1, &lags, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_null(lags);
}

static void test_publish(void **state)
{
    static const char *const topics[] = { "image-needed", "image-needed-retry", NULL };
    static const char *const parts[] = { "0", "1", "2", NULL };
    struct metric_def def = {
        .name = "imgcache_consumer_lag", .help = "Lag.", .type = METRIC_GAUGE,
        .labels = { "topic", "partition" }, .values = { topics, parts }, .sparse = 1,
    };
    struct kafka_lag first[] = {
        { "image-needed", 0, 3 }, { "image-needed", 2, 4 }, { "image-needed", 7, 1 }, { "other", 0, 1 },
    };
    struct kafka_lag later[] = { { "image-needed-retry", 1, 9 } };
    struct metrics *m = NULL;
    struct metric *lag = NULL;
    char err[256] = "", *text = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(metrics_new(&m, err, sizeof err), 0);
    assert_int_equal(metrics_add(m, &def, &lag, err, sizeof err), 0);
    /* partition 7 and topic "other" were not declared: left out, counted */
    assert_int_equal(kafka_stats_publish(lag, first, 4), 2);
    assert_int_equal(metrics_render(m, &text, &len, err, sizeof err), 0);
    assert_string_equal(text, "# HELP imgcache_consumer_lag Lag.\n# TYPE imgcache_consumer_lag gauge\n"
                              "imgcache_consumer_lag{topic=\"image-needed\",partition=\"0\"} 3\n"
                              "imgcache_consumer_lag{topic=\"image-needed\",partition=\"2\"} 4\n");
    free(text);
    /* a rebalance later: the old partitions vanish */
    assert_int_equal(kafka_stats_publish(lag, later, 1), 0);
    assert_int_equal(metrics_render(m, &text, &len, err, sizeof err), 0);
    assert_string_equal(text, "# HELP imgcache_consumer_lag Lag.\n# TYPE imgcache_consumer_lag gauge\n"
                              "imgcache_consumer_lag{topic=\"image-needed-retry\",partition=\"1\"} 9\n");
    free(text);
    assert_int_equal(kafka_stats_publish(NULL, later, 1), 0);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_stored_only),
        cmocka_unit_test(test_sample_unstored_from_start),
        cmocka_unit_test(test_revoked_and_odd),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
