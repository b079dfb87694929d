/* Avatar renditions with libvips (see rendition.h).
 *
 * The source goes through three gates before a pixel is decoded: sniff_image()
 * (the same pure, fuzzed header reader the worker used; it also sees every GIF
 * frame's extent, which libvips' header does not report), libvips' own loader
 * choice checked against an allow-list, and the width x height libvips reads
 * from the header. Only then is it decoded, once, straight to the largest
 * preset (shrink-on-load for JPEG and WebP), and every smaller preset is made
 * from that small square in memory. Measured in bench/rendition_bench.c:
 * faster than one vips_thumbnail_buffer() per preset, see BENCH.md. */
#include "rendition.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "sniff.h"

/* Loaders a source may use (libvips 8.14 class names). Every other loader is
 * blocked at init; this list is checked again before decoding, so a loader
 * added to a later libvips is refused even if its class escapes the block. */
static const char *const allowed_loaders[] = {
    "VipsForeignLoadJpegBuffer",
    "VipsForeignLoadPngBuffer",
    "VipsForeignLoadNsgifBuffer",
    "VipsForeignLoadWebpBuffer",
};

/* A truncated source is refused, not rendered with a grey band. Loader
 * options: n and page default to 1 and 0, so an animation gives its first
 * frame. */
#define LOAD_OPTIONS "fail_on=truncated"

const char *rendition_result_name(int result)
{
    switch (result) {
    case RENDITION_OK: return "ok";
    case RENDITION_BAD_IMAGE: return "bad_image";
    case RENDITION_TOO_LARGE: return "too_large";
    default: return "internal";
    }
}

/* libvips keeps one error buffer per process: copy its first line, clear it. */
static void take_vips_error(char *err, size_t errlen, const char *what)
{
    char line[256];
    const char *buf = vips_error_buffer();
    size_t n = strcspn(buf, "\n");

    if (n >= sizeof line)
        n = sizeof line - 1;
    memcpy(line, buf, n);
    line[n] = '\0';
    errmsg_set(err, errlen, "%s: %s", what, n ? line : "libvips gave no reason");
    vips_error_clear();
}

/* An allocation failure is worth a retry; anything else while decoding is
 * the image's fault. Read before take_vips_error() clears the buffer. */
static int decode_failure_class(void)
{
    return strstr(vips_error_buffer(), "out of memory") ? RENDITION_INTERNAL : RENDITION_BAD_IMAGE;
}

/* libvips warns on stderr, from its worker threads, about damaged images it
 * still decodes ("Corrupt JPEG data..."): unstructured lines in a program
 * that logs one key=value line per image. The outcome is in the result. */
static void drop_vips_warning(const gchar *domain, GLogLevelFlags level, const gchar *message,
                              gpointer data)
{
    (void)domain;
    (void)level;
    (void)message;
    (void)data;
}

int rendition_init(const char *argv0, char *err, size_t errlen)
{
    if (VIPS_INIT(argv0 ? argv0 : "imgcache") != 0) {
        take_vips_error(err, errlen, "cannot start libvips");
        return -1;
    }
    /* Loaders libvips marks untrusted (svg, pdf, magick, matlab...) go first;
     * then every loader but the four image formats we cache, so TIFF, HEIF,
     * JPEG 2000... are refused too. */
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO,
                      drop_vips_warning, NULL);
    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoad", TRUE);
    for (size_t i = 0; i < sizeof allowed_loaders / sizeof allowed_loaders[0]; i++)
        vips_operation_block_set(allowed_loaders[i], FALSE);
    /* No operation cache: a renderer sees each source once, and the cache
     * would hold decoded pixels between images. One worker thread per image:
     * renderers scale by processes, and libvips' thread pool costs more than
     * it gains on 256 px outputs (BENCH.md, "Renditions"). */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_concurrency_set(1);
    return 0;
}

void rendition_shutdown(void)
{
    vips_shutdown();
}

void rendition_free(struct rendition *r)
{
    if (r == NULL)
        return;
    g_free(r->data);
    memset(r, 0, sizeof *r);
}

static int loader_allowed(const char *name)
{
    for (size_t i = 0; i < sizeof allowed_loaders / sizeof allowed_loaders[0]; i++)
        if (name != NULL && strcmp(name, allowed_loaders[i]) == 0)
            return 1;
    return 0;
}

/* What check_source() learnt from the header. */
struct source_info {
    int side_cap;    /* the smaller side (of the first frame for an animation) */
    int has_profile; /* an embedded ICC profile */
};

/* The three gates of the file comment. */
static int check_source(const void *src, size_t len, long long max_pixels, struct source_info *info,
                        char *err, size_t errlen)
{
    struct sniff_result sn;
    VipsImage *header = NULL;
    const char *loader;
    long long pixels;
    int rc = RENDITION_BAD_IMAGE;
    char why[200] = "";

    if (sniff_image(src, len, 1, &sn, why, sizeof why) != SNIFF_OK) {
        errmsg_set(err, errlen, "not a supported image: %s", why);
        goto out;
    }
    if (max_pixels > 0 && (long long)sn.canvas_width * sn.canvas_height > max_pixels) {
        errmsg_set(err, errlen, "image of %ux%u pixels is over the cap of %lld",
                   sn.canvas_width, sn.canvas_height, max_pixels);
        rc = RENDITION_TOO_LARGE;
        goto out;
    }
    loader = vips_foreign_find_load_buffer(src, len);
    if (!loader_allowed(loader)) {
        if (loader == NULL)
            vips_error_clear();
        errmsg_set(err, errlen, "no allowed libvips loader for this %s image", sniff_type_name(sn.type));
        goto out;
    }
    /* sequential access: only the header is read until pixels are asked for */
    header = vips_image_new_from_buffer(src, len, LOAD_OPTIONS, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (header == NULL) {
        rc = decode_failure_class();
        take_vips_error(err, errlen, "cannot read the image header");
        goto out;
    }
    pixels = (long long)vips_image_get_width(header) * vips_image_get_height(header);
    if (max_pixels > 0 && pixels > max_pixels) {
        errmsg_set(err, errlen, "image of %dx%d pixels is over the cap of %lld",
                   vips_image_get_width(header), vips_image_get_height(header), max_pixels);
        rc = RENDITION_TOO_LARGE;
        goto out;
    }
    info->side_cap = VIPS_MIN(vips_image_get_width(header), vips_image_get_height(header));
    info->has_profile = vips_image_get_typeof(header, VIPS_META_ICC_NAME) != 0;
    rc = RENDITION_OK;
out:
    if (header != NULL)
        g_object_unref(header);
    return rc;
}

/* The largest preset, decoded from src and held in memory: the one decode. */
static int decode_square(const void *src, size_t len, int side, int attention, int has_profile,
                         VipsImage **out, char *err, size_t errlen)
{
    VipsImage *thumb = NULL, *mem = NULL;
    VipsInteresting crop = attention ? VIPS_INTERESTING_ATTENTION : VIPS_INTERESTING_CENTRE;
    int rc = RENDITION_OK, failed;

    /* autorotation (EXIF orientation) is vips_thumbnail's default; the
     * square is cut after it, so its content is upright. vips_thumbnail
     * keeps the pixels in an embedded profile's colour space (8.14): with
     * the profile stripped later, a wide-gamut (Display P3, Adobe RGB)
     * avatar would look washed out, so such a source is converted to sRGB.
     * One without a profile is left alone: it is sRGB already, and going
     * through the colour engine would change its pixels. */
    if (has_profile)
        failed = vips_thumbnail_buffer((void *)src, len, &thumb, side, "height", side, "size", VIPS_SIZE_DOWN,
                                       "option_string", LOAD_OPTIONS, "crop", crop, "export_profile", "srgb",
                                       NULL);
    else
        failed = vips_thumbnail_buffer((void *)src, len, &thumb, side, "height", side, "size", VIPS_SIZE_DOWN,
                                       "option_string", LOAD_OPTIONS, "crop", crop, NULL);
    if (failed) {
        rc = decode_failure_class();
        take_vips_error(err, errlen, "cannot decode the image");
        goto out;
    }
    /* pixels are decoded here, so a damaged body fails here */
    mem = vips_image_copy_memory(thumb);
    if (mem == NULL) {
        rc = decode_failure_class();
        take_vips_error(err, errlen, "cannot decode the image");
        goto out;
    }
    *out = mem;
    mem = NULL;
out:
    if (thumb != NULL)
        g_object_unref(thumb);
    return rc;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Keeps only the chunks that make the picture (VP8X, ALPH, VP8, VP8L) and
 * clears VP8X's ICC, EXIF, XMP and animation flags; in place. libvips 8.14.1's
 * webpsave ignores strip=TRUE and writes an EXIF chunk (rebuilt from the
 * image's fields, so even for a source that had none), and a later libvips
 * may add another chunk: what leaves this module is decided here. */
static int webp_keep_picture_chunks(unsigned char *buf, size_t *len)
{
    size_t in = 12, out = 12, whole;
    uint32_t size;

    if (*len < 12 || memcmp(buf, "RIFF", 4) != 0 || memcmp(buf + 8, "WEBP", 4) != 0)
        return -1;
    while (*len - in >= 8) {
        size = le32(buf + in + 4);
        whole = 8 + (size_t)size + (size & 1);
        if (whole > *len - in)
            return -1;
        if (memcmp(buf + in, "VP8X", 4) == 0 || memcmp(buf + in, "ALPH", 4) == 0 ||
            memcmp(buf + in, "VP8 ", 4) == 0 || memcmp(buf + in, "VP8L", 4) == 0) {
            memmove(buf + out, buf + in, whole);
            if (memcmp(buf + out, "VP8X", 4) == 0 && size >= 1)
                buf[out + 8] &= (unsigned char)~(0x20 | 0x08 | 0x04 | 0x02);
            out += whole;
        }
        in += whole;
    }
    if (in != *len)
        return -1;
    size = (uint32_t)(out - 8);
    for (int i = 0; i < 4; i++)
        buf[4 + i] = (unsigned char)(size >> (8 * i));
    *len = out;
    return 0;
}

/* One preset from the decoded square: resized if smaller, then WebP with no
 * metadata (strip asks for it, webp_keep_picture_chunks() makes sure of it;
 * decode_square() already converted a profiled source to sRGB, so dropping
 * the ICC profile changes no colour). */
static int encode_preset(VipsImage *square, int side, int quality, struct rendition *out,
                         char *err, size_t errlen)
{
    VipsImage *sized = NULL;
    void *buf = NULL;
    size_t len = 0;
    int rc = RENDITION_INTERNAL;

    if (side < vips_image_get_width(square)) {
        if (vips_thumbnail_image(square, &sized, side, "height", side, "size", VIPS_SIZE_DOWN,
                                 "crop", VIPS_INTERESTING_CENTRE, NULL) != 0) {
            take_vips_error(err, errlen, "cannot resize the image");
            goto out;
        }
    } else {
        sized = square;
        g_object_ref(sized);
    }
    if (vips_webpsave_buffer(sized, &buf, &len, "Q", quality, "strip", TRUE, NULL) != 0) {
        take_vips_error(err, errlen, "cannot encode WebP");
        goto out;
    }
    if (webp_keep_picture_chunks(buf, &len) != 0) {
        errmsg_set(err, errlen, "libvips wrote a WebP this module cannot parse");
        goto out;
    }
    out->data = buf;
    out->len = len;
    out->width = vips_image_get_width(sized);
    out->height = vips_image_get_height(sized);
    buf = NULL;
    rc = RENDITION_OK;
out:
    g_free(buf);
    if (sized != NULL)
        g_object_unref(sized);
    return rc;
}

static int check_request(const int *sizes, size_t n, const struct rendition_opts *opts,
                         int *largest, char *err, size_t errlen)
{
    if (opts->quality < 1 || opts->quality > 100) {
        errmsg_set(err, errlen, "rendition quality %d is not 1..100", opts->quality);
        return -1;
    }
    *largest = 0;
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] < 1 || sizes[i] > RENDITION_MAX_SIZE) {
            errmsg_set(err, errlen, "rendition size %d is not 1..%d", sizes[i], RENDITION_MAX_SIZE);
            return -1;
        }
        *largest = VIPS_MAX(*largest, sizes[i]);
    }
    return 0;
}

int rendition_make(const void *src, size_t len, const int *sizes, size_t n,
                   const struct rendition_opts *opts, struct rendition *outs,
                   char *err, size_t errlen)
{
    VipsImage *square = NULL;
    struct source_info info = { 0, 0 };
    int largest, rc = RENDITION_INTERNAL;
    size_t done = 0;

    memset(outs, 0, n * sizeof *outs);
    if (n == 0 || check_request(sizes, n, opts, &largest, err, errlen) != 0) {
        if (n == 0)
            errmsg_set(err, errlen, "no rendition size asked for");
        goto out;
    }
    rc = check_source(src, len, opts->max_pixels, &info, err, errlen);
    if (rc != RENDITION_OK)
        goto out;
    /* never upscaled, always square: the side is capped by the source's
     * smaller side (vips_thumbnail alone would give a 100x256 strip for a
     * 100x300 source asked at 256) */
    rc = decode_square(src, len, VIPS_MIN(largest, info.side_cap), opts->attention, info.has_profile, &square,
                       err, errlen);
    if (rc != RENDITION_OK)
        goto out;
    for (done = 0; done < n; done++) {
        outs[done].size = sizes[done];
        rc = encode_preset(square, VIPS_MIN(sizes[done], info.side_cap), opts->quality, &outs[done], err,
                           errlen);
        if (rc != RENDITION_OK)
            goto out;
    }
out:
    if (rc != RENDITION_OK)
        for (size_t i = 0; i < n; i++)
            rendition_free(&outs[i]);
    if (square != NULL)
        g_object_unref(square);
    return rc;
}
