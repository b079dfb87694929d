/* Renditions in PostgreSQL (see db_render.h). */
#include "db_render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db_private.h"

/* presets as a JSON array of numbers ("[64,128]"), or NULL (out of memory). */
static char *presets_json(const int *presets, size_t n)
{
    json_t *a = json_array();
    char *text = NULL;

    for (size_t i = 0; a != NULL && i < n; i++)
        if (json_array_append_new(a, json_integer(presets[i])) != 0)
            goto out;
    if (a != NULL)
        text = json_dumps(a, JSON_COMPACT);
out:
    json_decref(a);
    return text;
}

/* Runs sql; NULL (message in err, "renditions: <what>: ...") unless the
 * result has status want; *gone = 1 on a foreign key violation (the blob
 * row is gone). The caller PQclear()s the result. */
static PGresult *run(struct db *db, const char *sql, int nparams, const char *const *params,
                     ExecStatusType want, const char *what, int *gone, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    const char *state, *msg;

    *gone = 0;
    if (PQresultStatus(res) == want)
        return res;
    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    *gone = state != NULL && strcmp(state, "23503") == 0;
    msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL || *msg == '\0')
        msg = PQerrorMessage(db->conn);
    errmsg_set(err, errlen, "renditions: %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    PQclear(res);
    return NULL;
}

static const char state_sql[] =
    "SELECT EXISTS (SELECT 1 FROM image_blobs WHERE sha256 = $1),"
    "       coalesce((SELECT permanent FROM render_failures WHERE source_sha256 = $1), false),"
    "       (SELECT coalesce(string_agg(p.i::text, ','), '')"
    "          FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS p(preset, i)"
    "         WHERE EXISTS (SELECT 1 FROM image_renditions r"
    "                       WHERE r.source_sha256 = $1 AND r.preset = p.preset::int))";

int db_render_state(struct db *db, const char *sha256, const int *presets, size_t n,
                    struct db_render_state *out, char *err, size_t errlen)
{
    char *list = presets_json(presets, n);
    const char *params[2] = { sha256, list };
    PGresult *res = NULL;
    int gone, rc = -1;

    memset(out, 0, sizeof *out);
    if (list == NULL || n > 64) {
        errmsg_set(err, errlen, "renditions: out of memory (or over 64 presets)");
        goto out;
    }
    res = run(db, state_sql, 2, params, PGRES_TUPLES_OK, "look-up", &gone, err, errlen);
    if (res == NULL)
        goto out;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        rc = DB_RENDER_GONE;
        goto out;
    }
    out->given_up = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    /* 1-based positions of the presets that have a row */
    for (const char *p = PQgetvalue(res, 0, 2); *p; p += strspn(p, ",")) {
        char *end;
        long i = strtol(p, &end, 10);
        if (i >= 1 && (size_t)i <= n)
            out->have |= 1ull << (i - 1);
        p = end;
    }
    rc = 0;
out:
    PQclear(res);
    free(list);
    return rc;
}

static const char attempt_sql[] =
    "INSERT INTO render_failures AS f (source_sha256, attempts, error_class)"
    " VALUES ($1, 1, 'started')"
    " ON CONFLICT (source_sha256) DO UPDATE SET attempts = f.attempts + 1, last_failed_at = now()"
    " RETURNING attempts";

int db_render_attempt(struct db *db, const char *sha256, int *attempts, char *err, size_t errlen)
{
    const char *params[1] = { sha256 };
    int gone;
    PGresult *res = run(db, attempt_sql, 1, params, PGRES_TUPLES_OK, "count the attempt", &gone, err,
                        errlen);

    if (res == NULL)
        return gone ? DB_RENDER_GONE : -1;
    *attempts = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

static const char give_up_sql[] =
    "INSERT INTO render_failures AS f (source_sha256, attempts, error_class, last_error, permanent)"
    " VALUES ($1, 1, $2, $3, true)"
    " ON CONFLICT (source_sha256) DO UPDATE SET error_class = $2, last_error = $3, permanent = true,"
    "     last_failed_at = now()";

int db_render_give_up(struct db *db, const char *sha256, const char *error_class, const char *message,
                      char *err, size_t errlen)
{
    const char *params[3] = { sha256, error_class, message };
    int gone;
    PGresult *res = run(db, give_up_sql, 3, params, PGRES_COMMAND_OK, "record the failure", &gone, err,
                        errlen);

    if (res == NULL)
        return gone ? DB_RENDER_GONE : -1;
    PQclear(res);
    return 0;
}

static const char record_sql[] =
    "WITH added AS ("
    "  INSERT INTO image_renditions (source_sha256, preset, sha256, storage_key, content_type,"
    "                                width, height, byte_size)"
    "  SELECT $1, r.preset, r.sha256, r.storage_key, r.content_type, r.width, r.height, r.byte_size"
    "  FROM jsonb_to_recordset($2::jsonb) AS r(preset int, sha256 text, storage_key text,"
    "       content_type text, width int, height int, byte_size bigint)"
    "  ON CONFLICT (source_sha256, preset) DO NOTHING)"
    " DELETE FROM render_failures WHERE source_sha256 = $1";

/* The rows as a JSON array of objects, or NULL (out of memory). */
static char *renditions_json(const struct db_rendition *r, size_t n)
{
    json_t *a = json_array();
    char *text = NULL;

    for (size_t i = 0; a != NULL && i < n; i++) {
        json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:i, s:i, s:I}", "preset", r[i].preset, "sha256",
                              r[i].sha256, "storage_key", r[i].storage_key, "content_type",
                              r[i].content_type, "width", r[i].width, "height", r[i].height, "byte_size",
                              (json_int_t)r[i].byte_size);
        if (json_array_append_new(a, o) != 0)
            goto out;
    }
    if (a != NULL)
        text = json_dumps(a, JSON_COMPACT);
out:
    json_decref(a);
    return text;
}

int db_render_record(struct db *db, const char *source_sha256, const struct db_rendition *r, size_t n,
                     char *err, size_t errlen)
{
    char *rows = renditions_json(r, n);
    const char *params[2] = { source_sha256, rows };
    PGresult *res = NULL;
    int gone, rc = -1;

    if (rows == NULL) {
        errmsg_set(err, errlen, "renditions: out of memory");
        goto out;
    }
    res = run(db, record_sql, 2, params, PGRES_COMMAND_OK, "record", &gone, err, errlen);
    if (res == NULL) {
        rc = gone ? DB_RENDER_GONE : -1;
        goto out;
    }
    rc = 0;
out:
    PQclear(res);
    free(rows);
    return rc;
}

void db_render_list_release(struct db_render_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].sha256);
        free(l->items[i].storage_key);
        free(l->items[i].content_type);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static const char missing_sql[] =
    "SELECT b.sha256, b.storage_key, b.content_type, b.byte_size FROM image_blobs b"
    " WHERE b.sha256 > $2"
    "   AND (SELECT count(*) FROM image_renditions r"
    "        WHERE r.source_sha256 = b.sha256"
    "          AND r.preset IN (SELECT p::int FROM jsonb_array_elements_text($1::jsonb) AS l(p)))"
    "       < jsonb_array_length($1::jsonb)"
    "   AND NOT EXISTS (SELECT 1 FROM render_failures f WHERE f.source_sha256 = b.sha256 AND f.permanent)"
    " ORDER BY b.sha256 LIMIT $3::int";

int db_render_missing(struct db *db, const int *presets, size_t n, const char *after, int limit,
                      struct db_render_list *out, char *err, size_t errlen)
{
    char *list = presets_json(presets, n);
    char lim[16];
    const char *params[3] = { list, after, lim };
    PGresult *res = NULL;
    int gone, rc = -1;
    size_t rows;

    snprintf(lim, sizeof lim, "%d", limit);
    if (list == NULL) {
        errmsg_set(err, errlen, "renditions: out of memory");
        goto out;
    }
    res = run(db, missing_sql, 3, params, PGRES_TUPLES_OK, "blobs missing a rendition", &gone, err, errlen);
    if (res == NULL)
        goto out;
    rows = (size_t)PQntuples(res);
    out->items = calloc(rows + 1, sizeof *out->items);
    if (out->items == NULL)
        goto oom;
    for (size_t i = 0; i < rows; i++, out->n++) {
        struct db_render_blob *b = &out->items[i];
        b->sha256 = strdup(PQgetvalue(res, (int)i, 0));
        b->storage_key = strdup(PQgetvalue(res, (int)i, 1));
        b->content_type = strdup(PQgetvalue(res, (int)i, 2));
        b->byte_size = strtoll(PQgetvalue(res, (int)i, 3), NULL, 10);
        if (b->sha256 == NULL || b->storage_key == NULL || b->content_type == NULL) {
            out->n++;
            goto oom;
        }
    }
    rc = 0;
    goto out;
oom:
    errmsg_set(err, errlen, "renditions: out of memory");
out:
    PQclear(res);
    free(list);
    return rc;
}
