/* common/store.c: opening a store cleans only what a crash left in
 * <dir>/.tmp. A worker restart once removed old blobs from the last shard
 * folder (<dir>/ff) instead, and never cleaned <dir>/.tmp: this test puts
 * old and new files in every shard folder and in .tmp, opens the store
 * again, and checks that exactly the old temporary files went. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define TWO_HOURS (2 * 3600)

static void put_file(const char *dir, const char *name, time_t age)
{
    char path[256];
    struct timeval times[2];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("bytes", f);
    assert_int_equal(fclose(f), 0);
    times[0].tv_sec = times[1].tv_sec = time(NULL) - age;
    times[0].tv_usec = times[1].tv_usec = 0;
    assert_int_equal(utimes(path, times), 0);
}

static int exists(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void test_reopen_cleans_only_stale_temporary_files(void **state)
{
    char root[] = "/tmp/imgcache-test-store.XXXXXX";
    char shard[64], tmpdir[64], err[256];
    struct store *s = NULL;

    (void)state;
    assert_non_null(mkdtemp(root));
    assert_int_equal(store_open(root, &s, err, sizeof err), 0);
    store_close(s);
    s = NULL;

    /* an old and a new blob in every shard folder, old and new temporary
     * files in .tmp */
    for (int i = 0; i < STORE_SHARDS; i++) {
        snprintf(shard, sizeof shard, "%s/%02x", root, i);
        put_file(shard, "old-blob.jpg", TWO_HOURS);
        put_file(shard, "new-blob.png", 0);
    }
    snprintf(tmpdir, sizeof tmpdir, "%s/.tmp", root);
    put_file(tmpdir, "crashed.part", TWO_HOURS);
    put_file(tmpdir, "in-flight.part", 0);

    assert_int_equal(store_open(root, &s, err, sizeof err), 0);

    for (int i = 0; i < STORE_SHARDS; i++) {
        snprintf(shard, sizeof shard, "%s/%02x", root, i);
        if (!exists(shard, "old-blob.jpg") || !exists(shard, "new-blob.png"))
            fail_msg("store_open removed a stored blob from %s", shard);
    }
    assert_false(exists(tmpdir, "crashed.part"));
    assert_true(exists(tmpdir, "in-flight.part"));

    store_close(s);
    assert_int_equal(nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reopen_cleans_only_stale_temporary_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
