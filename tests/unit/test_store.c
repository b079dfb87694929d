/* common/store.c: opening a store cleans only what a crash left in
 * <dir>/.tmp. A worker restart once removed old blobs from the last shard
 * folder (<dir>/ff) instead, and never cleaned <dir>/.tmp: this test puts
 * old and new files in every shard folder and in .tmp, opens the store
 * again, and checks that exactly the old temporary files went. And a blob
 * found already stored is marked in use for `gc` (its mtime). */
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
#include <sys/uio.h>
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

/* A blob found already stored is marked in use (its mtime set to now), so
 * `imgcache-producer gc` leaves it to the commit that follows; a blob gc
 * took away meanwhile is written again. */
static void test_existing_blob_is_marked_in_use(void **state)
{
    char root[] = "/tmp/imgcache-test-store.XXXXXX";
    char key[STORE_KEY_MAX], path[256], err[256];
    char sha[HASH_HEX_LEN + 1];
    struct store *s = NULL;
    struct store_blob b, *bp = &b;
    const char *keys[1];
    unsigned char failed[1], created[1];
    struct iovec iov = { .iov_base = "bytes", .iov_len = 5 };
    struct stat st;
    int existed = -1;

    (void)state;
    memset(sha, 'c', HASH_HEX_LEN);
    sha[HASH_HEX_LEN] = '\0';
    store_key(sha, "png", key);
    keys[0] = key;
    assert_non_null(mkdtemp(root));
    assert_int_equal(store_open(root, &s, err, sizeof err), 0);
    assert_int_equal(store_blob_put(s, &b, key, &iov, 1, &existed, err, sizeof err), 0);
    assert_int_equal(existed, 0);
    assert_int_equal(store_publish(s, &bp, keys, 1, failed, created, err, sizeof err), 0);
    assert_int_equal(created[0], 1);

    /* stored two hours ago, found again now: in use */
    snprintf(path, sizeof path, "%s/%s", root, key);
    put_file(root, key, TWO_HOURS);
    assert_int_equal(store_blob_put(s, &b, key, &iov, 1, &existed, err, sizeof err), 0);
    assert_int_equal(existed, 1);
    assert_int_equal(stat(path, &st), 0);
    assert_true(time(NULL) - st.st_mtime < 60);

    /* gone (gc took it): written again */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(store_blob_put(s, &b, key, &iov, 1, &existed, err, sizeof err), 0);
    assert_int_equal(existed, 0);
    assert_int_equal(store_publish(s, &bp, keys, 1, failed, created, err, sizeof err), 0);
    assert_int_equal(stat(path, &st), 0);

    store_close(s);
    assert_int_equal(nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

/* store_get(): an object whole, STORE_ERR_MISSING when absent, a folder refused. */
static void test_get(void **state)
{
    char root[] = "/tmp/imgcache-test-store.XXXXXX";
    char key[STORE_KEY_MAX], err[256];
    char sha[HASH_HEX_LEN + 1];
    struct store *s = NULL;
    struct store_blob b, *bp = &b;
    const char *keys[1];
    unsigned char failed[1], created[1];
    struct iovec iov[2] = { { "by", 2 }, { "tes", 3 } };
    unsigned char *data = (unsigned char *)"not touched";
    size_t len = 99;
    int existed;

    (void)state;
    memset(sha, 'd', HASH_HEX_LEN);
    sha[HASH_HEX_LEN] = '\0';
    store_key(sha, "webp", key);
    keys[0] = key;
    assert_non_null(mkdtemp(root));
    assert_int_equal(store_open(root, &s, err, sizeof err), 0);
    assert_int_equal(store_get(s, key, &data, &len, err, sizeof err), STORE_ERR_MISSING);
    assert_null(data);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err, key));

    assert_int_equal(store_blob_put(s, &b, key, iov, 2, &existed, err, sizeof err), 0);
    assert_int_equal(store_publish(s, &bp, keys, 1, failed, created, err, sizeof err), 0);
    assert_int_equal(store_get(s, key, &data, &len, err, sizeof err), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "bytes", 5);
    free(data);

    /* a shard folder is not an object */
    assert_int_equal(store_get(s, "dd", &data, &len, err, sizeof err), -1);
    assert_null(data);

    store_close(s);
    assert_int_equal(nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reopen_cleans_only_stale_temporary_files),
        cmocka_unit_test(test_existing_blob_is_marked_in_use),
        cmocka_unit_test(test_get),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
