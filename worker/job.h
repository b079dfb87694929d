#ifndef IMGCACHE_JOB_H
#define IMGCACHE_JOB_H
/* The job lifecycle: one job per distinct URL in flight in this process,
 * standing for every event of that URL not yet finished. A job is in
 * exactly one state (worker_private.h) and in that state's queue, when the
 * state has one. This is the only code that creates, moves or removes a
 * job.
 *
 * Ownership: job_new() returns a job counted in w->n_jobs but in no queue
 * (job_add) and not in w->jobs (job_index); it owns url (taken) and a copy
 * of the message's key and value. job_finish() and job_remove() free the
 * job; job_free() alone is for a job in no queue and no table. */
#include "worker_private.h"

/* The queue of state s, or NULL for a state without one (FETCHING,
 * PUBLISHING, COMMITTING: the job is with libcurl, librdkafka or the
 * committer). */
struct job **job_queue(struct worker *w, enum job_state s);
void job_move(struct worker *w, struct job *j, enum job_state to);
/* Drops whatever the job holds of its download: a temporary file, a body. */
void job_drop_download(struct job *j);
void job_free(struct job *j);
/* Every event of the job is finished: marks their offsets, then
 * job_remove(). */
void job_finish(struct worker *w, struct job *j);
/* Takes j out of everything (its queue, the state count, the URL table,
 * the counts of jobs and unfinished events) and frees it. Its events'
 * offsets stay unfinished: they are consumed again, here or elsewhere. */
void job_remove(struct worker *w, struct job *j);
/* Puts a new job (from job_new) in state and its queue. */
void job_add(struct worker *w, struct job *j, enum job_state state);
/* The job of url in the table (the one new events of url join), or NULL. */
struct job *job_find(struct worker *w, const char *url);
/* Enters j in the table by its URL / takes it out (new events of the URL
 * then start a job of their own). */
void job_index(struct worker *w, struct job *j);
void job_unindex(struct worker *w, struct job *j);
/* Bytes downloaded so far. */
long long job_size(const struct job *j);
/* Timed states whose time has come go on. */
void job_wake_timed(struct worker *w);
/* The message an event came in (borrowed: job_new copies what it keeps). */
struct job_message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key, *value;
    size_t keylen, valuelen;
};

/* A job for url (taken on success; NULL: an undecodable event) from
 * message m. NULL when out of memory. */
struct job *job_new(struct worker *w, const struct job_message *m, char *url);

#endif
