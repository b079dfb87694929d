/* libFuzzer: rendition_make() on any bytes, at the default presets with a
 * 4-megapixel cap (so one input stays fast). libvips itself is not
 * instrumented; what is checked is this module: its gates, its RIFF rewrite,
 * its ownership, and that every input ends in one of the documented results.
 * A hostile image is BAD_IMAGE or TOO_LARGE, never INTERNAL (which a renderer
 * retries). Seeds: tests/fuzz/seeds/rendition and tests/fixtures/images. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rendition.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int sizes[] = { 64, 128, 256 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void check_output(const struct rendition *r)
{
    if (r->data == NULL || r->len < 20 || r->width != r->height || r->width < 1 || r->width > r->size)
        abort();
    if (memcmp(r->data, "RIFF", 4) != 0 || memcmp(r->data + 8, "WEBP", 4) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    const struct rendition_opts opts = { RENDITION_DEFAULT_QUALITY, 4000000, 0 };
    struct rendition outs[NSIZES];
    unsigned char *buf;
    char err[256];
    int rc;

    if (!ready) {
        if (rendition_init("fuzz_rendition", err, sizeof err) != 0)
            abort();
        ready = 1;
    }
    /* an exact-size copy, so reading one byte too far is caught */
    buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    err[0] = '\0';
    rc = rendition_make(buf, size, sizes, NSIZES, &opts, outs, err, sizeof err);
    if (rc == RENDITION_OK) {
        for (size_t i = 0; i < NSIZES; i++) {
            check_output(&outs[i]);
            rendition_free(&outs[i]);
        }
    } else if ((rc != RENDITION_BAD_IMAGE && rc != RENDITION_TOO_LARGE) || err[0] == '\0') {
        abort();
    } else {
        for (size_t i = 0; i < NSIZES; i++)
            if (outs[i].data != NULL)
                abort();
    }
    free(buf);
    return 0;
}
