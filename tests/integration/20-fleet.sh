#!/usr/bin/env bash
# The fleet end to end on real servers: import -> Kafka -> 3 workers ->
# PostgreSQL rows + stored blobs -> chat_avatars; duplicates downloaded once;
# a worker added mid-run and one stopped with SIGTERM lose nothing; a replay
# under a new group downloads nothing.
. "$ROOT/tests/integration/lib.sh"
it_setup 12

BEEPER="$TESTS_TMP/beeper/BeeperTexts/media"
mkdir -p "$MEDIA/a" "$BEEPER/local.beeper.com"

# Distinct images: a real image with a unique tail is still that image.
exts=(jpg png gif webp)
N=60
for i in $(seq 1 $N); do
    e=${exts[$((i % 4))]}
    media_image "$MEDIA/a/p$i.$e" "imgcache-test-$i"
done
# Two bodies over many 16 KiB blocks of the worker's memory budget.
for i in 5 6; do
    e=${exts[$((i % 4))]}
    { cat "$IMG/avatar.$e"; head -c $((100000 * i)) /dev/zero | tr '\0' 'z'; printf 'imgcache-test-%d' "$i"; } > "$MEDIA/a/p$i.$e"
done
# Byte-identical content under two URLs.
cp "$MEDIA/a/p1.png" "$MEDIA/a/same-as-p1.png"
# Avatars in Beeper's media folder, named with a space and non-ASCII letters.
{ cat "$IMG/avatar.jpg"; printf 'beeper-1'; } > "$BEEPER/local.beeper.com/Zoë Photo"
{ cat "$IMG/avatar.png"; printf 'beeper-2'; } > "$BEEPER/local.beeper.com/plain"
# Not an image: must end as a recorded failure, not a cached row.
cp "$IMG/html-as.jpg" "$MEDIA/a/broken.jpg"

start_media "$MEDIA"
export BEEPER_MEDIA_DIR="$TESTS_TMP/beeper/BeeperTexts/media"
FILE_URL1="file:///Users/me/Library/Application%20Support/BeeperTexts/media/local.beeper.com/Zo%C3%AB%20Photo"
FILE_URL2="file:///Users/me/Library/Application%20Support/BeeperTexts/media/local.beeper.com/plain"

# 30 single chats (the other participant's picture), 10 groups with 3
# participants each, every participant picture used by two chats.
CHATS="$TESTS_TMP/chats.jsonl"
: > "$CHATS"
for c in $(seq 1 30); do
    e=${exts[$((c % 4))]}
    printf '{"id":"single-%d","accountID":"wa","title":"Person %d Smith","type":"single","network":"WhatsApp","imgURL":"%s/a/p%d.%s","lastActivity":"2026-11-20T10:00:00.000Z","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true},{"id":"u%d","fullName":"Person %d","imgURL":"%s/a/p%d.%s","isSelf":false}],"hasMore":false,"total":2}}\n' \
        "$c" "$c" "$MEDIA_URL" "$c" "$e" "$c" "$c" "$MEDIA_URL" "$c" "$e" >> "$CHATS"
done
for g in $(seq 1 10); do
    gi=$((30 + g)); e=${exts[$((gi % 4))]}
    parts=""
    for k in 0 1 2; do
        p=$(( (g * 3 + k) % 30 + 1 )); pe=${exts[$((p % 4))]}
        parts="$parts{\"id\":\"u$p\",\"fullName\":\"Person $p\",\"imgURL\":\"$MEDIA_URL/a/p$p.$pe\",\"isSelf\":false},"
    done
    printf '{"id":"group-%d","accountID":"tg","title":"Group %d","type":"group","network":"Telegram","imgURL":"%s/a/p%d.%s","participants":{"items":[%s{"id":"me","fullName":"Me","isSelf":true}],"hasMore":false}}\n' \
        "$g" "$g" "$MEDIA_URL" "$gi" "$e" "$parts" >> "$CHATS"
done
printf '{"id":"dup-content","accountID":"wa","title":"Same Bytes","type":"group","imgURL":"%s/a/same-as-p1.png"}\n' "$MEDIA_URL" >> "$CHATS"
printf '{"id":"beeper-file","accountID":"sig","title":"zoë ölander","type":"group","network":"Signal","imgURL":"%s"}\n' "$FILE_URL1" >> "$CHATS"
printf '{"id":"beeper-file-2","accountID":"sig","title":"Plain","type":"group","imgURL":"%s"}\n' "$FILE_URL2" >> "$CHATS"
printf '{"id":"contact-only","accountID":"wa","title":"Contact Person","type":"group"}\n' >> "$CHATS"
printf '{"id":"nothing","accountID":"wa","title":"élan vital","type":"group"}\n' >> "$CHATS"
printf '{"id":"broken","accountID":"wa","title":"Broken Pic","type":"group","imgURL":"%s/a/broken.jpg"}\n' "$MEDIA_URL" >> "$CHATS"

out=$("$BIN/imgcache-producer" import "$CHATS")
check "import succeeds" test $? -eq 0
# URLs: p1..p40 (30 singles + 10 groups), same-as-p1, 2 file URLs, broken.
EXPECTED_URLS=44
check_eq "import summary counts distinct urls" "urls=$EXPECTED_URLS" "$(echo "$out" | grep -o 'urls=[0-9]*')"
check_eq "import published every url" "published=$EXPECTED_URLS" "$(echo "$out" | grep -o 'published=[0-9]*')"
q "UPDATE chats SET contact_image_url = 'https://contacts.test/c.png' WHERE chat_id IN ('contact-only', 'single-2')"

start_worker w1 --drain
start_worker w2 --drain
start_worker w3 --drain
check "worker 1 drains and exits 0" wait_worker w1 180
check "worker 2 drains and exits 0" wait_worker w2 180
check "worker 3 drains and exits 0" wait_worker w3 180

check_eq "every image URL cached once" "$((EXPECTED_URLS - 1))" "$(q "SELECT count(*) FROM cached_images")"
check_eq "the HTML impostor is a permanent failure" "t|not_image" \
    "$(q "SELECT permanent, error_class FROM image_failures WHERE source_url = '$MEDIA_URL/a/broken.jpg'")"
check_eq "no URL was downloaded twice" "" "$(media_served_over 1)"
check_eq "the impostor was requested once" "1" "$(media_count /a/broken.jpg)"
check_eq "byte-identical images share one blob" "1" \
    "$(q "SELECT count(DISTINCT sha256) FROM cached_images WHERE source_url IN ('$MEDIA_URL/a/p1.png', '$MEDIA_URL/a/same-as-p1.png')")"
check_eq "one image_blobs row per distinct content" "$((EXPECTED_URLS - 2))" "$(q "SELECT count(*) FROM image_blobs")"
check_eq "one stored file per blob" "$((EXPECTED_URLS - 2))" \
    "$(find "$IMGCACHE_STORAGE_DIR" -path "$IMGCACHE_STORAGE_DIR/.tmp" -prune -o -type f -print | wc -l)"
# Stored files whose bytes do not hash to their row's sha256, one per line.
# The sha256 of source file $1 (under $MEDIA/a) and of its cached row.
source_and_row_sha() {
    echo "$(sha256sum < "$MEDIA/a/$1" | cut -d' ' -f1) $(q "SELECT sha256 FROM cached_images WHERE source_url = '$MEDIA_URL/a/$1'")"
}
check_eq "every stored file hashes to its sha256, one file per row" "" "$(storage_problems)"
sha=$(sha256sum < "$MEDIA/a/p7.${exts[3]}" | cut -d' ' -f1)
check_eq "stored bytes equal the source bytes" "$sha $sha" "$(source_and_row_sha "p7.${exts[3]}")"
sha=$(sha256sum < "$MEDIA/a/p6.${exts[2]}" | cut -d' ' -f1)
check_eq "a 600 KB body held in memory is stored byte for byte" "$sha $sha" "$(source_and_row_sha "p6.${exts[2]}")"
check_eq "migrate wrote IMGCACHE_PUBLIC_URL as the views' base" "$IMGCACHE_PUBLIC_URL" \
    "$(q "SELECT public_base_url FROM settings")"
check_eq "every cached chat's image_url is IMGCACHE_PUBLIC_URL/storage_key" "0" \
    "$(q "SELECT count(*) FROM chat_avatars a JOIN cached_images c USING (source_url) JOIN image_blobs b USING (sha256)
          WHERE a.image_url IS DISTINCT FROM '$IMGCACHE_PUBLIC_URL/' || b.storage_key")"
check_eq "a percent-encoded file:// avatar was read from BEEPER_MEDIA_DIR" \
    "$(sha256sum < "$BEEPER/local.beeper.com/Zoë Photo" | cut -d' ' -f1)" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$FILE_URL1'")"
check_eq "single chat shows the other participant's cached picture" \
    "cached|$IMGCACHE_PUBLIC_URL/$(q "SELECT b.storage_key FROM cached_images c JOIN image_blobs b USING (sha256) WHERE c.source_url = '$MEDIA_URL/a/p3.${exts[3]}'")" \
    "$(q "SELECT image_source || '|' || image_url FROM chat_avatars WHERE chat_id = 'single-3'")"
check_eq "cached wins over the contact image" "cached" \
    "$(q "SELECT image_source FROM chat_avatars WHERE chat_id = 'single-2'")"
check_eq "contact image when nothing is cached" "contact|https://contacts.test/c.png" \
    "$(q "SELECT image_source || '|' || image_url FROM chat_avatars WHERE chat_id = 'contact-only'")"
check_eq "initials when there is no image" "initials||ÉV" \
    "$(q "SELECT image_source || '|' || coalesce(image_url, '') || '|' || initials FROM chat_avatars WHERE chat_id = 'nothing'")"
check_eq "a failed image falls back to initials" "initials|BP" \
    "$(q "SELECT image_source || '|' || initials FROM chat_avatars WHERE chat_id = 'broken'")"
check_eq "group chats get every participant's picture" "0" \
    "$(q "SELECT count(*) FROM participant_avatars WHERE chat_id LIKE 'group-%' AND participant_id <> 'me' AND image_url IS NULL")"

# --- a new base URL: every view row follows, nothing is downloaded again -----
hits_before=$(media_total)
cached_at_before=$(q "SELECT md5(string_agg(source_url || cached_at, ',' ORDER BY source_url)) FROM cached_images")
NEW_BASE=https://cdn2.test/avatars/
IMGCACHE_PUBLIC_URL=$NEW_BASE "$BIN/imgcache-producer" migrate > "$TESTS_TMP/migrate-base.log" 2>&1
check "migrate with a new IMGCACHE_PUBLIC_URL succeeds" test $? -eq 0
check_eq "new base: every cached chat_avatars row is on it" "0" \
    "$(q "SELECT count(*) FROM chat_avatars a JOIN cached_images c USING (source_url) JOIN image_blobs b USING (sha256)
          WHERE a.image_url IS DISTINCT FROM '${NEW_BASE%/}/' || b.storage_key")"
check_eq "new base: every participant_avatars picture is on it" "0" \
    "$(q "SELECT count(*) FROM participant_avatars WHERE image_url IS NOT NULL AND image_url NOT LIKE '${NEW_BASE}%'")"
check_eq "new base: no row on the old base" "0" \
    "$(q "SELECT count(*) FROM chat_avatars WHERE image_url LIKE '$IMGCACHE_PUBLIC_URL/%'")"
check_eq "new base: nothing downloaded again" "$hits_before" "$(media_total)"
check_eq "new base: no cached row rewritten" "$cached_at_before" \
    "$(q "SELECT md5(string_agg(source_url || cached_at, ',' ORDER BY source_url)) FROM cached_images")"
env -u IMGCACHE_PUBLIC_URL "$BIN/imgcache-producer" migrate > "$TESTS_TMP/migrate-nobase.log" 2>&1
check_eq "migrate without IMGCACHE_PUBLIC_URL keeps the base an operator set" "$NEW_BASE" \
    "$(q "SELECT public_base_url FROM settings")"
IMGCACHE_PUBLIC_URL=$IMGCACHE_PUBLIC_URL "$BIN/imgcache-producer" migrate > "$TESTS_TMP/migrate-back.log" 2>&1

# --- the same events published 5 times over: each URL downloaded once -----
q "TRUNCATE cached_images, image_blobs, image_failures CASCADE"
rm -rf "$IMGCACHE_STORAGE_DIR"
media_reset
kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%k\t%s\n' > "$TESTS_TMP/events.tsv" 2>/dev/null
check_eq "the topic holds one event per URL" "$EXPECTED_URLS" "$(wc -l < "$TESTS_TMP/events.tsv")"
for round in 1 2 3 4 5; do cat "$TESTS_TMP/events.tsv"; done |
    kcat -b "$KAFKA_BROKERS" -P -t image-needed -K '	' 2>/dev/null
start_worker d1 --drain --group dup-group --from-beginning
start_worker d2 --drain --group dup-group --from-beginning
start_worker d3 --drain --group dup-group --from-beginning
check "duplicate round: worker 1 exits 0" wait_worker d1 180
check "duplicate round: worker 2 exits 0" wait_worker d2 180
check "duplicate round: worker 3 exits 0" wait_worker d3 180
check_eq "6 copies of each event: every URL cached" "$((EXPECTED_URLS - 1))" "$(q "SELECT count(*) FROM cached_images")"
check_eq "6 copies of each event: each URL downloaded once" "" "$(media_served_over 1)"
check_eq "6 copies of each event: every http URL downloaded" "$((EXPECTED_URLS - 2))" "$(media_total)"

# --- past IMGCACHE_BODY_MEMORY, downloads stream to disk ---------------------
# 64 KiB (4 blocks) for the whole worker: the 500 and 600 KB bodies go over
# it on their own, and downloads in flight together take turns.
q "TRUNCATE cached_images, image_blobs, image_failures CASCADE"
rm -rf "$IMGCACHE_STORAGE_DIR"
media_reset
start_worker s1 --drain --group spill-group --from-beginning --body-memory 64KiB
check "one-block budget: worker exits 0" wait_worker s1 180
check_eq "one-block budget: every URL cached" "$((EXPECTED_URLS - 1))" "$(q "SELECT count(*) FROM cached_images")"
check_eq "one-block budget: every stored file hashes to its sha256" "" "$(storage_problems)"
for f in "p5.${exts[1]}" "p6.${exts[2]}" "p7.${exts[3]}"; do
    sha=$(sha256sum < "$MEDIA/a/$f" | cut -d' ' -f1)
    check_eq "one-block budget: $f stored byte for byte" "$sha $sha" "$(source_and_row_sha "$f")"
done
spilled=$(grep -o 'event=summary .*spilled_to_disk=[0-9]*' "$TESTS_TMP/s1.log" | grep -o '[0-9]*$')
check "one-block budget: the large bodies spilled to disk (spilled_to_disk=${spilled:-none})" \
    test "${spilled:-0}" -ge 2
check_eq "one-block budget: no temporary file left" "" "$(ls -A "$IMGCACHE_STORAGE_DIR/.tmp")"

# --- a replay under a new group downloads nothing --------------------------
media_reset
start_worker r1 --drain --group replay-group --from-beginning
check "replay worker exits 0" wait_worker r1 180
check_eq "replay downloaded nothing" "0" "$(media_total)"
check "replay consumed the whole topic" grep -q "event=summary consumed=$((EXPECTED_URLS * 6))" "$TESTS_TMP/r1.log"

# --- a restart cleans .tmp and nothing else ------------------------------------
# Every stored blob two hours old, an old and a new extra file in every shard
# folder, an old (crashed) and a new (in flight) temporary file: a worker's
# start-up removes the old temporary file alone.
STORE=$IMGCACHE_STORAGE_DIR
blobs_before=$(find "$STORE" -path "$STORE/.tmp" -prune -o -type f -print | sort)
for d in "$STORE"/[0-9a-f][0-9a-f]; do
    : > "$d/extra-old"; : > "$d/extra-new"
done
: > "$STORE/.tmp/crashed.part"; : > "$STORE/.tmp/in-flight.part"
find "$STORE" -type f ! -name extra-new ! -name in-flight.part -exec touch -d '2 hours ago' {} +
start_worker restart --drain --group replay-group
check "restart: worker exits 0" wait_worker restart 120
check_eq "restart: every stored blob is still there" "$blobs_before" \
    "$(find "$STORE" -path "$STORE/.tmp" -prune -o -type f ! -name 'extra-*' -print | sort)"
check_eq "restart: no extra file went from any of the 256 shard folders" "512" \
    "$(find "$STORE" -path "$STORE/.tmp" -prune -o -type f -name 'extra-*' -print | wc -l)"
check_eq "restart: the old temporary file went, the new one stayed" "in-flight.part" "$(ls -A "$STORE/.tmp")"
rm -f "$STORE"/*/extra-old "$STORE"/*/extra-new "$STORE/.tmp/in-flight.part"

it_done
