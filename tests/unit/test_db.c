/* db module against a real PostgreSQL given by DATABASE_URL (the test runner
 * provides one). Each test runs in a schema of its own, created and dropped
 * around it: the test's connections get it as their search_path through
 * PGOPTIONS, so the migration creates its objects there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "beeper.h"
#include "db.h"
#include "migrations.h"
#include "db_gc.h"
#include "log.h"

static PGconn *admin;          /* checks and fixtures, same schema as the test */
static const char *dburl;
static char schema[64];
static int schema_seq;

struct fixture {
    struct db *db;
};

/* --- helpers --- */

static void sql_ok(const char *sql)
{
    PGresult *res = PQexec(admin, sql);
    ExecStatusType st = PQresultStatus(res);

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("SQL failed: %s\n%s", sql, PQerrorMessage(admin));
    PQclear(res);
}

/* The first column of the first row of sql with up to 1 parameter, as a
 * malloc'd string ("<NULL>" for SQL NULL, "<none>" without rows). */
static char *sql_value1(const char *sql, const char *param)
{
    const char *params[1] = { param };
    PGresult *res = PQexecParams(admin, sql, param ? 1 : 0, NULL, param ? params : NULL, NULL,
                                 NULL, 0);
    char *v;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("SQL failed: %s\n%s", sql, PQerrorMessage(admin));
    if (PQntuples(res) == 0)
        v = strdup("<none>");
    else if (PQgetisnull(res, 0, 0))
        v = strdup("<NULL>");
    else
        v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static char *sql_value(const char *sql)
{
    return sql_value1(sql, NULL);
}

static void assert_sql(const char *sql, const char *expected)
{
    char *v = sql_value(sql);

    if (strcmp(v, expected) != 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s\n  expected: %s\n  actual:   %s", sql, expected, v);
        free(v);
        fail_msg("%s", msg);
    }
    free(v);
}

static void migrate_ok(struct db *db, int expect_applied)
{
    char err[512] = "";
    int applied = -1;

    if (db_migrate(db, &applied, err, sizeof err) != 0)
        fail_msg("db_migrate: %s", err);
    assert_int_equal(applied, expect_applied);
}

/* --- fixtures --- */

static int group_setup(void **state)
{
    (void)state;
    admin = PQconnectdb(dburl);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "test_db: cannot connect to DATABASE_URL: %s", PQerrorMessage(admin));
        PQfinish(admin);
        admin = NULL;
        return -1;
    }
    PQsetClientEncoding(admin, "UTF8");
    PQclear(PQexec(admin, "SET client_min_messages = warning"));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    PQfinish(admin);
    admin = NULL;
    return 0;
}

/* A fresh schema, the current one of admin and of every new connection. */
static int setup_empty(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    char sql[512], opts[128], err[512];

    snprintf(schema, sizeof schema, "imgcache_test_%ld_%d", (long)getpid(), ++schema_seq);
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s; SET search_path TO %s",
             schema, schema, schema);
    sql_ok(sql);
    snprintf(opts, sizeof opts, "-c search_path=%s -c client_min_messages=warning", schema);
    setenv("PGOPTIONS", opts, 1);
    if (db_connect(dburl, &fx->db, err, sizeof err) != 0) {
        fprintf(stderr, "db_connect: %s\n", err);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int setup_migrated(void **state)
{
    struct fixture *fx;
    char err[512];
    int applied = 0;

    if (setup_empty(state) != 0)
        return -1;
    fx = *state;
    if (db_migrate(fx->db, &applied, err, sizeof err) != 0) {
        fprintf(stderr, "db_migrate: %s\n", err);
        db_close(fx->db);
        free(fx);
        *state = NULL;
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    char sql[512];

    if (fx) {
        db_close(fx->db);
        free(fx);
    }
    snprintf(sql, sizeof sql, "SET search_path TO DEFAULT; DROP SCHEMA IF EXISTS %s CASCADE", schema);
    if (PQtransactionStatus(admin) != PQTRANS_IDLE)
        PQclear(PQexec(admin, "ROLLBACK"));
    sql_ok(sql);
    unsetenv("PGOPTIONS");
    return 0;
}

/* --- connection --- */

static void test_connect_error_hides_password(void **state)
{
    struct db *db = (struct db *)1;
    char err[512] = "";

    (void)state;
    assert_int_equal(db_connect("postgresql://someone:s3cretpw@127.0.0.1:1/nope?connect_timeout=2",
                                &db, err, sizeof err), -1);
    assert_null(db);
    assert_true(strncmp(err, "cannot connect to PostgreSQL: ", 30) == 0);
    assert_null(strstr(err, "s3cretpw"));
    assert_null(strchr(err, '\n'));
    db_close(NULL); /* allowed */
}

/* libpq's parse errors quote the conninfo: "invalid percent-encoded token:
 * "S3cr%ZZetPw"". db_connect() checks it first, names DATABASE_URL and
 * shows no value. */
static void test_connect_refuses_bad_url_without_password(void **state)
{
    static const char *const bad[] = {
        "postgresql://someone:S3cr%ZZetPw@127.0.0.1:1/nope",
        "postgresql://someone:ab/S3cretPw@127.0.0.1:1/nope",
        "host=127.0.0.1 port=1 password=S3cret Pw",
    };
    (void)state;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct db *db = (struct db *)1;
        char err[512] = "";

        assert_int_equal(db_connect(bad[i], &db, err, sizeof err), -1);
        assert_null(db);
        if (strncmp(err, "DATABASE_URL: ", 14) != 0 || strstr(err, "S3cr") != NULL)
            fail_msg("%s: %s", bad[i], err);
        assert_int_equal(db_conninfo_check(bad[i], err, sizeof err), -1);
    }
}

static void test_ok_and_reset(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";

    assert_true(db_ok(fx->db));
    assert_int_equal(db_reset(fx->db, err, sizeof err), 0);
    assert_true(db_ok(fx->db));
    assert_false(db_ok(NULL));
}

/* --- migrations --- */

static void test_migrate(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "", want[256];
    int applied = 0;

    assert_true(db_expected_version() >= 1);
    /* before: refused with the exact message */
    assert_int_equal(db_check_schema(fx->db, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "database schema is at version 0, this program needs %d: run `imgcache-producer migrate`",
             db_expected_version());
    assert_string_equal(err, want);

    /* every embedded migration once (their numbers may have gaps while
     * branches land) */
    migrate_ok(fx->db, migrations_count);
    assert_int_equal(db_check_schema(fx->db, err, sizeof err), 0);
    migrate_ok(fx->db, 0);
    assert_int_equal(db_check_schema(fx->db, err, sizeof err), 0);
    want[0] = '\0';
    for (int i = 0; i < migrations_count; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d:%s", i ? "," : "", migrations[i].version,
                 migrations[i].name);
    assert_sql("SELECT string_agg(version || ':' || name, ',' ORDER BY version) FROM imgcache_schema_migrations",
               want);
    assert_string_equal(migrations[0].name, "001_init");
    assert_sql("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
               " AND tablename IN ('chats','chat_participants','image_blobs','cached_images','image_failures')",
               "5");

    /* a database newer than the code is refused by both */
    sql_ok("INSERT INTO imgcache_schema_migrations (version, name) VALUES (999, '999_future')");
    assert_int_equal(db_check_schema(fx->db, err, sizeof err), -1);
    assert_non_null(strstr(err, "database schema is at version 999"));
    assert_non_null(strstr(err, "is newer than this program"));
    err[0] = '\0';
    assert_int_equal(db_migrate(fx->db, &applied, err, sizeof err), -1);
    assert_non_null(strstr(err, "is newer than this program"));
    assert_int_equal(applied, 0);
}

/* --- chats --- */

static struct beeper_participant c1_parts_v1[] = {
    { .id = "me", .full_name = "Me Myself", .img_url = "https://img.test/me.png", .is_self = 1 },
    { .id = "bob", .full_name = "Bob Jones", .img_url = "https://img.test/bob.png", .is_self = 0 },
    { .id = "carl", .full_name = "Carl", .img_url = NULL, .is_self = 0 },
};
static struct beeper_participant c2_parts_v1[] = {
    { .id = "me", .full_name = "Me Myself", .img_url = "https://img.test/me.png", .is_self = 1 },
    { .id = "x", .full_name = "X", .img_url = "https://img.test/x.png", .is_self = 0 },
    { .id = "y", .full_name = "Y", .img_url = NULL, .is_self = 0 },
};

static void test_upsert_chats(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct beeper_chat v1[] = {
        { .id = "c1", .account_id = "acc", .title = "Bob", .type = "single", .network = "whatsapp",
          .img_url = NULL, .last_activity = "2025-06-16T15:37:29.000Z",
          .participants = c1_parts_v1, .n_participants = 3, .participants_has_more = 0 },
        { .id = "c2", .account_id = "acc", .title = "Team", .type = "group", .network = "slack",
          .img_url = "https://img.test/team.png", .last_activity = "not a time",
          .participants = c2_parts_v1, .n_participants = 3, .participants_has_more = 1 },
    };
    /* second sync: c1 renamed, carl gone (complete list), c2 lists only x
     * (partial list: me and y must stay) and has a bad time again */
    struct beeper_chat v2[] = {
        { .id = "c1", .account_id = "acc", .title = "Bob J.", .type = "single", .network = "whatsapp",
          .img_url = NULL, .last_activity = "2025-13-45T99:00:00Z",
          .participants = c1_parts_v1, .n_participants = 2, .participants_has_more = 0 },
        { .id = "c2", .account_id = "acc", .title = "Team", .type = "group", .network = "slack",
          .img_url = "https://img.test/team2.png", .last_activity = "2025-06-17T10:00:00+02:00",
          .participants = c2_parts_v1 + 1, .n_participants = 1, .participants_has_more = 1 },
    };

    assert_int_equal(db_upsert_chats(fx->db, v1, 2, err, sizeof err), 0);
    assert_sql("SELECT count(*) FROM chats", "2");
    assert_sql("SELECT count(*) FROM chat_participants", "6");
    assert_sql("SELECT last_activity = '2025-06-16T15:37:29Z' FROM chats WHERE chat_id = 'c1'", "t");
    assert_sql("SELECT last_activity FROM chats WHERE chat_id = 'c2'", "<NULL>"); /* unparsable */
    assert_sql("SELECT is_self FROM chat_participants WHERE chat_id = 'c1' AND participant_id = 'me'", "t");

    /* idempotent */
    assert_int_equal(db_upsert_chats(fx->db, v1, 2, err, sizeof err), 0);
    assert_sql("SELECT count(*) FROM chats", "2");
    assert_sql("SELECT count(*) FROM chat_participants", "6");

    /* the contacts system's column is never touched by sync */
    sql_ok("UPDATE chats SET contact_image_url = 'https://contacts.test/bob.jpg' WHERE chat_id = 'c1'");

    assert_int_equal(db_upsert_chats(fx->db, v2, 2, err, sizeof err), 0);
    assert_sql("SELECT title FROM chats WHERE chat_id = 'c1'", "Bob J.");
    assert_sql("SELECT contact_image_url FROM chats WHERE chat_id = 'c1'", "https://contacts.test/bob.jpg");
    assert_sql("SELECT string_agg(participant_id, ',' ORDER BY participant_id) FROM chat_participants"
               " WHERE chat_id = 'c1'", "bob,me");
    assert_sql("SELECT string_agg(participant_id, ',' ORDER BY participant_id) FROM chat_participants"
               " WHERE chat_id = 'c2'", "me,x,y");
    assert_sql("SELECT img_source_url FROM chats WHERE chat_id = 'c2'", "https://img.test/team2.png");
    /* a bad time keeps the stored one; a good one with an offset replaces NULL */
    assert_sql("SELECT last_activity = '2025-06-16T15:37:29Z' FROM chats WHERE chat_id = 'c1'", "t");
    assert_sql("SELECT last_activity = '2025-06-17T08:00:00Z' FROM chats WHERE chat_id = 'c2'", "t");
}

static void test_upsert_duplicates_in_batch(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct beeper_participant a[] = {
        { .id = "p1", .full_name = "Old", .img_url = "https://img.test/old.png" },
        { .id = "p1", .full_name = "Old twice", .img_url = "https://img.test/old.png" },
    };
    struct beeper_participant b[] = {
        { .id = "p2", .full_name = "New", .img_url = "https://img.test/new.png" },
    };
    struct beeper_chat batch[] = {
        { .id = "d", .title = "first", .type = "group", .participants = a, .n_participants = 2 },
        { .id = "e", .title = "other", .type = "group" },
        { .id = "d", .title = "last", .type = "group", .participants = b, .n_participants = 1 },
    };

    assert_int_equal(db_upsert_chats(fx->db, batch, 3, err, sizeof err), 0);
    assert_sql("SELECT count(*) FROM chats", "2");
    assert_sql("SELECT title FROM chats WHERE chat_id = 'd'", "last");
    assert_sql("SELECT string_agg(participant_id || '=' || full_name, ',') FROM chat_participants"
               " WHERE chat_id = 'd'", "p2=New");
    /* only the first occurrence of d in a batch of its own */
    assert_int_equal(db_upsert_chats(fx->db, batch, 1, err, sizeof err), 0);
    assert_sql("SELECT string_agg(participant_id || '=' || full_name, ',') FROM chat_participants"
               " WHERE chat_id = 'd'", "p1=Old twice");
    assert_int_equal(db_upsert_chats(fx->db, batch, 0, err, sizeof err), 0);
}

/* --- look-ups --- */

static const char blob_a[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char blob_b[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

static void cache_url_by_sql(const char *url)
{
    char sql[1024];

    snprintf(sql, sizeof sql,
             "INSERT INTO image_blobs (sha256, storage_key, content_type, byte_size)"
             " VALUES ('%s', 'aa/%s.png', 'image/png', 10) ON CONFLICT DO NOTHING;"
             "INSERT INTO cached_images (source_url, sha256, content_type, byte_size)"
             " VALUES ('%s', '%s', 'image/png', 10)",
             blob_a, blob_a, url, blob_a);
    sql_ok(sql);
}

static void test_lookup_urls(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    const char *urls[] = {
        "https://img.test/cached.png",  /* 1 */
        "https://img.test/gone.png",    /* 2: permanent failure an hour ago */
        "https://img.test/flaky.png",   /* 0: failure, not permanent */
        "https://img.test/new.png",     /* 0 */
        "https://img.test/cached.png",  /* 1 again */
        "https://img.test/q\"uo\\te,{x}.png", /* 0: needs escaping */
    };
    uint8_t st[6];

    cache_url_by_sql(urls[0]);
    sql_ok("INSERT INTO image_failures (source_url, error_class, permanent, last_failed_at)"
           " VALUES ('https://img.test/gone.png', 'http_404', true, now() - interval '1 hour'),"
           "        ('https://img.test/flaky.png', 'timeout', false, now())");

    memset(st, 0xff, sizeof st);
    assert_int_equal(db_lookup_urls(fx->db, urls, 6, 0, st, err, sizeof err), 0);
    assert_int_equal(st[0], DB_URL_CACHED);
    assert_int_equal(st[1], DB_URL_FAILED);
    assert_int_equal(st[2], DB_URL_NONE);
    assert_int_equal(st[3], DB_URL_NONE);
    assert_int_equal(st[4], DB_URL_CACHED);
    assert_int_equal(st[5], DB_URL_NONE);

    /* a TTL shorter than the failure's age lets it be tried again */
    assert_int_equal(db_lookup_urls(fx->db, urls, 6, 60 * 1000, st, err, sizeof err), 0);
    assert_int_equal(st[1], DB_URL_NONE);
    assert_int_equal(st[0], DB_URL_CACHED);
    /* a longer one does not */
    assert_int_equal(db_lookup_urls(fx->db, urls, 6, 2LL * 3600 * 1000, st, err, sizeof err), 0);
    assert_int_equal(st[1], DB_URL_FAILED);

    assert_int_equal(db_lookup_urls(fx->db, urls, 0, 0, st, err, sizeof err), 0);
}

/* --- worker writes --- */

static void test_commit_images_shares_blobs(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct db_image imgs[] = {
        { .source_url = "https://img.test/one.png", .sha256 = blob_b, .storage_key = "bb/bbbb.png",
          .content_type = "image/png", .byte_size = 123,
          .width = 64, .height = 48, .etag = "\"e1\"", .last_modified = NULL },
        { .source_url = "https://img.test/two.png", .sha256 = blob_b, .storage_key = "bb/bbbb.png",
          .content_type = "image/png", .byte_size = 123,
          .width = 64, .height = 48, .etag = NULL, .last_modified = "Wed, 21 Oct 2015 07:28:00 GMT" },
    };

    sql_ok("INSERT INTO image_failures (source_url, error_class, attempts)"
           " VALUES ('https://img.test/one.png', 'timeout', 2)");
    assert_int_equal(db_commit_images(fx->db, imgs, 2, err, sizeof err), 0);
    assert_sql("SELECT count(*) FROM image_blobs", "1");
    assert_sql("SELECT count(*) FROM cached_images WHERE sha256 = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'", "2");
    assert_sql("SELECT width || 'x' || height || ' ' || byte_size FROM image_blobs", "64x48 123");
    assert_sql("SELECT count(*) FROM image_failures", "0");
    assert_sql("SELECT etag FROM cached_images WHERE source_url = 'https://img.test/one.png'", "\"e1\"");

    /* again, later: refreshed, still one blob */
    sql_ok("UPDATE cached_images SET cached_at = now() - interval '1 day',"
           " refreshed_at = now() - interval '1 day'");
    assert_int_equal(db_commit_images(fx->db, imgs, 2, err, sizeof err), 0);
    assert_sql("SELECT count(*) FROM image_blobs", "1");
    assert_sql("SELECT count(*) FROM cached_images WHERE refreshed_at > now() - interval '1 minute'"
               " AND cached_at < now() - interval '1 hour'", "2");
    /* a blob with a malformed hash is refused by the schema */
    imgs[0].sha256 = "NOT-A-HASH";
    assert_int_equal(db_commit_images(fx->db, imgs, 1, err, sizeof err), -1);
    assert_true(strncmp(err, "commit images: ", 15) == 0);
}

static void test_record_failures_accumulate(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct db_failure f1[] = {
        { .source_url = "https://img.test/404.png", .error_class = "http_404", .last_error = "HTTP 404",
          .http_status = 404, .permanent = 0, .attempts = 1, .next_retry_ms = 1893456000000LL },
    };
    struct db_failure f2[] = {
        { .source_url = "https://img.test/404.png", .error_class = "http_404", .last_error = "HTTP 404",
          .http_status = 404, .permanent = 0, .attempts = 2, .next_retry_ms = 0 },
        { .source_url = "https://img.test/404.png", .error_class = "http_410", .last_error = "HTTP 410",
          .http_status = 410, .permanent = 1, .attempts = 1, .next_retry_ms = 0 },
        { .source_url = "https://img.test/other", .error_class = "not_image", .last_error = NULL,
          .http_status = 0, .permanent = 1, .attempts = 0, .next_retry_ms = 0 },
    };

    assert_int_equal(db_record_failures(fx->db, f1, 1, err, sizeof err), 0);
    assert_sql("SELECT attempts || ' ' || permanent || ' ' || (next_retry_at = '2030-01-01T00:00:00Z')"
               " FROM image_failures", "1 false true");
    sql_ok("UPDATE image_failures SET first_failed_at = now() - interval '1 day'");
    assert_int_equal(db_record_failures(fx->db, f2, 3, err, sizeof err), 0);
    assert_sql("SELECT attempts || ' ' || error_class || ' ' || http_status || ' ' || permanent"
               " FROM image_failures WHERE source_url = 'https://img.test/404.png'", "4 http_410 410 true");
    assert_sql("SELECT first_failed_at < now() - interval '1 hour' AND last_failed_at > now() - interval '1 minute'"
               " AND next_retry_at IS NULL FROM image_failures WHERE source_url = 'https://img.test/404.png'", "t");
    assert_sql("SELECT attempts || ' ' || coalesce(http_status::text, 'null')"
               " FROM image_failures WHERE source_url = 'https://img.test/other'", "1 null");
}

/* --- uncached stream --- */

struct collect {
    char *seen;         /* "url|chat|participant|account;" in call order */
    size_t len;
    int calls;
    int stop_after;     /* 0: never */
};

static int collect_fn(const struct db_url_ref *ref, void *arg)
{
    struct collect *c = arg;
    char line[512];
    int n;

    c->calls++;
    if (c->calls <= 20) {
        n = snprintf(line, sizeof line, "%s|%s|%s|%s;", ref->source_url,
                     ref->chat_id ? ref->chat_id : "-", ref->participant_id ? ref->participant_id : "-",
                     ref->account_id ? ref->account_id : "-");
        c->seen = realloc(c->seen, c->len + (size_t)n + 1);
        memcpy(c->seen + c->len, line, (size_t)n + 1);
        c->len += (size_t)n;
    }
    if (c->stop_after && c->calls >= c->stop_after)
        return -1;
    return 0;
}

static void test_each_uncached(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct collect c = { 0 };

    sql_ok("INSERT INTO chats (chat_id, account_id, chat_type, img_source_url) VALUES"
           " ('g1', 'acc1', 'group', 'https://img.test/a'),"
           " ('g2', 'acc2', 'group', 'https://img.test/a'),"      /* same URL again */
           " ('s1', 'acc1', 'single', NULL),"
           " ('g3', 'acc1', 'group', 'https://img.test/cached'),"
           " ('g4', 'acc1', 'group', 'https://img.test/dead')");
    sql_ok("INSERT INTO chat_participants (chat_id, participant_id, img_source_url, is_self) VALUES"
           " ('s1', 'me', 'https://img.test/b', true),"
           " ('s1', 'zed', 'https://img.test/c', false),"
           " ('g1', 'zed', 'https://img.test/c', false),"
           " ('g1', 'amy', 'https://img.test/a', false),"      /* the chat's ref is preferred */
           " ('g1', 'nil', NULL, false)");
    cache_url_by_sql("https://img.test/cached");
    sql_ok("INSERT INTO image_failures (source_url, error_class, permanent)"
           " VALUES ('https://img.test/dead', 'http_404', true)");

    assert_int_equal(db_each_uncached(fx->db, 0, 0, collect_fn, &c, err, sizeof err), 0);
    assert_int_equal(c.calls, 3);
    assert_string_equal(c.seen, "https://img.test/a|g1|-|acc1;"
                                "https://img.test/b|s1|me|acc1;"
                                "https://img.test/c|g1|zed|acc1;");
    free(c.seen);

    /* with failures included */
    memset(&c, 0, sizeof c);
    assert_int_equal(db_each_uncached(fx->db, 0, 1, collect_fn, &c, err, sizeof err), 0);
    assert_int_equal(c.calls, 4);
    assert_non_null(strstr(c.seen, "https://img.test/dead|g4|-|acc1;"));
    free(c.seen);

    /* a caller that stops: -1, and the connection is usable afterwards */
    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    assert_int_equal(db_each_uncached(fx->db, 0, 0, collect_fn, &c, err, sizeof err), -1);
    assert_int_equal(c.calls, 2);
    free(c.seen);

    /* more rows than one FETCH */
    sql_ok("INSERT INTO chats (chat_id, chat_type, img_source_url)"
           " SELECT 'bulk' || i, 'group', 'https://img.test/bulk/' || (i % 2500) FROM generate_series(1, 3000) i");
    memset(&c, 0, sizeof c);
    assert_int_equal(db_each_uncached(fx->db, 0, 0, collect_fn, &c, err, sizeof err), 0);
    assert_int_equal(c.calls, 3 + 2500);
    free(c.seen);
    assert_true(db_ok(fx->db));
}

/* --- refresh --- */

static void test_each_stale(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct collect c = { 0 };

    sql_ok("INSERT INTO chats (chat_id, account_id, chat_type, network, img_source_url) VALUES"
           " ('g1', 'acc1', 'group', 'wa', 'https://img.test/old'),"
           " ('g2', 'acc1', 'group', 'tg', 'https://img.test/older'),"
           " ('g3', 'acc1', 'group', 'wa', 'https://img.test/young'),"
           " ('g4', 'acc1', 'group', 'wa', 'https://img.test/uncached'),"
           " ('g5', 'acc1', 'group', 'wa', 'data:sha256,0000')");
    cache_url_by_sql("https://img.test/old");
    cache_url_by_sql("https://img.test/older");
    cache_url_by_sql("https://img.test/young");
    cache_url_by_sql("https://img.test/orphan"); /* no chat references it */
    cache_url_by_sql("data:sha256,0000");
    sql_ok("UPDATE cached_images SET refreshed_at = now() - interval '10 days'"
           " WHERE source_url IN ('https://img.test/old', 'https://img.test/orphan', 'data:sha256,0000');"
           "UPDATE cached_images SET refreshed_at = now() - interval '20 days'"
           " WHERE source_url = 'https://img.test/older'");

    /* older than 7 days, the oldest first; referenced only; no data: key */
    assert_int_equal(db_each_stale(fx->db, 7LL * 86400 * 1000, NULL, 0, collect_fn, &c, err, sizeof err), 0);
    assert_string_equal(c.seen, "https://img.test/older|g2|-|acc1;https://img.test/old|g1|-|acc1;");
    free(c.seen);
    /* one network */
    memset(&c, 0, sizeof c);
    assert_int_equal(db_each_stale(fx->db, 7LL * 86400 * 1000, "wa", 0, collect_fn, &c, err, sizeof err), 0);
    assert_string_equal(c.seen, "https://img.test/old|g1|-|acc1;");
    free(c.seen);
    /* a limit keeps the oldest */
    memset(&c, 0, sizeof c);
    assert_int_equal(db_each_stale(fx->db, 0, NULL, 1, collect_fn, &c, err, sizeof err), 0);
    assert_string_equal(c.seen, "https://img.test/older|g2|-|acc1;");
    free(c.seen);
}

struct stale_seen {
    char text[512];
};

static void on_stale_fn(size_t i, const struct db_cached *row, void *arg)
{
    struct stale_seen *s = arg;
    size_t used = strlen(s->text);

    snprintf(s->text + used, sizeof s->text - used, "%zu:%.4s:%s:%s;", i, row->sha256,
             row->etag ? row->etag : "-", row->last_modified ? row->last_modified : "-");
}

static void test_lookup_stale_and_mark_refreshed(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    const char *urls[] = { "https://img.test/s1", "https://img.test/s2", "https://img.test/none" };
    long long now_ms = (long long)time(NULL) * 1000;
    long long since[] = { now_ms, now_ms - 3600 * 1000, now_ms };
    struct stale_seen seen = { "" };
    struct db_refreshed r[] = {
        { "https://img.test/s1", "\"new\"", NULL },
        { "https://img.test/none", NULL, NULL }, /* no row: skipped */
    };

    cache_url_by_sql(urls[0]);
    cache_url_by_sql(urls[1]);
    sql_ok("UPDATE cached_images SET refreshed_at = now() - interval '2 days', etag = '\"e1\"',"
           " last_modified = 'Sun, 06 Nov 1994 08:49:37 GMT' WHERE source_url = 'https://img.test/s1';"
           "UPDATE cached_images SET refreshed_at = now() - interval '1 minute'"
           " WHERE source_url = 'https://img.test/s2';"
           "INSERT INTO image_failures (source_url, error_class) VALUES ('https://img.test/s1', 'http_404')");

    /* s1 checked two days ago: stale for a refresh of now; s2 checked a
     * minute ago: fresh for a refresh of an hour ago; none: not cached */
    assert_int_equal(db_lookup_stale(fx->db, urls, since, 3, on_stale_fn, &seen, err, sizeof err), 0);
    assert_string_equal(seen.text, "0:aaaa:\"e1\":Sun, 06 Nov 1994 08:49:37 GMT;");

    assert_int_equal(db_mark_refreshed(fx->db, r, 2, err, sizeof err), 0);
    assert_sql("SELECT etag || '|' || last_modified || '|' || (refreshed_at > now() - interval '1 minute')"
               " FROM cached_images WHERE source_url = 'https://img.test/s1'",
               "\"new\"|Sun, 06 Nov 1994 08:49:37 GMT|true");
    assert_sql("SELECT count(*) FROM image_failures", "0");
    assert_sql("SELECT count(*) FROM cached_images", "2");
    seen.text[0] = '\0';
    assert_int_equal(db_lookup_stale(fx->db, urls, since, 3, on_stale_fn, &seen, err, sizeof err), 0);
    assert_string_equal(seen.text, "");
}

/* --- schema functions and views --- */

static void test_initials(void **state)
{
    static const struct { const char *in, *out; } cases[] = {
        { "John Smith", "JS" },
        { "élodie durand", "ÉD" },
        { "жанна петрова", "ЖП" },
        { "Ωmega team x", "ΩT" },
        { "  spaced   out ", "SO" },
        { "Solo", "S" },
        { "🎉 Party time", "PT" },
        { "", "?" },
        { "   ", "?" },
        { "🎉 🎈", "?" },
        { "e\xcc\x81lodie x", "ÉX" },   /* decomposed é */
        { "(anna) 2nd", "A2" },
        { NULL, "?" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *v = cases[i].in ? sql_value1("SELECT imgcache_initials($1)", cases[i].in)
                              : sql_value("SELECT imgcache_initials(NULL)");
        if (strcmp(v, cases[i].out) != 0) {
            char msg[256];
            snprintf(msg, sizeof msg, "imgcache_initials('%s') = '%s', want '%s'",
                     cases[i].in ? cases[i].in : "NULL", v, cases[i].out);
            free(v);
            fail_msg("%s", msg);
        }
        free(v);
    }
}

static void test_chat_avatars(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct beeper_participant single_parts[] = {
        { .id = "me", .full_name = "Me", .img_url = "https://img.test/me.png", .is_self = 1 },
        { .id = "bob", .full_name = "Bob Jones", .img_url = "https://img.test/bob.png" },
    };
    struct beeper_participant bare_parts[] = {
        { .id = "me", .full_name = "Me", .img_url = "https://img.test/me.png", .is_self = 1 },
        { .id = "ann", .full_name = "Ann Lee", .img_url = NULL },
    };
    struct beeper_chat chats[] = {
        { .id = "s", .title = "Bob Jones", .type = "single", .img_url = "https://img.test/s-chat.png",
          .participants = single_parts, .n_participants = 2 },
        { .id = "g", .title = "the group", .type = "group", .img_url = "https://img.test/group.png",
          .participants = single_parts, .n_participants = 2 },
        { .id = "n", .title = "Ann Lee", .type = "single", .img_url = "https://img.test/n-chat.png",
          .participants = bare_parts, .n_participants = 2 },
    };
    const char *row = "SELECT image_source || ' ' || coalesce(image_url, '-') || ' ' || initials || ' '"
                      " || coalesce(source_url, '-') FROM chat_avatars WHERE chat_id = $1";
    char *v;

#define ROW_IS(id, want)                  \
    do {                                  \
        v = sql_value1(row, id);          \
        assert_string_equal(v, want);     \
        free(v);                          \
    } while (0)

    assert_int_equal(db_upsert_chats(fx->db, chats, 3, err, sizeof err), 0);
    /* nothing cached, no contact image: initials */
    ROW_IS("s", "initials - BJ https://img.test/bob.png");     /* the other participant's image */
    ROW_IS("g", "initials - TG https://img.test/group.png");   /* a group's own image */
    ROW_IS("n", "initials - AL https://img.test/n-chat.png");  /* other has none: the chat's own */

    /* contact images */
    sql_ok("UPDATE chats SET contact_image_url = 'https://contacts.test/' || chat_id || '.jpg'");
    ROW_IS("s", "contact https://contacts.test/s.jpg BJ https://img.test/bob.png");
    ROW_IS("g", "contact https://contacts.test/g.jpg TG https://img.test/group.png");

    /* cached images win */
    /* the URL is the settings' base (trailing slashes dropped) + storage key */
    sql_ok("UPDATE settings SET public_base_url = 'https://cdn.test/'");
    cache_url_by_sql("https://img.test/bob.png");
    sql_ok("INSERT INTO cached_images (source_url, sha256, content_type, byte_size)"
           " VALUES ('https://img.test/group.png', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',"
           "         'image/png', 10)");
    ROW_IS("s", "cached https://cdn.test/aa/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png BJ https://img.test/bob.png");
    ROW_IS("g", "cached https://cdn.test/aa/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png TG https://img.test/group.png");
    ROW_IS("n", "contact https://contacts.test/n.jpg AL https://img.test/n-chat.png");
    /* joined at read time: a new base shows at once */
    sql_ok("UPDATE settings SET public_base_url = 'http://127.0.0.1:8080/images'");
    ROW_IS("g", "cached http://127.0.0.1:8080/images/aa/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png TG https://img.test/group.png");
    sql_ok("UPDATE settings SET public_base_url = 'https://cdn.test'");
    /* the self participant's image is never the single chat's */
    sql_ok("DELETE FROM chat_participants WHERE chat_id = 's' AND participant_id = 'bob'");
    ROW_IS("s", "contact https://contacts.test/s.jpg BJ https://img.test/s-chat.png");
#undef ROW_IS

    assert_sql("SELECT coalesce(image_url, '-') || ' ' || initials FROM participant_avatars"
               " WHERE chat_id = 'g' AND participant_id = 'bob'", "https://cdn.test/aa/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png BJ");
    assert_sql("SELECT coalesce(image_url, '-') || ' ' || initials FROM participant_avatars"
               " WHERE chat_id = 'n' AND participant_id = 'ann'", "- AL");
}

/* Schema 7 drops cached_images.public_url: the base most rows used becomes
 * settings.public_base_url, and the views show the same URLs as before. */
static void test_migrate_seeds_public_base(void **state)
{
    char sql[1024];
    int i;

    (void)state;
    for (i = 0; i < migrations_count && migrations[i].version < 7; i++)
        sql_ok(migrations[i].sql);
    assert_true(i < migrations_count && migrations[i].version == 7);
    for (int k = 0; k < 3; k++) {
        const char *base = k < 2 ? "https://old.cdn.test/img" : "file:///var/images";
        snprintf(sql, sizeof sql,
                 "INSERT INTO image_blobs (sha256, storage_key, content_type, byte_size)"
                 " VALUES (repeat('%d', 64), '%d%d/' || repeat('%d', 64) || '.png', 'image/png', 1);"
                 "INSERT INTO cached_images (source_url, sha256, public_url, content_type, byte_size)"
                 " VALUES ('https://img.test/%d', repeat('%d', 64), '%s/%d%d/' || repeat('%d', 64) || '.png',"
                 "         'image/png', 1);"
                 "INSERT INTO chats (chat_id, title, chat_type, img_source_url)"
                 " VALUES ('c%d', 'Chat', 'group', 'https://img.test/%d')",
                 k, k, k, k, k, k, base, k, k, k, k, k);
        sql_ok(sql);
    }
    sql_ok(migrations[i].sql);
    assert_sql("SELECT public_base_url FROM settings", "https://old.cdn.test/img");
    assert_sql("SELECT image_source || ' ' || image_url FROM chat_avatars WHERE chat_id = 'c1'",
               "cached https://old.cdn.test/img/11/1111111111111111111111111111111111111111111111111111111111111111.png");
    assert_sql("SELECT count(*) FROM information_schema.columns"
               " WHERE table_schema = current_schema() AND table_name = 'cached_images' AND column_name = 'public_url'",
               "0");
}

/* A chat without a title (Beeper sends null or "") is named after the
 * other participant (single) or the participants (group). */
static void test_chat_names(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct beeper_participant one[] = {
        { .id = "me", .full_name = "Me Myself", .is_self = 1 },
        { .id = "zoe", .full_name = "Zoë Ölander" },
    };
    struct beeper_participant many[] = {
        { .id = "me", .full_name = "Me Myself", .is_self = 1 },
        { .id = "p1", .full_name = "Carol King" },
        { .id = "p2", .full_name = "ann lee" },
        { .id = "p3", .full_name = "Bo Diddley" },
        { .id = "p4", .full_name = "Dan" },
        { .id = "p5", .full_name = "Eve" },
        { .id = "p6", .full_name = NULL },
    };
    struct beeper_participant two[] = {
        { .id = "me", .full_name = "Me Myself", .is_self = 1 },
        { .id = "b", .full_name = "Bo Diddley" },
        { .id = "a", .full_name = "  " },
        { .id = "c", .full_name = "Carol King" },
    };
    struct beeper_participant alone[] = {
        { .id = "me", .full_name = "Me Myself", .is_self = 1 },
    };
    struct beeper_chat chats[] = {
        { .id = "s", .title = NULL, .type = "single", .participants = one, .n_participants = 2 },
        { .id = "s-blank", .title = "  ", .type = "single", .participants = one, .n_participants = 2 },
        { .id = "g", .title = NULL, .type = "group", .participants = many, .n_participants = 7 },
        { .id = "g2", .title = "", .type = "group", .participants = two, .n_participants = 4 },
        { .id = "t", .title = "Kept Title", .type = "group", .participants = two, .n_participants = 4 },
        { .id = "alone", .title = NULL, .type = "single", .participants = alone, .n_participants = 1 },
    };
    const char *row = "SELECT coalesce(title, '-') || '|' || initials FROM chat_avatars WHERE chat_id = $1";
    char *v;

#define NAME_IS(id, want)                 \
    do {                                  \
        v = sql_value1(row, id);          \
        assert_string_equal(v, want);     \
        free(v);                          \
    } while (0)

    assert_int_equal(db_upsert_chats(fx->db, chats, 6, err, sizeof err), 0);
    NAME_IS("s", "Zoë Ölander|ZÖ");
    NAME_IS("s-blank", "Zoë Ölander|ZÖ");
    NAME_IS("g", "ann lee, Bo Diddley, Carol King +2|AL");
    NAME_IS("g2", "Bo Diddley, Carol King|BD");
    NAME_IS("t", "Kept Title|KT");
    NAME_IS("alone", "-|?");
#undef NAME_IS
    /* the stored title stays what Beeper sent */
    assert_sql("SELECT count(*) FROM chats WHERE title IS NULL", "3");
}

/* --- gc --- */

#define GC_SHA(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
                  c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

/* A blob (sha256 64 times c) and, when url, a cached image pointing at it,
 * through admin (another connection than the one gc uses). */
static void gc_fixture_image(const char *c, const char *url)
{
    char sql[1024];

    snprintf(sql, sizeof sql,
             "INSERT INTO image_blobs (sha256, storage_key, content_type, byte_size)"
             " VALUES (repeat('%s', 64), '%s%s/x.png', 'image/png', 10) ON CONFLICT DO NOTHING",
             c, c, c);
    sql_ok(sql);
    if (url == NULL)
        return;
    snprintf(sql, sizeof sql,
             "INSERT INTO cached_images (source_url, sha256, content_type, byte_size)"
             " VALUES ('%s', repeat('%s', 64), 'image/png', 10)", url, c);
    sql_ok(sql);
}

/* gc_urls(table, grace in ms): runs step 1 on table and returns its
 * removed URLs joined by ',' in a static buffer. */
static const char *gc_urls(struct db *db, enum db_gc_table table, long long grace_ms, int dry_run)
{
    static char got[1024];
    char err[512] = "", scanned[256];
    struct db_gc_list l = { 0 };

    got[0] = '\0';
    if (db_gc_urls(db, table, grace_ms, dry_run, "", 100, &l, scanned, sizeof scanned, err, sizeof err) != 0)
        fail_msg("db_gc_urls: %s", err);
    for (size_t i = 0; i < l.n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", l.items[i].key);
    db_gc_list_release(&l);
    return got;
}

#define DAY_MS 86400000LL
/* the rows of `table` whose grace period started within the last minute */
#define RECENT(table) "SELECT coalesce(string_agg(replace(source_url, 'https://img.test/', ''), ','" \
                      " ORDER BY source_url), '') FROM " table                                      \
                      " WHERE unreferenced_at > now() - interval '1 minute'"

/* Step 1 and schema 6's triggers: an import that changes nothing writes
 * no cached row; a participant re-pointed, a participant no longer
 * listed and a chat removed start their old URL's grace period; a URL
 * referenced again stays whatever its clock says; only URLs unreferenced
 * for longer than the grace period go, failures likewise. */
static void test_gc_urls(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "";
    struct beeper_participant pu[] = { { .id = "u", .img_url = "https://img.test/used" } };
    struct beeper_participant pv[] = { { .id = "v", .img_url = "https://img.test/old" } };
    struct beeper_participant pv2[] = { { .id = "v", .img_url = "https://img.test/new" } };
    struct beeper_participant pw[] = { { .id = "w", .img_url = "https://img.test/failed" } };
    struct beeper_participant pb[] = { { .id = "b", .img_url = "https://img.test/back" } };
    struct beeper_participant pb2[] = { { .id = "b", .img_url = NULL } };
    struct beeper_chat v1[] = {
        { .id = "c", .type = "single", .participants = pu, .n_participants = 1 },
        { .id = "d", .type = "single", .participants = pv, .n_participants = 1 },
        { .id = "e", .type = "single", .participants = pw, .n_participants = 1 },
        { .id = "f", .type = "single", .participants = pb, .n_participants = 1 },
        { .id = "g", .type = "group", .img_url = "https://img.test/group" },
    };
    /* d re-pointed, e lists nobody (a complete list), f's picture goes
     * and comes back */
    struct beeper_chat v2[] = {
        { .id = "d", .type = "single", .participants = pv2, .n_participants = 1 },
        { .id = "e", .type = "single" },
        { .id = "f", .type = "single", .participants = pb2, .n_participants = 1 },
    };

    assert_int_equal(db_upsert_chats(fx->db, v1, 5, err, sizeof err), 0);
    gc_fixture_image("a", "https://img.test/used");
    gc_fixture_image("a", "https://img.test/old");
    gc_fixture_image("b", "https://img.test/group");
    gc_fixture_image("c", "https://img.test/back");
    sql_ok("INSERT INTO image_failures (source_url, error_class) VALUES ('https://img.test/failed', 'http_404')");
    sql_ok("UPDATE cached_images SET unreferenced_at = now() - interval '10 days'");
    sql_ok("UPDATE image_failures SET unreferenced_at = now() - interval '10 days'");
    /* an import of the same chats writes no cached row */
    assert_int_equal(db_upsert_chats(fx->db, v1, 5, err, sizeof err), 0);
    assert_sql(RECENT("cached_images"), "");

    assert_int_equal(db_upsert_chats(fx->db, v2, 3, err, sizeof err), 0);
    assert_int_equal(db_upsert_chats(fx->db, &v1[3], 1, err, sizeof err), 0); /* f's picture is back */
    sql_ok("DELETE FROM chats WHERE chat_id = 'g'");
    assert_sql(RECENT("cached_images"), "back,group,old");
    assert_sql(RECENT("image_failures"), "failed");

    /* within the grace period nothing goes; a dry run lists without removing */
    assert_string_equal(gc_urls(fx->db, DB_GC_CACHED_IMAGES, DAY_MS, 0), "");
    assert_string_equal(gc_urls(fx->db, DB_GC_IMAGE_FAILURES, DAY_MS, 0), "");
    sql_ok("UPDATE cached_images SET unreferenced_at = now() - interval '2 days'");
    sql_ok("UPDATE image_failures SET unreferenced_at = now() - interval '2 days'");
    assert_string_equal(gc_urls(fx->db, DB_GC_CACHED_IMAGES, DAY_MS, 1),
                        "https://img.test/group,https://img.test/old");
    assert_sql("SELECT count(*) FROM cached_images", "4");
    assert_string_equal(gc_urls(fx->db, DB_GC_CACHED_IMAGES, 3 * DAY_MS, 0), "");
    /* older than the grace: exactly the unreferenced rows go */
    assert_string_equal(gc_urls(fx->db, DB_GC_CACHED_IMAGES, DAY_MS, 0),
                        "https://img.test/group,https://img.test/old");
    assert_sql("SELECT string_agg(source_url, ',' ORDER BY source_url) FROM cached_images",
               "https://img.test/back,https://img.test/used");
    assert_string_equal(gc_urls(fx->db, DB_GC_IMAGE_FAILURES, DAY_MS, 0), "https://img.test/failed");
    /* whatever the clock, a referenced URL stays */
    assert_string_equal(gc_urls(fx->db, DB_GC_CACHED_IMAGES, 0, 0), "");
    /* TRUNCATE fires no row trigger: it restarts every clock at once */
    sql_ok("UPDATE cached_images SET unreferenced_at = now() - interval '2 days'");
    sql_ok("TRUNCATE chats CASCADE");
    assert_sql(RECENT("cached_images"), "back,used");
}

/* Waits (up to 10 s) until a backend of this database waits on a lock:
 * the statement sent with PQsendQuery() is blocked. */
static void wait_for_lock_waiter(void)
{
    PGconn *watch = PQconnectdb(dburl);

    assert_int_equal(PQstatus(watch), CONNECTION_OK);
    for (int i = 0; i < 1000; i++) {
        PGresult *res = PQexec(watch, "SELECT count(*) FROM pg_stat_activity"
                                      " WHERE datname = current_database() AND wait_event_type = 'Lock'");
        int n = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -1;
        PQclear(res);
        if (n > 0) {
            PQfinish(watch);
            return;
        }
        usleep(10000);
    }
    PQfinish(watch);
    fail_msg("no statement waits on a lock after 10 s");
}

/* Step 2 against a worker's commit, on two connections, both orders:
 *  - the commit goes first and has not committed: gc skips the blob (the
 *    foreign key check holds a lock on it), the commit then succeeds;
 *  - gc goes first: the blob stays locked until gc commits, so a commit
 *    pointing at it waits, then fails on the foreign key (nothing points
 *    at a deleted blob), and the committer's retry inserts the blob anew. */
static void test_gc_blob_race(void **state)
{
    struct fixture *fx = *state;
    char err[512] = "", scanned[80];
    struct db_gc_list l = { 0 };
    const char *sha_c = GC_SHA("c");
    struct db_image img = {
        .source_url = "https://img.test/new", .sha256 = GC_SHA("c"), .storage_key = "cc/x.png",
        .content_type = "image/png", .byte_size = 10,
    };
    PGresult *res;

    gc_fixture_image("a", NULL);
    gc_fixture_image("c", NULL);
    /* 1: the commit first, not committed yet */
    sql_ok("BEGIN");
    sql_ok("INSERT INTO cached_images (source_url, sha256, content_type, byte_size)"
           " VALUES ('https://img.test/a', repeat('a', 64), 'image/png', 10)");
    assert_int_equal(db_gc_blobs_begin(fx->db, 0, 0, "", 100, &l, scanned, sizeof scanned, err, sizeof err), 0);
    assert_int_equal(l.n, 1); /* only c: a is being committed */
    assert_string_equal(l.items[0].key, sha_c);
    /* 2: gc holds c; a commit pointing at c (sent on admin, answered
     * later) waits for gc, then fails on the foreign key; the committer's
     * retry inserts the blob row anew */
    sql_ok("ROLLBACK"); /* 1's commit of a does not happen after all */
    assert_int_equal(PQsendQuery(admin,
                                 "INSERT INTO cached_images (source_url, sha256, content_type, byte_size)"
                                 " VALUES ('https://img.test/c', repeat('c', 64), 'image/png', 10)"), 1);
    wait_for_lock_waiter();
    assert_int_equal(db_gc_blobs_finish(fx->db, &sha_c, 1, err, sizeof err), 0);
    db_gc_list_release(&l);
    res = PQgetResult(admin);
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "23503"); /* foreign_key_violation */
    PQclear(res);
    assert_null(PQgetResult(admin));
    assert_sql("SELECT count(*) FROM image_blobs WHERE sha256 = repeat('c', 64)", "0");
    assert_int_equal(db_commit_images(fx->db, &img, 1, err, sizeof err), 0);
    assert_sql("SELECT count(*) FROM cached_images ci JOIN image_blobs b USING (sha256)"
               " WHERE ci.source_url = 'https://img.test/new'", "1");
    /* a committed reference keeps its blob */
    assert_int_equal(db_gc_blobs_begin(fx->db, 0, 0, "", 100, &l, scanned, sizeof scanned, err, sizeof err), 0);
    assert_int_equal(l.n, 1); /* a: its commit was rolled back */
    assert_string_equal(l.items[0].key, GC_SHA("a"));
    assert_int_equal(db_gc_blobs_finish(fx->db, NULL, 0, err, sizeof err), 0);
    db_gc_list_release(&l);
    assert_sql("SELECT count(*) FROM image_blobs", "2");
}

/* The key of DB_GC_LOCK (common/db_private.h), which import batches take
 * shared and gc batches exclusive. */
#define GC_LOCK_KEY "31093368184218473"

/* A second connection to the test's schema that gives up on a lock after
 * 300 ms: a call that would wait for the other side fails instead, with
 * lock_timeout's message. */
static struct db *impatient_db(void)
{
    char opts[160], err[512] = "";
    struct db *db = NULL;

    snprintf(opts, sizeof opts, "-c search_path=%s -c client_min_messages=warning -c lock_timeout=300",
             schema);
    setenv("PGOPTIONS", opts, 1);
    if (db_connect(dburl, &db, err, sizeof err) != 0)
        fail_msg("db_connect: %s", err);
    return db;
}

/* Step 1 against an import batch, on two connections, both orders:
 *  - an import batch that re-references an unreferenced URL has not
 *    committed: gc cannot start its batch (it would not see the new
 *    reference and would remove the URL after the import looked it up
 *    as cached); once the import committed, gc keeps the URL;
 *  - gc's batch is between its look-up and its commit: an import batch
 *    cannot write until gc committed, and its look-up then finds the URL
 *    uncached, so it announces it. */
static void test_gc_import_race(void **state)
{
    struct fixture *fx = *state;
    struct db *gc = impatient_db(), *import = impatient_db();
    char err[512] = "";
    uint8_t st = 0;
    const char *url = "https://img.test/back";
    struct beeper_chat chat = { .id = "g", .type = "group", .img_url = "https://img.test/back" };

    gc_fixture_image("a", url);
    gc_fixture_image("b", "https://img.test/gone");
    sql_ok("UPDATE cached_images SET unreferenced_at = now() - interval '10 days'");
    /* 1: an import batch (on admin) holds the lock, its chat not committed */
    sql_ok("BEGIN");
    sql_ok("SELECT pg_advisory_xact_lock_shared(" GC_LOCK_KEY ")");
    sql_ok("INSERT INTO chats (chat_id, chat_type, img_source_url) VALUES ('g', 'group', 'https://img.test/back')");
    assert_int_equal(db_lookup_urls(fx->db, &url, 1, 0, &st, err, sizeof err), 0);
    assert_int_equal(st, DB_URL_CACHED); /* the import will not announce it */
    assert_string_equal(gc_urls(gc, DB_GC_CACHED_IMAGES, 0, 1), /* a dry run takes no lock */
                        "https://img.test/back,https://img.test/gone");
    err[0] = '\0';
    {
        struct db_gc_list l = { 0 };
        char scanned[256];
        assert_int_equal(db_gc_urls(gc, DB_GC_CACHED_IMAGES, 0, 0, "", 100, &l, scanned, sizeof scanned,
                                    err, sizeof err), -1);
        assert_int_equal(l.n, 0);
    }
    assert_non_null(strstr(err, "lock timeout"));
    assert_sql("SELECT count(*) FROM cached_images", "2");
    sql_ok("COMMIT");
    assert_string_equal(gc_urls(gc, DB_GC_CACHED_IMAGES, 0, 0), "https://img.test/gone");
    assert_sql("SELECT string_agg(source_url, ',') FROM cached_images", "https://img.test/back");

    /* 2: gc's batch (on admin) holds the lock and has removed the row of
     * the URL no chat references any more */
    sql_ok("DELETE FROM chats WHERE chat_id = 'g'");
    sql_ok("BEGIN");
    sql_ok("SELECT pg_advisory_xact_lock(" GC_LOCK_KEY ")");
    sql_ok("DELETE FROM cached_images WHERE source_url = 'https://img.test/back'");
    err[0] = '\0';
    assert_int_equal(db_upsert_chats(import, &chat, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "lock timeout"));
    assert_sql("SELECT count(*) FROM chats", "0"); /* rolled back */
    sql_ok("COMMIT");
    assert_int_equal(db_upsert_chats(import, &chat, 1, err, sizeof err), 0);
    assert_int_equal(db_lookup_urls(import, &url, 1, 0, &st, err, sizeof err), 0);
    assert_int_equal(st, DB_URL_NONE); /* announced again */
    db_close(gc);
    db_close(import);
}

/* Without a server these tests cannot run, and must not look as if they
 * passed. */
static void test_database_url_is_set(void **state)
{
    (void)state;
    fail_msg("DATABASE_URL is not set: test_db needs a PostgreSQL server "
             "(tests/run.sh provides one; or export DATABASE_URL=postgresql://...)");
}

int main(void)
{
    const struct CMUnitTest no_server[] = {
        cmocka_unit_test(test_database_url_is_set),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_error_hides_password),
        cmocka_unit_test(test_connect_refuses_bad_url_without_password),
        cmocka_unit_test_setup_teardown(test_ok_and_reset, setup_empty, teardown),
        cmocka_unit_test_setup_teardown(test_migrate, setup_empty, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_seeds_public_base, setup_empty, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_chats, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_duplicates_in_batch, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_urls, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_commit_images_shares_blobs, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_record_failures_accumulate, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_each_uncached, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_each_stale, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_stale_and_mark_refreshed, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_initials, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_chat_avatars, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_chat_names, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_gc_urls, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_gc_blob_race, setup_migrated, teardown),
        cmocka_unit_test_setup_teardown(test_gc_import_race, setup_migrated, teardown),
    };
    log_init("test_db", LOG_WARN);
    dburl = getenv("DATABASE_URL");
    if (dburl == NULL || *dburl == '\0')
        return cmocka_run_group_tests_name("db", no_server, NULL, NULL);
    return cmocka_run_group_tests_name("db", tests, group_setup, group_teardown);
}
