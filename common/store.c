#include "store.h"
#include "store_private.h"

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

#include "config.h"
#include "errmsg.h"
#include "log.h"

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

/* The folder dir with its .tmp, and with the 256 shard folders when it is
 * the store itself (shards 1), not a spool of uploads. */
static int open_folder(const char *dir, int shards, struct store **out, char *err, size_t errlen)
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
    for (int shard = 0; shards && shard < STORE_SHARDS; shard++) {
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

int store_open(const char *dir, struct store **out, char *err, size_t errlen)
{
    return open_folder(dir, 1, out, err, errlen);
}

int store_is_s3_url(const char *url)
{
    return strncasecmp(url, "s3://", 5) == 0;
}

int store_open_config(const struct config *cfg, struct store **out, char *err, size_t errlen)
{
    const struct store_s3_settings st = {
        .url = cfg->storage_url, .endpoint = cfg->aws_endpoint_url, .region = cfg->aws_region,
        .access_key = cfg->aws_access_key_id, .secret_key = cfg->aws_secret_access_key,
        .addressing = cfg->s3_addressing,
    };
    struct store *s = NULL;
    int rc;

    *out = NULL;
    if (!store_is_s3_url(cfg->storage_url))
        return open_folder(cfg->storage_dir, 1, out, err, errlen);
    /* s3://: IMGCACHE_STORAGE_DIR spools downloads until their PUT */
    rc = open_folder(cfg->storage_dir, 0, &s, err, errlen);
    if (rc == 0)
        rc = s3_client_new(&st, &s->s3, err, errlen);
    if (rc != 0)
        goto out;
    *out = s;
    s = NULL;
out:
    store_close(s);
    return rc;
}

int store_config_check(const struct config *cfg, char *err, size_t errlen)
{
    char bucket[256], prefix[512], why[300];

    if (cfg->storage_url[0] == '\0')
        return 0;
    if (strncasecmp(cfg->storage_url, "file://", 7) == 0) {
        if (cfg->storage_url[7] != '/') {
            errmsg_set(err, errlen, "IMGCACHE_STORAGE_URL: '%s' is not file:///absolute/path", cfg->storage_url);
            return -1;
        }
        return 0;
    }
    if (s3_parse_url(cfg->storage_url, bucket, sizeof bucket, prefix, sizeof prefix, why, sizeof why) != 0) {
        if (!store_is_s3_url(cfg->storage_url))
            errmsg_set(why, sizeof why, "'%s' is neither file:///path nor s3://bucket[/prefix]", cfg->storage_url);
        errmsg_set(err, errlen, "IMGCACHE_STORAGE_URL: %s", why);
        return -1;
    }
    if (cfg->aws_access_key_id[0] == '\0' || cfg->aws_secret_access_key[0] == '\0') {
        errmsg_set(err, errlen, "IMGCACHE_STORAGE_URL is s3://: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                   "(environment only)");
        return -1;
    }
    if (cfg->aws_region[0] == '\0') {
        errmsg_set(err, errlen, "IMGCACHE_STORAGE_URL is s3://: AWS_REGION is empty");
        return -1;
    }
    return 0;
}

int store_s3_public_base(const struct config *cfg, char *out, size_t outlen)
{
    const struct store_s3_settings st = {
        .url = cfg->storage_url, .endpoint = cfg->aws_endpoint_url, .region = cfg->aws_region,
        .addressing = cfg->s3_addressing,
    };

    if (!store_is_s3_url(cfg->storage_url))
        return -1;
    return s3_public_base_of(&st, out, outlen);
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    s3_client_free(s->s3);
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

    /* S3: asked on the committer thread, by store_publish's HEAD, never
     * on the event loop */
    if (s->s3)
        return 0;
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

/* The upload of keys[i] when an earlier blob of the batch has the same key
 * (the same bytes, twice in one batch): -1 when none. */
static long same_key_before(const struct s3_upload *u, size_t m, const char *key)
{
    for (size_t k = 0; k < m; k++)
        if (strcmp(u[k].key, key) == 0)
            return (long)k;
    return -1;
}

/* store_publish() on S3: a HEAD (and a PUT when missing) per distinct key,
 * several at a time; once the service itself fails (unreachable, 5xx,
 * refused credentials) the rest of the batch is not tried: it would fail
 * alike. A blob whose key came earlier in the batch is not sent again. */
static int publish_s3(struct store *s, struct store_blob **blobs, const char *const *keys, size_t n,
                      unsigned char *failed, unsigned char *created, char *err, size_t errlen)
{
    struct s3_upload *u = calloc(n, sizeof *u);
    char (*paths)[4200] = calloc(n, sizeof *paths);
    long *upload_of = calloc(n, sizeof *upload_of);
    size_t m = 0;
    int rc = 0;

    if (u == NULL || paths == NULL || upload_of == NULL) {
        errmsg_set(err, errlen, "out of memory");
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        upload_of[i] = -1;
        if (blobs[i]->tmp_name[0] == '\0')
            continue;
        tmp_path(blobs[i], paths[i], sizeof paths[i]);
        upload_of[i] = same_key_before(u, m, keys[i]);
        if (upload_of[i] >= 0)
            continue;
        u[m] = (struct s3_upload){ .key = keys[i], .path = paths[i], .size = blobs[i]->size };
        upload_of[i] = (long)m++;
    }
    s3_publish_files(s->s3, u, m);
    err[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const struct s3_upload *up = upload_of[i] >= 0 ? &u[upload_of[i]] : NULL;
        if (up == NULL)
            continue;
        if (up->result < 0) {
            failed[i] = 1;
            if (err[0] == '\0' && up->err[0])
                errmsg_set(err, errlen, "%s", up->err);
            /* refused settings outrank an outage: they need a person */
            if (up->result != -1 && up->err[0] && rc != STORE_ERR_DENIED)
                rc = up->result;
            continue;
        }
        /* the first blob of a key made it; its twins found it made. The
         * spool file stays until the blob is discarded: a batch published
         * again (its rows could not commit) HEADs the object again, and
         * PUTs it when gc deleted it meanwhile (producer/gc.c) */
        if (created)
            created[i] = (unsigned char)(up->path == paths[i] && up->result == 1);
    }
out:
    free(u);
    free(paths);
    free(upload_of);
    return rc;
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
    if (s->s3)
        return publish_s3(s, blobs, keys, n, failed, created, err, errlen);
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
    if (s->s3)
        return s3_get_object(s->s3, key, data, len, err, errlen);
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

int store_is_s3(const struct store *s)
{
    return s->s3 != NULL;
}

int store_list(struct store *s, store_list_fn fn, void *arg, char *err, size_t errlen)
{
    if (s->s3 == NULL) {
        errmsg_set(err, errlen, "storage: listing is for S3 stores only");
        return -1;
    }
    return s3_list_objects(s->s3, fn, arg, err, errlen);
}

int store_delete(struct store *s, const char *key, char *err, size_t errlen)
{
    char path[4400];

    if (s->s3)
        return s3_delete_object(s->s3, key, err, errlen);
    snprintf(path, sizeof path, "%s/%s", s->dir, key);
    if (unlink(path) != 0 && errno != ENOENT) {
        errmsg_set(err, errlen, "storage: cannot remove %s: %s", key, strerror(errno));
        return -1;
    }
    return 0;
}
