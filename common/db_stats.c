#include "db_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db_private.h"
#include "errmsg.h"

/* Totals. min(refreshed_at) reads one entry of cached_images_refreshed_at_idx
 * (migration 003); the counts and sums read each table once. */
static const char totals_sql[] =
    "SELECT (SELECT count(*) FROM chats),"
    "       (SELECT count(*) FROM chat_participants),"
    "       ci.n, ci.bytes, b.n, b.bytes,"
    "       (SELECT to_char(min(refreshed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    "        FROM cached_images)"
    " FROM (SELECT count(*) AS n, coalesce(sum(byte_size), 0) AS bytes FROM cached_images) ci,"
    "      (SELECT count(*) AS n, coalesce(sum(byte_size), 0) AS bytes FROM image_blobs) b";

/* Avatar coverage by network: chat_avatars decides cached/contact/initials;
 * its name columns are not read, so PostgreSQL does not compute them. */
static const char coverage_sql[] =
    "SELECT c.network,"
    "       count(*) FILTER (WHERE a.image_source = 'cached'),"
    "       count(*) FILTER (WHERE a.image_source = 'contact'),"
    "       count(*) FILTER (WHERE a.image_source = 'initials')"
    " FROM chat_avatars a JOIN chats c ON c.chat_id = a.chat_id"
    " GROUP BY c.network ORDER BY c.network NULLS LAST";

/* Failures by class (image_failures_class_idx, migration 003). */
static const char failures_sql[] =
    "SELECT error_class, count(*) FILTER (WHERE permanent), count(*) FILTER (WHERE NOT permanent)"
    " FROM image_failures GROUP BY error_class ORDER BY error_class";

/* Renditions: rows, blobs lacking one of the presets ($1) as
 * `renditions backfill` counts them (given-up blobs apart), given-up
 * renders. */
static const char renditions_sql[] =
    "SELECT (SELECT count(*) FROM image_renditions),"
    "       (SELECT count(*) FROM image_blobs b"
    "        WHERE (SELECT count(*) FROM image_renditions r"
    "               WHERE r.source_sha256 = b.sha256 AND r.preset = ANY ($1::int[])) < cardinality($1::int[])"
    "          AND NOT EXISTS (SELECT 1 FROM render_failures f WHERE f.source_sha256 = b.sha256 AND f.permanent)),"
    "       (SELECT count(*) FROM render_failures WHERE permanent)";

static long long number(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Runs a query (with n text parameters) that returns rows; NULL with
 * "PostgreSQL (DATABASE_URL): <what>: <message>". */
static PGresult *query_params(struct db *db, const char *sql, int n, const char *const *params, const char *what,
                              char *err, size_t errlen)
{
    PGresult *res = n > 0 ? PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0) : PQexec(db->conn, sql);
    const char *msg;

    if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
        return res;
    msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (msg == NULL)
        msg = PQerrorMessage(db->conn);
    errmsg_set(err, errlen, "PostgreSQL (DATABASE_URL): %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    PQclear(res);
    return NULL;
}

static PGresult *query(struct db *db, const char *sql, const char *what, char *err, size_t errlen)
{
    return query_params(db, sql, 0, NULL, what, err, errlen);
}

static int read_renditions(struct db *db, const int *presets, size_t n, struct db_stats *s, char *err,
                           size_t errlen)
{
    char array[CONFIG_RENDITIONS_MAX * 8 + 3] = "{";
    const char *params[1] = { array };
    PGresult *res;
    size_t len = 1;

    for (size_t i = 0; i < n && i < CONFIG_RENDITIONS_MAX; i++)
        len += (size_t)snprintf(array + len, sizeof array - len, "%s%d", i ? "," : "", presets[i]);
    snprintf(array + len, sizeof array - len, "}");
    res = query_params(db, renditions_sql, 1, params, "counting renditions", err, errlen);
    if (res == NULL)
        return -1;
    s->renditions = number(res, 0, 0);
    s->renditions_missing = number(res, 0, 1);
    s->renders_given_up = number(res, 0, 2);
    PQclear(res);
    return 0;
}

static int read_totals(struct db *db, struct db_stats *s, char *err, size_t errlen)
{
    PGresult *res = query(db, totals_sql, "counting chats and images", err, errlen);

    if (res == NULL)
        return -1;
    s->chats = number(res, 0, 0);
    s->participants = number(res, 0, 1);
    s->cached_images = number(res, 0, 2);
    s->url_bytes = number(res, 0, 3);
    s->blobs = number(res, 0, 4);
    s->stored_bytes = number(res, 0, 5);
    if (!PQgetisnull(res, 0, 6))
        snprintf(s->oldest_refreshed_at, sizeof s->oldest_refreshed_at, "%s", PQgetvalue(res, 0, 6));
    PQclear(res);
    return 0;
}

static int read_coverage(struct db *db, struct db_stats *s, char *err, size_t errlen)
{
    PGresult *res = query(db, coverage_sql, "reading avatar coverage", err, errlen);
    int rc = -1;

    if (res == NULL)
        return -1;
    s->networks = calloc((size_t)PQntuples(res) + 1, sizeof *s->networks);
    if (s->networks == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        struct db_stats_network *n = &s->networks[s->n_networks++];
        if (!PQgetisnull(res, r, 0) && (n->network = strdup(PQgetvalue(res, r, 0))) == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        n->cached = number(res, r, 1);
        n->contact = number(res, r, 2);
        n->initials = number(res, r, 3);
        n->chats = n->cached + n->contact + n->initials;
        s->avatars_cached += n->cached;
        s->avatars_contact += n->contact;
        s->avatars_initials += n->initials;
    }
    rc = 0;
out:
    PQclear(res);
    return rc;
}

static int read_failures(struct db *db, struct db_stats *s, char *err, size_t errlen)
{
    PGresult *res = query(db, failures_sql, "counting failures", err, errlen);
    int rc = -1;

    if (res == NULL)
        return -1;
    s->failures = calloc((size_t)PQntuples(res) + 1, sizeof *s->failures);
    if (s->failures == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        struct db_stats_failure *f = &s->failures[s->n_failures++];
        f->error_class = strdup(PQgetvalue(res, r, 0));
        if (f->error_class == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        f->permanent = number(res, r, 1);
        f->pending_retry = number(res, r, 2);
        s->failures_permanent += f->permanent;
        s->failures_pending_retry += f->pending_retry;
    }
    rc = 0;
out:
    PQclear(res);
    return rc;
}

int db_stats_read(struct db *db, const int *presets, size_t n_presets, struct db_stats *out, char *err,
                  size_t errlen)
{
    PGresult *res;
    int rc = -1;

    memset(out, 0, sizeof *out);
    /* work_mem: the coverage query hashes every chat and cached image; at
     * the default 4 MB a million of them spill to disk in 16 batches (1.5 s
     * of the 6 s measured on a million images). jit: its compilation
     * costs more than it saves on these plans. Both for this transaction
     * only. */
    res = query(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
                    " SET LOCAL work_mem = '64MB'; SET LOCAL jit = off",
                "starting a transaction", err, errlen);
    if (res == NULL)
        return -1;
    PQclear(res);
    if (read_totals(db, out, err, errlen) != 0 || read_coverage(db, out, err, errlen) != 0 ||
        read_failures(db, out, err, errlen) != 0 || read_renditions(db, presets, n_presets, out, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    /* read only: ending it either way changes nothing */
    PQclear(PQexec(db->conn, "ROLLBACK"));
    return rc;
}

void db_stats_release(struct db_stats *s)
{
    for (size_t i = 0; i < s->n_networks; i++)
        free(s->networks[i].network);
    for (size_t i = 0; i < s->n_failures; i++)
        free(s->failures[i].error_class);
    free(s->networks);
    free(s->failures);
    memset(s, 0, sizeof *s);
}
