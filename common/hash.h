#ifndef IMGCACHE_HASH_H
#define IMGCACHE_HASH_H
/* SHA-256 through OpenSSL's EVP API. struct hash owns an EVP_MD_CTX:
 * hash_init() allocates it, hash_final_hex() or hash_clear() frees it. */
#include <stddef.h>

#include "errmsg.h"

#define HASH_HEX_LEN 64

struct hash {
    void *ctx; /* EVP_MD_CTX * */
};

int hash_init(struct hash *h) MUST_CHECK;
int hash_update(struct hash *h, const void *data, size_t len) MUST_CHECK;
/* Writes 64 lowercase hex chars and a NUL into hex; frees the context. */
int hash_final_hex(struct hash *h, char hex[HASH_HEX_LEN + 1]) MUST_CHECK;
void hash_clear(struct hash *h);
/* One-shot. */
int hash_sha256_hex(const void *data, size_t len, char hex[HASH_HEX_LEN + 1]) MUST_CHECK;

#endif
