#ifndef IMGCACHE_OFFSETS_H
#define IMGCACHE_OFFSETS_H
/* Per-partition tracking of dispatched events, for at-least-once delivery
 * with completions out of order: an offset may be stored only when every
 * event before it in the partition is finished. Each assigned partition has
 * a window (a ring) of dispatched offsets in order, each with a done flag;
 * offsets_advance() pops the finished prefix and says what to store.
 * An unfinished event at the head (a retry held until due) keeps the
 * stored offset where it is but not the events behind it: the window
 * counts unfinished events, and the ring of finished ones waiting behind
 * that head is bounded separately (OFFSETS_RING_FACTOR).
 *
 * Events hold a reference to their partition's tracker, so a tracker whose
 * partition was revoked stays alive (detached) until its last event ends.
 * Ownership: offsets_assign() creates trackers owned by the table;
 * offsets_revoke() detaches one; the last offsets_release() frees it. */
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "errmsg.h"

/* The ring may hold this many times the window of events, most of them
 * finished behind an unfinished head, before offsets_full() says pause:
 * 9 bytes each, so 16 x 4096 is under 600 KiB per partition. */
#define OFFSETS_RING_FACTOR 16

struct offsets_partition {
    char key[300];          /* "topic\x1fpartition": the table's key */
    char *topic;
    int32_t partition;
    int64_t *offsets;       /* ring of dispatched offsets */
    uint8_t *done;
    size_t cap, head, len;
    size_t n_done;          /* finished, in the ring behind an unfinished one */
    size_t window_cap;      /* soft cap on unfinished: offsets_full() says pause */
    uint64_t base_seq;      /* sequence number of offsets[head] */
    int64_t next_store;     /* offset to store next time, -1 when nothing */
    int64_t last_consumed;  /* highest offset dispatched, -1 when none */
    int attached;           /* 0 once revoked */
    int refs;               /* events in flight + 1 while attached */
    int paused;             /* as last told to librdkafka; -1 unknown */
    int from_beginning;     /* this assignment starts at the partition's
                             * beginning, not at the group's committed offset
                             * (--from-beginning): the owner sets it */
    UT_hash_handle hh;
};

struct offsets {
    struct offsets_partition *table;   /* attached trackers */
    size_t window_cap;      /* max events in flight per partition */
    char **seen;            /* keys of every partition ever assigned */
    size_t n_seen;
};

void offsets_init(struct offsets *o, size_t window_cap);
/* Frees every attached tracker (detached ones are freed by their events). */
void offsets_clear(struct offsets *o);

struct offsets_partition *offsets_find(struct offsets *o, const char *topic, int32_t partition);
/* The attached trackers in turn: offsets_next(o, NULL) is the first, NULL
 * follows the last. The table must not change meanwhile. */
struct offsets_partition *offsets_next(struct offsets *o, struct offsets_partition *t);
/* 1 the first time this process is assigned the partition (when
 * --from-beginning replays it), else 0; also 0 when out of memory. */
int offsets_first_assignment(struct offsets *o, const char *topic, int32_t partition);
/* Events dispatched and not finished. */
size_t offsets_unfinished(const struct offsets_partition *t);
/* Records whether the partition is paused (as told to librdkafka); 1 when
 * that changes it, so the caller tells librdkafka. */
int offsets_set_paused(struct offsets_partition *t, int paused);
struct offsets_partition *offsets_assign(struct offsets *o, const char *topic, int32_t partition);
/* Removes the tracker from the table; returns it still referenced by its
 * events (the caller drops the table's reference with offsets_release). */
struct offsets_partition *offsets_revoke(struct offsets *o, const char *topic, int32_t partition);

/* Records a dispatched offset; *seq identifies it for offsets_finish.
 * -1 only when out of memory. */
int offsets_push(struct offsets_partition *t, int64_t offset, uint64_t *seq) MUST_CHECK;
void offsets_finish(struct offsets_partition *t, uint64_t seq);
/* Pops the finished prefix. Returns 1 and the offset to store (last
 * finished + 1) when it moved, else 0. */
int offsets_advance(struct offsets_partition *t, int64_t *store_offset);
/* 1 when window_cap events are unfinished, or the ring holds
 * OFFSETS_RING_FACTOR windows (finished ones behind an unfinished head). */
int offsets_full(const struct offsets_partition *t);
void offsets_release(struct offsets_partition *t);

#endif
