#include "producer.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "backlog.h"
#include "db_stats.h"

/* Each Kafka request of stats waits this long: an unreachable cluster
 * costs a few of these, not librdkafka's default minute. */
#define STATS_KAFKA_TIMEOUT_MS 5000
#define LABEL_WIDTH 17
#define BYTES_PER_KIB 1024.0

/* What stats read, and what it could not. */
struct stats {
    struct db_stats db;
    struct backlog kafka;
    int db_ok, kafka_ok;
    char db_err[512], kafka_err[512];
};

/* ---- human-readable ---- */

/* n with thousands separators, in one of NUM_SLOTS rotating buffers: a
 * printf may take up to that many (stats is single-threaded). */
#define NUM_SLOTS 8
static const char *num(long long n)
{
    static char slots[NUM_SLOTS][32];
    static int next;
    char *out = slots[next];

    next = (next + 1) % NUM_SLOTS;
    progress_thousands(n, out, sizeof slots[0]);
    return out;
}

static double percent(long long part, long long whole)
{
    return whole > 0 ? 100.0 * (double)part / (double)whole : 0.0;
}

/* "12,345 bytes" under a KiB, else "1.2 MiB"-style. */
static void format_bytes(long long n, char *out, size_t outlen)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
    double v = (double)n;
    int u = -1;

    if (n < (long long)BYTES_PER_KIB) {
        snprintf(out, outlen, "%lld bytes", n);
        return;
    }
    while (v >= BYTES_PER_KIB && u < 3) {
        v /= BYTES_PER_KIB;
        u++;
    }
    snprintf(out, outlen, "%.1f %s", v, units[u]);
}

static void print_coverage(const char *label, long long cached, long long contact, long long initials,
                           long long chats, FILE *out)
{
    fprintf(out, "%-*s %s chat%s: cached %s (%.1f%%), contact %s (%.1f%%), initials %s (%.1f%%)\n",
            LABEL_WIDTH, label, num(chats), chats == 1 ? "" : "s", num(cached), percent(cached, chats),
            num(contact), percent(contact, chats), num(initials), percent(initials, chats));
}

static void print_db_human(const struct db_stats *s, FILE *out)
{
    char stored[32], saved[32];

    fprintf(out, "%-*s %s (%s participants)\n", LABEL_WIDTH, "chats", num(s->chats), num(s->participants));
    print_coverage("avatars", s->avatars_cached, s->avatars_contact, s->avatars_initials, s->chats, out);
    for (size_t i = 0; i < s->n_networks; i++) {
        const struct db_stats_network *nw = &s->networks[i];
        char label[64];
        snprintf(label, sizeof label, "  %s", nw->network ? nw->network : "(no network)");
        print_coverage(label, nw->cached, nw->contact, nw->initials, nw->chats, out);
    }
    format_bytes(s->stored_bytes, stored, sizeof stored);
    fprintf(out, "%-*s %s URLs, %s blobs, %s stored\n", LABEL_WIDTH, "cached images", num(s->cached_images),
            num(s->blobs), stored);
    format_bytes(s->url_bytes - s->stored_bytes, saved, sizeof saved);
    fprintf(out, "%-*s %.2f URLs per blob, %s not stored twice\n", LABEL_WIDTH, "dedup",
            s->blobs > 0 ? (double)s->cached_images / (double)s->blobs : 0.0, saved);
    fprintf(out, "%-*s %s permanent, %s pending retry\n", LABEL_WIDTH, "failures", num(s->failures_permanent),
            num(s->failures_pending_retry));
    for (size_t i = 0; i < s->n_failures; i++)
        fprintf(out, "  %-*s %s permanent, %s pending retry\n", LABEL_WIDTH - 2, s->failures[i].error_class,
                num(s->failures[i].permanent), num(s->failures[i].pending_retry));
    fprintf(out, "%-*s %s\n", LABEL_WIDTH, "oldest refresh",
            s->oldest_refreshed_at[0] ? s->oldest_refreshed_at : "(nothing cached)");
}

/* "12,345", or "missing" for a topic the cluster does not have. */
static const char *events_of(const struct backlog_topic *t)
{
    return t->exists ? num(t->events) : "missing";
}

static void print_kafka_human(const struct backlog *k, FILE *out)
{
    const struct backlog_topic *t = k->topics;

    fprintf(out, "%-*s %s %s, %s %s, %s %s (dead letters: no group consumes them)\n", LABEL_WIDTH,
            "kafka events", t[BACKLOG_MAIN].name, events_of(&t[BACKLOG_MAIN]), t[BACKLOG_RETRY].name,
            events_of(&t[BACKLOG_RETRY]), t[BACKLOG_DLT].name, events_of(&t[BACKLOG_DLT]));
    for (size_t i = 0; i < k->n_groups; i++) {
        const struct backlog_group *g = &k->groups[i];
        fprintf(out, "%-*s %s %s (%s %s, %s %s)\n", LABEL_WIDTH, i == 0 ? "backlog" : "", g->id, num(g->total),
                t[BACKLOG_MAIN].name, num(g->backlog[BACKLOG_MAIN]), t[BACKLOG_RETRY].name,
                num(g->backlog[BACKLOG_RETRY]));
    }
    if (!t[BACKLOG_MAIN].exists || !t[BACKLOG_RETRY].exists || !t[BACKLOG_DLT].exists)
        fprintf(out, "%-*s a missing topic is created by `imgcache-producer topics`\n", LABEL_WIDTH, "");
    if (k->groups_note[0])
        fprintf(out, "%-*s %s\n", LABEL_WIDTH, "", k->groups_note);
}

static void print_human(const struct stats *st, FILE *out)
{
    if (st->db_ok)
        print_db_human(&st->db, out);
    else
        fprintf(out, "%-*s unavailable: %s\n", LABEL_WIDTH, "postgresql", st->db_err);
    if (st->kafka_ok)
        print_kafka_human(&st->kafka, out);
    else
        fprintf(out, "%-*s unavailable: %s\n", LABEL_WIDTH, "kafka", st->kafka_err);
}

/* ---- JSON ---- */

static json_t *db_json(const struct db_stats *s)
{
    json_t *networks = json_array(), *classes = json_array();

    for (size_t i = 0; i < s->n_networks; i++) {
        const struct db_stats_network *nw = &s->networks[i];
        json_array_append_new(networks, json_pack("{s:s?,s:I,s:I,s:I,s:I}", "network", nw->network,
                                                  "chats", (json_int_t)nw->chats, "cached", (json_int_t)nw->cached,
                                                  "contact", (json_int_t)nw->contact, "initials",
                                                  (json_int_t)nw->initials));
    }
    for (size_t i = 0; i < s->n_failures; i++)
        json_array_append_new(classes, json_pack("{s:s,s:I,s:I}", "error_class", s->failures[i].error_class,
                                                 "permanent", (json_int_t)s->failures[i].permanent,
                                                 "pending_retry", (json_int_t)s->failures[i].pending_retry));
    return json_pack("{s:I,s:I,s:{s:I,s:I,s:I,s:o},s:{s:I,s:I,s:I,s:I},s:{s:f,s:I},"
                     "s:{s:I,s:I,s:o},s:s?}",
                     "chats", (json_int_t)s->chats, "participants", (json_int_t)s->participants,
                     "avatars", "cached", (json_int_t)s->avatars_cached, "contact", (json_int_t)s->avatars_contact,
                     "initials", (json_int_t)s->avatars_initials, "by_network", networks,
                     "images", "cached_images", (json_int_t)s->cached_images, "blobs", (json_int_t)s->blobs,
                     "stored_bytes", (json_int_t)s->stored_bytes, "url_bytes", (json_int_t)s->url_bytes,
                     "dedup", "urls_per_blob", s->blobs > 0 ? (double)s->cached_images / (double)s->blobs : 0.0,
                     "bytes_saved", (json_int_t)(s->url_bytes - s->stored_bytes),
                     "failures", "permanent", (json_int_t)s->failures_permanent, "pending_retry",
                     (json_int_t)s->failures_pending_retry, "by_class", classes,
                     "oldest_refreshed_at", s->oldest_refreshed_at[0] ? s->oldest_refreshed_at : NULL);
}

/* {"partition": P, "committed": C or null, "end": E} for each partition. */
static json_t *partitions_json(const struct backlog_topic *t, const int64_t *committed)
{
    json_t *arr = json_array();

    for (int p = 0; p < t->n_partitions; p++) {
        json_t *c = committed[p] >= 0 ? json_integer((json_int_t)committed[p]) : json_null();
        json_array_append_new(arr, json_pack("{s:i,s:o,s:I}", "partition", p, "committed", c, "end",
                                             (json_int_t)t->end[p]));
    }
    return arr;
}

static json_t *kafka_json(const struct backlog *k)
{
    json_t *topics = json_object(), *groups = json_array();

    for (int i = 0; i < BACKLOG_TOPICS; i++)
        json_object_set_new(topics, k->topics[i].name,
                            json_pack("{s:b,s:i,s:I}", "exists", k->topics[i].exists, "partitions",
                                      k->topics[i].n_partitions, "events", (json_int_t)k->topics[i].events));
    for (size_t i = 0; i < k->n_groups; i++) {
        const struct backlog_group *g = &k->groups[i];
        json_t *by_topic = json_object();
        for (int t = 0; t < BACKLOG_CONSUMED_TOPICS; t++)
            json_object_set_new(by_topic, k->topics[t].name,
                                json_pack("{s:I,s:o}", "backlog", (json_int_t)g->backlog[t], "partitions",
                                          partitions_json(&k->topics[t], g->committed[t])));
        json_array_append_new(groups, json_pack("{s:s,s:I,s:o}", "group", g->id, "backlog",
                                                (json_int_t)g->total, "topics", by_topic));
    }
    return json_pack("{s:o,s:s,s:o,s:s?}", "topics", topics, "dead_letter_topic", k->topics[BACKLOG_DLT].name,
                     "groups", groups, "groups_note", k->groups_note[0] ? k->groups_note : NULL);
}

static int print_json(const struct stats *st, FILE *out)
{
    json_t *root = json_object();
    int rc;

    json_object_set_new(root, "postgresql", st->db_ok ? db_json(&st->db) : json_null());
    json_object_set_new(root, "kafka", st->kafka_ok ? kafka_json(&st->kafka) : json_null());
    json_object_set_new(root, "errors", json_pack("{s:s?,s:s?}", "postgresql", st->db_ok ? NULL : st->db_err,
                                                  "kafka", st->kafka_ok ? NULL : st->kafka_err));
    rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_SORT_KEYS);
    fputc('\n', out);
    json_decref(root);
    return rc;
}

/* ---- the command ---- */

/* Reads both sides; each failure is kept as a message, so that what could
 * be read is still shown. */
static void stats_read(const struct config *cfg, struct stats *st)
{
    struct db *db = NULL;

    if (db_connect(cfg->database_url, &db, st->db_err, sizeof st->db_err) == 0 &&
        db_check_schema(db, st->db_err, sizeof st->db_err) == 0 &&
        db_stats_read(db, &st->db, st->db_err, sizeof st->db_err) == 0)
        st->db_ok = 1;
    db_close(db);
    if (backlog_read(cfg, STATS_KAFKA_TIMEOUT_MS, &st->kafka, st->kafka_err, sizeof st->kafka_err) == 0)
        st->kafka_ok = 1;
}

/* stats [--json]: what is cached and what failed (PostgreSQL), and how many
 * events each consumer group has still to read (Kafka). Exit 1 when either
 * could not be read; the other is printed all the same. */
int cmd_stats(const struct config *cfg)
{
    struct command_args args;
    struct stats st;
    int rc = PRODUCER_EXIT_OK;

    if (command_args_parse(cfg, ARG_JSON, 0, &args) != 0)
        return PRODUCER_EXIT_USAGE;
    memset(&st, 0, sizeof st);
    stats_read(cfg, &st);
    if (args.json) {
        if (print_json(&st, stdout) != 0)
            rc = PRODUCER_EXIT_FAIL;
    } else {
        print_human(&st, stdout);
    }
    fflush(stdout);
    if (!st.db_ok) {
        producer_error("%s", st.db_err);
        rc = PRODUCER_EXIT_FAIL;
    }
    if (!st.kafka_ok) {
        producer_error("%s", st.kafka_err);
        rc = PRODUCER_EXIT_FAIL;
    }
    db_stats_release(&st.db);
    backlog_release(&st.kafka);
    return rc;
}
