#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "errmsg.h"
#include "log.h"

struct store {
    char *dir;
    atomic_ullong counter;    /* temporary names, from the loop and the committer */
    unsigned long long nonce; /* tells apart workers that share the folder */
};

static int mkdir_p(const char *path, char *err, size_t errlen)
{
    char buf[4096];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof buf) {
        errmsg_set(err, errlen, "storage path '%s' is empty or too long", path);
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
                errmsg_set(err, errlen, "cannot create %s: %s", buf, strerror(errno));
                return -1;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

/* a temporary file this old (in seconds) was left by a crash */
#define STORE_STALE_TMP_S STORE_IN_USE_S

static void remove_stale_tmp(const char *tmpdir)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    time_t now = time(NULL);

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && now - st.st_mtime > STORE_STALE_TMP_S)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

int store_open(const char *dir, struct store **out, char *err, size_t errlen)
{
    struct store *s = NULL;
    char tmp[4200];
    char shard_dir[4200];
    int rc = -1;

    *out = NULL;
    if (mkdir_p(dir, err, errlen) != 0)
        goto out;
    snprintf(tmp, sizeof tmp, "%s/.tmp", dir);
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        errmsg_set(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (access(tmp, W_OK) != 0) {
        errmsg_set(err, errlen, "IMGCACHE_STORAGE_DIR: %s is not writable: %s", dir, strerror(errno));
        rc = STORE_ERR_NOT_WRITABLE;
        goto out;
    }
    /* all 256 shard folders now, so a blob's publish is one rename: made
     * on demand, each new folder cost an inode allocation on the publish
     * path (a fifth of a worker's CPU while a store fills up) */
    for (int shard = 0; shard < STORE_SHARDS; shard++) {
        snprintf(shard_dir, sizeof shard_dir, "%s/%02x", dir, shard);
        if (mkdir(shard_dir, 0755) != 0 && errno != EEXIST) {
            errmsg_set(err, errlen, "cannot create %s: %s", shard_dir, strerror(errno));
            goto out;
        }
    }
    /* tmp still names <dir>/.tmp: only crashed downloads live there, never
     * a published blob */
    remove_stale_tmp(tmp);
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->dir = strdup(dir)) == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    if (getrandom(&s->nonce, sizeof s->nonce, 0) != (ssize_t)sizeof s->nonce)
        s->nonce = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
    *out = s;
    s = NULL;
    rc = 0;
out:
    store_close(s);
    return rc;
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    free(s->dir);
    free(s);
}

/* The full path of a blob's temporary file. */
static void tmp_path(const struct store_blob *b, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/.tmp/%s", b->store->dir, b->tmp_name);
}

/* write() until all of it is written (a regular file may take less at once) */
static int write_all(int fd, const void *data, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = data;

    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            errmsg_set(err, errlen, "storage: write failed: %s", strerror(errno));
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* A new temporary file for b (its name in b->tmp_name, its fd in b->fd). */
static int open_tmp(struct store *s, struct store_blob *b, char *err, size_t errlen)
{
    char path[4200];

    snprintf(b->tmp_name, sizeof b->tmp_name, "%016llx-%llu.part", s->nonce,
             (unsigned long long)atomic_fetch_add(&s->counter, 1) + 1);
    tmp_path(b, path, sizeof path);
    b->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (b->fd < 0) {
        errmsg_set(err, errlen, "storage: cannot create %s: %s", path, strerror(errno));
        b->tmp_name[0] = '\0';
        return -1;
    }
    return 0;
}

void store_key(const char sha256[HASH_HEX_LEN + 1], const char *ext, char key[STORE_KEY_MAX])
{
    snprintf(key, STORE_KEY_MAX, "%.2s/%s.%s", sha256, sha256, ext);
}

/* Marks an existing blob file as in use now (its mtime): `imgcache-producer
 * gc` keeps a file whose mtime is younger than STORE_IN_USE_S, so a blob
 * this worker found and is about to commit a row for is never collected
 * under it (producer/gc.c). 0 when the file is gone (gc took it first: the
 * caller writes it again). */
static int store_touch(const char *final)
{
    return utimensat(AT_FDCWD, final, NULL, 0) == 0;
}

/* The content under key is stored already: the file exists with that size
 * (the name is its hash; the size guards against a torn copy). */
static int already_stored(const struct store *s, const char *key, long long size)
{
    char final[4400];
    struct stat st;

    snprintf(final, sizeof final, "%s/%s", s->dir, key);
    return stat(final, &st) == 0 && st.st_size == size && store_touch(final);
}

int store_blob_put(struct store *s, struct store_blob *b, const char *key, const struct iovec *iov,
                   int iovcnt, int *existed, char *err, size_t errlen)
{
    long long size = 0;
    int rc = -1;

    memset(b, 0, sizeof *b);
    b->fd = -1;
    b->store = s;
    *existed = 0;
    for (int i = 0; i < iovcnt; i++)
        size += (long long)iov[i].iov_len;
    b->size = size;
    if (already_stored(s, key, size)) {
        *existed = 1;
        return 0;
    }
    if (open_tmp(s, b, err, errlen) != 0)
        return -1;
    for (int i = 0; i < iovcnt; i++)
        if (write_all(b->fd, iov[i].iov_base, iov[i].iov_len, err, errlen) != 0)
            goto out;
    rc = 0;
out:
    close(b->fd);
    b->fd = -1;
    if (rc != 0)
        store_blob_discard(b);
    return rc;
}

int store_blob_begin(struct store *s, struct store_blob *b, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->fd = -1;
    b->store = s;
    if (open_tmp(s, b, err, errlen) != 0)
        return -1;
    if (hash_init(&b->hash) != 0) {
        errmsg_set(err, errlen, "sha256: cannot initialise");
        store_blob_discard(b);
        return -1;
    }
    return 0;
}

int store_blob_write(struct store_blob *b, const void *data, size_t len, char *err, size_t errlen)
{
    if (b->head_len < STORE_HEAD_MAX) {
        size_t take = STORE_HEAD_MAX - b->head_len < len ? STORE_HEAD_MAX - b->head_len : len;
        if (b->head == NULL && (b->head = malloc(STORE_HEAD_MAX)) == NULL) {
            errmsg_set(err, errlen, "out of memory");
            return -1;
        }
        memcpy(b->head + b->head_len, data, take);
        b->head_len += take;
    }
    if (hash_update(&b->hash, data, len) != 0) {
        errmsg_set(err, errlen, "sha256: cannot update");
        return -1;
    }
    if (write_all(b->fd, data, len, err, errlen) != 0)
        return -1;
    b->size += (long long)len;
    return 0;
}

const unsigned char *store_blob_map(struct store_blob *b, size_t *len)
{
    void *p;
    int fd;

    *len = (size_t)b->size;
    if (b->size <= 0)
        return NULL;
    {
        char path[4200];
        tmp_path(b, path, sizeof path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return NULL;
    p = mmap(NULL, (size_t)b->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    return p == MAP_FAILED ? NULL : p;
}

void store_unmap(const unsigned char *p, size_t len)
{
    if (p)
        munmap((void *)p, len);
}

static void drop_head(struct store_blob *b)
{
    free(b->head);
    b->head = NULL;
    b->head_len = 0;
}

int store_blob_seal(struct store *s, struct store_blob *b, const char *ext,
                    char sha256[HASH_HEX_LEN + 1], char key[STORE_KEY_MAX], int *existed,
                    char *err, size_t errlen)
{
    *existed = 0;
    if (hash_final_hex(&b->hash, sha256) != 0) {
        errmsg_set(err, errlen, "sha256: cannot finish");
        return -1;
    }
    store_key(sha256, ext, key);
    /* the head served the sniffers; a sealed blob may wait a while for
     * its batch, without holding memory */
    drop_head(b);
    /* no writeback started here: that would submit the I/O on the
     * caller's thread; store_publish's syncfs leaves it to the kernel's
     * flusher threads */
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    if (already_stored(s, key, b->size)) {
        *existed = 1;
        char path[4200];
        tmp_path(b, path, sizeof path);
        unlink(path);
        b->tmp_name[0] = '\0';
    }
    return 0;
}

/* Gives the temporary file `from` the name `final` unless that name exists:
 * 1 when it made the name, 0 when the content was there already (from is
 * removed), -1 with errno. link() never replaces, so of two writers of the
 * same bytes (in one batch, or two workers) exactly one makes the name. */
static int name_blob(const char *from, const char *final)
{
    struct stat have, mine;

    if (link(from, final) == 0) {
        unlink(from);
        return 1;
    }
    if (errno == EPERM || errno == ENOTSUP || errno == EOPNOTSUPP || errno == ENOSYS) {
        /* a filesystem without hard links: look, then rename (two writers
         * of the same bytes may then both count it new) */
        if (stat(final, &have) == 0 && stat(from, &mine) == 0 && have.st_size == mine.st_size) {
            unlink(from);
            return 0;
        }
        return rename(from, final) == 0 ? 1 : -1;
    }
    if (errno != EEXIST)
        return -1;
    /* a content address: same name, same bytes, unless a crash once left
     * a short file there (then ours replaces it) */
    if (stat(final, &have) == 0 && stat(from, &mine) == 0 && have.st_size == mine.st_size &&
        store_touch(final)) {
        unlink(from);
        return 0;
    }
    return rename(from, final) == 0 ? 1 : -1;
}

int store_publish(struct store *s, struct store_blob **blobs, const char *const *keys, size_t n,
                  unsigned char *failed, unsigned char *created, char *err, size_t errlen)
{
    char tmpdir[4200], final[4400], dir[4400];
    int fd, rc = -1;
    size_t pending = 0;

    memset(failed, 0, n);
    if (created)
        memset(created, 0, n);
    for (size_t i = 0; i < n; i++)
        if (blobs[i]->tmp_name[0])
            pending++;
    if (pending == 0)
        return 0;
    snprintf(tmpdir, sizeof tmpdir, "%s/.tmp", s->dir);
    fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        errmsg_set(err, errlen, "storage: cannot open %s: %s", tmpdir, strerror(errno));
        return -1;
    }
    /* the bytes of every blob in the batch, before any gets its name */
    if (syncfs(fd) != 0) {
        errmsg_set(err, errlen, "storage: syncfs failed: %s", strerror(errno));
        goto out;
    }
    err[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        struct store_blob *b = blobs[i];
        char why[512] = "", from[4200];
        int made;
        if (b->tmp_name[0] == '\0')
            continue;
        tmp_path(b, from, sizeof from);
        snprintf(final, sizeof final, "%s/%s", s->dir, keys[i]);
        snprintf(dir, sizeof dir, "%s/%.2s", s->dir, keys[i]);
        made = name_blob(from, final);
        /* store_open made the shard folder; made again only when something
         * removed it since */
        if (made < 0 && errno == ENOENT && mkdir_p(dir, why, sizeof why) == 0)
            made = name_blob(from, final);
        if (made < 0) {
            if (why[0] == '\0') /* mkdir_p explains its own failures */
                snprintf(why, sizeof why, "storage: cannot rename into %s: %s", keys[i], strerror(errno));
            if (err[0] == '\0')
                errmsg_set(err, errlen, "%s", why);
            failed[i] = 1;
            continue;
        }
        if (created)
            created[i] = (unsigned char)made;
        b->tmp_name[0] = '\0';
    }
    /* ...and the names themselves, before any row points at them */
    if (syncfs(fd) != 0) {
        errmsg_set(err, errlen, "storage: syncfs failed: %s", strerror(errno));
        memset(failed, 1, n);
        goto out;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

void store_blob_discard(struct store_blob *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    if (b->tmp_name[0] && b->store) {
        char path[4200];
        tmp_path(b, path, sizeof path);
        unlink(path);
    }
    b->tmp_name[0] = '\0';
    hash_clear(&b->hash);
    drop_head(b);
}

int store_get(struct store *s, const char *key, unsigned char **data, size_t *len, char *err,
              size_t errlen)
{
    char path[4400];
    struct stat st;
    unsigned char *buf = NULL;
    size_t got = 0;
    int fd, rc = -1;

    *data = NULL;
    *len = 0;
    snprintf(path, sizeof path, "%s/%s", s->dir, key);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        errmsg_set(err, errlen, "storage: cannot open %s: %s", key, strerror(errno));
        return errno == ENOENT ? STORE_ERR_MISSING : -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        errmsg_set(err, errlen, "storage: %s is not a regular file", key);
        goto out;
    }
    buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (buf == NULL) {
        errmsg_set(err, errlen, "storage: out of memory reading %s", key);
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errmsg_set(err, errlen, "storage: cannot read %s: %s", key, n < 0 ? strerror(errno) : "short file");
            goto out;
        }
        got += (size_t)n;
    }
    *data = buf;
    *len = got;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    close(fd);
    return rc;
}
