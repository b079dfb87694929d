# Chats, workers and counts shared by the gc tests (80-gc, 91-s3-gc); sourced
# after lib.sh, once M (the media server's URL) and MEDIA (its folder) are set.

single() { # id, participant image
    printf '{"id":"%s","accountID":"x","title":"T %s","type":"single","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true},{"id":"u-%s","fullName":"U %s","imgURL":"%s","isSelf":false}],"hasMore":false}}\n' \
        "$1" "$1" "$1" "$1" "$2"
}
group() { # id, image
    printf '{"id":"%s","accountID":"x","title":"G %s","type":"group","imgURL":"%s"}\n' "$1" "$1" "$2"
}
drain() { # worker name
    start_worker "$1" --drain
    check "worker $1 drains and exits 0" wait_worker "$1" 120
}
# The cached URLs, without the server and extension: "a1,a2,s1".
cached_urls() { q "SELECT string_agg(replace(replace(source_url, '$M/', ''), '.png', ''), ',' ORDER BY source_url) FROM cached_images"; }
blob_count() { q "SELECT count(*) FROM image_blobs"; }
size_of() { stat -c %s "$MEDIA/$1.png"; }
