#!/usr/bin/env bash
# imgcache-producer sync against a Beeper Desktop API that says no: the
# server's own message is shown (JSON "message" or plain text), 401, 403 and
# 404 are told apart with what to do, a refused connection suggests that
# Beeper Desktop (or its API) is not running, and the token never shows.
. "$ROOT/tests/integration/lib.sh"
it_setup

P="$BIN/imgcache-producer"
TOKEN="tok-$$-$RANDOM-very-secret"
API="$TESTS_TMP/api"
mkdir -p "$API/v1"
echo '{"items":[],"hasMore":false}' > "$API/v1/chats.json"
start_media "$API"

# sync_err NAME [URL]: runs sync against URL (default the fake API), keeps
# stderr in $TESTS_TMP/NAME.err and the exit status in $rc
sync_err() {
    BEEPER_API_URL="${2:-$MEDIA_URL}" BEEPER_API_TOKEN="$TOKEN" IMGCACHE_SYNC_TIMEOUT=5s \
        "$P" sync > "$TESTS_TMP/$1.out" 2> "$TESTS_TMP/$1.err"
    rc=$?
}

# 401 with the real API's JSON body, echoing the token back
media_fault /v1/chats status status=401 count=1 \
    "body={\"error\":\"unauthorized\",\"message\":\"Invalid or expired access token $TOKEN\"}"
sync_err 401
check_eq "401 exits 1" 1 "$rc"
check "401 shows the server's message" grep -qF 'HTTP 401: Invalid or expired access token' "$TESTS_TMP/401.err"
check "401 names the variable and says where a token comes from" \
    grep -qF 'BEEPER_API_TOKEN was refused (wrong or expired); create a token in Beeper Desktop → Settings → Developers' \
    "$TESTS_TMP/401.err"
check "401: the token echoed by the server is not printed" absent "$TOKEN" "$TESTS_TMP/401.err" "$TESTS_TMP/401.out"

# 403: a token without the scope, JSON with only "error"
media_fault /v1/chats status status=403 count=1 'body={"error":"Token lacks the read scope"}'
sync_err 403
check_eq "403 exits 1" 1 "$rc"
check "403 shows the server's error" grep -qF 'HTTP 403: Token lacks the read scope' "$TESTS_TMP/403.err"
check "403 says it is the token's permission (scope)" grep -qF 'lacks the permission (scope) to read chats' "$TESTS_TMP/403.err"
check "403 is not called a wrong token" absent 'wrong or expired' "$TESTS_TMP/403.err"

# 404 with a plain-text body: an older Desktop without /v1
media_fault /v1/chats status status=404 count=1 $'body=Cannot GET /v1/chats\nsecond line'
sync_err 404
check_eq "404 exits 1" 1 "$rc"
check "404 shows the first line of a text body" grep -qF 'HTTP 404: Cannot GET /v1/chats;' "$TESTS_TMP/404.err"
check "404 suggests an older Beeper Desktop without /v1" grep -qF 'a Beeper Desktop older than the /v1 API?' "$TESTS_TMP/404.err"
check "404 is not blamed on the token" absent 'BEEPER_API_TOKEN' "$TESTS_TMP/404.err"

# nothing listens: a loopback port that was free a moment ago
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
sync_err refused "http://127.0.0.1:$port"
check_eq "a refused connection exits 1" 1 "$rc"
check "a refused connection suggests Beeper Desktop is not running" \
    grep -qF 'is Beeper Desktop running, with its API enabled (Settings → Developers), at BEEPER_API_URL?' \
    "$TESTS_TMP/refused.err"

# no token at all says where one comes from
BEEPER_API_URL="$MEDIA_URL" BEEPER_API_TOKEN= "$P" sync > /dev/null 2> "$TESTS_TMP/notoken.err"
check_eq "no token exits 2" 2 "$?"
check "no token says where one comes from" \
    grep -qF 'BEEPER_API_TOKEN is not set; create a token in Beeper Desktop → Settings → Developers' \
    "$TESTS_TMP/notoken.err"

# and the happy path still works after the faults
sync_err ok
check_eq "sync exits 0 once the API answers" 0 "$rc"

it_done
