#include "sniff.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "errmsg.h"

/* Every read goes through have(): the input is untrusted and fuzzed. On a
 * REJECT, out->type is SNIFF_UNKNOWN; on NEED_MORE the type is already set. */

static const unsigned char png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

static int have(size_t len, size_t off, size_t n)
{
    return off <= len && n <= len - off;
}

static unsigned be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static unsigned long be32(const unsigned char *p)
{
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

static unsigned le16(const unsigned char *p)
{
    return (unsigned)p[1] << 8 | p[0];
}

static unsigned long le24(const unsigned char *p)
{
    return (unsigned long)p[2] << 16 | (unsigned long)p[1] << 8 | p[0];
}

static unsigned long le32(const unsigned char *p)
{
    return (unsigned long)p[3] << 24 | le24(p);
}

/* The body ended before the size: final only when it is the whole body. */
static enum sniff_status short_body(int complete, const char *what, size_t len,
                                    char *err, size_t errlen)
{
    if (!complete)
        return SNIFF_NEED_MORE;
    errmsg_set(err, errlen, "truncated %s: the body ends at byte %zu before the image size", what, len);
    return SNIFF_REJECT;
}

static enum sniff_status damaged(char *err, size_t errlen, const char *what, const char *why)
{
    errmsg_set(err, errlen, "damaged %s header: %s", what, why);
    return SNIFF_REJECT;
}

static enum sniff_status finish(struct sniff_result *out, unsigned long w, unsigned long h,
                                char *err, size_t errlen)
{
    if (w == 0 || h == 0) {
        errmsg_set(err, errlen, "%s claims a size of %lux%lu; zero width or height is refused",
                   sniff_type_name(out->type), w, h);
        return SNIFF_REJECT;
    }
    out->width = (unsigned)w;
    out->height = (unsigned)h;
    out->canvas_width = (unsigned)w;
    out->canvas_height = (unsigned)h;
    return SNIFF_OK;
}

static int is_sof(unsigned m)
{
    /* C4 (DHT), C8 (JPG extension) and CC (DAC) share the range but are not frames */
    return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
}

static enum sniff_status sniff_jpeg(const unsigned char *b, size_t len, int complete,
                                    struct sniff_result *out, char *err, size_t errlen)
{
    size_t pos = 2; /* after SOI */
    char why[96];

    for (;;) {
        unsigned marker;
        size_t seglen;

        if (!have(len, pos, 1))
            return short_body(complete, "JPEG", len, err, errlen);
        if (b[pos] != 0xff) {
            snprintf(why, sizeof why, "no marker at byte %zu", pos);
            return damaged(err, errlen, "JPEG", why);
        }
        /* any number of 0xFF fill bytes may precede a marker */
        while (have(len, pos, 1) && b[pos] == 0xff)
            pos++;
        if (!have(len, pos, 1))
            return short_body(complete, "JPEG", len, err, errlen);
        marker = b[pos++];
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7))
            continue; /* TEM and RSTn stand alone, no length */
        if (marker == 0x00 || marker == 0xd8) {
            snprintf(why, sizeof why, "unexpected marker 0x%02X at byte %zu", marker, pos - 1);
            return damaged(err, errlen, "JPEG", why);
        }
        if (marker == 0xd9)
            return damaged(err, errlen, "JPEG", "image ends before a frame header (SOF)");
        if (marker == 0xda)
            return damaged(err, errlen, "JPEG", "scan data before a frame header (SOF)");
        if (!have(len, pos, 2))
            return short_body(complete, "JPEG", len, err, errlen);
        seglen = be16(b + pos);
        if (seglen < 2) {
            snprintf(why, sizeof why, "segment 0x%02X has length %zu", marker, seglen);
            return damaged(err, errlen, "JPEG", why);
        }
        if (is_sof(marker)) {
            /* length(2) precision(1) height(2) width(2) components(1) */
            if (seglen < 8)
                return damaged(err, errlen, "JPEG", "frame header is too short");
            if (!have(len, pos, 7))
                return short_body(complete, "JPEG", len, err, errlen);
            return finish(out, be16(b + pos + 5), be16(b + pos + 3), err, errlen);
        }
        if (!have(len, pos, seglen))
            return short_body(complete, "JPEG", len, err, errlen);
        pos += seglen;
    }
}

static enum sniff_status sniff_png(const unsigned char *b, size_t len, int complete,
                                   struct sniff_result *out, char *err, size_t errlen)
{
    unsigned long w, h;

    /* signature(8) length(4) "IHDR"(4) width(4) height(4) */
    if (!have(len, 0, 24))
        return short_body(complete, "PNG", len, err, errlen);
    if (memcmp(b + 12, "IHDR", 4) != 0 || be32(b + 8) != 13)
        return damaged(err, errlen, "PNG", "the first chunk is not a 13-byte IHDR");
    w = be32(b + 16);
    h = be32(b + 20);
    if (w > 0x7fffffffUL || h > 0x7fffffffUL)
        return damaged(err, errlen, "PNG", "width or height over 2^31-1");
    return finish(out, w, h, err, errlen);
}

/* Skips a GIF's data sub-blocks (a size byte, that many bytes, ... up to a
 * zero size) from *pos. 0 when done, 1 when the input ends first. */
static int gif_skip_sub_blocks(const unsigned char *b, size_t len, size_t *pos)
{
    for (;;) {
        size_t n;
        if (!have(len, *pos, 1))
            return 1;
        n = b[*pos];
        if (!have(len, *pos, n + 1))
            return 1;
        *pos += n + 1;
        if (n == 0)
            return 0;
    }
}

/* The size of a colour table announced by a packed-fields byte. */
static size_t gif_color_table(unsigned packed)
{
    return (packed & 0x80) ? (size_t)3 << ((packed & 7) + 1) : 0;
}

static enum sniff_status sniff_gif(const unsigned char *b, size_t len, int complete,
                                   struct sniff_result *out, char *err, size_t errlen)
{
    size_t pos;
    char why[96];

    /* signature(6) then the logical screen width and height, little-endian */
    if (!have(len, 0, 10))
        return short_body(complete, "GIF", len, err, errlen);
    if (finish(out, le16(b + 6), le16(b + 8), err, errlen) != SNIFF_OK)
        return SNIFF_REJECT;
    /* then screen flags(1) background(1) aspect(1), an optional global
     * colour table, and blocks up to the trailer: every image descriptor is
     * a frame drawn at (left, top) with a size of its own */
    if (!have(len, 10, 3))
        goto ran_out;
    pos = 13 + gif_color_table(b[10]);
    for (;;) {
        if (!have(len, pos, 1))
            goto ran_out;
        if (b[pos] == 0x3b)
            return SNIFF_OK;
        if (b[pos] == 0x21) {           /* extension: label, sub-blocks */
            pos += 2;
            if (gif_skip_sub_blocks(b, len, &pos) != 0)
                goto ran_out;
            continue;
        }
        if (b[pos] != 0x2c) {
            snprintf(why, sizeof why, "unknown block 0x%02X at byte %zu", b[pos], pos);
            return damaged(err, errlen, "GIF", why);
        }
        /* image descriptor: left(2) top(2) width(2) height(2) packed(1) */
        if (!have(len, pos, 10))
            goto ran_out;
        if (++out->frames > SNIFF_GIF_MAX_FRAMES) {
            errmsg_set(err, errlen, "GIF has more than %d frames", SNIFF_GIF_MAX_FRAMES);
            return SNIFF_REJECT;
        }
        unsigned right = le16(b + pos + 1) + le16(b + pos + 5);
        unsigned bottom = le16(b + pos + 3) + le16(b + pos + 7);
        if (right > out->canvas_width)
            out->canvas_width = right;
        if (bottom > out->canvas_height)
            out->canvas_height = bottom;
        pos += 10 + gif_color_table(b[pos + 9]) + 1; /* + LZW minimum code size */
        if (gif_skip_sub_blocks(b, len, &pos) != 0)
            goto ran_out;
    }
ran_out:
    if (!complete)
        return SNIFF_NEED_MORE;
    if (out->frames == 0) {
        errmsg_set(err, errlen, "truncated GIF: the body ends at byte %zu before the first frame", len);
        return SNIFF_REJECT;
    }
    return SNIFF_OK;
}

static enum sniff_status sniff_webp(const unsigned char *b, size_t len, int complete,
                                    struct sniff_result *out, char *err, size_t errlen)
{
    const unsigned char *d = b + 20; /* chunk payload, valid once have() says so */
    char why[96];

    /* "RIFF" size "WEBP" fourcc(4) chunk-size(4) */
    if (!have(len, 0, 20))
        return short_body(complete, "WebP", len, err, errlen);
    if (memcmp(b + 12, "VP8 ", 4) == 0) {
        /* frame tag(3), start code 9D 01 2A, 14-bit width and height */
        if (!have(len, 20, 10))
            return short_body(complete, "WebP", len, err, errlen);
        if ((d[0] & 1) != 0)
            return damaged(err, errlen, "WebP", "VP8 data does not start with a key frame");
        if (d[3] != 0x9d || d[4] != 0x01 || d[5] != 0x2a)
            return damaged(err, errlen, "WebP", "VP8 start code missing");
        return finish(out, le16(d + 6) & 0x3fff, le16(d + 8) & 0x3fff, err, errlen);
    }
    if (memcmp(b + 12, "VP8L", 4) == 0) {
        /* signature 0x2F, then 14 bits width-1 and 14 bits height-1 */
        unsigned long bits;
        if (!have(len, 20, 5))
            return short_body(complete, "WebP", len, err, errlen);
        if (d[0] != 0x2f)
            return damaged(err, errlen, "WebP", "VP8L signature missing");
        bits = le32(d + 1);
        return finish(out, (bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1, err, errlen);
    }
    if (memcmp(b + 12, "VP8X", 4) == 0) {
        /* flags(1) reserved(3), then 24-bit canvas width-1 and height-1 */
        if (!have(len, 20, 10))
            return short_body(complete, "WebP", len, err, errlen);
        return finish(out, le24(d + 4) + 1, le24(d + 7) + 1, err, errlen);
    }
    snprintf(why, sizeof why, "first chunk is 0x%02X%02X%02X%02X, not VP8, VP8L or VP8X",
             b[12], b[13], b[14], b[15]);
    return damaged(err, errlen, "WebP", why);
}

/* 1: buf[0..len) equals the start of magic (so more bytes could make it match). */
static int prefix_of(const unsigned char *buf, size_t len, const void *magic, size_t mlen)
{
    return memcmp(buf, magic, len < mlen ? len : mlen) == 0;
}

static int webp_prefix(const unsigned char *buf, size_t len)
{
    /* "RIFF", 4 size bytes of any value, "WEBP" */
    if (!prefix_of(buf, len, "RIFF", 4))
        return 0;
    if (len <= 8)
        return 1;
    return prefix_of(buf + 8, len - 8, "WEBP", 4);
}

static int starts_with_ci(const unsigned char *p, size_t n, const char *word)
{
    size_t wl = strlen(word);
    return n >= wl && strncasecmp((const char *)p, word, wl) == 0;
}

static int contains_ci(const unsigned char *p, size_t n, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; wl <= n && i <= n - wl; i++)
        if (strncasecmp((const char *)p + i, word, wl) == 0)
            return 1;
    return 0;
}

/* Names what a refused body looks like, so the reason in the row helps. */
static enum sniff_status reject_other(const unsigned char *b, size_t len, char *err, size_t errlen)
{
    size_t i = 0, n, window;
    int text = 1;

    if (len >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf)
        i = 3; /* UTF-8 byte order mark */
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n' || b[i] == '\f'))
        i++;
    n = len - i;
    window = n < 1024 ? n : 1024;
    if (starts_with_ci(b + i, n, "%PDF-")) {
        errmsg_set(err, errlen, "PDF is not an image");
        return SNIFF_REJECT;
    }
    if (n > 0 && b[i] == '<') {
        if (starts_with_ci(b + i, n, "<svg") || starts_with_ci(b + i, n, "<!doctype svg") ||
            (starts_with_ci(b + i, n, "<?xml") && !contains_ci(b + i, window, "<html")) ||
            (contains_ci(b + i, window, "<svg") && !contains_ci(b + i, window, "<html")))
            errmsg_set(err, errlen, "SVG is refused: it can carry scripts");
        else
            errmsg_set(err, errlen, "looks like HTML, not an image");
        return SNIFF_REJECT;
    }
    if (n == 0) {
        errmsg_set(err, errlen, "body is only whitespace");
        return SNIFF_REJECT;
    }
    for (size_t k = i; k < i + window; k++) {
        unsigned char c = b[k];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') || c == 0x7f) {
            text = 0;
            break;
        }
    }
    if (text) {
        errmsg_set(err, errlen, "looks like plain text, not an image");
        return SNIFF_REJECT;
    }
    errmsg_set(err, errlen, "unknown format (first bytes %02x %02x %02x %02x)", b[0],
               len > 1 ? b[1] : 0, len > 2 ? b[2] : 0, len > 3 ? b[3] : 0);
    return SNIFF_REJECT;
}

enum sniff_status sniff_image(const unsigned char *buf, size_t len, int complete,
                              struct sniff_result *out, char *err, size_t errlen)
{
    enum sniff_status st;

    memset(out, 0, sizeof *out);
    if (buf == NULL || len == 0) {
        if (!complete)
            return SNIFF_NEED_MORE;
        errmsg_set(err, errlen, "empty body");
        return SNIFF_REJECT;
    }
    if (prefix_of(buf, len, "\xff\xd8\xff", 3))
        out->type = SNIFF_JPEG;
    else if (prefix_of(buf, len, png_sig, sizeof png_sig))
        out->type = SNIFF_PNG;
    else if (prefix_of(buf, len, "GIF87a", 6) || prefix_of(buf, len, "GIF89a", 6))
        out->type = SNIFF_GIF;
    else if (webp_prefix(buf, len))
        out->type = SNIFF_WEBP;
    else
        return reject_other(buf, len, err, errlen);

    switch (out->type) {
    case SNIFF_JPEG:
        out->content_type = "image/jpeg";
        out->extension = "jpg";
        st = len < 3 ? short_body(complete, "JPEG", len, err, errlen)
                     : sniff_jpeg(buf, len, complete, out, err, errlen);
        break;
    case SNIFF_PNG:
        out->content_type = "image/png";
        out->extension = "png";
        st = sniff_png(buf, len, complete, out, err, errlen);
        break;
    case SNIFF_GIF:
        out->content_type = "image/gif";
        out->extension = "gif";
        st = sniff_gif(buf, len, complete, out, err, errlen);
        break;
    default:
        out->content_type = "image/webp";
        out->extension = "webp";
        st = sniff_webp(buf, len, complete, out, err, errlen);
        break;
    }
    if (st == SNIFF_REJECT)
        memset(out, 0, sizeof *out);
    return st;
}

const char *sniff_type_name(enum sniff_type type)
{
    switch (type) {
    case SNIFF_JPEG:
        return "JPEG";
    case SNIFF_PNG:
        return "PNG";
    case SNIFF_GIF:
        return "GIF";
    case SNIFF_WEBP:
        return "WebP";
    default:
        return "unknown";
    }
}
