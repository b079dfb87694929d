#ifndef IMGCACHE_DRAIN_H
#define IMGCACHE_DRAIN_H
/* --drain: has this worker, or the group as a whole, read everything?
 * These calls ask the broker and block for up to a few seconds.
 *
 * Ownership: nothing is returned that the caller must free. */
#include "errmsg.h"
#include "worker_private.h"

/* One --drain check of the loop (idle since w->idle_since_ms): 1 when
 * drained (every assigned partition read to its end, or no assignment
 * and nothing left to read in the group), -1 with a message when no
 * assignment came within IMGCACHE_DRAIN_WAIT while the group has events
 * left (or the broker cannot tell), 0 to go on. May block on the broker
 * for a few seconds. */
int drain_check(struct worker *w, long long now, char *err, size_t errlen) MUST_CHECK;

#endif
