#!/usr/bin/env bash
# The circuit breaker is per origin (scheme + host + port), and failures that
# say nothing about an origin's health never count. Outsiders' URLs at a
# closed port of the media server's host (refused by the guard) open no
# circuit; a trusted port that is down opens its own circuit only; the media
# server's avatars on the same host keep flowing meanwhile.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 4

N=5
for i in $(seq 1 $N); do media_image "$MEDIA/r$i.png" "breaker-origins-$i"; done
start_media "$MEDIA"
PORT=${MEDIA_URL##*:}
# a port nothing listens on: free a moment ago
DOWN_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
check "a free port is found" test -n "$DOWN_PORT"
export IMGCACHE_ALLOW_HOSTS="localhost:$PORT,localhost:$DOWN_PORT"
export IMGCACHE_RETRY_BACKOFF=200ms,200ms,200ms

OUTSIDERS=()
for i in $(seq 1 25); do OUTSIDERS+=("http://localhost:1/o$i.png"); done
DOWN=()
for i in $(seq 1 $N); do DOWN+=("http://localhost:$DOWN_PORT/d$i.png"); done
publish_url "${OUTSIDERS[@]}" "${DOWN[@]}" > /dev/null
check "events published" test $? -eq 0

outsiders_refused() {
    [ "$(q "SELECT count(*) FROM image_failures WHERE source_url LIKE 'http://localhost:1/%'
            AND error_class = 'refused_address' AND permanent")" = 25 ]
}
start_worker w --breaker-threshold 3 --breaker-cooldown 60s
check "the trusted port that is down gets its circuit opened" \
    wait_for 30 grep -q "event=circuit_open" "$TESTS_TMP/w.log"
check "the outsiders' URLs are refused, permanently" wait_for 30 outsiders_refused
check_eq "only that origin's circuit is open" "origin=http://localhost:$DOWN_PORT" \
    "$(grep -o 'event=circuit_open [a-z]*=[^ ]*' "$TESTS_TMP/w.log" | sed 's/^event=circuit_open //' | sort -u)"

# the media server, same host, another port: not held by either
REAL=()
for i in $(seq 1 $N); do REAL+=("http://localhost:$PORT/r$i.png"); done
publish_url "${REAL[@]}" > /dev/null
real_cached() {
    [ "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE 'http://localhost:$PORT/%'")" = "$N" ]
}
check "the media server's avatars are cached while the other circuit is open (60 s)" wait_for 20 real_cached
check_eq "one request per avatar" "$N" "$(media_total)"
check "the worker stops cleanly" stop_worker w 30
it_done
