#!/usr/bin/env bash
# The per-host circuit breaker: a host that keeps failing is left alone for a
# cool-down instead of being hammered with retries; waiting images spend no
# attempts; one probe closes the circuit when the host is back. Opening and
# closing are logged once each.
. "$ROOT/tests/integration/lib.sh"
it_setup 4

N=10
for i in $(seq 1 $N); do media_image "$MEDIA/b$i.png" "breaker-$i"; done
start_media "$MEDIA"
for i in $(seq 1 $N); do
    media_fault "/b$i.png" status status=503 || it_bail "cannot set a fault"
done
CHATS="$TESTS_TMP/chats.jsonl"
for i in $(seq 1 $N); do
    printf '{"id":"c%d","title":"Chat %d","type":"group","imgURL":"%s/b%d.png"}\n' "$i" "$i" "$MEDIA_URL" "$i"
done > "$CHATS"
"$BIN/imgcache-producer" import "$CHATS" > /dev/null
check "import succeeds" test $? -eq 0

# 3 failures open the circuit for 3 s; retries come back after 200 ms, so
# without the breaker every URL would be tried 4 times within a second.
start_worker w --drain --breaker-threshold 3 --breaker-cooldown 3s --retry-backoff 200ms,200ms,200ms
check "the circuit opens" wait_for 60 grep -q "event=circuit_open" "$TESTS_TMP/w.log"
check "retries are scheduled" wait_for 30 grep -q "event=retry_scheduled" "$TESTS_TMP/w.log"
# A deliberate window: without the breaker the retries (due after 200 ms)
# would reach the host within it; with it they wait for the 3 s cool-down.
sleep 1.5
before=$(media_total)
# at most each image's first attempt: on a real broker the events arrive in
# several fetches, and those after the circuit opened were not even tried
check "only first attempts reached the failing host ($before requests for $N images)" \
    test "$before" -ge 3 -a "$before" -le "$N"
# the host recovers while the circuit is open
media_reset
check "the worker drains and exits 0" wait_worker w 120
check_eq "every image is cached once the host is back" "$N" "$(q 'SELECT count(*) FROM cached_images')"
check_eq "after the recovery, one request per image (the probe among them)" "$N" "$(media_total)"
check_eq "opening is logged once" 1 "$(grep -c 'event=circuit_open' "$TESTS_TMP/w.log")"
check_eq "closing is logged once" 1 "$(grep -c 'event=circuit_closed' "$TESTS_TMP/w.log")"
check_eq "no image failed" 0 "$(q 'SELECT count(*) FROM image_failures WHERE permanent')"
it_done
