/* libFuzzer: event_decode() and stored_event_decode() on any bytes; a
 * decoded event must encode and decode back to the same fields.
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Icommon \
 *   tests/fuzz/fuzz_event.c common/event.c common/errmsg.c -ljansson -o build/fuzz_event */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* image-stored: the same round trip */
static void stored_round_trip(const unsigned char *buf, size_t size)
{
    struct stored_event ev, back;
    char err[512];
    char *text;

    if (stored_event_decode(buf, size, &ev, err, sizeof err) != 0) {
        if (err[0] == '\0' || ev.storage_key != NULL)
            abort();
        return;
    }
    text = stored_event_encode(&ev, err, sizeof err);
    if (text == NULL || stored_event_decode(text, strlen(text), &back, err, sizeof err) != 0)
        abort();
    if (strcmp(ev.sha256, back.sha256) != 0 || !same(ev.storage_key, back.storage_key) ||
        !same(ev.content_type, back.content_type) || ev.byte_size != back.byte_size)
        abort();
    stored_event_clear(&back);
    stored_event_clear(&ev);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    struct event ev, back;
    char err[512];
    char *text;

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    stored_round_trip(buf, size);
    if (event_decode(buf, size, &ev, err, sizeof err) != 0) {
        if (err[0] == '\0' || ev.source_url != NULL)
            abort();
        free(buf);
        return 0;
    }
    text = event_encode(&ev, err, sizeof err);
    if (text == NULL)
        abort();
    if (event_decode(text, strlen(text), &back, err, sizeof err) != 0)
        abort();
    /* times outside years 0000-9999 have no RFC 3339 form */
    if (!same(ev.source_url, back.source_url) || !same(ev.chat_id, back.chat_id) ||
        !same(ev.participant_id, back.participant_id) || !same(ev.account_id, back.account_id) ||
        !same(ev.reason, back.reason) ||
        (ev.produced_at_ms >= -62167219200000LL && ev.produced_at_ms <= 253402300799999LL &&
         ev.produced_at_ms != back.produced_at_ms))
        abort();
    event_clear(&back);
    event_clear(&ev);
    free(text);
    free(buf);
    return 0;
}
