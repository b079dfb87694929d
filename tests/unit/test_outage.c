/* The outage state shared by the Redis leases and the worker's PostgreSQL
 * (common/outage.h) on fake time: the first failure starts the outage and
 * only it says so, each failure doubles the wait up to the cap, a try is
 * allowed only once the wait is over, and a success ends the outage once
 * and resets the wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "outage.h"

#define T0 1000000LL /* a monotonic clock far from 0 */

static void test_fresh_state_may_try(void **state)
{
    struct outage o;

    (void)state;
    outage_init(&o);
    assert_false(o.down);
    assert_true(outage_may_try(&o, T0));
    assert_int_equal(outage_recovered(&o), 0); /* no outage to end */
}

static void test_first_failure_starts_the_outage_once(void **state)
{
    struct outage o;

    (void)state;
    outage_init(&o);
    assert_int_equal(outage_failed(&o, T0), 1);
    assert_true(o.down);
    assert_false(outage_may_try(&o, T0));
    assert_false(outage_may_try(&o, T0 + OUTAGE_BACKOFF_MIN_MS - 1));
    assert_true(outage_may_try(&o, T0 + OUTAGE_BACKOFF_MIN_MS));
    assert_int_equal(outage_failed(&o, T0 + OUTAGE_BACKOFF_MIN_MS), 0); /* still the same outage */
}

static void test_backoff_doubles_up_to_the_cap(void **state)
{
    struct outage o;
    long long now = T0, expect = OUTAGE_BACKOFF_MIN_MS;

    (void)state;
    outage_init(&o);
    for (int i = 0; i < 12; i++) {
        outage_failed(&o, now);
        assert_int_equal(o.retry_at_ms - now, expect);
        now = o.retry_at_ms;
        expect = expect * 2 > OUTAGE_BACKOFF_MAX_MS ? OUTAGE_BACKOFF_MAX_MS : expect * 2;
    }
    assert_int_equal(o.retry_at_ms - (now - OUTAGE_BACKOFF_MAX_MS), OUTAGE_BACKOFF_MAX_MS);
}

static void test_success_ends_it_and_resets_the_wait(void **state)
{
    struct outage o;

    (void)state;
    outage_init(&o);
    for (int i = 0; i < 5; i++)
        outage_failed(&o, T0);
    assert_int_equal(outage_recovered(&o), 1);
    assert_false(o.down);
    assert_int_equal(outage_recovered(&o), 0); /* ended once */
    assert_int_equal(outage_failed(&o, T0 + 100000), 1);
    assert_int_equal(o.retry_at_ms, T0 + 100000 + OUTAGE_BACKOFF_MIN_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_state_may_try),
        cmocka_unit_test(test_first_failure_starts_the_outage_once),
        cmocka_unit_test(test_backoff_doubles_up_to_the_cap),
        cmocka_unit_test(test_success_ends_it_and_resets_the_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
