#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "db_private.h"
#include "errmsg.h"
#include "log.h"
#include "migrations.h"

/* Key of the advisory lock that serializes migrations ("imgcach"). */
#define DB_MIGRATE_LOCK "31093368184218472"
/* Rows per FETCH of db_each_uncached's cursor. */
#define DB_FETCH_ROWS "1000"

/* Copies the first line of msg (libpq messages end in "\n" and may carry a
 * second line of detail) after prefix into err, with every occurrence of
 * secret (may be NULL) replaced by "***". */
static void set_err_line_redacted(char *err, size_t errlen, const char *prefix, const char *msg,
                                  const char *secret)
{
    size_t len, secret_len = secret ? strlen(secret) : 0;
    size_t used;

    if (msg == NULL || *msg == '\0')
        msg = "unknown error";
    len = strcspn(msg, "\r\n");
    errmsg_set(err, errlen, "%s", prefix);
    used = strlen(err);
    for (size_t i = 0; i < len && used + 1 < errlen;) {
        if (secret_len > 0 && len - i >= secret_len && memcmp(msg + i, secret, secret_len) == 0) {
            errmsg_set(err + used, errlen - used, "***");
            used = strlen(err);
            i += secret_len;
        } else {
            err[used++] = msg[i++];
            err[used] = '\0';
        }
    }
}

static void set_err_line(char *err, size_t errlen, const char *prefix, const char *msg)
{
    set_err_line_redacted(err, errlen, prefix, msg, NULL);
}

/* A connection's error message, its password (from the conninfo,
 * PGPASSWORD or the password file) redacted: libpq is not known to print
 * it, and this keeps it so. */
static void set_conn_err(PGconn *conn, const char *prefix, char *err, size_t errlen)
{
    set_err_line_redacted(err, errlen, prefix, PQerrorMessage(conn), PQpass(conn));
}

/* "<what>: <primary message>" for a failed result (res may be NULL). */
static void set_pg_err(struct db *db, const PGresult *res, const char *what, char *err, size_t errlen)
{
    const char *msg = NULL;
    char prefix[128];

    if (res)
        msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(prefix, sizeof prefix, "%s: ", what);
    if (msg == NULL || *msg == '\0')
        set_conn_err(db->conn, prefix, err, errlen);
    else
        set_err_line(err, errlen, prefix, msg);
}

/* 1 when s (a port option: "5432" or "5432,5433" for several hosts) is
 * comma-separated numbers or empty parts. */
static int ports_are_numbers(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s != ',' && *s != ' ' && (*s < '0' || *s > '9'))
            return 0;
    return 1;
}

int db_conninfo_check(const char *conninfo, char *err, size_t errlen)
{
    static const char url_hint[] = "percent-encode the password in a URL: % as %25, / as %2F, @ as %40, "
                                   "space as %20";
    static const char keyword_hint[] = "quote a value with spaces: password='a b', \\' and \\\\ inside";
    static const char *const syntax[] = { "=", ":", "/", "]", NULL };
    PQconninfoOption *opts = NULL;
    char *perr = NULL;
    char redacted[256];
    const char *user = NULL, *dbname = NULL, *hint;
    int is_uri, rc = -1;

    if (conninfo == NULL || conninfo[0] == '\0')
        return 0; /* libpq defaults and PG* variables */
    is_uri = strncmp(conninfo, "postgresql://", 13) == 0 || strncmp(conninfo, "postgres://", 11) == 0;
    hint = is_uri ? url_hint : keyword_hint;
    opts = PQconninfoParse(conninfo, &perr);
    if (opts == NULL) {
        if (perr == NULL) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
        /* its quoted pieces are text of the conninfo, perhaps of the
         * password; the syntax characters its messages name stay */
        errmsg_redact_quoted(redacted, sizeof redacted, perr, syntax);
        errmsg_set(err, errlen, "DATABASE_URL: not a valid %s: %s (values not shown; %s)",
                   is_uri ? "URL" : "key=value conninfo", redacted, hint);
        goto out;
    }
    for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || o->val[0] == '\0')
            continue;
        if (strcmp(o->keyword, "user") == 0)
            user = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            dbname = o->val;
        else if (strcmp(o->keyword, "host") == 0 && strchr(o->val, '@') != NULL) {
            errmsg_set(err, errlen, "DATABASE_URL: the host holds an '@' (not shown; %s)", url_hint);
            goto out;
        } else if (strcmp(o->keyword, "port") == 0 && !ports_are_numbers(o->val)) {
            errmsg_set(err, errlen, "DATABASE_URL: the port is not a number (not shown; %s)", hint);
            goto out;
        }
    }
    /* postgresql://u:12/pw@host/db: libpq reads host u, port 12 and
     * database "pw@host/db", no user */
    if (is_uri && user == NULL && dbname != NULL && strchr(dbname, '@') != NULL) {
        errmsg_set(err, errlen, "DATABASE_URL: the database name holds an '@' and there is no user "
                   "(not shown; %s)", url_hint);
        goto out;
    }
    rc = 0;
out:
    PQfreemem(perr);
    PQconninfoFree(opts);
    return rc;
}

/* Runs one statement without parameters that returns no rows. */
static int exec_cmd(struct db *db, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(db->conn, sql);
    int rc = -1;

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_pg_err(db, res, what, err, errlen);
        goto out;
    }
    rc = 0;
out:
    PQclear(res);
    return rc;
}

/* Ends a transaction left open by an error path; the original error stays
 * in err. Nothing to do outside a transaction or on a dead connection. */
static void rollback_if_open(struct db *db)
{
    PGTransactionStatusType ts = PQtransactionStatus(db->conn);

    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(db->conn, "ROLLBACK"));
}

/* Server notices ("relation ... already exists, skipping") go to the debug
 * log instead of libpq's default, stderr. */
static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    log_debug("event=pg_notice message=\"%.*s\"", (int)strcspn(message, "\r\n"), message);
}

int db_connect(const char *conninfo, struct db **out, char *err, size_t errlen)
{
    /* dbname with expand_dbname = 1 takes a keyword string or a URI; an
     * empty value is ignored, so "" means libpq defaults and PG* variables.
     * fallback_application_name only applies when the conninfo (or
     * PGAPPNAME) does not name one. */
    const char *const keys[] = { "dbname", "fallback_application_name", NULL };
    const char *const vals[] = { conninfo ? conninfo : "", "imgcache", NULL };
    struct db *db = calloc(1, sizeof *db);
    int rc = -1;

    *out = NULL;
    if (db == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    if (db_conninfo_check(conninfo, err, errlen) != 0)
        goto out;
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (db->conn == NULL) {
        errmsg_set(err, errlen, "cannot connect to PostgreSQL: out of memory");
        goto out;
    }
    /* the conninfo (which may hold the password) is never printed */
    if (PQstatus(db->conn) != CONNECTION_OK) {
        set_conn_err(db->conn, "cannot connect to PostgreSQL: ", err, errlen);
        goto out;
    }
    PQsetNoticeProcessor(db->conn, notice_to_log, NULL);
    /* JSON parameters are UTF-8 whatever PGCLIENTENCODING says */
    if (PQsetClientEncoding(db->conn, "UTF8") != 0) {
        set_conn_err(db->conn, "cannot set client encoding UTF8: ", err, errlen);
        goto out;
    }
    *out = db;
    db = NULL;
    rc = 0;
out:
    db_close(db);
    return rc;
}

void db_close(struct db *db)
{
    if (db == NULL)
        return;
    PQfinish(db->conn);
    free(db);
}

int db_reset(struct db *db, char *err, size_t errlen)
{
    PQreset(db->conn);
    if (PQstatus(db->conn) != CONNECTION_OK) {
        set_conn_err(db->conn, "cannot reconnect to PostgreSQL: ", err, errlen);
        return -1;
    }
    if (PQsetClientEncoding(db->conn, "UTF8") != 0) {
        set_conn_err(db->conn, "cannot set client encoding UTF8: ", err, errlen);
        return -1;
    }
    return 0;
}

int db_ping(struct db *db, char *err, size_t errlen)
{
    /* an empty query: one round trip, no parsing, no plan */
    PGresult *res = PQexec(db->conn, "");
    int rc = 0;

    if (PQresultStatus(res) != PGRES_EMPTY_QUERY) {
        set_pg_err(db, res, "ping", err, errlen);
        rc = -1;
    }
    PQclear(res);
    return rc;
}

int db_ok(const struct db *db)
{
    return db != NULL && db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK;
}

int db_expected_version(void)
{
    return migrations_count > 0 ? migrations[migrations_count - 1].version : 0;
}

/* The newest migration applied with every one before it, 0 when none (or
 * no bookkeeping table): a database that missed one in the middle (it was
 * migrated by a build that did not have it yet) is behind, and `migrate`
 * applies what it lacks. One newer than this program is that newest
 * version, so that both refuse it. */
static const char current_version_sql[] =
    /* newer than this program ($1): that newest version, to be refused */
    "SELECT CASE WHEN max(version) > $1::int THEN max(version)"
    "            ELSE coalesce((SELECT min(g.v) - 1"
    "                           FROM generate_series(1, max(version)) g(v)"
    "                           WHERE NOT EXISTS (SELECT 1 FROM imgcache_schema_migrations m"
    "                                             WHERE m.version = g.v)),"
    "                          max(version), 0)"
    "       END"
    " FROM imgcache_schema_migrations";

static int current_version(struct db *db, int *version, char *err, size_t errlen)
{
    const char *params[1];
    char expected[16];
    PGresult *res = NULL;
    int rc = -1;

    res = PQexec(db->conn, "SELECT to_regclass('imgcache_schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        set_pg_err(db, res, "read schema version", err, errlen);
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        *version = 0;
        rc = 0;
        goto out;
    }
    PQclear(res);
    snprintf(expected, sizeof expected, "%d", db_expected_version());
    params[0] = expected;
    res = PQexecParams(db->conn, current_version_sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        set_pg_err(db, res, "read schema version", err, errlen);
        goto out;
    }
    *version = atoi(PQgetvalue(res, 0, 0));
    rc = 0;
out:
    PQclear(res);
    return rc;
}

static void set_version_err(int have, int want, char *err, size_t errlen)
{
    if (have > want)
        errmsg_set(err, errlen,
                   "database schema is at version %d, which is newer than this program "
                   "(it needs %d): upgrade imgcache", have, want);
    else
        errmsg_set(err, errlen,
                   "database schema is at version %d, this program needs %d: "
                   "run `imgcache-producer migrate`", have, want);
}

int db_check_schema(struct db *db, char *err, size_t errlen)
{
    int have = 0;
    int want = db_expected_version();

    if (current_version(db, &have, err, errlen) != 0)
        return -1;
    if (have != want) {
        set_version_err(have, want, err, errlen);
        return -1;
    }
    return 0;
}

/* Applies migration m unless it is already recorded, in one transaction
 * that holds the migration lock. *ran = 1 when it ran. */
static int migrate_one(struct db *db, const struct migration *m, int *ran, char *err, size_t errlen)
{
    PGresult *res = NULL;
    char version[16];
    const char *params[2];
    char what[160];
    int have = 0;
    int rc = -1;

    *ran = 0;
    snprintf(version, sizeof version, "%d", m->version);
    if (exec_cmd(db, "BEGIN", "migrate", err, errlen) != 0)
        goto out;
    res = PQexec(db->conn, "SELECT pg_advisory_xact_lock(" DB_MIGRATE_LOCK ")");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_pg_err(db, res, "migrate: lock", err, errlen);
        goto out;
    }
    PQclear(res);
    res = NULL;
    /* under the lock, so concurrent first runs do not race on it */
    if (exec_cmd(db,
                 "CREATE TABLE IF NOT EXISTS imgcache_schema_migrations ("
                 " version int PRIMARY KEY,"
                 " name text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 "migrate: create imgcache_schema_migrations", err, errlen) != 0)
        goto out;
    if (current_version(db, &have, err, errlen) != 0)
        goto out;
    if (have > db_expected_version()) {
        set_version_err(have, db_expected_version(), err, errlen);
        goto out;
    }
    params[0] = version;
    res = PQexecParams(db->conn, "SELECT 1 FROM imgcache_schema_migrations WHERE version = $1::int",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_pg_err(db, res, "migrate: read applied versions", err, errlen);
        goto out;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        /* the whole file as one simple query: inside our transaction */
        res = PQexec(db->conn, m->sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(what, sizeof what, "migration %s failed", m->name);
            set_pg_err(db, res, what, err, errlen);
            goto out;
        }
        PQclear(res);
        params[1] = m->name;
        res = PQexecParams(db->conn,
                           "INSERT INTO imgcache_schema_migrations (version, name) VALUES ($1::int, $2)",
                           2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            set_pg_err(db, res, "migrate: record version", err, errlen);
            goto out;
        }
        *ran = 1;
    }
    if (exec_cmd(db, "COMMIT", "migrate: commit", err, errlen) != 0)
        goto out;
    rc = 0;
out:
    PQclear(res);
    if (rc != 0) {
        *ran = 0;
        rollback_if_open(db);
    }
    return rc;
}

int db_migrate(struct db *db, int *applied, char *err, size_t errlen)
{
    int have = 0;

    *applied = 0;
    /* refuse early (before taking any lock) when the database is ahead */
    if (current_version(db, &have, err, errlen) != 0)
        return -1;
    if (have > db_expected_version()) {
        set_version_err(have, db_expected_version(), err, errlen);
        return -1;
    }
    for (int i = 0; i < migrations_count; i++) {
        int ran = 0;
        if (migrate_one(db, &migrations[i], &ran, err, errlen) != 0)
            return -1;
        if (ran) {
            log_info("event=migration_applied version=%d name=%s", migrations[i].version,
                     migrations[i].name);
            (*applied)++;
        }
    }
    return 0;
}

/* --- JSON parameters: nullable strings are packed with "s?" (NULL -> null;
 * invalid UTF-8 makes json_pack fail) --- */

/* Appends obj (stolen) to arr; -1 when obj is NULL or on error. */
static int append_obj(json_t *arr, json_t *obj)
{
    if (obj == NULL)
        return -1;
    return json_array_append_new(arr, obj);
}

/* Serializes arr compactly; the caller frees the string. */
static char *dump(json_t *arr, char *err, size_t errlen)
{
    char *s = json_dumps(arr, JSON_COMPACT);

    if (s == NULL)
        errmsg_set(err, errlen, "out of memory");
    return s;
}

/* Row i of a batch as a JSON object (the caller appends it), or NULL with
 * a message naming the row. */
typedef json_t *(*db_row_to_json)(const void *rows, size_t i, char *err, size_t errlen);

/* Runs sql with $1 the JSON array of rows 0..n-1 (each packed by to_json)
 * and $2 param2 (NULL: no $2). Returns the result when its status is want,
 * else NULL with "<what>: <message>" in err. The caller PQclear()s it. */
static PGresult *exec_json_batch(struct db *db, const char *sql, const void *rows, size_t n,
                                 db_row_to_json to_json, const char *param2, ExecStatusType want,
                                 const char *what, char *err, size_t errlen)
{
    json_t *arr = json_array();
    char *text = NULL;
    const char *params[2];
    PGresult *res = NULL;

    if (arr == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = to_json(rows, i, err, errlen);
        if (o == NULL)
            goto out;
        if (json_array_append_new(arr, o) != 0) {
            errmsg_set(err, errlen, "out of memory");
            goto out;
        }
    }
    text = dump(arr, err, errlen);
    if (text == NULL)
        goto out;
    params[0] = text;
    params[1] = param2;
    res = PQexecParams(db->conn, sql, param2 ? 2 : 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != want) {
        set_pg_err(db, res, what, err, errlen);
        PQclear(res);
        res = NULL;
    }
out:
    free(text);
    json_decref(arr);
    return res;
}

/* Builds the chats and participants arrays for db_upsert_chats. Each chat
 * carries its position in the batch (ord), each participant the position
 * of its chat (chat_ord) and its own (pord), so duplicates can keep the
 * last occurrence. */
static int chats_to_json(const struct beeper_chat *chats, size_t n, json_t *jchats, json_t *jparts,
                         char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct beeper_chat *c = &chats[i];
        json_t *o;

        if (c->id == NULL || c->type == NULL) {
            errmsg_set(err, errlen, "chat #%zu has no id or type", i);
            return -1;
        }
        o = json_pack("{s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:b}",
                      "ord", (json_int_t)i,
                      "chat_id", c->id,
                      "account_id", c->account_id,
                      "title", c->title,
                      "chat_type", c->type,
                      "network", c->network,
                      "img_source_url", c->img_url,
                      "last_activity", c->last_activity,
                      "complete", c->participants_has_more ? 0 : 1);
        if (append_obj(jchats, o) != 0) {
            errmsg_set(err, errlen, "chat #%zu: not valid UTF-8, or out of memory", i);
            return -1;
        }
        for (size_t j = 0; j < c->n_participants; j++) {
            const struct beeper_participant *p = &c->participants[j];
            if (p->id == NULL) {
                errmsg_set(err, errlen, "chat #%zu: participant #%zu has no id", i, j);
                return -1;
            }
            o = json_pack("{s:I, s:I, s:s?, s:s?, s:s?, s:s?, s:b}",
                          "chat_ord", (json_int_t)i,
                          "pord", (json_int_t)j,
                          "chat_id", c->id,
                          "participant_id", p->id,
                          "full_name", p->full_name,
                          "img_source_url", p->img_url,
                          "is_self", p->is_self ? 1 : 0);
            if (append_obj(jparts, o) != 0) {
                errmsg_set(err, errlen, "chat #%zu: participant #%zu: not valid UTF-8, or out of memory",
                           i, j);
                return -1;
            }
        }
    }
    return 0;
}

/* One statement, so one round trip and one transaction. Data-modifying
 * CTEs all see the same snapshot, which is why the sets are disjoint:
 * up_p touches listed participants, del_p only unlisted ones; the foreign
 * keys of new participants are checked at the end of the statement, after
 * up_c inserted their chats.
 *  - duplicates in the batch: the last occurrence of a chat wins
 *    (ON CONFLICT cannot touch a row twice), with that occurrence's
 *    participants;
 *  - last_activity: imgcache_parse_time() (see 001_init.sql) turns an
 *    absent or malformed value into NULL, and NULL keeps the stored value;
 *  - contact_image_url is not in the column list: never touched;
 *  - participants are rewritten only when something changed;
 *  - nothing is written for the batch's image URLs: a row re-pointed
 *    or deleted here starts its old URL's grace period through the
 *    triggers of 006_unreferenced.sql, and a URL referenced again needs
 *    no write (gc looks the references up). */
static const char upsert_sql[] =
    "WITH c_in AS ("
    "  SELECT DISTINCT ON (r.chat_id) r.*"
    "  FROM jsonb_to_recordset($1::jsonb) AS r(ord int, chat_id text, account_id text, title text,"
    "       chat_type text, network text, img_source_url text, last_activity text, complete boolean)"
    "  ORDER BY r.chat_id, r.ord DESC"
    "), p_in AS ("
    "  SELECT DISTINCT ON (p.chat_id, p.participant_id) p.*"
    "  FROM jsonb_to_recordset($2::jsonb) AS p(chat_ord int, pord int, chat_id text,"
    "       participant_id text, full_name text, img_source_url text, is_self boolean)"
    "  JOIN c_in ON c_in.chat_id = p.chat_id AND c_in.ord = p.chat_ord"
    "  ORDER BY p.chat_id, p.participant_id, p.pord DESC"
    "), up_c AS ("
    "  INSERT INTO chats AS c (chat_id, account_id, title, chat_type, network, img_source_url,"
    "                          last_activity, synced_at)"
    "  SELECT chat_id, account_id, title, chat_type, network, img_source_url,"
    "         imgcache_parse_time(last_activity), now()"
    "  FROM c_in"
    "  ON CONFLICT (chat_id) DO UPDATE SET"
    "    account_id = EXCLUDED.account_id, title = EXCLUDED.title,"
    "    chat_type = EXCLUDED.chat_type, network = EXCLUDED.network,"
    "    img_source_url = EXCLUDED.img_source_url,"
    "    last_activity = coalesce(EXCLUDED.last_activity, c.last_activity),"
    "    synced_at = EXCLUDED.synced_at"
    "  RETURNING 1"
    "), up_p AS ("
    "  INSERT INTO chat_participants AS cp (chat_id, participant_id, full_name, img_source_url, is_self)"
    "  SELECT chat_id, participant_id, full_name, img_source_url, coalesce(is_self, false)"
    "  FROM p_in"
    "  ON CONFLICT (chat_id, participant_id) DO UPDATE SET"
    "    full_name = EXCLUDED.full_name, img_source_url = EXCLUDED.img_source_url,"
    "    is_self = EXCLUDED.is_self"
    "  WHERE (cp.full_name, cp.img_source_url, cp.is_self)"
    "        IS DISTINCT FROM (EXCLUDED.full_name, EXCLUDED.img_source_url, EXCLUDED.is_self)"
    "  RETURNING 1"
    "), del_p AS ("
    "  DELETE FROM chat_participants cp"
    "  USING c_in"
    "  WHERE c_in.complete AND cp.chat_id = c_in.chat_id"
    "    AND NOT EXISTS (SELECT 1 FROM p_in"
    "                    WHERE p_in.chat_id = cp.chat_id AND p_in.participant_id = cp.participant_id)"
    "  RETURNING 1"
    ")"
    " SELECT (SELECT count(*) FROM up_c), (SELECT count(*) FROM up_p), (SELECT count(*) FROM del_p)";

/* Opens the batch's transaction holding gc's lock shared (DB_GC_LOCK):
 * batches run side by side, and a gc batch removing rows runs between
 * them, never across one. So gc either sees this batch's references
 * (committed before it looked) or has committed its removals before the
 * batch, whose look-up then finds those URLs uncached and announces them. */
static int begin_import_batch(struct db *db, char *err, size_t errlen)
{
    PGresult *res = PQexec(db->conn, "BEGIN; SELECT pg_advisory_xact_lock_shared(" DB_GC_LOCK ")");
    int rc = PQresultStatus(res) == PGRES_TUPLES_OK ? 0 : -1;

    if (rc != 0)
        set_pg_err(db, res, "upsert chats: take gc's lock", err, errlen);
    PQclear(res);
    return rc;
}

int db_upsert_chats(struct db *db, const struct beeper_chat *chats, size_t n,
                    char *err, size_t errlen)
{
    json_t *jchats = json_array();
    json_t *jparts = json_array();
    char *schats = NULL, *sparts = NULL;
    PGresult *res = NULL;
    const char *params[2];
    int rc = -1;

    if (n == 0) {
        rc = 0;
        goto out;
    }
    if (jchats == NULL || jparts == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    if (chats_to_json(chats, n, jchats, jparts, err, errlen) != 0)
        goto out;
    schats = dump(jchats, err, errlen);
    sparts = schats ? dump(jparts, err, errlen) : NULL;
    if (sparts == NULL)
        goto out;
    params[0] = schats;
    params[1] = sparts;
    if (begin_import_batch(db, err, errlen) != 0)
        goto out;
    res = PQexecParams(db->conn, upsert_sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        set_pg_err(db, res, "upsert chats", err, errlen);
        goto out;
    }
    if (exec_cmd(db, "COMMIT", "upsert chats", err, errlen) != 0)
        goto out;
    log_debug("event=chats_upserted chats=%s participants_changed=%s participants_removed=%s",
              PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
    rc = 0;
out:
    if (rc != 0)
        rollback_if_open(db);
    PQclear(res);
    free(schats);
    free(sparts);
    json_decref(jchats);
    json_decref(jparts);
    return rc;
}

/* A permanent failure counts while failure_ttl_ms ($2) is 0 or it is
 * younger than that. Shared by the look-up and the cursor. */
#define FAILED_RECENTLY(url)                                                        \
    "EXISTS (SELECT 1 FROM image_failures f WHERE f.source_url = " url               \
    " AND f.permanent AND ($2::bigint <= 0"                                          \
    " OR f.last_failed_at > now() - $2::bigint * interval '1 millisecond'))"

/* One row per input position whose state is not DB_URL_NONE. */
static const char lookup_sql[] =
    "SELECT u.ord, CASE"
    "  WHEN EXISTS (SELECT 1 FROM cached_images ci WHERE ci.source_url = u.url) THEN 1"
    "  WHEN " FAILED_RECENTLY("u.url") " THEN 2"
    "  WHEN EXISTS (SELECT 1 FROM image_failures f WHERE f.source_url = u.url"
    "               AND NOT f.permanent AND f.next_retry_at > now()) THEN 3"
    "  ELSE 0 END AS state"
    " FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS u(url, ord)";

static json_t *url_to_json(const void *rows, size_t i, char *err, size_t errlen)
{
    const char *url = ((const char *const *)rows)[i];
    json_t *s = url ? json_string(url) : NULL;

    if (s == NULL)
        errmsg_set(err, errlen, "URL #%zu is NULL or not valid UTF-8", i);
    return s;
}

int db_lookup_urls(struct db *db, const char *const *urls, size_t n, long long failure_ttl_ms,
                   uint8_t *state, char *err, size_t errlen)
{
    char ttl[32];
    PGresult *res = NULL;
    int rc = -1;

    if (n > 0)
        memset(state, DB_URL_NONE, n);
    if (n == 0) {
        rc = 0;
        goto out;
    }
    snprintf(ttl, sizeof ttl, "%lld", failure_ttl_ms);
    res = exec_json_batch(db, lookup_sql, urls, n, url_to_json, ttl, PGRES_TUPLES_OK, "look up URLs", err,
                          errlen);
    if (res == NULL)
        goto out;
    if ((size_t)PQntuples(res) != n) {
        set_pg_err(db, res, "look up URLs", err, errlen);
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        long ord = strtol(PQgetvalue(res, r, 0), NULL, 10); /* 1-based */
        int st = atoi(PQgetvalue(res, r, 1));
        if (ord < 1 || (size_t)ord > n) {
            errmsg_set(err, errlen, "look up URLs: unexpected row %ld", ord);
            goto out;
        }
        state[ord - 1] = (uint8_t)st;
    }
    rc = 0;
out:
    PQclear(res);
    return rc;
}

/* Distinct uncached URLs with one referencing chat (preferred: a chat's own
 * image) or participant each, in URL order. $1 include_failed, $2 ttl. */
static const char uncached_sql[] =
    "DECLARE imgcache_uncached NO SCROLL CURSOR FOR"
    " SELECT DISTINCT ON (s.url) s.url, s.chat_id, s.participant_id, s.account_id"
    " FROM ("
    "   SELECT c.img_source_url AS url, c.chat_id, NULL::text AS participant_id, c.account_id,"
    "          0 AS kind"
    "   FROM chats c WHERE c.img_source_url IS NOT NULL"
    "   UNION ALL"
    "   SELECT p.img_source_url, p.chat_id, p.participant_id, c.account_id, 1"
    "   FROM chat_participants p JOIN chats c ON c.chat_id = p.chat_id"
    "   WHERE p.img_source_url IS NOT NULL"
    " ) s"
    " WHERE NOT EXISTS (SELECT 1 FROM cached_images ci WHERE ci.source_url = s.url)"
    "   AND ($1::boolean OR NOT " FAILED_RECENTLY("s.url") ")"
    " ORDER BY s.url, s.kind, s.chat_id, s.participant_id";

static const char *value_or_null(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* Runs sql (which DECLAREs the cursor `cursor`) with its parameters in a
 * read-only snapshot and calls fn for every row of (url, chat_id,
 * participant_id, account_id), DB_FETCH_ROWS at a time. */
static int each_ref(struct db *db, const char *sql, const char *cursor, const char *const *params,
                    int nparams, const char *what, int (*fn)(const struct db_url_ref *ref, void *arg),
                    void *arg, char *err, size_t errlen)
{
    PGresult *res = NULL;
    char fetch[128];
    int rc = -1;

    snprintf(fetch, sizeof fetch, "FETCH " DB_FETCH_ROWS " FROM %s", cursor);
    if (exec_cmd(db, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", what, err, errlen) != 0)
        goto out;
    res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_pg_err(db, res, what, err, errlen);
        goto out;
    }
    for (;;) {
        int rows;
        PQclear(res);
        res = PQexec(db->conn, fetch);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            set_pg_err(db, res, what, err, errlen);
            goto out;
        }
        rows = PQntuples(res);
        if (rows == 0)
            break;
        for (int r = 0; r < rows; r++) {
            struct db_url_ref ref = {
                .source_url = PQgetvalue(res, r, 0),
                .chat_id = value_or_null(res, r, 1),
                .participant_id = value_or_null(res, r, 2),
                .account_id = value_or_null(res, r, 3),
            };
            if (fn(&ref, arg) != 0) {
                errmsg_set(err, errlen, "%s: stopped by the caller", what);
                goto out;
            }
        }
    }
    PQclear(res);
    res = NULL;
    if (exec_cmd(db, "COMMIT", what, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    PQclear(res);
    if (rc != 0)
        rollback_if_open(db); /* also closes the cursor */
    return rc;
}

int db_each_uncached(struct db *db, long long failure_ttl_ms, int include_failed,
                     int (*fn)(const struct db_url_ref *ref, void *arg), void *arg,
                     char *err, size_t errlen)
{
    char ttl[32];
    const char *params[2];

    snprintf(ttl, sizeof ttl, "%lld", failure_ttl_ms);
    params[0] = include_failed ? "true" : "false";
    params[1] = ttl;
    return each_ref(db, uncached_sql, "imgcache_uncached", params, 2, "uncached URLs", fn, arg, err, errlen);
}

/* Cached images referenced by a chat or participant (of network $2 when
 * not NULL) and not checked for $1 ms, the oldest first, at most $3 (NULL:
 * all). data: keys are left out: their bytes are their URL, which cannot
 * change. */
static const char stale_sql[] =
    "DECLARE imgcache_stale NO SCROLL CURSOR FOR"
    " SELECT s.url, s.chat_id, s.participant_id, s.account_id FROM ("
    "  SELECT DISTINCT ON (r.url) r.url, r.chat_id, r.participant_id, r.account_id, ci.refreshed_at"
    "  FROM ("
    "    SELECT c.img_source_url AS url, c.chat_id, NULL::text AS participant_id, c.account_id,"
    "           c.network, 0 AS kind"
    "    FROM chats c WHERE c.img_source_url IS NOT NULL"
    "    UNION ALL"
    "    SELECT p.img_source_url, p.chat_id, p.participant_id, c.account_id, c.network, 1"
    "    FROM chat_participants p JOIN chats c ON c.chat_id = p.chat_id"
    "    WHERE p.img_source_url IS NOT NULL"
    "  ) r JOIN cached_images ci ON ci.source_url = r.url"
    "  WHERE ci.refreshed_at < now() - $1::bigint * interval '1 millisecond'"
    "    AND ($2::text IS NULL OR r.network = $2::text)"
    "    AND left(r.url, 5) <> 'data:'"
    "  ORDER BY r.url, r.kind, r.chat_id, r.participant_id"
    " ) s ORDER BY s.refreshed_at, s.url LIMIT $3::bigint";

int db_each_stale(struct db *db, long long older_than_ms, const char *network, long long limit,
                  int (*fn)(const struct db_url_ref *ref, void *arg), void *arg, char *err, size_t errlen)
{
    char age[32], max[32];
    const char *params[3];

    snprintf(age, sizeof age, "%lld", older_than_ms);
    snprintf(max, sizeof max, "%lld", limit);
    params[0] = age;
    params[1] = network;
    params[2] = limit > 0 ? max : NULL;
    return each_ref(db, stale_sql, "imgcache_stale", params, 3, "stale images", fn, arg, err, errlen);
}

/* The cached rows of the input URLs refreshed before their time (Unix ms). */
static const char stale_lookup_sql[] =
    "SELECT u.ord, ci.sha256, ci.etag, ci.last_modified"
    " FROM jsonb_to_recordset($1::jsonb) AS u(ord int, url text, since bigint)"
    " JOIN cached_images ci ON ci.source_url = u.url"
    " WHERE ci.refreshed_at < to_timestamp(u.since / 1000.0)";

struct stale_ask {
    const char *const *urls;
    const long long *since_ms;
};

static json_t *stale_ask_to_json(const void *rows, size_t i, char *err, size_t errlen)
{
    const struct stale_ask *a = rows;
    json_t *o = a->urls[i] ? json_pack("{s:I, s:s, s:I}", "ord", (json_int_t)i, "url", a->urls[i], "since",
                                       (json_int_t)a->since_ms[i])
                           : NULL;

    if (o == NULL)
        errmsg_set(err, errlen, "URL #%zu is NULL or not valid UTF-8", i);
    return o;
}

int db_lookup_stale(struct db *db, const char *const *urls, const long long *since_ms, size_t n,
                    void (*on_stale)(size_t i, const struct db_cached *c, void *arg), void *arg,
                    char *err, size_t errlen)
{
    struct stale_ask ask = { urls, since_ms };
    PGresult *res;

    if (n == 0)
        return 0;
    /* exec_json_batch() passes rows through: ask stands for all n */
    res = exec_json_batch(db, stale_lookup_sql, &ask, n, stale_ask_to_json, NULL, PGRES_TUPLES_OK,
                          "look up stale images", err, errlen);
    if (res == NULL)
        return -1;
    for (int r = 0; r < PQntuples(res); r++) {
        long ord = strtol(PQgetvalue(res, r, 0), NULL, 10); /* 0-based */
        struct db_cached c = {
            .sha256 = PQgetvalue(res, r, 1),
            .etag = value_or_null(res, r, 2),
            .last_modified = value_or_null(res, r, 3),
        };
        if (ord < 0 || (size_t)ord >= n) {
            errmsg_set(err, errlen, "look up stale images: unexpected row %ld", ord);
            PQclear(res);
            return -1;
        }
        on_stale((size_t)ord, &c, arg);
    }
    PQclear(res);
    return 0;
}

/* A revalidation that found the source unchanged: the row is checked now
 * (validators kept unless the answer gave new ones), and a failure of an
 * earlier revalidation is over. Duplicated URLs: any one row wins. */
static const char refreshed_sql[] =
    "WITH r AS ("
    "  SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(ord int, source_url text, etag text,"
    "       last_modified text)"
    "), u AS ("
    "  UPDATE cached_images ci SET refreshed_at = now(),"
    "    etag = coalesce(r.etag, ci.etag), last_modified = coalesce(r.last_modified, ci.last_modified)"
    "  FROM r WHERE ci.source_url = r.source_url"
    "  RETURNING 1"
    "), f AS ("
    "  DELETE FROM image_failures f USING r WHERE f.source_url = r.source_url"
    "  RETURNING 1"
    ")"
    " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM f)";

static json_t *refreshed_to_json(const void *rows, size_t i, char *err, size_t errlen)
{
    const struct db_refreshed *m = (const struct db_refreshed *)rows + i;
    json_t *o = m->source_url ? json_pack("{s:I, s:s, s:s?, s:s?}", "ord", (json_int_t)i, "source_url",
                                          m->source_url, "etag", m->etag, "last_modified", m->last_modified)
                              : NULL;

    if (o == NULL)
        errmsg_set(err, errlen, "refreshed image #%zu: no URL, not valid UTF-8, or out of memory", i);
    return o;
}

int db_mark_refreshed(struct db *db, const struct db_refreshed *r, size_t n, char *err, size_t errlen)
{
    PGresult *res;

    if (n == 0)
        return 0;
    res = exec_json_batch(db, refreshed_sql, r, n, refreshed_to_json, NULL, PGRES_TUPLES_OK,
                          "mark refreshed", err, errlen);
    if (res == NULL)
        return -1;
    log_debug("event=images_refreshed rows=%s failures_cleared=%s", PQgetvalue(res, 0, 0),
              PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

/* Blobs are inserted once per sha256 and then kept as they are (the first
 * storage_key wins); cached_images takes the newest values; failures of
 * those URLs are cleared. Duplicated source URLs: the last one wins. */
static const char commit_sql[] =
    "WITH i AS ("
    "  SELECT DISTINCT ON (r.source_url) r.*"
    "  FROM jsonb_to_recordset($1::jsonb) AS r(ord int, source_url text, sha256 text,"
    "       storage_key text, content_type text, byte_size bigint,"
    "       width int, height int, etag text, last_modified text)"
    "  ORDER BY r.source_url, r.ord DESC"
    "), b AS ("
    "  INSERT INTO image_blobs (sha256, storage_key, content_type, byte_size, width, height)"
    "  SELECT DISTINCT ON (sha256) sha256, storage_key, content_type, byte_size,"
    "         nullif(width, 0), nullif(height, 0)"
    "  FROM i ORDER BY sha256, ord"
    "  ON CONFLICT (sha256) DO NOTHING"
    "  RETURNING 1"
    "), c AS ("
    "  INSERT INTO cached_images AS ci (source_url, sha256, content_type, byte_size,"
    "                                  etag, last_modified, cached_at, refreshed_at)"
    "  SELECT source_url, sha256, content_type, byte_size, etag, last_modified,"
    "         now(), now()"
    "  FROM i"
    "  ON CONFLICT (source_url) DO UPDATE SET"
    "    sha256 = EXCLUDED.sha256,"
    "    content_type = EXCLUDED.content_type, byte_size = EXCLUDED.byte_size,"
    "    etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified, refreshed_at = now()"
    "  RETURNING 1"
    "), f AS ("
    "  DELETE FROM image_failures f USING i WHERE f.source_url = i.source_url"
    "  RETURNING 1"
    ")"
    " SELECT (SELECT count(*) FROM b), (SELECT count(*) FROM c), (SELECT count(*) FROM f)";

static json_t *image_to_json(const void *rows, size_t i, char *err, size_t errlen)
{
    const struct db_image *m = (const struct db_image *)rows + i;
    json_t *o;

    if (m->source_url == NULL || m->sha256 == NULL || m->storage_key == NULL ||
        m->content_type == NULL) {
        errmsg_set(err, errlen, "image #%zu lacks a required field", i);
        return NULL;
    }
    o = json_pack("{s:I, s:s?, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:s?, s:s?}",
                  "ord", (json_int_t)i,
                  "source_url", m->source_url,
                  "sha256", m->sha256,
                  "storage_key", m->storage_key,
                  "content_type", m->content_type,
                  "byte_size", (json_int_t)m->byte_size,
                  "width", (json_int_t)m->width,
                  "height", (json_int_t)m->height,
                  "etag", m->etag,
                  "last_modified", m->last_modified);
    if (o == NULL)
        errmsg_set(err, errlen, "image #%zu: not valid UTF-8, or out of memory", i);
    return o;
}

int db_commit_images(struct db *db, const struct db_image *imgs, size_t n, char *err, size_t errlen)
{
    PGresult *res;

    if (n == 0)
        return 0;
    res = exec_json_batch(db, commit_sql, imgs, n, image_to_json, NULL, PGRES_TUPLES_OK, "commit images", err,
                          errlen);
    if (res == NULL)
        return -1;
    if (PQntuples(res) != 1) {
        set_pg_err(db, res, "commit images", err, errlen);
        PQclear(res);
        return -1;
    }
    log_debug("event=images_committed blobs_new=%s images=%s failures_cleared=%s",
              PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
    PQclear(res);
    return 0;
}

int db_reopen_failures(struct db *db, long long *n, char *err, size_t errlen)
{
    PGresult *res = PQexec(db->conn,
                           "UPDATE image_failures SET permanent = false, next_retry_at = NULL WHERE permanent");
    int rc = -1;

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_pg_err(db, res, "reopen failures", err, errlen);
        goto out;
    }
    *n = strtoll(PQcmdTuples(res), NULL, 10);
    rc = 0;
out:
    PQclear(res);
    return rc;
}

/* Several failures of one URL in a batch add up their attempts; the last
 * one gives the other fields. */
static const char failures_sql[] =
    "WITH r AS ("
    "  SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(ord int, source_url text,"
    "       error_class text, last_error text, http_status int, permanent boolean,"
    "       attempts int, next_retry_ms bigint)"
    "), a AS ("
    "  SELECT source_url, sum(greatest(attempts, 1))::int AS attempts FROM r GROUP BY source_url"
    "), l AS ("
    "  SELECT DISTINCT ON (source_url) * FROM r ORDER BY source_url, ord DESC"
    ")"
    " INSERT INTO image_failures AS f (source_url, attempts, error_class, last_error, http_status,"
    "                                  permanent, first_failed_at, last_failed_at, next_retry_at)"
    " SELECT l.source_url, a.attempts, l.error_class, l.last_error, nullif(l.http_status, 0),"
    "        coalesce(l.permanent, false), now(), now(),"
    "        CASE WHEN l.next_retry_ms > 0 THEN to_timestamp(l.next_retry_ms / 1000.0) END"
    " FROM l JOIN a ON a.source_url = l.source_url"
    " ON CONFLICT (source_url) DO UPDATE SET"
    "   attempts = f.attempts + EXCLUDED.attempts, error_class = EXCLUDED.error_class,"
    "   last_error = EXCLUDED.last_error, http_status = EXCLUDED.http_status,"
    "   permanent = EXCLUDED.permanent, last_failed_at = now(),"
    "   next_retry_at = EXCLUDED.next_retry_at";

static json_t *failure_to_json(const void *rows, size_t i, char *err, size_t errlen)
{
    const struct db_failure *f = (const struct db_failure *)rows + i;
    json_t *o;

    if (f->source_url == NULL || f->error_class == NULL) {
        errmsg_set(err, errlen, "failure #%zu has no source_url or error_class", i);
        return NULL;
    }
    o = json_pack("{s:I, s:s?, s:s?, s:s?, s:I, s:b, s:I, s:I}",
                  "ord", (json_int_t)i,
                  "source_url", f->source_url,
                  "error_class", f->error_class,
                  "last_error", f->last_error,
                  "http_status", (json_int_t)f->http_status,
                  "permanent", f->permanent ? 1 : 0,
                  "attempts", (json_int_t)(f->attempts >= 1 ? f->attempts : 1),
                  "next_retry_ms", (json_int_t)f->next_retry_ms);
    if (o == NULL)
        errmsg_set(err, errlen, "failure #%zu: not valid UTF-8, or out of memory", i);
    return o;
}

int db_record_failures(struct db *db, const struct db_failure *f, size_t n, char *err, size_t errlen)
{
    PGresult *res;

    if (n == 0)
        return 0;
    res = exec_json_batch(db, failures_sql, f, n, failure_to_json, NULL, PGRES_COMMAND_OK, "record failures",
                          err, errlen);
    if (res == NULL)
        return -1;
    PQclear(res);
    return 0;
}
