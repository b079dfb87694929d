#!/usr/bin/env bash
# Scaling the pool while it works: a worker joins mid-run and another is
# stopped with SIGTERM; nothing is lost and nothing is downloaded twice.
. "$ROOT/tests/integration/lib.sh"
it_setup 12

N=600
CHATS="$TESTS_TMP/chats.jsonl"
: > "$CHATS"
for i in $(seq 1 $N); do
    media_image "$MEDIA/s$i.webp" "scale-$i"
done
# 100 ms per request at 2 downloads per worker: about 30 s for one worker,
# long enough to change the pool under load.
start_media "$MEDIA" --latency-ms 100
for i in $(seq 1 $N); do
    printf '{"id":"c%d","title":"Chat %d","type":"group","imgURL":"%s/s%d.webp"}\n' "$i" "$i" "$MEDIA_URL" "$i" >> "$CHATS"
done
"$BIN/imgcache-producer" import "$CHATS" > /dev/null
check "import succeeds" test $? -eq 0

cached_more_than() { [ "$(q 'SELECT count(*) FROM cached_images')" -gt "$1" ]; }

start_worker a --concurrency 2
check "first worker caches something" wait_for 60 cached_more_than 10
start_worker b --concurrency 2 --log-level debug
check "second worker gets partitions" wait_for 60 grep -q "event=assigned" "$TESTS_TMP/b.log"
check "second worker caches images too" wait_for 90 grep -q "event=cached" "$TESTS_TMP/b.log"
before=$(q 'SELECT count(*) FROM cached_images')
check "not finished before the first worker stops" test "$before" -lt $N
stop_worker a
check_eq "SIGTERM: the first worker exits 0" 0 "$?"
check "the second worker finishes every image" wait_for 180 cached_more_than $((N - 1))
stop_worker b
check_eq "SIGTERM: the second worker exits 0" 0 "$?"
check_eq "no image lost" "$N" "$(q 'SELECT count(*) FROM cached_images')"
check_eq "no image downloaded twice" "$N" "$(media_total)"
check_eq "no temporary file left" "0" "$(find "$IMGCACHE_STORAGE_DIR/.tmp" -type f | wc -l)"

# Every event's offset was committed: a drain of the same group finds
# nothing left (and downloads nothing).
media_reset
start_worker c --drain
check "a drain of the same group exits 0" wait_worker c 120
check_eq "nothing was left to download" "0" "$(media_total)"

# A second SIGTERM ends a worker at once: the first one waits (--grace)
# for the download in flight, here one whose body never comes.
cp "$MEDIA/s1.webp" "$MEDIA/stall.webp"
media_fault /stall.webp stall
printf '{"id":"cstall","title":"Stall","type":"group","imgURL":"%s/stall.webp"}\n' "$MEDIA_URL" > "$TESTS_TMP/stall.jsonl"
"$BIN/imgcache-producer" import "$TESTS_TMP/stall.jsonl" > /dev/null
start_worker d --grace 120s --fetch-timeout 120s
stalled() { [ "$(media_count /stall.webp)" -ge 1 ]; }
check "the last worker starts the download that stalls" wait_for 60 stalled
d_pid=$(cat "$TESTS_TMP/d.pid")
kill -TERM "$d_pid"
check "the first SIGTERM starts a graceful stop" wait_for 10 grep -q "event=stopping" "$TESTS_TMP/d.log"
check "... which waits for the stalled download" pid_alive "$d_pid"
kill -TERM "$d_pid"
wait_worker d 10
check_eq "a second SIGTERM ends it at once (killed by the signal: 128 + 15)" 143 "$?"
it_done
