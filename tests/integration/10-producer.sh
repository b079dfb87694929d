#!/usr/bin/env bash
# imgcache-producer on real servers, without workers: migrate, import (bad
# lines, summary, one event per distinct uncached URL), re-import after one
# URL got cached, sync from a fake Beeper Desktop API laid out as files
# (two pages, a full participant fetch, a 429, a bearer token that never
# shows), a cursor loop, backfill, an unmigrated schema, a bad setting.
. "$ROOT/tests/integration/lib.sh"
it_setup
# no worker runs here: the image_blobs rows below are written by hand to
# stand for cached images, with no file behind them
IT_STORE_CHECK=0

P="$BIN/imgcache-producer"
export IMGCACHE_LOG_LEVEL=info

# Every event on the topic as "key<TAB>reason", in no particular order.
events() {
    kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%k\t%s\n' 2>/dev/null |
        sed 's/\t.*"reason":"\([a-z]*\)".*/\t\1/'
}
# Sorted keys of the events with reason $1.
event_keys() {
    events | awk -F'\t' -v r="$1" '$2 == r { print $1 }' | sort
}

# --- migrate ---------------------------------------------------------------
# it_setup migrated once already.
out=$("$P" migrate 2> "$TESTS_TMP/migrate.err")
check_eq "migrate again exits 0" 0 $?
# Every file in common/migrations, recorded once under its number and name.
MIGRATION_LIST=$(cd "$ROOT/common/migrations" && ls -- *.sql | sed 's/\.sql$//' |
    awk '{ n = $0; sub(/_.*/, "", n); printf "%s%d|%s", (NR > 1 ? "," : ""), n, $0 }')
SCHEMA_VERSION=${MIGRATION_LIST##*,}
SCHEMA_VERSION=${SCHEMA_VERSION%%|*}
check "the migration list was read" test "$SCHEMA_VERSION" -ge 5
check_eq "migrate again applies nothing" "applied=0 version=$SCHEMA_VERSION" "$out"
check_eq "schema version recorded once" "$MIGRATION_LIST" \
    "$(q "SELECT string_agg(version || '|' || name, ',' ORDER BY version) FROM imgcache_schema_migrations")"

# The base URL of the views: IMGCACHE_PUBLIC_URL when given; else
# file://<absolute storage dir>, only where none was ever set.
check_eq "migrate wrote IMGCACHE_PUBLIC_URL to settings" "$IMGCACHE_PUBLIC_URL" "$(q "SELECT public_base_url FROM settings")"
q "UPDATE settings SET public_base_url = ''" > /dev/null
mkdir -p "$TESTS_TMP/store-x"
(cd "$TESTS_TMP" && env -u IMGCACHE_PUBLIC_URL IMGCACHE_STORAGE_DIR=store-x "$P" migrate > /dev/null 2>&1)
check_eq "without IMGCACHE_PUBLIC_URL, an unset base becomes file://<absolute storage dir>" \
    "file://$(realpath "$TESTS_TMP/store-x")" "$(q "SELECT public_base_url FROM settings")"
out=$(IMGCACHE_PUBLIC_URL='cdn.test/x' "$P" migrate 2>&1)
check_eq "migrate refuses a base that is not a URL (exit 2)" 2 $?
check "and says which setting" grep -q "IMGCACHE_PUBLIC_URL: 'cdn.test/x' is not a URL" <<< "$out"
"$P" migrate > /dev/null 2>&1
check_eq "migrate with IMGCACHE_PUBLIC_URL replaces it" "$IMGCACHE_PUBLIC_URL" "$(q "SELECT public_base_url FROM settings")"

# --- import ----------------------------------------------------------------
# 5 single chats (me + u$i), 2 groups with their own image and u1, u2 (the
# same URLs again), a chat without any image, a blank line, a bad line.
IMG=https://img.test
CHATS="$TESTS_TMP/chats.jsonl"
: > "$CHATS"
for i in 1 2 3 4 5; do
    printf '{"id":"s%d","accountID":"wa","title":"Person %d","type":"single","network":"WhatsApp","imgURL":"","lastActivity":"2026-11-20T10:00:0%d.000Z","participants":{"items":[{"id":"me","fullName":"Me","imgURL":"%s/me.png","isSelf":true},{"id":"u%d","fullName":"Person %d","imgURL":"%s/u%d.png"}],"hasMore":false}}\n' \
        "$i" "$i" "$i" "$IMG" "$i" "$i" "$IMG" "$i" >> "$CHATS"
done
echo >> "$CHATS"                                   # line 6: blank
for g in 1 2; do
    printf '{"id":"g%d","accountID":"tg","title":"Group %d","type":"group","imgURL":"%s/g%d.png","participants":{"items":[{"id":"me","fullName":"Me","imgURL":"%s/me.png","isSelf":true},{"id":"u1","fullName":"Person 1","imgURL":"%s/u1.png"},{"id":"u2","fullName":"Person 2","imgURL":"%s/u2.png"}],"hasMore":false}}\n' \
        "$g" "$g" "$IMG" "$g" "$IMG" "$IMG" "$IMG" >> "$CHATS"
done
echo '{"id":"broken", "type": "group", ' >> "$CHATS"   # line 9: bad
printf '{"id":"plain","accountID":"wa","title":"No Picture","type":"group","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true}],"hasMore":false}}\n' >> "$CHATS"
URLS_ALL=$(printf '%s\n' "$IMG/g1.png" "$IMG/g2.png" "$IMG/me.png" "$IMG/u1.png" "$IMG/u2.png" \
    "$IMG/u3.png" "$IMG/u4.png" "$IMG/u5.png" | sort)

out=$("$P" import "$CHATS" 2> "$TESTS_TMP/import.err")
rc=$?
check_eq "import with a bad line exits 3" 3 "$rc"
check_eq "import summary" "chats=8 participants=17 urls=8 published=8 already_cached=0 known_failures=0 dropped=0 bad_lines=1" "$out"
check "the bad line is reported with its number" grep -q '^imgcache-producer: line 9: ' "$TESTS_TMP/import.err"
check_eq "only the bad line is reported" 1 "$(grep -c '^imgcache-producer: line ' "$TESTS_TMP/import.err")"
check_eq "chats stored" 8 "$(q "SELECT count(*) FROM chats")"
check_eq "participants stored" 17 "$(q "SELECT count(*) FROM chat_participants")"
check_eq "last_activity stored" "2026-11-20 10:00:03" \
    "$(q "SELECT to_char(last_activity AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM chats WHERE chat_id = 's3'")"
check_eq "one event per distinct URL, keyed by the URL" "$URLS_ALL" "$(event_keys import)"
check_eq "a participant's event names chat and participant" 1 \
    "$(kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%s\n' 2>/dev/null |
        grep -c '"source_url":"https://img.test/u3.png","chat_id":"s3","participant_id":"u3","account_id":"wa","reason":"import"')"
check_eq "a chat's own image has participant_id null" 1 \
    "$(kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%s\n' 2>/dev/null |
        grep -c '"source_url":"https://img.test/g1.png","chat_id":"g1","participant_id":null')"

# --- re-import after one URL was cached ------------------------------------
q "INSERT INTO image_blobs (sha256, storage_key, content_type, byte_size)
   VALUES (repeat('a', 64), 'aa/aa/x.png', 'image/png', 1);
   INSERT INTO cached_images (source_url, sha256, content_type, byte_size)
   VALUES ('$IMG/u1.png', repeat('a', 64), 'image/png', 1)" > /dev/null
out=$("$P" import "$CHATS" 2> /dev/null)
check_eq "re-import summary" "chats=8 participants=17 urls=8 published=7 already_cached=1 known_failures=0 dropped=0 bad_lines=1" "$out"
check_eq "the cached URL was not published again" 1 \
    "$(events | awk -F'\t' -v u="$IMG/u1.png" '$1 == u' | wc -l)"
check_eq "every uncached URL was published again" 15 "$(event_keys import | wc -l)"
check_eq "re-import is idempotent in the database" "8|17" \
    "$(q "SELECT (SELECT count(*) FROM chats) || '|' || (SELECT count(*) FROM chat_participants)")"
grep -v broken "$CHATS" | "$P" import - > "$TESTS_TMP/stdin.out" 2> /dev/null
check_eq "import - of good lines exits 0" 0 "$?"

# --- sync ------------------------------------------------------------------
TOKEN="tok-$$-$RANDOM-very-secret"
API="$TESTS_TMP/api"
mkdir -p "$API/v1/chats" "$API/loop/v1"
cat > "$API/v1/chats.json" <<EOF
{"items":[
 {"id":"sync-s1","accountID":"sig","title":"Ann Sync","type":"single","participants":{"items":[{"id":"me","fullName":"Me","imgURL":"$IMG/me.png","isSelf":true},{"id":"ann","fullName":"Ann Sync","imgURL":"$IMG/ann.png"}],"hasMore":false}},
 {"id":"sync-big","accountID":"tg","title":"Big Group","type":"group","imgURL":"$IMG/big.png","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true}],"hasMore":true}}
],"hasMore":true,"oldestCursor":"c2 =/+","newestCursor":"c0"}
EOF
# curl_easy_escape("c2 =/+") = c2%20%3D%2F%2B
cat > "$API/v1/chats@cursor=c2%20%3D%2F%2B&direction=before.json" <<EOF
{"items":[{"id":"sync-s2","accountID":"sig","title":"Bo Sync","type":"single","participants":{"items":[{"id":"bo","fullName":"Bo Sync","imgURL":"$IMG/bo.png"}],"hasMore":false}}],"hasMore":false,"oldestCursor":"c3"}
EOF
cat > "$API/v1/chats/sync-big@maxParticipantCount=-1.json" <<EOF
{"id":"sync-big","accountID":"tg","title":"Big Group","type":"group","imgURL":"$IMG/big.png","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true},{"id":"p1","fullName":"P One","imgURL":"$IMG/p1.png"},{"id":"p2","fullName":"P Two","imgURL":"$IMG/p2.png"}],"hasMore":false}}
EOF
# a server that hands out the same cursor forever
echo '{"items":[],"hasMore":true,"oldestCursor":"again"}' > "$API/loop/v1/chats.json"
echo '{"items":[],"hasMore":true,"oldestCursor":"again"}' > "$API/loop/v1/chats@cursor=again&direction=before.json"

start_media "$API" --bearer "$TOKEN"
media_fault /v1/chats status status=429 count=1

BEEPER_API_URL="$MEDIA_URL" BEEPER_API_TOKEN="$TOKEN" IMGCACHE_LOG_LEVEL=debug \
    "$P" sync > "$TESTS_TMP/sync.out" 2> "$TESTS_TMP/sync.err"
check_eq "sync exits 0" 0 "$?"
# me.png is not cached either: every run announces each uncached URL it sees
check_eq "sync summary" "chats=3 participants=6 urls=6 published=6 already_cached=0 known_failures=0 dropped=0 bad_lines=0" \
    "$(cat "$TESTS_TMP/sync.out")"
check_eq "sync stored both pages" "sync-big|sync-s1|sync-s2" \
    "$(q "SELECT string_agg(chat_id, '|' ORDER BY chat_id) FROM chats WHERE chat_id LIKE 'sync-%'")"
check_eq "sync stored the full participant list" "me|p1|p2" \
    "$(q "SELECT string_agg(participant_id, '|' ORDER BY participant_id) FROM chat_participants WHERE chat_id = 'sync-big'")"
check_eq "429 retried, then both pages read" 3 "$(media_count /v1/chats)"
check_eq "the full chat fetched once" 1 "$(media_count /v1/chats/sync-big)"
check "the rate limit was logged" grep -q 'event=api_rate_limited' "$TESTS_TMP/sync.err"
check_eq "sync published the new URLs" \
    "$(printf '%s\n' "$IMG/ann.png" "$IMG/big.png" "$IMG/bo.png" "$IMG/me.png" "$IMG/p1.png" "$IMG/p2.png" | sort)" \
    "$(event_keys sync)"
check "the token is not in sync's output" absent "$TOKEN" "$TESTS_TMP/sync.out" "$TESTS_TMP/sync.err"

BEEPER_API_URL="$MEDIA_URL" BEEPER_API_TOKEN="wrong-$TOKEN" "$P" sync > "$TESTS_TMP/sync401.out" 2> "$TESTS_TMP/sync401.err"
check_eq "a refused token exits 1" 1 "$?"
check "a refused token names the status and path" grep -q 'GET /v1/chats: HTTP 401' "$TESTS_TMP/sync401.err"
check "a refused token is not printed" absent "$TOKEN" "$TESTS_TMP/sync401.out" "$TESTS_TMP/sync401.err"
BEEPER_API_URL="$MEDIA_URL" BEEPER_API_TOKEN= "$P" sync > /dev/null 2> "$TESTS_TMP/notoken.err"
check_eq "sync without a token exits 2" 2 "$?"
check "sync without a token says so" grep -q 'BEEPER_API_TOKEN is not set' "$TESTS_TMP/notoken.err"
BEEPER_API_URL="$MEDIA_URL/loop" BEEPER_API_TOKEN="$TOKEN" IMGCACHE_SYNC_TIMEOUT=5s \
    timeout 60 "$P" sync > /dev/null 2> "$TESTS_TMP/loop.err"
check_eq "a cursor loop stops with exit 1" 1 "$?"
check "a cursor loop is named" grep -q 'same cursor' "$TESTS_TMP/loop.err"

# --- backfill ----------------------------------------------------------------
q "INSERT INTO image_failures (source_url, error_class, permanent) VALUES ('$IMG/g2.png', 'http_404', true)" > /dev/null
UNCACHED="SELECT DISTINCT u FROM (SELECT img_source_url AS u FROM chats UNION ALL
             SELECT img_source_url FROM chat_participants) s
           WHERE u IS NOT NULL AND u NOT IN (SELECT source_url FROM cached_images)"
want=$(q "$UNCACHED AND u NOT IN (SELECT source_url FROM image_failures WHERE permanent)" | sort)
out=$("$P" backfill 2> /dev/null)
check_eq "backfill exits 0" 0 "$?"
check_eq "backfill summary" "urls=$(echo "$want" | wc -l) published=$(echo "$want" | wc -l)" "$out"
check_eq "backfill published exactly the uncached URLs" "$want" "$(event_keys backfill)"
event_keys backfill > "$TESTS_TMP/backfill.keys"
check "backfill left out the cached URL" absent "$IMG/u1.png" "$TESTS_TMP/backfill.keys"
want_all=$(q "$UNCACHED" | sort)
before=$(event_keys backfill | wc -l)
out=$("$P" backfill --retry-failed 2> /dev/null)
check_eq "backfill --retry-failed adds the failed URL" "urls=$(echo "$want_all" | wc -l) published=$(echo "$want_all" | wc -l)" "$out"
check_eq "the failed URL was published by --retry-failed" 1 \
    "$(event_keys backfill | grep -cxF "$IMG/g2.png")"
check_eq "backfill --retry-failed published every uncached URL" "$((before + $(echo "$want_all" | wc -l)))" \
    "$(event_keys backfill | wc -l)"
check_eq "backfill --retry-failed made the failure ordinary, so workers try again" "f" \
    "$(q "SELECT permanent FROM image_failures WHERE source_url = '$IMG/g2.png'")"
"$P" backfill --bogus > /dev/null 2>&1
check_eq "backfill with an unknown argument exits 2" 2 "$?"

# --- an unmigrated schema ----------------------------------------------------
q "CREATE SCHEMA unmigrated" > /dev/null
for cmd in "import $CHATS" "backfill" "sync"; do
    # shellcheck disable=SC2086
    PGOPTIONS="-c search_path=unmigrated" BEEPER_API_URL="$MEDIA_URL" BEEPER_API_TOKEN="$TOKEN" \
        "$P" $cmd > "$TESTS_TMP/unmigrated.out" 2> "$TESTS_TMP/unmigrated.err"
    rc=$?
    check_eq "${cmd%% *} against an unmigrated database exits 1" 1 "$rc"
    check "${cmd%% *} against an unmigrated database says to migrate" \
        grep -qF "database schema is at version 0, this program needs $SCHEMA_VERSION: run \`imgcache-producer migrate\`" \
        "$TESTS_TMP/unmigrated.err"
done
check_eq "nothing was written to the unmigrated schema" 0 \
    "$(q "SELECT count(*) FROM pg_tables WHERE schemaname = 'unmigrated'")"

# --- a migration missing in the middle ----------------------------------------
# A database migrated by a build that lacked migration 2 has every later
# version but not that one: it is behind, at version 1, whatever its newest.
GAP=$(q "SELECT name FROM imgcache_schema_migrations WHERE version = 2")
q "DELETE FROM imgcache_schema_migrations WHERE version = 2" > /dev/null
"$P" import "$CHATS" > /dev/null 2> "$TESTS_TMP/gap.err"
check_eq "a missing middle migration: import exits 1" 1 "$?"
check "a missing middle migration: the schema counts as version 1, and migrate is asked for" \
    grep -qF "database schema is at version 1, this program needs $SCHEMA_VERSION: run \`imgcache-producer migrate\`" \
    "$TESTS_TMP/gap.err"
q "INSERT INTO imgcache_schema_migrations (version, name) VALUES (2, '$GAP')" > /dev/null

# --- bad configuration -------------------------------------------------------
IMGCACHE_BATCH_SIZE=abc "$P" import "$CHATS" > /dev/null 2> "$TESTS_TMP/badcfg.err"
check_eq "a bad setting exits 2" 2 "$?"
check "a bad setting is named" grep -q 'IMGCACHE_BATCH_SIZE' "$TESTS_TMP/badcfg.err"
"$P" frobnicate > /dev/null 2>&1
check_eq "an unknown command exits 2" 2 "$?"
"$P" --help > "$TESTS_TMP/help.out"
check_eq "--help exits 0" 0 "$?"
check "--help lists the commands" grep -q 'backfill \[--retry-failed\]' "$TESTS_TMP/help.out"
check "--help lists renditions backfill and the renderer's topics" \
    sh -c 'grep -q "^  renditions backfill " "$1" && grep -q "STORED_TOPIC-dlt" "$1"' _ "$TESTS_TMP/help.out"

it_done
