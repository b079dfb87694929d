#include "offsets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void offsets_init(struct offsets *o, size_t window_cap)
{
    o->table = NULL;
    o->window_cap = window_cap;
    o->seen = NULL;
    o->n_seen = 0;
}

static void tracker_free(struct offsets_partition *t)
{
    free(t->topic);
    free(t->offsets);
    free(t->done);
    free(t);
}

void offsets_clear(struct offsets *o)
{
    struct offsets_partition *t, *tmp;
    HASH_ITER(hh, o->table, t, tmp) {
        HASH_DEL(o->table, t);
        t->attached = 0;
        offsets_release(t);
    }
    for (size_t i = 0; i < o->n_seen; i++)
        free(o->seen[i]);
    free(o->seen);
    o->seen = NULL;
    o->n_seen = 0;
}

static void make_key(char *key, size_t len, const char *topic, int32_t partition)
{
    snprintf(key, len, "%s\x1f%d", topic, (int)partition);
}

int offsets_first_assignment(struct offsets *o, const char *topic, int32_t partition)
{
    char key[300];
    char **grown;

    make_key(key, sizeof key, topic, partition);
    for (size_t i = 0; i < o->n_seen; i++)
        if (strcmp(o->seen[i], key) == 0)
            return 0;
    /* out of memory: taken as seen, so a replay never starts twice */
    grown = realloc(o->seen, (o->n_seen + 1) * sizeof *grown);
    if (grown == NULL)
        return 0;
    o->seen = grown;
    o->seen[o->n_seen] = strdup(key);
    if (o->seen[o->n_seen])
        o->n_seen++;
    return 1;
}

struct offsets_partition *offsets_next(struct offsets *o, struct offsets_partition *t)
{
    return t == NULL ? o->table : t->hh.next;
}

size_t offsets_unfinished(const struct offsets_partition *t)
{
    return t->len - t->n_done;
}

int offsets_set_paused(struct offsets_partition *t, int paused)
{
    if (t->paused == paused)
        return 0;
    t->paused = paused;
    return 1;
}

struct offsets_partition *offsets_find(struct offsets *o, const char *topic, int32_t partition)
{
    char key[300];
    struct offsets_partition *t = NULL;
    make_key(key, sizeof key, topic, partition);
    HASH_FIND_STR(o->table, key, t);
    return t;
}

struct offsets_partition *offsets_assign(struct offsets *o, const char *topic, int32_t partition)
{
    struct offsets_partition *t = offsets_find(o, topic, partition);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->topic = strdup(topic);
    t->offsets = calloc(o->window_cap, sizeof *t->offsets);
    t->done = calloc(o->window_cap, 1);
    if (t->topic == NULL || t->offsets == NULL || t->done == NULL) {
        tracker_free(t);
        return NULL;
    }
    make_key(t->key, sizeof t->key, topic, partition);
    t->partition = partition;
    t->cap = o->window_cap;
    t->window_cap = o->window_cap;
    t->next_store = -1;
    t->last_consumed = -1;
    t->attached = 1;
    t->refs = 1;
    t->paused = -1;
    HASH_ADD_STR(o->table, key, t);
    return t;
}

struct offsets_partition *offsets_revoke(struct offsets *o, const char *topic, int32_t partition)
{
    struct offsets_partition *t = offsets_find(o, topic, partition);
    if (t == NULL)
        return NULL;
    HASH_DEL(o->table, t);
    t->attached = 0;
    return t;
}

/* The window cap is soft (the caller pauses the partition at it); the ring
 * still grows, because messages fetched before a pause may still arrive. */
static int grow(struct offsets_partition *t)
{
    size_t ncap = t->cap * 2;
    int64_t *off = malloc(ncap * sizeof *off);
    uint8_t *done = malloc(ncap);
    if (off == NULL || done == NULL) {
        free(off);
        free(done);
        return -1;
    }
    for (size_t i = 0; i < t->len; i++) {
        off[i] = t->offsets[(t->head + i) % t->cap];
        done[i] = t->done[(t->head + i) % t->cap];
    }
    free(t->offsets);
    free(t->done);
    t->offsets = off;
    t->done = done;
    t->head = 0;
    t->cap = ncap;
    return 0;
}

int offsets_push(struct offsets_partition *t, int64_t offset, uint64_t *seq)
{
    size_t pos;
    if (t->len == t->cap && grow(t) != 0)
        return -1;
    pos = (t->head + t->len) % t->cap;
    t->offsets[pos] = offset;
    t->done[pos] = 0;
    *seq = t->base_seq + t->len;
    t->len++;
    t->refs++;
    if (offset > t->last_consumed)
        t->last_consumed = offset;
    return 0;
}

void offsets_finish(struct offsets_partition *t, uint64_t seq)
{
    if (seq < t->base_seq || seq >= t->base_seq + t->len)
        return;
    size_t pos = (t->head + (seq - t->base_seq)) % t->cap;
    if (!t->done[pos]) {
        t->done[pos] = 1;
        t->n_done++;
    }
}

int offsets_advance(struct offsets_partition *t, int64_t *store_offset)
{
    int moved = 0;
    while (t->len > 0 && t->done[t->head]) {
        t->next_store = t->offsets[t->head] + 1;
        t->head = (t->head + 1) % t->cap;
        t->len--;
        t->n_done--;
        t->base_seq++;
        moved = 1;
    }
    if (moved)
        *store_offset = t->next_store;
    return moved;
}

int offsets_full(const struct offsets_partition *t)
{
    return t->len - t->n_done >= t->window_cap || t->len >= t->window_cap * OFFSETS_RING_FACTOR;
}

void offsets_release(struct offsets_partition *t)
{
    if (--t->refs == 0)
        tracker_free(t);
}
