#ifndef IMGCACHE_HANDOFF_H
#define IMGCACHE_HANDOFF_H
/* The hand-off to the committer (committer.h): stored images (JOB_COMMIT)
 * go over as one batch at a time (JOB_COMMITTING), and come back
 * recorded (finished), failed, or waiting for PostgreSQL (JOB_COMMIT
 * again).
 *
 * Ownership: the batch (w->batch) is the worker's; between submit and
 * collect the committer reads and writes it and the jobs it points to. */
#include "worker_private.h"

/* Takes back a finished batch, if any, and settles its jobs. */
void handoff_collect(struct worker *w);
/* Submits what is stored when the committer is free and the database usable. */
void handoff_submit(struct worker *w);

#endif
