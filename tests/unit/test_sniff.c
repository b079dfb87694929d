/* sniff_image() against real files in tests/fixtures/images and crafted
 * headers. Every buffer is malloc'd at its exact size so ASan and valgrind
 * catch a read one byte too far. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fixture.h"
#include "sniff.h"

static unsigned char *dup_bytes(const void *p, size_t n)
{
    unsigned char *d = malloc(n ? n : 1);
    assert_non_null(d);
    memcpy(d, p, n);
    return d;
}

static void expect_image(const char *name, enum sniff_type type, const char *ctype,
                         const char *ext, unsigned w, unsigned h)
{
    struct blob b = load_fixture(name);
    struct sniff_result r;
    char err[256] = "";

    for (int complete = 0; complete <= 1; complete++) {
        assert_int_equal(sniff_image(b.data, b.len, complete, &r, err, sizeof err), SNIFF_OK);
        assert_int_equal(r.type, type);
        assert_string_equal(r.content_type, ctype);
        assert_string_equal(r.extension, ext);
        assert_int_equal(r.width, w);
        assert_int_equal(r.height, h);
    }
    free(b.data);
}

static void expect_reject(const unsigned char *buf, size_t len, const char *want)
{
    unsigned char *copy = dup_bytes(buf, len);
    struct sniff_result r;
    char err[256] = "";

    assert_int_equal(sniff_image(copy, len, 1, &r, err, sizeof err), SNIFF_REJECT);
    assert_int_equal(r.type, SNIFF_UNKNOWN);
    if (strstr(err, want) == NULL)
        fail_msg("err '%s' does not contain '%s'", err, want);
    free(copy);
}

static void expect_fixture_reject(const char *name, const char *want)
{
    struct blob b = load_fixture(name);
    expect_reject(b.data, b.len, want);
    free(b.data);
}

static void test_jpeg(void **state)
{
    (void)state;
    expect_image("avatar.jpg", SNIFF_JPEG, "image/jpeg", "jpg", 64, 48);
}

static void test_png(void **state)
{
    (void)state;
    expect_image("avatar.png", SNIFF_PNG, "image/png", "png", 32, 40);
}

static void test_gif(void **state)
{
    (void)state;
    expect_image("avatar.gif", SNIFF_GIF, "image/gif", "gif", 20, 10);
}

static void test_webp_lossy(void **state)
{
    (void)state;
    expect_image("avatar.webp", SNIFF_WEBP, "image/webp", "webp", 48, 48);
}

static void test_webp_lossless(void **state)
{
    (void)state;
    expect_image("avatar-lossless.webp", SNIFF_WEBP, "image/webp", "webp", 16, 16);
}

static void test_webp_extended(void **state)
{
    (void)state;
    expect_image("avatar-alpha.webp", SNIFF_WEBP, "image/webp", "webp", 24, 24);
}

static void test_huge_header_is_ok(void **state)
{
    /* the pixel cap is the worker's policy, not the sniffer's */
    (void)state;
    expect_image("huge-header.png", SNIFF_PNG, "image/png", "png", 60000, 60000);
}

static void test_impostors(void **state)
{
    (void)state;
    expect_fixture_reject("html-as.jpg", "looks like HTML");
    expect_fixture_reject("image.svg", "SVG is refused: it can carry scripts");
    expect_fixture_reject("text.txt", "plain text");
    expect_fixture_reject("doc.pdf", "PDF");
    expect_fixture_reject("empty.bin", "empty body");
}

static void test_markup_variants(void **state)
{
    static const char svg_plain[] = "  \n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
    static const char svg_doctype[] = "<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\">\n<svg/>";
    static const char svg_comment[] = "<!-- made by hand -->\n<SVG width=\"1\"/>";
    static const char xml_bom[] = "\xef\xbb\xbf<?xml version=\"1.0\"?><svg/>";
    static const char xml_only[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    static const char html_ws[] = "\r\n\t <html><body>403</body></html>";
    static const char html_lower[] = "<!doctype html><title>x</title>";
    (void)state;
    expect_reject((const unsigned char *)svg_plain, strlen(svg_plain), "SVG is refused");
    expect_reject((const unsigned char *)svg_doctype, strlen(svg_doctype), "SVG is refused");
    expect_reject((const unsigned char *)svg_comment, strlen(svg_comment), "SVG is refused");
    expect_reject((const unsigned char *)xml_bom, strlen(xml_bom), "SVG is refused");
    expect_reject((const unsigned char *)xml_only, strlen(xml_only), "SVG is refused");
    expect_reject((const unsigned char *)html_ws, strlen(html_ws), "looks like HTML");
    expect_reject((const unsigned char *)html_lower, strlen(html_lower), "looks like HTML");
    expect_reject((const unsigned char *)"{\"error\":\"not found\"}", 21, "plain text");
    expect_reject((const unsigned char *)" \n\t ", 4, "only whitespace");
    expect_reject((const unsigned char *)"\x00\x00\x01\x00\x01\x00", 6, "unknown format (first bytes 00 00 01 00)");
    expect_reject((const unsigned char *)"BM\x36\x00\x00\x00", 6, "unknown format (first bytes 42 4d 36 00)");
}

static void test_truncated_png(void **state)
{
    struct blob b = load_fixture("truncated.png");
    struct sniff_result r;
    char err[256] = "";
    (void)state;

    assert_int_equal(b.len, 20);
    assert_int_equal(sniff_image(b.data, b.len, 1, &r, err, sizeof err), SNIFF_REJECT);
    assert_non_null(strstr(err, "truncated PNG"));
    assert_int_equal(sniff_image(b.data, b.len, 0, &r, err, sizeof err), SNIFF_NEED_MORE);
    assert_int_equal(r.type, SNIFF_PNG);
    free(b.data);
}

/* avatar.jpg with a 9000-byte APP1 (like EXIF) inserted before its SOF. */
static struct blob jpeg_with_big_app1(void)
{
    struct blob src = load_fixture("avatar.jpg");
    const size_t app1 = 9000; /* segment length field includes its 2 bytes */
    struct blob b;

    b.len = src.len + 2 + app1;
    b.data = malloc(b.len);
    assert_non_null(b.data);
    memcpy(b.data, src.data, 2); /* SOI */
    b.data[2] = 0xff;
    b.data[3] = 0xe1;
    b.data[4] = (unsigned char)(app1 >> 8);
    b.data[5] = (unsigned char)(app1 & 0xff);
    memset(b.data + 6, 0xc0, app1 - 2); /* bytes that look like SOF markers */
    memcpy(b.data + 4 + app1, src.data + 2, src.len - 2);
    free(src.data);
    return b;
}

static void test_jpeg_sof_after_big_app1(void **state)
{
    struct blob b = jpeg_with_big_app1();
    struct sniff_result r;
    char err[256] = "";
    unsigned char *cut;
    (void)state;

    assert_int_equal(sniff_image(b.data, b.len, 1, &r, err, sizeof err), SNIFF_OK);
    assert_int_equal(r.width, 64);
    assert_int_equal(r.height, 48);

    cut = dup_bytes(b.data, 4096);
    assert_int_equal(sniff_image(cut, 4096, 0, &r, err, sizeof err), SNIFF_NEED_MORE);
    assert_int_equal(r.type, SNIFF_JPEG);
    assert_string_equal(r.content_type, "image/jpeg");
    assert_int_equal(sniff_image(cut, 4096, 1, &r, err, sizeof err), SNIFF_REJECT);
    assert_non_null(strstr(err, "truncated JPEG"));
    free(cut);
    free(b.data);
}

static void test_jpeg_fill_bytes_rst_and_dht(void **state)
{
    /* SOI, fill bytes, APP0 of 4, RST3, TEM, DHT (C4, not a frame), SOF2 */
    static const unsigned char j[] = {
        0xff, 0xd8, 0xff, 0xff, 0xff, 0xe0, 0x00, 0x04, 0x4a, 0x46, 0xff, 0xd3, 0xff, 0x01,
        0xff, 0xc4, 0x00, 0x03, 0x00, 0xff, 0xc2, 0x00, 0x11, 0x08, 0x00, 0x0a, 0x00, 0x14,
        0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01,
    };
    unsigned char *copy = dup_bytes(j, sizeof j);
    struct sniff_result r;
    char err[256] = "";
    (void)state;

    assert_int_equal(sniff_image(copy, sizeof j, 1, &r, err, sizeof err), SNIFF_OK);
    assert_int_equal(r.type, SNIFF_JPEG);
    assert_int_equal(r.width, 20);
    assert_int_equal(r.height, 10);
    free(copy);
}

static void test_jpeg_damaged(void **state)
{
    static const unsigned char eoi[] = { 0xff, 0xd8, 0xff, 0xe0, 0x00, 0x02, 0xff, 0xd9 };
    static const unsigned char sos[] = { 0xff, 0xd8, 0xff, 0xda, 0x00, 0x02, 0x00 };
    static const unsigned char nomarker[] = { 0xff, 0xd8, 0xff, 0xe0, 0x00, 0x02, 0x12, 0x34 };
    static const unsigned char shortlen[] = { 0xff, 0xd8, 0xff, 0xe0, 0x00, 0x01, 0x00 };
    static const unsigned char zero[] = { 0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00,
                                          0x00, 0x00, 0x14, 0x03 };
    (void)state;
    expect_reject(eoi, sizeof eoi, "damaged JPEG header: image ends before a frame header");
    expect_reject(sos, sizeof sos, "damaged JPEG header: scan data before a frame header");
    expect_reject(nomarker, sizeof nomarker, "damaged JPEG header: no marker at byte 6");
    expect_reject(shortlen, sizeof shortlen, "damaged JPEG header: segment 0xE0 has length 1");
    expect_reject(zero, sizeof zero, "zero width or height");
}

static void test_gif_zero_size(void **state)
{
    static const unsigned char g87[] = "GIF87a\x00\x00\x0a\x00\x00\x00\x00";
    static const unsigned char g89[] = "GIF89a\x14\x00\x00\x00\x00\x00\x00";
    (void)state;
    expect_reject(g87, sizeof g87 - 1, "GIF claims a size of 0x10; zero width or height is refused");
    expect_reject(g89, sizeof g89 - 1, "zero width or height");
}

/* A GIF: "GIF89a", a logical screen of sw x sh with no colour table, then
 * n frames of fw x fh at (left, top), then the trailer unless cut. */
static size_t make_gif(unsigned char *out, size_t room, unsigned sw, unsigned sh, unsigned n,
                       unsigned left, unsigned top, unsigned fw, unsigned fh, int trailer)
{
    size_t len = 0;
    unsigned char head[13] = { 'G', 'I', 'F', '8', '9', 'a', sw & 255, sw >> 8, sh & 255, sh >> 8, 0, 0, 0 };
    /* a graphic control extension before every frame, as animations have */
    static const unsigned char gce[8] = { 0x21, 0xf9, 4, 0, 10, 0, 0, 0 };

    assert_true(room >= sizeof head + (size_t)n * 23 + 1);
    memcpy(out, head, sizeof head);
    len = sizeof head;
    for (unsigned i = 0; i < n; i++) {
        unsigned char frame[15] = { 0x2c, left & 255, left >> 8, top & 255, top >> 8, fw & 255, fw >> 8,
                                    fh & 255, fh >> 8, 0, 2, 2, 0x4c, 0x01, 0 };
        memcpy(out + len, gce, sizeof gce);
        len += sizeof gce;
        memcpy(out + len, frame, sizeof frame);
        len += sizeof frame;
    }
    if (trailer)
        out[len++] = 0x3b;
    return len;
}

static void test_gif_frames(void **state)
{
    static unsigned char g[(SNIFF_GIF_MAX_FRAMES + 2) * 23 + 16];
    struct sniff_result r;
    char err[256] = "";
    size_t len;
    (void)state;

    /* the fixture: one frame inside its 20x10 screen */
    struct blob b = load_fixture("avatar.gif");
    assert_int_equal(sniff_image(b.data, b.len, 1, &r, err, sizeof err), SNIFF_OK);
    assert_int_equal(r.frames, 1);
    assert_int_equal(r.canvas_width, 20);
    assert_int_equal(r.canvas_height, 10);
    free(b.data);

    /* a 1x1 screen with a 60000x60000 frame: the canvas is the frame's */
    len = make_gif(g, sizeof g, 1, 1, 1, 0, 0, 60000, 60000, 1);
    assert_int_equal(sniff_image(g, len, 1, &r, err, sizeof err), SNIFF_OK);
    assert_int_equal(r.width, 1);
    assert_int_equal(r.height, 1);
    assert_int_equal(r.canvas_width, 60000);
    assert_int_equal(r.canvas_height, 60000);
    /* seen while the body is still arriving: the canvas so far is known */
    assert_int_equal(sniff_image(g, len - 1, 0, &r, err, sizeof err), SNIFF_NEED_MORE);
    assert_int_equal(r.canvas_width, 60000);

    /* a frame placed far out grows the canvas by its offset too */
    len = make_gif(g, sizeof g, 10, 10, 3, 65000, 5, 500, 7, 1);
    assert_int_equal(sniff_image(g, len, 1, &r, err, sizeof err), SNIFF_OK);
    assert_int_equal(r.frames, 3);
    assert_int_equal(r.canvas_width, 65500);
    assert_int_equal(r.canvas_height, 12);

    /* the frame cap, and one frame over it */
    len = make_gif(g, sizeof g, 2, 2, SNIFF_GIF_MAX_FRAMES, 0, 0, 1, 1, 1);
    assert_int_equal(sniff_image(g, len, 1, &r, err, sizeof err), SNIFF_OK);
    assert_int_equal(r.frames, SNIFF_GIF_MAX_FRAMES);
    len = make_gif(g, sizeof g, 2, 2, SNIFF_GIF_MAX_FRAMES + 1, 0, 0, 1, 1, 1);
    expect_reject(g, len, "GIF has more than 1000 frames");
    /* refused as soon as the frame over the cap is seen, complete or not */
    assert_int_equal(sniff_image(g, len - 1, 0, &r, err, sizeof err), SNIFF_REJECT);

    /* no trailer: accepted once a frame was seen, as decoders show it */
    len = make_gif(g, sizeof g, 2, 2, 2, 0, 0, 1, 1, 0);
    assert_int_equal(sniff_image(g, len, 1, &r, err, sizeof err), SNIFF_OK);
    assert_int_equal(r.frames, 2);
    len = make_gif(g, sizeof g, 2, 2, 0, 0, 0, 1, 1, 0);
    expect_reject(g, len, "truncated GIF: the body ends at byte 13 before the first frame");

    /* a block that is neither extension, frame nor trailer */
    len = make_gif(g, sizeof g, 2, 2, 1, 0, 0, 1, 1, 0);
    g[len++] = 0x99;
    expect_reject(g, len, "damaged GIF header: unknown block 0x99 at byte 36");
}

static void test_png_damaged(void **state)
{
    struct blob b = load_fixture("avatar.png");
    (void)state;

    memcpy(b.data + 12, "IDAT", 4);
    expect_reject(b.data, b.len, "damaged PNG header: the first chunk is not a 13-byte IHDR");
    memcpy(b.data + 12, "IHDR", 4);
    b.data[16] = 0x80; /* width over 2^31-1 */
    expect_reject(b.data, b.len, "damaged PNG header");
    b.data[16] = 0;
    memset(b.data + 20, 0, 4); /* height 0 */
    expect_reject(b.data, b.len, "zero width or height");
    free(b.data);
}

static void test_webp_damaged(void **state)
{
    struct blob b = load_fixture("avatar.webp");
    (void)state;

    b.data[23] = 0x00; /* VP8 start code */
    expect_reject(b.data, b.len, "damaged WebP header: VP8 start code missing");
    memcpy(b.data + 12, "ALPH", 4);
    expect_reject(b.data, b.len, "damaged WebP header: first chunk is 0x414C5048");
    free(b.data);

    b = load_fixture("avatar-lossless.webp");
    b.data[20] = 0x00;
    expect_reject(b.data, b.len, "VP8L signature missing");
    free(b.data);
}

/* Every prefix of every fixture: never a crash or an over-read; a prefix of
 * an image is NEED_MORE (or OK) while incomplete and never NEED_MORE when
 * complete. */
static void test_all_prefixes(void **state)
{
    static const char *names[] = {
        "avatar.jpg", "avatar.png", "avatar.gif", "avatar.webp", "avatar-lossless.webp",
        "avatar-alpha.webp", "huge-header.png", "html-as.jpg", "image.svg", "text.txt", "doc.pdf",
    };
    (void)state;

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct blob b = load_fixture(names[i]);
        int image = strncmp(names[i], "avatar", 6) == 0 || strncmp(names[i], "huge", 4) == 0;
        for (size_t n = 0; n <= b.len; n++) {
            unsigned char *p = dup_bytes(b.data, n);
            struct sniff_result r;
            char err[128] = "";
            enum sniff_status open_st = sniff_image(n ? p : NULL, n, 0, &r, err, sizeof err);
            enum sniff_status done_st = sniff_image(n ? p : NULL, n, 1, &r, err, sizeof err);
            if (image && open_st == SNIFF_REJECT)
                fail_msg("%s cut at %zu refused while incomplete: %s", names[i], n, err);
            if (done_st == SNIFF_NEED_MORE)
                fail_msg("%s cut at %zu: NEED_MORE although complete", names[i], n);
            if (done_st == SNIFF_REJECT && err[0] == '\0')
                fail_msg("%s cut at %zu: refused without a reason", names[i], n);
            free(p);
        }
        free(b.data);
    }
}

static void test_small_err_buffer(void **state)
{
    char err[8];
    struct sniff_result r;
    (void)state;

    memset(err, 'x', sizeof err);
    assert_int_equal(sniff_image((const unsigned char *)"hello", 5, 1, &r, err, sizeof err), SNIFF_REJECT);
    assert_string_equal(err, "looks l");
    assert_int_equal(sniff_image((const unsigned char *)"hello", 5, 1, &r, NULL, 0), SNIFF_REJECT);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(sniff_type_name(SNIFF_JPEG), "JPEG");
    assert_string_equal(sniff_type_name(SNIFF_PNG), "PNG");
    assert_string_equal(sniff_type_name(SNIFF_GIF), "GIF");
    assert_string_equal(sniff_type_name(SNIFF_WEBP), "WebP");
    assert_string_equal(sniff_type_name(SNIFF_UNKNOWN), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpeg),
        cmocka_unit_test(test_png),
        cmocka_unit_test(test_gif),
        cmocka_unit_test(test_webp_lossy),
        cmocka_unit_test(test_webp_lossless),
        cmocka_unit_test(test_webp_extended),
        cmocka_unit_test(test_huge_header_is_ok),
        cmocka_unit_test(test_impostors),
        cmocka_unit_test(test_markup_variants),
        cmocka_unit_test(test_truncated_png),
        cmocka_unit_test(test_jpeg_sof_after_big_app1),
        cmocka_unit_test(test_jpeg_fill_bytes_rst_and_dht),
        cmocka_unit_test(test_jpeg_damaged),
        cmocka_unit_test(test_gif_zero_size),
        cmocka_unit_test(test_gif_frames),
        cmocka_unit_test(test_png_damaged),
        cmocka_unit_test(test_webp_damaged),
        cmocka_unit_test(test_all_prefixes),
        cmocka_unit_test(test_small_err_buffer),
        cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
