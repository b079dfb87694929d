#include "db_settings.h"

#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "db_private.h"
#include "errmsg.h"

/* The outer SELECT sees the table as it was before the UPDATE (one
 * snapshot per statement), so the new value comes from u when it wrote. */
static const char set_public_base_sql[] =
    "WITH u AS ("
    "  UPDATE settings SET public_base_url = $1"
    "  WHERE NOT $2::boolean OR public_base_url = ''"
    "  RETURNING public_base_url"
    ")"
    " SELECT coalesce((SELECT public_base_url FROM u), (SELECT public_base_url FROM settings)),"
    "        (SELECT count(*) FROM u)";

int db_settings_set_public_base(struct db *db, const char *base, int only_if_unset, int *changed,
                                char *current, size_t currentlen, char *err, size_t errlen)
{
    const char *params[2] = { base, only_if_unset ? "true" : "false" };
    PGresult *res = PQexecParams(db->conn, set_public_base_sql, 2, NULL, params, NULL, NULL, 0);
    int rc = -1;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        if (msg == NULL || *msg == '\0')
            msg = PQresultStatus(res) == PGRES_TUPLES_OK ? "the settings row is missing" : PQerrorMessage(db->conn);
        errmsg_set(err, errlen, "set settings.public_base_url: %.*s", (int)strcspn(msg, "\n"), msg);
        goto out;
    }
    *changed = strcmp(PQgetvalue(res, 0, 1), "0") != 0;
    snprintf(current, currentlen, "%s", PQgetvalue(res, 0, 0));
    rc = 0;
out:
    PQclear(res);
    return rc;
}
