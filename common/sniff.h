#ifndef IMGCACHE_SNIFF_H
#define IMGCACHE_SNIFF_H
/* Recognises an image by its bytes, never by a Content-Type header, and reads
 * its width and height from the header without decoding pixels.
 * Accepted: JPEG, PNG, GIF, WebP. Everything else is refused with a reason
 * (HTML, text, SVG, PDF, empty, damaged header...). No allocation. */
#include <stddef.h>

#include "errmsg.h"

enum sniff_type { SNIFF_UNKNOWN = 0, SNIFF_JPEG, SNIFF_PNG, SNIFF_GIF, SNIFF_WEBP };

enum sniff_status {
    SNIFF_OK = 0,        /* type, width and height are known */
    SNIFF_NEED_MORE = 1, /* a valid start, but the size is further in (JPEG) */
    SNIFF_REJECT = -1,   /* not an accepted image; err says why */
};

/* A GIF with more frames than this is refused: each frame is decoded in
 * turn, so their number multiplies the decoding work of the canvas. */
#define SNIFF_GIF_MAX_FRAMES 1000

struct sniff_result {
    enum sniff_type type;
    const char *content_type; /* "image/jpeg"...; static string */
    const char *extension;    /* "jpg", "png", "gif", "webp"; static string */
    unsigned width;           /* the image's own size (a GIF's logical screen) */
    unsigned height;
    /* The area a decoder may have to allocate: width x height, grown to
     * cover every GIF frame seen (a 1x1 screen may carry a 60000x60000
     * frame). Compare this, not width x height, with a pixel cap. */
    unsigned canvas_width;
    unsigned canvas_height;
    unsigned frames;          /* GIF image descriptors seen; 0 for the rest */
};

/* Looks at buf[0..len). `complete` says buf is the whole body: then a body
 * that ends before the size is known is SNIFF_REJECT ("truncated ..."),
 * otherwise it is SNIFF_NEED_MORE. Zero width or height is refused.
 * A GIF is walked block by block to its trailer, so it is SNIFF_NEED_MORE
 * until the whole file is seen; its width, height and canvas so far are
 * already set then, for an early check against a cap. A GIF that ends
 * without a trailer after at least one frame is accepted, as decoders
 * display it. */
enum sniff_status sniff_image(const unsigned char *buf, size_t len, int complete,
                              struct sniff_result *out, char *err, size_t errlen) MUST_CHECK;

const char *sniff_type_name(enum sniff_type type);

#endif
