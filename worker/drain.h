#ifndef IMGCACHE_DRAIN_H
#define IMGCACHE_DRAIN_H
/* --drain: has this worker, or the group as a whole, read everything?
 * These calls ask the broker and block for up to a few seconds.
 *
 * Ownership: nothing is returned that the caller must free. */
#include "worker_private.h"

/* Events of the topic the group has not consumed: its end offsets minus
 * its committed ones (from the beginning with --from-beginning when
 * honour_from_beginning). -1 with a reason when the broker cannot tell. */
long long drain_group_lag(struct worker *w, int honour_from_beginning, char *err, size_t errlen);
/* 1 when every assigned partition's position is at its end (with no
 * assignment: when the group has consumed everything). */
int drain_caught_up(struct worker *w);

#endif
