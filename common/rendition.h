#ifndef IMGCACHE_RENDITION_H
#define IMGCACHE_RENDITION_H
/* Avatar renditions with libvips 8.14's C API. Decoding is restricted:
 * vips_block_untrusted_set(TRUE) and only the jpeg/png/gif/webp loaders,
 * pixel cap checked from the header before any pixel is decoded.
 *
 * Only the programs that render link libvips (the Makefile builds this file
 * apart from libcommon.a); the worker and the producer never do.
 * Ownership: outs[i].data is allocated by rendition_make() (glib) and belongs
 * to the caller, who frees it with rendition_free(). Nothing else is kept
 * between calls (libvips' operation cache is off). Calls on separate threads
 * work once rendition_init() has returned, but libvips has one error buffer
 * per process, so a message may then name another thread's failure. */
#include <stddef.h>

#include "errmsg.h"

#define RENDITION_CONTENT_TYPE "image/webp"
#define RENDITION_EXTENSION    "webp"
#define RENDITION_DEFAULT_QUALITY 80
/* The largest preset accepted, in px: a thumbnail, not a resize service. */
#define RENDITION_MAX_SIZE 4096

struct rendition_opts {
    int quality;            /* WebP quality, default 80 */
    long long max_pixels;   /* width*height cap of the source, checked before decoding;
                             * <= 0: no cap. For a GIF, the area every frame covers. */
    int attention;          /* 0: centre crop; 1: vips' attention crop */
};
struct rendition {          /* one output; data owned by the caller, freed by rendition_free() */
    int size;               /* the preset asked for (px) */
    unsigned char *data; size_t len;
    int width, height;      /* never larger than the source: no upscaling */
};
enum rendition_result {
    RENDITION_OK = 0,
    RENDITION_INTERNAL = -1,   /* retryable (out of memory, libvips internal) */
    RENDITION_BAD_IMAGE = -2,  /* permanent: not a supported image, truncated, hostile */
    RENDITION_TOO_LARGE = -3,  /* permanent: over max_pixels */
};
/* Once per process, before any thread renders. argv0 for VIPS_INIT. */
int rendition_init(const char *argv0, char *err, size_t errlen) MUST_CHECK;
void rendition_shutdown(void);
/* Decodes src once (first frame of an animation, EXIF orientation applied),
 * writes n square WebP renditions (centre crop, never upscaled, all metadata
 * stripped) into outs[0..n-1] (sizes[i] px). On failure nothing in outs
 * needs freeing. Returns an enum rendition_result; sizes[i] must be
 * 1..RENDITION_MAX_SIZE and quality 1..100 (else RENDITION_INTERNAL with a
 * message: a caller's bug, not the image's fault). */
int rendition_make(const void *src, size_t len, const int *sizes, size_t n,
                   const struct rendition_opts *opts, struct rendition *outs,
                   char *err, size_t errlen) MUST_CHECK;
void rendition_free(struct rendition *r);   /* one output; safe on a zeroed struct */
/* "ok", "internal", "bad_image", "too_large"; static string. */
const char *rendition_result_name(int result);

#endif
