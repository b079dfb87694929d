/* rendition_make() on the fixtures of tests/fixtures/images/renditions (see
 * the README there) and on the hostile ones of tests/fixtures/images. Every
 * output is decoded again with libvips: WebP, the right square size, no
 * metadata, pixels where they belong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <vips/vips.h>
#include <vips/vector.h> /* vips_vector_set_enabled(), not in vips.h in 8.14 */
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "fixture.h"
#include "rendition.h"

#define NPRESETS 3
static const int presets[NPRESETS] = { 64, 128, 256 };
static const struct rendition_opts default_opts = { RENDITION_DEFAULT_QUALITY, 40000000, 0 };

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Walks the RIFF chunks of a WebP: a well-formed file, and none of the chunks
 * that carry metadata (EXIF, XMP, ICC) or an animation. */
static void assert_plain_webp(const struct rendition *r)
{
    static const char *const refused[] = { "EXIF", "XMP ", "ICCP", "ANIM", "ANMF" };
    size_t at = 12;

    assert_true(r->len > 20);
    assert_memory_equal(r->data, "RIFF", 4);
    assert_memory_equal(r->data + 8, "WEBP", 4);
    assert_int_equal(le32(r->data + 4), r->len - 8);
    while (at + 8 <= r->len) {
        uint32_t size = le32(r->data + at + 4);
        for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
            if (memcmp(r->data + at, refused[i], 4) == 0)
                fail_msg("rendition of %d px carries a %s chunk", r->size, refused[i]);
        at += 8 + size + (size & 1);
    }
    assert_int_equal(at, r->len);
}

/* Decodes one output with libvips: a WebP of width x height, one page, with
 * no metadata field left. */
static VipsImage *decode_output(const struct rendition *r, int width, int height)
{
    static const char *const refused[] = { VIPS_META_EXIF_NAME, VIPS_META_XMP_NAME,
                                           VIPS_META_ICC_NAME, VIPS_META_IPTC_NAME };
    VipsImage *im = vips_image_new_from_buffer(r->data, r->len, "", NULL);
    const char *loader = NULL;

    assert_non_null(im);
    assert_int_equal(vips_image_get_string(im, VIPS_META_LOADER, &loader), 0);
    assert_string_equal(loader, "webpload_buffer");
    assert_int_equal(vips_image_get_width(im), width);
    assert_int_equal(vips_image_get_height(im), height);
    assert_int_equal(r->width, width);
    assert_int_equal(r->height, height);
    assert_int_equal(vips_image_get_n_pages(im), 1);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (vips_image_get_typeof(im, refused[i]) != 0)
            fail_msg("rendition of %d px has %s", r->size, refused[i]);
    return im;
}

/* Renders a fixture at the default presets, expecting squares of
 * MIN(preset, side) px; the decoded outputs go to ims[] when not NULL. */
static void render_expect(const char *name, int side, const struct rendition_opts *opts,
                          VipsImage **ims)
{
    struct blob b = load_fixture(name);
    struct rendition outs[NPRESETS];
    char err[256] = "";
    int rc = rendition_make(b.data, b.len, presets, NPRESETS, opts, outs, err, sizeof err);

    if (rc != RENDITION_OK)
        fail_msg("%s: %s (%s)", name, rendition_result_name(rc), err);
    for (int i = 0; i < NPRESETS; i++) {
        int want = presets[i] < side ? presets[i] : side;
        VipsImage *im;
        assert_int_equal(outs[i].size, presets[i]);
        assert_plain_webp(&outs[i]);
        im = decode_output(&outs[i], want, want);
        /* the decoded image reads r.data lazily: hold its pixels before freeing it */
        if (ims != NULL) {
            ims[i] = vips_image_copy_memory(im);
            assert_non_null(ims[i]);
        }
        g_object_unref(im);
        rendition_free(&outs[i]);
        assert_null(outs[i].data);
    }
    free(b.data);
}

static void expect_result(const void *src, size_t len, long long max_pixels, int want,
                          const char *what)
{
    struct rendition_opts opts = default_opts;
    struct rendition outs[NPRESETS];
    char err[256] = "";
    int rc;

    opts.max_pixels = max_pixels;
    rc = rendition_make(src, len, presets, NPRESETS, &opts, outs, err, sizeof err);
    if (rc != want)
        fail_msg("%s: %s, wanted %s (%s)", what, rendition_result_name(rc), rendition_result_name(want), err);
    if (rc != RENDITION_OK)
        assert_true(err[0] != '\0');
    for (int i = 0; i < NPRESETS; i++) {
        if (rc != RENDITION_OK)
            assert_null(outs[i].data);
        rendition_free(&outs[i]);
    }
}

static void expect_fixture(const char *name, long long max_pixels, int want)
{
    struct blob b = load_fixture(name);
    expect_result(b.data, b.len, max_pixels, want, name);
    free(b.data);
}

static void test_every_preset_square(void **state)
{
    (void)state;
    render_expect("renditions/large.jpg", 800, &default_opts, NULL);
}

static void test_attention_crop(void **state)
{
    struct rendition_opts opts = default_opts;
    (void)state;
    opts.attention = 1;
    render_expect("renditions/large.jpg", 800, &opts, NULL);
}

static void test_no_upscaling(void **state)
{
    (void)state;
    render_expect("renditions/small.png", 40, &default_opts, NULL);
    /* a 300x200 source: 200 px squares at most, never a 200x256 strip */
    render_expect("renditions/gps.jpg", 200, &default_opts, NULL);
}

static void test_exif_gps_stripped(void **state)
{
    struct blob b = load_fixture("renditions/gps.jpg");
    VipsImage *src = vips_image_new_from_buffer(b.data, b.len, "", NULL);
    (void)state;
    /* the fixture does carry a position, so its absence below means something */
    assert_non_null(src);
    assert_int_not_equal(vips_image_get_typeof(src, "exif-ifd3-GPSLatitude"), 0);
    g_object_unref(src);
    free(b.data);
    render_expect("renditions/gps.jpg", 200, &default_opts, NULL);
}

/* The fixture is stored with its red quadrant top-left and EXIF orientation
 * 6: upright, red is top-right and top-left is blue. */
static void test_exif_rotation_applied(void **state)
{
    VipsImage *ims[NPRESETS];
    (void)state;
    render_expect("renditions/rotated.jpg", 96, &default_opts, ims);
    for (int i = 0; i < NPRESETS; i++) {
        int w = vips_image_get_width(ims[i]);
        double *left = NULL, *right = NULL;
        int nl = 0, nr = 0;
        assert_int_equal(vips_getpoint(ims[i], &left, &nl, w / 4, w / 4, NULL), 0);
        assert_int_equal(vips_getpoint(ims[i], &right, &nr, 3 * w / 4, w / 4, NULL), 0);
        assert_true(nl >= 3 && nr >= 3);
        assert_true(right[0] > 180 && right[2] < 80);
        assert_true(left[0] < 80 && left[2] > 180);
        g_free(left);
        g_free(right);
        g_object_unref(ims[i]);
    }
}

/* p3.jpg is sRGB's pure red stored as Display P3 numbers (234,51,35) with
 * the profile embedded: the rendition has no profile, so its numbers must be
 * sRGB's. */
static void test_wide_gamut_converted(void **state)
{
    VipsImage *ims[NPRESETS];
    (void)state;
    render_expect("renditions/p3.jpg", 48, &default_opts, ims);
    for (int i = 0; i < NPRESETS; i++) {
        double *px = NULL;
        int n = 0;
        assert_int_equal(vips_getpoint(ims[i], &px, &n, 10, 10, NULL), 0);
        assert_true(n >= 3);
        if (!(px[0] > 245 && px[1] < 25 && px[2] < 25))
            fail_msg("p3.jpg at %d px: %.0f,%.0f,%.0f, not sRGB red", presets[i], px[0], px[1], px[2]);
        g_free(px);
        g_object_unref(ims[i]);
    }
}

/* anim.gif and anim.webp: 32x32, frame 1 red, frame 2 green */
static void expect_first_frame(const char *name)
{
    VipsImage *ims[NPRESETS];
    render_expect(name, 32, &default_opts, ims);
    for (int i = 0; i < NPRESETS; i++) {
        double *px = NULL;
        int n = 0;
        assert_int_equal(vips_getpoint(ims[i], &px, &n, 16, 16, NULL), 0);
        assert_true(n >= 3);
        assert_true(px[0] > 200 && px[1] < 60);
        g_free(px);
        g_object_unref(ims[i]);
    }
}

static void test_animated_gif_first_frame(void **state)
{
    (void)state;
    expect_first_frame("renditions/anim.gif");
}

static void test_animated_webp_first_frame(void **state)
{
    (void)state;
    expect_first_frame("renditions/anim.webp");
}

static void test_cached_formats(void **state)
{
    (void)state;
    render_expect("avatar.jpg", 48, &default_opts, NULL);
    render_expect("avatar.png", 32, &default_opts, NULL);
    render_expect("avatar.gif", 10, &default_opts, NULL);
    render_expect("avatar.webp", 48, &default_opts, NULL);
    render_expect("avatar-lossless.webp", 16, &default_opts, NULL);
    render_expect("avatar-alpha.webp", 24, &default_opts, NULL);
}

/* huge-header.png claims 60000x60000 and has no pixel data: decoding it would
 * fail as a bad image, so TOO_LARGE shows the cap came first. */
static void test_pixel_cap_before_decoding(void **state)
{
    (void)state;
    expect_fixture("huge-header.png", 40000000, RENDITION_TOO_LARGE);
    expect_fixture("renditions/large.jpg", 1200 * 800 - 1, RENDITION_TOO_LARGE);
    expect_fixture("renditions/large.jpg", 1200 * 800, RENDITION_OK);
    expect_fixture("renditions/anim.gif", 32 * 32 - 1, RENDITION_TOO_LARGE);
}

static void test_hostile_inputs(void **state)
{
    static const char *const bad[] = { "empty.bin", "text.txt", "html-as.jpg", "image.svg",
                                       "doc.pdf", "truncated.png" };
    struct blob b = load_fixture("renditions/large.jpg");
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_fixture(bad[i], 40000000, RENDITION_BAD_IMAGE);
    /* a whole header, half the scans: refused, not rendered with a grey band */
    expect_result(b.data, b.len / 2, 40000000, RENDITION_BAD_IMAGE, "large.jpg cut in half");
    free(b.data);
}

/* 30-hostile's GIFs: a 1x1 screen announcing a 60000x60000 frame (a cap
 * on width x height of the screen alone would let it through), and 1001
 * frames (each one decoded in turn by a careless reader). */
static void test_hostile_gifs(void **state)
{
    static const unsigned char head[] = { 'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0 };
    static const unsigned char huge[] = { 0x2c, 0, 0, 0, 0, 0x60, 0xea, 0x60, 0xea, 0, 2, 2, 0x4c, 1, 0 };
    static const unsigned char tiny[] = { 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x4c, 1, 0 };
    size_t len = sizeof head + 1001 * sizeof tiny + 1;
    unsigned char *gif = malloc(len);
    (void)state;
    assert_non_null(gif);
    memcpy(gif, head, sizeof head);
    memcpy(gif + sizeof head, huge, sizeof huge);
    gif[sizeof head + sizeof huge] = 0x3b;
    expect_result(gif, sizeof head + sizeof huge + 1, 40000000, RENDITION_TOO_LARGE, "gif-huge-frame");
    for (int i = 0; i < 1001; i++)
        memcpy(gif + sizeof head + (size_t)i * sizeof tiny, tiny, sizeof tiny);
    gif[len - 1] = 0x3b;
    expect_result(gif, len, 40000000, RENDITION_BAD_IMAGE, "gif-frames");
    /* the same with 2 frames is a valid 1x1 image */
    gif[sizeof head + 2 * sizeof tiny] = 0x3b;
    expect_result(gif, sizeof head + 2 * sizeof tiny + 1, 40000000, RENDITION_OK, "gif, 2 frames");
    free(gif);
}

/* TIFF is decodable by libvips but not an avatar format: refused. */
static void test_other_formats_refused(void **state)
{
    VipsImage *im = NULL;
    void *tiff = NULL;
    size_t len = 0;
    (void)state;
    assert_int_equal(vips_black(&im, 8, 8, NULL), 0);
    assert_int_equal(vips_tiffsave_buffer(im, &tiff, &len, NULL), 0);
    expect_result(tiff, len, 40000000, RENDITION_BAD_IMAGE, "tiff");
    g_free(tiff);
    g_object_unref(im);
}

static void test_bad_requests(void **state)
{
    struct blob b = load_fixture("renditions/small.png");
    struct rendition_opts opts = default_opts;
    struct rendition outs[NPRESETS];
    int sizes[1] = { 0 };
    char err[256] = "";
    (void)state;
    assert_int_equal(rendition_make(b.data, b.len, sizes, 1, &opts, outs, err, sizeof err), RENDITION_INTERNAL);
    assert_non_null(strstr(err, "size 0"));
    opts.quality = 0;
    assert_int_equal(rendition_make(b.data, b.len, presets, NPRESETS, &opts, outs, err, sizeof err),
                     RENDITION_INTERNAL);
    assert_non_null(strstr(err, "quality"));
    rendition_free(NULL);
    free(b.data);
}

static int setup(void **state)
{
    char err[256] = "";
    (void)state;
    if (rendition_init("test_rendition", err, sizeof err) != 0) {
        fprintf(stderr, "rendition_init: %s\n", err);
        return -1;
    }
    /* orc's run-time generated SIMD code reads freed and unset memory in
     * valgrind's eyes (12,000 reports, all inside the JIT code); under
     * valgrind libvips' plain C paths run instead */
    if (RUNNING_ON_VALGRIND)
        vips_vector_set_enabled(FALSE);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rendition_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_preset_square),
        cmocka_unit_test(test_attention_crop),
        cmocka_unit_test(test_no_upscaling),
        cmocka_unit_test(test_exif_gps_stripped),
        cmocka_unit_test(test_exif_rotation_applied),
        cmocka_unit_test(test_wide_gamut_converted),
        cmocka_unit_test(test_animated_gif_first_frame),
        cmocka_unit_test(test_animated_webp_first_frame),
        cmocka_unit_test(test_cached_formats),
        cmocka_unit_test(test_pixel_cap_before_decoding),
        cmocka_unit_test(test_hostile_inputs),
        cmocka_unit_test(test_hostile_gifs),
        cmocka_unit_test(test_other_formats_refused),
        cmocka_unit_test(test_bad_requests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
