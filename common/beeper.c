#include "beeper.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errmsg.h"
#include "resolve.h"

/* Copies untrusted text for an error message: at most 80 bytes, control
 * characters as '?', so a chat id cannot forge log lines. */
static void printable(const char *s, char *out, size_t outlen)
{
    size_t i = 0;

    for (; s[i] != '\0' && i + 1 < outlen && i < 80; i++)
        out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    out[i] = '\0';
}

/* Optional string field. Absent or null leaves *dst NULL; so does "" when
 * empty_is_null (image URLs: Beeper sends "" for "no picture"). `where` names
 * the object for the message ("chat abc: " or "chat abc: participants.items[2]."). */
static int opt_string(const json_t *obj, const char *key, int empty_is_null, char **dst,
                      const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        errmsg_set(err, errlen, "%s%s is not a string", where, key);
        return -1;
    }
    if (empty_is_null && json_string_length(v) == 0)
        return 0;
    /* keys and indexed columns in PostgreSQL hold at most ~2.7 KB */
    if (json_string_length(v) > BEEPER_MAX_FIELD) {
        errmsg_set(err, errlen, "%s%s is %zu bytes, over the %d-byte limit", where, key,
                   json_string_length(v), BEEPER_MAX_FIELD);
        return -1;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        errmsg_set(err, errlen, "%s%s contains a NUL character", where, key);
        return -1;
    }
    *dst = strdup(json_string_value(v));
    if (*dst == NULL) {
        errmsg_set(err, errlen, "%sout of memory", where);
        return -1;
    }
    return 0;
}

/* An image URL field (imgURL): like opt_string with "" as NULL, except
 * that a URL which cannot be kept is dropped, not the chat: *dropped gets
 * the reason and *dst stays NULL. A data: URL is kept under its key, the
 * URL itself in *data_url. */
static int opt_image_url(const json_t *obj, const char *key, char **dst, char **data_url,
                         char **dropped, const char *where, char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    char why[160] = "";
    char data_key[RESOLVE_DATA_KEY_LEN + 1];
    size_t len;
    const char *url;
    int is_data;

    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        errmsg_set(err, errlen, "%s%s is not a string", where, key);
        return -1;
    }
    len = json_string_length(v);
    url = json_string_value(v);
    if (len == 0)
        return 0;
    is_data = resolve_is_data_url(url);
    if (strlen(url) != len)
        snprintf(why, sizeof why, "%s contains a NUL character", key);
    else if (is_data && len > BEEPER_MAX_DATA_URL)
        snprintf(why, sizeof why, "%s is a data: URL of %zu bytes, over the %d-byte limit", key, len,
                 BEEPER_MAX_DATA_URL);
    else if (!is_data && len > BEEPER_MAX_FIELD)
        snprintf(why, sizeof why, "%s is %zu bytes, over the %d-byte limit", key, len,
                 BEEPER_MAX_FIELD);
    if (why[0] != '\0') {
        *dropped = strdup(why);
        if (*dropped == NULL)
            goto oom;
        return 0;
    }
    if (is_data) {
        if (resolve_data_key(url, data_key) != 0)
            goto oom;
        *data_url = strdup(url);
        *dst = strdup(data_key);
    } else {
        *dst = strdup(url);
    }
    if (*dst == NULL || (is_data && *data_url == NULL))
        goto oom;
    return 0;
oom:
    errmsg_set(err, errlen, "%sout of memory", where);
    return -1;
}

static int opt_bool(const json_t *obj, const char *key, int *dst, const char *where, char *err,
                    size_t errlen)
{
    json_t *v = json_object_get(obj, key);

    *dst = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v)) {
        errmsg_set(err, errlen, "%s%s is not a boolean", where, key);
        return -1;
    }
    *dst = json_is_true(v);
    return 0;
}

static int participant_from_json(const json_t *item, size_t idx, const char *chat,
                                 struct beeper_participant *p, char *err, size_t errlen)
{
    char where[160];
    json_t *id;

    snprintf(where, sizeof where, "chat %s: participants.items[%zu].", chat, idx);
    if (!json_is_object(item)) {
        errmsg_set(err, errlen, "chat %s: participants.items[%zu] is not an object", chat, idx);
        return -1;
    }
    id = json_object_get(item, "id");
    if (id == NULL || json_is_null(id) || (json_is_string(id) && json_string_length(id) == 0)) {
        errmsg_set(err, errlen, "chat %s: participants.items[%zu] has no id", chat, idx);
        return -1;
    }
    if (opt_string(item, "id", 0, &p->id, where, err, errlen) != 0 ||
        opt_string(item, "fullName", 0, &p->full_name, where, err, errlen) != 0 ||
        opt_image_url(item, "imgURL", &p->img_url, &p->img_data_url, &p->img_dropped, where, err,
                      errlen) != 0 ||
        opt_bool(item, "isSelf", &p->is_self, where, err, errlen) != 0)
        return -1;
    return 0;
}

static int participants_from_json(const json_t *parts, const char *chat, struct beeper_chat *out,
                                  char *err, size_t errlen)
{
    char where[128];
    json_t *items;
    size_t n;

    if (parts == NULL || json_is_null(parts))
        return 0;
    if (!json_is_object(parts)) {
        errmsg_set(err, errlen, "chat %s: participants is not an object", chat);
        return -1;
    }
    snprintf(where, sizeof where, "chat %s: participants.", chat);
    if (opt_bool(parts, "hasMore", &out->participants_has_more, where, err, errlen) != 0)
        return -1;
    items = json_object_get(parts, "items");
    if (items == NULL || json_is_null(items))
        return 0;
    if (!json_is_array(items)) {
        errmsg_set(err, errlen, "chat %s: participants.items is not an array", chat);
        return -1;
    }
    n = json_array_size(items);
    if (n == 0)
        return 0;
    out->participants = calloc(n, sizeof *out->participants);
    if (out->participants == NULL) {
        errmsg_set(err, errlen, "chat %s: out of memory for %zu participants", chat, n);
        return -1;
    }
    /* counted as filled before each is parsed, so a failure frees the partial one */
    for (size_t i = 0; i < n; i++) {
        out->n_participants = i + 1;
        if (participant_from_json(json_array_get(items, i), i, chat, &out->participants[i], err,
                                  errlen) != 0)
            return -1;
    }
    return 0;
}

int beeper_chat_from_json(const json_t *obj, struct beeper_chat *out, char *err, size_t errlen)
{
    char chat[96];
    char where[128];
    char shown[96];
    json_t *v;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (!json_is_object(obj)) {
        errmsg_set(err, errlen, "chat is not a JSON object");
        goto out;
    }
    v = json_object_get(obj, "id");
    if (v == NULL || json_is_null(v)) {
        errmsg_set(err, errlen, "chat has no id");
        goto out;
    }
    if (!json_is_string(v)) {
        errmsg_set(err, errlen, "chat id is not a string");
        goto out;
    }
    if (json_string_length(v) == 0) {
        errmsg_set(err, errlen, "chat has an empty id");
        goto out;
    }
    printable(json_string_value(v), chat, sizeof chat);
    snprintf(where, sizeof where, "chat %s: ", chat);
    if (opt_string(obj, "id", 0, &out->id, where, err, errlen) != 0)
        goto out;

    v = json_object_get(obj, "type");
    if (v == NULL || json_is_null(v)) {
        errmsg_set(err, errlen, "chat %s: has no type", chat);
        goto out;
    }
    if (!json_is_string(v)) {
        errmsg_set(err, errlen, "chat %s: type is not a string", chat);
        goto out;
    }
    if (strcmp(json_string_value(v), "single") != 0 && strcmp(json_string_value(v), "group") != 0) {
        printable(json_string_value(v), shown, sizeof shown);
        errmsg_set(err, errlen, "chat %s: type '%s' is not single or group", chat, shown);
        goto out;
    }
    if (opt_string(obj, "type", 0, &out->type, where, err, errlen) != 0 ||
        opt_string(obj, "accountID", 0, &out->account_id, where, err, errlen) != 0 ||
        opt_string(obj, "title", 0, &out->title, where, err, errlen) != 0 ||
        opt_string(obj, "network", 0, &out->network, where, err, errlen) != 0 ||
        opt_image_url(obj, "imgURL", &out->img_url, &out->img_data_url, &out->img_dropped, where,
                      err, errlen) != 0 ||
        opt_string(obj, "lastActivity", 0, &out->last_activity, where, err, errlen) != 0)
        goto out;
    if (participants_from_json(json_object_get(obj, "participants"), chat, out, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        beeper_chat_clear(out);
    return rc;
}

int beeper_chat_parse(const char *text, size_t len, struct beeper_chat *out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    memset(out, 0, sizeof *out);
    root = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    if (root == NULL) {
        /* an import line is one line: the column is what helps */
        if (jerr.line > 1)
            errmsg_set(err, errlen, "not JSON: %s at line %d column %d", jerr.text, jerr.line, jerr.column);
        else
            errmsg_set(err, errlen, "not JSON: %s at column %d", jerr.text, jerr.column);
        return -1;
    }
    rc = beeper_chat_from_json(root, out, err, errlen);
    json_decref(root);
    return rc;
}

void beeper_chat_clear(struct beeper_chat *chat)
{
    free(chat->id);
    free(chat->account_id);
    free(chat->title);
    free(chat->type);
    free(chat->network);
    free(chat->img_url);
    free(chat->img_data_url);
    free(chat->img_dropped);
    free(chat->last_activity);
    for (size_t i = 0; i < chat->n_participants; i++) {
        free(chat->participants[i].id);
        free(chat->participants[i].full_name);
        free(chat->participants[i].img_url);
        free(chat->participants[i].img_data_url);
        free(chat->participants[i].img_dropped);
    }
    free(chat->participants);
    memset(chat, 0, sizeof *chat);
}
