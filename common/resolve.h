#ifndef IMGCACHE_RESOLVE_H
#define IMGCACHE_RESOLVE_H
/* Turns an avatar source URL into what to fetch:
 *  - http(s)://          fetched as is;
 *  - file://.../media/X  percent-decoded; X (the part after the LAST "/media/"
 *                        segment) is read from BEEPER_MEDIA_DIR when set,
 *                        else fetched from BEEPER_MEDIA_SERVER/X?token=...,
 *                        else, when BEEPER_API_TOKEN is set, from
 *                        BEEPER_API_URL/v1/assets/serve?url=<the file:// URL>;
 *  - /.../media/X        an absolute local path (Desktop 4.2.808+ chat
 *                        images): exactly as the matching file:// URL;
 *  - mxc:// localmxc://  via BEEPER_API_URL/v1/assets/serve?url=<escaped>
 *                        with "Authorization: Bearer BEEPER_API_TOKEN";
 *  - data:               decoded in memory (see resolve_data_key below).
 * Anything else (ftp:, javascript:, a relative path, ..) is refused with a reason.
 * Uses curl's URL API and curl_easy_unescape/escape; nothing hand-parsed.
 *
 * Secrets: struct resolved.url and .auth_header may carry a token and must
 * never be logged or stored; .display is safe (query values redacted).
 * Ownership: resolve_source() fills *out with malloc'd strings;
 * resolved_clear() frees them. The config strings are borrowed. */
#include <stddef.h>

#include "errmsg.h"

struct resolve_config {
    const char *media_dir;     /* BEEPER_MEDIA_DIR or NULL/"" */
    const char *media_server;  /* BEEPER_MEDIA_SERVER or NULL/"" */
    const char *media_token;   /* BEEPER_MEDIA_TOKEN or NULL/"" */
    const char *api_url;       /* BEEPER_API_URL or NULL/"" */
    const char *api_token;     /* BEEPER_API_TOKEN or NULL/"" */
};

enum resolve_kind { RESOLVE_HTTP = 1, RESOLVE_FILE = 2, RESOLVE_DATA = 3 };

struct resolved {
    enum resolve_kind kind;
    char *url;          /* RESOLVE_HTTP: URL to fetch (may hold a token) */
    char *auth_header;  /* RESOLVE_HTTP: "Authorization: Bearer ..." or NULL */
    char *path;         /* RESOLVE_FILE: media_dir + "/" + relative part */
    unsigned char *data; /* RESOLVE_DATA: the decoded bytes (none without the network) */
    size_t data_len;
    char *display;      /* always: a redacted form, safe for logs and rows */
};

/* data: URLs (RFC 2397; Beeper gives avatars as "data:image/png;base64,...")
 * are cached under a short stable key, because a 28 KB URL does not fit a
 * PostgreSQL btree key (~2.7 KB): "data:sha256,<64 hex>", the SHA-256 of the
 * whole URL as given. The key names the image in every table, the Kafka key
 * and the Redis lease; the URL itself travels only in the event (data_url).
 * resolve_source() decodes a data: URL (base64 or percent-encoded) into
 * .data, with the key as .display; the key alone is refused (it has no
 * bytes). */
#define RESOLVE_DATA_KEY_PREFIX "data:sha256,"
#define RESOLVE_DATA_KEY_LEN (sizeof RESOLVE_DATA_KEY_PREFIX - 1 + 64)
/* 1 when url starts with "data:" (any case). */
int resolve_is_data_url(const char *url);
/* Writes the key of data_url into key; -1 only when out of memory. */
int resolve_data_key(const char *data_url, char key[RESOLVE_DATA_KEY_LEN + 1])
    MUST_CHECK;

/* resolve_source() fails with -1 when the URL itself is unusable
 * (permanent), or with RESOLVE_ERR_CONFIG when the worker's configuration
 * lacks what the URL needs (a file:// URL without BEEPER_MEDIA_DIR,
 * BEEPER_MEDIA_SERVER or BEEPER_API_TOKEN): not the image's fault, so
 * retryable once the configuration is fixed. A reason is in err either way. */
#define RESOLVE_ERR_CONFIG (-2)
int resolve_source(const struct resolve_config *cfg, const char *source_url,
                   struct resolved *out, char *err, size_t errlen) MUST_CHECK;
void resolved_clear(struct resolved *r);

/* Opens `path` read-only when it is a regular file inside `media_dir`,
 * after resolving symlinks: refuses "..", symlinks pointing outside, and
 * anything that is not a regular file. Returns an fd (caller closes) or -1. */
int resolve_open_confined(const char *media_dir, const char *path, char *err, size_t errlen) MUST_CHECK;

/* Copies url into out with every query value and any userinfo replaced by
 * "REDACTED" (e.g. "http://h/x?token=REDACTED"), truncated to outlen. */
void resolve_redact(const char *url, char *out, size_t outlen);

#endif
