/* kafka: kafka_conf_apply() names the property librdkafka refuses, never
 * with a secret's value or a piece of it. No broker is needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "errmsg.h"
#include "kafka.h"

/* cfg with the given properties (a NULL-terminated key, value list). */
static int apply(const char *const *kv, char *err, size_t errlen)
{
    struct config cfg;
    struct config_kv props[8];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    size_t n = 0;
    int rc;

    memset(&cfg, 0, sizeof cfg);
    for (; kv[2 * n] != NULL; n++)
        props[n] = (struct config_kv){ (char *)kv[2 * n], (char *)kv[2 * n + 1] };
    cfg.kafka_brokers = "127.0.0.1:1";
    cfg.kafka_props = props;
    cfg.n_kafka_props = n;
    memset(err, 0, errlen);
    rc = kafka_conf_apply(conf, &cfg, "test", err, errlen);
    rd_kafka_conf_destroy(conf);
    return rc;
}

static void test_accepts_secrets_with_commas(void **state)
{
    const char *const kv[] = { "security.protocol", "sasl_plaintext", "sasl.mechanisms", "PLAIN",
                               "sasl.username", "u", "sasl.password", "Kafka,Secret,Pw", NULL };
    char err[512];
    (void)state;

    assert_int_equal(apply(kv, err, sizeof err), 0);
}

/* "sasl.password=Kafka,Secret=Pw" split at the comma: "Secret" is no
 * property, and it is the password's tail */
static void test_unknown_key_after_a_secret_is_not_shown(void **state)
{
    const char *const kv[] = { "sasl.password", "Kafka", "Secret", "Pw", NULL }; /* "Secret" looks secret too */
    const char *const tail[] = { "sasl.password", "Kafka", "TailPw", "x", NULL };
    const char *const typo[] = { "acks", "all", "lingerr.ms", "5", NULL };
    char err[512];
    (void)state;

    assert_int_equal(apply(kv, err, sizeof err), -1);
    if (strstr(err, "after sasl.password") == NULL)
        fail_msg("err: %s", err);
    assert_null(strstr(err, "Secret"));
    assert_null(strstr(err, "Kafka"));
    assert_int_equal(apply(tail, err, sizeof err), -1);
    assert_non_null(strstr(err, "#2, after sasl.password"));
    assert_null(strstr(err, "TailPw"));
    /* after an ordinary property a typo is named, to be found */
    assert_int_equal(apply(typo, err, sizeof err), -1);
    assert_non_null(strstr(err, "lingerr.ms"));
}

/* librdkafka quotes a refused value; for a secret's key every quoted piece
 * but the key itself is hidden */
static void test_redact_quoted(void **state)
{
    const char *const keep[] = { "my.token", NULL };
    char out[256];
    (void)state;

    errmsg_redact_quoted(out, sizeof out,
                         "Invalid value \"Tok,Secret\" for configuration property \"my.token\"\nmore", keep);
    assert_string_equal(out, "Invalid value \"***\" for configuration property \"my.token\"");
    errmsg_redact_quoted(out, sizeof out, "cut \"TokSecr", keep);
    assert_string_equal(out, "cut \"***");
    errmsg_redact_quoted(out, sizeof out, "missing \"=\" after \"Secret\"", (const char *const[]){ "=", NULL });
    assert_string_equal(out, "missing \"=\" after \"***\"");
    errmsg_redact_quoted(out, 8, "abcdefghijkl", NULL);
    assert_string_equal(out, "abcdefg");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_secrets_with_commas),
        cmocka_unit_test(test_unknown_key_after_a_secret_is_not_shown),
        cmocka_unit_test(test_redact_quoted),
    };
    return cmocka_run_group_tests_name("kafka", tests, NULL, NULL);
}
