#!/usr/bin/env bash
# The fleet on an S3 bucket (s3proxy from Maven Central, SigV4 checked, so
# a signing bug fails here): every URL cached once, identical bytes one
# object, every object's bytes hash to its key and carry Content-Type and
# Cache-Control (read back with Debian's awscli, a client nobody here
# wrote), chat_avatars pointing at the bucket; a worker killed with SIGKILL
# in the middle of an upload and s3proxy stopped mid-run lose nothing and
# leave no row without its object; credentials refused at start or while
# running stop the worker with a clear error (exit 2) that does not print
# the secret. The renderer reads blobs from the bucket and uploads its
# renditions there too.
. "$ROOT/tests/integration/lib.sh"
it_setup 4
# the local folder only spools downloads on s3://: checked against the
# bucket below instead
IT_STORE_CHECK=0

. "$ROOT/tests/integration/lib-s3.sh"

# n chats, one distinct image each, named s3-<tag>-<i>.
exts=(jpg png gif webp)
chats() {
    local tag=$1 n=$2 i e
    for i in $(seq 1 "$n"); do
        e=${exts[$((i % 4))]}
        media_image "$MEDIA/$tag/$i.$e" "imgcache-s3-$tag-$i"
        printf '{"id":"%s-%d","accountID":"wa","title":"S3 %s %d","type":"group","imgURL":"%s/%s/%d.%s"}\n' \
            "$tag" "$i" "$tag" "$i" "$MEDIA_URL" "$tag" "$i" "$e"
    done
}
mkdir -p "$MEDIA"
start_media "$MEDIA"

# ---- a fleet of two on the bucket -------------------------------------------------
chats a 24 > "$TESTS_TMP/a.jsonl"
cp "$MEDIA/a/1.png" "$MEDIA/a/same-as-1.png"
printf '{"id":"a-dup","accountID":"wa","title":"Same Bytes","type":"group","imgURL":"%s/a/same-as-1.png"}\n' \
    "$MEDIA_URL" >> "$TESTS_TMP/a.jsonl"
check "import succeeds" "$BIN/imgcache-producer" import "$TESTS_TMP/a.jsonl"
start_worker w1 --drain
start_worker w2 --drain
check "worker 1 drains on s3:// and exits 0" wait_worker w1 60
check "worker 2 drains on s3:// and exits 0" wait_worker w2 60
check_eq "every URL cached once" 25 "$(q "SELECT count(*) FROM cached_images")"
check_eq "identical bytes are one object" 24 "$(q "SELECT count(*) FROM image_blobs")"
check_eq "the bucket agrees with the rows" "" "$(s3_problems)"
# the same bytes under two URLs, taken by two workers at once: both may
# find no object and both PUT it (If-None-Match: * makes one of them learn
# it exists where the service checks atomically; s3proxy checks before it
# reads the body), so 24 or 25 uploads, never more
uploads=$(( $(worker_counter w1 new_blobs) + $(worker_counter w2 new_blobs) ))
check "every object is uploaded once (the twin at most twice): $uploads" test "$uploads" -ge 24 -a "$uploads" -le 25
key=$(q "SELECT storage_key FROM image_blobs WHERE storage_key LIKE '%.png' LIMIT 1")
check_eq "objects carry Content-Type and an immutable Cache-Control" \
    "image/png|public, max-age=31536000, immutable" \
    "$(s3cli s3api head-object --bucket "$S3_BUCKET" --key "avatars/$key" \
        --query '[ContentType, CacheControl]' --output text | tr '\t' '|')"
sha=$(sha256sum < "$MEDIA/a/1.png" | cut -d' ' -f1)
check_eq "chat_avatars points at the object in the bucket" \
    "cached|$AWS_ENDPOINT_URL/$S3_BUCKET/avatars/${sha:0:2}/$sha.png" \
    "$(q "SELECT image_source || '|' || image_url FROM chat_avatars WHERE chat_id = 'a-1'")"
check_eq "every chat shows its cached picture" 0 \
    "$(q "SELECT count(*) FROM chat_avatars WHERE chat_id LIKE 'a-%' AND image_source <> 'cached'")"
check_eq "nothing left in the spool folder" "" "$(find "$IMGCACHE_STORAGE_DIR/.tmp" -type f)"

# ---- the renderer on the bucket: GET each blob, PUT its renditions ---------------------
"$BIN/imgcache-renderer" -X session.timeout.ms=6000 -X heartbeat.interval.ms=1000 --renditions 64 \
    < /dev/null > "$TESTS_TMP/render.log" 2>&1 &
RENDER_PID=$!
_it_track "$RENDER_PID"
renditions_done() { [ "$(q "SELECT count(*) FROM image_renditions")" -ge 24 ]; }
check "the renderer reads every blob from the bucket and renders it" wait_for 30 renditions_done
kill -TERM "$RENDER_PID"
wait_pid "$RENDER_PID" 20 > /dev/null
check_eq "the renderer stops cleanly" 0 "$?"
check_eq "no render failures" 0 "$(q "SELECT count(*) FROM render_failures")"
check_eq "the renditions are objects too, hashing to their keys" "" "$(s3_problems)"

# ---- SIGKILL in the middle of an upload -----------------------------------------
# s3proxy frozen once the worker has started (and checked the bucket),
# before the events come: the worker's PUT is sent and never answered; it
# is killed while the bytes wait in s3proxy's socket.
chats b 12 > "$TESTS_TMP/b.jsonl"
S3_PID=$(sh "$ROOT/compose/s3proxy.sh" pid "$S3DIR")
# a short lease: the next worker need not wait 2 minutes for k1's
start_worker k1 --lease-ttl 2s
check "the worker starts" wait_for 30 grep -q 'event=started' "$TESTS_TMP/k1.log"
kill -STOP "$S3_PID"
check "import of batch b succeeds" "$BIN/imgcache-producer" import "$TESTS_TMP/b.jsonl"
upload_waiting() { ss -Htn state established "( sport = :$S3_PORT )" | awk '$1 > 0 { f = 1 } END { exit !f }'; }
check "an upload is in flight" wait_for 30 upload_waiting
kill_worker k1
kill -CONT "$S3_PID"
check_eq "no row was committed before its PUT was acknowledged" "" "$(s3_problems orphans-ok)"
start_worker k2 --drain
check "the next worker finishes batch b" wait_worker k2 60
check_eq "nothing of batch b is lost" 12 "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE '%/b/%'")"
check_eq "the bucket agrees with the rows after the kill" "" "$(s3_problems)"

# ---- s3proxy down mid-run, then back --------------------------------------------
chats c 12 > "$TESTS_TMP/c.jsonl"
sh "$ROOT/compose/s3proxy.sh" stop "$S3DIR" > /dev/null 2>&1
check "import of batch c succeeds" "$BIN/imgcache-producer" import "$TESTS_TMP/c.jsonl"
start_worker o1 --drain
check "the worker holds a batch while the store is down" \
    wait_for 30 grep -q 'event=storage_down reason=.*holding the batch' "$TESTS_TMP/o1.log"
check "s3proxy starts again on its data" s3_start
check "the worker drains once it is back" wait_worker o1 60
check "the worker says the store is back" grep -q 'event=storage_up' "$TESTS_TMP/o1.log"
check_eq "nothing of batch c is lost" 12 "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE '%/c/%'")"
check_eq "no image failed for the outage" 0 "$(q "SELECT count(*) FROM image_failures")"
check_eq "the bucket agrees with the rows after the outage" "" "$(s3_problems)"

# ---- credentials revoked while running ----------------------------------------------
start_worker r1
check "a worker starts with the credentials of the day" wait_for 30 grep -q 'event=started' "$TESTS_TMP/r1.log"
sh "$ROOT/compose/s3proxy.sh" stop "$S3DIR" > /dev/null 2>&1
NEW_SECRET="rotated${RANDOM}x${RANDOM}"
echo "$AWS_ACCESS_KEY_ID $NEW_SECRET" > "$S3DIR/credentials"
check "s3proxy starts again with another secret" s3_start
chats d 4 > "$TESTS_TMP/d.jsonl"
check "import of batch d succeeds" "$BIN/imgcache-producer" import "$TESTS_TMP/d.jsonl"
wait_worker r1 30
check_eq "refused credentials stop a running worker (exit 2)" 2 "$?"
check "it says why, naming the settings" grep -q 'event=stopped reason=.*check AWS_ACCESS_KEY_ID' "$TESTS_TMP/r1.log"
check_eq "nothing of batch d was recorded without its object" "" "$(s3_problems orphans-ok)"
check_eq "and nothing of it failed: it waits for a worker with the right secret" 0 \
    "$(q "SELECT count(*) FROM image_failures")"

# ---- wrong credentials -------------------------------------------------------------
WRONG="wrongS3secret${RANDOM}x${RANDOM}"
AWS_SECRET_ACCESS_KEY=$WRONG start_worker bad --drain
wait_worker bad 30
check_eq "wrong credentials are a configuration error (exit 2)" 2 "$?"
check "the error names the settings" grep -q 'check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY' "$TESTS_TMP/bad.log"
check "the secret is not printed" absent "$WRONG" "$TESTS_TMP/bad.log"
check "the right secrets are not printed either" absent "$AWS_SECRET_ACCESS_KEY" "$TESTS_TMP"/*.log
check "nor the rotated one" absent "$NEW_SECRET" "$TESTS_TMP"/*.log
it_done
