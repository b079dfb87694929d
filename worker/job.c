/* The job lifecycle (see job.h). */
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>
#include <uthash.h>

struct job **job_queue(struct worker *w, enum job_state s)
{
    switch (s) {
    case JOB_HELD: return &w->q_held;
    case JOB_NEW: return &w->q_new;
    case JOB_WAITING: return &w->q_waiting;
    case JOB_READY: return &w->q_ready;
    case JOB_BREAKER: return &w->q_breaker;
    case JOB_PUBLISH: return &w->q_publish;
    case JOB_COMMIT: return &w->q_commit;
    case JOB_FAILURE_ROW: return &w->q_failure_row;
    case JOB_REVALIDATED: return &w->q_revalidated;
    case JOB_FETCHING:
    case JOB_COMMITTING:
    case JOB_PUBLISHING: return NULL;
    }
    return NULL;
}

void job_move(struct worker *w, struct job *j, enum job_state to)
{
    struct job **from = job_queue(w, j->state);
    struct job **dest = job_queue(w, to);
    if (from)
        DL_DELETE(*from, j);
    w->n_in_state[j->state]--;
    j->state = to;
    w->n_in_state[to]++;
    if (dest)
        DL_APPEND(*dest, j);
}

/* Whatever the job holds of its download: a temporary file, a body. */
void job_drop_download(struct job *j)
{
    if (j->blob_open)
        store_blob_discard(&j->blob);
    j->blob_open = 0;
    body_release(&j->w->bodies, &j->body);
    j->in_memory = 0;
}

void job_free(struct job *j)
{
    struct job_event *e, *tmp;
    LL_FOREACH_SAFE(j->events, e, tmp) {
        offsets_release(e->partition);
        free(e);
    }
    job_drop_download(j);
    resolved_clear(&j->res);
    free(j->data_url);
    free(j->url);
    free(j->origin);
    free(j->msg_key);
    free(j->msg_value);
    free(j);
}

void job_finish(struct worker *w, struct job *j)
{
    struct job_event *e;

    LL_FOREACH(j->events, e)
        offsets_finish(e->partition, e->seq);
    job_remove(w, j);
}

void job_remove(struct worker *w, struct job *j)
{
    struct job **q = job_queue(w, j->state);

    if (q)
        DL_DELETE(*q, j);
    w->n_in_state[j->state]--;
    if (j->in_table)
        HASH_DEL(w->jobs, j);
    w->n_jobs--;
    w->outstanding -= j->n_events;
    job_free(j);
}

void job_add(struct worker *w, struct job *j, enum job_state state)
{
    struct job **q = job_queue(w, state);

    j->state = state;
    w->n_in_state[state]++;
    if (q)
        DL_APPEND(*q, j);
}

struct job *job_find(struct worker *w, const char *url)
{
    struct job *j = NULL;

    HASH_FIND_STR(w->jobs, url, j);
    return j;
}

void job_index(struct worker *w, struct job *j)
{
    HASH_ADD_KEYPTR(hh, w->jobs, j->url, strlen(j->url), j);
    j->in_table = 1;
}

void job_unindex(struct worker *w, struct job *j)
{
    if (j->in_table)
        HASH_DEL(w->jobs, j);
    j->in_table = 0;
}

long long job_size(const struct job *j)
{
    return j->in_memory ? (long long)j->body.len : j->blob.size;
}

/* Timed states whose time has come go on. Held retries stay held while
 * stopping: new work would only lengthen the shutdown. */
void job_wake_timed(struct worker *w)
{
    struct job *j, *tmp;
    long long now = mono_ms();

    w->next_held_due_ms = LLONG_MAX;
    DL_FOREACH_SAFE(w->q_held, j, tmp) {
        if (j->due_ms > now || w->stopping) {
            if (j->due_ms < w->next_held_due_ms)
                w->next_held_due_ms = j->due_ms;
            continue;
        }
        job_move(w, j, JOB_NEW);
    }
    DL_FOREACH_SAFE(w->q_breaker, j, tmp) {
        if (j->due_ms <= now)
            job_move(w, j, JOB_READY);
    }
}

struct job *job_new(struct worker *w, const struct job_message *m, char *url)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return NULL;
    j->w = w;
    j->url = url;
    snprintf(j->src_topic, sizeof j->src_topic, "%s", m->topic);
    j->src_partition = m->partition;
    j->src_offset = m->offset;
    /* keep the message as received: retry and dead letter carry it on */
    j->msg_keylen = m->keylen;
    j->msg_valuelen = m->valuelen;
    j->msg_key = malloc(m->keylen ? m->keylen : 1);
    j->msg_value = malloc(m->valuelen ? m->valuelen : 1);
    if (j->msg_key == NULL || j->msg_value == NULL) {
        j->url = NULL;
        job_free(j);
        return NULL;
    }
    if (m->keylen)
        memcpy(j->msg_key, m->key, m->keylen);
    if (m->valuelen)
        memcpy(j->msg_value, m->value, m->valuelen);
    w->n_jobs++;
    return j;
}
