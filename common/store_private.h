#ifndef IMGCACHE_STORE_PRIVATE_H
#define IMGCACHE_STORE_PRIVATE_H
/* Internals shared by store.c (the blob life cycle, and the folder backend)
 * and store_s3.c (the S3 backend). Nothing outside common/store*.c includes
 * this; the pure parts are declared here for the unit tests too.
 *
 * Both backends stream a download into a local temporary file under
 * <dir>/.tmp (dir: the store folder for file://, a spool folder for s3://);
 * they differ in how store_publish() makes a sealed blob durable: a rename
 * into <dir>/<aa>/, or a PUT of the object <prefix>/<aa>/<sha256>.<ext>. */
#include <stdatomic.h>
#include <stddef.h>

#include "errmsg.h"
#include "store.h"

struct s3_client;

struct store {
    char *dir;                /* the store (file://) or the spool of downloads (s3://) */
    atomic_ullong counter;    /* temporary names, from the loop and the committer */
    unsigned long long nonce; /* tells apart workers that share the folder */
    struct s3_client *s3;     /* NULL: the folder is the store */
};

/* s3://bucket[/prefix] -> bucket and prefix (no leading or trailing '/';
 * "" when none). -1 with a reason (the URL holds no secret: quoted). */
int s3_parse_url(const char *url, char *bucket, size_t bucketlen, char *prefix, size_t prefixlen,
                 char *why, size_t whylen) MUST_CHECK;
/* The object's URL: endpoint base (path-style: <endpoint>/<bucket>;
 * virtual-hosted: scheme://<bucket>.<host>) + "/" + prefix + "/" + key.
 * -1 when it does not fit. */
int s3_object_url(const char *base, const char *prefix, const char *key, char *out, size_t outlen)
    MUST_CHECK;
/* The base URL of the bucket: path_style 1 -> endpoint/bucket, 0 ->
 * scheme://bucket.host[:port] (endpoint without a path). With no endpoint:
 * AWS's, https://s3.<region>.amazonaws.com. -1 when it does not fit. */
int s3_bucket_base(const char *endpoint, const char *region, const char *bucket, int path_style,
                   char *out, size_t outlen) MUST_CHECK;
/* The query of a ListObjectsV2 request, its parameters sorted by name and
 * percent-encoded as SigV4 wants (curl 7.88 signs the query as given):
 * continuation-token (when not NULL/""), list-type=2, prefix. */
int s3_list_query(const char *prefix, const char *token, char *out, size_t outlen) MUST_CHECK;
/* "image/png" for "aa/<sha>.png"...; application/octet-stream otherwise. */
const char *s3_content_type(const char *key);

/* The S3 backend of the store (store_s3.c). */
struct store_s3_settings {
    const char *url;          /* s3://bucket[/prefix] */
    const char *endpoint;     /* "" or NULL: AWS */
    const char *region;
    const char *access_key;
    const char *secret_key;
    const char *addressing;   /* "auto", "path" or "virtual" */
};
/* Checks the bucket (a signed HEAD): STORE_ERR_DENIED for refused
 * credentials, a missing bucket or a wrong region (a setting to fix);
 * unreachable is not an error here (the workers wait for it like for
 * PostgreSQL), only logged. Its requests are serialised by a lock (one
 * connection, kept alive): any thread may call it. */
int s3_client_new(const struct store_s3_settings *st, struct s3_client **out, char *err, size_t errlen)
    MUST_CHECK;
void s3_client_free(struct s3_client *c);
/* One blob of s3_publish_files(): key (<aa>/<sha256>.<ext>), its
 * temporary file and size in; result out: 1 when it was PUT, 0 when an
 * object of that size was there already, else STORE_ERR_UNAVAILABLE
 * (unreachable, 5xx, SlowDown: try again later; also a blob not tried
 * because another failed so, with err ""), STORE_ERR_DENIED (credentials,
 * bucket, region) or -1 (this object only), with err naming no secret. */
struct s3_upload {
    const char *key;
    const char *path;
    long long size;
    int result;
    char err[300];
};
/* Publishes n blobs, up to S3_LANES at a time (threads of its own, joined
 * before it returns). */
void s3_publish_files(struct s3_client *c, struct s3_upload *u, size_t n);
/* GET of the object key, whole (store_get on S3): STORE_ERR_MISSING for a
 * 404, else as s3_publish_file's classes. */
int s3_get_object(struct s3_client *c, const char *key, unsigned char **data, size_t *len, char *err,
                  size_t errlen);
/* DELETE of an object (gc): 0 when gone, a 404 too; else as GET's classes. */
int s3_delete_object(struct s3_client *c, const char *key, char *err, size_t errlen) MUST_CHECK;
/* Every object under the prefix, a ListObjectsV2 page at a time (sorted,
 * percent-encoded query; continuation-token), to fn. */
int s3_list_objects(struct s3_client *c, store_list_fn fn, void *arg, char *err, size_t errlen) MUST_CHECK;
/* One ListObjectsV2 reply (NUL-terminated XML): its objects whose key is
 * longer than plen bytes (the prefix and its '/'), without those bytes,
 * into objs (at most max: -1 when more), and the NextContinuationToken
 * ("" on the last page). -1 when truncated without a token. */
int s3_list_parse(const char *xml, size_t plen, struct store_object *objs, size_t max, size_t *n,
                  char *token, size_t tokenlen) MUST_CHECK;
/* The URL the bucket's objects are read from (no trailing '/'), from the
 * settings alone (the keys are not needed). */
int s3_public_base_of(const struct store_s3_settings *st, char *out, size_t outlen) MUST_CHECK;

#endif
