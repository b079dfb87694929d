/* The image-needed event: encode, decode (every refusal names its cause), and
 * the RFC 3339 time helpers. Inputs are copied into exact-size buffers, not
 * NUL-terminated, as Kafka hands them over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "event.h"

/* Decodes text given without its NUL, from a malloc of exactly its length. */
static int decode_exact(const char *text, size_t len, struct event *ev, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    int rc;

    assert_non_null(copy);
    memcpy(copy, text, len);
    rc = event_decode(copy, len, ev, err, errlen);
    free(copy);
    return rc;
}

/* Encodes in and decodes the text into out (the caller event_clear()s
 * out); both must succeed. Returns the text (the caller frees it). */
static char *round_trip(const struct event *in, struct event *out)
{
    char err[256] = "";
    char *text = event_encode(in, err, sizeof err);

    if (text == NULL)
        fail_msg("encode: %s", err);
    if (decode_exact(text, strlen(text), out, err, sizeof err) != 0)
        fail_msg("decode of %.80s: %s", text, err);
    return text;
}

static void expect_decode_error(const char *text, const char *want)
{
    struct event ev;
    char err[512] = "";

    assert_int_equal(decode_exact(text, strlen(text), &ev, err, sizeof err), -1);
    if (strstr(err, want) == NULL)
        fail_msg("decoding %.80s: err '%s' does not contain '%s'", text, err, want);
    /* nothing left to free on -1 */
    assert_null(ev.source_url);
    assert_null(ev.chat_id);
    assert_null(ev.participant_id);
    assert_null(ev.account_id);
    assert_null(ev.reason);
}

static void test_encode_exact_json(void **state)
{
    struct event ev = {
        .source_url = "https://cdn.example/a b.jpg",
        .chat_id = "!chat:beeper.local",
        .participant_id = NULL,
        .account_id = "whatsapp",
        .reason = "import",
        .produced_at_ms = 1795266000123LL,
    };
    char err[256] = "";
    char *text = event_encode(&ev, err, sizeof err);
    (void)state;

    assert_non_null(text);
    assert_string_equal(text,
                        "{\"v\":1,\"source_url\":\"https://cdn.example/a b.jpg\","
                        "\"chat_id\":\"!chat:beeper.local\",\"participant_id\":null,"
                        "\"account_id\":\"whatsapp\",\"reason\":\"import\","
                        "\"produced_at\":\"2026-11-21T13:00:00.123Z\"}");
    free(text);
}

static void test_round_trip(void **state)
{
    struct event in = {
        .source_url = "file:///Users/a/Library/Application%20Support/BeeperTexts/media/x/D%C3%A9j%C3%A0",
        .chat_id = "chat \"quoted\" \xc3\xa9",
        .participant_id = "@p\\1:beeper.com",
        .account_id = "telegram",
        .reason = "sync",
        .produced_at_ms = 1709251199007LL,
    };
    struct event out;
    char *text = round_trip(&in, &out);
    (void)state;

    assert_string_equal(out.source_url, in.source_url);
    assert_string_equal(out.chat_id, in.chat_id);
    assert_string_equal(out.participant_id, in.participant_id);
    assert_string_equal(out.account_id, in.account_id);
    assert_string_equal(out.reason, in.reason);
    assert_int_equal(out.produced_at_ms, in.produced_at_ms);
    event_clear(&out);
    assert_null(out.source_url);
    event_clear(&out); /* twice is harmless */
    free(text);
}

/* A 28 KB data: URL travels in the event under its short key. */
static void test_data_url(void **state)
{
    struct event in = {
        .source_url = "data:sha256,0000000000000000000000000000000000000000000000000000000000000000",
        .chat_id = "c",
        .reason = "import",
    };
    struct event out;
    char err[256] = "";
    char *big = malloc(70001), *text;
    (void)state;

    assert_non_null(big);
    memcpy(big, "data:image/png;base64,", 22);
    memset(big + 22, 'A', 70000 - 22);
    big[28000] = '\0';
    in.data_url = big;
    text = round_trip(&in, &out);
    assert_true(strlen(text) > 28000 && strlen(text) <= EVENT_MAX_BYTES);
    assert_string_equal(out.source_url, in.source_url);
    assert_string_equal(out.data_url, big);
    event_clear(&out);
    free(text);

    /* without one, no data_url field at all */
    in.data_url = NULL;
    text = round_trip(&in, &out);
    assert_null(strstr(text, "data_url"));
    assert_null(out.data_url);
    event_clear(&out);
    free(text);

    /* an event a worker would refuse unread is not encoded */
    big[28000] = 'A';
    big[70000] = '\0';
    in.data_url = big;
    assert_null(event_encode(&in, err, sizeof err));
    assert_non_null(strstr(err, "over the 65536-byte limit (a data: URL too long)"));
    free(big);
}

static void test_round_trip_minimal(void **state)
{
    struct event in = { .source_url = "mxc://beeper.com/abc" };
    struct event out;
    char *text = round_trip(&in, &out);
    (void)state;

    assert_string_equal(out.source_url, "mxc://beeper.com/abc");
    assert_null(out.chat_id);
    assert_null(out.participant_id);
    assert_null(out.account_id);
    assert_null(out.reason);
    assert_int_equal(out.produced_at_ms, 0);
    event_clear(&out);
    free(text);
}

static void test_encode_errors(void **state)
{
    struct event ev = { 0 };
    char err[256] = "";
    char *big;
    (void)state;

    assert_null(event_encode(&ev, err, sizeof err));
    assert_string_equal(err, "event has no source_url");

    big = malloc(EVENT_MAX_URL + 2);
    assert_non_null(big);
    memset(big, 'a', EVENT_MAX_URL + 1);
    big[EVENT_MAX_URL + 1] = '\0';
    ev.source_url = big;
    assert_null(event_encode(&ev, err, sizeof err));
    assert_string_equal(err, "source_url is 2049 bytes, over the 2048-byte limit");
    big[EVENT_MAX_URL] = '\0'; /* exactly at the limit is fine */
    {
        char *ok = event_encode(&ev, err, sizeof err);
        assert_non_null(ok);
        free(ok);
    }
    free(big);

    big = malloc(102401);
    assert_non_null(big);
    memset(big, 'b', 102400);
    big[102400] = '\0';
    ev.source_url = big;
    assert_null(event_encode(&ev, err, sizeof err));
    assert_string_equal(err, "source_url is 102400 bytes, over the 2048-byte limit");
    free(big);

    ev.source_url = "http://x/\xff\xfe";
    assert_null(event_encode(&ev, err, sizeof err));
    assert_string_equal(err, "source_url is not valid UTF-8");
    ev.source_url = "http://x/";
    ev.reason = "\xc3";
    assert_null(event_encode(&ev, err, sizeof err));
    assert_string_equal(err, "reason is not valid UTF-8");
}

static void test_decode_unknown_fields_ignored(void **state)
{
    static const char text[] =
        "{\"v\":1,\"source_url\":\"https://x/y.png\",\"future\":{\"a\":[1,2]},"
        "\"chat_id\":\"c\",\"priority\":7,\"participant_id\":null,\"produced_at\":1795266000123}";
    struct event ev;
    char err[256] = "";
    (void)state;

    assert_int_equal(decode_exact(text, strlen(text), &ev, err, sizeof err), 0);
    assert_string_equal(ev.source_url, "https://x/y.png");
    assert_string_equal(ev.chat_id, "c");
    assert_null(ev.participant_id);
    assert_int_equal(ev.produced_at_ms, 1795266000123LL);
    event_clear(&ev);
}

static void test_decode_time_forms(void **state)
{
    static const char *texts[] = {
        "{\"v\":1,\"source_url\":\"u\",\"produced_at\":\"2026-11-21T13:00:00.123Z\"}",
        "{\"v\":1,\"source_url\":\"u\",\"produced_at\":\"2026-11-21T13:00:00.123+00:00\"}",
        "{\"v\":1,\"source_url\":\"u\",\"produced_at\":1795266000123}",
    };
    (void)state;

    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct event ev;
        char err[256] = "";
        assert_int_equal(decode_exact(texts[i], strlen(texts[i]), &ev, err, sizeof err), 0);
        assert_int_equal(ev.produced_at_ms, 1795266000123LL);
        event_clear(&ev);
    }
}

static void test_decode_errors(void **state)
{
    (void)state;
    expect_decode_error("{\"v\":1,\"source_url\":", "event is not JSON: ");
    expect_decode_error("{\"v\":1,\"source_url\":", " at line 1 column 20");
    expect_decode_error("", "event is not JSON: ");
    expect_decode_error("not json", "event is not JSON: ");
    expect_decode_error("[1,2]", "event is not a JSON object");
    expect_decode_error("\"https://x/y.jpg\"", "event is not a JSON object");
    expect_decode_error("{\"v\":1}", "event has no source_url");
    expect_decode_error("{\"v\":1,\"source_url\":null}", "event has no source_url");
    expect_decode_error("{\"v\":1,\"source_url\":42}", "source_url is not a string");
    expect_decode_error("{\"v\":1,\"source_url\":\"\"}", "source_url is empty");
    expect_decode_error("{\"v\":2,\"source_url\":\"u\"}", "event version 2 is not supported");
    expect_decode_error("{\"v\":0,\"source_url\":\"u\"}", "event version 0 is not supported");
    expect_decode_error("{\"source_url\":\"u\"}", "event has no version (v)");
    expect_decode_error("{\"v\":\"1\",\"source_url\":\"u\"}", "event version (v) is not an integer");
    expect_decode_error("{\"v\":1,\"source_url\":\"u\",\"chat_id\":5}", "chat_id is not a string");
    expect_decode_error("{\"v\":1,\"source_url\":\"u\",\"participant_id\":[]}",
                        "participant_id is not a string");
    expect_decode_error("{\"v\":1,\"source_url\":\"u\",\"account_id\":true}", "account_id is not a string");
    expect_decode_error("{\"v\":1,\"source_url\":\"u\",\"reason\":{}}", "reason is not a string");
    expect_decode_error("{\"v\":1,\"source_url\":\"u\",\"produced_at\":\"yesterday\"}",
                        "produced_at 'yesterday' is not an RFC 3339 time");
    expect_decode_error("{\"v\":1,\"source_url\":\"u\",\"produced_at\":1.5}",
                        "produced_at is not an RFC 3339 string or an integer of Unix ms");
    /* found by fuzzing: a time no RFC 3339 string can carry could not be
     * passed on to the retry or dead-letter topic */
    expect_decode_error("{\"v\":1,\"source_url\":\"u\",\"produced_at\":16666666666666666}",
                        "produced_at 16666666666666666 is outside the years 0000-9999");
    expect_decode_error("{\"v\":1,\"source_url\":\"u\",\"produced_at\":-62167219200001}",
                        "produced_at -62167219200001 is outside the years 0000-9999");
    expect_decode_error("{\"v\":1,\"source_url\":\"a\",\"source_url\":\"b\"}", "duplicate object key");
    expect_decode_error("{\"v\":1,\"source_url\":\"a\\u0000b\"}", "event is not JSON: ");
}

static void test_decode_long_url(void **state)
{
    const size_t n = 102400;
    const char *head = "{\"v\":1,\"source_url\":\"";
    char *text = malloc(n + 64);
    struct event ev;
    char err[256] = "";
    size_t len;
    (void)state;

    assert_non_null(text);
    len = (size_t)sprintf(text, "%s", head);
    memset(text + len, 'a', n);
    len += n;
    len += (size_t)sprintf(text + len, "\"}");
    /* over the event size limit too: that check comes first */
    assert_int_equal(decode_exact(text, len, &ev, err, sizeof err), -1);
    assert_string_equal(err, "event is 102423 bytes, over the 65536-byte limit");
    free(text);

    /* a URL over 2048 bytes inside an event under 65536 bytes */
    text = malloc(20000);
    assert_non_null(text);
    len = (size_t)sprintf(text, "%s", head);
    memset(text + len, 'a', 10000);
    len += 10000;
    len += (size_t)sprintf(text + len, "\"}");
    assert_int_equal(decode_exact(text, len, &ev, err, sizeof err), -1);
    assert_string_equal(err, "source_url is 10000 bytes, over the 2048-byte limit");
    free(text);
}

static void test_decode_event_too_big(void **state)
{
    const size_t n = 70000;
    char *text = malloc(n);
    struct event ev;
    char err[256] = "";
    (void)state;

    assert_non_null(text);
    memset(text, ' ', n); /* not even parsed */
    assert_int_equal(decode_exact(text, n, &ev, err, sizeof err), -1);
    assert_string_equal(err, "event is 70000 bytes, over the 65536-byte limit");
    free(text);
}

static void test_format_time(void **state)
{
    char buf[40];
    (void)state;

    event_format_time(1795266000123LL, buf, sizeof buf);
    assert_string_equal(buf, "2026-11-21T13:00:00.123Z");
    event_format_time(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    event_format_time(-1, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    event_format_time(1709251199000LL, buf, 25); /* the documented minimum */
    assert_string_equal(buf, "2024-02-29T23:59:59.000Z");
}

static void test_parse_time(void **state)
{
    long long ms = -7;
    (void)state;

    assert_int_equal(event_parse_time("2026-11-21T13:00:00.123Z", &ms), 0);
    assert_int_equal(ms, 1795266000123LL);
    assert_int_equal(event_parse_time("2026-11-21T13:00:00Z", &ms), 0);
    assert_int_equal(ms, 1795266000000LL);
    assert_int_equal(event_parse_time("2026-11-21T13:00:00+00:00", &ms), 0);
    assert_int_equal(ms, 1795266000000LL);
    assert_int_equal(event_parse_time("2026-11-21t13:00:00.5z", &ms), 0);
    assert_int_equal(ms, 1795266000500LL);
    assert_int_equal(event_parse_time("2026-11-21T13:00:00.500+02:00", &ms), 0);
    assert_int_equal(ms, 1795258800500LL);
    assert_int_equal(event_parse_time("2026-11-21T13:00:00.123456789Z", &ms), 0);
    assert_int_equal(ms, 1795266000123LL);
    assert_int_equal(event_parse_time("2024-02-29T23:59:59Z", &ms), 0);
    assert_int_equal(ms, 1709251199000LL);

    ms = 42;
    assert_int_equal(event_parse_time("2023-02-29T00:00:00Z", &ms), -1);
    assert_int_equal(event_parse_time("2026-13-01T00:00:00Z", &ms), -1);
    assert_int_equal(event_parse_time("2026-11-21T24:00:00Z", &ms), -1);
    assert_int_equal(event_parse_time("2026-11-21T13:00:00", &ms), -1);
    assert_int_equal(event_parse_time("2026-11-21T13:00:00.Z", &ms), -1);
    assert_int_equal(event_parse_time("2026-11-21T13:00:00Z ", &ms), -1);
    assert_int_equal(event_parse_time("2026-11-21 13:00:00Z", &ms), -1);
    assert_int_equal(event_parse_time("2026-11-21T13:00:00+0200", &ms), -1);
    assert_int_equal(event_parse_time("+2026-11-21T13:00:00Z", &ms), -1);
    assert_int_equal(event_parse_time("", &ms), -1);
    assert_int_equal(event_parse_time(NULL, &ms), -1);
    assert_int_equal(ms, 42); /* untouched on failure */
}

static void test_format_parse_agree(void **state)
{
    static const long long samples[] = { 0, 1, 999, 1000, 951782400000LL, 4102444799999LL };
    (void)state;

    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char buf[40];
        long long back = -1;
        event_format_time(samples[i], buf, sizeof buf);
        assert_int_equal(event_parse_time(buf, &back), 0);
        assert_int_equal(back, samples[i]);
    }
}

static void test_now(void **state)
{
    long long a = event_now_ms(), b = event_now_ms();
    (void)state;

    assert_true(a > 1577836800000LL); /* after 2020 */
    assert_true(b >= a);
}

#define SHA_A "aa00000000000000000000000000000000000000000000000000000000000001"

/* image-stored: exact JSON, round trip, what decode refuses. */
static void test_stored_event(void **state)
{
    struct stored_event ev = { .storage_key = "aa/" SHA_A ".jpg", .content_type = "image/jpeg",
                               .byte_size = 1234, .produced_at_ms = 1763730000123LL };
    struct stored_event back;
    char err[256];
    char *text;
    static const char *bad[] = {
        "{\"v\":2,\"sha256\":\"" SHA_A "\",\"storage_key\":\"aa/x.jpg\"}",
        "{\"v\":1,\"sha256\":\"AA00\",\"storage_key\":\"aa/x.jpg\"}",
        "{\"v\":1,\"sha256\":\"" SHA_A "\"}",
        "{\"v\":1,\"sha256\":\"" SHA_A "\",\"storage_key\":\"../../etc/passwd\"}",
        "{\"v\":1,\"sha256\":\"" SHA_A "\",\"storage_key\":\"/etc/passwd\"}",
        "{\"v\":1,\"sha256\":\"" SHA_A "\",\"storage_key\":\"aa/x.jpg\",\"byte_size\":-1}",
        "[1]",
    };

    (void)state;
    memcpy(ev.sha256, SHA_A, 65);
    text = stored_event_encode(&ev, err, sizeof err);
    assert_non_null(text);
    assert_string_equal(text, "{\"v\":1,\"sha256\":\"" SHA_A "\",\"storage_key\":\"aa/" SHA_A
                              ".jpg\",\"content_type\":\"image/jpeg\",\"byte_size\":1234,"
                              "\"produced_at\":\"2025-11-21T13:00:00.123Z\"}");
    assert_int_equal(stored_event_decode(text, strlen(text), &back, err, sizeof err), 0);
    assert_string_equal(back.sha256, SHA_A);
    assert_string_equal(back.storage_key, ev.storage_key);
    assert_string_equal(back.content_type, "image/jpeg");
    assert_int_equal(back.byte_size, 1234);
    assert_int_equal(back.produced_at_ms, ev.produced_at_ms);
    stored_event_clear(&back);
    free(text);

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (stored_event_decode(bad[i], strlen(bad[i]), &back, err, sizeof err) == 0)
            fail_msg("decoded: %s", bad[i]);
        assert_null(back.storage_key);
    }
    ev.storage_key = "../x";
    assert_null(stored_event_encode(&ev, err, sizeof err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stored_event),
        cmocka_unit_test(test_encode_exact_json),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_round_trip_minimal),
        cmocka_unit_test(test_data_url),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_decode_unknown_fields_ignored),
        cmocka_unit_test(test_decode_time_forms),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_decode_long_url),
        cmocka_unit_test(test_decode_event_too_big),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_format_parse_agree),
        cmocka_unit_test(test_now),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
