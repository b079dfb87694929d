/* worker/retry.c: the delay before a retry and the hold limit of a retry
 * event. A hostile Retry-After or next_attempt_at must give a capped value
 * and no signed overflow (build with SANITIZE=undefined to see one).
 *
 * retry.c is in build/libworker.a, which this test links. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "retry.h"

#define HOUR_MS 3600000LL

static void test_backoff_with_jitter(void **state)
{
    (void)state;
    assert_int_equal(retry_delay_ms(2000, 100, -1, HOUR_MS), 2000);
    assert_int_equal(retry_delay_ms(2000, RETRY_JITTER_MIN_PCT, -1, HOUR_MS), 1600);
    assert_int_equal(retry_delay_ms(2000, RETRY_JITTER_MAX_PCT, -1, HOUR_MS), 2400);
    /* the longest step allowed, at the highest jitter: no overflow */
    assert_int_equal(retry_delay_ms(RETRY_STEP_MAX_MS, RETRY_JITTER_MAX_PCT, -1, HOUR_MS),
                     RETRY_STEP_MAX_MS / 100 * RETRY_JITTER_MAX_PCT);
}

static void test_retry_after_longer_wins(void **state)
{
    (void)state;
    assert_int_equal(retry_delay_ms(2000, 100, 5, HOUR_MS), 5000);
    /* shorter than the backoff: the backoff stays */
    assert_int_equal(retry_delay_ms(8000, 100, 1, HOUR_MS), 8000);
    assert_int_equal(retry_delay_ms(8000, 100, 0, HOUR_MS), 8000);
}

static void test_retry_after_capped(void **state)
{
    (void)state;
    assert_int_equal(retry_delay_ms(2000, 100, 3600, HOUR_MS), HOUR_MS);
    assert_int_equal(retry_delay_ms(2000, 100, 3601, HOUR_MS), HOUR_MS);
    assert_int_equal(retry_delay_ms(2000, 100, 86400, 60000), 60000);
    /* 9223372036854776 * 1000 is just over LLONG_MAX */
    assert_int_equal(retry_delay_ms(2000, 100, 9223372036854776LL, HOUR_MS), HOUR_MS);
    assert_int_equal(retry_delay_ms(2000, 100, LLONG_MAX, HOUR_MS), HOUR_MS);
    /* a cap below the backoff caps only the server's ask */
    assert_int_equal(retry_delay_ms(8000, 100, 3600, 1000), 8000);
    assert_int_equal(retry_delay_ms(8000, 100, 3600, 0), 8000);
}

static void test_hold_limit(void **state)
{
    const long long steps[] = { 2000, 8000, 32000, 120000, 480000 };
    const long long long_step[] = { 2 * HOUR_MS };

    (void)state;
    /* the default: Retry-After's cap (1 h) beats 8 min + 20 % */
    assert_int_equal(retry_hold_limit_ms(steps, 5, HOUR_MS), HOUR_MS);
    /* a step longer than the cap: that step with its jitter */
    assert_int_equal(retry_hold_limit_ms(long_step, 1, HOUR_MS), 2 * HOUR_MS * 120 / 100);
    assert_int_equal(retry_hold_limit_ms(steps, 0, 60000), 60000);
}

static void test_due_clamp(void **state)
{
    const long long now = 1796000000000LL; /* 2026-12 */

    (void)state;
    assert_int_equal(retry_due_clamp(now + 1000, now, HOUR_MS), now + 1000);
    assert_int_equal(retry_due_clamp(now + HOUR_MS, now, HOUR_MS), now + HOUR_MS);
    assert_int_equal(retry_due_clamp(now + HOUR_MS + 1, now, HOUR_MS), now + HOUR_MS);
    assert_int_equal(retry_due_clamp(now - 5000, now, HOUR_MS), now - 5000);
    /* year 9999 and beyond: the hold limit from now */
    assert_int_equal(retry_due_clamp(253402300799999LL, now, HOUR_MS), now + HOUR_MS);
    assert_int_equal(retry_due_clamp(LLONG_MAX, now, HOUR_MS), now + HOUR_MS);
    assert_int_equal(retry_due_clamp(LLONG_MIN, now, HOUR_MS), LLONG_MIN);
    assert_int_equal(retry_due_clamp(LLONG_MAX, LLONG_MAX - 10, HOUR_MS), LLONG_MAX);
    assert_int_equal(retry_due_clamp(LLONG_MAX, LLONG_MIN, HOUR_MS), LLONG_MIN + HOUR_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_with_jitter),
        cmocka_unit_test(test_retry_after_longer_wins),
        cmocka_unit_test(test_retry_after_capped),
        cmocka_unit_test(test_hold_limit),
        cmocka_unit_test(test_due_clamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
