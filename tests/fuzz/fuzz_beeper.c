/* libFuzzer: beeper_chat_parse() on any bytes.
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *   tests/fuzz/fuzz_beeper.c common/beeper.c common/errmsg.c -ljansson -o build/fuzz_beeper */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "beeper.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    struct beeper_chat chat;
    char err[512];

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    err[0] = '\0';
    if (beeper_chat_parse(buf, size, &chat, err, sizeof err) == 0) {
        if (chat.id == NULL || chat.id[0] == '\0' || chat.type == NULL ||
            (chat.img_url != NULL && chat.img_url[0] == '\0'))
            abort();
        for (size_t i = 0; i < chat.n_participants; i++)
            if (chat.participants[i].id == NULL)
                abort();
        beeper_chat_clear(&chat);
    } else if (err[0] == '\0' || chat.id != NULL || chat.participants != NULL) {
        abort();
    }
    free(buf);
    return 0;
}
