/* bench/rendition_bench.c: how fast common/rendition.c renders, for
 * bench/renditions.sh (side by side with Debian's vipsthumbnail).
 *
 *   rendition-bench generate DIR N SEED
 *       writes N avatar-like images DIR/NNNN.{jpg,png} (400..1080 px, about
 *       1 in 4 a PNG, the rest JPEG Q85; blurred colour noise, so the
 *       decoders do real work) and prints their paths
 *   rendition-bench run [--sizes 64,128,256] [--quality 80] [--attention]
 *                       [--per-size] [--concurrency N] FILE...
 *       renders every FILE (read into memory first) and prints one line:
 *       mode=... images=N renditions=N wall_s=... cpu_s=... bytes=...
 *       --per-size: one vips_thumbnail_buffer() per preset (what
 *       vipsthumbnail does), instead of rendition_make()'s one decode
 *       --concurrency N: libvips worker threads (rendition_init() sets 1)
 *
 * Built by `make build/bench/rendition-bench` (links libvips). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <vips/vips.h>

#include "rendition.h"

#define MAX_SIZES 16

struct bench_opts {
    int sizes[MAX_SIZES];
    size_t nsizes;
    int quality;
    int attention;
    int per_size;
    int concurrency;
};

struct totals {
    long renditions;
    size_t bytes;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* user + system time of every thread of this process */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int generate_one(const char *dir, int i, unsigned *seed)
{
    VipsImage *bands[3] = { NULL, NULL, NULL }, *joined = NULL, *blurred = NULL, *out = NULL;
    int w = 400 + (int)(rand_r(seed) % 681), h = 400 + (int)(rand_r(seed) % 681);
    int png = rand_r(seed) % 4 == 0, rc = -1;
    char path[4096];

    for (int b = 0; b < 3; b++)
        if (vips_gaussnoise(&bands[b], w, h, "mean", 128.0, "sigma", 70.0,
                            "seed", (int)rand_r(seed), NULL) != 0)
            goto out;
    if (vips_bandjoin(bands, &joined, 3, NULL) != 0 || vips_gaussblur(joined, &blurred, 2.0, NULL) != 0 ||
        vips_cast_uchar(blurred, &out, NULL) != 0)
        goto out;
    vips_image_set_int(out, "interpretation", VIPS_INTERPRETATION_sRGB);
    snprintf(path, sizeof path, "%s/%04d.%s", dir, i, png ? "png" : "jpg");
    if ((png ? vips_pngsave(out, path, NULL) : vips_jpegsave(out, path, "Q", 85, NULL)) != 0)
        goto out;
    printf("%s\n", path);
    rc = 0;
out:
    for (int b = 0; b < 3; b++)
        if (bands[b] != NULL)
            g_object_unref(bands[b]);
    if (joined != NULL)
        g_object_unref(joined);
    if (blurred != NULL)
        g_object_unref(blurred);
    if (out != NULL)
        g_object_unref(out);
    return rc;
}

static int generate(const char *dir, int n, unsigned seed)
{
    for (int i = 0; i < n; i++)
        if (generate_one(dir, i, &seed) != 0) {
            fprintf(stderr, "rendition-bench: generate: %s", vips_error_buffer());
            return 1;
        }
    return 0;
}

static int render_per_size(const void *src, size_t len, const struct bench_opts *o, struct totals *t)
{
    for (size_t i = 0; i < o->nsizes; i++) {
        VipsImage *thumb = NULL;
        void *buf = NULL;
        size_t blen = 0;
        int bad = vips_thumbnail_buffer((void *)src, len, &thumb, o->sizes[i], "height", o->sizes[i],
                                        "size", VIPS_SIZE_DOWN, "crop",
                                        o->attention ? VIPS_INTERESTING_ATTENTION : VIPS_INTERESTING_CENTRE,
                                        NULL) != 0 ||
                  vips_webpsave_buffer(thumb, &buf, &blen, "Q", o->quality, "strip", TRUE, NULL) != 0;
        if (thumb != NULL)
            g_object_unref(thumb);
        g_free(buf);
        if (bad)
            return -1;
        t->renditions++;
        t->bytes += blen;
    }
    return 0;
}

static int render_once(const void *src, size_t len, const struct bench_opts *o, struct totals *t)
{
    struct rendition outs[MAX_SIZES];
    struct rendition_opts ro = { o->quality, 0, o->attention };
    char err[256];

    if (rendition_make(src, len, o->sizes, o->nsizes, &ro, outs, err, sizeof err) != RENDITION_OK) {
        fprintf(stderr, "rendition-bench: %s\n", err);
        return -1;
    }
    for (size_t i = 0; i < o->nsizes; i++) {
        t->renditions++;
        t->bytes += outs[i].len;
        rendition_free(&outs[i]);
    }
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    gchar *data = NULL;
    gsize n = 0;
    if (!g_file_get_contents(path, &data, &n, NULL))
        return NULL;
    *len = n;
    return data;
}

static int run(char **files, int nfiles, const struct bench_opts *o)
{
    char **data = calloc((size_t)nfiles, sizeof *data);
    size_t *lens = calloc((size_t)nfiles, sizeof *lens);
    struct totals t = { 0, 0 };
    double wall0, cpu0;
    int rc = 1;

    if (data == NULL || lens == NULL)
        goto out;
    for (int i = 0; i < nfiles; i++)
        if ((data[i] = slurp(files[i], &lens[i])) == NULL) {
            fprintf(stderr, "rendition-bench: cannot read '%s'\n", files[i]);
            goto out;
        }
    wall0 = now_s();
    cpu0 = cpu_s();
    for (int i = 0; i < nfiles; i++)
        if ((o->per_size ? render_per_size : render_once)(data[i], lens[i], o, &t) != 0) {
            fprintf(stderr, "rendition-bench: '%s' failed %s\n", files[i], vips_error_buffer());
            goto out;
        }
    printf("mode=%s crop=%s concurrency=%d images=%d renditions=%ld wall_s=%.3f cpu_s=%.3f bytes=%zu\n",
           o->per_size ? "per-size" : "once", o->attention ? "attention" : "centre", o->concurrency,
           nfiles, t.renditions, now_s() - wall0, cpu_s() - cpu0, t.bytes);
    rc = 0;
out:
    for (int i = 0; data != NULL && i < nfiles; i++)
        g_free(data[i]);
    free(data);
    free(lens);
    return rc;
}

static int parse_sizes(const char *s, struct bench_opts *o)
{
    char *end;
    o->nsizes = 0;
    while (*s != '\0' && o->nsizes < MAX_SIZES) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > RENDITION_MAX_SIZE || (*end != ',' && *end != '\0'))
            return -1;
        o->sizes[o->nsizes++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return o->nsizes > 0 && *s == '\0' ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: rendition-bench generate DIR N SEED\n"
                    "       rendition-bench run [--sizes 64,128,256] [--quality 80] [--attention]\n"
                    "                           [--per-size] [--concurrency N] FILE...\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct bench_opts o = { { 64, 128, 256 }, 3, RENDITION_DEFAULT_QUALITY, 0, 0, 1 };
    char err[256];
    int i = 2, rc;

    if (argc < 2 || (strcmp(argv[1], "generate") != 0 && strcmp(argv[1], "run") != 0))
        return usage();
    if (rendition_init(argv[0], err, sizeof err) != 0) {
        fprintf(stderr, "rendition-bench: %s\n", err);
        return 1;
    }
    if (strcmp(argv[1], "generate") == 0) {
        rc = argc == 5 ? generate(argv[2], atoi(argv[3]), (unsigned)strtoul(argv[4], NULL, 10)) : usage();
        goto out;
    }
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--attention") == 0)
            o.attention = 1;
        else if (strcmp(argv[i], "--per-size") == 0)
            o.per_size = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--sizes") == 0 && parse_sizes(argv[i + 1], &o) == 0)
            i++;
        else if (i + 1 < argc && strcmp(argv[i], "--quality") == 0 && atoi(argv[i + 1]) >= 1)
            o.quality = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--concurrency") == 0 && atoi(argv[i + 1]) >= 1)
            o.concurrency = atoi(argv[++i]);
        else {
            rc = usage();
            goto out;
        }
    }
    vips_concurrency_set(o.concurrency);
    rc = i < argc ? run(argv + i, argc - i, &o) : usage();
out:
    rendition_shutdown();
    return rc;
}
