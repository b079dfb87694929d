/* worker/offsets.c: per-partition windows of dispatched offsets. Only the
 * contiguous finished prefix may be stored; the window grows past its soft
 * cap; a revoked tracker lives until its last event releases it (run under
 * valgrind: an early free is a read after free, a late one a leak).
 *
 * offsets.c is in build/libworker.a, which this test links. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "offsets.h"

/* gcc 12 sees that offsets_release() may free the tracker and flags every
 * later use; here the reference counts say it does not (valgrind checks). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif

#define TOPIC "image-needed"

struct ev {
    int64_t offset;
    uint64_t seq;
};

static void push(struct offsets_partition *t, struct ev *e, int64_t offset)
{
    e->offset = offset;
    assert_int_equal(offsets_push(t, offset, &e->seq), 0);
}

/* Finishes one event as the worker does: mark it, then drop its reference. */
static void finish(struct offsets_partition *t, const struct ev *e)
{
    offsets_finish(t, e->seq);
    offsets_release(t);
}

/* offsets_advance() must say `expected` (-1: nothing to store). */
static void expect_store(struct offsets_partition *t, int64_t expected)
{
    int64_t store = -12345;
    int moved = offsets_advance(t, &store);

    if (expected < 0) {
        if (moved)
            fail_msg("offsets_advance moved to %lld, expected no move", (long long)store);
        assert_int_equal(store, -12345); /* untouched */
        return;
    }
    if (!moved)
        fail_msg("offsets_advance did not move, expected %lld", (long long)expected);
    assert_int_equal(store, expected);
}

static void test_assign_find(void **state)
{
    struct offsets o;
    struct offsets_partition *a, *b, *c;

    (void)state;
    offsets_init(&o, 8);
    assert_null(offsets_find(&o, TOPIC, 0));
    a = offsets_assign(&o, TOPIC, 0);
    b = offsets_assign(&o, TOPIC, 1);
    c = offsets_assign(&o, TOPIC "-retry", 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_equal(offsets_assign(&o, TOPIC, 0), a);    /* idempotent */
    assert_ptr_equal(offsets_find(&o, TOPIC, 1), b);
    assert_ptr_equal(offsets_find(&o, TOPIC "-retry", 0), c);
    assert_string_equal(c->topic, TOPIC "-retry");
    assert_int_equal(b->partition, 1);
    assert_int_equal(a->next_store, -1);
    assert_int_equal(a->last_consumed, -1);
    assert_int_equal(a->attached, 1);
    assert_int_equal(a->refs, 1);
    assert_null(offsets_find(&o, TOPIC, 2));
    assert_null(offsets_revoke(&o, TOPIC, 2));
    offsets_clear(&o);
    assert_null(offsets_find(&o, TOPIC, 0));
    offsets_clear(&o); /* twice is harmless */
}

static void test_in_order(void **state)
{
    struct offsets o;
    struct offsets_partition *t;
    struct ev e[5];

    (void)state;
    offsets_init(&o, 8);
    t = offsets_assign(&o, TOPIC, 3);
    expect_store(t, -1);
    for (int i = 0; i < 5; i++)
        push(t, &e[i], 100 + i);
    assert_int_equal(t->last_consumed, 104);
    assert_int_equal(t->refs, 6);
    expect_store(t, -1);
    finish(t, &e[0]);
    expect_store(t, 101);
    expect_store(t, -1);   /* moved once: nothing new */
    for (int i = 1; i < 5; i++)
        finish(t, &e[i]);
    expect_store(t, 105);
    assert_int_equal(t->len, 0);
    assert_int_equal(t->next_store, 105);
    assert_int_equal(t->refs, 1);
    offsets_clear(&o);
}

static void test_out_of_order_stores_prefix(void **state)
{
    struct offsets o;
    struct offsets_partition *t;
    struct ev e[6];

    (void)state;
    offsets_init(&o, 16);
    t = offsets_assign(&o, TOPIC, 0);
    for (int i = 0; i < 6; i++)
        push(t, &e[i], 10 + i);
    finish(t, &e[2]);
    finish(t, &e[5]);
    finish(t, &e[4]);
    expect_store(t, -1);              /* 10 is not finished: store nothing */
    finish(t, &e[1]);
    expect_store(t, -1);
    finish(t, &e[0]);
    expect_store(t, 13);              /* 10, 11, 12 finished; 13 is not */
    assert_int_equal(t->len, 3);
    finish(t, &e[3]);
    expect_store(t, 16);
    assert_int_equal(t->len, 0);
    offsets_clear(&o);
}

static void test_gaps_in_offsets(void **state)
{
    struct offsets o;
    struct offsets_partition *t;
    struct ev e[3];

    (void)state;
    /* compacted topics and transaction markers leave holes in offsets */
    offsets_init(&o, 4);
    t = offsets_assign(&o, TOPIC, 0);
    push(t, &e[0], 3);
    push(t, &e[1], 7);
    push(t, &e[2], 20);
    assert_int_equal(t->last_consumed, 20);
    finish(t, &e[1]);
    expect_store(t, -1);
    finish(t, &e[0]);
    expect_store(t, 8);
    finish(t, &e[2]);
    expect_store(t, 21);
    /* a redelivered lower offset does not lower the highest consumed one */
    push(t, &e[0], 5);
    assert_int_equal(t->last_consumed, 20);
    finish(t, &e[0]);
    expect_store(t, 6);
    offsets_clear(&o);
}

static void test_stale_and_unknown_seq_ignored(void **state)
{
    struct offsets o;
    struct offsets_partition *t;
    struct ev e[3];

    (void)state;
    /* a window of 2, kept full: the slot just before the head is live, so
     * a popped seq mistaken for a position would mark a pending event */
    offsets_init(&o, 2);
    t = offsets_assign(&o, TOPIC, 0);
    push(t, &e[0], 0);
    push(t, &e[1], 1);
    finish(t, &e[0]);
    expect_store(t, 1);
    push(t, &e[2], 2);
    assert_int_equal(e[2].seq, e[1].seq + 1);
    assert_int_equal(t->len, t->cap);
    /* e[0]'s seq was popped: finishing it again must mark nothing */
    offsets_finish(t, e[0].seq);
    expect_store(t, -1);
    /* seqs never handed out are ignored too */
    offsets_finish(t, e[2].seq + 1);
    offsets_finish(t, UINT64_MAX);
    expect_store(t, -1);
    finish(t, &e[1]);
    expect_store(t, 2);     /* e[2] is still pending */
    finish(t, &e[2]);
    expect_store(t, 3);
    offsets_clear(&o);
}

static void test_full_is_the_soft_cap(void **state)
{
    struct offsets o;
    struct offsets_partition *t;
    struct ev e[3];

    (void)state;
    offsets_init(&o, 3);
    t = offsets_assign(&o, TOPIC, 0);
    assert_int_equal(offsets_full(t), 0);
    push(t, &e[0], 0);
    push(t, &e[1], 1);
    assert_int_equal(offsets_full(t), 0);
    push(t, &e[2], 2);
    assert_int_equal(offsets_full(t), 1);
    finish(t, &e[1]);                 /* finished, not popped: no longer in flight */
    expect_store(t, -1);
    assert_int_equal(offsets_full(t), 0);
    finish(t, &e[0]);
    expect_store(t, 2);
    assert_int_equal(offsets_full(t), 0);
    finish(t, &e[2]);
    expect_store(t, 3);
    assert_int_equal(offsets_full(t), 0);
    offsets_clear(&o);
}

/* A retry held until due at the head of a partition: the events behind it
 * that finish leave the window, so they do not stop the partition; only
 * OFFSETS_RING_FACTOR windows of them waiting behind the head do. */
static void test_unfinished_head_holds_only_the_store(void **state)
{
    struct offsets o;
    struct offsets_partition *t;
    struct ev head, e;
    size_t behind = 0;

    (void)state;
    offsets_init(&o, 4);
    t = offsets_assign(&o, TOPIC, 0);
    push(t, &head, 100);
    while (!offsets_full(t)) {
        push(t, &e, 101 + (int64_t)behind);
        finish(t, &e);
        behind++;
        if (behind > 4 * OFFSETS_RING_FACTOR)
            fail_msg("the ring behind an unfinished head is not bounded");
        expect_store(t, -1);           /* the head still holds the store */
    }
    assert_int_equal(behind, 4 * OFFSETS_RING_FACTOR - 1);
    finish(t, &head);
    expect_store(t, 101 + (int64_t)behind);
    assert_int_equal(offsets_full(t), 0);
    offsets_clear(&o);
}

static void test_window_grows_past_cap(void **state)
{
    struct offsets o;
    struct offsets_partition *t;
    struct ev e[40];
    int64_t off = 1000;

    (void)state;
    offsets_init(&o, 4);
    t = offsets_assign(&o, TOPIC, 0);
    /* move the ring's head so the growth has to unwrap it */
    push(t, &e[0], off++);
    push(t, &e[1], off++);
    push(t, &e[2], off++);
    finish(t, &e[0]);
    finish(t, &e[1]);
    expect_store(t, 1002);
    assert_int_equal(t->head, 2);
    /* 1 in the window; 39 more arrive although the partition is full at 4;
     * some finish (out of order) before the ring has to grow */
    for (int i = 3; i < 40; i++) {
        push(t, &e[i], off++);
        assert_int_equal(offsets_full(t), t->len - t->n_done >= 4);
        if (i == 4 || i == 12)
            finish(t, &e[i]);
    }
    assert_int_equal(t->len, 38);
    assert_true(t->cap >= 38);
    assert_int_equal(t->window_cap, 4);
    assert_int_equal(t->last_consumed, 1039);
    /* every offset kept its place and seq through the growth */
    for (int i = 2; i < 40; i++)
        assert_int_equal(t->offsets[(t->head + (e[i].seq - t->base_seq)) % t->cap], e[i].offset);
    /* finish from the back: nothing moves until the oldest is done */
    for (int i = 39; i >= 3; i--)
        if (i != 4 && i != 12)
            finish(t, &e[i]);
    expect_store(t, -1);
    /* one unfinished, 38 in a ring that may hold 4 * OFFSETS_RING_FACTOR */
    assert_int_equal(offsets_full(t), 0);
    finish(t, &e[2]);
    expect_store(t, 1040);
    assert_int_equal(t->len, 0);
    assert_int_equal(offsets_full(t), 0);
    /* and it keeps working after the growth, wrapping the bigger ring */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 20; i++)
            push(t, &e[i], off++);
        for (int i = 19; i >= 0; i--)
            finish(t, &e[i]);
        expect_store(t, off);
    }
    assert_int_equal(t->refs, 1);
    offsets_clear(&o);
}

static void test_revoke_with_events_in_flight(void **state)
{
    struct offsets o;
    struct offsets_partition *t, *again;
    struct ev e[3];

    (void)state;
    offsets_init(&o, 8);
    t = offsets_assign(&o, TOPIC, 5);
    push(t, &e[0], 50);
    push(t, &e[1], 51);
    push(t, &e[2], 52);
    assert_int_equal(t->last_consumed, 52);
    assert_ptr_equal(offsets_revoke(&o, TOPIC, 5), t);
    assert_int_equal(t->attached, 0);
    assert_null(offsets_find(&o, TOPIC, 5));
    offsets_release(t);                /* the table's reference */
    assert_int_equal(t->refs, 3);      /* still alive: its events hold it */
    /* a new assignment of the same partition is a new tracker */
    again = offsets_assign(&o, TOPIC, 5);
    assert_non_null(again);
    assert_ptr_not_equal(again, t);
    assert_int_equal(again->next_store, -1);
    /* the old events finish on the detached tracker */
    finish(t, &e[1]);
    finish(t, &e[0]);
    expect_store(t, 52);
    assert_int_equal(t->refs, 1);
    finish(t, &e[2]);                  /* the last release frees it (valgrind) */
    offsets_clear(&o);
}

static void test_clear_leaves_busy_trackers_to_their_events(void **state)
{
    struct offsets o;
    struct offsets_partition *busy, *idle_t;
    struct ev e[2];

    (void)state;
    offsets_init(&o, 2);
    busy = offsets_assign(&o, TOPIC, 0);
    idle_t = offsets_assign(&o, TOPIC, 1);
    assert_non_null(idle_t);
    push(busy, &e[0], 0);
    push(busy, &e[1], 1);
    offsets_clear(&o);                 /* frees idle_t, detaches busy */
    assert_null(o.table);
    assert_int_equal(busy->attached, 0);
    assert_int_equal(busy->refs, 2);
    finish(busy, &e[0]);
    expect_store(busy, 1);
    finish(busy, &e[1]);               /* freed here */
}

/* Each attached tracker once, in turn; a revoked one no more. */
static void test_next_walks_the_attached(void **state)
{
    struct offsets o;
    struct offsets_partition *t = NULL, *gone;
    int seen_a = 0, seen_b = 0, n = 0;

    (void)state;
    offsets_init(&o, 8);
    assert_non_null(offsets_assign(&o, "a", 0));
    assert_non_null(offsets_assign(&o, "b", 1));
    while ((t = offsets_next(&o, t)) != NULL) {
        seen_a += strcmp(t->topic, "a") == 0;
        seen_b += strcmp(t->topic, "b") == 0;
        n++;
    }
    assert_int_equal(n, 2);
    assert_int_equal(seen_a, 1);
    assert_int_equal(seen_b, 1);
    gone = offsets_revoke(&o, "a", 0);
    offsets_release(gone);
    t = offsets_next(&o, NULL);
    assert_non_null(t);
    assert_string_equal(t->topic, "b");
    assert_null(offsets_next(&o, t));
    offsets_clear(&o);
}

/* --from-beginning replays a partition the first time only, also after it
 * was revoked and assigned again. */
static void test_first_assignment_once_per_partition(void **state)
{
    struct offsets o;

    (void)state;
    offsets_init(&o, 8);
    assert_int_equal(offsets_first_assignment(&o, "t", 0), 1);
    assert_int_equal(offsets_first_assignment(&o, "t", 0), 0);
    assert_int_equal(offsets_first_assignment(&o, "t", 1), 1);
    assert_int_equal(offsets_first_assignment(&o, "t-retry", 0), 1);
    assert_int_equal(offsets_first_assignment(&o, "t-retry", 0), 0);
    offsets_clear(&o);
    assert_int_equal(offsets_first_assignment(&o, "t", 0), 1); /* cleared: a new start */
    offsets_clear(&o);
}

/* The paused flag starts unknown, and says when it changes; the
 * unfinished count follows pushes and finishes. */
static void test_paused_and_unfinished(void **state)
{
    struct offsets o;
    struct offsets_partition *t;
    uint64_t s1, s2;

    (void)state;
    offsets_init(&o, 8);
    t = offsets_assign(&o, "t", 0);
    assert_non_null(t);
    assert_int_equal(offsets_set_paused(t, 0), 1); /* unknown -> resumed */
    assert_int_equal(offsets_set_paused(t, 0), 0);
    assert_int_equal(offsets_set_paused(t, 1), 1);
    assert_int_equal(offsets_unfinished(t), 0);
    assert_int_equal(offsets_push(t, 10, &s1), 0);
    assert_int_equal(offsets_push(t, 11, &s2), 0);
    assert_int_equal(offsets_unfinished(t), 2);
    offsets_finish(t, s2);
    assert_int_equal(offsets_unfinished(t), 1);
    offsets_finish(t, s1);
    assert_int_equal(offsets_unfinished(t), 0);
    offsets_release(t); /* each event's reference */
    offsets_release(t);
    offsets_clear(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assign_find),
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order_stores_prefix),
        cmocka_unit_test(test_gaps_in_offsets),
        cmocka_unit_test(test_stale_and_unknown_seq_ignored),
        cmocka_unit_test(test_full_is_the_soft_cap),
        cmocka_unit_test(test_unfinished_head_holds_only_the_store),
        cmocka_unit_test(test_window_grows_past_cap),
        cmocka_unit_test(test_revoke_with_events_in_flight),
        cmocka_unit_test(test_clear_leaves_busy_trackers_to_their_events),
        cmocka_unit_test(test_next_walks_the_attached),
        cmocka_unit_test(test_first_assignment_once_per_partition),
        cmocka_unit_test(test_paused_and_unfinished),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
