/* libFuzzer: resolve_source() with each configuration, and resolve_redact()
 * into buffers of every small size. The token must never reach .display, a
 * file path must stay under the media folder.
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *   tests/fuzz/fuzz_resolve.c common/resolve.c common/errmsg.c -lcurl -o build/fuzz_resolve */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"

#define TOKEN "Zq9TOKENvalue"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct resolve_config cfgs[] = {
        { .media_dir = "/srv/media" },
        { .media_server = "http://127.0.0.1:8787/", .media_token = TOKEN,
          .api_url = "http://localhost:23373", .api_token = TOKEN },
        { 0 },
    };
    char *url = malloc(size + 1);
    char small[48];

    if (url == NULL)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        struct resolved r;
        char err[512];
        err[0] = '\0';
        if (resolve_source(&cfgs[i], url, &r, err, sizeof err) != 0) {
            if (err[0] == '\0' || r.url || r.path || r.display || strstr(err, TOKEN))
                abort();
            continue;
        }
        if (r.display == NULL || (strstr(r.display, TOKEN) && !strstr(url, TOKEN)))
            abort();
        if (r.kind == RESOLVE_FILE &&
            (r.path == NULL || strncmp(r.path, "/srv/media/", 11) != 0 || strstr(r.path, "/../") ||
             strstr(r.path, "/./") || strstr(r.path, "//")))
            abort();
        if (r.kind == RESOLVE_HTTP && r.url == NULL)
            abort();
        resolved_clear(&r);
    }
    for (size_t n = 1; n <= sizeof small; n += 7) {
        memset(small, 'x', sizeof small);
        resolve_redact(url, small, n);
        if (memchr(small, '\0', n) == NULL)
            abort();
    }
    free(url);
    return 0;
}
