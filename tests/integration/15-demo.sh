#!/usr/bin/env bash
# `make demo`'s flow (compose/demo.sh) on the bundled sample, from a fresh
# state folder, as a newcomer runs it: it must finish within 90 s (the
# sample's deliberately missing file once kept its drain waiting through the
# whole default backoff, 11 minutes), show progress on screen while the
# workers run, and print what the README says it prints, then
# `imgcache-producer stats` and the URL of its page, which the stack's nginx
# serves with the images the page shows (http://127.0.0.1:PORT/...).
. "$ROOT/tests/integration/lib.sh"

DEMO_DIR="$TESTS_TMP/demo"
OUT="$TESTS_TMP/demo.out"
mkdir -p "$DEMO_DIR"
LIMIT=90

# a fresh clone's environment: none of the test stack's settings
start=$(now_ms)
env -u KAFKA_BROKERS -u REDIS_URL -u DATABASE_URL -u IMGCACHE_STORAGE_DIR -u IMGCACHE_PUBLIC_URL \
    -u IMGCACHE_LOG_LEVEL -u IMGCACHE_ALLOW_HOSTS -u IMGCACHE_RETRY_BACKOFF -u BEEPER_API_TOKEN \
    -u BEEPER_MEDIA_DIR -u BEEPER_MEDIA_SERVER IMGCACHE_DEMO_DIR="$DEMO_DIR" \
    sh "$ROOT/compose/demo.sh" < /dev/null > "$OUT" 2>&1 &
demo=$!
_it_track "$demo"
wait_pid "$demo" "$LIMIT"
rc=$?
elapsed=$(( ($(now_ms) - start) / 1000 ))
if [ $rc -eq 124 ]; then
    # cleanup kills the demo's workers; its stack is stopped below
    kill -TERM "$demo" $(descendants "$demo") 2>/dev/null
fi
# the page and the images, while the demo's stack still runs
PAGE_URL=$(sed -n 's|^== the avatars as a page: \(http://127\.0\.0\.1:[0-9]*/\) .*|\1|p' "$OUT")
curl -s -o "$TESTS_TMP/page.html" -w '%{http_code}' "${PAGE_URL:-http://127.0.0.1:1/}" > "$TESTS_TMP/page.code" 2>/dev/null
IMAGE_URL=$(grep -o "${PAGE_URL:-none}images/[0-9a-f][0-9a-f]/[0-9a-f]*\.[a-z]*" "$OUT" | head -n 1)
IMAGE_TYPE=$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "${IMAGE_URL:-http://127.0.0.1:1/}" 2>/dev/null)
sh "$ROOT/compose/stack.sh" stop "$DEMO_DIR" > "$TESTS_TMP/stack-stop.log" 2>&1

check_eq "the demo finished within ${LIMIT}s (took ${elapsed}s; 124: still running)" 0 "$rc"
check "the demo showed its workers' progress on screen" grep -Eq '^   7 to fetch: [0-9]+ cached' "$OUT"
check "the progress reached every image" grep -Eq '^   7 to fetch: 6 cached, 0 waiting for a retry, 1 failed' "$OUT"
check "the deliberately missing file ended as file_missing" grep -q 'deleted-long-ago | file_missing' "$OUT"

# the README's examples are the demo's real output
readme_line=$(sed -n '/^chats=[0-9]* participants=/{p;q}' "$ROOT/README.md")
check "README's producer line is what the demo printed ($readme_line)" grep -qxF "$readme_line" "$OUT"
# the stats the demo ends with: every line of README's sample but the ones
# that may change from run to run (the time of the oldest refresh; the
# retry topic's size, which a rebalance replaying a retry can grow)
readme_stats=$(sed -n '/^== imgcache-producer stats$/,/^```$/p' "$ROOT/README.md" | sed '1d;$d' |
    grep -Ev '^(oldest refresh|kafka events) |^== the avatars as a page: ')
check "README shows the demo's stats" test "$(echo "$readme_stats" | wc -l)" -ge 10
while IFS= read -r line; do
    check "README's stats line is what the demo printed ($line)" grep -qxF -- "$line" "$OUT"
done <<< "$readme_stats"
# the page's line, but for the port
page_line() { sed -n 's/^== the avatars as a page: .*/&/p' "$1" | sed 's/127\.0\.0\.1:[0-9]*/127.0.0.1:PORT/g'; }
check_eq "README shows the demo's page line" "$(page_line "$OUT")" "$(page_line "$ROOT/README.md")"
check "the demo ended with stats: no backlog left" grep -Eq '^backlog +imgcache-workers 0 ' "$OUT"
check "the demo printed its page's URL (${PAGE_URL:-none})" test -n "$PAGE_URL"
check_eq "the page is served" 200 "$(cat "$TESTS_TMP/page.code")"
check_eq "the page shows the sample's 9 chats" 9 "$(grep -o '<li class="chat"' "$TESTS_TMP/page.html" | wc -l)"
check_eq "the page: 6 cached, 1 contact, 2 initials" "6 1 2" \
    "$(for s in cached contact initials; do grep -o "data-source=\"$s\"" "$TESTS_TMP/page.html" | wc -l; done | xargs)"
check_eq "chat_avatars shows 6 http:// URLs of the stack's nginx" 6 \
    "$(grep -c " cached .*| ${PAGE_URL:-none}images/" "$OUT")"
check "a cached image's URL serves the image (${IMAGE_URL:-none}: $IMAGE_TYPE)" \
    grep -Eq '^200 image/(png|jpeg|gif|webp)$' <<< "$IMAGE_TYPE"
tail -n 40 "$OUT" | sed 's/^/#   /'
it_done
