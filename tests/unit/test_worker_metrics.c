/* worker/worker_metrics.c without servers: the failure classes fold into
 * their fixed labels; with the address empty nothing starts and every call
 * on the NULL handle is harmless; with an address every call runs against
 * a real registry and endpoint (port 0), and a taken port is refused with
 * the setting's name. Values as scraped are tested end to end by
 * tests/integration/71-fleet-metrics.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"
#include "worker_metrics.h"

/* librdkafka's statistics of a consumer owning image-needed partition 0 */
static const char stats[] =
    "{\"name\":\"c\",\"type\":\"consumer\",\"topics\":{\"image-needed\":{\"topic\":\"image-needed\","
    "\"partitions\":{\"0\":{\"partition\":0,\"desired\":true,\"lo_offset\":0,\"hi_offset\":9,"
    "\"ls_offset\":9,\"stored_offset\":4,\"consumer_lag_stored\":5},"
    "\"300\":{\"partition\":300,\"desired\":true,\"consumer_lag_stored\":1}}}}}";

static void test_class_labels(void **state)
{
    (void)state;
    assert_string_equal(worker_metrics_class_label("timeout"), "timeout");
    assert_string_equal(worker_metrics_class_label("file_missing"), "file_missing");
    assert_string_equal(worker_metrics_class_label("http_404"), "http_4xx");
    assert_string_equal(worker_metrics_class_label("http_503"), "http_5xx");
    assert_string_equal(worker_metrics_class_label("http_302"), "other");
    assert_string_equal(worker_metrics_class_label("http_4ab"), "other");
    assert_string_equal(worker_metrics_class_label("http_5000"), "other");
    assert_string_equal(worker_metrics_class_label("aborted"), "other");
    assert_string_equal(worker_metrics_class_label(""), "other");
    assert_string_equal(worker_metrics_class_label(NULL), "other");
}

static void every_call(struct worker_metrics *m)
{
    struct worker_metrics_state st = { .in_flight = 3, .lease_waiting = 1, .open_circuits = 2,
                                       .redis_up = 1, .postgresql_up = 0 };

    worker_metrics_turn(m, &st);
    worker_metrics_consumed(m, 0);
    worker_metrics_consumed(m, 1);
    worker_metrics_job_done(m, OUTCOME_CACHED);
    worker_metrics_job_done(m, OUTCOME_BAD_EVENT);
    worker_metrics_failure(m, "http_503");
    worker_metrics_failure(m, "no such class");
    worker_metrics_download(m, 120, 4096);
    worker_metrics_download(m, 5, 0);
    worker_metrics_commit(m, 17, 40);
    worker_metrics_assigned(m, 2);
    worker_metrics_assigned(m, 0);
    worker_metrics_kafka_stats(m, stats, strlen(stats), 1);
    worker_metrics_kafka_stats(m, "not json", 8, 1);
}

static void test_off(void **state)
{
    struct config cfg = { .topic = "image-needed", .metrics_addr = "" };
    struct worker_metrics *m = (struct worker_metrics *)&cfg; /* must be set to NULL */
    char err[256] = "";
    (void)state;

    assert_int_equal(worker_metrics_start(&cfg, "image-needed-retry", &m, err, sizeof err), 0);
    assert_null(m);
    every_call(NULL);
    worker_metrics_stop(NULL);
}

static void test_on(void **state)
{
    struct config cfg = { .topic = "image-needed", .metrics_addr = "127.0.0.1:0" };
    struct config clash = cfg;
    struct worker_metrics *m = NULL, *m2 = NULL;
    char err[256] = "", port[64];
    (void)state;

    assert_int_equal(worker_metrics_start(&cfg, "image-needed-retry", &m, err, sizeof err), 0);
    assert_non_null(m);
    every_call(m);
    /* the same address as a running endpoint's: refused, naming the setting */
    snprintf(port, sizeof port, "127.0.0.1:%u", worker_metrics_port(m));
    clash.metrics_addr = port;
    assert_int_not_equal(worker_metrics_start(&clash, "image-needed-retry", &m2, err, sizeof err), 0);
    assert_null(m2);
    assert_non_null(strstr(err, "IMGCACHE_METRICS_ADDR (--metrics-addr) 127.0.0.1:"));
    worker_metrics_stop(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_labels),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_on),
    };
    log_init("test_worker_metrics", LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
