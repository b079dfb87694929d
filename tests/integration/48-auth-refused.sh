#!/usr/bin/env bash
# A wrong BEEPER_API_TOKEN is our configuration's fault, not the images':
# a 401 from BEEPER_API_URL's /v1/assets/serve leaves each mxc:// avatar
# retryable (it was a permanent http_401, skipped for 7 days), logs one line
# naming the variable, opens the API's circuit (images behind it wait
# instead of being sent), and the failure row names the image, never the
# token. With the token fixed, the same avatars are cached.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 4

TOKEN=tok-$RANDOM-right
WRONG=tok-$RANDOM-wrong
API_DIR="$TESTS_TMP/api"
mkdir -p "$API_DIR/v1"
# the media server serves /v1/assets/serve?url=X from the file "assets/serve@url=X"
mxc_file() { local e; e=$(urlencode "$1"); printf '%s/v1/assets/serve@url=%s' "$API_DIR" "${e//\//%2F}"; }
mkdir -p "$API_DIR/v1/assets"
for n in 1 2 3; do
    { cat "$IMG/avatar.png"; printf 'imgcache-auth-%s' "$n"; } > "$(mxc_file "mxc://beeper.com/a$n")"
done
start_media "$API_DIR" --bearer "$TOKEN"
export BEEPER_API_URL=$MEDIA_URL BEEPER_API_TOKEN=$WRONG
export IMGCACHE_LOG_LEVEL=debug IMGCACHE_RETRY_BACKOFF=1s IMGCACHE_BREAKER_COOLDOWN=60s

row() { q "SELECT error_class, permanent FROM image_failures WHERE source_url = '$1'"; }
row_is() { [ "$(row "$1")" = "$2" ]; }
lines_at_least() { [ "$(grep -c "$1" "$TESTS_TMP/$2.log")" -ge "$3" ]; }
requests() { media_count /v1/assets/serve; }

start_worker w1
publish_url "mxc://beeper.com/a1" > /dev/null
check "a 401 from our own API is a retryable auth_refused failure" wait_for 30 row_is mxc://beeper.com/a1 "auth_refused|f"
check "its row names the image and the variable, not the token" \
    grep -q "BEEPER_API_TOKEN refused" <(q "SELECT source_url || ' ' || last_error FROM image_failures WHERE source_url = 'mxc://beeper.com/a1'")
publish_url "mxc://beeper.com/a2" "mxc://beeper.com/a3" > /dev/null
# the two new avatars and the first one's retry reach the open circuit
check "images behind the API wait for its open circuit" wait_for 30 lines_at_least 'event=circuit_wait url=.*/v1/assets/serve' w1 3
check_eq "...and are not sent: one request so far" 1 "$(requests)"
check_eq "one log line names BEEPER_API_TOKEN" 1 "$(grep -c 'event=auth_refused .*BEEPER_API_TOKEN' "$TESTS_TMP/w1.log")"
check_eq "no dead letter, no permanent failure" "0 0" \
    "$(topic_dump image-needed-dlt | wc -l) $(q "SELECT count(*) FROM image_failures WHERE permanent")"
stop_worker w1

# the token fixed: the held avatars are cached, none was blacklisted
export BEEPER_API_TOKEN=$TOKEN
start_worker w2 --drain
check "with the right token the drain exits 0" wait_worker w2 90
check_eq "every avatar is cached" 3 "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE 'mxc://beeper.com/a_'")"
check_eq "the token is in no log, row or event" "" \
    "$(grep -l -e "$TOKEN" -e "$WRONG" "$TESTS_TMP"/w?.log; q "SELECT last_error FROM image_failures" | grep -e "$TOKEN" -e "$WRONG"; topic_dump image-needed-retry | grep -e "$TOKEN" -e "$WRONG")"
it_done
