/* The --drain checks (see drain.h). */
#include "drain.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utlist.h>
#include <uthash.h>

#include "errmsg.h"
#include "event.h"
#include "hash.h"
#include "log.h"
#include "netguard.h"
#include "retry.h"

/* 1 when this assignment of the partition started at its beginning. */
static int replaying(struct worker *w, const char *topic, int32_t partition)
{
    struct ptrack *t = offsets_find(&w->offsets, topic, partition);
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
long long drain_group_lag(struct worker *w, int honour_from_beginning, char *err, size_t errlen)
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

/* 1 when every assigned partition's position is at its end. */
int drain_caught_up(struct worker *w)
{
    rd_kafka_topic_partition_list_t *assignment = NULL, *unread = NULL, *ends = NULL;
    int ok = 1;

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
    /* partitions with nothing consumed in this run: their committed offset
     * tells where the group is (one request for all of them), unless this
     * run replays them from the beginning (--from-beginning): the group's
     * offsets, at the end, say nothing about what this run has read */
    for (int i = 0; i < assignment->cnt; i++) {
        if (assignment->elems[i].offset >= 0 ||
            replaying(w, assignment->elems[i].topic, assignment->elems[i].partition))
            continue;
        if (unread == NULL)
            unread = rd_kafka_topic_partition_list_new(assignment->cnt);
        rd_kafka_topic_partition_list_add(unread, assignment->elems[i].topic, assignment->elems[i].partition);
    }
    if (unread && rd_kafka_committed(w->rk, unread, BROKER_ASK_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        ok = 0;
    /* the cached end offsets of the retry topic may predate a retry just
     * published (by us or by another worker into a partition we own): ask
     * the broker, all in one request (END as the time: the end offset) */
    if (ok) {
        ends = rd_kafka_topic_partition_list_new(assignment->cnt);
        for (int i = 0; i < assignment->cnt; i++)
            if (strcmp(assignment->elems[i].topic, w->retry_topic) == 0)
                rd_kafka_topic_partition_list_add(ends, assignment->elems[i].topic,
                                                  assignment->elems[i].partition)->offset = RD_KAFKA_OFFSET_END;
        if (ends->cnt > 0 && rd_kafka_offsets_for_times(w->rk, ends, BROKER_ASK_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
            ok = 0;
    }
    for (int i = 0; i < assignment->cnt && ok; i++) {
        rd_kafka_topic_partition_t *p = &assignment->elems[i];
        int64_t low = 0, high = 0, pos = p->offset;
        if (pos < 0 && unread && !replaying(w, p->topic, p->partition)) {
            rd_kafka_topic_partition_t *c = rd_kafka_topic_partition_list_find(unread, p->topic, p->partition);
            pos = c ? c->offset : -1;
        }
        /* every fetch response refreshes the cached end offset; asking the
         * broker waits behind the fetcher's long poll, so only when unknown */
        if ((rd_kafka_get_watermark_offsets(w->rk, p->topic, p->partition, &low, &high) !=
                 RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 || low < 0) &&
            rd_kafka_query_watermark_offsets(w->rk, p->topic, p->partition, &low, &high, WATERMARK_ASK_TIMEOUT_MS) !=
                RD_KAFKA_RESP_ERR_NO_ERROR) {
            ok = 0;
            break;
        }
        if (ends) {
            rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(ends, p->topic, p->partition);
            if (e && (e->err != RD_KAFKA_RESP_ERR_NO_ERROR || e->offset < 0)) {
                ok = 0;
                break;
            }
            if (e && e->offset > high)
                high = e->offset;
        }
        if (pos < 0)
            pos = low; /* no commit: the group starts at the beginning */
        if (pos < high) {
            log_debug("event=not_caught_up topic=%s partition=%d position=%lld end=%lld", p->topic,
                      (int)p->partition, (long long)pos, (long long)high);
            ok = 0;
        }
    }
    if (ends)
        rd_kafka_topic_partition_list_destroy(ends);
    if (unread)
        rd_kafka_topic_partition_list_destroy(unread);
    rd_kafka_topic_partition_list_destroy(assignment);
    return ok;
}
