/* The per-host circuit breaker (common/breaker.h) on fake time: every call
 * takes now_ms, so nothing here sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "breaker.h"
#include "log.h"

#define T0 1000000LL        /* a monotonic clock far from 0 */
#define HOST "media.example"

static int setup(void **state)
{
    struct breaker *b = NULL;
    /* threshold 3, first cool-down 1 s, at most 4 s */
    if (breaker_new(3, 1000, 4000, &b) != 0)
        return -1;
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    breaker_free(*state);
    return 0;
}

static void fail_n(struct breaker *b, const char *host, int n, long long now)
{
    for (int i = 0; i < n; i++)
        breaker_record(b, host, 1, now);
}

static void test_closed_until_threshold(void **state)
{
    struct breaker *b = *state;

    assert_int_equal(breaker_check(b, HOST, T0), 0);
    assert_int_equal(breaker_is_open(b, HOST), 0);
    fail_n(b, HOST, 2, T0);
    assert_int_equal(breaker_check(b, HOST, T0), 0);
    assert_int_equal(breaker_is_open(b, HOST), 0);
    breaker_record(b, HOST, 1, T0 + 10);
    assert_int_equal(breaker_is_open(b, HOST), 1);
    /* open: the answer is the end of the cool-down, counted from the failure */
    assert_int_equal(breaker_check(b, HOST, T0 + 10), T0 + 10 + 1000);
    assert_int_equal(breaker_check(b, HOST, T0 + 500), T0 + 1010);
    assert_int_equal(breaker_check(b, HOST, T0 + 1009), T0 + 1010);
}

static void test_hosts_are_independent(void **state)
{
    struct breaker *b = *state;

    fail_n(b, HOST, 3, T0);
    assert_int_equal(breaker_is_open(b, HOST), 1);
    assert_int_equal(breaker_is_open(b, "other.example"), 0);
    assert_int_equal(breaker_check(b, "other.example", T0), 0);
    /* failures of two hosts do not add up */
    fail_n(b, "a.example", 2, T0);
    fail_n(b, "b.example", 2, T0);
    assert_int_equal(breaker_is_open(b, "a.example"), 0);
    assert_int_equal(breaker_is_open(b, "b.example"), 0);
    /* a NULL host is never blocked and changes nothing */
    breaker_record(b, NULL, 1, T0);
    assert_int_equal(breaker_check(b, NULL, T0), 0);
    assert_int_equal(breaker_is_open(b, NULL), 0);
}

static void test_half_open_single_probe(void **state)
{
    struct breaker *b = *state;
    long long again;

    fail_n(b, HOST, 3, T0);
    assert_true(breaker_check(b, HOST, T0 + 999) > 0);
    /* cool-down over: exactly one caller is let through */
    assert_int_equal(breaker_check(b, HOST, T0 + 1000), 0);
    assert_int_equal(breaker_is_open(b, HOST), 1);
    again = breaker_check(b, HOST, T0 + 1000);
    assert_true(again > T0 + 1000);
    assert_true(breaker_check(b, HOST, T0 + 1500) > T0 + 1500);
    assert_true(breaker_check(b, HOST, T0 + 60000) > T0 + 60000);
}

static void test_probe_success_closes(void **state)
{
    struct breaker *b = *state;

    fail_n(b, HOST, 3, T0);
    assert_int_equal(breaker_check(b, HOST, T0 + 1000), 0);   /* the probe */
    breaker_record(b, HOST, 0, T0 + 1100);
    assert_int_equal(breaker_is_open(b, HOST), 0);
    assert_int_equal(breaker_check(b, HOST, T0 + 1100), 0);
    assert_int_equal(breaker_check(b, HOST, T0 + 1100), 0);
    /* closed again from zero: the threshold counts anew, with the base cool-down */
    fail_n(b, HOST, 2, T0 + 1200);
    assert_int_equal(breaker_is_open(b, HOST), 0);
    breaker_record(b, HOST, 1, T0 + 1200);
    assert_int_equal(breaker_is_open(b, HOST), 1);
    assert_int_equal(breaker_check(b, HOST, T0 + 1200), T0 + 2200);
}

static void test_failed_probe_doubles_up_to_max(void **state)
{
    struct breaker *b = *state;
    long long now = T0;
    static const long long expected[] = { 2000, 4000, 4000, 4000 };

    fail_n(b, HOST, 3, now);
    assert_int_equal(breaker_check(b, HOST, now), now + 1000);
    now += 1000;
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        assert_int_equal(breaker_check(b, HOST, now), 0);   /* the probe */
        breaker_record(b, HOST, 1, now + 5);                 /* ...fails */
        assert_int_equal(breaker_is_open(b, HOST), 1);
        assert_int_equal(breaker_check(b, HOST, now + 5), now + 5 + expected[i]);
        assert_int_equal(breaker_check(b, HOST, now + 5 + expected[i] - 1), now + 5 + expected[i]);
        now += 5 + expected[i];
    }
    /* a later success still closes it, and the next opening starts at 1 s */
    assert_int_equal(breaker_check(b, HOST, now), 0);
    breaker_record(b, HOST, 0, now);
    assert_int_equal(breaker_is_open(b, HOST), 0);
    fail_n(b, HOST, 3, now);
    assert_int_equal(breaker_check(b, HOST, now), now + 1000);
}

/* breaker_open: one refused credential opens the circuit at once, below the
 * threshold; a refused probe doubles the pause; an answer closes it. */
static void test_open_at_once(void **state)
{
    struct breaker *b = *state;
    long long now = T0;

    breaker_open(b, HOST, now);
    assert_int_equal(breaker_is_open(b, HOST), 1);
    assert_int_equal(breaker_check(b, HOST, now), now + 1000);
    assert_int_equal(breaker_check(b, "other.example", now), 0);
    now += 1000;
    assert_int_equal(breaker_check(b, HOST, now), 0); /* the probe */
    breaker_open(b, HOST, now);                        /* ...refused again */
    assert_int_equal(breaker_check(b, HOST, now), now + 2000);
    now += 2000;
    assert_int_equal(breaker_check(b, HOST, now), 0);
    breaker_record(b, HOST, 0, now);
    assert_int_equal(breaker_is_open(b, HOST), 0);
}

static void test_non_retryable_resets(void **state)
{
    struct breaker *b = *state;

    fail_n(b, HOST, 2, T0);
    breaker_record(b, HOST, 0, T0);     /* e.g. a 404: the host answered */
    fail_n(b, HOST, 2, T0);
    assert_int_equal(breaker_is_open(b, HOST), 0);
    assert_int_equal(breaker_check(b, HOST, T0), 0);
    breaker_record(b, HOST, 1, T0);
    assert_int_equal(breaker_is_open(b, HOST), 1);
    /* an answer while open (a request sent before the opening) closes it */
    breaker_record(b, HOST, 0, T0 + 1);
    assert_int_equal(breaker_is_open(b, HOST), 0);
    assert_int_equal(breaker_check(b, HOST, T0 + 1), 0);
    /* recording a success for a host never seen is harmless */
    breaker_record(b, "never.example", 0, T0);
    assert_int_equal(breaker_is_open(b, "never.example"), 0);
}

static void test_max_below_base(void **state)
{
    struct breaker *b = NULL;

    (void)state;
    assert_int_equal(breaker_new(1, 3000, 1000, &b), 0);
    assert_non_null(b);
    breaker_record(b, HOST, 1, T0);
    assert_int_equal(breaker_check(b, HOST, T0), T0 + 3000);
    assert_int_equal(breaker_check(b, HOST, T0 + 3000), 0);
    breaker_record(b, HOST, 1, T0 + 3000);
    /* max is raised to the base: the cool-down stays 3 s */
    assert_int_equal(breaker_check(b, HOST, T0 + 3000), T0 + 6000);
    breaker_free(b);
    breaker_free(NULL);
}

static void test_host_limit(void **state)
{
    struct breaker *b = *state;
    char host[64];

    /* one open circuit, then the table filled with closed failing hosts */
    fail_n(b, HOST, 3, T0);
    for (int i = 0; i < BREAKER_MAX_HOSTS - 1; i++) {
        snprintf(host, sizeof host, "h%d.example", i);
        breaker_record(b, host, 1, T0);
    }
    /* a new host makes room by forgetting closed ones, never open ones */
    fail_n(b, "new.example", 3, T0);
    assert_int_equal(breaker_is_open(b, "new.example"), 1);
    assert_int_equal(breaker_is_open(b, HOST), 1);
    /* a forgotten host counts from zero */
    fail_n(b, "h0.example", 2, T0);
    assert_int_equal(breaker_is_open(b, "h0.example"), 0);
}

/* breaker_open_count: every way in (threshold, breaker_open) and out (an
 * answer, even half-open) keeps the count; a failed probe or a second
 * breaker_open of an open host does not count it twice; the host limit's
 * forgetting drops only closed hosts, which were never counted. */
static void test_open_count(void **state)
{
    struct breaker *b = *state;
    char host[64];
    long long now = T0;

    assert_int_equal(breaker_open_count(b), 0);
    assert_int_equal(breaker_open_count(NULL), 0);
    fail_n(b, HOST, 2, now);
    assert_int_equal(breaker_open_count(b), 0);     /* below the threshold */
    fail_n(b, HOST, 1, now);
    assert_int_equal(breaker_open_count(b), 1);
    fail_n(b, HOST, 5, now);                        /* already open */
    assert_int_equal(breaker_open_count(b), 1);
    breaker_open(b, "api.example", now);
    breaker_open(b, "api.example", now);            /* open again: doubled, one host */
    assert_int_equal(breaker_open_count(b), 2);
    now += 1000;
    assert_int_equal(breaker_check(b, HOST, now), 0); /* half-open: still counted */
    assert_int_equal(breaker_open_count(b), 2);
    breaker_record(b, HOST, 1, now);                /* failed probe: open again */
    assert_int_equal(breaker_open_count(b), 2);
    breaker_record(b, "api.example", 0, now);       /* an answer closes it */
    assert_int_equal(breaker_open_count(b), 1);
    for (int i = 0; i < BREAKER_MAX_HOSTS; i++) {
        snprintf(host, sizeof host, "h%d.example", i);
        breaker_record(b, host, 1, now);
    }
    fail_n(b, "new.example", 3, now);               /* forgets closed hosts only */
    assert_int_equal(breaker_open_count(b), 2);
    now += 10000;
    assert_int_equal(breaker_check(b, HOST, now), 0);
    breaker_record(b, HOST, 0, now);
    breaker_record(b, "new.example", 0, now);
    assert_int_equal(breaker_open_count(b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_closed_until_threshold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hosts_are_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_open_single_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_success_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_probe_doubles_up_to_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_retryable_resets, setup, teardown),
        cmocka_unit_test(test_max_below_base),
        cmocka_unit_test_setup_teardown(test_host_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_count, setup, teardown),
    };
    /* openings and closings are logged: keep the test output readable */
    log_init("test_breaker", LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
