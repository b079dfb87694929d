/* worker/body.c: download bodies held in memory within a byte budget. The
 * bytes come back in order across block boundaries; the budget is never
 * exceeded and a refused append leaves the body untouched (the worker then
 * spills what it has to disk); released blocks are reused, not allocated
 * again (run under valgrind: a block lost or freed twice shows).
 *
 * body.c is in build/libworker.a, which this test links. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "body.h"

static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *p = malloc(len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 31 + seed);
    return p;
}

/* The body's bytes, flattened, read the way the worker reads them
 * (body_block), which must end after the last block. */
static unsigned char *flatten(const struct body *b)
{
    unsigned char *out = malloc(b->len ? b->len : 1);
    const unsigned char *data;
    size_t at = 0, len, i;
    assert_non_null(out);
    for (i = 0; body_block(b, i, &data, &len); i++) {
        assert_int_equal(len, body_block_len(b, i));
        memcpy(out + at, data, len);
        at += len;
    }
    assert_int_equal(i, b->n_blocks);
    assert_int_equal(body_block(b, i, &data, &len), 0);
    assert_null(data);
    assert_int_equal(len, 0);
    assert_int_equal(at, b->len);
    return out;
}

static void test_bytes_in_order_across_blocks(void **state)
{
    struct body_pool pool;
    struct body b = { 0 };
    size_t total = 3 * BODY_BLOCK + 123;
    unsigned char *src = pattern(total, 7), *got;
    size_t at = 0, step = 16384 + 5; /* not a divisor of the block size */

    (void)state;
    assert_int_equal(body_pool_init(&pool, 8 * BODY_BLOCK), 0);
    while (at < total) {
        size_t n = total - at < step ? total - at : step;
        assert_int_equal(body_append(&pool, &b, src + at, n), 0);
        at += n;
    }
    assert_int_equal(b.len, total);
    assert_int_equal(b.n_blocks, 4);
    assert_int_equal(body_block_len(&b, 0), BODY_BLOCK);
    assert_int_equal(body_block_len(&b, 3), 123);
    assert_int_equal(body_block_len(&b, 4), 0);
    got = flatten(&b);
    assert_memory_equal(got, src, total);
    assert_int_equal(pool.out, 4);
    body_release(&pool, &b);
    assert_int_equal(pool.out, 0);
    assert_int_equal(b.len, 0);
    assert_null(b.blocks);
    free(got);
    free(src);
    body_pool_release(&pool);
}

static void test_budget_refuses_and_leaves_body_as_it_was(void **state)
{
    struct body_pool pool;
    struct body a = { 0 }, b = { 0 };
    unsigned char *src = pattern(2 * BODY_BLOCK, 3), *got;

    (void)state;
    assert_int_equal(body_pool_init(&pool, 2 * BODY_BLOCK + BODY_BLOCK / 2), 0); /* rounds down: 2 */
    assert_int_equal(pool.max_blocks, 2);
    assert_int_equal(body_append(&pool, &a, src, BODY_BLOCK + 10), 0); /* 2 blocks */
    assert_int_equal(pool.out, 2);
    /* the last block still has room: no new block needed */
    assert_int_equal(body_append(&pool, &a, src + BODY_BLOCK + 10, 100), 0);
    /* past the budget: refused whole */
    assert_int_equal(body_append(&pool, &a, src, BODY_BLOCK), -1);
    assert_int_equal(a.len, BODY_BLOCK + 110);
    assert_int_equal(body_append(&pool, &b, src, 1), -1);
    assert_int_equal(b.len, 0);
    assert_int_equal(pool.out, 2);
    got = flatten(&a);
    assert_memory_equal(got, src, BODY_BLOCK + 110);
    free(got);
    /* released blocks serve the next body, from the free list */
    body_release(&pool, &a);
    assert_int_equal(pool.n_free, 2);
    assert_int_equal(body_append(&pool, &b, src, 2 * BODY_BLOCK), 0);
    assert_int_equal(pool.n_free, 0);
    assert_int_equal(pool.out, 2);
    body_release(&pool, &b);
    free(src);
    body_pool_release(&pool);
}

static void test_no_budget_holds_nothing(void **state)
{
    struct body_pool pool;
    struct body b = { 0 };

    (void)state;
    assert_int_equal(body_pool_init(&pool, BODY_BLOCK - 1), 0);
    assert_int_equal(pool.max_blocks, 0);
    assert_int_equal(body_append(&pool, &b, "x", 1), -1);
    assert_int_equal(b.len, 0);
    /* an empty append needs no block */
    assert_int_equal(body_append(&pool, &b, "", 0), 0);
    body_release(&pool, &b);
    body_pool_release(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_in_order_across_blocks),
        cmocka_unit_test(test_budget_refuses_and_leaves_body_as_it_was),
        cmocka_unit_test(test_no_budget_holds_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
