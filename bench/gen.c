/* bench/gen.c: the benchmark's reproducible image set.
 *
 *   gen OUTDIR SUBDIR N SEED MIN_BYTES MAX_BYTES FIXTURES_DIR
 *
 * Writes N distinct images OUTDIR/SUBDIR/NNNNNN.{jpg,png,webp} and prints
 * one manifest line per image on stdout: "SUBDIR/NNNNNN.ext<TAB>bytes".
 * Each image is a real tiny image from FIXTURES_DIR (avatar.jpg, avatar.png,
 * avatar.webp: the worker's sniffer reads only the header) followed by
 * deterministic filler up to a size drawn uniformly from [MIN_BYTES,
 * MAX_BYTES]. Type, size and filler come from SEED alone (splitmix64), so
 * the same arguments give byte-identical files on every machine; the image
 * index is written into the filler, so every image has its own SHA-256.
 * Built by bench/run.sh into build/bench/gen. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "gen: %s: %s\n", path, f ? "empty or unreadable" : strerror(errno));
        exit(1);
    }
    buf = malloc((size_t)n);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "gen: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv)
{
    static const char *const exts[3] = { "jpg", "png", "webp" };
    unsigned char *fix[3], *buf;
    size_t fixlen[3];
    char path[4096];
    uint64_t state;
    long n, minb, maxb;

    if (argc != 8) {
        fprintf(stderr, "usage: gen OUTDIR SUBDIR N SEED MIN_BYTES MAX_BYTES FIXTURES_DIR\n");
        return 2;
    }
    n = strtol(argv[3], NULL, 10);
    state = strtoull(argv[4], NULL, 10);
    minb = strtol(argv[5], NULL, 10);
    maxb = strtol(argv[6], NULL, 10);
    if (n < 1 || minb < 1024 || maxb < minb) {
        fprintf(stderr, "gen: bad N, MIN_BYTES or MAX_BYTES\n");
        return 2;
    }
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/avatar.%s", argv[7], exts[k]);
        fix[k] = slurp(path, &fixlen[k]);
        if ((long)fixlen[k] + 64 > minb) {
            fprintf(stderr, "gen: MIN_BYTES is smaller than %s\n", path);
            return 2;
        }
    }
    snprintf(path, sizeof path, "%s/%s", argv[1], argv[2]);
    if (mkdir(argv[1], 0755) != 0 && errno != EEXIST) {
        perror(argv[1]);
        return 1;
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        return 1;
    }
    buf = malloc((size_t)maxb + 8);
    if (buf == NULL)
        return 1;
    for (long i = 0; i < n; i++) {
        int k = (int)(splitmix64(&state) % 3);
        long size = minb + (long)(splitmix64(&state) % (uint64_t)(maxb - minb + 1));
        uint64_t fill = splitmix64(&state);
        size_t off = fixlen[k];
        FILE *f;

        memcpy(buf, fix[k], fixlen[k]);
        off += (size_t)snprintf((char *)buf + off, 64, "imgcache-bench-%s-%ld;", argv[2], i);
        for (; off < (size_t)size; off += 8) {
            uint64_t r = splitmix64(&fill);
            memcpy(buf + off, &r, 8);
        }
        snprintf(path, sizeof path, "%s/%s/%06ld.%s", argv[1], argv[2], i, exts[k]);
        f = fopen(path, "wb");
        if (f == NULL || fwrite(buf, 1, (size_t)size, f) != (size_t)size || fclose(f) != 0) {
            fprintf(stderr, "gen: cannot write %s\n", path);
            return 1;
        }
        printf("%s/%06ld.%s\t%ld\n", argv[2], i, exts[k], size);
    }
    free(buf);
    for (int k = 0; k < 3; k++)
        free(fix[k]);
    return fflush(stdout) == 0 ? 0 : 1;
}
