#include "hash.h"

#include <openssl/evp.h>

int hash_init(struct hash *h)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    h->ctx = NULL;
    if (ctx == NULL)
        return -1;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    h->ctx = ctx;
    return 0;
}

int hash_update(struct hash *h, const void *data, size_t len)
{
    if (h->ctx == NULL)
        return -1;
    return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : -1;
}

int hash_final_hex(struct hash *h, char hex[HASH_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1;

    if (h->ctx == NULL)
        return -1;
    if (EVP_DigestFinal_ex(h->ctx, md, &mdlen) != 1 || mdlen != 32)
        goto out;
    for (unsigned i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[HASH_HEX_LEN] = '\0';
    rc = 0;
out:
    hash_clear(h);
    return rc;
}

void hash_clear(struct hash *h)
{
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

int hash_sha256_hex(const void *data, size_t len, char hex[HASH_HEX_LEN + 1])
{
    struct hash h;
    if (hash_init(&h) != 0)
        return -1;
    if (hash_update(&h, data, len) != 0) {
        hash_clear(&h);
        return -1;
    }
    return hash_final_hex(&h, hex);
}
