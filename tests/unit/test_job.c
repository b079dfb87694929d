/* worker/job.c: the job lifecycle on a bare struct worker (no servers).
 * A job is in exactly one state and that state's queue; the counts of
 * jobs, of jobs per state and of unfinished events follow every add, move
 * and removal; job_finish marks its events' offsets finished (so they may
 * be stored), job_remove does not (they are consumed again); the URL table
 * finds a job until it is taken out. Run under valgrind, a job or event
 * not freed, or freed twice, shows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "job.h"

static struct worker *new_worker(void)
{
    struct worker *w = calloc(1, sizeof *w);
    assert_non_null(w);
    offsets_init(&w->offsets, 16);
    return w;
}

static void free_worker(struct worker *w)
{
    offsets_clear(&w->offsets);
    free(w);
}

/* A job for url with one event at offset of partition t, as the consumer
 * makes it. */
static struct job *event_job(struct worker *w, struct offsets_partition *t, const char *url, int64_t offset)
{
    struct job_message m = { "image-needed", 0, offset, "key", "value", 3, 5 };
    struct job_event *e = calloc(1, sizeof *e);
    struct job *j;
    char *u = strdup(url);

    assert_non_null(e);
    assert_non_null(u);
    j = job_new(w, &m, u);
    assert_non_null(j);
    assert_int_equal(offsets_push(t, offset, &e->seq), 0);
    e->partition = t;
    j->events = e;
    j->n_events = 1;
    w->outstanding++;
    job_index(w, j);
    job_add(w, j, JOB_NEW);
    return j;
}

static void test_new_copies_the_message(void **state)
{
    struct worker *w = new_worker();
    struct offsets_partition *t = offsets_assign(&w->offsets, "image-needed", 0);
    struct job *j;

    (void)state;
    j = event_job(w, t, "http://a/1.png", 7);
    assert_string_equal(j->src_topic, "image-needed");
    assert_int_equal(j->src_offset, 7);
    assert_int_equal(j->msg_keylen, 3);
    assert_memory_equal(j->msg_key, "key", 3);
    assert_int_equal(j->msg_valuelen, 5);
    assert_memory_equal(j->msg_value, "value", 5);
    assert_int_equal(w->n_jobs, 1);
    job_remove(w, j);
    assert_int_equal(w->n_jobs, 0);
    free_worker(w);
}

static void test_states_and_queues(void **state)
{
    struct worker *w = new_worker();
    struct offsets_partition *t = offsets_assign(&w->offsets, "image-needed", 0);
    struct job *j;

    (void)state;
    j = event_job(w, t, "http://a/1.png", 1);
    assert_ptr_equal(w->q_new, j);
    assert_int_equal(w->n_in_state[JOB_NEW], 1);
    job_move(w, j, JOB_READY);
    assert_null(w->q_new);
    assert_ptr_equal(w->q_ready, j);
    assert_int_equal(w->n_in_state[JOB_NEW], 0);
    assert_int_equal(w->n_in_state[JOB_READY], 1);
    /* a state without a queue: the job is with libcurl */
    job_move(w, j, JOB_FETCHING);
    assert_null(w->q_ready);
    assert_null(job_queue(w, JOB_FETCHING));
    assert_int_equal(w->n_in_state[JOB_FETCHING], 1);
    job_move(w, j, JOB_COMMIT);
    assert_ptr_equal(w->q_commit, j);
    job_remove(w, j);
    assert_null(w->q_commit);
    assert_int_equal(w->n_in_state[JOB_COMMIT], 0);
    assert_int_equal(w->outstanding, 0);
    free_worker(w);
}

static void test_table_finds_until_unindexed(void **state)
{
    struct worker *w = new_worker();
    struct offsets_partition *t = offsets_assign(&w->offsets, "image-needed", 0);
    struct job *a, *b;

    (void)state;
    a = event_job(w, t, "http://a/1.png", 1);
    b = event_job(w, t, "http://a/2.png", 2);
    assert_ptr_equal(job_find(w, "http://a/1.png"), a);
    assert_ptr_equal(job_find(w, "http://a/2.png"), b);
    assert_null(job_find(w, "http://a/3.png"));
    job_unindex(w, a);
    assert_false(a->in_table);
    assert_null(job_find(w, "http://a/1.png"));
    job_unindex(w, a); /* harmless twice */
    /* out of the table, still in its queue and counted */
    assert_int_equal(w->n_jobs, 2);
    job_remove(w, a);
    job_remove(w, b);
    assert_null(w->jobs);
    assert_null(w->q_new);
    assert_int_equal(w->n_jobs, 0);
    free_worker(w);
}

static void test_finish_marks_offsets_remove_does_not(void **state)
{
    struct worker *w = new_worker();
    struct offsets_partition *t = offsets_assign(&w->offsets, "image-needed", 0);
    struct job *first, *second, *third;
    int64_t store;

    (void)state;
    first = event_job(w, t, "http://a/1.png", 10);
    second = event_job(w, t, "http://a/2.png", 11);
    third = event_job(w, t, "http://a/3.png", 12);
    assert_int_equal(w->outstanding, 3);
    job_finish(w, second);
    assert_int_equal(offsets_advance(t, &store), 0); /* 10 is not finished */
    job_finish(w, first);
    assert_int_equal(offsets_advance(t, &store), 1);
    assert_int_equal(store, 12); /* 10 and 11 done: store 12 */
    job_remove(w, third);           /* abandoned: 12 stays unfinished */
    assert_int_equal(offsets_advance(t, &store), 0);
    assert_int_equal(offsets_unfinished(t), 1);
    assert_int_equal(w->outstanding, 0);
    assert_int_equal(w->n_jobs, 0);
    free_worker(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_copies_the_message),
        cmocka_unit_test(test_states_and_queues),
        cmocka_unit_test(test_table_finds_until_unindexed),
        cmocka_unit_test(test_finish_marks_offsets_remove_does_not),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
