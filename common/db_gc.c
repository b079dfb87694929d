#include "db_gc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "db_private.h"
#include "errmsg.h"
#include "log.h"

/* True when a chat or a participant references the URL `u` now. */
#define REFERENCED(u)                                                               \
    "(EXISTS (SELECT 1 FROM chats c WHERE c.img_source_url = " u ")"                \
    " OR EXISTS (SELECT 1 FROM chat_participants p WHERE p.img_source_url = " u "))"

/* $1 grace in ms, $2 after, $3 limit; %s: the table, twice, then the lock */
static const char candidates_fmt[] =
    "SELECT t.source_url FROM %s t"
    " WHERE t.source_url > $2 AND t.unreferenced_at < now() - $1::bigint * interval '1 millisecond'"
    "   AND NOT " REFERENCED("t.source_url")
    " ORDER BY t.source_url LIMIT $3::int %s";

/* $1 the locked URLs (JSON array); a new snapshot: references committed
 * since the candidates were read keep their row */
static const char delete_fmt[] =
    "DELETE FROM %s t USING jsonb_array_elements_text($1::jsonb) AS l(url)"
    " WHERE t.source_url = l.url AND NOT " REFERENCED("t.source_url")
    " RETURNING t.source_url";

/* g: the parameter holding the grace in ms for a dry run (rows step 1
 * would remove do not count), -1 otherwise */
#define BLOB_UNREFERENCED(g)                                                         \
    "NOT EXISTS (SELECT 1 FROM cached_images ci WHERE ci.sha256 = b.sha256"          \
    " AND (" g "::bigint < 0 OR ci.unreferenced_at >= now() - " g "::bigint * interval '1 millisecond'" \
    "      OR " REFERENCED("ci.source_url") "))"

static const char blob_candidates_sql[] =
    "SELECT b.sha256 FROM image_blobs b"
    " WHERE b.sha256 > $1 AND " BLOB_UNREFERENCED("$3")
    " ORDER BY b.sha256 LIMIT $2::int";

static const char blob_recheck_sql[] =
    "SELECT b.sha256, b.storage_key, b.byte_size"
    " FROM image_blobs b JOIN jsonb_array_elements_text($1::jsonb) AS l(sha) ON b.sha256 = l.sha"
    " WHERE " BLOB_UNREFERENCED("$2")
    " ORDER BY b.sha256";

static const char blob_delete_sql[] =
    "DELETE FROM image_blobs b USING jsonb_array_elements_text($1::jsonb) AS l(sha)"
    " WHERE b.sha256 = l.sha";

static const char unknown_keys_sql[] =
    "SELECT k FROM jsonb_array_elements_text($1::jsonb) AS l(k)"
    " WHERE NOT EXISTS (SELECT 1 FROM image_blobs b WHERE b.storage_key = l.k)";

void db_gc_list_release(struct db_gc_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].key);
        free(l->items[i].storage_key);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* "gc: <what>: <server message>" */
static void set_err(struct db *db, const PGresult *res, const char *what, char *err, size_t errlen)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (msg == NULL || *msg == '\0')
        msg = PQerrorMessage(db->conn);
    errmsg_set(err, errlen, "gc: %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
}

/* Runs sql with nparams text parameters; NULL (message in err) unless the
 * result has status want. The caller PQclear()s it. */
static PGresult *run(struct db *db, const char *sql, int nparams, const char *const *params,
                     ExecStatusType want, const char *what, char *err, size_t errlen)
{
    PGresult *res = nparams > 0 ? PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0)
                                : PQexec(db->conn, sql);

    if (PQresultStatus(res) != want) {
        set_err(db, res, what, err, errlen);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int run_cmd(struct db *db, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = run(db, sql, 0, NULL, PGRES_COMMAND_OK, what, err, errlen);

    PQclear(res);
    return res ? 0 : -1;
}

static int run_lock(struct db *db, char *err, size_t errlen)
{
    PGresult *res = run(db, "SELECT pg_advisory_xact_lock(" DB_GC_LOCK ")", 0, NULL, PGRES_TUPLES_OK,
                        "take the import lock", err, errlen);

    PQclear(res);
    return res ? 0 : -1;
}

void db_gc_abort(struct db *db)
{
    PGTransactionStatusType ts = PQtransactionStatus(db->conn);

    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(db->conn, "ROLLBACK"));
}

/* Appends column 0 (and 1, 2 when with_blob) of every row of res to out. */
static int take_rows(const PGresult *res, int with_blob, struct db_gc_list *out, char *err, size_t errlen)
{
    size_t rows = (size_t)PQntuples(res);
    struct db_gc_item *items = realloc(out->items, (out->n + rows + 1) * sizeof *items);

    if (items == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    out->items = items;
    for (size_t r = 0; r < rows; r++) {
        struct db_gc_item *it = &out->items[out->n];
        memset(it, 0, sizeof *it);
        it->key = strdup(PQgetvalue(res, (int)r, 0));
        if (with_blob) {
            it->storage_key = strdup(PQgetvalue(res, (int)r, 1));
            it->bytes = strtoll(PQgetvalue(res, (int)r, 2), NULL, 10);
        }
        out->n++;
        if (it->key == NULL || (with_blob && it->storage_key == NULL)) {
            errmsg_set(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* A JSON array of the n strings (the caller frees it); NULL when out of memory. */
static char *strings_json(const char *const *s, size_t n)
{
    json_t *arr = json_array();
    char *text = NULL;

    for (size_t i = 0; arr != NULL && i < n; i++)
        if (json_array_append_new(arr, json_string(s[i])) != 0)
            goto out;
    if (arr != NULL)
        text = json_dumps(arr, JSON_COMPACT);
out:
    json_decref(arr);
    return text;
}

/* Runs sql with the n strings, as a JSON array, in $1; NULL with err set on
 * a failure. */
static PGresult *run_with_list(struct db *db, const char *sql, const char *const *s, size_t n,
                               ExecStatusType expect, const char *what, char *err, size_t errlen)
{
    char *list = strings_json(s, n);
    const char *params[1] = { list };
    PGresult *res;

    if (list == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return NULL;
    }
    res = run(db, sql, 1, params, expect, what, err, errlen);
    free(list);
    return res;
}

/* Column 0 of every row as a JSON array of strings (the caller frees it),
 * and the last one into scanned ("" when none). */
static char *column_json(const PGresult *res, char *scanned, size_t scannedlen, char *err, size_t errlen)
{
    int rows = PQntuples(res);
    const char **col = calloc((size_t)rows + 1, sizeof *col);
    char *text = NULL;

    scanned[0] = '\0';
    for (int r = 0; col != NULL && r < rows; r++)
        col[r] = PQgetvalue(res, r, 0);
    if (col != NULL)
        text = strings_json(col, (size_t)rows);
    if (text == NULL)
        errmsg_set(err, errlen, "out of memory");
    else if (rows > 0)
        snprintf(scanned, scannedlen, "%s", col[rows - 1]);
    free(col);
    return text;
}

int db_gc_urls(struct db *db, enum db_gc_table table, long long grace_ms, int dry_run,
               const char *after, int limit, struct db_gc_list *out,
               char *scanned, size_t scannedlen, char *err, size_t errlen)
{
    const char *name = table == DB_GC_CACHED_IMAGES ? "cached_images" : "image_failures";
    char sql[1024], grace[32], lim[16];
    const char *params[3];
    PGresult *res = NULL;
    char *locked = NULL;
    int rc = -1;

    scanned[0] = '\0';
    snprintf(grace, sizeof grace, "%lld", grace_ms);
    snprintf(lim, sizeof lim, "%d", limit);
    params[0] = grace;
    params[1] = after;
    params[2] = lim;
    snprintf(sql, sizeof sql, candidates_fmt, name, dry_run ? "" : "FOR UPDATE SKIP LOCKED");
    /* exclusive: no import or sync batch is between its writes and its
     * commit while this one looks up references and removes (DB_GC_LOCK) */
    if (!dry_run && run_cmd(db, "BEGIN", "begin", err, errlen) != 0)
        goto out;
    if (!dry_run && run_lock(db, err, errlen) != 0)
        goto out;
    res = run(db, sql, 3, params, PGRES_TUPLES_OK, name, err, errlen);
    if (res == NULL)
        goto out;
    if (dry_run) {
        if (PQntuples(res) > 0)
            snprintf(scanned, scannedlen, "%s", PQgetvalue(res, PQntuples(res) - 1, 0));
        rc = take_rows(res, 0, out, err, errlen);
        goto out;
    }
    locked = column_json(res, scanned, scannedlen, err, errlen);
    if (locked == NULL)
        goto out;
    PQclear(res);
    snprintf(sql, sizeof sql, delete_fmt, name);
    params[0] = locked;
    res = run(db, sql, 1, params, PGRES_TUPLES_OK, name, err, errlen);
    if (res == NULL || take_rows(res, 0, out, err, errlen) != 0)
        goto out;
    if (run_cmd(db, "COMMIT", "commit", err, errlen) != 0)
        goto out;
    rc = 0;
out:
    PQclear(res);
    free(locked);
    if (rc != 0) {
        db_gc_abort(db);
        if (!dry_run)
            db_gc_list_release(out); /* rolled back: nothing was removed */
    }
    return rc;
}

int db_gc_blobs_begin(struct db *db, int dry_run, long long grace_ms, const char *after, int limit,
                      struct db_gc_list *out, char *scanned, size_t scannedlen, char *err, size_t errlen)
{
    char sql[sizeof blob_candidates_sql + 32], lim[16], grace[32];
    const char *params[3];
    PGresult *res = NULL;
    char *locked = NULL;
    int rc = -1;

    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(grace, sizeof grace, "%lld", dry_run ? grace_ms : -1LL);
    params[0] = after;
    params[1] = lim;
    params[2] = grace;
    snprintf(sql, sizeof sql, "%s%s", blob_candidates_sql, dry_run ? "" : " FOR UPDATE SKIP LOCKED");
    if (run_cmd(db, "BEGIN", "begin", err, errlen) != 0)
        goto out;
    res = run(db, sql, 3, params, PGRES_TUPLES_OK, "image_blobs", err, errlen);
    if (res == NULL)
        goto out;
    locked = column_json(res, scanned, scannedlen, err, errlen);
    if (locked == NULL)
        goto out;
    PQclear(res);
    params[0] = locked;
    params[1] = grace;
    res = run(db, blob_recheck_sql, 2, params, PGRES_TUPLES_OK, "image_blobs", err, errlen);
    if (res == NULL || take_rows(res, 1, out, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    PQclear(res);
    free(locked);
    if (rc != 0 || dry_run)
        db_gc_abort(db);
    return rc;
}

int db_gc_blobs_finish(struct db *db, const char *const *sha256, size_t n, char *err, size_t errlen)
{
    PGresult *res = run_with_list(db, blob_delete_sql, sha256, n, PGRES_COMMAND_OK, "image_blobs", err, errlen);
    int rc = -1;

    if (res == NULL)
        goto out;
    if (run_cmd(db, "COMMIT", "commit", err, errlen) != 0)
        goto out;
    rc = 0;
out:
    PQclear(res);
    if (rc != 0)
        db_gc_abort(db);
    return rc;
}

int db_gc_unknown_keys(struct db *db, const char *const *keys, size_t n, struct db_gc_list *out,
                       char *err, size_t errlen)
{
    PGresult *res;
    int rc;

    if (n == 0)
        return 0;
    res = run_with_list(db, unknown_keys_sql, keys, n, PGRES_TUPLES_OK, "storage keys", err, errlen);
    rc = res ? take_rows(res, 0, out, err, errlen) : -1;
    PQclear(res);
    return rc;
}

/* 1-based positions of the keys a rendition row names */
static const char rendition_keys_sql[] =
    "SELECT l.i FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS l(k, i)"
    " WHERE EXISTS (SELECT 1 FROM image_renditions r WHERE r.storage_key = l.k)";

int db_gc_keep_rendition_keys(struct db *db, struct db_gc_list *l, char *err, size_t errlen)
{
    const char **keys;
    PGresult *res = NULL;
    size_t kept = 0;
    int rc = -1;

    if (l->n == 0)
        return 0;
    keys = calloc(l->n, sizeof *keys);
    for (size_t i = 0; keys != NULL && i < l->n; i++)
        keys[i] = l->items[i].key;
    if (keys == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    res = run_with_list(db, rendition_keys_sql, keys, l->n, PGRES_TUPLES_OK, "rendition keys", err, errlen);
    if (res == NULL)
        goto out;
    /* keys[] is reused as the marks of the named keys */
    memset(keys, 0, l->n * sizeof *keys);
    for (int r = 0; r < PQntuples(res); r++) {
        long pos = strtol(PQgetvalue(res, r, 0), NULL, 10);
        if (pos >= 1 && (size_t)pos <= l->n)
            keys[pos - 1] = "";
    }
    for (size_t i = 0; i < l->n; i++) {
        if (keys[i] != NULL) {
            free(l->items[i].key);
            free(l->items[i].storage_key);
            continue;
        }
        l->items[kept++] = l->items[i];
    }
    l->n = kept;
    rc = 0;
out:
    PQclear(res);
    free(keys);
    return rc;
}

/* the distinct keys of $1 (a JSON array of hashes), sorted */
#define STORE_LOCK_KEYS                                                                       \
    "(SELECT DISTINCT ('x' || substr(l.s, 1, 8))::bit(32)::int AS k"                          \
    "  FROM jsonb_array_elements_text($1::jsonb) AS l(s) ORDER BY k) q"

static int store_locks(struct db *db, const char *sql, const char *const *sha256, size_t n, char *err,
                       size_t errlen)
{
    PGresult *res;

    if (n == 0)
        return 0;
    res = run_with_list(db, sql, sha256, n, PGRES_TUPLES_OK, "content locks", err, errlen);
    PQclear(res);
    return res ? 0 : -1;
}

int db_store_lock_shared(struct db *db, const char *const *sha256, size_t n, char *err, size_t errlen)
{
    return store_locks(db, "SELECT count(pg_advisory_lock_shared(" DB_STORE_LOCK_NS ", q.k)) FROM " STORE_LOCK_KEYS,
                       sha256, n, err, errlen);
}

void db_store_unlock_shared(struct db *db, const char *const *sha256, size_t n)
{
    char err[200];

    /* a lost connection released them already */
    if (store_locks(db, "SELECT count(pg_advisory_unlock_shared(" DB_STORE_LOCK_NS ", q.k)) FROM " STORE_LOCK_KEYS,
                    sha256, n, err, sizeof err) != 0)
        log_warn("event=store_unlock_failed error=\"%s\"", err);
}

/* 1-based positions of the hashes whose lock gc now holds */
static const char try_store_locks_sql[] =
    "SELECT l.i FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS l(s, i)"
    " WHERE pg_try_advisory_xact_lock(" DB_STORE_LOCK_KEY("l.s") ")";

int db_gc_try_store_locks(struct db *db, const char *const *sha256, size_t n, unsigned char *locked,
                          char *err, size_t errlen)
{
    PGresult *res;

    memset(locked, 0, n);
    if (n == 0)
        return 0;
    res = run_with_list(db, try_store_locks_sql, sha256, n, PGRES_TUPLES_OK, "content locks", err, errlen);
    for (int r = 0; res != NULL && r < PQntuples(res); r++) {
        long pos = strtol(PQgetvalue(res, r, 0), NULL, 10);
        if (pos >= 1 && (size_t)pos <= n)
            locked[pos - 1] = 1;
    }
    PQclear(res);
    return res ? 0 : -1;
}

int db_gc_begin(struct db *db, char *err, size_t errlen)
{
    return run_cmd(db, "BEGIN", "begin", err, errlen);
}

int db_gc_commit(struct db *db, char *err, size_t errlen)
{
    if (run_cmd(db, "COMMIT", "commit", err, errlen) != 0) {
        db_gc_abort(db);
        return -1;
    }
    return 0;
}
