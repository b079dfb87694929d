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
    int presets[CONFIG_RENDITIONS_MAX]; /* IMGCACHE_RENDITIONS */
    size_t n_presets;
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

/* After the database's figures: the renditions, against the presets. */
static void print_renditions_human(const struct db_stats *s, const char *presets, FILE *out)
{
    fprintf(out, "%-*s %s rows; %s blob%s missing one of %s px; %s given up\n", LABEL_WIDTH, "renditions",
            num(s->renditions), num(s->renditions_missing), s->renditions_missing == 1 ? "" : "s", presets,
            num(s->renders_given_up));
}

/* "12,345", or "missing" for a topic the cluster does not have. */
static const char *events_of(const struct backlog_topic *t)
{
    return t->exists ? num(t->events) : "missing";
}

/* One group's backlog: the topics it reads, e.g. "(image-needed 3, image-needed-retry 0)". */
static void print_group_human(const struct backlog *k, const struct backlog_group *g, int first, FILE *out)
{
    const char *sep = "";

    fprintf(out, "%-*s %s %s (", LABEL_WIDTH, first ? "backlog" : "", g->id, num(g->total));
    for (int t = 0; t < BACKLOG_CONSUMED_TOPICS; t++) {
        if (!g->reads[t])
            continue;
        fprintf(out, "%s%s %s", sep, k->topics[t].name, num(g->backlog[t]));
        sep = ", ";
    }
    fprintf(out, ")\n");
}

static void print_kafka_human(const struct backlog *k, FILE *out)
{
    const struct backlog_topic *t = k->topics;
    int missing = 0;

    fprintf(out, "%-*s %s %s, %s %s, %s %s (dead letters: no group consumes them)\n", LABEL_WIDTH,
            "kafka events", t[BACKLOG_MAIN].name, events_of(&t[BACKLOG_MAIN]), t[BACKLOG_RETRY].name,
            events_of(&t[BACKLOG_RETRY]), t[BACKLOG_DLT].name, events_of(&t[BACKLOG_DLT]));
    fprintf(out, "%-*s %s %s, %s %s (dead letters: no group consumes them)\n", LABEL_WIDTH, "render events",
            t[BACKLOG_STORED].name, events_of(&t[BACKLOG_STORED]), t[BACKLOG_STORED_DLT].name,
            events_of(&t[BACKLOG_STORED_DLT]));
    for (size_t i = 0; i < k->n_groups; i++)
        print_group_human(k, &k->groups[i], i == 0, out);
    for (int i = 0; i < BACKLOG_TOPICS; i++)
        missing |= !t[i].exists;
    if (missing)
        fprintf(out, "%-*s a missing topic is created by `imgcache-producer topics`\n", LABEL_WIDTH, "");
    if (k->groups_note[0])
        fprintf(out, "%-*s %s\n", LABEL_WIDTH, "", k->groups_note);
}

static void print_human(const struct stats *st, const char *presets, FILE *out)
{
    if (st->db_ok) {
        print_db_human(&st->db, out);
        print_renditions_human(&st->db, presets, out);
    } else
        fprintf(out, "%-*s unavailable: %s\n", LABEL_WIDTH, "postgresql", st->db_err);
    if (st->kafka_ok)
        print_kafka_human(&st->kafka, out);
    else
        fprintf(out, "%-*s unavailable: %s\n", LABEL_WIDTH, "kafka", st->kafka_err);
}

/* ---- JSON ---- */

/* {"rows": R, "missing": M, "given_up": G, "presets": [64, ...]} */
static json_t *renditions_json(const struct db_stats *s, const int *presets, size_t n_presets)
{
    json_t *sizes = json_array();

    for (size_t i = 0; i < n_presets; i++)
        json_array_append_new(sizes, json_integer(presets[i]));
    return json_pack("{s:I,s:I,s:I,s:o}", "rows", (json_int_t)s->renditions, "missing",
                     (json_int_t)s->renditions_missing, "given_up", (json_int_t)s->renders_given_up, "presets",
                     sizes);
}

static json_t *db_json(const struct db_stats *s, const int *presets, size_t n_presets)
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
                     "s:{s:I,s:I,s:o},s:s?,s:o}",
                     "chats", (json_int_t)s->chats, "participants", (json_int_t)s->participants,
                     "avatars", "cached", (json_int_t)s->avatars_cached, "contact", (json_int_t)s->avatars_contact,
                     "initials", (json_int_t)s->avatars_initials, "by_network", networks,
                     "images", "cached_images", (json_int_t)s->cached_images, "blobs", (json_int_t)s->blobs,
                     "stored_bytes", (json_int_t)s->stored_bytes, "url_bytes", (json_int_t)s->url_bytes,
                     "dedup", "urls_per_blob", s->blobs > 0 ? (double)s->cached_images / (double)s->blobs : 0.0,
                     "bytes_saved", (json_int_t)(s->url_bytes - s->stored_bytes),
                     "failures", "permanent", (json_int_t)s->failures_permanent, "pending_retry",
                     (json_int_t)s->failures_pending_retry, "by_class", classes,
                     "oldest_refreshed_at", s->oldest_refreshed_at[0] ? s->oldest_refreshed_at : NULL,
                     "renditions", renditions_json(s, presets, n_presets));
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
            if (g->reads[t])
                json_object_set_new(by_topic, k->topics[t].name,
                                    json_pack("{s:I,s:o}", "backlog", (json_int_t)g->backlog[t], "partitions",
                                              partitions_json(&k->topics[t], g->committed[t])));
        json_array_append_new(groups, json_pack("{s:s,s:I,s:o}", "group", g->id, "backlog",
                                                (json_int_t)g->total, "topics", by_topic));
    }
    return json_pack("{s:o,s:s,s:s,s:o,s:s?}", "topics", topics, "dead_letter_topic", k->topics[BACKLOG_DLT].name,
                     "render_dead_letter_topic", k->topics[BACKLOG_STORED_DLT].name, "groups", groups,
                     "groups_note", k->groups_note[0] ? k->groups_note : NULL);
}

static int print_json(const struct stats *st, const int *presets, size_t n_presets, FILE *out)
{
    json_t *root = json_object();
    int rc;

    json_object_set_new(root, "postgresql", st->db_ok ? db_json(&st->db, presets, n_presets) : json_null());
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
        db_stats_read(db, st->presets, st->n_presets, &st->db, st->db_err, sizeof st->db_err) == 0)
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
    char why[256];
    int n = 0, rc = PRODUCER_EXIT_OK;

    if (command_args_parse(cfg, ARG_JSON, 0, &args) != 0)
        return PRODUCER_EXIT_USAGE;
    memset(&st, 0, sizeof st);
    /* checked by config_load() already; parsed here */
    if (config_parse_renditions(cfg->renditions, st.presets, CONFIG_RENDITIONS_MAX, &n, why, sizeof why) != 0) {
        producer_error("IMGCACHE_RENDITIONS: %s", why);
        return PRODUCER_EXIT_USAGE;
    }
    st.n_presets = (size_t)n;
    stats_read(cfg, &st);
    if (args.json) {
        if (print_json(&st, st.presets, st.n_presets, stdout) != 0)
            rc = PRODUCER_EXIT_FAIL;
    } else {
        print_human(&st, cfg->renditions, stdout);
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
