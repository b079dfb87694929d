#ifndef IMGCACHE_BODY_H
#define IMGCACHE_BODY_H
/* Download bodies held in memory, in fixed blocks from one pool with a
 * byte budget. While the budget lasts, a download never touches the disk
 * on the event loop: the committer thread writes the whole body into the
 * store. When it is spent, the caller spills the body to a temporary file
 * and streams the rest there, as without a pool; so memory stays bounded
 * whatever the concurrency and the image sizes.
 *
 * Blocks are kept for reuse once allocated (at most the budget's worth),
 * so the resident size settles at the budget instead of following malloc's
 * fragmentation.
 *
 * Ownership: body_pool_init() and body_pool_release() bracket a pool the
 * caller embeds; a struct body lives in the caller's memory, starts zeroed,
 * and its blocks go back to the pool with body_release(). The pool is not
 * thread-safe: one thread appends and releases; another may read a body's
 * blocks while the owner leaves it alone. */
#include <stddef.h>

#include "errmsg.h"

#define BODY_BLOCK (16 * 1024) /* libcurl hands over 16 KiB at a time */

struct body {
    unsigned char **blocks;
    size_t n_blocks, cap_blocks;
    size_t len;                 /* bytes in the body */
};

struct body_pool {
    size_t max_blocks;          /* the budget, in blocks (0: no pool) */
    size_t out;                 /* blocks held by bodies */
    unsigned char **free;       /* blocks to reuse */
    size_t n_free;
};

/* budget_bytes rounds down to whole blocks; 0 disables the pool. */
int body_pool_init(struct body_pool *p, size_t budget_bytes) MUST_CHECK;
void body_pool_release(struct body_pool *p);
/* Appends len bytes; -1 (nothing appended) when the budget or memory is
 * spent: the caller spills the body and releases it. */
int body_append(struct body_pool *p, struct body *b, const void *data, size_t len)
    MUST_CHECK;
/* Block i: its bytes in *data and their count in *len (the last block may
 * be partly filled); 0 past the last block. The way to read a body:
 *   for (size_t i = 0; body_block(b, i, &data, &len); i++) ...  */
int body_block(const struct body *b, size_t i, const unsigned char **data, size_t *len);
/* The bytes of block i (the last one may be partly filled). */
size_t body_block_len(const struct body *b, size_t i);
void body_release(struct body_pool *p, struct body *b);

#endif
