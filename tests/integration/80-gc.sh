#!/usr/bin/env bash
# `imgcache-producer gc` on a fleet that cached real pictures:
#  - chats removed and a participant re-pointed to a new picture, then
#    `gc --grace 0`: exactly the unreferenced cached_images rows, the
#    unreferenced failure, and the blobs no row points at are gone (rows,
#    blobs, files and bytes reported); a blob shared with a URL still
#    cached stays; chat_avatars is unchanged for every remaining chat;
#  - with the default grace (30 days) nothing that lost its reference just
#    now is removed;
#  - orphan store files and temporary files older than an hour are
#    removed, younger ones are not;
#  - --dry-run reports the same figures and changes nothing;
#  - a tombstone (null value) per URL dropped is on the main topic, and a
#    worker counts them without dead-lettering them;
#  - a blob whose file a worker found in use within the hour (its mtime)
#    is kept, and collected by a later run;
#  - two collectors at once remove each row once and both exit 0;
#  - a URL that lost its only reference and got it back is kept, and an
#    import that changes nothing leaves gc's clock alone;
#  - a bad --grace, and a storage folder that is not a store, are refused.
# The race with a worker's commit on the blob row is test_db's
# test_gc_blob_race, the race with an import batch test_gc_import_race
# (two connections, both orders each).
. "$ROOT/tests/integration/lib.sh"
it_setup 2

P="$BIN/imgcache-producer"
STORE=$IMGCACHE_STORAGE_DIR

for n in a1 a2 a2new a3 a6 a7 a8; do
    media_image "$MEDIA/$n.png" "imgcache-gc-$n"
done
media_image "$MEDIA/s1.png" "imgcache-gc-shared"
cp "$MEDIA/s1.png" "$MEDIA/s2.png"
start_media "$MEDIA"
M=$MEDIA_URL

. "$ROOT/tests/integration/lib-gc.sh"
backdate_store() { find "$STORE" -type f -exec touch -d '2 hours ago' {} +; }
avatars() { q "SELECT chat_id || '|' || coalesce(image_url, '') || '|' || image_source FROM chat_avatars ORDER BY chat_id"; }
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<< "$2"; }

CHATS="$TESTS_TMP/chats.jsonl"
{
    single s-1 "$M/a1.png"
    single s-2 "$M/a2.png"
    group g-3 "$M/a3.png"
    group g-4 "$M/s1.png"
    group g-5 "$M/s2.png"
    group g-6 "$M/a6.png"
    group g-7 "$M/a7.png"
    group g-8 "$M/a8.png"
} > "$CHATS"
"$P" import --quiet "$CHATS" > "$TESTS_TMP/import1.out" 2> "$TESTS_TMP/import1.err"
check "import exits 0" test $? -eq 0
drain w1
check_eq "every URL is cached, s1 and s2 share a blob" "a1,a2,a3,a6,a7,a8,s1,s2|7" "$(cached_urls)|$(blob_count)"

# s-2's participant gets a new picture (Beeper's new media id), g-3 and g-5 go
single s-2 "$M/a2new.png" > "$TESTS_TMP/repoint.jsonl"
"$P" import --quiet "$TESTS_TMP/repoint.jsonl" > /dev/null 2> "$TESTS_TMP/import2.err"
check "the re-pointing import exits 0" test $? -eq 0
drain w2
q "DELETE FROM chats WHERE chat_id IN ('g-3', 'g-5')" > /dev/null
q "INSERT INTO image_failures (source_url, error_class) VALUES ('$M/gone-404.png', 'http_404')" > /dev/null
check_eq "before gc: 9 cached URLs, 8 blobs, 1 failure" "a1,a2,a2new,a3,a6,a7,a8,s1,s2|8|1" \
    "$(cached_urls)|$(blob_count)|$(q "SELECT count(*) FROM image_failures")"
backdate_store

# ---- the default grace: everything was seen just now -----------------------------
out=$("$P" gc --quiet 2> "$TESTS_TMP/gc-default.err")
check "gc with the default grace exits 0" test $? -eq 0
check_eq "... and removes nothing that lost its reference within 30 days" \
    "rows=0 failures=0 blobs=0 files=0 bytes=0 tombstones=0" "$out"

# ---- orphans: files without a blob row, temporary files ---------------------------
mkdir -p "$STORE/ab" "$STORE/.tmp"
old_orphan="$STORE/ab/ab$(printf '%062d' 1).png"
young_orphan="$STORE/ab/ab$(printf '%062d' 2).png"
printf 'old orphan' > "$old_orphan"
printf 'young orphan' > "$young_orphan"
printf 'old part!' > "$STORE/.tmp/crashed.part"
printf 'young part' > "$STORE/.tmp/downloading.part"
touch -d '2 hours ago' "$old_orphan" "$STORE/.tmp/crashed.part"
touch -d '50 minutes ago' "$young_orphan" "$STORE/.tmp/downloading.part"

# what --grace 0 must remove: the rows of a2, a3, s2 and the failure; the
# blobs of a2 and a3 (s2's is s1's); their files, the old orphan and the
# old temporary file
bytes=$(( $(size_of a2) + $(size_of a3) + 10 + 9 ))
want="rows=3 failures=1 blobs=2 files=4 bytes=$bytes"
avatars > "$TESTS_TMP/avatars.before"
find "$STORE" -type f | sort > "$TESTS_TMP/files.before"
q "SELECT count(*) FROM image_failures" > /dev/null

# ---- --dry-run --------------------------------------------------------------------
out=$("$P" gc --grace 0 --dry-run --quiet 2> "$TESTS_TMP/gc-dry.err")
check "gc --dry-run exits 0" test $? -eq 0
check_eq "--dry-run reports what would go" "$want tombstones=0 dry_run=1" "$out"
check_eq "--dry-run removes no row" "a1,a2,a2new,a3,a6,a7,a8,s1,s2|8|1" \
    "$(cached_urls)|$(blob_count)|$(q "SELECT count(*) FROM image_failures")"
check_eq "--dry-run removes no file" "$(cat "$TESTS_TMP/files.before")" "$(find "$STORE" -type f | sort)"
check_eq "--dry-run publishes nothing" 0 \
    "$(kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%S\n' 2>/dev/null | grep -c '^-1$')"

# ---- gc --grace 0 -------------------------------------------------------------------
out=$("$P" gc --grace 0 2> "$TESTS_TMP/gc.err")
check "gc --grace 0 exits 0" test $? -eq 0 || sed 's/^/#   /' "$TESTS_TMP/gc.err"
check_eq "gc reports rows, failures, blobs, files, bytes and tombstones" "$want tombstones=4" "$out"
check_eq "exactly the unreferenced rows are gone" "a1,a2new,a6,a7,a8,s1" "$(cached_urls)"
check_eq "the failure of an unreferenced URL is gone" 0 "$(q "SELECT count(*) FROM image_failures")"
check_eq "the blobs of a2 and a3 are gone, the shared one stays" \
    "6|1" "$(blob_count)|$(q "SELECT count(*) FROM image_blobs WHERE sha256 = '$(sha256sum "$MEDIA/s1.png" | cut -d' ' -f1)'")"
check_eq "chat_avatars is unchanged for every remaining chat" \
    "$(grep -v -e '^g-3|' -e '^g-5|' "$TESTS_TMP/avatars.before")" "$(avatars)"
check_eq "every remaining chat's picture is cached" 0 \
    "$(q "SELECT count(*) FROM chat_avatars WHERE image_source <> 'cached'")"
check "the old orphan file is removed" test ! -e "$old_orphan"
check "the young orphan file is kept" test -e "$young_orphan"
check "the old temporary file is removed" test ! -e "$STORE/.tmp/crashed.part"
check "the young temporary file is kept" test -e "$STORE/.tmp/downloading.part"
rm -f "$young_orphan" "$STORE/.tmp/downloading.part"
check_eq "the store agrees with image_blobs after gc" "" "$(storage_problems)"

# ---- tombstones ------------------------------------------------------------------------
check_eq "a tombstone per URL dropped, keyed by the URL" \
    "$(printf '%s\n' "$M/a2.png" "$M/a3.png" "$M/gone-404.png" "$M/s2.png" | sort)" \
    "$(kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%S\t%k\n' 2>/dev/null |
        awk -F'\t' '$1 == -1 { print $2 }' | sort)"
drain w3
check_eq "a worker counts the tombstones" 4 "$(worker_counter w3 tombstones)"
check_eq "... and dead-letters none of them" 0 \
    "$(kcat -b "$KAFKA_BROKERS" -C -t image-needed-dlt -e -q -f '%k\n' 2>/dev/null | wc -l)"
check_eq "... nor caches anything again" "a1,a2new,a6,a7,a8,s1" "$(cached_urls)"

# ---- a blob a worker found in use within the hour ----------------------------------------
q "DELETE FROM chats WHERE chat_id = 'g-6'" > /dev/null
a6_key=$(q "SELECT b.storage_key FROM image_blobs b JOIN cached_images c USING (sha256) WHERE c.source_url = '$M/a6.png'")
touch "$STORE/$a6_key" # what a worker's store does when it finds the file stored
out=$("$P" gc --grace 0 --quiet 2> "$TESTS_TMP/gc-inuse.err")
check_eq "a blob whose file is in use is kept (its row goes)" "rows=1 blobs=0 files=0" \
    "$(echo "rows=$(field rows "$out") blobs=$(field blobs "$out") files=$(field files "$out")")"
check "... with its file" test -f "$STORE/$a6_key"
touch -d '2 hours ago' "$STORE/$a6_key"
out=$("$P" gc --grace 0 --quiet 2> "$TESTS_TMP/gc-later.err")
check_eq "a later run collects it" "rows=0 blobs=1 files=1" \
    "$(echo "rows=$(field rows "$out") blobs=$(field blobs "$out") files=$(field files "$out")")"
check "... and its file" test ! -e "$STORE/$a6_key"

# ---- two collectors at once ----------------------------------------------------------------
q "DELETE FROM chats WHERE chat_id IN ('g-7', 'g-8')" > /dev/null
backdate_store
"$P" gc --grace 0 --quiet > "$TESTS_TMP/gc-a.out" 2> "$TESTS_TMP/gc-a.err" &
pa=$!
"$P" gc --grace 0 --quiet > "$TESTS_TMP/gc-b.out" 2> "$TESTS_TMP/gc-b.err" &
pb=$!
wait "$pa"; ra=$?
wait "$pb"; rb=$?
check_eq "two collectors at once both exit 0" "0 0" "$ra $rb"
a=$(cat "$TESTS_TMP/gc-a.out"); b=$(cat "$TESTS_TMP/gc-b.out")
check_eq "... and remove each row, blob and file once between them" "rows=2 blobs=2 files=2" \
    "rows=$(( $(field rows "$a") + $(field rows "$b") )) blobs=$(( $(field blobs "$a") + $(field blobs "$b") )) files=$(( $(field files "$a") + $(field files "$b") ))"
check_eq "what is left" "a1,a2new,s1|3" "$(cached_urls)|$(blob_count)"

# ---- a URL referenced again ---------------------------------------------------------------
clock() { q "SELECT unreferenced_at > now() - interval '1 minute' FROM cached_images WHERE source_url = '$M/$1.png'"; }
single s-1 "$M/a2new.png" > "$TESTS_TMP/away.jsonl"
single s-1 "$M/a1.png" > "$TESTS_TMP/back.jsonl"
q "UPDATE cached_images SET unreferenced_at = now() - interval '2 days'" > /dev/null
"$P" import --quiet "$TESTS_TMP/back.jsonl" > /dev/null 2> "$TESTS_TMP/import3.err"
check_eq "an import that changes nothing leaves gc's clock alone" "f" "$(clock a1)"
"$P" import --quiet "$TESTS_TMP/away.jsonl" > /dev/null 2> "$TESTS_TMP/import4.err" &&
    "$P" import --quiet "$TESTS_TMP/back.jsonl" > /dev/null 2> "$TESTS_TMP/import5.err"
check "s-1's picture is re-pointed away and back" test $? -eq 0
check_eq "losing its reference restarted a1's clock" "t" "$(clock a1)"
out=$("$P" gc --grace 0 --quiet 2> "$TESTS_TMP/gc-back.err")
check_eq "gc --grace 0 keeps the URL referenced again" "rows=0 failures=0 blobs=0" \
    "$(echo "rows=$(field rows "$out") failures=$(field failures "$out") blobs=$(field blobs "$out")")"
check_eq "... and every cached row" "a1,a2new,s1|3" "$(cached_urls)|$(blob_count)"

# ---- bad arguments -----------------------------------------------------------------------
o=$("$P" gc --grace soon 2>&1); rc=$?
check_eq "a bad --grace is refused naming it" "imgcache-producer: gc: --grace: not a duration: 'soon' (e.g. 30d, 12h, 0)|2" "$o|$rc"
o=$("$P" gc --grace 2>&1); rc=$?
check_eq "--grace without a value is refused" "imgcache-producer: gc: --grace needs a duration, e.g. --grace 30d|2" "$o|$rc"
o=$(IMGCACHE_STORAGE_DIR="$TESTS_TMP/no-store" "$P" gc 2>&1); rc=$?
check "gc refuses a folder that is not an image store" \
    grep -q "^imgcache-producer: gc: IMGCACHE_STORAGE_DIR ($TESTS_TMP/no-store) is not an image store" <<< "$o"
check_eq "... with exit status 2" 2 "$rc"
it_done
