/* common/log.c: a value printed between quotes cannot forge log fields
 * ('"', '\' and control characters are escaped, in log_msg itself), and
 * every other conversion prints exactly as printf would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <unistd.h>

#include "log.h"

/* stderr goes to a temporary file between capture_begin and capture_end,
 * which returns the message part of the one line log_msg wrote (the time,
 * program, pid and level before it cut off). */
static char captured[8192];

static void capture_begin(FILE **f, int *saved)
{
    fflush(stderr);
    *f = tmpfile();
    assert_non_null(*f);
    *saved = dup(2);
    assert_true(*saved >= 0);
    assert_int_equal(dup2(fileno(*f), 2), 2);
}

static const char *capture_end(FILE *f, int saved)
{
    size_t len;
    const char *msg;

    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    rewind(f);
    len = fread(captured, 1, sizeof captured - 1, f);
    fclose(f);
    captured[len] = '\0';
    assert_true(len > 0 && captured[len - 1] == '\n');
    captured[len - 1] = '\0';
    assert_null(strchr(captured, '\n'));
    msg = strstr(captured, " info ");
    assert_non_null(msg);
    return msg + strlen(" info ");
}

/* Counts the fields named key outside quotes, honouring backslash escapes
 * inside them, as a log parser would. */
static int fields_named(const char *line, const char *key)
{
    int in_quotes = 0, count = 0;
    size_t klen = strlen(key);

    for (const char *p = line; *p; p++) {
        if (in_quotes) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            else if (*p == '"')
                in_quotes = 0;
            continue;
        }
        if (*p == '"') {
            in_quotes = 1;
            continue;
        }
        if ((p == line || p[-1] == ' ') && strncmp(p, key, klen) == 0 && p[klen] == '=')
            count++;
    }
    assert_false(in_quotes);
    return count;
}

static void test_quoted_values_cannot_forge_fields(void **state)
{
    FILE *f;
    int saved;
    const char *msg;

    (void)state;
    log_init("test", LOG_INFO);
    capture_begin(&f, &saved);
    log_info("event=image_failed url=\"%s\" class=%s reason=\"%.*s\"",
             "http://x/evil\" class=ok injected=\"1.png", "http_404", 9, "a\\b\nc\"d\te-and-more");
    msg = capture_end(f, saved);
    assert_string_equal(msg, "event=image_failed url=\"http://x/evil\\\" class=ok injected=\\\"1.png\" "
                             "class=http_404 reason=\"a\\\\b\\nc\\\"d\\x09e\"");
    assert_int_equal(fields_named(msg, "class"), 1);
    assert_int_equal(fields_named(msg, "injected"), 0);
}

static void test_other_conversions_print_as_printf(void **state)
{
    FILE *f;
    int saved;
    const char *msg;
    char want[512];

    (void)state;
    log_init("test", LOG_INFO);
    snprintf(want, sizeof want, "a=%d b=%lld c=%ld d=%zu e=%u f=%.1f g=%5s h=%-3d| i=%x j=%s k=%.*s l=%% m=%c",
             -7, -1234567890123LL, 99L, (size_t)42, 7u, 2.25, "ab", 5, 255u, "plain \"unquoted\"", 3,
             "abcdef", 'z');
    capture_begin(&f, &saved);
    log_info("a=%d b=%lld c=%ld d=%zu e=%u f=%.1f g=%5s h=%-3d| i=%x j=%s k=%.*s l=%% m=%c", -7,
             -1234567890123LL, 99L, (size_t)42, 7u, 2.25, "ab", 5, 255u, "plain \"unquoted\"", 3, "abcdef",
             'z');
    msg = capture_end(f, saved);
    assert_string_equal(msg, want);
}

static void test_long_value_is_cut_not_overrun(void **state)
{
    FILE *f;
    int saved;
    const char *msg;
    char *big = malloc(10000);

    (void)state;
    assert_non_null(big);
    memset(big, '"', 9999);
    big[9999] = '\0';
    log_init("test", LOG_INFO);
    capture_begin(&f, &saved);
    log_info("event=x url=\"%s\" tail=%d", big, 1);
    msg = capture_end(f, saved);
    free(big);
    assert_true(strlen(captured) < 4096);
    assert_true(strncmp(msg, "event=x url=\"\\\"\\\"", 17) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quoted_values_cannot_forge_fields),
        cmocka_unit_test(test_other_conversions_print_as_printf),
        cmocka_unit_test(test_long_value_is_cut_not_overrun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
