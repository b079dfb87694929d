#include "producer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db_gc.h"
#include "event.h"
#include "store.h"

/* gc [--grace 30d] [--dry-run] [--quiet]: the three steps of issue 15.
 *  1. cached_images and image_failures rows whose URL no chat or
 *     participant references now and none stopped referencing within
 *     the grace period (unreferenced_at, db_gc.h); a tombstone per URL
 *     dropped;
 *  2. image_blobs rows no cached_images row points at, and their files;
 *  3. files of the store with no image_blobs row, and temporary files,
 *     older than STORE_IN_USE_S (a crash between a worker's rename and its
 *     commit leaves those).
 *
 * Files and workers: a worker that finds a blob already stored sets the
 * file's mtime to now (store.c) before it commits a row pointing at it.
 * gc takes a file by renaming it into <store>/.tmp first (atomic), then
 * looks at its mtime: younger than STORE_IN_USE_S, a worker may be
 * committing it, and it goes back under its name; a worker that looks
 * after the rename finds no file and writes it again. So a committed row
 * never points at a file gc removed. The blob row stays locked (FOR UPDATE)
 * from before the rename until the delete commits, so a commit pointing at
 * it waits for gc, fails on the foreign key, and its image-by-image retry
 * (worker/committer.c) inserts the blob row anew.
 *
 * An S3 store (s3://) has no rename and no mtime to set: a per-content
 * advisory lock (db_gc.h) takes their place. A worker (and the renderer)
 * holds it shared from before its HEAD/PUT of an object until the rows
 * pointing at it commit; gc tries it exclusive in the transaction that
 * deletes, and skips a content whose lock is held (in use). Step 2 locks
 * and re-checks the blob rows, tries the locks, DELETEs the objects while
 * the transaction is open, then deletes the rows and commits: a worker
 * that wants the content meanwhile waits for the lock, then HEADs, finds
 * nothing and PUTs it again before its row commits. Step 3 lists the
 * bucket (ListObjectsV2), and per page, in a transaction, tries the locks
 * of the objects older than STORE_IN_USE_S first, then looks up their rows
 * (a row a worker committed before is seen) and DELETEs those with no
 * image_blobs nor image_renditions row. Only keys of the store's form
 * (<aa>/<sha256>.<ext>) are considered: other objects under the prefix are
 * not ours. */

#define GC_BATCH 500
#define GC_DEFAULT_GRACE "30d"
#define GC_KAFKA_WAIT_MS 30000
#define GC_FLUSH_TIMEOUT_MS 60000

struct gc {
    const struct config *cfg;
    struct db *db;
    struct kafka_producer *kp;  /* owned; NULL in a dry run */
    struct store *store;        /* owned; an S3 store only, else NULL (the folder is walked) */
    long long grace_ms;
    long long in_use_s;         /* STORE_IN_USE_S (S3: of an object's LastModified) */
    int dry_run;
    unsigned trash_seq;
    struct progress progress;
    /* the report */
    long long rows, failures, blobs, files, bytes, tombstones;
};

enum take_result { TAKE_TAKEN, TAKE_MISSING, TAKE_IN_USE, TAKE_ERROR };

static void show_progress(struct gc *g, int force)
{
    char detail[160];

    if (!progress_due(&g->progress, force))
        return;
    snprintf(detail, sizeof detail, "failures=%lld blobs=%lld files=%lld bytes=%lld", g->failures, g->blobs,
             g->files, g->bytes);
    if (progress_on_terminal(&g->progress))
        progress_line(&g->progress, g->rows, detail);
    else
        log_info("event=gc_progress rows=%lld %s", g->rows, detail);
}

/* Moves <store>/<key> to a new name in <store>/.tmp (trash), unless the
 * file was written or found in use within STORE_IN_USE_S: then it is put
 * back (TAKE_IN_USE). *size gets the size of a taken file. */
static enum take_result take_file(struct gc *g, const char *key, char *trash, size_t trashlen,
                                  long long *size)
{
    char final[4400];
    struct stat st;

    snprintf(final, sizeof final, "%s/%s", g->cfg->storage_dir, key);
    snprintf(trash, trashlen, "%s/.tmp/gc-%ld-%u.part", g->cfg->storage_dir, (long)getpid(), g->trash_seq++);
    if (rename(final, trash) != 0)
        return errno == ENOENT ? TAKE_MISSING : TAKE_ERROR;
    if (lstat(trash, &st) != 0)
        return TAKE_ERROR;
    if (time(NULL) - st.st_mtime <= STORE_IN_USE_S) {
        /* a worker wrote it again meanwhile: that copy wins (EEXIST) */
        if (link(trash, final) != 0 && errno != EEXIST)
            producer_warn("event=gc_restore_failed key=%s errno=%d", key, errno);
        unlink(trash);
        return TAKE_IN_USE;
    }
    *size = st.st_size;
    return TAKE_TAKEN;
}

/* Puts a taken file back (its row could not be deleted). */
static void restore_file(struct gc *g, const char *key, const char *trash)
{
    char final[4400];

    snprintf(final, sizeof final, "%s/%s", g->cfg->storage_dir, key);
    if (link(trash, final) != 0 && errno != EEXIST)
        producer_warn("event=gc_restore_failed key=%s errno=%d", key, errno);
    unlink(trash);
}

static int publish_tombstones(struct gc *g, const struct db_gc_list *l, char *err, size_t errlen)
{
    for (size_t i = 0; g->kp != NULL && i < l->n; i++) {
        const char *url = l->items[i].key;
        if (kafka_produce(g->kp, g->cfg->topic, url, strlen(url), NULL, 0, NULL, 0, NULL, err, errlen) != 0)
            return -1;
        g->tombstones++;
        kafka_producer_poll(g->kp);
    }
    return 0;
}

/* Step 1 for one table. A key is at most EVENT_MAX_URL bytes (workers
 * refuse longer ones, and so never cache nor fail them). */
static int gc_urls(struct gc *g, enum db_gc_table table, long long *count, char *err, size_t errlen)
{
    char after[EVENT_MAX_URL + 1] = "", scanned[EVENT_MAX_URL + 1];
    int rc = -1;

    for (;;) {
        struct db_gc_list l = { 0 };
        if (producer_stop) {
            errmsg_set(err, errlen, "interrupted");
            goto out;
        }
        if (db_gc_urls(g->db, table, g->grace_ms, g->dry_run, after, GC_BATCH, &l, scanned, sizeof scanned, err,
                       errlen) != 0) {
            db_gc_list_release(&l);
            goto out;
        }
        *count += (long long)l.n;
        if (!g->dry_run && publish_tombstones(g, &l, err, errlen) != 0) {
            db_gc_list_release(&l);
            goto out;
        }
        for (size_t i = 0; i < l.n; i++)
            log_debug("event=gc_url_removed table=%s url=\"%s\"",
                      table == DB_GC_CACHED_IMAGES ? "cached_images" : "image_failures", l.items[i].key);
        db_gc_list_release(&l);
        show_progress(g, 0);
        if (scanned[0] == '\0')
            break;
        snprintf(after, sizeof after, "%s", scanned);
    }
    rc = 0;
out:
    return rc;
}

/* Step 2, one locked batch: takes the files, deletes the rows, commits,
 * then removes the files (or puts them back when the commit failed). */
static int gc_blob_batch(struct gc *g, struct db_gc_list *l, char *err, size_t errlen)
{
    const char **shas = calloc(l->n + 1, sizeof *shas);
    char (*trash)[4400] = calloc(l->n + 1, sizeof *trash);
    unsigned char *taken = calloc(l->n + 1, 1);
    long long *sizes = calloc(l->n + 1, sizeof *sizes);
    size_t ndel = 0;
    int rc = -1;

    if (shas == NULL || trash == NULL || taken == NULL || sizes == NULL) {
        errmsg_set(err, errlen, "out of memory");
        db_gc_abort(g->db);
        goto out;
    }
    for (size_t i = 0; i < l->n; i++) {
        enum take_result t = take_file(g, l->items[i].storage_key, trash[i], sizeof trash[i], &sizes[i]);
        if (t == TAKE_IN_USE || t == TAKE_ERROR) {
            if (t == TAKE_ERROR)
                producer_warn("event=gc_file_kept key=%s errno=%d", l->items[i].storage_key, errno);
            continue;
        }
        taken[i] = t == TAKE_TAKEN;
        shas[ndel++] = l->items[i].key;
    }
    if (db_gc_blobs_finish(g->db, shas, ndel, err, errlen) != 0) {
        for (size_t i = 0; i < l->n; i++)
            if (taken[i])
                restore_file(g, l->items[i].storage_key, trash[i]);
        goto out;
    }
    g->blobs += (long long)ndel;
    for (size_t i = 0; i < l->n; i++)
        if (taken[i]) {
            unlink(trash[i]);
            g->files++;
            g->bytes += sizes[i];
        }
    rc = 0;
out:
    free(shas);
    free(trash);
    free(taken);
    free(sizes);
    return rc;
}

/* Step 2 on S3, one locked batch (db_gc_blobs_begin left its transaction
 * open): the blobs whose content lock is free lose their objects, then
 * their rows, and the transaction commits. A failed DELETE rolls it all
 * back: the rows stay, and an object already deleted is missing under a
 * row that nothing references; a worker that stores that content again
 * HEADs it missing and PUTs it, and the next gc deletes the row (a DELETE
 * of a missing object succeeds). */
static int gc_blob_batch_s3(struct gc *g, struct db_gc_list *l, char *err, size_t errlen)
{
    const char **shas = calloc(l->n + 1, sizeof *shas);
    unsigned char *locked = calloc(l->n + 1, 1);
    size_t ndel = 0;
    long long bytes = 0;
    int rc = -1;

    if (shas == NULL || locked == NULL) {
        errmsg_set(err, errlen, "out of memory");
        db_gc_abort(g->db);
        goto out;
    }
    for (size_t i = 0; i < l->n; i++)
        shas[i] = l->items[i].key;
    if (db_gc_try_store_locks(g->db, shas, l->n, locked, err, errlen) != 0) {
        db_gc_abort(g->db);
        goto out;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (!locked[i]) {
            log_debug("event=gc_blob_in_use sha256=%s", l->items[i].key);
            continue;
        }
        if (store_delete(g->store, l->items[i].storage_key, err, errlen) != 0) {
            db_gc_abort(g->db);
            goto out;
        }
        shas[ndel++] = l->items[i].key;
        bytes += l->items[i].bytes;
    }
    if (db_gc_blobs_finish(g->db, shas, ndel, err, errlen) != 0)
        goto out;
    g->blobs += (long long)ndel;
    g->files += (long long)ndel;
    g->bytes += bytes;
    rc = 0;
out:
    free(shas);
    free(locked);
    return rc;
}

/* A dry run's step 2 batch: what would go, the files' sizes from stat
 * (on S3, the rows' sizes: no request per object). */
static void gc_blob_count(struct gc *g, const struct db_gc_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        char path[4400];
        struct stat st;

        if (g->store != NULL) {
            g->blobs++;
            g->files++;
            g->bytes += l->items[i].bytes;
            continue;
        }

        snprintf(path, sizeof path, "%s/%s", g->cfg->storage_dir, l->items[i].storage_key);
        g->blobs++;
        if (stat(path, &st) == 0) {
            g->files++;
            g->bytes += st.st_size;
        }
    }
}

static int gc_blobs(struct gc *g, char *err, size_t errlen)
{
    char after[80] = "", scanned[80];

    for (;;) {
        struct db_gc_list l = { 0 };
        int rc;
        if (producer_stop) {
            errmsg_set(err, errlen, "interrupted");
            return -1;
        }
        if (db_gc_blobs_begin(g->db, g->dry_run, g->grace_ms, after, GC_BATCH, &l, scanned, sizeof scanned, err, errlen) != 0) {
            db_gc_list_release(&l);
            return -1;
        }
        rc = 0;
        if (g->dry_run)
            gc_blob_count(g, &l);
        else if (g->store != NULL)
            rc = gc_blob_batch_s3(g, &l, err, errlen);
        else
            rc = gc_blob_batch(g, &l, err, errlen);
        db_gc_list_release(&l);
        if (rc != 0)
            return -1;
        show_progress(g, 0);
        if (scanned[0] == '\0')
            return 0;
        snprintf(after, sizeof after, "%s", scanned);
    }
}

/* Step 3 for one shard folder (<store>/<aa>): files older than
 * STORE_IN_USE_S whose storage key no image_blobs row names. */
static int gc_shard(struct gc *g, const char *shard, char *err, size_t errlen)
{
    char dir[4200];
    char **keys = NULL;
    size_t n = 0, cap = 0;
    struct db_gc_list unknown = { 0 };
    DIR *d;
    struct dirent *e;
    time_t now = time(NULL);
    int rc = -1;

    snprintf(dir, sizeof dir, "%s/%s", g->cfg->storage_dir, shard);
    d = opendir(dir);
    if (d == NULL)
        return 0; /* no such shard: nothing stored there */
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode) || now - st.st_mtime <= STORE_IN_USE_S)
            continue;
        if (n == cap) {
            char **grown = realloc(keys, (cap = cap ? cap * 2 : 64) * sizeof *keys);
            if (grown == NULL)
                goto oom;
            keys = grown;
        }
        size_t len = strlen(shard) + strlen(e->d_name) + 2;
        if ((keys[n] = malloc(len)) == NULL)
            goto oom;
        snprintf(keys[n++], len, "%s/%s", shard, e->d_name);
    }
    if (db_gc_unknown_keys(g->db, (const char *const *)keys, n, &unknown, err, errlen) != 0 ||
        db_gc_keep_rendition_keys(g->db, &unknown, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < unknown.n; i++) {
        char trash[4400];
        long long size = 0;
        if (g->dry_run) {
            struct stat st;
            snprintf(trash, sizeof trash, "%s/%s", g->cfg->storage_dir, unknown.items[i].key);
            if (stat(trash, &st) == 0) {
                g->files++;
                g->bytes += st.st_size;
            }
        } else if (take_file(g, unknown.items[i].key, trash, sizeof trash, &size) == TAKE_TAKEN) {
            unlink(trash);
            g->files++;
            g->bytes += size;
        }
    }
    rc = 0;
    goto out;
oom:
    errmsg_set(err, errlen, "out of memory");
out:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    db_gc_list_release(&unknown);
    return rc;
}

/* Temporary files (downloads a crash cut short, another collector's
 * leftovers) older than STORE_IN_USE_S. Another collector's file
 * (gc-*.part) is judged by its ctime as well: it was renamed in just now
 * with the blob's old mtime, and may still have to go back. */
static void gc_tmp(struct gc *g)
{
    char dir[4200];
    DIR *d;
    struct dirent *e;
    time_t now = time(NULL);

    snprintf(dir, sizeof dir, "%s/.tmp", g->cfg->storage_dir);
    d = opendir(dir);
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode) || now - st.st_mtime <= STORE_IN_USE_S ||
            (strncmp(e->d_name, "gc-", 3) == 0 && now - st.st_ctime <= STORE_IN_USE_S))
            continue;
        if (g->dry_run || unlinkat(dirfd(d), e->d_name, 0) == 0) {
            g->files++;
            g->bytes += st.st_size;
        }
    }
    closedir(d);
}

/* A key of the store's form, <aa>/<sha256>.<ext> (lower-case hex, aa the
 * hash's first two digits): gc touches no other object under the prefix. */
static int is_store_key(const char *key)
{
    static const char hex[] = "0123456789abcdef";

    if (strlen(key) <= 3 + HASH_HEX_LEN + 1)
        return 0;
    return strspn(key, hex) == 2 && key[2] == '/' && strspn(key + 3, hex) == HASH_HEX_LEN &&
           key[3 + HASH_HEX_LEN] == '.' && strncmp(key, key + 3, 2) == 0 &&
           strchr(key + 3 + HASH_HEX_LEN + 1, '/') == NULL;
}

/* The size of the listed object under key: objs in listing order, and the
 * keys looked up in the same order, so the search starts at *from. */
static long long listed_size(const struct store_object *objs, size_t n, const char *key, size_t *from)
{
    for (size_t k = 0; k < n; k++) {
        size_t i = (*from + k) % n;
        if (strcmp(objs[i].key, key) == 0) {
            *from = i + 1;
            return objs[i].size;
        }
    }
    return 0;
}

/* Step 3 on S3, the m candidate keys of one page (objs): in a transaction
 * (not in a dry run), the content locks first, then the rows, then the
 * DELETEs of the objects no row names, then the commit that frees the
 * locks. */
static int gc_orphans_s3(struct gc *g, const struct store_object *objs, size_t n, const char **keys, size_t m,
                         char *err, size_t errlen)
{
    const char **shas = calloc(m + 1, sizeof *shas);
    unsigned char *locked = calloc(m + 1, 1);
    struct db_gc_list unknown = { 0 };
    size_t kept = 0, from = 0;
    int rc = -1;

    if (shas == NULL || locked == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < m; i++)
        shas[i] = keys[i] + 3;
    if (!g->dry_run && (db_gc_begin(g->db, err, errlen) != 0 ||
                        db_gc_try_store_locks(g->db, shas, m, locked, err, errlen) != 0))
        goto out;
    for (size_t i = 0; i < m; i++)
        if (g->dry_run || locked[i])
            keys[kept++] = keys[i];
    if (db_gc_unknown_keys(g->db, keys, kept, &unknown, err, errlen) != 0 ||
        db_gc_keep_rendition_keys(g->db, &unknown, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < unknown.n; i++) {
        if (!g->dry_run && store_delete(g->store, unknown.items[i].key, err, errlen) != 0)
            goto out;
        log_debug("event=gc_object_removed key=%s", unknown.items[i].key);
        g->files++;
        g->bytes += listed_size(objs, n, unknown.items[i].key, &from);
    }
    if (!g->dry_run && db_gc_commit(g->db, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        db_gc_abort(g->db);
    db_gc_list_release(&unknown);
    free(shas);
    free(locked);
    return rc;
}

/* store_list()'s callback: one page of the bucket's listing. */
static int gc_object_page(void *arg, const struct store_object *objs, size_t n, char *err, size_t errlen)
{
    struct gc *g = arg;
    const char **keys = calloc(n + 1, sizeof *keys);
    long long now = (long long)time(NULL);
    size_t m = 0;
    int rc;

    if (keys == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    if (producer_stop) {
        errmsg_set(err, errlen, "interrupted");
        free(keys);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (objs[i].mtime >= 0 && now - objs[i].mtime > g->in_use_s && is_store_key(objs[i].key))
            keys[m++] = objs[i].key;
    rc = gc_orphans_s3(g, objs, n, keys, m, err, errlen);
    free(keys);
    show_progress(g, 0);
    return rc;
}

static int gc_files(struct gc *g, char *err, size_t errlen)
{
    if (g->store != NULL)
        return store_list(g->store, gc_object_page, g, err, errlen);
    for (int i = 0; i < STORE_SHARDS; i++) {
        char shard[3];
        if (producer_stop) {
            errmsg_set(err, errlen, "interrupted");
            return -1;
        }
        snprintf(shard, sizeof shard, "%02x", i);
        if (gc_shard(g, shard, err, errlen) != 0)
            return -1;
        show_progress(g, 0);
    }
    gc_tmp(g);
    return 0;
}

/* Reads the arguments into g; -1 (printed) on a bad one. */
static int gc_args(struct gc *g, const struct config *cfg, int *quiet)
{
    struct command_args args;
    const char *grace;

    if (command_args_parse(cfg, ARG_DRY_RUN | ARG_GRACE | ARG_QUIET, 0, &args) != 0)
        return -1;
    grace = args.grace ? args.grace : GC_DEFAULT_GRACE;
    if (config_parse_duration(grace, &g->grace_ms) != 0) {
        producer_error("gc: --grace: not a duration: '%s' (e.g. 30d, 12h, 0)", grace);
        return -1;
    }
    g->dry_run = args.dry_run;
    *quiet = args.quiet;
    return 0;
}

/* gc moves files into <store>/.tmp: the folder must be a store (a worker
 * made .tmp) that this host may write. Run elsewhere, gc would drop blob
 * rows and leave their files behind. An S3 store is reached from any
 * host. */
static int gc_check_store(const struct config *cfg)
{
    char tmp[4200];

    if (store_is_s3_url(cfg->storage_url))
        return 0; /* the bucket is checked when it is opened */
    snprintf(tmp, sizeof tmp, "%s/.tmp", cfg->storage_dir);
    if (access(tmp, W_OK) != 0) {
        producer_error("gc: IMGCACHE_STORAGE_DIR (%s) is not an image store this host may write "
                       "(%s: %s): run gc where the workers' storage folder is mounted",
                       cfg->storage_dir, tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static int gc_open_kafka(struct gc *g, char *err, size_t errlen)
{
    if (kafka_producer_new(g->cfg, PRODUCER_NAME, &g->kp, err, errlen) != 0)
        return -1;
    return kafka_producer_prepare(g->kp, g->cfg->topic, GC_KAFKA_WAIT_MS, err, errlen);
}

int cmd_gc(const struct config *cfg)
{
    struct gc g = { .cfg = cfg, .in_use_s = STORE_IN_USE_S };
    char err[512];
    int quiet = 0, ok = 0;
    int rc = PRODUCER_EXIT_FAIL;

    if (gc_args(&g, cfg, &quiet) != 0)
        return PRODUCER_EXIT_USAGE;
    if (gc_check_store(cfg) != 0)
        return PRODUCER_EXIT_USAGE;
    if (producer_open_db(cfg, 1, &g.db) != 0)
        goto out;
    if (store_is_s3_url(cfg->storage_url) && store_open_config(cfg, &g.store, err, sizeof err) != 0) {
        producer_error("gc: %s", err);
        goto out;
    }
    /* Kafka first: a tombstone for every URL dropped, or nothing dropped */
    if (!g.dry_run && gc_open_kafka(&g, err, sizeof err) != 0) {
        producer_error("%s", err);
        goto out;
    }
    progress_start(&g.progress, "gc", "rows", quiet);
    log_info("event=gc_start grace_ms=%lld dry_run=%d", g.grace_ms, g.dry_run);
    if (gc_urls(&g, DB_GC_CACHED_IMAGES, &g.rows, err, sizeof err) != 0 ||
        gc_urls(&g, DB_GC_IMAGE_FAILURES, &g.failures, err, sizeof err) != 0 ||
        gc_blobs(&g, err, sizeof err) != 0 || gc_files(&g, err, sizeof err) != 0)
        producer_error("%s", err);
    else
        ok = 1;
    if (g.kp != NULL && kafka_producer_flush(g.kp, GC_FLUSH_TIMEOUT_MS, err, sizeof err) != 0) {
        producer_error("gc: tombstones not delivered: %s", err);
        ok = 0;
    }
    show_progress(&g, 1);
    progress_end(&g.progress);
    printf("rows=%lld failures=%lld blobs=%lld files=%lld bytes=%lld tombstones=%lld%s\n", g.rows, g.failures,
           g.blobs, g.files, g.bytes, g.tombstones, g.dry_run ? " dry_run=1" : "");
    fflush(stdout);
    if (ok)
        rc = PRODUCER_EXIT_OK;
out:
    if (g.kp != NULL)
        kafka_producer_free(g.kp);
    store_close(g.store);
    db_close(g.db);
    return rc;
}
