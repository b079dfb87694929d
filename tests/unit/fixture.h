#ifndef IMGCACHE_TEST_FIXTURE_H
#define IMGCACHE_TEST_FIXTURE_H
/* Reading a test image for the unit tests (include after <cmocka.h>).
 * Ownership: load_fixture()'s data is malloc'd, exactly the file's size
 * (a read one byte too far shows under valgrind); the test frees it. */
#include <stdio.h>
#include <stdlib.h>

struct blob {
    unsigned char *data;
    size_t len;
};

/* TEST_FIXTURES/images/NAME when TEST_FIXTURES is set, else
 * tests/fixtures/images/NAME from the repo root. Fails the test when it
 * cannot be read. */
static inline struct blob load_fixture(const char *name)
{
    const char *dir = getenv("TEST_FIXTURES");
    char path[1024];
    struct blob b = { NULL, 0 };
    FILE *f;
    long size;

    snprintf(path, sizeof path, "%s/images/%s", dir && *dir ? dir : "tests/fixtures", name);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open fixture %s (run from the repo root or set TEST_FIXTURES)", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    b.len = (size_t)size;
    b.data = malloc(b.len ? b.len : 1);
    assert_non_null(b.data);
    assert_int_equal(fread(b.data, 1, b.len, f), b.len);
    fclose(f);
    return b;
}

#endif
