#!/usr/bin/env bash
# Crashes and outages under load, each with its own set of URLs:
#  (a) kill -9 of a worker with downloads in flight, then a restart with
#      --drain: every URL cached, the store consistent (blobs only under
#      final names, each hashing to its sha256, one file per image_blobs row)
#  (b) the stack's Redis stopped mid-run and restarted on the same port
#  (c) the stack's PostgreSQL stopped mid-run and restarted
#  (d) the broker stopped (Apache Kafka: a clean stop, then a start on the
#      same data and port; the dev broker: "down 1" and "up 1")
# "Lost" = a URL published on image-needed but neither cached nor failed.
# The stack's servers are restarted at exit whatever happens (lib-faults.sh).
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 12

[ -n "$FAULTS_STACK_DIR" ] || it_bail "the shared stack's folder is unknown (run through tests/run.sh)"

exts=(jpg png gif webp)
for phase in a b c d; do
    mkdir -p "$MEDIA/$phase"
done
N_A=400
N=200
# (d): more events than a worker holds at once (256), so that it must fetch
# again after the broker comes back
N_D=400
make_images() {
    local phase=$1 n=$2 i e
    for i in $(seq 1 "$n"); do
        e=${exts[$((i % 4))]}
        media_image "$MEDIA/$phase/i$i.$e" "outage-$phase-$i"
    done
}
for phase in a b c d; do
    case $phase in a) n=$N_A ;; d) n=$N_D ;; *) n=$N ;; esac
    make_images "$phase" "$n"
done

# 300 ms per request and 8 downloads per worker: at most ~27 images a second,
# so every outage below starts with most of its phase still to do.
start_media "$MEDIA" --latency-ms 300
M=$MEDIA_URL

export IMGCACHE_CONCURRENCY=8 IMGCACHE_LEASE_TTL=3s IMGCACHE_RETRY_BACKOFF=200ms,200ms
export IMGCACHE_FETCH_TIMEOUT=10s

# Publishes phase $1's URLs.
publish_phase() {
    local phase=$1 f urls=()
    for f in "$MEDIA/$phase"/*; do
        urls+=("$M/$phase/${f##*/}")
    done
    publish_url "${urls[@]}" > /dev/null
}
done_count() {
    q "SELECT (SELECT count(*) FROM cached_images WHERE source_url LIKE '$M/$1/%')
            + (SELECT count(*) FROM image_failures WHERE source_url LIKE '$M/$1/%' AND permanent)"
}
cached_count() { q "SELECT count(*) FROM cached_images WHERE source_url LIKE '$M/$1/%'"; }
all_done() { [ "$(done_count "$1")" -ge "$2" ]; }
cached_over() { [ "$(cached_count "$1")" -gt "$2" ]; }
# URLs of phase $1 published on image-needed but neither cached nor failed.
lost_urls() {
    kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%k\n' 2>/dev/null | grep -F "$M/$1/" | sort -u > "$TESTS_TMP/.published"
    q "SELECT source_url FROM cached_images WHERE source_url LIKE '$M/$1/%'
       UNION SELECT source_url FROM image_failures WHERE source_url LIKE '$M/$1/%'" | sort -u > "$TESTS_TMP/.finished"
    comm -23 "$TESTS_TMP/.published" "$TESTS_TMP/.finished"
}
# Paths of phase $1 the media server served more than once.
served_twice() { media_served_over 1 "/$1/"; }
published_count() {
    kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%k\n' 2>/dev/null | grep -cF "$M/$1/"
}
# The same group drained: nothing may be left to download.
drain_after() {
    local name=$1 before
    before=$(media_total)
    start_worker "$name" --drain
    check "$2: a drain of the same group afterwards exits 0" wait_worker "$name" 90
    check_eq "$2: it found nothing left to download (offsets were committed)" "$before" "$(media_total)"
}

# ---- (a) kill -9 with downloads in flight --------------------------------------
publish_phase a
check_eq "(a) $N_A events published" "$N_A" "$(published_count a)"
# streaming to temporary files (no memory budget), the path that can leave
# half-written files behind; held in memory, a download leaves nothing
start_worker k1 --body-memory 0
# the progress line comes 10 s after the start: at ~27 images/s, 400 take longer
check "(a) the worker's log shows downloads in flight" \
    wait_for 60 grep -qE 'event=progress .* in_flight=[1-9]' "$TESTS_TMP/k1.log"
kill_worker k1
grep -E 'event=progress .* in_flight=[1-9]' "$TESTS_TMP/k1.log" | head -n 1 | sed 's/^.*\(event=progress\)/# \1/'
cached_at_kill=$(cached_count a)
parts_at_kill=$(find "$IMGCACHE_STORAGE_DIR/.tmp" -name '*.part' | wc -l)
echo "# killed with $cached_at_kill of $N_A cached, $parts_at_kill .part files in .tmp"
check "(a) killed mid-run: some cached, not all" test "$cached_at_kill" -gt 0 -a "$cached_at_kill" -lt "$N_A"
check "(a) the kill left half-done downloads (.part files) in .tmp" test "$parts_at_kill" -gt 0
start_worker k2 --drain
check "(a) the restarted worker drains and exits 0" wait_worker k2 120
check_eq "(a) every URL ends cached or failed" "$N_A" "$(done_count a)"
check_eq "(a) no URL lost" "" "$(lost_urls a)"
check_eq "(a) every URL cached" "$N_A" "$(cached_count a)"
check_eq "(a) the store is consistent (every blob file hashes to its row, no orphan, no .part)" "" \
    "$(storage_problems)"
check_eq "(a) no row points into .tmp or at a .part file" 0 \
    "$(q "SELECT count(*) FROM image_blobs WHERE storage_key LIKE '%.part' OR storage_key LIKE '.tmp/%'")"
check_eq "(a) one image_blobs row per distinct image" "$N_A" \
    "$(q "SELECT count(*) FROM image_blobs b JOIN cached_images c USING (sha256) WHERE c.source_url LIKE '$M/a/%'")"
check_eq "(a) cached rows point at their own bytes" 0 \
    "$(q "SELECT count(*) FROM cached_images c JOIN image_blobs b USING (sha256) WHERE c.source_url LIKE '$M/a/%' AND b.byte_size <> c.byte_size")"

# ---- (b) Redis stopped mid-run -----------------------------------------------------
publish_phase b
start_worker r1
check "(b) the worker is caching" wait_for 60 cached_over b 20
check "(b) the stack's Redis stops" stack_redis_stop
at_stop=$(cached_count b)
sleep 3    # Redis stays down for 3 s
during=$(cached_count b)
echo "# Redis down: $at_stop -> $during cached during the outage"
check "(b) the outage began mid-run" test "$at_stop" -lt "$N"
check "(b) the worker went on without leases while Redis was down" test "$during" -gt "$at_stop" -o "$during" -ge "$N"
check "(b) the outage was logged (event=redis_down)" grep -q 'event=redis_down' "$TESTS_TMP/r1.log"
check "(b) Redis comes back on its port" stack_redis_start
check "(b) every URL finishes" wait_for 90 all_done b "$N"
check "(b) the return was logged (event=redis_up)" wait_for 20 grep -q 'event=redis_up' "$TESTS_TMP/r1.log"
check_eq "(b) redis_down logged once for the outage" 1 "$(grep -c 'event=redis_down' "$TESTS_TMP/r1.log")"
stop_worker r1 30
check_eq "(b) SIGTERM: the worker exits 0" 0 "$?"
check_eq "(b) no URL lost" "" "$(lost_urls b)"
check_eq "(b) every URL cached" "$N" "$(cached_count b)"
check_eq "(b) no URL downloaded twice" "" "$(served_twice b)"
drain_after r2 "(b)"

# ---- (c) PostgreSQL stopped mid-run -----------------------------------------------
publish_phase c
start_worker p1
check "(c) the worker is caching" wait_for 60 cached_over c 20
at_stop=$(cached_count c)
check "(c) the stack's PostgreSQL stops" stack_pg_stop
sleep 3    # PostgreSQL stays down for 3 s
check "(c) the outage was logged (event=db_down)" grep -q 'event=db_down' "$TESTS_TMP/p1.log"
check "(c) PostgreSQL comes back" stack_pg_start
check "(c) the outage began mid-run" test "$at_stop" -lt "$N"
check "(c) every URL finishes" wait_for 90 all_done c "$N"
check "(c) the reconnection was logged (event=db_up)" grep -q 'event=db_up' "$TESTS_TMP/p1.log"
stop_worker p1 30
check_eq "(c) SIGTERM: the worker exits 0" 0 "$?"
check_eq "(c) no URL lost" "" "$(lost_urls c)"
check_eq "(c) every URL cached" "$N" "$(cached_count c)"
check_eq "(c) no URL downloaded twice" "" "$(served_twice c)"
drain_after p2 "(c)"

# ---- (d) the broker down and up ----------------------------------------------------
publish_phase d
start_worker b1
check "(d) the worker is caching" wait_for 60 cached_over d 20
at_stop=$(cached_count d)
check "(d) the broker goes down" broker_down
sleep 3    # the broker stays down for 3 s
check "(d) the broker comes back" broker_up
check "(d) the outage began mid-run" test "$at_stop" -lt "$N_D"
check "(d) every URL finishes" wait_for 90 all_done d "$N_D"
stop_worker b1 30
check_eq "(d) SIGTERM: the worker exits 0" 0 "$?"
# at least once: a rebalance after the outage may deliver some events again
consumed=$(worker_counter b1 consumed)
echo "# (d) the worker consumed ${consumed:-?} events"
check "(d) the worker consumed every event (at least once)" test "${consumed:-0}" -ge "$N_D"
check_eq "(d) no URL lost" "" "$(lost_urls d)"
check_eq "(d) every URL cached" "$N_D" "$(cached_count d)"
check_eq "(d) no URL downloaded twice" "" "$(served_twice d)"
drain_after b2 "(d)"

# ---- the whole store -----------------------------------------------------------------
check_eq "after everything: one blob per image, one file per blob" "$((N_A + 2 * N + N_D))" \
    "$(q "SELECT count(*) FROM image_blobs")"
check_eq "after everything: no failures" 0 "$(q "SELECT count(*) FROM image_failures")"
check "the stack's Redis and PostgreSQL run again" bash -c \
    "redis-cli -u '$REDIS_URL' PING | grep -q PONG && psql -XAtq '$STACK_DATABASE_URL' -c 'SELECT 1' > /dev/null"
it_done
