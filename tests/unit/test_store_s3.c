/* common/store_s3.c's pure parts: parsing s3://bucket/prefix, the bucket's
 * base URL in both addressing styles, object URLs, the sorted and encoded
 * ListObjectsV2 query (curl 7.88 signs the query as given), and the
 * Content-Type of a key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "store_private.h"

static void test_parse_url(void **state)
{
    char bucket[256], prefix[512], why[300];

    (void)state;
    assert_int_equal(s3_parse_url("s3://imgcache/avatars/", bucket, sizeof bucket, prefix, sizeof prefix, why,
                                  sizeof why), 0);
    assert_string_equal(bucket, "imgcache");
    assert_string_equal(prefix, "avatars");
    assert_int_equal(s3_parse_url("s3://my.bucket-1", bucket, sizeof bucket, prefix, sizeof prefix, why,
                                  sizeof why), 0);
    assert_string_equal(bucket, "my.bucket-1");
    assert_string_equal(prefix, "");
    assert_int_equal(s3_parse_url("s3://b1x/a/b/c", bucket, sizeof bucket, prefix, sizeof prefix, why,
                                  sizeof why), 0);
    assert_string_equal(prefix, "a/b/c");
    /* refused: no bucket, upper case, too short, a scheme other than s3,
     * a prefix with bytes that would need encoding in a URL */
    assert_int_equal(s3_parse_url("s3:///x", bucket, sizeof bucket, prefix, sizeof prefix, why, sizeof why), -1);
    assert_int_equal(s3_parse_url("s3://Bucket", bucket, sizeof bucket, prefix, sizeof prefix, why, sizeof why), -1);
    assert_int_equal(s3_parse_url("s3://ab", bucket, sizeof bucket, prefix, sizeof prefix, why, sizeof why), -1);
    assert_int_equal(s3_parse_url("gs://abc", bucket, sizeof bucket, prefix, sizeof prefix, why, sizeof why), -1);
    assert_int_equal(s3_parse_url("s3://abc/a b", bucket, sizeof bucket, prefix, sizeof prefix, why, sizeof why),
                     -1);
    assert_non_null(strstr(why, "s3://abc/a b"));
}

static void test_bucket_base_and_object_url(void **state)
{
    char base[512], url[1024];

    (void)state;
    assert_int_equal(s3_bucket_base("http://127.0.0.1:9000/", "us-east-1", "imgcache", 1, base, sizeof base), 0);
    assert_string_equal(base, "http://127.0.0.1:9000/imgcache");
    assert_int_equal(s3_bucket_base("https://minio.example:9000", "eu-west-1", "imgcache", 0, base, sizeof base), 0);
    assert_string_equal(base, "https://imgcache.minio.example:9000");
    assert_int_equal(s3_bucket_base("", "eu-west-1", "imgcache", 0, base, sizeof base), 0);
    assert_string_equal(base, "https://imgcache.s3.eu-west-1.amazonaws.com");
    assert_int_equal(s3_bucket_base(NULL, "eu-west-1", "imgcache", 1, base, sizeof base), 0);
    assert_string_equal(base, "https://s3.eu-west-1.amazonaws.com/imgcache");
    assert_int_equal(s3_bucket_base("http://h", "r", "imgcache", 1, base, 8), -1);

    assert_int_equal(s3_object_url("http://h/b", "avatars", "ab/ab12.png", url, sizeof url), 0);
    assert_string_equal(url, "http://h/b/avatars/ab/ab12.png");
    assert_int_equal(s3_object_url("http://h/b", "", "ab/ab12.png", url, sizeof url), 0);
    assert_string_equal(url, "http://h/b/ab/ab12.png");
}

static void test_public_base(void **state)
{
    struct store_s3_settings st = {
        .url = "s3://imgcache/avatars/", .endpoint = "http://127.0.0.1:9000", .region = "us-east-1",
        .addressing = "auto",
    };
    char out[512];

    (void)state;
    assert_int_equal(s3_public_base_of(&st, out, sizeof out), 0);
    assert_string_equal(out, "http://127.0.0.1:9000/imgcache/avatars");
    st.endpoint = "";
    st.region = "eu-west-1";
    assert_int_equal(s3_public_base_of(&st, out, sizeof out), 0);
    assert_string_equal(out, "https://imgcache.s3.eu-west-1.amazonaws.com/avatars");
    st.addressing = "path";
    st.url = "s3://imgcache";
    assert_int_equal(s3_public_base_of(&st, out, sizeof out), 0);
    assert_string_equal(out, "https://s3.eu-west-1.amazonaws.com/imgcache");
    st.url = "s3://x";
    assert_int_equal(s3_public_base_of(&st, out, sizeof out), -1);
}

static void test_list_query_sorted_and_encoded(void **state)
{
    char q[1024];

    (void)state;
    assert_int_equal(s3_list_query("avatars/", NULL, q, sizeof q), 0);
    assert_string_equal(q, "list-type=2&prefix=avatars%2F");
    /* a continuation token is opaque and often holds '+', '/' and '=' */
    assert_int_equal(s3_list_query("a b/", "1+x/y==", q, sizeof q), 0);
    assert_string_equal(q, "continuation-token=1%2Bx%2Fy%3D%3D&list-type=2&prefix=a%20b%2F");
    assert_int_equal(s3_list_query("~-_.", "", q, sizeof q), 0);
    assert_string_equal(q, "list-type=2&prefix=~-_.");
    assert_int_equal(s3_list_query("avatars/", "token", q, 10), -1);
}

static void test_list_parse(void **state)
{
    static const char page[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>b</Name>"
        "<Prefix>avatars/</Prefix><KeyCount>3</KeyCount><IsTruncated>true</IsTruncated>"
        "<Contents><Key>avatars/ab/ab01.png</Key><LastModified>2026-12-06T09:40:42.000Z</LastModified>"
        "<Size>10</Size></Contents>"
        "<Contents><Key>avatars/</Key><Size>0</Size></Contents>"
        "<Contents><Key>avatars/n&amp;b.png</Key><Size>7</Size></Contents>"
        "<NextContinuationToken>1+x/y==</NextContinuationToken></ListBucketResult>";
    static const char last[] = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
    struct store_object objs[3];
    char token[64];
    size_t n = 0;

    (void)state;
    assert_int_equal(s3_list_parse(page, 8, objs, 3, &n, token, sizeof token), 0);
    assert_int_equal(n, 2); /* the prefix itself is not an object of ours */
    assert_string_equal(objs[0].key, "ab/ab01.png");
    assert_int_equal(objs[0].size, 10);
    assert_int_equal(objs[0].mtime, 1796550042LL);
    assert_string_equal(objs[1].key, "n&b.png");
    assert_int_equal(objs[1].mtime, -1);
    assert_string_equal(token, "1+x/y==");
    assert_int_equal(s3_list_parse(page, 8, objs, 1, &n, token, sizeof token), -1);
    assert_int_equal(s3_list_parse(last, 8, objs, 3, &n, token, sizeof token), 0);
    assert_int_equal(n, 0);
    assert_string_equal(token, "");
    /* more to come but no token: an error, not a silently short listing */
    assert_int_equal(s3_list_parse("<IsTruncated>true</IsTruncated>", 8, objs, 3, &n, token, sizeof token), -1);
}

static void test_content_type(void **state)
{
    (void)state;
    assert_string_equal(s3_content_type("ab/ab.png"), "image/png");
    assert_string_equal(s3_content_type("ab/ab.jpg"), "image/jpeg");
    assert_string_equal(s3_content_type("ab/ab.gif"), "image/gif");
    assert_string_equal(s3_content_type("ab/ab.webp"), "image/webp");
    assert_string_equal(s3_content_type("ab/ab"), "application/octet-stream");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_bucket_base_and_object_url),
        cmocka_unit_test(test_public_base),
        cmocka_unit_test(test_list_query_sorted_and_encoded),
        cmocka_unit_test(test_list_parse),
        cmocka_unit_test(test_content_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
