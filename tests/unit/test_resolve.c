/* resolve_source() for each scheme and every refusal, resolve_redact(), and
 * resolve_open_confined() against a real temporary folder with symlinks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "resolve.h"

#define MAC_MEDIA "file:///Users/a/Library/Application%20Support/BeeperTexts/media/"
#define MAC_MEDIA_PATH "/Users/a/Library/Application Support/BeeperTexts/media/"
#define NO_FILE_SOURCE "a file:// URL or local path needs BEEPER_MEDIA_DIR (the media folder), " \
    "BEEPER_MEDIA_SERVER or BEEPER_API_TOKEN (Beeper Desktop serves it) set on the worker"

static const struct resolve_config no_cfg = { 0 };
static const struct resolve_config dir_cfg = { .media_dir = "/srv/beeper/media" };
static const struct resolve_config server_cfg = {
    .media_server = "http://127.0.0.1:8787",
    .media_token = "s3cr+t/tok&en",
    .api_url = "http://localhost:23373/",
    .api_token = "api-T0KEN",
};

static void expect_fail_rc(const struct resolve_config *cfg, const char *url, const char *want,
                           int want_rc)
{
    struct resolved r;
    char err[512] = "";

    memset(&r, 0x5a, sizeof r); /* garbage in: must not be freed */
    assert_int_equal(resolve_source(cfg, url, &r, err, sizeof err), want_rc);
    if (strcmp(err, want) != 0)
        fail_msg("resolving %.100s: err '%s', expected '%s'", url, err, want);
    assert_null(r.url);
    assert_null(r.path);
    assert_null(r.display);
    assert_null(r.auth_header);
}

/* The URL itself is unusable: -1. */
static void expect_fail(const struct resolve_config *cfg, const char *url, const char *want)
{
    expect_fail_rc(cfg, url, want, -1);
}

/* The configuration lacks what the URL needs: RESOLVE_ERR_CONFIG. */
static void expect_config_fail(const struct resolve_config *cfg, const char *url, const char *want)
{
    expect_fail_rc(cfg, url, want, RESOLVE_ERR_CONFIG);
}

static void expect_file(const struct resolve_config *cfg, const char *url, const char *path,
                        const char *display)
{
    struct resolved r;
    char err[512] = "";

    if (resolve_source(cfg, url, &r, err, sizeof err) != 0)
        fail_msg("resolving %s: %s", url, err);
    assert_int_equal(r.kind, RESOLVE_FILE);
    assert_string_equal(r.path, path);
    assert_string_equal(r.display, display);
    assert_null(r.url);
    assert_null(r.auth_header);
    resolved_clear(&r);
}

static void expect_http(const struct resolve_config *cfg, const char *url, const char *fetch,
                        const char *auth, const char *display)
{
    struct resolved r;
    char err[512] = "";

    if (resolve_source(cfg, url, &r, err, sizeof err) != 0)
        fail_msg("resolving %s: %s", url, err);
    assert_int_equal(r.kind, RESOLVE_HTTP);
    assert_string_equal(r.url, fetch);
    if (auth)
        assert_string_equal(r.auth_header, auth);
    else
        assert_null(r.auth_header);
    assert_string_equal(r.display, display);
    assert_null(r.path);
    resolved_clear(&r);
}

static void test_http(void **state)
{
    (void)state;
    expect_http(&no_cfg, "https://cdn.example.com/a/b.jpg?w=64&sig=abc", "https://cdn.example.com/a/b.jpg?w=64&sig=abc",
                NULL, "https://cdn.example.com/a/b.jpg?w=REDACTED&sig=REDACTED");
    expect_http(&no_cfg, "HTTP://Example.com:8080/x/../y.png", "http://Example.com:8080/y.png", NULL,
                "http://Example.com:8080/y.png");
    expect_http(&no_cfg, "http://[::1]:9/p%20q.gif", "http://[::1]:9/p%20q.gif", NULL, "http://[::1]:9/p%20q.gif");
}

static void test_http_refused(void **state)
{
    char *big;
    (void)state;

    expect_fail(&no_cfg, "http://", "bad http URL: No host part in the URL");
    expect_fail(&no_cfg, "https://h/a b.jpg", "bad https URL: Bad path");
    expect_fail(&no_cfg, "http:example.com/x", "bad http URL: Unsupported number of slashes following scheme");
    expect_fail(&no_cfg, "http://exa\nmple.com/", "bad http URL: Bad hostname");

    big = malloc(9001);
    assert_non_null(big);
    memset(big, 'a', 9000);
    memcpy(big, "https://h/", 10);
    big[9000] = '\0';
    expect_fail(&no_cfg, big, "URL is 9000 bytes, over the 8192-byte limit");
    big[8192] = '\0'; /* at the limit */
    expect_http(&no_cfg, big, big, NULL, big);
    free(big);
}

static void test_unsupported_schemes(void **state)
{
    (void)state;
    expect_fail(&server_cfg, "ftp://files.example.com/a.jpg", "unsupported URL scheme 'ftp'");
    expect_fail(&server_cfg, "gopher://h/1", "unsupported URL scheme 'gopher'");
    expect_fail(&server_cfg, "javascript:alert(document.cookie)", "unsupported URL scheme 'javascript'");
    expect_fail(&server_cfg, "JavaScript://%0aalert(1)", "unsupported URL scheme 'javascript'");
    expect_fail(&server_cfg, "avatar.jpg", "URL has no scheme");
    expect_fail(&server_cfg, "", "empty URL");
    expect_fail(&server_cfg, NULL, "empty URL");
}

static void test_file_media_dir(void **state)
{
    static const struct resolve_config slash = { .media_dir = "/srv/beeper/media/" };
    (void)state;

    expect_file(&dir_cfg, MAC_MEDIA "local.beeper.com/AbC%20d%C3%A9f",
                "/srv/beeper/media/local.beeper.com/AbC d\xc3\xa9" "f", "file:local.beeper.com/AbC d\xc3\xa9" "f");
    expect_file(&slash, "file:///home/j/.config/BeeperTexts/media/local-whatsapp/J%C3%BCrgen%20(1).jpg",
                "/srv/beeper/media/local-whatsapp/J\xc3\xbcrgen (1).jpg", "file:local-whatsapp/J\xc3\xbcrgen (1).jpg");
    /* the media folder wins over a media server */
    {
        struct resolve_config both = server_cfg;
        both.media_dir = "/m";
        expect_file(&both, MAC_MEDIA "x/y", "/m/x/y", "file:x/y");
    }
    expect_file(&dir_cfg, "file://localhost/a/media/b", "/srv/beeper/media/b", "file:b");
}

static void test_file_last_media_segment(void **state)
{
    (void)state;
    expect_file(&dir_cfg, "file:///a/media/b/media/c.jpg", "/srv/beeper/media/c.jpg", "file:c.jpg");
    /* decoded first, so an escaped /media/ counts too */
    expect_file(&dir_cfg, "file:///a/media/b%2Fmedia%2Fc.jpg", "/srv/beeper/media/c.jpg", "file:c.jpg");
    /* "multimedia/" is not a media segment */
    expect_file(&dir_cfg, "file:///a/media/multimedia/x", "/srv/beeper/media/multimedia/x", "file:multimedia/x");
}

static void test_file_refused(void **state)
{
    (void)state;
    expect_fail(&dir_cfg, MAC_MEDIA "../../../etc/passwd", "file:// path has a '..' segment");
    expect_fail(&dir_cfg, MAC_MEDIA "x/../../y", "file:// path has a '..' segment");
    expect_fail(&dir_cfg, MAC_MEDIA "%2e%2e/%2E%2E/etc/passwd", "file:// path has a '..' segment");
    expect_fail(&dir_cfg, MAC_MEDIA "x%2F..%2F..%2Fetc", "file:// path has a '..' segment");
    expect_fail(&dir_cfg, MAC_MEDIA "./x", "file:// path has a '.' segment");
    expect_fail(&dir_cfg, MAC_MEDIA "x/%2e", "file:// path has a '.' segment");
    expect_fail(&dir_cfg, MAC_MEDIA "/etc/passwd", "file:// path after /media/ is absolute");
    expect_fail(&dir_cfg, MAC_MEDIA "%2Fetc%2Fpasswd", "file:// path after /media/ is absolute");
    expect_fail(&dir_cfg, MAC_MEDIA, "file:// path is empty after /media/");
    expect_fail(&dir_cfg, "file:///Users/a/Pictures/me.jpg", "file:// path has no /media/ segment");
    expect_fail(&dir_cfg, "file:///a/media", "file:// path has no /media/ segment");
    expect_fail(&dir_cfg, MAC_MEDIA "x%5C..%5Cy", "file:// path has a backslash");
    expect_fail(&dir_cfg, MAC_MEDIA "x%00.jpg", "file:// path has a NUL byte");
    expect_fail(&dir_cfg, MAC_MEDIA "x%0Ay", "file:// path has a control character");
    expect_fail(&dir_cfg, MAC_MEDIA "a//b", "file:// path has an empty segment after /media/");
    expect_fail(&dir_cfg, MAC_MEDIA "a/", "file:// path has an empty segment after /media/");
    expect_fail(&dir_cfg, "file://evil.example/a/media/x", "bad file URL: Bad file:// URL");
    expect_config_fail(&no_cfg, MAC_MEDIA "x", NO_FILE_SOURCE);
}

static void test_file_media_server(void **state)
{
    static const struct resolve_config slash_no_token = { .media_server = "https://media.local:8443/beeper/" };
    struct resolved r;
    char err[256] = "";
    (void)state;

    expect_http(&server_cfg, MAC_MEDIA "local.beeper.com/AbC%20d%C3%A9f",
                "http://127.0.0.1:8787/local.beeper.com/AbC%20d%C3%A9f?token=s3cr%2Bt%2Ftok%26en", NULL,
                "http://127.0.0.1:8787/local.beeper.com/AbC%20d%C3%A9f?token=REDACTED");
    /* every segment escaped on its own; the token is never in the display */
    assert_int_equal(resolve_source(&server_cfg, MAC_MEDIA "w/J%C3%BCrgen%20(1)%23%3F.jpg", &r, err, sizeof err), 0);
    assert_string_equal(r.url, "http://127.0.0.1:8787/w/J%C3%BCrgen%20%281%29%23%3F.jpg?token=s3cr%2Bt%2Ftok%26en");
    assert_null(strstr(r.display, "s3cr"));
    assert_null(strstr(r.display, "tok%26en"));
    resolved_clear(&r);

    expect_http(&slash_no_token, MAC_MEDIA "a/b%20c", "https://media.local:8443/beeper/a/b%20c", NULL,
                "https://media.local:8443/beeper/a/b%20c");
    {
        struct resolve_config bad = { .media_server = "ftp://x" };
        expect_fail(&bad, MAC_MEDIA "a", "BEEPER_MEDIA_SERVER is not an http(s) URL");
        bad.media_server = "http://x/?a=1";
        expect_fail(&bad, MAC_MEDIA "a", "BEEPER_MEDIA_SERVER must not have a query or fragment");
    }
}

/* Desktop 4.2.808+ gives a chat's imgURL as an absolute local path: the
 * same as the matching file:// URL, with the same confinement. */
static void test_bare_path(void **state)
{
    static const struct resolve_config api_only = { .api_url = "http://localhost:23373/",
                                                     .api_token = "api-T0KEN" };
    (void)state;

    expect_file(&dir_cfg, MAC_MEDIA_PATH "local-whatsapp/J\xc3\xbcrgen (1).jpg",
                "/srv/beeper/media/local-whatsapp/J\xc3\xbcrgen (1).jpg", "file:local-whatsapp/J\xc3\xbcrgen (1).jpg");
    expect_file(&dir_cfg, "/a/media/b/media/c.jpg", "/srv/beeper/media/c.jpg", "file:c.jpg");
    /* a path is not percent-decoded: %2e is a name, not a dot */
    expect_file(&dir_cfg, "/a/media/%2e%2e", "/srv/beeper/media/%2e%2e", "file:%2e%2e");
    expect_http(&server_cfg, MAC_MEDIA_PATH "x y.jpg", "http://127.0.0.1:8787/x%20y.jpg?token=s3cr%2Bt%2Ftok%26en",
                NULL, "http://127.0.0.1:8787/x%20y.jpg?token=REDACTED");
    expect_http(&api_only, MAC_MEDIA_PATH "x y.jpg",
                "http://localhost:23373/v1/assets/serve?url=file%3A%2F%2F%2FUsers%2Fa%2FLibrary%2FApplication%2520Support%2FBeeperTexts%2Fmedia%2Fx%2520y.jpg",
                "Authorization: Bearer api-T0KEN", "http://localhost:23373/v1/assets/serve?url=REDACTED");
    expect_fail(&dir_cfg, "/Users/a/avatar.jpg", "file:// path has no /media/ segment");
    expect_fail(&dir_cfg, MAC_MEDIA_PATH "../../../etc/passwd", "file:// path has a '..' segment");
    expect_fail(&dir_cfg, MAC_MEDIA_PATH "x/./y", "file:// path has a '.' segment");
    expect_fail(&dir_cfg, MAC_MEDIA_PATH "a//b", "file:// path has an empty segment after /media/");
    expect_fail(&dir_cfg, MAC_MEDIA_PATH "x\ny", "file:// path has a control character");
    expect_config_fail(&no_cfg, MAC_MEDIA_PATH "x", NO_FILE_SOURCE);
    expect_fail(&dir_cfg, "Users/a/media/x", "URL has no scheme"); /* relative: never */
}

/* Neither BEEPER_MEDIA_DIR nor BEEPER_MEDIA_SERVER: Beeper Desktop 4.2.509+
 * serves file:// URLs at /v1/assets/serve when a token is set; without one
 * it is the configuration's fault (retryable), not the image's. */
static void test_file_via_api(void **state)
{
    static const struct resolve_config api_only = { .api_url = "http://localhost:23373",
                                                     .api_token = "api-T0KEN" };
    static const struct resolve_config url_only = { .api_url = "http://localhost:23373" };
    (void)state;

    expect_http(&api_only, MAC_MEDIA "a%20b.jpg",
                "http://localhost:23373/v1/assets/serve?url=file%3A%2F%2F%2FUsers%2Fa%2FLibrary%2FApplication%2520Support%2FBeeperTexts%2Fmedia%2Fa%2520b.jpg",
                "Authorization: Bearer api-T0KEN", "http://localhost:23373/v1/assets/serve?url=REDACTED");
    /* still confined: what Desktop would serve is only the media folder */
    expect_fail(&api_only, MAC_MEDIA "../../../etc/passwd", "file:// path has a '..' segment");
    expect_fail(&api_only, "file:///etc/passwd", "file:// path has no /media/ segment");
    expect_config_fail(&url_only, MAC_MEDIA "a.jpg", NO_FILE_SOURCE);
}

static void expect_data(const char *url, const void *bytes, size_t len)
{
    struct resolved r;
    char err[512] = "", key[RESOLVE_DATA_KEY_LEN + 1];

    if (resolve_source(&no_cfg, url, &r, err, sizeof err) != 0)
        fail_msg("resolving %.100s: %s", url, err);
    assert_int_equal(r.kind, RESOLVE_DATA);
    assert_int_equal(r.data_len, len);
    assert_memory_equal(r.data, bytes, len);
    assert_int_equal(resolve_data_key(url, key), 0);
    assert_string_equal(r.display, key);
    assert_null(r.url);
    assert_null(r.path);
    resolved_clear(&r);
}

/* data: URLs decode without the network (base64, also wrapped or without
 * padding, and percent-encoded), under the key "data:sha256,<hex>". */
static void test_data_url(void **state)
{
    static const unsigned char png_head[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    char key[RESOLVE_DATA_KEY_LEN + 1];
    char *big;
    (void)state;

    expect_data("data:image/png;base64,iVBORw0KGgo=", png_head, 8);
    expect_data("DATA:image/png;BASE64,iVBORw0KGgo", png_head, 8);      /* no padding */
    expect_data("data:image/png;base64,iVBO\r\nRw0K Ggo=", png_head, 8); /* wrapped */
    expect_data("data:image/png;base64,iVBORw0K%47go%3D", png_head, 8);  /* percent-encoded base64 */
    expect_data("data:image/png,%89PNG%0D%0A%1A%0A", png_head, 8);      /* percent-encoded bytes */
    expect_data("data:,<svg/>", "<svg/>", 6);
    expect_data("data:image/svg+xml;charset=utf-8;base64,PHN2Zy8+", "<svg/>", 6);

    assert_int_equal(resolve_data_key("data:,x", key), 0);
    /* sha256("data:,x"), as sha256sum prints it */
    assert_string_equal(key, "data:sha256,"
                             "707ce201c2f97b77e63f9ca88c081b76df5c8ee2582686405652fd8f67f61143");
    assert_int_equal(strlen(key), RESOLVE_DATA_KEY_LEN);
    assert_true(resolve_is_data_url("Data:x"));
    assert_false(resolve_is_data_url("https://h/data:x"));

    expect_fail(&no_cfg, "data:image/png;base64", "data: URL has no ',' before its data");
    expect_fail(&no_cfg, "data:image/png;base64,", "data: URL has no data");
    expect_fail(&no_cfg, "data:image/png;base64,iVBO*w0K", "data: URL has a character that is not base64 at byte 4 of its base64 data");
    expect_fail(&no_cfg, "data:image/png;base64,iV=BO", "data: URL has data after '=' at byte 3 of its base64 data");
    expect_fail(&no_cfg, "data:image/png;base64,iVBOR", "data: URL has truncated base64 data");
    expect_fail(&no_cfg, key, "a data:sha256, key without the data: URL it stands for (the event has no "
                              "data_url; run import or sync again)");

    /* a 28 KB avatar (and more) is fine; over an event's size is not */
    big = malloc(70001);
    assert_non_null(big);
    memcpy(big, "data:image/png;base64,", 22);
    memset(big + 22, 'A', 70000 - 22);
    big[22 + 39976] = '\0'; /* 39976 base64 characters: 29982 bytes */
    {
        struct resolved r;
        char err[256];
        assert_int_equal(resolve_source(&no_cfg, big, &r, err, sizeof err), 0);
        assert_int_equal(r.data_len, 39976 / 4 * 3);
        resolved_clear(&r);
    }
    big[22 + 39976] = 'A';
    big[70000] = '\0';
    expect_fail(&no_cfg, big, "data: URL is 70000 bytes, over the 65536-byte limit");
    free(big);
}

static void test_mxc(void **state)
{
    static const struct resolve_config no_token = { .api_url = "http://localhost:23373" };
    (void)state;

    expect_http(&server_cfg, "mxc://beeper.com/AbCdEf",
                "http://localhost:23373/v1/assets/serve?url=mxc%3A%2F%2Fbeeper.com%2FAbCdEf",
                "Authorization: Bearer api-T0KEN", "http://localhost:23373/v1/assets/serve?url=REDACTED");
    expect_http(&no_token, "localmxc://local-whatsapp/3aa8b1c",
                "http://localhost:23373/v1/assets/serve?url=localmxc%3A%2F%2Flocal-whatsapp%2F3aa8b1c", NULL,
                "http://localhost:23373/v1/assets/serve?url=REDACTED");
    expect_config_fail(&dir_cfg, "mxc://beeper.com/x", "an mxc:// URL needs BEEPER_API_URL");
    {
        struct resolve_config bad = { .api_url = "localhost:23373" };
        expect_fail(&bad, "mxc://beeper.com/x",
                    "BEEPER_API_URL is not a URL: Unsupported number of slashes following scheme");
        bad.api_url = "ftp://localhost:23373";
        expect_fail(&bad, "mxc://beeper.com/x", "BEEPER_API_URL is not an http(s) URL");
        bad.api_url = "http://localhost:23373";
        bad.api_token = "abc\r\nX-Evil: 1";
        expect_fail(&bad, "mxc://beeper.com/x", "BEEPER_API_TOKEN has a line break");
    }
}

static void expect_redact(const char *url, const char *want)
{
    char out[512];
    memset(out, 'x', sizeof out);
    resolve_redact(url, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_redact(void **state)
{
    char small[10];
    (void)state;

    expect_redact("http://h/x?token=abc&b=2", "http://h/x?token=REDACTED&b=REDACTED");
    expect_redact("http://user:pw@h/x?t=1#access_token=z", "http://REDACTED:REDACTED@h/x?t=REDACTED#REDACTED");
    expect_redact("https://h/x?bare-secret&&k=", "https://h/x?REDACTED&&k=REDACTED");
    expect_redact("https://h/plain.jpg", "https://h/plain.jpg");
    expect_redact("mxc://beeper.com/AbC", "mxc://beeper.com/AbC");
    /* not parseable: cut at '?' and hide the userinfo */
    expect_redact("http://h/a b?token=zzz", "http://h/a b?REDACTED");
    expect_redact("http://us er:pw@h/a?x", "http://REDACTED@h/a?REDACTED");
    expect_redact("not a url\n#frag", "not a url?#REDACTED");
    expect_redact("", "");

    memset(small, 'x', sizeof small);
    resolve_redact("http://h/x?token=abc", small, sizeof small);
    assert_string_equal(small, "http://h/");
    small[0] = 'x';
    resolve_redact("http://h/x?token=abc", small, 1);
    assert_string_equal(small, "");
    resolve_redact("http://h/", small, 0); /* writes nothing */
}

/* A media folder with a file, a subfolder, symlinks in and out, a FIFO. */
struct tree {
    char root[64];
    char media[128];
};

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* One entry of the tree, at dir/name: kind 'd' a folder, 'f' a file
 * holding arg, 'l' a symlink to arg, 'p' a FIFO. 0, or -1. */
static int make_at(const char *dir, const char *name, char kind, const char *arg)
{
    char p[256];

    snprintf(p, sizeof p, "%s/%s", dir, name);
    switch (kind) {
    case 'd':
        return mkdir(p, 0700);
    case 'f':
        put_file(p, arg);
        return 0;
    case 'l':
        return symlink(arg, p);
    case 'p':
        return mkfifo(p, 0600);
    default:
        return -1;
    }
}

static int tree_setup(void **state)
{
    struct tree *t = calloc(1, sizeof *t);

    if (t == NULL)
        return -1;
    snprintf(t->root, sizeof t->root, "/tmp/imgcache-resolve-XXXXXX");
    if (mkdtemp(t->root) == NULL)
        return -1;
    snprintf(t->media, sizeof t->media, "%s/media", t->root);
    if (make_at(t->root, "media", 'd', NULL) != 0 ||
        make_at(t->root, "outside.jpg", 'f', "OUTSIDE") != 0 ||
        make_at(t->media, "a.jpg", 'f', "INSIDE") != 0 ||
        make_at(t->media, "sub", 'd', NULL) != 0 ||
        make_at(t->media, "sub/b c\xc3\xa9.jpg", 'f', "NESTED") != 0 ||
        make_at(t->media, "link-in.jpg", 'l', "sub/b c\xc3\xa9.jpg") != 0 ||
        make_at(t->media, "link-out.jpg", 'l', "../outside.jpg") != 0 ||
        make_at(t->media, "link-abs.jpg", 'l', "/etc/hostname") != 0 ||
        make_at(t->media, "sub-link", 'l', t->root) != 0 ||
        make_at(t->media, "fifo", 'p', NULL) != 0 ||
        /* a sibling whose name starts with "media": a bare prefix test would let it in */
        make_at(t->root, "media-evil", 'd', NULL) != 0 ||
        make_at(t->root, "media-evil/x.jpg", 'f', "SIBLING") != 0 ||
        make_at(t->media, "link-sibling.jpg", 'l', "../media-evil/x.jpg") != 0)
        return -1;
    *state = t;
    return 0;
}

static int tree_teardown(void **state)
{
    struct tree *t = *state;
    static const char *names[] = {
        "media/a.jpg", "media/sub/b c\xc3\xa9.jpg", "media/link-in.jpg", "media/link-out.jpg",
        "media/link-abs.jpg", "media/sub-link", "media/fifo", "outside.jpg",
        "media/link-sibling.jpg", "media-evil/x.jpg",
    };
    char p[256];

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", t->root, names[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/sub", t->media);
    rmdir(p);
    snprintf(p, sizeof p, "%s/media-evil", t->root);
    rmdir(p);
    rmdir(t->media);
    rmdir(t->root);
    free(t);
    return 0;
}

/* Opens media/<rel> and returns what it reads, or NULL with err set. */
static char *open_and_read(const struct tree *t, const char *rel, char *err, size_t errlen)
{
    char p[256];
    static char buf[64];
    ssize_t n;
    int fd;

    snprintf(p, sizeof p, "%s/%s", t->media, rel);
    fd = resolve_open_confined(t->media, p, err, errlen);
    if (fd < 0)
        return NULL;
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0); /* a normal blocking fd */
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

static void expect_open_fail(const struct tree *t, const char *rel, const char *want_suffix)
{
    char err[512] = "";
    char want[512];
    char p[256];

    snprintf(p, sizeof p, "%s/%s", t->media, rel);
    snprintf(want, sizeof want, "'%s' %s", p, want_suffix);
    assert_null(open_and_read(t, rel, err, sizeof err));
    assert_string_equal(err, want);
}

static void test_open_confined(void **state)
{
    const struct tree *t = *state;
    char err[512] = "";
    char *got;

    got = open_and_read(t, "a.jpg", err, sizeof err);
    if (got == NULL)
        fail_msg("a.jpg: %s", err);
    assert_string_equal(got, "INSIDE");
    got = open_and_read(t, "link-in.jpg", err, sizeof err); /* symlink inside: allowed */
    if (got == NULL)
        fail_msg("link-in.jpg: %s", err);
    assert_string_equal(got, "NESTED");
    got = open_and_read(t, "sub/../a.jpg", err, sizeof err); /* stays inside */
    assert_non_null(got);
    assert_string_equal(got, "INSIDE");

    expect_open_fail(t, "link-out.jpg", "resolves outside BEEPER_MEDIA_DIR");
    expect_open_fail(t, "link-abs.jpg", "resolves outside BEEPER_MEDIA_DIR");
    expect_open_fail(t, "sub-link/outside.jpg", "resolves outside BEEPER_MEDIA_DIR");
    expect_open_fail(t, "../outside.jpg", "resolves outside BEEPER_MEDIA_DIR");
    expect_open_fail(t, "../media-evil/x.jpg", "resolves outside BEEPER_MEDIA_DIR");
    expect_open_fail(t, "link-sibling.jpg", "resolves outside BEEPER_MEDIA_DIR");
    expect_open_fail(t, ".", "resolves outside BEEPER_MEDIA_DIR"); /* the folder itself */
    expect_open_fail(t, "missing.jpg", "does not exist");
    expect_open_fail(t, "sub", "is not a regular file");
    expect_open_fail(t, "fifo", "is not a regular file"); /* and did not block */

    assert_int_equal(resolve_open_confined("/nonexistent-imgcache", "/nonexistent-imgcache/a", err, sizeof err), -1);
    assert_string_equal(err, "BEEPER_MEDIA_DIR '/nonexistent-imgcache': No such file or directory");
}

/* file:// URL -> path -> fd, the way the worker chains them. */
static void test_resolve_then_open(void **state)
{
    const struct tree *t = *state;
    struct resolve_config cfg = { .media_dir = t->media };
    struct resolved r;
    char err[512] = "";
    char buf[16];
    ssize_t n;
    int fd;

    assert_int_equal(resolve_source(&cfg, MAC_MEDIA "sub/b%20c%C3%A9.jpg", &r, err, sizeof err), 0);
    assert_int_equal(r.kind, RESOLVE_FILE);
    fd = resolve_open_confined(cfg.media_dir, r.path, err, sizeof err);
    if (fd < 0)
        fail_msg("%s", err);
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_int_equal(n, 6);
    buf[n] = '\0';
    assert_string_equal(buf, "NESTED");
    assert_string_equal(r.display, "file:sub/b c\xc3\xa9.jpg");
    resolved_clear(&r);

    assert_int_equal(resolve_source(&cfg, MAC_MEDIA "link-out.jpg", &r, err, sizeof err), 0);
    assert_int_equal(resolve_open_confined(cfg.media_dir, r.path, err, sizeof err), -1);
    assert_non_null(strstr(err, "resolves outside BEEPER_MEDIA_DIR"));
    resolved_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_http_refused),
        cmocka_unit_test(test_unsupported_schemes),
        cmocka_unit_test(test_file_media_dir),
        cmocka_unit_test(test_file_last_media_segment),
        cmocka_unit_test(test_file_refused),
        cmocka_unit_test(test_file_media_server),
        cmocka_unit_test(test_bare_path),
        cmocka_unit_test(test_file_via_api),
        cmocka_unit_test(test_data_url),
        cmocka_unit_test(test_mxc),
        cmocka_unit_test(test_redact),
        cmocka_unit_test_setup_teardown(test_open_confined, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_resolve_then_open, tree_setup, tree_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
