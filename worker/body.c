#include "body.h"

#include <stdlib.h>
#include <string.h>

int body_pool_init(struct body_pool *p, size_t budget_bytes)
{
    memset(p, 0, sizeof *p);
    p->max_blocks = budget_bytes / BODY_BLOCK;
    if (p->max_blocks == 0)
        return 0;
    p->free = calloc(p->max_blocks, sizeof *p->free);
    return p->free ? 0 : -1;
}

void body_pool_release(struct body_pool *p)
{
    for (size_t i = 0; i < p->n_free; i++)
        free(p->free[i]);
    free(p->free);
    memset(p, 0, sizeof *p);
}

static unsigned char *take_block(struct body_pool *p)
{
    unsigned char *blk;

    if (p->out >= p->max_blocks)
        return NULL;
    blk = p->n_free > 0 ? p->free[--p->n_free] : malloc(BODY_BLOCK);
    if (blk)
        p->out++;
    return blk;
}

int body_append(struct body_pool *p, struct body *b, const void *data, size_t len)
{
    const unsigned char *src = data;
    size_t room = b->n_blocks * BODY_BLOCK - b->len;
    size_t need = len > room ? (len - room + BODY_BLOCK - 1) / BODY_BLOCK : 0;

    /* all blocks first, so a refusal leaves the body as it was */
    if (need > p->max_blocks - p->out)
        return -1;
    if (b->n_blocks + need > b->cap_blocks) {
        size_t cap = b->cap_blocks ? b->cap_blocks : 4;
        unsigned char **grown;
        while (cap < b->n_blocks + need)
            cap *= 2;
        grown = realloc(b->blocks, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        b->blocks = grown;
        b->cap_blocks = cap;
    }
    for (size_t i = 0; i < need; i++) {
        unsigned char *blk = take_block(p);
        if (blk == NULL) {
            /* out of memory: give back what this call took */
            while (i-- > 0) {
                p->free[p->n_free++] = b->blocks[--b->n_blocks];
                p->out--;
            }
            return -1;
        }
        b->blocks[b->n_blocks++] = blk;
    }
    while (len > 0) {
        size_t at = b->len % BODY_BLOCK;
        size_t take = BODY_BLOCK - at < len ? BODY_BLOCK - at : len;
        memcpy(b->blocks[b->len / BODY_BLOCK] + at, src, take);
        b->len += take;
        src += take;
        len -= take;
    }
    return 0;
}

int body_block(const struct body *b, size_t i, const unsigned char **data, size_t *len)
{
    if (i >= b->n_blocks) {
        *data = NULL;
        *len = 0;
        return 0;
    }
    *data = b->blocks[i];
    *len = body_block_len(b, i);
    return 1;
}

size_t body_block_len(const struct body *b, size_t i)
{
    size_t start = i * BODY_BLOCK;
    if (start >= b->len)
        return 0;
    return b->len - start < BODY_BLOCK ? b->len - start : BODY_BLOCK;
}

void body_release(struct body_pool *p, struct body *b)
{
    for (size_t i = 0; i < b->n_blocks; i++) {
        p->free[p->n_free++] = b->blocks[i];
        p->out--;
    }
    free(b->blocks);
    memset(b, 0, sizeof *b);
}
