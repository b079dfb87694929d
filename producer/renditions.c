#include "producer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_render.h"
#include "event.h"
#include "hash.h"
#include "kafka.h"
#include "log.h"

#define RENDITIONS_BATCH 500

static const char renditions_usage[] =
    "Usage: imgcache-producer [options] renditions backfill\n"
    "\n"
    "Publishes an image-stored event (IMGCACHE_STORED_TOPIC) for every stored\n"
    "blob that lacks one of the IMGCACHE_RENDITIONS presets and was not given up\n"
    "(render_failures), so imgcache-renderer renders what is missing: renditions\n"
    "for a cache made before the renderer ran, or an event a worker could not\n"
    "publish. Safe to repeat. Prints published=N.\n";

/* Publishes one batch; -1 with a message. */
static int publish_batch(const struct config *cfg, struct kafka_producer *kp, const struct db_render_list *l,
                         long long *published, char *err, size_t errlen)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct db_render_blob *b = &l->items[i];
        struct stored_event ev = {
            .storage_key = b->storage_key, .content_type = b->content_type,
            .byte_size = b->byte_size, .produced_at_ms = event_now_ms(),
        };
        char *value;
        int rc;

        snprintf(ev.sha256, sizeof ev.sha256, "%s", b->sha256);
        value = stored_event_encode(&ev, err, errlen);
        if (value == NULL)
            return -1;
        rc = kafka_produce(kp, cfg->stored_topic, b->sha256, strlen(b->sha256), value, strlen(value), NULL, 0,
                           NULL, err, errlen);
        free(value);
        if (rc != 0)
            return -1;
        (*published)++;
    }
    kafka_producer_poll(kp);
    return 0;
}

/* Every blob missing a preset, in sha256 order, a batch at a time. */
static int backfill_renditions(const struct config *cfg, struct db *db, struct kafka_producer *kp,
                               long long *published, char *err, size_t errlen)
{
    int presets[CONFIG_RENDITIONS_MAX], n;
    char after[HASH_HEX_LEN + 1] = "";
    char why[300];

    if (config_parse_renditions(cfg->renditions, presets, CONFIG_RENDITIONS_MAX, &n, why, sizeof why) != 0) {
        errmsg_set(err, errlen, "IMGCACHE_RENDITIONS: %s", why);
        return -1;
    }
    for (int done = 0; !done;) {
        struct db_render_list l = { 0 };
        int rc;

        if (producer_stop) {
            errmsg_set(err, errlen, "interrupted");
            return -1;
        }
        rc = db_render_missing(db, presets, (size_t)n, after, RENDITIONS_BATCH, &l, err, errlen);
        if (rc == 0)
            rc = publish_batch(cfg, kp, &l, published, err, errlen);
        if (rc == 0 && l.n > 0)
            snprintf(after, sizeof after, "%s", l.items[l.n - 1].sha256);
        done = l.n == 0;
        db_render_list_release(&l);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* renditions backfill: see renditions_usage. */
int cmd_renditions(const struct config *cfg)
{
    struct db *db = NULL;
    struct kafka_producer *kp = NULL;
    long long published = 0;
    char err[512];
    int rc = PRODUCER_EXIT_FAIL;

    if (cfg->nargs == 2 && (strcmp(cfg->args[1], "--help") == 0 || strcmp(cfg->args[1], "-h") == 0)) {
        fputs(renditions_usage, stdout);
        return PRODUCER_EXIT_OK;
    }
    if (cfg->nargs != 2 || strcmp(cfg->args[1], "backfill") != 0) {
        producer_error("renditions: the only subcommand is backfill (see renditions --help)");
        return PRODUCER_EXIT_USAGE;
    }
    if (db_connect(cfg->database_url, &db, err, sizeof err) != 0 || db_check_schema(db, err, sizeof err) != 0 ||
        kafka_producer_new(cfg, PRODUCER_NAME, &kp, err, sizeof err) != 0) {
        producer_error("%s", err);
        goto out;
    }
    if (backfill_renditions(cfg, db, kp, &published, err, sizeof err) != 0) {
        producer_error("renditions backfill: %s", err);
        goto out;
    }
    if (kafka_producer_flush(kp, 30000, err, sizeof err) != 0) {
        producer_error("renditions backfill: %s", err);
        goto out;
    }
    printf("published=%lld\n", published);
    log_info("event=renditions_backfill_done published=%lld", published);
    rc = PRODUCER_EXIT_OK;
out:
    if (kp && rc != PRODUCER_EXIT_OK && kafka_producer_flush(kp, 5000, err, sizeof err) != 0)
        producer_warn("event=publish_incomplete reason=\"%s\"", err);
    kafka_producer_free(kp);
    db_close(db);
    return rc;
}
