/* libFuzzer: sniff_image() on any bytes, as a partial and as a whole body.
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *   tests/fuzz/fuzz_sniff.c common/sniff.c common/errmsg.c -o build/fuzz_sniff */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sniff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so reading one byte too far is caught */
    unsigned char *buf = malloc(size ? size : 1);
    struct sniff_result r;
    char err[256];

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    for (int complete = 0; complete <= 1; complete++) {
        enum sniff_status st;
        err[0] = '\0';
        st = sniff_image(buf, size, complete, &r, err, sizeof err);
        if (st == SNIFF_OK && (r.width == 0 || r.height == 0 || r.type == SNIFF_UNKNOWN ||
                               r.content_type == NULL || r.extension == NULL))
            abort();
        if (st == SNIFF_REJECT && (err[0] == '\0' || r.type != SNIFF_UNKNOWN))
            abort();
        if (st == SNIFF_NEED_MORE && complete)
            abort();
    }
    free(buf);
    return 0;
}
