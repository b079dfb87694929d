#!/usr/bin/env bash
# The two Beeper tokens never leave the requests they authorise. A sync from
# a fake Beeper API (bearer token) and workers fetching file:// avatars
# through a token-protected media server and mxc:// avatars through the API,
# successes and failures (404, 503 until permanent, a timeout, not an image,
# a redirect loop), everything at debug level; then every log, --help and
# error output, every row (pg_dump), every message of the four topics and
# every Redis key is searched for both tokens.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 12

# Distinctive cores, plus characters that must be escaped in a query string
# (the core is found in the raw, escaped and cut forms alike).
API_CORE="ApiTok${RANDOM}x${RANDOM}Secret"
MEDIA_CORE="MediaTok${RANDOM}y${RANDOM}Secret"
API_TOKEN="$API_CORE+/="
MEDIA_TOKEN="$MEDIA_CORE+&=/"
P="$BIN/imgcache-producer"
W="$BIN/imgcache-worker"
OUT="$TESTS_TMP/out"
mkdir -p "$OUT"

API="$TESTS_TMP/api"
FILES="$TESTS_TMP/files"
mkdir -p "$API/v1/assets" "$FILES/local.beeper.com"
unique() { { cat "$IMG/$1"; printf 'imgcache-secrets-%s' "$2"; } > "$3"; }

# file:// avatars, served by a media proxy that wants ?token=
unique avatar.png f-a "$FILES/local.beeper.com/a.png"
unique avatar.jpg f-b "$FILES/local.beeper.com/b.jpg"
for n in busy stall loop; do unique avatar.png "f-$n" "$FILES/local.beeper.com/$n.png"; done
cp "$IMG/html-as.jpg" "$FILES/local.beeper.com/html.jpg"
# mxc:// avatars, served by the API as /v1/assets/serve?url=<escaped mxc URL>
# curl_easy_escape keeps only A-Z a-z 0-9 - . _ ~ (urlencode also keeps /)
mxc_file() { local e; e=$(urlencode "$1"); printf '%s/v1/assets/serve@url=%s' "$API" "${e//\//%2F}"; }
unique avatar.webp m-1 "$(mxc_file mxc://beeper.com/good1)"
unique avatar.gif m-2 "$(mxc_file mxc://beeper.com/good2)"
unique avatar.png m-3 "$(mxc_file localmxc://local-beeper/good3)"

FU=file:///Users/me/Library/Application%20Support/BeeperTexts/media/local.beeper.com
cat > "$API/v1/chats.json" <<EOF
{"items":[
 {"id":"sec-1","accountID":"wa","title":"Secret One","type":"group","imgURL":"$FU/a.png",
  "participants":{"items":[
   {"id":"me","fullName":"Me","isSelf":true},
   {"id":"p1","fullName":"P One","imgURL":"$FU/b.jpg"},
   {"id":"p2","fullName":"P Two","imgURL":"$FU/missing.png"},
   {"id":"p3","fullName":"P Three","imgURL":"$FU/busy.png"},
   {"id":"p4","fullName":"P Four","imgURL":"$FU/stall.png"},
   {"id":"p5","fullName":"P Five","imgURL":"$FU/html.jpg"},
   {"id":"p6","fullName":"P Six","imgURL":"$FU/loop.png"}],"hasMore":false}},
 {"id":"sec-2","accountID":"sig","title":"Secret Two","type":"group","imgURL":"mxc://beeper.com/good1",
  "participants":{"items":[
   {"id":"me","fullName":"Me","isSelf":true},
   {"id":"q1","fullName":"Q One","imgURL":"mxc://beeper.com/good2"},
   {"id":"q2","fullName":"Q Two","imgURL":"localmxc://local-beeper/good3"},
   {"id":"q3","fullName":"Q Three","imgURL":"mxc://beeper.com/missing"}],"hasMore":false}}
],"hasMore":false}
EOF
N_URLS=11

IMGCACHE_LOG_LEVEL=debug start_media "$API" --bearer "$API_TOKEN"
API_URL=$MEDIA_URL
API_LOG="$TESTS_TMP/media$IT_MEDIA_N.log"
IMGCACHE_LOG_LEVEL=debug start_media "$FILES" --token "$MEDIA_TOKEN"
FILES_URL=$MEDIA_URL
FILES_LOG="$TESTS_TMP/media$IT_MEDIA_N.log"
media_fault /local.beeper.com/busy.png status status=503
media_fault /local.beeper.com/stall.png stall
# a loop that carries the token on every hop (same server, same query)
media_fault /local.beeper.com/loop.png redirect "location=$FILES_URL/local.beeper.com/loop.png?token=$(urlencode "$MEDIA_TOKEN")"
MEDIA_URL=$API_URL media_fault /v1/assets/serve status status=503 count=2

export BEEPER_API_URL=$API_URL BEEPER_API_TOKEN=$API_TOKEN
export BEEPER_MEDIA_SERVER=$FILES_URL BEEPER_MEDIA_TOKEN=$MEDIA_TOKEN
unset BEEPER_MEDIA_DIR
export IMGCACHE_LOG_LEVEL=debug IMGCACHE_RETRY_BACKOFF=200ms,200ms IMGCACHE_FETCH_TIMEOUT=2s
export IMGCACHE_BREAKER_THRESHOLD=100000

# ---- producer -------------------------------------------------------------------
"$P" sync > "$OUT/sync.out" 2> "$OUT/sync.err"
check_eq "sync exits 0" 0 "$?"
check_eq "sync announced every avatar" "published=$N_URLS" "$(grep -o 'published=[0-9]*' "$OUT/sync.out")"
BEEPER_API_TOKEN="$API_TOKEN-wrong" "$P" sync > "$OUT/sync-wrong.out" 2> "$OUT/sync-wrong.err"
check_eq "sync with a refused token exits 1" 1 "$?"
BEEPER_API_URL=http://127.0.0.1:1 "$P" sync > "$OUT/sync-down.out" 2> "$OUT/sync-down.err"
check_eq "sync with the API down exits 1" 1 "$?"
"$P" backfill > "$OUT/backfill.out" 2> "$OUT/backfill.err"
check_eq "backfill exits 0" 0 "$?"
IMGCACHE_BATCH_SIZE=lots "$P" sync > "$OUT/badcfg.out" 2> "$OUT/badcfg.err"
check_eq "producer with a bad setting exits 2" 2 "$?"
"$P" --help > "$OUT/producer-help.out" 2> "$OUT/producer-help.err"
"$P" sync --bogus > "$OUT/producer-usage.out" 2> "$OUT/producer-usage.err"

# ---- workers --------------------------------------------------------------------
"$W" --help > "$OUT/worker-help.out" 2> "$OUT/worker-help.err"
check_eq "worker --help exits 0" 0 "$?"
IMGCACHE_CONCURRENCY=many "$W" > "$OUT/worker-badcfg.out" 2> "$OUT/worker-badcfg.err"
check_eq "worker with a bad setting exits 2" 2 "$?"
"$W" --database-url postgresql://nobody@127.0.0.1:1/x > "$OUT/worker-nodb.out" 2> "$OUT/worker-nodb.err"
check_eq "worker without a database exits 1" 1 "$?"

start_worker w1 --drain
check "the worker drains every event and exits 0" wait_worker w1 120
# a replay under a new group: the already-cached and already-failed paths
start_worker w2 --drain --group replay --from-beginning
check "a replaying worker exits 0" wait_worker w2 120

q "SELECT source_url || ' ' || coalesce(error_class, '') || ' ' || permanent FROM image_failures ORDER BY 1" > "$OUT/failures.txt"
cached() { q "SELECT count(*) FROM cached_images WHERE source_url = '$1'"; }
class() { q "SELECT error_class || ' ' || permanent FROM image_failures WHERE source_url = '$1'"; }
for u in "$FU/a.png" "$FU/b.jpg" mxc://beeper.com/good1 mxc://beeper.com/good2 localmxc://local-beeper/good3; do
    check_eq "cached through its token: ${u##*/}" 1 "$(cached "$u")"
done
check_eq "a missing file:// avatar: http_404" "http_404 true" "$(class "$FU/missing.png")"
check_eq "a 503 forever: http_503, permanent after its retries" "http_503 true" "$(class "$FU/busy.png")"
check_eq "a stalled avatar: timeout" "timeout true" "$(class "$FU/stall.png")"
check_eq "HTML behind the token: not_image" "not_image true" "$(class "$FU/html.jpg")"
check_eq "a redirect loop carrying the token: redirects" "redirects true" "$(class "$FU/loop.png")"
check_eq "a missing mxc:// avatar: http_404" "http_404 true" "$(class mxc://beeper.com/missing)"
check_eq "the busy avatar was tried 3 times" 3 "$(MEDIA_URL=$FILES_URL media_count /local.beeper.com/busy.png)"
check_eq "two mxc requests got a 503 (then retried: every good one is cached)" 2 \
    "$(grep -c 'path=/v1/assets/serve status=503 ' "$API_LOG")"

# ---- the tokens were used -------------------------------------------------------
# status=404 and 200 only come after the token check passed
check "the media proxy served avatars with the token (200s)" grep -q 'path=/local.beeper.com/a.png status=200 ' "$FILES_LOG"
check "a 404 from the media proxy came after its token check" grep -q 'path=/local.beeper.com/missing.png status=404 ' "$FILES_LOG"
check_eq "the media proxy never refused the token" 0 "$(grep -c 'status=403 ' "$FILES_LOG")"
check "the API served mxc avatars with the bearer token (200s)" grep -q 'path=/v1/assets/serve status=200 ' "$API_LOG"
check_eq "the API refused only the wrong token (one 401)" 1 "$(grep -c 'status=401 ' "$API_LOG")"
check "worker logs show the media proxy URL redacted" grep -q 'token=REDACTED' "$TESTS_TMP/w1.log"

# ---- everything the fleet wrote -------------------------------------------------
pg_dump --data-only --no-owner "$DATABASE_URL" > "$OUT/db.sql" 2> "$OUT/pg_dump.err"
check "pg_dump of the database" test -s "$OUT/db.sql"
for t in image-needed image-needed-retry image-needed-dlt image-stored; do
    kcat -b "$KAFKA_BROKERS" -C -t "$t" -e -q -f 'key=%k\theaders=%h\tvalue=%s\n' > "$OUT/topic-$t.txt" 2>/dev/null
done
check "the retry topic has messages" test -s "$OUT/topic-image-needed-retry.txt"
check "the dead-letter topic has messages" test -s "$OUT/topic-image-needed-dlt.txt"
redis-cli -u "$REDIS_URL" --scan > "$OUT/redis-keys.txt" 2>&1
while read -r k; do
    [ -n "$k" ] && redis-cli -u "$REDIS_URL" DUMP "$k"
done < "$OUT/redis-keys.txt" > "$OUT/redis-values.txt" 2>&1
find "$TESTS_TMP" -type f > "$OUT/files.txt"   # file names too

# Everything under TESTS_TMP: producer and worker output and logs (debug),
# --help and error outputs, the database dump, the topics, Redis, the media
# servers' logs, migrate and broker logs.
check_eq "the API token appears nowhere the fleet wrote" "" \
    "$(grep -rlaF -- "$API_CORE" "$TESTS_TMP")"
check_eq "the media token appears nowhere the fleet wrote" "" \
    "$(grep -rlaF -- "$MEDIA_CORE" "$TESTS_TMP")"
check_eq "the searched outputs are all there" "" \
    "$(for f in sync.err sync-wrong.err sync-down.err backfill.err badcfg.err producer-help.out worker-help.out \
        worker-badcfg.err worker-nodb.err db.sql; do [ -s "$OUT/$f" ] || echo "$f is empty"; done)"
check "the searched database dump has the failures and the chats" \
    grep -q "$FU/busy.png" "$OUT/db.sql"
check "the worker logged at debug level" grep -q ' debug ' "$TESTS_TMP/w1.log"
it_done
