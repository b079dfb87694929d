#!/usr/bin/env bash
# `imgcache-producer gc` on an S3 store (s3proxy, SigV4 on; the bucket read
# back with Debian's awscli):
#  - chats removed and a participant re-pointed, then `gc --grace 0`:
#    exactly the unreferenced rows and their objects are gone, a shared
#    blob stays, chat_avatars is unchanged for the remaining chats;
#  - an orphan object (no row) older than an hour is deleted
#    (ListObjectsV2), a young one is not, nor an object not of the store's
#    key form; --dry-run reports the same and changes nothing; orphans
#    over two listing pages (continuation-token) are all seen;
#  - the race, with two connections: a worker's content lock held shared
#    in a psql session makes gc skip that blob (row and object), released
#    gc removes it; gc's lock held in an open transaction makes a worker's
#    commit wait, and once gc deleted the object and committed, the worker
#    uploads it again (no row without its object).
. "$ROOT/tests/integration/lib.sh"
it_setup 2
IT_STORE_CHECK=0 # the local folder only spools on s3://
. "$ROOT/tests/integration/lib-s3.sh"

P="$BIN/imgcache-producer"
LOCK_NS=1768777587 # DB_STORE_LOCK_NS (common/db_private.h)

for n in a1 a2 a2new a3 a6 a9; do
    media_image "$MEDIA/$n.png" "imgcache-s3gc-$n"
done
media_image "$MEDIA/s1.png" "imgcache-s3gc-shared"
cp "$MEDIA/s1.png" "$MEDIA/s2.png"
cp "$MEDIA/a6.png" "$MEDIA/a6copy.png"
start_media "$MEDIA"
M=$MEDIA_URL

. "$ROOT/tests/integration/lib-gc.sh"
sha_of() { sha256sum "$MEDIA/$1.png" | cut -d' ' -f1; }
key_of() { local s; s=$(sha_of "$1"); echo "${s:0:2}/$s.png"; }
avatars() { q "SELECT chat_id || '|' || coalesce(image_url, '') || '|' || image_source FROM chat_avatars ORDER BY chat_id"; }
objects() { s3cli s3api list-objects-v2 --bucket "$S3_BUCKET" --prefix avatars/ --query 'Contents[].Key' --output text | tr '\t' '\n' | sort; }
has_object() { s3cli s3api head-object --bucket "$S3_BUCKET" --key "avatars/$1" > /dev/null 2>&1; }
no_object() { ! has_object "$1"; }
backing() { echo "$S3DIR/data/$S3_BUCKET/avatars/$1"; } # s3proxy's filesystem backend
backdate_bucket() { find "$S3DIR/data/$S3_BUCKET" -type f -exec touch -d '2 hours ago' {} +; }
gc() { "$P" gc --quiet "$@" 2>> "$TESTS_TMP/gc.err"; }

# A psql session fed through a FIFO on fd 7 (the other connection of a race).
session_open() {
    mkfifo "$TESTS_TMP/session.fifo"
    psql -XAtq -v ON_ERROR_STOP=1 "$DATABASE_URL" < "$TESTS_TMP/session.fifo" > "$TESTS_TMP/session.out" 2>&1 &
    _it_track $!
    SESSION_PID=$!
    exec 7> "$TESTS_TMP/session.fifo"
}
session() { echo "$1" >&7; }
session_close() {
    exec 7>&-
    wait "$SESSION_PID"
    rm -f "$TESTS_TMP/session.fifo"
}
lock_key() { echo "$LOCK_NS, ('x' || substr('$1', 1, 8))::bit(32)::int"; }
# advisory content locks: $1 t (granted) or f (waited for)
locks() { q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $LOCK_NS AND objsubid = 2 AND granted = '$1'"; }
locked() { [ "$(locks "$1")" -ge 1 ]; }
unlocked() { ! locked "$1"; }

{
    single s-1 "$M/a1.png"
    single s-2 "$M/a2.png"
    group g-3 "$M/a3.png"
    group g-4 "$M/s1.png"
    group g-5 "$M/s2.png"
    group g-6 "$M/a6.png"
} > "$TESTS_TMP/chats.jsonl"
check "import exits 0" "$P" import --quiet "$TESTS_TMP/chats.jsonl"
drain w1
single s-2 "$M/a2new.png" > "$TESTS_TMP/repoint.jsonl"
check "the re-pointing import exits 0" "$P" import --quiet "$TESTS_TMP/repoint.jsonl"
drain w2
q "DELETE FROM chats WHERE chat_id IN ('g-3', 'g-5')" > /dev/null
check_eq "before gc: 7 cached URLs, 6 blobs, the bucket agrees" "a1,a2,a2new,a3,a6,s1,s2|6|" \
    "$(cached_urls)|$(blob_count)|$(s3_problems)"

# orphans: old and young objects of the store's form, and an old object
# that is not one (gc leaves what is not its own under the prefix)
old_orphan=ab/ab$(printf '%062d' 1).png
young_orphan=ab/ab$(printf '%062d' 2).png
printf 'old orphan' > "$TESTS_TMP/old"
printf 'young orphan' > "$TESTS_TMP/young"
s3cli s3 cp --quiet "$TESTS_TMP/old" "s3://$S3_BUCKET/avatars/$old_orphan"
s3cli s3 cp --quiet "$TESTS_TMP/old" "s3://$S3_BUCKET/avatars/notes/readme.png"
backdate_bucket
s3cli s3 cp --quiet "$TESTS_TMP/young" "s3://$S3_BUCKET/avatars/$young_orphan"
touch -d '50 minutes ago' "$(backing "$young_orphan")"
modified=$(s3cli s3api head-object --bucket "$S3_BUCKET" --key "avatars/$old_orphan" --query LastModified --output text)
check "s3proxy's LastModified follows the backing file's mtime ($modified)" \
    test $(( $(date +%s) - $(date -d "$modified" +%s) )) -ge 7000

# a worker's lock on a3's content, held in another session
a3=$(sha_of a3)
session_open
session "SELECT pg_advisory_lock_shared($(lock_key "$a3"));"
check "the worker-side lock is held" wait_for 10 locked t

# what --grace 0 removes now: rows a2, a3, s2; blob a2 with its object
# (a3's is in use, s2's is s1's), and the old orphan
want="rows=3 failures=0 blobs=1 files=2 bytes=$(( $(size_of a2) + 10 )) tombstones=0"
avatars > "$TESTS_TMP/avatars.before"
objects > "$TESTS_TMP/objects.before"
out=$(gc --grace 0 --dry-run)
check "gc --dry-run exits 0" test $? -eq 0
check_eq "--dry-run reports what would go (a3's blob too: it takes no lock)" \
    "rows=3 failures=0 blobs=2 files=3 bytes=$(( $(size_of a2) + $(size_of a3) + 10 )) tombstones=0 dry_run=1" "$out"
check_eq "--dry-run removes no row" "a1,a2,a2new,a3,a6,s1,s2|6" "$(cached_urls)|$(blob_count)"
check_eq "--dry-run deletes no object" "$(cat "$TESTS_TMP/objects.before")" "$(objects)"

out=$(gc --grace 0)
check "gc --grace 0 exits 0" test $? -eq 0 || sed 's/^/#   /' "$TESTS_TMP/gc.err"
check_eq "gc reports rows, blobs, objects (files) and bytes" "${want%tombstones=0}tombstones=3" "$out"
check_eq "exactly the unreferenced rows are gone" "a1,a2new,a6,s1" "$(cached_urls)"
check "a2's object is gone" no_object "$(key_of a2)"
check_eq "a3's blob, in use by the worker, stays with its object; s1's shared one too" "1|1" \
    "$(q "SELECT count(*) FROM image_blobs WHERE sha256 = '$a3'")|$(q "SELECT count(*) FROM image_blobs WHERE sha256 = '$(sha_of s1)'")"
check "... a3's object" has_object "$(key_of a3)"
check_eq "chat_avatars is unchanged for every remaining chat" \
    "$(grep -v -e '^g-3|' -e '^g-5|' "$TESTS_TMP/avatars.before")" "$(avatars)"
check "the old orphan object is deleted" no_object "$old_orphan"
check "the young orphan object is kept" has_object "$young_orphan"
check "an object not of the store's key form is kept" has_object notes/readme.png

session "SELECT pg_advisory_unlock_shared($(lock_key "$a3"));"
check "the worker-side lock is released" wait_for 10 unlocked t
out=$(gc --grace 0)
check_eq "released, a later gc removes a3's blob and object" "rows=0 failures=0 blobs=1 files=1 bytes=$(size_of a3) tombstones=0" "$out"
check "... a3's object" no_object "$(key_of a3)"
s3cli s3 rm --quiet "s3://$S3_BUCKET/avatars/$young_orphan"
s3cli s3 rm --quiet "s3://$S3_BUCKET/avatars/notes/readme.png"
check_eq "the bucket agrees with the rows after gc" "" "$(s3_problems)"

# a ListObjectsV2 page holds 1000 keys: 1100 old orphans (files made in
# s3proxy's backend folder directly) take two, and a continuation-token
shard=$(backing cd)
mkdir -p "$shard"
for i in $(seq 1 1100); do echo "$shard/cd$(printf '%062d' "$i").png"; done | xargs touch -d '2 hours ago'
out=$(gc --grace 0 --dry-run)
check_eq "gc --dry-run finds orphans over two listing pages" "files=1100" "$(grep -o 'files=[0-9]*' <<< "$out")"
rm -rf "$shard"

# the converse: gc holds a6's lock in an open transaction (its step 2,
# between the lock and the commit) while a worker stores a6's bytes again;
# the worker waits before its HEAD, so it does not find the object gc is
# about to delete: it uploads it again once gc committed
a6=$(sha_of a6)
session "BEGIN; SELECT pg_advisory_xact_lock($(lock_key "$a6"));"
check "gc's lock is held" wait_for 10 locked t || sed 's/^/#   /' "$TESTS_TMP/session.out"
group g-9 "$M/a6copy.png" > "$TESTS_TMP/copy.jsonl"
check "an import of a6's bytes under a new URL exits 0" "$P" import --quiet "$TESTS_TMP/copy.jsonl"
start_worker w3 --drain
check "the worker's commit waits for gc's lock" wait_for 30 locked f
session "DELETE FROM cached_images WHERE sha256 = '$a6'; DELETE FROM image_blobs WHERE sha256 = '$a6';"
s3cli s3 rm --quiet "s3://$S3_BUCKET/avatars/$(key_of a6)"
session "COMMIT;"
check "the worker then drains and exits 0" wait_worker w3 60
session_close
check_eq "g-9 shows a6's bytes from the bucket" "g-9|$AWS_ENDPOINT_URL/$S3_BUCKET/avatars/$(key_of a6)|cached" \
    "$(q "SELECT chat_id || '|' || image_url || '|' || image_source FROM chat_avatars WHERE chat_id = 'g-9'")"
check "... its object uploaded again" has_object "$(key_of a6)"
check_eq "no row without its object" "" "$(s3_problems)"
it_done
