/* The metrics registry (common/metrics.h): what it refuses to register, the
 * exact text it renders, and updates from several threads during renders. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metrics.h"

static const char *const outcomes[] = { "cached", "failed", NULL };
static const char *const topics[] = { "image-needed", "image-needed-retry", NULL };
static const char *const parts[] = { "0", "1", "2", NULL };

static int setup(void **state)
{
    struct metrics *m = NULL;
    char err[256];

    if (metrics_new(&m, err, sizeof err) != 0)
        return -1;
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    metrics_free(*state);
    return 0;
}

/* The rendered text; the caller frees it. */
static char *render(struct metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    char err[256] = "";

    if (metrics_render(m, &text, &len, err, sizeof err) != 0)
        fail_msg("render: %s", err);
    assert_int_equal(strlen(text), len);
    return text;
}

static void assert_contains(const char *text, const char *want)
{
    if (strstr(text, want) == NULL)
        fail_msg("missing \"%s\" in:\n%s", want, text);
}

static void assert_lacks(const char *text, const char *unwanted)
{
    if (strstr(text, unwanted) != NULL)
        fail_msg("unexpected \"%s\" in:\n%s", unwanted, text);
}

static void add_ok(struct metrics *m, const struct metric_def *def, struct metric **out)
{
    char err[256] = "";

    if (metrics_add(m, def, out, err, sizeof err) != 0)
        fail_msg("metrics_add(%s): %s", def->name, err);
}

static void add_fails(struct metrics *m, const struct metric_def *def, const char *want)
{
    struct metric *mt = NULL;
    char err[256] = "";

    assert_int_equal(metrics_add(m, def, &mt, err, sizeof err), -1);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", err, want);
}

static void test_counter_every_series_from_zero(void **state)
{
    struct metrics *m = *state;
    struct metric *jobs = NULL;
    struct metric_def def = {
        .name = "imgcache_jobs_total", .help = "Jobs by outcome.", .type = METRIC_COUNTER,
        .labels = { "outcome" }, .values = { outcomes },
    };
    char *text;

    add_ok(m, &def, &jobs);
    metric_inc(jobs, metrics_series(jobs, 1, 0));
    metric_add(jobs, metrics_series(jobs, 1, 0), 41);
    text = render(m);
    assert_string_equal(text, "# HELP imgcache_jobs_total Jobs by outcome.\n"
                              "# TYPE imgcache_jobs_total counter\n"
                              "imgcache_jobs_total{outcome=\"cached\"} 0\n"
                              "imgcache_jobs_total{outcome=\"failed\"} 42\n");
    free(text);
    assert_true(metrics_value(jobs, 1) == 42);
    assert_int_equal(metrics_value_index(jobs, 0, "failed"), 1);
    assert_int_equal(metrics_value_index(jobs, 0, "https://example.com/x.jpg"), METRICS_NO_SERIES);
}

static void test_two_labels(void **state)
{
    struct metrics *m = *state;
    struct metric *lag = NULL;
    struct metric_def def = {
        .name = "lag", .help = "Lag.", .type = METRIC_GAUGE,
        .labels = { "topic", "partition" }, .values = { topics, parts }, .sparse = 1,
    };
    char *text;

    add_ok(m, &def, &lag);
    text = render(m);
    assert_string_equal(text, "# HELP lag Lag.\n# TYPE lag gauge\n");     /* sparse: nothing set yet */
    free(text);
    metric_set(lag, metrics_series(lag, 1, 2), 17);
    metric_set(lag, metrics_series(lag, 0, 0), 0);
    text = render(m);
    assert_string_equal(text, "# HELP lag Lag.\n# TYPE lag gauge\n"
                              "lag{topic=\"image-needed\",partition=\"0\"} 0\n"
                              "lag{topic=\"image-needed-retry\",partition=\"2\"} 17\n");
    free(text);
    metric_clear(lag, metrics_series(lag, 1, 2));
    text = render(m);
    assert_lacks(text, "partition=\"2\"");
    assert_contains(text, "partition=\"0\"} 0\n");
    free(text);
    /* out of range: no series, and updates through it do nothing */
    assert_int_equal(metrics_series(lag, 2, 0), METRICS_NO_SERIES);
    assert_int_equal(metrics_series(lag, 0, 3), METRICS_NO_SERIES);
    metric_set(lag, METRICS_NO_SERIES, 5);
    metric_set(lag, 6, 5);
}

static void test_histogram(void **state)
{
    struct metrics *m = *state;
    struct metric *h = NULL;
    static const double bounds[] = { 0.1, 0.5, 2.5 };
    struct metric_def def = {
        .name = "imgcache_download_seconds", .help = "Download time.", .type = METRIC_HISTOGRAM,
        .bounds = bounds, .nbounds = 3,
    };
    char *text;

    add_ok(m, &def, &h);
    metric_observe(h, 0, 0.1);      /* on a bound: counted in it (le) */
    metric_observe(h, 0, 0.3);
    metric_observe(h, 0, 0.3);
    metric_observe(h, 0, 100);
    metric_observe(h, 0, NAN);      /* ignored */
    text = render(m);
    assert_string_equal(text, "# HELP imgcache_download_seconds Download time.\n"
                              "# TYPE imgcache_download_seconds histogram\n"
                              "imgcache_download_seconds_bucket{le=\"0.1\"} 1\n"
                              "imgcache_download_seconds_bucket{le=\"0.5\"} 3\n"
                              "imgcache_download_seconds_bucket{le=\"2.5\"} 3\n"
                              "imgcache_download_seconds_bucket{le=\"+Inf\"} 4\n"
                              "imgcache_download_seconds_sum 100.7\n"
                              "imgcache_download_seconds_count 4\n");
    free(text);
    assert_true(metrics_value(h, 0) == 4);
}

static void test_histogram_with_label(void **state)
{
    struct metrics *m = *state;
    struct metric *h = NULL;
    static const double bounds[] = { 1, 10 };
    struct metric_def def = {
        .name = "batch", .help = "Batch size.", .type = METRIC_HISTOGRAM,
        .labels = { "topic" }, .values = { topics }, .bounds = bounds, .nbounds = 2,
    };
    char *text;

    add_ok(m, &def, &h);
    metric_observe(h, 1, 5);
    text = render(m);
    assert_contains(text, "batch_bucket{topic=\"image-needed\",le=\"1\"} 0\n");
    assert_contains(text, "batch_bucket{topic=\"image-needed-retry\",le=\"10\"} 1\n");
    assert_contains(text, "batch_bucket{topic=\"image-needed-retry\",le=\"+Inf\"} 1\n");
    assert_contains(text, "batch_sum{topic=\"image-needed-retry\"} 5\n");
    assert_contains(text, "batch_count{topic=\"image-needed\"} 0\n");
    free(text);
}

static void test_gauge_values(void **state)
{
    struct metrics *m = *state;
    struct metric *g = NULL;
    struct metric_def def = { .name = "g", .help = "G.", .type = METRIC_GAUGE };
    char *text;

    add_ok(m, &def, &g);
    metric_gauge_add(g, 0, 3);
    metric_gauge_add(g, 0, -1.5);
    text = render(m);
    assert_contains(text, "\ng 1.5\n");
    free(text);
    metric_set(g, 0, INFINITY);
    text = render(m);
    assert_contains(text, "\ng +Inf\n");
    free(text);
    metric_set(g, 0, NAN);
    text = render(m);
    assert_contains(text, "\ng NaN\n");
    free(text);
    metric_set(g, 0, 123456789012.0);
    text = render(m);
    assert_contains(text, "\ng 123456789012\n");
    free(text);
    /* the wrong kind of update does nothing, and NULL is fine */
    metric_inc(g, 0);
    metric_observe(g, 0, 1);
    assert_true(metrics_value(g, 0) == 123456789012.0);
    metric_inc(NULL, 0);
    metric_set(NULL, 0, 1);
    metric_observe(NULL, 0, 1);
    metric_clear(NULL, 0);
    assert_int_equal(metrics_series(NULL, 0, 0), METRICS_NO_SERIES);
}

static void test_escaping(void **state)
{
    struct metrics *m = *state;
    struct metric *c = NULL;
    static const char *const odd[] = { "a\"b\\c\nd", NULL };
    struct metric_def def = {
        .name = "odd_total", .help = "Help with \\ and\na new line \"quoted\".", .type = METRIC_COUNTER,
        .labels = { "v" }, .values = { odd },
    };
    char *text;

    add_ok(m, &def, &c);
    text = render(m);
    /* HELP escapes backslash and line feed, not quotes; label values all three */
    assert_contains(text, "# HELP odd_total Help with \\\\ and\\na new line \"quoted\".\n");
    assert_contains(text, "odd_total{v=\"a\\\"b\\\\c\\nd\"} 0\n");
    free(text);
}

static void test_refusals(void **state)
{
    struct metrics *m = *state;
    struct metric *ok = NULL;
    static const double up_down[] = { 1, 0.5 };
    static const double inf[] = { 1, INFINITY };
    static const char *const twice[] = { "a", "a", NULL };
    static const char *const none[] = { NULL };
    struct metric_def def;

    def = (struct metric_def){ .name = "jobs", .help = "x", .type = METRIC_COUNTER };
    add_fails(m, &def, "must end in _total");
    def = (struct metric_def){ .name = "9lives_total", .help = "x", .type = METRIC_COUNTER };
    add_fails(m, &def, "is not [a-zA-Z_:]");
    def = (struct metric_def){ .name = "has-dash", .help = "x", .type = METRIC_GAUGE };
    add_fails(m, &def, "is not [a-zA-Z_:]");
    def = (struct metric_def){ .name = "nohelp", .type = METRIC_GAUGE };
    add_fails(m, &def, "no help");
    def = (struct metric_def){ .name = "h", .help = "x", .type = METRIC_HISTOGRAM, .bounds = up_down, .nbounds = 2 };
    add_fails(m, &def, "increasing");
    def = (struct metric_def){ .name = "h", .help = "x", .type = METRIC_HISTOGRAM, .bounds = inf, .nbounds = 2 };
    add_fails(m, &def, "finite");
    def = (struct metric_def){ .name = "h", .help = "x", .type = METRIC_HISTOGRAM };
    add_fails(m, &def, "bucket bounds");
    def = (struct metric_def){ .name = "h", .help = "x", .type = METRIC_HISTOGRAM, .bounds = up_down, .nbounds = 1,
                               .labels = { "le" }, .values = { outcomes } };
    add_fails(m, &def, "reserved");
    def = (struct metric_def){ .name = "g", .help = "x", .type = METRIC_GAUGE, .labels = { "__name" },
                               .values = { outcomes } };
    add_fails(m, &def, "reserved");
    def = (struct metric_def){ .name = "g", .help = "x", .type = METRIC_GAUGE, .labels = { "a:b" },
                               .values = { outcomes } };
    add_fails(m, &def, "invalid");
    def = (struct metric_def){ .name = "g", .help = "x", .type = METRIC_GAUGE, .labels = { "v" },
                               .values = { twice } };
    add_fails(m, &def, "declares \"a\" twice");
    def = (struct metric_def){ .name = "g", .help = "x", .type = METRIC_GAUGE, .labels = { "v" }, .values = { none } };
    add_fails(m, &def, "declared values");
    def = (struct metric_def){ .name = "g", .help = "x", .type = METRIC_GAUGE, .labels = { "v" } };
    add_fails(m, &def, "declared values");
    def = (struct metric_def){ .name = "g", .help = "x", .type = METRIC_GAUGE, .labels = { "v", "v" },
                               .values = { outcomes, outcomes } };
    add_fails(m, &def, "appears twice");
    def = (struct metric_def){ .name = "g", .help = "x", .type = METRIC_GAUGE };
    add_ok(m, &def, &ok);
    add_fails(m, &def, "registered twice");
}

static void test_series_limit(void **state)
{
    struct metrics *m = *state;
    static const char *many[METRICS_MAX_VALUES + 2];
    static char names[METRICS_MAX_VALUES + 1][8];
    struct metric *ok = NULL;
    struct metric_def def;

    for (int i = 0; i <= METRICS_MAX_VALUES; i++) {
        snprintf(names[i], sizeof names[i], "%d", i);
        many[i] = names[i];
    }
    many[METRICS_MAX_VALUES + 1] = NULL;
    def = (struct metric_def){ .name = "g", .help = "x", .type = METRIC_GAUGE, .labels = { "v" }, .values = { many } };
    add_fails(m, &def, "1 to 256 declared values");
    many[METRICS_MAX_VALUES] = NULL;        /* 256 values: allowed */
    add_ok(m, &def, &ok);
    def = (struct metric_def){ .name = "g2", .help = "x", .type = METRIC_GAUGE, .labels = { "v", "w" },
                               .values = { many, many } };
    add_fails(m, &def, "series, more than 1024");
}

static void test_build_info_and_process(void **state)
{
    struct metrics *m = *state;
    char err[256] = "";
    char *text, *p;
    double resident = 0, fds = 0;

    assert_int_equal(metrics_add_build_info(m, "imgcache", "1.2.3-4-gabc", "abc123", err, sizeof err), 0);
    metrics_add_process(m);
    text = render(m);
    assert_contains(text, "# TYPE imgcache_build_info gauge\n"
                          "imgcache_build_info{version=\"1.2.3-4-gabc\",commit=\"abc123\"} 1\n");
    assert_contains(text, "# TYPE process_resident_memory_bytes gauge\n");
    assert_contains(text, "# TYPE process_cpu_seconds_total counter\n");
    p = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_non_null(p);
    resident = strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL);
    p = strstr(text, "\nprocess_open_fds ");
    assert_non_null(p);
    fds = strtod(p + strlen("\nprocess_open_fds "), NULL);
    assert_true(resident > 1024 * 1024);        /* any process has more than 1 MiB resident */
    assert_true(fds >= 3 && fds < 10000);       /* stdin, stdout, stderr at least */
    free(text);
}

/* ---- updates from threads while another renders ---- */

#define THREADS 4
#define PER_THREAD 100000

struct hammer {
    struct metric *c;
    struct metric *g;
    struct metric *h;
};

static void *hammer(void *arg)
{
    struct hammer *hm = arg;

    for (int i = 0; i < PER_THREAD; i++) {
        metric_inc(hm->c, 0);
        metric_gauge_add(hm->g, 0, 1);
        metric_observe(hm->h, 0, 1);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    struct metrics *m = *state;
    static const double bounds[] = { 0.5, 2 };
    struct metric_def cd = { .name = "c_total", .help = "c", .type = METRIC_COUNTER };
    struct metric_def gd = { .name = "g", .help = "g", .type = METRIC_GAUGE };
    struct metric_def hd = { .name = "h", .help = "h", .type = METRIC_HISTOGRAM, .bounds = bounds, .nbounds = 2 };
    struct hammer hm = { 0 };
    pthread_t t[THREADS];
    char *text;

    add_ok(m, &cd, &hm.c);
    add_ok(m, &gd, &hm.g);
    add_ok(m, &hd, &hm.h);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &hm), 0);
    for (int i = 0; i < 20; i++)
        free(render(m));        /* renders race the updates; none may crash or block them */
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    /* no update lost: not one of the 400,000 of each kind */
    text = render(m);
    assert_contains(text, "\nc_total 400000\n");
    assert_contains(text, "\ng 400000\n");
    assert_contains(text, "\nh_bucket{le=\"2\"} 400000\n");
    assert_contains(text, "\nh_sum 400000\n");
    assert_contains(text, "\nh_count 400000\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counter_every_series_from_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_with_label, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauge_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_series_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_info_and_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_updates, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
