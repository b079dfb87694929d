/* The --drain checks (see drain.h). */
#include "drain.h"

#include <string.h>

#include "errmsg.h"
#include "log.h"

/* 1 when this assignment of the partition started at its beginning. */
static int replaying(struct worker *w, const char *topic, int32_t partition)
{
    struct offsets_partition *t = offsets_find(&w->offsets, topic, partition);
    return t != NULL && t->from_beginning;
}

/* The group's committed offsets of parts, asked through a handle of its
 * own that never joins the group: this worker's own consumer, a member
 * waiting in a rebalance (as when it got no assignment), has its OffsetFetch
 * held until the rebalance ends. */
static int group_committed(struct worker *w, rd_kafka_topic_partition_list_t *parts, char *err,
                           size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t e;
    char errstr[512];
    int rc = -1;

    kafka_conf_set_logger(conf);
    if (kafka_conf_apply(conf, w->cfg, w->worker_id, err, errlen) != 0)
        goto out;
    if (rd_kafka_conf_set(conf, "group.id", w->cfg->group, errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        errmsg_set(err, errlen, "cannot configure the offsets reader: %s", errstr);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        errmsg_set(err, errlen, "cannot create the offsets reader: %s", errstr);
        goto out;
    }
    conf = NULL; /* the handle owns it */
    e = rd_kafka_committed(rk, parts, DRAIN_OFFSETS_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        errmsg_set(err, errlen, "cannot read the group's committed offsets: %s", rd_kafka_err2str(e));
        goto out;
    }
    rc = 0;
out:
    if (rk != NULL)
        rd_kafka_destroy(rk); /* never subscribed: no group to leave */
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    return rc;
}

/* Events of the topic the group has not consumed: its end offsets minus
 * its committed ones (from the beginning with --from-beginning when
 * honour_from_beginning: this run replays them), for a drain that has no
 * partition of its own. -1 with a reason when the broker cannot tell. */
static long long drain_group_lag(struct worker *w, int honour_from_beginning, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(w->rk, w->cfg->topic, NULL);
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t e;
    long long lag = -1;

    if (rkt == NULL) {
        errmsg_set(err, errlen, "cannot look up topic %s", w->cfg->topic);
        goto out;
    }
    e = rd_kafka_metadata(w->rk, 0, rkt, &md, BROKER_ASK_TIMEOUT_MS);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1) {
        errmsg_set(err, errlen, "no metadata for topic %s: %s", w->cfg->topic, rd_kafka_err2str(e));
        goto out;
    }
    if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        lag = 0; /* no topic, no events */
        goto out;
    }
    parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, w->cfg->topic, md->topics[0].partitions[i].id);
    if (group_committed(w, parts, err, errlen) != 0)
        goto out;
    lag = 0;
    for (int i = 0; i < parts->cnt; i++) {
        int64_t low = 0, high = 0, pos = parts->elems[i].offset;
        e = rd_kafka_query_watermark_offsets(w->rk, w->cfg->topic, parts->elems[i].partition, &low, &high, BROKER_ASK_TIMEOUT_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            errmsg_set(err, errlen, "cannot read the end offsets of %s: %s", w->cfg->topic, rd_kafka_err2str(e));
            lag = -1;
            goto out;
        }
        if (pos < low || (honour_from_beginning && w->cfg->from_beginning))
            pos = low;
        if (high > pos)
            lag += high - pos;
    }
out:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return lag;
}

/* Partitions of the assignment with nothing consumed in this run, with
 * the group's committed offsets (one request for all of them), unless this
 * run replays them from the beginning (--from-beginning): the group's
 * offsets, at the end, say nothing about what this run has read. *unread
 * stays NULL when there are none; -1 when the broker did not answer. */
static int committed_of_unread(struct worker *w, const rd_kafka_topic_partition_list_t *assignment,
                               rd_kafka_topic_partition_list_t **unread)
{
    *unread = NULL;
    for (int i = 0; i < assignment->cnt; i++) {
        if (assignment->elems[i].offset >= 0 ||
            replaying(w, assignment->elems[i].topic, assignment->elems[i].partition))
            continue;
        if (*unread == NULL)
            *unread = rd_kafka_topic_partition_list_new(assignment->cnt);
        rd_kafka_topic_partition_list_add(*unread, assignment->elems[i].topic, assignment->elems[i].partition);
    }
    if (*unread && rd_kafka_committed(w->rk, *unread, BROKER_ASK_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return 0;
}

/* The end offsets of the assigned retry partitions, asked of the broker:
 * the cached ones may predate a retry just published (by us or by another
 * worker into a partition we own). One request (END as the time: the end
 * offset). -1 when the broker did not answer. */
static int retry_ends(struct worker *w, const rd_kafka_topic_partition_list_t *assignment,
                      rd_kafka_topic_partition_list_t **ends)
{
    *ends = rd_kafka_topic_partition_list_new(assignment->cnt);
    for (int i = 0; i < assignment->cnt; i++)
        if (strcmp(assignment->elems[i].topic, w->retry_topic) == 0)
            rd_kafka_topic_partition_list_add(*ends, assignment->elems[i].topic,
                                              assignment->elems[i].partition)->offset = RD_KAFKA_OFFSET_END;
    if ((*ends)->cnt > 0 &&
        rd_kafka_offsets_for_times(w->rk, *ends, BROKER_ASK_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return 0;
}

/* 1 when partition p (its position in p->offset) is read to its end. */
static int partition_at_end(struct worker *w, const rd_kafka_topic_partition_t *p,
                            const rd_kafka_topic_partition_list_t *unread,
                            const rd_kafka_topic_partition_list_t *ends)
{
    int64_t low = 0, high = 0, pos = p->offset;
    rd_kafka_topic_partition_t *e;

    if (pos < 0 && unread && !replaying(w, p->topic, p->partition)) {
        rd_kafka_topic_partition_t *c = rd_kafka_topic_partition_list_find(unread, p->topic, p->partition);
        pos = c ? c->offset : -1;
    }
    /* every fetch response refreshes the cached end offset; asking the
     * broker waits behind the fetcher's long poll, so only when unknown */
    if ((rd_kafka_get_watermark_offsets(w->rk, p->topic, p->partition, &low, &high) !=
             RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 || low < 0) &&
        rd_kafka_query_watermark_offsets(w->rk, p->topic, p->partition, &low, &high,
                                         WATERMARK_ASK_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    e = rd_kafka_topic_partition_list_find(ends, p->topic, p->partition);
    if (e && (e->err != RD_KAFKA_RESP_ERR_NO_ERROR || e->offset < 0))
        return 0;
    if (e && e->offset > high)
        high = e->offset;
    if (pos < 0)
        pos = low; /* no commit: the group starts at the beginning */
    if (pos < high) {
        log_debug("event=not_caught_up topic=%s partition=%d position=%lld end=%lld", p->topic,
                  (int)p->partition, (long long)pos, (long long)high);
        return 0;
    }
    return 1;
}

/* 1 when every assigned partition's position is at its end. */
static int drain_caught_up(struct worker *w)
{
    rd_kafka_topic_partition_list_t *assignment = NULL, *unread = NULL, *ends = NULL;
    int ok;

    if (rd_kafka_assignment(w->rk, &assignment) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (assignment->cnt == 0) {
        /* nothing of its own to read (more workers than partitions, or a
         * member between the two steps of a cooperative rebalance): done
         * only when the group as a whole has read everything */
        char why[300];
        rd_kafka_topic_partition_list_destroy(assignment);
        return drain_group_lag(w, 0, why, sizeof why) == 0;
    }
    rd_kafka_position(w->rk, assignment);
    ok = committed_of_unread(w, assignment, &unread) == 0 && retry_ends(w, assignment, &ends) == 0;
    for (int i = 0; i < assignment->cnt && ok; i++)
        ok = partition_at_end(w, &assignment->elems[i], unread, ends);
    if (ends)
        rd_kafka_topic_partition_list_destroy(ends);
    if (unread)
        rd_kafka_topic_partition_list_destroy(unread);
    rd_kafka_topic_partition_list_destroy(assignment);
    return ok;
}

int drain_check(struct worker *w, long long now, char *err, size_t errlen)
{
    const struct config *cfg = w->cfg;

    if (!w->assigned_once && now - w->started_ms > cfg->drain_wait_ms) {
        /* nothing assigned has not drained anything, unless there was
         * nothing to drain */
        char why[300];
        long long lag = drain_group_lag(w, 1, why, sizeof why);
        if (lag == 0) {
            log_info("event=drained reason=\"no partition assignment within %lld ms, and group %s "
                     "has no unconsumed event on %s\"", cfg->drain_wait_ms, cfg->group, cfg->topic);
            return 1;
        }
        if (lag > 0)
            errmsg_set(err, errlen, "not drained: no partition assignment within %lld ms "
                       "(IMGCACHE_DRAIN_WAIT) while group %s has %lld unconsumed events on %s",
                       cfg->drain_wait_ms, cfg->group, lag, cfg->topic);
        else
            errmsg_set(err, errlen, "not drained: no partition assignment within %lld ms "
                       "(IMGCACHE_DRAIN_WAIT), and %s", cfg->drain_wait_ms, why);
        return -1;
    }
    /* only after a while with nothing to do: a backlog's loop is idle for
     * moments too, and the check blocks on the broker; and not while a
     * rebalance may still change the assignment */
    if (w->assigned_once && w->idle_since_ms && now - w->idle_since_ms >= DRAIN_IDLE_MS &&
        now >= w->next_drain_check_ms && !w->rebalance_pending &&
        now - w->last_rebalance_ms >= DRAIN_IDLE_MS) {
        w->next_drain_check_ms = now + DRAIN_CHECK_EVERY_MS;
        if (drain_caught_up(w)) {
            log_info("event=drained reason=\"caught up with every assigned partition\" held=%zu",
                     w->n_in_state[JOB_HELD]);
            return 1;
        }
    }
    return 0;
}
