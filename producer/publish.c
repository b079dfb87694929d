#include "producer.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "errmsg.h"
#include "event.h"
#include "log.h"
#include "resolve.h"

/* How long the producer waits for an unreachable cluster at start (a broker
 * restarting) before it says KAFKA_BROKERS may be wrong; Kafka's Java
 * producer blocks up to 60 s (max.block.ms) for the same. */
#define PUBLISH_CLUSTER_WAIT_MS 30000

/* How long publisher_flush() waits for the broker's acknowledgements. */
#define FLUSH_TIMEOUT_MS 60000

struct seen_url {
    UT_hash_handle hh;
    char url[]; /* the key */
};

/* A URL of the current batch that needs a look-up, and who refers to it. */
struct candidate {
    const char *url;
    const struct beeper_chat *chat;
    const struct beeper_participant *participant; /* NULL: the chat's image */
};

void producer_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    progress_break();
    fprintf(stderr, PRODUCER_NAME ": %s\n", msg);
}

int producer_open_db(const struct config *cfg, int check_schema, struct db **out)
{
    char err[512];

    if (db_connect(cfg->database_url, out, err, sizeof err) != 0) {
        producer_error("%s", err);
        return -1;
    }
    if (check_schema && db_check_schema(*out, err, sizeof err) != 0) {
        producer_error("%s", err);
        db_close(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* 1 for the runs that announce URLs from the database (backfill,
 * refresh), 0 for those that read chats (import, sync). */
static int counts_urls(const char *reason)
{
    return strcmp(reason, "backfill") == 0 || strcmp(reason, "refresh") == 0;
}

int publisher_init(struct publisher *p, const struct config *cfg, struct db *db, const char *reason,
                   int quiet, char *err, size_t errlen)
{
    int backfill = counts_urls(reason);

    memset(p, 0, sizeof *p);
    p->cfg = cfg;
    p->db = db;
    p->reason = reason;
    progress_start(&p->progress, reason, backfill ? "urls" : "chats", quiet);
    if (kafka_producer_new(cfg, PRODUCER_NAME, &p->kp, err, errlen) != 0)
        return -1;
    /* learn the topic now: a wrong KAFKA_BROKERS or a missing topic fails
     * here, before any chat is written, and the first event goes out at once */
    if (kafka_producer_prepare(p->kp, cfg->topic, PUBLISH_CLUSTER_WAIT_MS, err, errlen) != 0) {
        publisher_release(p);
        return -1;
    }
    return 0;
}

int producer_start_run(const struct config *cfg, const char *reason, int quiet, struct db **db,
                       struct publisher *pub)
{
    char err[512];

    if (producer_open_db(cfg, 1, db) != 0)
        return -1;
    if (publisher_init(pub, cfg, *db, reason, quiet, err, sizeof err) != 0) {
        producer_error("%s", err);
        return -1;
    }
    return 0;
}

/* 1 when url was not seen before in this run (and is now), 0 when it was,
 * -1 when out of memory. */
static int mark_seen(struct publisher *p, const char *url)
{
    struct seen_url *s = NULL;
    size_t len = strlen(url);

    HASH_FIND(hh, p->seen, url, len, s);
    if (s)
        return 0;
    s = malloc(sizeof *s + len + 1);
    if (s == NULL)
        return -1;
    memcpy(s->url, url, len + 1);
    HASH_ADD_KEYPTR(hh, p->seen, s->url, len, s);
    return 1;
}

/* Counts and logs an image URL that is left out: its chat stays. */
static void drop_url(struct publisher *p, const char *chat_id, const char *participant_id,
                     const char *why)
{
    p->dropped++;
    producer_warn("event=url_dropped chat_id=\"%.80s\" participant_id=\"%.80s\" reason=\"%s\"",
                  chat_id ? chat_id : "", participant_id ? participant_id : "", why);
}

/* Queues one image-needed event; data_url: the data: URL that url is the
 * key of, or NULL. A URL that cannot be an event (over EVENT_MAX_URL or
 * EVENT_MAX_BYTES, not UTF-8) is dropped with a warning, not fatal. */
static int produce_event(struct publisher *p, const char *url, const char *data_url,
                         const char *chat_id, const char *participant_id, const char *account_id,
                         char *err, size_t errlen)
{
    struct event ev = {
        .source_url = (char *)url,
        .data_url = (char *)data_url,
        .chat_id = (char *)chat_id,
        .participant_id = (char *)participant_id,
        .account_id = (char *)account_id,
        .reason = (char *)p->reason,
        .produced_at_ms = event_now_ms(),
    };
    char why[256];
    char *value = event_encode(&ev, why, sizeof why);
    int rc = -1;

    if (value == NULL) {
        drop_url(p, chat_id, participant_id, why);
        rc = 0;
        goto out;
    }
    if (kafka_produce(p->kp, p->cfg->topic, url, strlen(url), value, strlen(value), NULL, 0, NULL,
                      err, errlen) != 0)
        goto out;
    p->published++;
    rc = 0;
out:
    free(value);
    return rc;
}

/* Appends the URL to cands when it is new in this run. */
static int consider(struct publisher *p, struct candidate *cands, size_t *nc, const char *url,
                    const struct beeper_chat *chat, const struct beeper_participant *part)
{
    int fresh;

    if (url == NULL || *url == '\0')
        return 0;
    fresh = mark_seen(p, url);
    if (fresh < 0)
        return -1;
    if (fresh) {
        cands[*nc].url = url;
        cands[*nc].chat = chat;
        cands[*nc].participant = part;
        (*nc)++;
    }
    return 0;
}

/* The batch's image URLs this run has not handled yet, into cands (room
 * for every chat and participant image); dropped ones are counted and
 * logged. -1 when out of memory. */
static int collect_candidates(struct publisher *p, const struct beeper_chat *chats, size_t n,
                              struct candidate *cands, size_t *nc)
{
    for (size_t i = 0; i < n; i++) {
        const struct beeper_chat *c = &chats[i];
        if (c->img_dropped) {
            p->urls++;
            drop_url(p, c->id, NULL, c->img_dropped);
        }
        if (consider(p, cands, nc, c->img_url, c, NULL) != 0)
            return -1;
        for (size_t j = 0; j < c->n_participants; j++) {
            const struct beeper_participant *pt = &c->participants[j];
            if (pt->img_dropped) {
                p->urls++;
                drop_url(p, c->id, pt->id, pt->img_dropped);
            }
            if (consider(p, cands, nc, pt->img_url, c, pt) != 0)
                return -1;
        }
    }
    p->urls += (long long)*nc;
    return 0;
}

/* Looks the candidates up (one round trip) and announces those neither
 * cached nor known to fail. */
static int announce_candidates(struct publisher *p, const struct candidate *cands, size_t nc, char *err,
                               size_t errlen)
{
    const char **urls = calloc(nc, sizeof *urls);
    uint8_t *state = calloc(nc, sizeof *state);
    int rc = -1;

    if (urls == NULL || state == NULL) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nc; i++)
        urls[i] = cands[i].url;
    /* a permanent failure younger than IMGCACHE_FAILURE_TTL is not
     * announced again */
    if (db_lookup_urls(p->db, urls, nc, p->cfg->failure_ttl_ms, state, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < nc; i++) {
        const struct candidate *cd = &cands[i];
        if (state[i] == DB_URL_CACHED) {
            p->already_cached++;
            continue;
        }
        /* failed permanently (younger than the TTL), or any other state a
         * newer look-up may report: only DB_URL_NONE is announced */
        if (state[i] != DB_URL_NONE) {
            p->known_failed++;
            continue;
        }
        if (produce_event(p, cd->url,
                          cd->participant ? cd->participant->img_data_url : cd->chat->img_data_url,
                          cd->chat->id, cd->participant ? cd->participant->id : NULL,
                          cd->chat->account_id, err, errlen) != 0)
            goto out;
    }
    kafka_producer_poll(p->kp);
    rc = 0;
out:
    free(urls);
    free(state);
    return rc;
}

int publisher_add_chats(struct publisher *p, const struct beeper_chat *chats, size_t n,
                        char *err, size_t errlen)
{
    struct candidate *cands = NULL;
    size_t max = 0, nc = 0;
    int rc = -1;

    if (n == 0)
        return 0;
    if (db_upsert_chats(p->db, chats, n, err, errlen) != 0)
        goto out;
    p->chats += (long long)n;
    for (size_t i = 0; i < n; i++) {
        p->participants += (long long)chats[i].n_participants;
        max += 1 + chats[i].n_participants;
    }
    cands = calloc(max, sizeof *cands);
    if (cands == NULL || collect_candidates(p, chats, n, cands, &nc) != 0) {
        errmsg_set(err, errlen, "out of memory");
        goto out;
    }
    rc = nc == 0 ? 0 : announce_candidates(p, cands, nc, err, errlen);
out:
    free(cands);
    return rc;
}

int publisher_add_ref(struct publisher *p, const struct db_url_ref *ref, char *err, size_t errlen)
{
    int fresh = mark_seen(p, ref->source_url);

    if (fresh < 0) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    if (fresh == 0)
        return 0;
    p->urls++;
    if (strncmp(ref->source_url, RESOLVE_DATA_KEY_PREFIX, strlen(RESOLVE_DATA_KEY_PREFIX)) == 0) {
        /* the database keeps a data: URL's key, not its bytes */
        drop_url(p, ref->chat_id, ref->participant_id,
                 "a data: URL: only import or sync, which read the URL itself, can announce it");
        return 0;
    }
    if (produce_event(p, ref->source_url, NULL, ref->chat_id, ref->participant_id, ref->account_id,
                      err, errlen) != 0)
        return -1;
    if (p->published % 1000 == 0)
        kafka_producer_poll(p->kp);
    return 0;
}

/* What the live line counts: URLs for backfill and refresh, chats for
 * import and sync. */
static long long progress_count(const struct publisher *p)
{
    return counts_urls(p->reason) ? p->urls : p->chats;
}

void publisher_progress(struct publisher *p, int force)
{
    char published[32], cached[32], detail[96];

    if (!progress_due(&p->progress, force))
        return;
    if (progress_on_terminal(&p->progress)) {
        progress_thousands(p->published, published, sizeof published);
        progress_thousands(p->already_cached, cached, sizeof cached);
        snprintf(detail, sizeof detail, "%s published, %s already cached", published, cached);
        progress_line(&p->progress, progress_count(p), detail);
        return;
    }
    log_info("event=progress reason=%s chats=%lld participants=%lld urls=%lld published=%lld "
             "already_cached=%lld known_failures=%lld dropped=%lld delivered=%lld",
             p->reason, p->chats, p->participants, p->urls, p->published, p->already_cached,
             p->known_failed, p->dropped, p->kp ? p->kp->delivered : 0);
}

int publisher_flush(struct publisher *p, char *err, size_t errlen)
{
    if (p->kp == NULL)
        return 0;
    return kafka_producer_flush(p->kp, FLUSH_TIMEOUT_MS, err, errlen);
}

void publisher_print_summary(const struct publisher *p, long long bad_lines, FILE *out)
{
    fprintf(out, "chats=%lld participants=%lld urls=%lld published=%lld already_cached=%lld "
            "known_failures=%lld dropped=%lld bad_lines=%lld\n",
            p->chats, p->participants, p->urls, p->published, p->already_cached, p->known_failed,
            p->dropped, bad_lines);
    fflush(out);
}

void publisher_release(struct publisher *p)
{
    struct seen_url *s, *tmp;

    HASH_ITER(hh, p->seen, s, tmp) {
        HASH_DEL(p->seen, s);
        free(s);
    }
    kafka_producer_free(p->kp);
    p->kp = NULL;
}

/* ---- chat batches ---- */

struct beeper_chat *chat_batch_slot(struct chat_batch *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct beeper_chat *grown = realloc(b->items, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        b->items = grown;
        b->cap = cap;
    }
    memset(&b->items[b->n], 0, sizeof b->items[b->n]);
    return &b->items[b->n];
}

void chat_batch_commit(struct chat_batch *b)
{
    b->n++;
}

void chat_batch_clear(struct chat_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        beeper_chat_clear(&b->items[i]);
    b->n = 0;
}

void chat_batch_release(struct chat_batch *b)
{
    chat_batch_clear(b);
    free(b->items);
    b->items = NULL;
    b->cap = 0;
}

/* The end of any run: delivers what was queued, shows the last progress;
 * 0 when everything was delivered (else the error is printed). */
static int deliver_and_end(struct publisher *p)
{
    char err[512];
    int flushed = publisher_flush(p, err, sizeof err);

    publisher_progress(p, 1);
    progress_end(&p->progress);
    if (flushed != 0)
        producer_error("%s", err);
    return flushed;
}

int publisher_finish(struct publisher *p, int done, long long bad, const char *interrupted)
{
    int rc = PRODUCER_EXIT_FAIL;
    int flushed = deliver_and_end(p);

    if (done) {
        publisher_print_summary(p, bad, stdout);
        if (producer_stop)
            producer_error("interrupted%s%s", interrupted ? " " : "", interrupted ? interrupted : "");
        else if (flushed == 0)
            rc = bad > 0 ? PRODUCER_EXIT_BAD_INPUT : PRODUCER_EXIT_OK;
    }
    publisher_release(p);
    return rc;
}

int publisher_ref_step(const struct db_url_ref *ref, void *arg)
{
    struct ref_run *run = arg;

    if (producer_stop)
        return -1;
    if (publisher_add_ref(run->pub, ref, run->err, sizeof run->err) != 0) {
        run->failed = 1;
        return -1;
    }
    publisher_progress(run->pub, 0);
    return 0;
}

void publisher_ref_report(const struct ref_run *run, const char *err)
{
    if (run->failed)
        producer_error("%s", run->err);
    else if (!producer_stop)
        producer_error("%s", err);
}

int publisher_finish_urls(struct publisher *p, int done)
{
    int rc = PRODUCER_EXIT_FAIL;
    int flushed = deliver_and_end(p);

    if (producer_stop) {
        producer_error("interrupted");
    } else if (done) {
        printf("urls=%lld published=%lld\n", p->urls, p->published);
        fflush(stdout);
        if (flushed == 0)
            rc = PRODUCER_EXIT_OK;
    }
    publisher_release(p);
    return rc;
}
