#include "event.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errmsg.h"

long long event_now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void event_format_time(long long ms, char *out, size_t outlen)
{
    /* floor division, so times before 1970 keep a positive millisecond part */
    long long sec = ms / 1000, milli = ms % 1000;
    time_t t;
    struct tm tm;

    if (outlen == 0)
        return;
    if (milli < 0) {
        milli += 1000;
        sec -= 1;
    }
    t = (time_t)sec;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, outlen, "invalid-time");
        return;
    }
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
}

/* Reads exactly n decimal digits. */
static int read_digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int event_parse_time(const char *s, long long *ms_out)
{
    int year, mon, day, hour, min, sec, milli = 0, off_min = 0;
    struct tm tm, check;
    time_t t;
    const char *p;

    if (s == NULL || strlen(s) < 20)
        return -1;
    if (read_digits(s, 4, &year) || s[4] != '-' || read_digits(s + 5, 2, &mon) || s[7] != '-' ||
        read_digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
        read_digits(s + 11, 2, &hour) || s[13] != ':' || read_digits(s + 14, 2, &min) ||
        s[16] != ':' || read_digits(s + 17, 2, &sec))
        return -1;
    p = s + 19;
    if (*p == '.') {
        /* any number of fraction digits; the first three are the ms */
        int digits = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3)
                milli = milli * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            milli *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (read_digits(p + 1, 2, &oh) || p[3] != ':' || read_digits(p + 4, 2, &om) || oh > 23 ||
            om > 59)
            return -1;
        off_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60)
        return -1;

    memset(&tm, 0, sizeof tm);
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second counts as :59 */
    t = timegm(&tm);
    /* timegm normalises 31 February into March: a round trip catches it */
    if (gmtime_r(&t, &check) == NULL || check.tm_mday != day || check.tm_mon != mon - 1)
        return -1;
    *ms_out = ((long long)t - (long long)off_min * 60) * 1000 + milli;
    return 0;
}

/* NULL becomes JSON null. */
static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

char *event_encode(const struct event *ev, char *err, size_t errlen)
{
    json_t *obj = NULL;
    char when[40];
    char *text = NULL;
    const struct {
        const char *key;
        const char *value;
    } fields[] = {
        { "chat_id", ev->chat_id },
        { "participant_id", ev->participant_id },
        { "account_id", ev->account_id },
        { "reason", ev->reason },
    };

    if (ev->source_url == NULL || ev->source_url[0] == '\0') {
        errmsg_set(err, errlen, "event has no source_url");
        goto out;
    }
    if (strlen(ev->source_url) > EVENT_MAX_URL) {
        errmsg_set(err, errlen, "source_url is %zu bytes, over the %d-byte limit",
                   strlen(ev->source_url), EVENT_MAX_URL);
        goto out;
    }
    obj = json_object();
    if (obj == NULL || json_object_set_new(obj, "v", json_integer(EVENT_VERSION)) != 0)
        goto oom;
    /* json_string() refuses invalid UTF-8, so a NULL here is not always memory */
    if (json_object_set_new(obj, "source_url", json_string(ev->source_url)) != 0) {
        errmsg_set(err, errlen, "source_url is not valid UTF-8");
        goto out;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (json_object_set_new(obj, fields[i].key, string_or_null(fields[i].value)) != 0) {
            errmsg_set(err, errlen, "%s is not valid UTF-8", fields[i].key);
            goto out;
        }
    }
    event_format_time(ev->produced_at_ms, when, sizeof when);
    if (json_object_set_new(obj, "produced_at", json_string(when)) != 0)
        goto oom;
    if (ev->data_url != NULL && json_object_set_new(obj, "data_url", json_string(ev->data_url)) != 0) {
        errmsg_set(err, errlen, "data_url is not valid UTF-8");
        goto out;
    }
    text = json_dumps(obj, JSON_COMPACT);
    if (text == NULL)
        goto oom;
    /* what a worker would refuse unread is not sent */
    if (strlen(text) > EVENT_MAX_BYTES) {
        errmsg_set(err, errlen, "the event would be %zu bytes, over the %d-byte limit%s",
                   strlen(text), EVENT_MAX_BYTES, ev->data_url ? " (a data: URL too long)" : "");
        free(text);
        text = NULL;
    }
    goto out;
oom:
    errmsg_set(err, errlen, "out of memory encoding the event");
out:
    json_decref(obj);
    return text;
}

/* Optional string field: absent or null leaves *dst NULL. */
static int take_string(json_t *obj, const char *key, char **dst, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        errmsg_set(err, errlen, "%s is not a string", key);
        return -1;
    }
    *dst = strdup(json_string_value(v));
    if (*dst == NULL) {
        errmsg_set(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The event's JSON object, or NULL with a message. */
static json_t *load_object(const void *buf, size_t len, char *err, size_t errlen)
{
    json_t *root;
    json_error_t jerr;

    if (len > EVENT_MAX_BYTES) {
        /* refused before parsing: a huge value costs nothing but this check */
        errmsg_set(err, errlen, "event is %zu bytes, over the %d-byte limit", len, EVENT_MAX_BYTES);
        return NULL;
    }
    /* duplicate keys would make two readers disagree on what the event says */
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        errmsg_set(err, errlen, "event is not JSON: %s at line %d column %d", jerr.text, jerr.line,
                   jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        errmsg_set(err, errlen, "event is not a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

static int check_version(const json_t *root, char *err, size_t errlen)
{
    const json_t *v = json_object_get(root, "v");

    if (v == NULL || json_is_null(v)) {
        errmsg_set(err, errlen, "event has no version (v)");
        return -1;
    }
    if (!json_is_integer(v)) {
        errmsg_set(err, errlen, "event version (v) is not an integer");
        return -1;
    }
    if (json_integer_value(v) != EVENT_VERSION) {
        errmsg_set(err, errlen, "event version %" JSON_INTEGER_FORMAT " is not supported",
                   json_integer_value(v));
        return -1;
    }
    return 0;
}

/* source_url is required: a non-empty string of at most EVENT_MAX_URL. */
static int check_source_url(const json_t *root, char *err, size_t errlen)
{
    const json_t *v = json_object_get(root, "source_url");

    if (v == NULL || json_is_null(v)) {
        errmsg_set(err, errlen, "event has no source_url");
        return -1;
    }
    if (!json_is_string(v)) {
        errmsg_set(err, errlen, "source_url is not a string");
        return -1;
    }
    if (json_string_length(v) == 0) {
        errmsg_set(err, errlen, "source_url is empty");
        return -1;
    }
    if (json_string_length(v) > EVENT_MAX_URL) {
        errmsg_set(err, errlen, "source_url is %zu bytes, over the %d-byte limit",
                   json_string_length(v), EVENT_MAX_URL);
        return -1;
    }
    return 0;
}

/* produced_at: absent, null, an RFC 3339 string or an integer of Unix ms. */
static int take_produced_at(json_t *root, long long *ms_out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, "produced_at");

    if (json_is_string(v)) {
        if (event_parse_time(json_string_value(v), ms_out) != 0) {
            errmsg_set(err, errlen, "produced_at '%.40s' is not an RFC 3339 time", json_string_value(v));
            return -1;
        }
    } else if (json_is_integer(v)) {
        /* only times an RFC 3339 string can carry, so that what we decode we
         * can also pass on (retry and dead-letter events are re-encoded) */
        json_int_t ms = json_integer_value(v);
        if (ms < EVENT_MIN_TIME_MS || ms > EVENT_MAX_TIME_MS) {
            errmsg_set(err, errlen, "produced_at %lld is outside the years 0000-9999", (long long)ms);
            return -1;
        }
        *ms_out = ms;
    } else if (v != NULL && !json_is_null(v)) {
        errmsg_set(err, errlen, "produced_at is not an RFC 3339 string or an integer of Unix ms");
        return -1;
    }
    return 0;
}

int event_decode(const void *buf, size_t len, struct event *out, char *err, size_t errlen)
{
    json_t *root;
    int rc = -1;

    memset(out, 0, sizeof *out);
    root = load_object(buf, len, err, errlen);
    if (root == NULL)
        goto out;
    if (check_version(root, err, errlen) != 0 || check_source_url(root, err, errlen) != 0)
        goto out;
    if (take_string(root, "source_url", &out->source_url, err, errlen) != 0 ||
        take_string(root, "chat_id", &out->chat_id, err, errlen) != 0 ||
        take_string(root, "participant_id", &out->participant_id, err, errlen) != 0 ||
        take_string(root, "account_id", &out->account_id, err, errlen) != 0 ||
        take_string(root, "reason", &out->reason, err, errlen) != 0 ||
        take_string(root, "data_url", &out->data_url, err, errlen) != 0)
        goto out;
    if (take_produced_at(root, &out->produced_at_ms, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        event_clear(out);
    json_decref(root);
    return rc;
}

void event_clear(struct event *ev)
{
    free(ev->source_url);
    free(ev->chat_id);
    free(ev->participant_id);
    free(ev->account_id);
    free(ev->reason);
    free(ev->data_url);
    memset(ev, 0, sizeof *ev);
}

/* --- image-stored --- */

static int is_sha256_hex(const char *s)
{
    size_t n = 0;

    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return 0;
    return n == 64;
}

/* A storage key as the store names files: relative, short, no "..". */
static int is_storage_key(const char *s)
{
    return s[0] != '\0' && s[0] != '/' && strlen(s) <= STORED_EVENT_MAX_KEY && strstr(s, "..") == NULL;
}

char *stored_event_encode(const struct stored_event *ev, char *err, size_t errlen)
{
    json_t *obj = NULL;
    char when[40];
    char *text = NULL;

    if (!is_sha256_hex(ev->sha256) || ev->storage_key == NULL || !is_storage_key(ev->storage_key)) {
        errmsg_set(err, errlen, "image-stored event without a valid sha256 and storage_key");
        goto out;
    }
    event_format_time(ev->produced_at_ms, when, sizeof when);
    obj = json_pack("{s:i, s:s, s:s, s:o, s:I, s:s}", "v", EVENT_VERSION, "sha256", ev->sha256,
                    "storage_key", ev->storage_key, "content_type", string_or_null(ev->content_type),
                    "byte_size", (json_int_t)ev->byte_size, "produced_at", when);
    if (obj == NULL) {
        errmsg_set(err, errlen, "cannot encode the image-stored event (not UTF-8, or out of memory)");
        goto out;
    }
    text = json_dumps(obj, JSON_COMPACT);
    if (text == NULL)
        errmsg_set(err, errlen, "out of memory encoding the event");
out:
    json_decref(obj);
    return text;
}

/* sha256 and storage_key, both required and checked. */
static int take_stored_keys(json_t *root, struct stored_event *out, char *err, size_t errlen)
{
    const json_t *sha = json_object_get(root, "sha256");
    const json_t *key = json_object_get(root, "storage_key");

    if (!json_is_string(sha) || !is_sha256_hex(json_string_value(sha))) {
        errmsg_set(err, errlen, "sha256 is not 64 lowercase hex digits");
        return -1;
    }
    if (!json_is_string(key) || !is_storage_key(json_string_value(key))) {
        errmsg_set(err, errlen, "storage_key is missing, too long or not a relative key");
        return -1;
    }
    memcpy(out->sha256, json_string_value(sha), 65);
    return take_string(root, "storage_key", &out->storage_key, err, errlen);
}

int stored_event_decode(const void *buf, size_t len, struct stored_event *out, char *err, size_t errlen)
{
    json_t *root;
    const json_t *size;
    int rc = -1;

    memset(out, 0, sizeof *out);
    root = load_object(buf, len, err, errlen);
    if (root == NULL)
        goto out;
    if (check_version(root, err, errlen) != 0 || take_stored_keys(root, out, err, errlen) != 0 ||
        take_string(root, "content_type", &out->content_type, err, errlen) != 0 ||
        take_produced_at(root, &out->produced_at_ms, err, errlen) != 0)
        goto out;
    size = json_object_get(root, "byte_size");
    if (size != NULL && !json_is_null(size)) {
        if (!json_is_integer(size) || json_integer_value(size) < 0) {
            errmsg_set(err, errlen, "byte_size is not a non-negative integer");
            goto out;
        }
        out->byte_size = json_integer_value(size);
    }
    rc = 0;
out:
    if (rc != 0)
        stored_event_clear(out);
    json_decref(root);
    return rc;
}

void stored_event_clear(struct stored_event *ev)
{
    free(ev->storage_key);
    free(ev->content_type);
    memset(ev, 0, sizeof *ev);
}
