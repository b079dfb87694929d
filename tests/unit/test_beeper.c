/* Beeper chat objects as GET /v1/chats items: what we keep, what we ignore,
 * and the message for each refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "beeper.h"
#include "resolve.h"

/* Shaped like a Beeper Desktop API chat, with fields we do not keep. */
static const char group_chat[] =
    "{\"id\":\"!NCdzlIaMjZUmvmvyHU:beeper.com\",\"localChatID\":\"1229\","
    "\"accountID\":\"whatsapp\",\"network\":\"WhatsApp\",\"title\":\"Caf\xc3\xa9 \\u2728 group\","
    "\"type\":\"group\","
    "\"imgURL\":\"file:///Users/a/Library/Application%20Support/BeeperTexts/media/local.beeper.com/"
    "%E2%9C%A8%20Caf%C3%A9%20group\","
    "\"participants\":{\"items\":["
    "{\"id\":\"@me:beeper.com\",\"fullName\":\"Me Myself\",\"imgURL\":\"mxc://beeper.com/AbCd\","
    "\"isSelf\":true,\"cannotMessage\":false},"
    "{\"id\":\"@whatsapp_123:beeper.local\",\"fullName\":\"J\xc3\xbcrgen M\xc3\xbcller\","
    "\"phoneNumber\":\"+49 30 1234\",\"imgURL\":\"file:///home/j/.config/BeeperTexts/media/"
    "local-whatsapp/J%C3%BCrgen%20M%C3%BCller%20(1).jpg\",\"isSelf\":false},"
    "{\"id\":\"@whatsapp_456:beeper.local\",\"imgURL\":\"\",\"username\":null}"
    "],\"hasMore\":true,\"total\":212},"
    "\"lastActivity\":\"2025-08-31T19:41:11.000Z\",\"unreadCount\":3,\"isArchived\":false,"
    "\"isMuted\":true,\"isPinned\":false,\"preview\":{\"id\":\"m1\",\"text\":\"hi\","
    "\"attachments\":[{\"type\":\"img\"}]},\"lastReadMessageSortKey\":12345}\n";

static void expect_error(const char *text, const char *want)
{
    struct beeper_chat chat;
    char err[512] = "";

    memset(&chat, 0x5a, sizeof chat); /* garbage in: must not be freed */
    assert_int_equal(beeper_chat_parse(text, strlen(text), &chat, err, sizeof err), -1);
    if (strcmp(err, want) != 0)
        fail_msg("parsing %.100s: err '%s', expected '%s'", text, err, want);
    /* on -1 out holds nothing */
    assert_null(chat.id);
    assert_null(chat.type);
    assert_null(chat.participants);
    assert_int_equal(chat.n_participants, 0);
}

static void test_group_chat(void **state)
{
    struct beeper_chat chat;
    char err[256] = "";
    (void)state;

    assert_int_equal(beeper_chat_parse(group_chat, strlen(group_chat), &chat, err, sizeof err), 0);
    assert_string_equal(chat.id, "!NCdzlIaMjZUmvmvyHU:beeper.com");
    assert_string_equal(chat.account_id, "whatsapp");
    assert_string_equal(chat.network, "WhatsApp");
    assert_string_equal(chat.title, "Caf\xc3\xa9 \xe2\x9c\xa8 group");
    assert_string_equal(chat.type, "group");
    /* kept exactly as given: percent-decoding is resolve's job */
    assert_string_equal(chat.img_url, "file:///Users/a/Library/Application%20Support/BeeperTexts/"
                                      "media/local.beeper.com/%E2%9C%A8%20Caf%C3%A9%20group");
    assert_string_equal(chat.last_activity, "2025-08-31T19:41:11.000Z");
    assert_int_equal(chat.participants_has_more, 1);
    assert_int_equal(chat.n_participants, 3);

    assert_string_equal(chat.participants[0].id, "@me:beeper.com");
    assert_string_equal(chat.participants[0].full_name, "Me Myself");
    assert_string_equal(chat.participants[0].img_url, "mxc://beeper.com/AbCd");
    assert_int_equal(chat.participants[0].is_self, 1);

    assert_string_equal(chat.participants[1].full_name, "J\xc3\xbcrgen M\xc3\xbcller");
    assert_string_equal(chat.participants[1].img_url,
                        "file:///home/j/.config/BeeperTexts/media/local-whatsapp/"
                        "J%C3%BCrgen%20M%C3%BCller%20(1).jpg");
    assert_int_equal(chat.participants[1].is_self, 0);

    assert_string_equal(chat.participants[2].id, "@whatsapp_456:beeper.local");
    assert_null(chat.participants[2].full_name);
    assert_null(chat.participants[2].img_url); /* "" becomes NULL */
    assert_int_equal(chat.participants[2].is_self, 0);

    beeper_chat_clear(&chat);
    assert_null(chat.id);
    assert_int_equal(chat.n_participants, 0);
    beeper_chat_clear(&chat); /* twice is harmless */
}

static void test_minimal_single_chat(void **state)
{
    static const char text[] = "{\"type\":\"single\",\"id\":\"abc\",\"imgURL\":\"\",\"title\":null}";
    struct beeper_chat chat;
    char err[256] = "";
    (void)state;

    assert_int_equal(beeper_chat_parse(text, strlen(text), &chat, err, sizeof err), 0);
    assert_string_equal(chat.id, "abc");
    assert_string_equal(chat.type, "single");
    assert_null(chat.account_id);
    assert_null(chat.title);
    assert_null(chat.network);
    assert_null(chat.img_url);
    assert_null(chat.last_activity);
    assert_null(chat.participants);
    assert_int_equal(chat.n_participants, 0);
    assert_int_equal(chat.participants_has_more, 0);
    beeper_chat_clear(&chat);
}

static void test_participants_edge_cases(void **state)
{
    static const char empty_items[] =
        "{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":[],\"hasMore\":false,\"total\":0}}";
    static const char no_items[] = "{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"hasMore\":true}}";
    struct beeper_chat chat;
    char err[256] = "";
    (void)state;

    assert_int_equal(beeper_chat_parse(empty_items, strlen(empty_items), &chat, err, sizeof err), 0);
    assert_int_equal(chat.n_participants, 0);
    assert_int_equal(chat.participants_has_more, 0);
    beeper_chat_clear(&chat);

    assert_int_equal(beeper_chat_parse(no_items, strlen(no_items), &chat, err, sizeof err), 0);
    assert_int_equal(chat.n_participants, 0);
    assert_int_equal(chat.participants_has_more, 1);
    beeper_chat_clear(&chat);
}

static void test_from_json_borrows(void **state)
{
    json_error_t jerr;
    json_t *root = json_loads(group_chat, 0, &jerr);
    struct beeper_chat chat;
    char err[256] = "";
    (void)state;

    assert_non_null(root);
    assert_int_equal(beeper_chat_from_json(root, &chat, err, sizeof err), 0);
    assert_int_equal(root->refcount, 1);
    json_decref(root); /* the chat owns copies */
    assert_string_equal(chat.participants[1].id, "@whatsapp_123:beeper.local");
    beeper_chat_clear(&chat);

    assert_int_equal(beeper_chat_from_json(NULL, &chat, err, sizeof err), -1);
    assert_string_equal(err, "chat is not a JSON object");
}

static void test_not_json(void **state)
{
    struct beeper_chat chat;
    char err[256] = "";
    (void)state;

    assert_int_equal(beeper_chat_parse("{\"id\":\"abc\",", 12, &chat, err, sizeof err), -1);
    assert_true(strncmp(err, "not JSON: ", 10) == 0);
    assert_non_null(strstr(err, " at column 12"));

    assert_int_equal(beeper_chat_parse("{\n\"id\": x}", 10, &chat, err, sizeof err), -1);
    assert_true(strncmp(err, "not JSON: ", 10) == 0);
    assert_non_null(strstr(err, " at line 2 column"));

    /* only len bytes are read: the closing brace is outside */
    assert_int_equal(beeper_chat_parse("{\"id\":\"a\",\"type\":\"single\"}", 25, &chat, err, sizeof err), -1);
    assert_true(strncmp(err, "not JSON: ", 10) == 0);
}

/* Fields PostgreSQL could not key or index are refused with their size;
 * an embedded NUL would silently cut a string short, so it is refused too. */
static void test_field_limits(void **state)
{
    char *line = malloc(4000);
    char url[2100];
    (void)state;

    assert_non_null(line);
    memset(url, 'a', 2049);
    url[2049] = '\0';
    snprintf(line, 4000, "{\"id\":\"abc\",\"type\":\"group\",\"imgURL\":\"http://x/%s\"}", url);
    {
        /* an image URL over the limit drops that URL, never the chat */
        struct beeper_chat c;
        char err[256];
        assert_int_equal(beeper_chat_parse(line, strlen(line), &c, err, sizeof err), 0);
        assert_null(c.img_url);
        assert_string_equal(c.img_dropped, "imgURL is 2058 bytes, over the 2048-byte limit");
        beeper_chat_clear(&c);
    }
    snprintf(line, 4000, "{\"id\":\"%s\",\"type\":\"group\"}", url);
    expect_error(line, "chat aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: "
                       "id is 2049 bytes, over the 2048-byte limit");
    url[2048 - 9] = '\0'; /* "http://x/" + 2039 = exactly 2048 */
    snprintf(line, 4000, "{\"id\":\"abc\",\"type\":\"group\",\"imgURL\":\"http://x/%s\"}", url);
    {
        struct beeper_chat c;
        char err[256];
        assert_int_equal(beeper_chat_parse(line, strlen(line), &c, err, sizeof err), 0);
        assert_int_equal(strlen(c.img_url), 2048);
        beeper_chat_clear(&c);
    }
    {
        /* jansson refuses \u0000 in text; an object built in memory may hold one */
        json_t *obj = json_pack("{s:s, s:s, s:s#}", "id", "abc", "type", "single", "title", "a\0b", (size_t)3);
        struct beeper_chat c;
        char err[256];
        assert_non_null(obj);
        assert_int_equal(beeper_chat_from_json(obj, &c, err, sizeof err), -1);
        assert_string_equal(err, "chat abc: title contains a NUL character");
        json_decref(obj);
    }
    free(line);
}

/* A data: URL (the Desktop API's participant imgURL may be one) is kept
 * under its key, whatever its length up to BEEPER_MAX_DATA_URL; a longer
 * one is dropped with a reason, and the chat and its participants stay. */
static void test_data_url(void **state)
{
    size_t cap = 2 * BEEPER_MAX_DATA_URL + 4096;
    char *line = malloc(cap), *url = malloc(cap);
    char key[RESOLVE_DATA_KEY_LEN + 1];
    struct beeper_chat c;
    char err[256];
    (void)state;

    assert_non_null(line);
    assert_non_null(url);
    /* a 28 KB PNG, as in the report that dropped a whole chat */
    memcpy(url, "data:image/png;base64,", 22);
    memset(url + 22, 'A', 37934 - 22);
    url[37934] = '\0';
    snprintf(line, cap,
             "{\"id\":\"g\",\"type\":\"group\",\"title\":\"T\",\"participants\":{\"items\":["
             "{\"id\":\"p1\",\"fullName\":\"Ann\",\"imgURL\":\"%s\"},"
             "{\"id\":\"p2\",\"fullName\":\"Bo\",\"imgURL\":\"mxc://x/y\"}]}}", url);
    assert_int_equal(beeper_chat_parse(line, strlen(line), &c, err, sizeof err), 0);
    assert_int_equal(c.n_participants, 2);
    assert_int_equal(resolve_data_key(url, key), 0);
    assert_string_equal(c.participants[0].img_url, key);
    assert_string_equal(c.participants[0].img_data_url, url);
    assert_null(c.participants[0].img_dropped);
    assert_string_equal(c.participants[1].img_url, "mxc://x/y");
    assert_null(c.participants[1].img_data_url);
    beeper_chat_clear(&c);

    /* over the limit: that URL only is dropped, with a reason */
    memset(url + 22, 'A', BEEPER_MAX_DATA_URL + 1 - 22);
    url[BEEPER_MAX_DATA_URL + 1] = '\0';
    snprintf(line, cap,
             "{\"id\":\"g\",\"type\":\"group\",\"imgURL\":\"%s\",\"participants\":{\"items\":["
             "{\"id\":\"p1\",\"fullName\":\"Ann\",\"imgURL\":\"%s\"}]}}", url, url);
    assert_int_equal(beeper_chat_parse(line, strlen(line), &c, err, sizeof err), 0);
    assert_int_equal(c.n_participants, 1);
    assert_null(c.img_url);
    assert_null(c.img_data_url);
    assert_string_equal(c.img_dropped, "imgURL is a data: URL of 61441 bytes, over the 61440-byte limit");
    assert_null(c.participants[0].img_url);
    assert_string_equal(c.participants[0].img_dropped,
                        "imgURL is a data: URL of 61441 bytes, over the 61440-byte limit");
    assert_string_equal(c.participants[0].full_name, "Ann");
    beeper_chat_clear(&c);
    free(line);
    free(url);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("[]", "chat is not a JSON object");
    expect_error("\"chat\"", "chat is not a JSON object");
    expect_error("{\"type\":\"single\"}", "chat has no id");
    expect_error("{\"id\":null,\"type\":\"single\"}", "chat has no id");
    expect_error("{\"id\":7,\"type\":\"single\"}", "chat id is not a string");
    expect_error("{\"id\":\"\",\"type\":\"single\"}", "chat has an empty id");
    expect_error("{\"id\":\"abc\"}", "chat abc: has no type");
    expect_error("{\"id\":\"abc\",\"type\":\"channel\"}", "chat abc: type 'channel' is not single or group");
    expect_error("{\"id\":\"abc\",\"type\":1}", "chat abc: type is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"single\",\"title\":5}", "chat abc: title is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"single\",\"accountID\":[]}", "chat abc: accountID is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"single\",\"network\":{}}", "chat abc: network is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"single\",\"imgURL\":false}", "chat abc: imgURL is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"single\",\"lastActivity\":1756669271}",
                 "chat abc: lastActivity is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":[]}",
                 "chat abc: participants is not an object");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":{}}}",
                 "chat abc: participants.items is not an array");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":[],\"hasMore\":\"yes\"}}",
                 "chat abc: participants.hasMore is not a boolean");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":"
                 "[{\"id\":\"p0\"},{\"id\":\"p1\",\"fullName\":\"x\"},{\"fullName\":\"no id\"}]}}",
                 "chat abc: participants.items[2] has no id");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":[{\"id\":\"\"}]}}",
                 "chat abc: participants.items[0] has no id");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":[{\"id\":\"p0\"},3]}}",
                 "chat abc: participants.items[1] is not an object");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":[{\"id\":9}]}}",
                 "chat abc: participants.items[0].id is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":"
                 "[{\"id\":\"p0\",\"fullName\":\"A\",\"imgURL\":\"mxc://x/y\"},{\"id\":\"p1\",\"fullName\":1}]}}",
                 "chat abc: participants.items[1].fullName is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":[{\"id\":\"p\",\"imgURL\":1}]}}",
                 "chat abc: participants.items[0].imgURL is not a string");
    expect_error("{\"id\":\"abc\",\"type\":\"group\",\"participants\":{\"items\":[{\"id\":\"p\",\"isSelf\":\"true\"}]}}",
                 "chat abc: participants.items[0].isSelf is not a boolean");
}

static void test_error_text_is_one_line(void **state)
{
    (void)state;
    expect_error("{\"id\":\"a\\nb\",\"type\":\"direct\\r\\n\"}", "chat a?b: type 'direct?\?' is not single or group");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_chat),
        cmocka_unit_test(test_minimal_single_chat),
        cmocka_unit_test(test_participants_edge_cases),
        cmocka_unit_test(test_from_json_borrows),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_field_limits),
        cmocka_unit_test(test_data_url),
        cmocka_unit_test(test_error_text_is_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
