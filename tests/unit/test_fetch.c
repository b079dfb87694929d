/* fetch_judge() (common/fetch.h): the one classification of a finished
 * transfer. Each outcome's class, whether a retry could help, the status
 * to record, whether the request was sent (a refused address and a bad URL
 * must not count against an origin's circuit) and whether it says the
 * origin is failing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fetch.h"

struct want {
    enum fetch_outcome outcome;
    long status;
    const char *cls;
    int permanent;
    long recorded_status;
    int sent;
    int failing;
};

static void check(const struct want *c)
{
    struct fetch_result r;
    struct fetch_verdict v;

    memset(&r, 0, sizeof r);
    r.outcome = c->outcome;
    r.http_status = c->status;
    fetch_judge(&r, &v);
    assert_string_equal(v.error_class, c->cls);
    assert_int_equal(v.permanent, c->permanent);
    assert_int_equal(v.http_status, c->recorded_status);
    assert_int_equal(v.sent, c->sent);
    assert_int_equal(v.origin_failing, c->failing);
}

static void test_every_outcome(void **state)
{
    static const struct want cases[] = {
        { FETCH_OK, 200, "ok", 0, 200, 1, 0 },
        { FETCH_HTTP_ERROR, 404, "http_404", 1, 404, 1, 0 },
        { FETCH_HTTP_ERROR, 410, "http_410", 1, 410, 1, 0 },
        { FETCH_HTTP_ERROR, 408, "http_408", 0, 408, 1, 1 },
        { FETCH_HTTP_ERROR, 429, "http_429", 0, 429, 1, 1 },
        { FETCH_HTTP_ERROR, 503, "http_503", 0, 503, 1, 1 },
        { FETCH_HTTP_ERROR, 301, "http_301", 1, 301, 1, 0 },
        { FETCH_TOO_LARGE, 200, "too_large", 1, 200, 1, 0 },
        { FETCH_ABORTED, 200, "aborted", 0, 0, 1, 0 },
        { FETCH_TIMEOUT, 200, "timeout", 0, 200, 1, 1 },
        { FETCH_NETWORK, 0, "network", 0, 0, 1, 1 },
        { FETCH_TRUNCATED, 200, "truncated", 0, 200, 1, 1 },
        { FETCH_REDIRECTS, 302, "redirects", 1, 302, 1, 0 },
        { FETCH_BAD_URL, 0, "bad_url", 1, 0, 0, 0 },
        { FETCH_REFUSED, 0, "refused_address", 1, 0, 0, 0 },
        { FETCH_PROTOCOL, 999, "protocol", 1, 999, 1, 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check(&cases[i]);
}

static void test_retryable_statuses(void **state)
{
    (void)state;
    assert_true(fetch_status_retryable(408));
    assert_true(fetch_status_retryable(429));
    assert_true(fetch_status_retryable(500));
    assert_true(fetch_status_retryable(599));
    assert_false(fetch_status_retryable(400));
    assert_false(fetch_status_retryable(401));
    assert_false(fetch_status_retryable(404));
    assert_false(fetch_status_retryable(600));
    assert_false(fetch_status_retryable(0));
}

/* An outcome no version of this code knows is judged as a network error,
 * retryable, never as a success. */
static void test_unknown_outcome(void **state)
{
    struct fetch_result r;
    struct fetch_verdict v;

    (void)state;
    memset(&r, 0, sizeof r);
    r.outcome = (enum fetch_outcome)99;
    r.http_status = 200;
    fetch_judge(&r, &v);
    assert_string_equal(v.error_class, "network");
    assert_false(v.permanent);
    assert_int_equal(v.http_status, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_outcome),
        cmocka_unit_test(test_retryable_statuses),
        cmocka_unit_test(test_unknown_outcome),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
