#!/usr/bin/env bash
# Retries that are not due for a long time, in one retry partition (the dev
# broker has one partition per topic here, so every retry shares it):
#  - a raw message on -retry with next_attempt_at in the year 2999 is held
#    at most the hold limit (IMGCACHE_RETRY_AFTER_MAX) and stops nothing;
#  - a 429 with Retry-After: 3600 is held for the capped hour while the
#    ordinary retries behind it (503 once, then 200) are cached on time;
#  - SIGTERM with only held retries exits at once, not after the grace;
#  - --drain with only such late retries left exits 0 (their offsets stay
#    unstored: the next run holds them again);
#  - a tombstone (null value) on image-needed is counted, its offset stored,
#    and nothing reaches the dead-letter topic.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 1

for n in far late a1 a2 a3 a4; do
    media_image "$MEDIA/$n.png" "imgcache-late-$n"
done
start_media "$MEDIA"
M=$MEDIA_URL
media_fault /late.png status status=429 retry_after=3600 || it_bail "media_fault late.png"
for n in a1 a2 a3 a4; do
    media_fault "/$n.png" status status=503 count=1 || it_bail "media_fault $n.png"
done

# debug: the retry_held lines say how long each retry is held
export IMGCACHE_LOG_LEVEL=debug IMGCACHE_RETRY_BACKOFF=1s,1s IMGCACHE_SHUTDOWN_GRACE=60s

event_json() { printf '{"v":1,"source_url":"%s","chat_id":"test","reason":"test"}' "$1"; }
cached() { q "SELECT count(*) FROM cached_images WHERE source_url = '$M/$1.png'"; }
cached_a() { q "SELECT count(*) FROM cached_images WHERE source_url LIKE '$M/a_.png'"; }
# retries held for longer than 1000 s (the 1 s backoffs are not)
held_late() { grep -cE 'event=retry_held .*due_in_ms=[0-9]{7,}' "$TESTS_TMP/$1.log"; }
# for wait_for, which runs its command again each time
held_late_is() { [ "$(held_late "$1")" = "$2" ]; }
cached_a_is() { [ "$(cached_a)" = "$1" ]; }

# 1. a retry written straight to the topic, due in the year 2999
printf '%s\t%s\n' "$M/far.png" "$(event_json "$M/far.png")" |
    kcat -b "$KAFKA_BROKERS" -P -t image-needed-retry -K '	' \
        -H next_attempt_at=2999-01-01T00:00:00.000Z -H attempts=1 2>&1 ||
    it_bail "cannot write to image-needed-retry"
start_worker w1
check "a far-future next_attempt_at is clamped to the hold limit" \
    wait_for 30 grep -q 'event=retry_due_clamped .*held_ms=3600000' "$TESTS_TMP/w1.log"
check "it is held, not fetched" wait_for 10 held_late_is w1 1

# 2. a 429 asking for an hour: its retry is held behind... and in front of
# the ordinary retries published after it
publish_url "$M/late.png" > /dev/null
check "the 429 with Retry-After: 3600 is held too" wait_for 30 held_late_is w1 2
check_eq "its next try is due in an hour (the cap), not later" "t" \
    "$(q "SELECT next_retry_at BETWEEN now() + interval '55 minutes' AND now() + interval '61 minutes'
          FROM image_failures WHERE source_url = '$M/late.png'")"

# 3. ordinary retryable failures behind them in the same retry partition
publish_url "$M/a1.png" "$M/a2.png" "$M/a3.png" "$M/a4.png" > /dev/null
check "the retries behind the held ones are cached on time" wait_for 30 cached_a_is 4
check_eq "each of them was tried twice (503, then 200)" "2 2 2 2" \
    "$(for n in a1 a2 a3 a4; do media_count "/$n.png"; done | paste -sd' ')"
check_eq "meanwhile the late ones are still held: not retried, not cached" "1 0 0 0" \
    "$(media_count /late.png) $(media_count /far.png) $(cached late) $(cached far)"

# 4. SIGTERM with nothing but held retries: no grace needed
t0=$(now_ms)
check "SIGTERM with only held retries exits 0" stop_worker w1 20
elapsed=$(( $(now_ms) - t0 ))
check "... within 5 s although the grace is 60 s (took ${elapsed} ms)" test "$elapsed" -lt 5000
check_eq "its summary counts the 2 held retries" 2 "$(worker_counter w1 held)"

# 5. a tombstone on the main topic, then --drain with only late retries left
printf '%s\t\n' "$M/tombstone.png" | kcat -b "$KAFKA_BROKERS" -P -t image-needed -K '	' -Z 2>&1 ||
    it_bail "cannot write a tombstone"
start_worker w2 --drain
check "--drain with only late retries left exits 0" wait_worker w2 30
check "... saying it left the held retries" grep -q 'event=drained .*held=2' "$TESTS_TMP/w2.log"
check_eq "the tombstone is counted" 1 "$(worker_counter w2 tombstones)"
check "the tombstone is not a bad event" \
    test "$(worker_counter w2 bad_events)" = 0
check_eq "nothing reached the dead-letter topic" 0 "$(topic_dump image-needed-dlt | wc -l)"
start_worker w3 --drain
check "a second --drain exits 0 too" wait_worker w3 30
check_eq "the tombstone's offset was stored: not consumed again" 0 "$(worker_counter w3 tombstones)"
check_eq "the late retries' offsets were not: held again" 2 "$(worker_counter w3 held)"
check_eq "still not fetched again" "1 0" "$(media_count /late.png) $(media_count /far.png)"

it_done
