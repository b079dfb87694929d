#ifndef IMGCACHE_EVENT_H
#define IMGCACHE_EVENT_H
/* The image-needed event: Kafka key = source URL bytes, value = JSON
 *   {"v":1,"source_url":"...","chat_id":"...","participant_id":"...",
 *    "account_id":"...","reason":"import|sync|backfill|refresh",
 *    "produced_at":"2026-11-21T13:00:00.123Z"}
 * participant_id is null for a chat's own image. For a data: URL,
 * source_url is its key "data:sha256,<hex>" (see resolve.h) and the URL
 * itself follows as "data_url":"data:..." (absent otherwise): the bytes
 * travel in the event, the short key everywhere else. Unknown fields are ignored
 * on decode (forward compatible); v other than 1 is refused.
 *
 * Ownership: every char * in struct event is owned by the struct once
 * event_decode() filled it; event_clear() frees them (not the struct).
 * event_encode() returns a malloc'd NUL-terminated string the caller frees. */
#include <stddef.h>

#include "errmsg.h"

#define EVENT_VERSION 1
#define EVENT_MAX_URL 2048      /* longer source URLs are refused: PostgreSQL's
                                   keys hold at most ~2.7 KB */
#define EVENT_MAX_BYTES 65536   /* larger event values are refused unparsed,
                                   and not encoded */
/* produced_at as Unix ms: 0000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z */
#define EVENT_MIN_TIME_MS (-62167219200000LL)
#define EVENT_MAX_TIME_MS 253402300799999LL

struct event {
    char *source_url;      /* required, non-empty, <= EVENT_MAX_URL bytes */
    char *chat_id;         /* may be NULL */
    char *participant_id;  /* may be NULL */
    char *account_id;      /* may be NULL */
    char *reason;          /* may be NULL */
    char *data_url;        /* may be NULL; the data: URL whose key is source_url */
    long long produced_at_ms; /* Unix ms; 0 when absent */
};

char *event_encode(const struct event *ev, char *err, size_t errlen) MUST_CHECK;
/* buf need not be NUL-terminated. On -1 nothing is left to free. */
int event_decode(const void *buf, size_t len, struct event *out, char *err, size_t errlen) MUST_CHECK;
void event_clear(struct event *ev);

/* Unix time in ms now (CLOCK_REALTIME). */
long long event_now_ms(void);
/* Formats ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (>= 25 bytes). */
void event_format_time(long long ms, char *out, size_t outlen);
/* Parses that format (also without ms, or with +00:00); -1 when malformed. */
int event_parse_time(const char *s, long long *ms_out) MUST_CHECK;

/* The image-stored event: Kafka key = the blob's sha256 (64 lowercase hex),
 * value = JSON
 *   {"v":1,"sha256":"...","storage_key":"ab/ab...jpg","content_type":"image/jpeg",
 *    "byte_size":1234,"produced_at":"2026-11-21T13:00:00.123Z"}
 * published by a worker after it committed a new blob, and by
 * `imgcache-producer renditions` for blobs missing a rendition; consumed by
 * imgcache-renderer. Same rules as image-needed: unknown fields ignored, v
 * other than 1 refused.
 *
 * Ownership: storage_key and content_type are owned by the struct once
 * stored_event_decode() filled it; stored_event_clear() frees them.
 * stored_event_encode() returns a malloc'd string the caller frees. */
#define STORED_EVENT_MAX_KEY 128   /* storage keys are short: <aa>/<sha256>.<ext> */

struct stored_event {
    char sha256[65];          /* required: 64 lowercase hex digits */
    char *storage_key;        /* required, <= STORED_EVENT_MAX_KEY bytes, no ".." */
    char *content_type;       /* may be NULL */
    long long byte_size;      /* >= 0; 0 when absent */
    long long produced_at_ms; /* Unix ms; 0 when absent */
};

char *stored_event_encode(const struct stored_event *ev, char *err, size_t errlen) MUST_CHECK;
/* buf need not be NUL-terminated. On -1 nothing is left to free. */
int stored_event_decode(const void *buf, size_t len, struct stored_event *out, char *err, size_t errlen)
    MUST_CHECK;
void stored_event_clear(struct stored_event *ev);

#endif
