/* topics: the `imgcache-producer topics` options, the plan of the three
 * topics (names as the worker derives them, compaction on the main topic,
 * time retention on the others) and the comparison with an existing topic.
 * The cluster half (topics_ensure) is tested by tests/integration/12-topics.sh
 * against a real broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "topics.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The value of key in spec, or NULL. */
static const char *spec_get(const struct topic_spec *spec, const char *key)
{
    for (size_t i = 0; i < spec->n_configs; i++)
        if (strcmp(spec->configs[i].key, key) == 0)
            return spec->configs[i].value;
    return NULL;
}

/* topics_options_parse() must refuse argv with a message containing want. */
static void refused(int argc, char **argv, const char *want)
{
    struct topics_options opts;
    char err[512] = "";

    assert_int_equal(topics_options_parse(&opts, argc, argv, err, sizeof err), -1);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s' does not contain '%s'", err, want);
    topics_options_release(&opts);
}

static void test_defaults(void **state)
{
    struct topics_options opts;
    char err[256] = "";

    (void)state;
    assert_int_equal(topics_options_parse(&opts, 0, NULL, err, sizeof err), 0);
    assert_int_equal(opts.partitions, 12);
    assert_int_equal(opts.replication_factor, -1);
    assert_int_equal(opts.retry_retention_ms, 7LL * 86400000);
    assert_int_equal(opts.dlt_retention_ms, 30LL * 86400000);
    assert_int_equal(opts.timeout_ms, 30000);
    assert_int_equal(opts.n_extra, 0);
    assert_int_equal(opts.help, 0);
    topics_options_release(&opts);
}

static void test_every_option(void **state)
{
    char *argv[] = { "--partitions", "3", "--replication-factor=2", "--retry-retention", "1h",
                     "--dlt-retention=2d", "--timeout", "500ms", "--config", "segment.ms=100",
                     "--config=min.cleanable.dirty.ratio=0.01" };
    struct topics_options opts;
    char err[256] = "";

    (void)state;
    assert_int_equal(topics_options_parse(&opts, ARGC(argv), argv, err, sizeof err), 0);
    assert_int_equal(opts.partitions, 3);
    assert_int_equal(opts.replication_factor, 2);
    assert_int_equal(opts.retry_retention_ms, 3600000);
    assert_int_equal(opts.dlt_retention_ms, 2LL * 86400000);
    assert_int_equal(opts.timeout_ms, 500);
    assert_int_equal(opts.n_extra, 2);
    assert_string_equal(opts.extra[0].key, "segment.ms");
    assert_string_equal(opts.extra[0].value, "100");
    /* only the first '=' separates: the value may hold more */
    assert_string_equal(opts.extra[1].key, "min.cleanable.dirty.ratio");
    assert_string_equal(opts.extra[1].value, "0.01");
    topics_options_release(&opts);
}

static void test_help_and_broker_default(void **state)
{
    char *argv[] = { "--replication-factor", "-1", "--help" };
    struct topics_options opts;
    char err[256] = "";

    (void)state;
    assert_int_equal(topics_options_parse(&opts, ARGC(argv), argv, err, sizeof err), 0);
    assert_int_equal(opts.replication_factor, -1);
    assert_int_equal(opts.help, 1);
    topics_options_release(&opts);
}

static void test_bad_options_name_the_option(void **state)
{
    /* argv of one or two words (NULL: one), and what the refusal says */
    static const struct {
        const char *arg, *value, *want;
    } cases[] = {
        { "--partitions", "x", "--partitions: 'x' is not a whole number" },
        { "--partitions", "0", "--partitions: '0'" },
        { "--replication-factor", "0", "--replication-factor: '0'" },
        { "--replication-factor", "three", "--replication-factor: 'three'" },
        { "--retry-retention", "soon", "--retry-retention: 'soon' is not a duration" },
        { "--dlt-retention=", NULL, "--dlt-retention: '' is not a duration" },
        { "--timeout", "10ms", "--timeout: '10ms'" },
        { "--config", "segment.ms", "--config: 'segment.ms' is not KEY=VALUE" },
        { "--config", "=1", "--config: '=1' is not KEY=VALUE" },
        { "--partitions", NULL, "--partitions: needs a value" },
        { "--bogus=hunter2", NULL, "unknown option or argument '--bogus'" },
        { "extra", NULL, "unknown option or argument 'extra'" },
        { "--partitionsX", "3", "unknown option or argument '--partitionsX'" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = { (char *)cases[i].arg, (char *)cases[i].value };
        refused(cases[i].value ? 2 : 1, argv, cases[i].want);
    }
}

static void test_unknown_option_hides_its_value(void **state)
{
    char *argv[] = { "--sasl-password=hunter2" };
    struct topics_options opts;
    char err[256] = "";

    (void)state;
    assert_int_equal(topics_options_parse(&opts, ARGC(argv), argv, err, sizeof err), -1);
    assert_null(strstr(err, "hunter2"));
    topics_options_release(&opts);
}

static void test_plan(void **state)
{
    char *argv[] = { "--retry-retention", "1h", "--config", "segment.ms=100" };
    struct topics_options opts;
    struct topics_plan plan;
    char err[256] = "";

    (void)state;
    assert_int_equal(topics_options_parse(&opts, ARGC(argv), argv, err, sizeof err), 0);
    assert_int_equal(topics_plan_build(&plan, "image-needed", "image-stored", &opts, err, sizeof err), 0);
    assert_string_equal(plan.topics[0].name, "image-needed");
    assert_string_equal(plan.topics[1].name, "image-needed-retry");
    assert_string_equal(plan.topics[2].name, "image-needed-dlt");
    assert_string_equal(plan.topics[TOPICS_STORED].name, "image-stored");
    assert_string_equal(spec_get(&plan.topics[TOPICS_STORED], "cleanup.policy"), "compact");
    assert_null(spec_get(&plan.topics[TOPICS_STORED], "segment.ms")); /* --config is the main topic's */
    assert_string_equal(plan.topics[TOPICS_STORED_DLT].name, "image-stored-dlt");
    assert_string_equal(spec_get(&plan.topics[TOPICS_STORED_DLT], "cleanup.policy"), "delete");
    assert_string_equal(spec_get(&plan.topics[TOPICS_STORED_DLT], "retention.ms"), "2592000000");
    assert_int_equal(plan.topics[TOPICS_STORED_DLT].configs_required, 0);
    assert_string_equal(spec_get(&plan.topics[0], "cleanup.policy"), "compact");
    assert_string_equal(spec_get(&plan.topics[0], "segment.ms"), "100");
    assert_null(spec_get(&plan.topics[0], "retention.ms"));
    assert_string_equal(spec_get(&plan.topics[1], "cleanup.policy"), "delete");
    assert_string_equal(spec_get(&plan.topics[1], "retention.ms"), "3600000");
    assert_null(spec_get(&plan.topics[1], "segment.ms")); /* --config is the main topic's */
    assert_string_equal(spec_get(&plan.topics[2], "cleanup.policy"), "delete");
    assert_string_equal(spec_get(&plan.topics[2], "retention.ms"), "2592000000");
    assert_int_equal(plan.topics[0].configs_required, 1);
    assert_int_equal(plan.topics[1].configs_required, 0);
    assert_int_equal(plan.topics[2].configs_required, 0);
    assert_int_equal(plan.partitions, 12);
    assert_int_equal(plan.replication_factor, -1);
    topics_plan_release(&plan);
    topics_options_release(&opts);
}

static void test_config_overrides_policy_once(void **state)
{
    char *argv[] = { "--config", "cleanup.policy=compact,delete" };
    struct topics_options opts;
    struct topics_plan plan;
    char err[256] = "";

    (void)state;
    assert_int_equal(topics_options_parse(&opts, ARGC(argv), argv, err, sizeof err), 0);
    assert_int_equal(topics_plan_build(&plan, "t", "image-stored", &opts, err, sizeof err), 0);
    assert_int_equal(plan.topics[0].n_configs, 1);
    assert_string_equal(spec_get(&plan.topics[0], "cleanup.policy"), "compact,delete");
    topics_plan_release(&plan);
    topics_options_release(&opts);
}

static void test_plan_refuses_long_name(void **state)
{
    struct topics_options opts;
    struct topics_plan plan;
    char name[260];
    char err[512] = "";

    (void)state;
    memset(name, 'a', 246);
    name[246] = '\0'; /* 246 + "-retry" is over Kafka's 249 */
    assert_int_equal(topics_options_parse(&opts, 0, NULL, err, sizeof err), 0);
    assert_int_equal(topics_plan_build(&plan, name, "image-stored", &opts, err, sizeof err), -1);
    assert_non_null(strstr(err, "IMGCACHE_TOPIC"));
    topics_options_release(&opts);
}

static void test_compare(void **state)
{
    struct topics_options opts;
    struct topics_plan plan;
    char msg[512] = "";

    (void)state;
    assert_int_equal(topics_options_parse(&opts, 0, NULL, msg, sizeof msg), 0);
    assert_int_equal(topics_plan_build(&plan, "image-needed", "image-stored", &opts, msg, sizeof msg), 0);
    /* configs[0] is cleanup.policy on every topic */
    assert_int_equal(topics_compare(&plan.topics[0], 0, "compact", msg, sizeof msg), TOPICS_DIFF_NONE);
    assert_int_equal(topics_compare(&plan.topics[0], 0, "delete", msg, sizeof msg), TOPICS_DIFF_REQUIRED);
    assert_string_equal(msg, "topic image-needed: cleanup.policy is delete, expected compact (left unchanged)");
    assert_int_equal(topics_compare(&plan.topics[0], 0, NULL, msg, sizeof msg), TOPICS_DIFF_REQUIRED);
    assert_non_null(strstr(msg, "not reported"));
    assert_int_equal(topics_compare(&plan.topics[1], 1, "604800000", msg, sizeof msg), TOPICS_DIFF_NONE);
    assert_int_equal(topics_compare(&plan.topics[1], 1, "3600000", msg, sizeof msg), TOPICS_DIFF_NOTE);
    assert_string_equal(msg,
                        "topic image-needed-retry: retention.ms is 3600000, expected 604800000 (left unchanged)");
    topics_plan_release(&plan);
    topics_options_release(&opts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_help_and_broker_default),
        cmocka_unit_test(test_bad_options_name_the_option),
        cmocka_unit_test(test_unknown_option_hides_its_value),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_config_overrides_policy_once),
        cmocka_unit_test(test_plan_refuses_long_name),
        cmocka_unit_test(test_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
