#ifndef IMGCACHE_BEEPER_H
#define IMGCACHE_BEEPER_H
/* Beeper chat objects as the Beeper Desktop API returns them in
 * GET /v1/chats (items[]) and GET /v1/chats/{id}: the fields we keep, the
 * rest ignored. Also the page envelope {items, hasMore, oldestCursor}.
 *
 * Ownership: beeper_chat_* fill structs whose strings and arrays they own;
 * beeper_chat_clear() frees them (not the struct). */
#include <stddef.h>
#include <jansson.h>

#include "errmsg.h"

/* Longest string field accepted (ids, names): PostgreSQL keys and indexes
 * hold at most ~2.7 KB; longer fields make the line refused. An image URL
 * over the limit drops only that URL (see img_dropped), never the chat. */
#define BEEPER_MAX_FIELD 2048
/* Longest data: image URL accepted: what fits an image-needed event
 * (EVENT_MAX_BYTES, 64 KiB) with the other fields. A data: URL is kept under
 * its key "data:sha256,<hex>" (resolve.h); the URL itself in img_data_url. */
#define BEEPER_MAX_DATA_URL 61440

struct beeper_participant {
    char *id;          /* required */
    char *full_name;   /* may be NULL */
    char *img_url;     /* may be NULL; empty string becomes NULL; a data:
                          URL's key */
    char *img_data_url; /* the data: URL img_url stands for, else NULL */
    char *img_dropped; /* why imgURL was left out (too long, NUL), else NULL */
    int is_self;
};

struct beeper_chat {
    char *id;            /* required, non-empty */
    char *account_id;    /* may be NULL */
    char *title;         /* may be NULL */
    char *type;          /* "single" or "group" (anything else is refused) */
    char *network;       /* may be NULL */
    char *img_url;       /* as in struct beeper_participant */
    char *img_data_url;
    char *img_dropped;
    char *last_activity; /* ISO 8601 as given, may be NULL */
    struct beeper_participant *participants;
    size_t n_participants;
    int participants_has_more; /* participants.hasMore: the list is partial */
};

/* From a parsed JSON object; obj is borrowed. On -1, out holds nothing. */
int beeper_chat_from_json(const json_t *obj, struct beeper_chat *out, char *err, size_t errlen) MUST_CHECK;
/* From one line of text (an import file line). */
int beeper_chat_parse(const char *text, size_t len, struct beeper_chat *out, char *err, size_t errlen)
    MUST_CHECK;
void beeper_chat_clear(struct beeper_chat *chat);

#endif
