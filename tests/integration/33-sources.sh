#!/usr/bin/env bash
# Avatar sources a real Beeper install sends: data: URLs (a 28 KB PNG, an
# over-long one, a broken one), absolute local paths, an over-long http URL,
# chats without a title; file:// URLs without BEEPER_MEDIA_DIR or
# BEEPER_MEDIA_SERVER (through Beeper Desktop's /v1/assets/serve with a
# token, a retryable configuration failure without one); and the producer's
# summary counting known failures and dropped URLs.
. "$ROOT/tests/integration/lib.sh"
it_setup 4

P="$BIN/imgcache-producer"
BEEPER="$TESTS_TMP/beeper/BeeperTexts/media"
mkdir -p "$BEEPER/local.beeper.com"
{ cat "$IMG/avatar.jpg"; printf 'bare-path'; } > "$BEEPER/local.beeper.com/chat photo"
{ cat "$IMG/avatar.png"; printf 'file-url'; } > "$BEEPER/local.beeper.com/plain"
MAC="/Users/me/Library/Application Support/BeeperTexts/media/local.beeper.com"
BARE_PATH="$MAC/chat photo"
FILE_URL="file:///Users/me/Library/Application%20Support/BeeperTexts/media/local.beeper.com/plain"

# a 28 KB PNG of noise (it does not compress): 37 KB as a data: URL
python3 - "$TESTS_TMP/big.png" <<'EOF'
import os, struct, sys, zlib
w = h = 96
raw = b''.join(b'\0' + os.urandom(w * 3) for _ in range(h))
def chunk(t, d):
    return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
       + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))
open(sys.argv[1], 'wb').write(png)
EOF
DATA_BIG="data:image/png;base64,$(base64 -w0 "$TESTS_TMP/big.png")"
DATA_PCT="data:image/gif,$(od -An -v -tx1 "$IMG/avatar.gif" | tr -d ' \n' | sed 's/../%&/g')"
DATA_BROKEN="data:image/png;base64,iVBORw0K*broken*"
DATA_HUGE="data:image/png;base64,$(head -c 60000 /dev/zero | base64 -w0)"
LONG_HTTP="http://127.0.0.1:9/$(printf 'x%.0s' $(seq 1 3000)).png"
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
KEY_BIG="data:sha256,$(sha "$DATA_BIG")"
KEY_PCT="data:sha256,$(sha "$DATA_PCT")"
KEY_BROKEN="data:sha256,$(sha "$DATA_BROKEN")"
check "the data: URL is the size of the report's (over 37 KB)" test "${#DATA_BIG}" -gt 37000

CHATS="$TESTS_TMP/chats.jsonl"
cat > "$CHATS" <<EOF
{"id":"dm-data","accountID":"wa","title":null,"type":"single","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true},{"id":"ann","fullName":"Ann Data","imgURL":"$DATA_BIG"}],"hasMore":false}}
{"id":"grp-mixed","accountID":"wa","title":"","type":"group","imgURL":"$BARE_PATH","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true},{"id":"bo","fullName":"Bo Huge","imgURL":"$DATA_HUGE"},{"id":"cy","fullName":"Cy Broken","imgURL":"$DATA_BROKEN"},{"id":"di","fullName":"Di Long","imgURL":"$LONG_HTTP"},{"id":"ed","fullName":"Ed Pct","imgURL":"$DATA_PCT"}],"hasMore":false}}
{"id":"grp-file","accountID":"wa","title":"Files","type":"group","imgURL":"$FILE_URL"}
{"id":"grp-failed","accountID":"wa","title":"Failed","type":"group","imgURL":"http://127.0.0.1:9/known-failure.png"}
EOF
q "INSERT INTO image_failures (source_url, error_class, permanent) VALUES ('http://127.0.0.1:9/known-failure.png', 'http_404', true)" > /dev/null

# --- the producer ------------------------------------------------------------
out=$("$P" import "$CHATS" 2> "$TESTS_TMP/import.err")
check_eq "import keeps every chat: exit 0" 0 "$?"
check_eq "import summary: urls = published + already_cached + known_failures + dropped" \
    "chats=4 participants=7 urls=8 published=5 already_cached=0 known_failures=1 dropped=2 bad_lines=0" "$out"
check_eq "every chat and participant stored" "4|7" \
    "$(q "SELECT (SELECT count(*) FROM chats) || '|' || (SELECT count(*) FROM chat_participants)")"
check_eq "a data: URL is stored under its short key" "$KEY_BIG" \
    "$(q "SELECT img_source_url FROM chat_participants WHERE participant_id = 'ann'")"
check_eq "a bare path is stored as given" "$BARE_PATH" "$(q "SELECT img_source_url FROM chats WHERE chat_id = 'grp-mixed'")"
check_eq "the over-long data: and http URLs are left out, their participants kept" "bo:-|di:-" \
    "$(q "SELECT string_agg(participant_id || ':' || coalesce(img_source_url, '-'), '|' ORDER BY participant_id)
          FROM chat_participants WHERE participant_id IN ('bo', 'di')")"
check "the over-long data: URL is logged with its reason" grep -q \
    'event=url_dropped chat_id="grp-mixed" participant_id="bo" reason="imgURL is a data: URL of [0-9]* bytes, over the 61440-byte limit"' \
    "$TESTS_TMP/import.err"
check "the over-long http URL is logged with its reason" grep -q \
    'event=url_dropped chat_id="grp-mixed" participant_id="di" reason="imgURL is 3023 bytes, over the 2048-byte limit"' \
    "$TESTS_TMP/import.err"
kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%k\t%s\n' 2>/dev/null > "$TESTS_TMP/events"
check_eq "the event of a data: URL is keyed by the key and carries the URL" 1 \
    "$(awk -F'\t' -v k="$KEY_BIG" '$1 == k' "$TESTS_TMP/events" | grep -cF "\"data_url\":\"$DATA_BIG\"")"

# --- a worker with BEEPER_MEDIA_DIR ---------------------------------------------
BEEPER_MEDIA_DIR="$BEEPER" start_worker w1 --drain --retry-backoff 100ms
check "the worker drains and exits 0" wait_worker w1 120
check_eq "the 28 KB data: URL is cached under its key, its bytes those of the PNG" \
    "$(sha256sum < "$TESTS_TMP/big.png" | cut -d' ' -f1) image/png" \
    "$(q "SELECT sha256 || ' ' || content_type FROM cached_images WHERE source_url = '$KEY_BIG'")"
check_eq "a percent-encoded data: URL is cached" \
    "$(sha256sum < "$IMG/avatar.gif" | cut -d' ' -f1) image/gif" \
    "$(q "SELECT sha256 || ' ' || content_type FROM cached_images WHERE source_url = '$KEY_PCT'")"
check_eq "a bare path is read from BEEPER_MEDIA_DIR like its file:// URL" \
    "$(sha256sum < "$BEEPER/local.beeper.com/chat photo" | cut -d' ' -f1)" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$BARE_PATH'")"
check_eq "the broken data: URL is recorded under its key with the reason" \
    "bad_url|true|data: URL has a character that is not base64 at byte 8 of its base64 data" \
    "$(q "SELECT error_class || '|' || permanent || '|' || last_error FROM image_failures WHERE source_url = '$KEY_BROKEN'")"
check "no worker line holds a data: URL's bytes" bash -c "! grep -qF 'iVBORw0K' '$TESTS_TMP/w1.log'"

# --- chats without a title ----------------------------------------------------
check_eq "a single chat without a title is named after the other participant" "Ann Data|AD|cached" \
    "$(q "SELECT title || '|' || initials || '|' || image_source FROM chat_avatars WHERE chat_id = 'dm-data'")"
check_eq "a group without a title is named after its participants" "Bo Huge, Cy Broken, Di Long +1|BH" \
    "$(q "SELECT title || '|' || initials FROM chat_avatars WHERE chat_id = 'grp-mixed'")"

check_eq "a file:// URL is read from BEEPER_MEDIA_DIR" \
    "$(sha256sum < "$BEEPER/local.beeper.com/plain" | cut -d' ' -f1)" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$FILE_URL'")"

# --- re-import: nothing is announced twice --------------------------------------
out=$("$P" import "$CHATS" 2> /dev/null)
check_eq "re-import summary: the cached ones, and the known failures" \
    "chats=4 participants=7 urls=8 published=0 already_cached=4 known_failures=2 dropped=2 bad_lines=0" "$out"

# backfill has only the key of a data: URL: it says so instead of sending an
# event no worker could decode
"$P" backfill --retry-failed > "$TESTS_TMP/backfill.out" 2> "$TESTS_TMP/backfill.err"
check_eq "backfill --retry-failed exits 0" 0 "$?"
check "backfill names the data: key it cannot announce" grep -qF \
    'event=url_dropped chat_id="grp-mixed" participant_id="cy" reason="a data: URL: only import or sync, which read the URL itself, can announce it"' \
    "$TESTS_TMP/backfill.err"
check_eq "backfill sent no event for a data: key" 0 \
    "$(kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%k\t%s\n' 2>/dev/null |
       awk -F'\t' -v k="$KEY_BROKEN" '$1 == k' | grep -c '"reason":"backfill"')"

# --- file:// without BEEPER_MEDIA_DIR / BEEPER_MEDIA_SERVER ---------------------
{ cat "$IMG/avatar.webp"; printf 'via-api'; } > "$BEEPER/local.beeper.com/other"
FILE_URL2="file:///Users/me/Library/Application%20Support/BeeperTexts/media/local.beeper.com/other"
CHATS2="$TESTS_TMP/chats2.jsonl"
echo "{\"id\":\"grp-file-2\",\"type\":\"group\",\"title\":\"Other\",\"imgURL\":\"$FILE_URL2\"}" > "$CHATS2"
out=$("$P" import "$CHATS2" 2> /dev/null)
check_eq "a new file:// URL is announced" "chats=1 participants=0 urls=1 published=1 already_cached=0 known_failures=0 dropped=0 bad_lines=0" "$out"
start_worker w2 --drain --retry-backoff 100ms,100ms
check "a worker without a file source drains and exits 0" wait_worker w2 120
check "the worker warns at start which variables to set" grep -q \
    'event=config_warning reason="file:// avatars and local paths cannot be read: set BEEPER_MEDIA_DIR' \
    "$TESTS_TMP/w2.log"
check_eq "the file:// URL failed as a configuration fault, retried, and is not permanent" \
    "config|3|false|" \
    "$(q "SELECT error_class || '|' || attempts || '|' || permanent || '|' || coalesce(next_retry_at::text, '') FROM image_failures WHERE source_url = '$FILE_URL2'")"
check "its reason names the variables" bash -c \
    "psql -XAtq '$DATABASE_URL' -c \"SELECT last_error FROM image_failures WHERE source_url = '$FILE_URL2'\" |
     grep -qF 'needs BEEPER_MEDIA_DIR (the media folder), BEEPER_MEDIA_SERVER or BEEPER_API_TOKEN'"
out=$("$P" import "$CHATS2" 2> /dev/null)
check_eq "the next import announces it again (not skipped as a known failure)" \
    "chats=1 participants=0 urls=1 published=1 already_cached=0 known_failures=0 dropped=0 bad_lines=0" "$out"

# with a token, Beeper Desktop serves it at /v1/assets/serve?url=file://...
TOKEN="tok-$$-$RANDOM"
API="$TESTS_TMP/api"
mkdir -p "$API/v1/assets"
cp "$BEEPER/local.beeper.com/other" "$API/v1/assets/serve@url=$(urlencode "$FILE_URL2" | sed 's|/|%2F|g')"
start_media "$API" --bearer "$TOKEN"
BEEPER_API_URL="$MEDIA_URL" BEEPER_API_TOKEN="$TOKEN" start_worker w3 --drain --retry-backoff 100ms
check "a worker with only BEEPER_API_TOKEN drains and exits 0" wait_worker w3 120
check_eq "the file:// URL was fetched from /v1/assets/serve" 1 "$(media_count /v1/assets/serve)"
check_eq "and cached" "$(sha256sum < "$BEEPER/local.beeper.com/other" | cut -d' ' -f1)" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$FILE_URL2'")"
check "the token is not in the worker's log" bash -c "! grep -qF '$TOKEN' '$TESTS_TMP/w3.log'"

it_done
