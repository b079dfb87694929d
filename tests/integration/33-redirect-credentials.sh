#!/usr/bin/env bash
# The worker follows redirects itself (so that each hop's origin is checked):
# the Beeper API token goes to the API's origin only, never to wherever the
# API redirects, not even to another port of the same host.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 4

TOKEN=tok-$RANDOM-s3cret
mkdir -p "$TESTS_TMP/api" "$TESTS_TMP/other"
media_image "$TESTS_TMP/other/a.png" imgcache-redirect-credentials
cp "$TESTS_TMP/other/a.png" "$TESTS_TMP/other/b.png"
# another origin that would serve the image to anyone showing the token
IMGCACHE_LOG_LEVEL=debug start_media "$TESTS_TMP/other" --bearer "$TOKEN"
OTHER_URL=$MEDIA_URL
OTHER_LOG="$TESTS_TMP/media$IT_MEDIA_N.log"
start_media "$TESTS_TMP/api" --bearer "$TOKEN"
API_URL=$MEDIA_URL
media_fault /v1/assets/serve redirect "location=$OTHER_URL/a.png"
check "the other origin serves the image with the token" \
    curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$OTHER_URL/b.png"

export BEEPER_API_URL=$API_URL BEEPER_API_TOKEN=$TOKEN
publish_url "mxc://beeper.com/avatar" > /dev/null
start_worker w --drain
check "the worker drains and exits 0" wait_worker w 60
check_eq "the token was not sent to the redirect's origin: 401 there" "http_401|t" \
    "$(q "SELECT error_class, permanent FROM image_failures WHERE source_url = 'mxc://beeper.com/avatar'")"
check "the redirect was followed, without the token" grep -q "path=/a.png status=401" "$OTHER_LOG"
check_eq "the token is in no worker log" "" "$(grep -l "$TOKEN" "$TESTS_TMP/w.log")"
it_done
