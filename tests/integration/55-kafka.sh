#!/usr/bin/env bash
# What only a real Apache Kafka can show (the mock keeps no log, has no
# cleaner and runs its own group state machine), each phase with its own URLs:
#  (a) the broker killed with SIGKILL mid-run, then started again on the
#      same data: the producer's events (acks=all, idempotent) before and
#      during the outage all end cached, none downloaded twice, and the
#      group's committed offsets hold (a drain of the same group finds
#      nothing left)
#  (b) the broker frozen (SIGSTOP) past the session timeout, then resumed:
#      the workers rejoin and finish, nothing lost or cached twice
#  (c) four workers join one at a time and leave one at a time under load
#      (cooperative-sticky on the real coordinator): nothing lost, nothing
#      downloaded twice
#  (d) a compacted topic: the same URLs announced 25 times, the log cleaner
#      runs (polled, not waited for), and a replay from the beginning under a
#      new group sees each URL once and downloads nothing
#  (f) four draining workers started together on a backlog all read it to
#      its end before they exit
#  (e) a replay after a broker restart sees the same set of URLs as before
. "$ROOT/tests/integration/lib.sh"
it_setup 12

if [ "${IMGCACHE_BROKER:-kafka}" != kafka ]; then
    echo "# 55-kafka tests Apache Kafka itself; IMGCACHE_BROKER=$IMGCACHE_BROKER: nothing to run"
    it_done
fi

mkdir -p "$MEDIA"/{a,b,c,d,f}
N_A=240 N_B=160 N_C=400 N_D=20 N_F=400
for phase in a b c d f; do
    n_var=N_${phase^^}
    for i in $(seq 1 "${!n_var}"); do
        media_image "$MEDIA/$phase/i$i.webp" "kafka-$phase-$i"
    done
done
# 40 ms per request: a phase lasts long enough to fail the broker under load
start_media "$MEDIA" --latency-ms 40

# chats PHASE FROM TO: one group chat per image
chats() {
    local i
    for i in $(seq "$2" "$3"); do
        printf '{"id":"%s-%d","title":"Chat %s %d","type":"group","imgURL":"%s/%s/i%d.webp"}\n' \
            "$1" "$i" "$1" "$i" "$MEDIA_URL" "$1" "$i"
    done > "$TESTS_TMP/chats-$1-$2.jsonl"
    echo "$TESTS_TMP/chats-$1-$2.jsonl"
}
import() { "$BIN/imgcache-producer" import "$@" >> "$TESTS_TMP/import.log" 2>&1; }

count_rows() {
    q "SELECT (SELECT count(*) FROM cached_images WHERE source_url LIKE '$MEDIA_URL/$1/%')
            + (SELECT count(*) FROM image_failures WHERE source_url LIKE '$MEDIA_URL/$1/%')"
}
cached_over() { [ "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE '$MEDIA_URL/$1/%'")" -gt "$2" ]; }
all_done() { [ "$(count_rows "$1")" -ge "$2" ]; }
# paths of phase $1 the media server served more than once
served_twice() { media_served_over 1 "/$1/"; }
served() { media_served_over 0 "/$1/" | wc -l; }
assigned_count() { grep -c 'event=assigned' "$TESTS_TMP/$1.log"; }
# every event's offset committed: a drain of the same group consumes nothing new
drain_finds_nothing() {
    local name=$1 label=$2
    start_worker "$name" --drain
    check "$label a drain of the same group exits 0" wait_worker "$name" 120
    check "$label the drain found nothing left to download" \
        grep -q 'event=summary consumed=[0-9]* already_cached=[0-9]* downloaded=0 ' "$TESTS_TMP/$name.log"
}

# ---- (a) SIGKILL, then a restart on the same data --------------------------------
start_worker a1 --concurrency 4
start_worker a2 --concurrency 4
import "$(chats a 1 $((N_A / 2)))"
check "(a) the first half is announced" test $? -eq 0
check "(a) the workers are caching" wait_for 60 cached_over a 20
check "(a) the broker is killed (SIGKILL)" broker_kill
sleep 1    # the broker stays dead for a moment
# the second half is announced while the broker is dead and restarting: the
# producer asks for the cluster again (up to 30 s) and holds its events
# until the broker is back and acknowledges them
import "$(chats a $((N_A / 2 + 1)) $N_A)" &
import_pid=$!
check "(a) the broker starts again on the same data and port" broker_up
wait "$import_pid"
check_eq "(a) the announcement made during the outage succeeds" 0 "$?"
check "(a) every URL ends cached or failed" wait_for 120 all_done a "$N_A"
check_eq "(a) every URL is cached" "$N_A" "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE '$MEDIA_URL/a/%'")"
check_eq "(a) no URL downloaded twice" "" "$(served_twice a)"
stop_worker a1 30
check_eq "(a) SIGTERM: worker 1 exits 0" 0 "$?"
stop_worker a2 30
check_eq "(a) SIGTERM: worker 2 exits 0" 0 "$?"
drain_finds_nothing a3 "(a)"

# ---- (b) SIGSTOP past the session timeout ----------------------------------------------
start_worker b1 --concurrency 4
start_worker b2 --concurrency 4
check "(b) both workers have partitions" wait_for 60 bash -c \
    "grep -q event=assigned '$TESTS_TMP/b1.log' && grep -q event=assigned '$TESTS_TMP/b2.log'"
import "$(chats b 1 $N_B)"
check "(b) the events are announced" test $? -eq 0
check "(b) the workers are caching" wait_for 60 cached_over b 20
joins_before=$(( $(assigned_count b1) + $(assigned_count b2) ))
check "(b) the broker is frozen (SIGSTOP)" broker_freeze
sleep 9    # frozen for longer than the 6 s session timeout
check "(b) the broker is resumed (SIGCONT)" broker_thaw
check "(b) every URL ends cached or failed" wait_for 120 all_done b "$N_B"
check_eq "(b) every URL is cached" "$N_B" "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE '$MEDIA_URL/b/%'")"
check_eq "(b) no URL downloaded twice" "" "$(served_twice b)"
echo "# (b) assignments before the freeze: $joins_before, after: $(( $(assigned_count b1) + $(assigned_count b2) ))"
stop_worker b1 30
check_eq "(b) SIGTERM: worker 1 exits 0" 0 "$?"
stop_worker b2 30
check_eq "(b) SIGTERM: worker 2 exits 0" 0 "$?"
drain_finds_nothing b3 "(b)"

# ---- (c) four workers join one at a time, then leave one at a time -------------------
# a slower server of the same files for this phase: 200 ms per request, so
# the pool is still busy while it grows and shrinks
M1=$MEDIA_URL
start_media "$MEDIA" --latency-ms 200
M2=$MEDIA_URL
# The events come in waves while the pool changes (a worker takes up to
# thousands of events at once, so a backlog imported up front would all be
# in the first worker's hands before the others join): each wave is spread
# over the partitions of whoever is in the group then.
WAVE=$((N_C / 8))
wave=0
next_wave() {
    import "$(chats c $((wave * WAVE + 1)) $(((wave + 1) * WAVE)))"
    check "(c) wave $((wave + 1)) is announced" test $? -eq 0
    wave=$((wave + 1))
}
next_wave
start_worker c1 --concurrency 2
check "(c) worker 1 is caching" wait_for 60 cached_over c 10
for k in 2 3 4; do
    start_worker "c$k" --concurrency 2 --log-level debug
    check "(c) worker $k joins and gets partitions" wait_for 60 grep -q "event=assigned partitions=[1-9]" "$TESTS_TMP/c$k.log"
    next_wave
    check "(c) worker $k caches images" wait_for 60 grep -q "event=cached" "$TESTS_TMP/c$k.log"
done
for k in 4 3 2; do
    next_wave
    at=$(count_rows c)
    check "(c) the pool makes progress before worker $k leaves" wait_for 60 cached_over c $((at + 10))
    stop_worker "c$k" 30
    check_eq "(c) SIGTERM: worker $k leaves and exits 0" 0 "$?"
done
next_wave
check "(c) worker 1 finishes every image" wait_for 180 all_done c "$N_C"
stop_worker c1 30
check_eq "(c) SIGTERM: worker 1 exits 0" 0 "$?"
check_eq "(c) every URL is cached" "$N_C" "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE '$MEDIA_URL/c/%'")"
check_eq "(c) no URL downloaded twice" "" "$(served_twice c)"
check_eq "(c) every URL downloaded" "$N_C" "$(served c)"
MEDIA_URL=$M1

# ---- (d) compaction ----------------------------------------------------------------
# a topic of its own, one partition, rolled after 100 ms and cleaned as soon
# as 1 % of it is dirty
(
    export IMGCACHE_TOPIC=compact-test
    "$BIN/imgcache-producer" topics --partitions 1 --config segment.ms=100 \
        --config min.cleanable.dirty.ratio=0.01 \
        > "$TESTS_TMP/topics-d.log" 2>&1
)
check "(d) a compacted test topic is created" test $? -eq 0
topic_keys() {
    kcat -b "$KAFKA_BROKERS" -C -t "$1" -o beginning -e -q -f '%k\n' 2>/dev/null
}
d_chats=$(chats d 1 $N_D)
announced=0
for round in $(seq 25); do
    IMGCACHE_TOPIC=compact-test import "$d_chats" && announced=$((announced + 1))
done
# (the cleaner may already be at work meanwhile: the topic's count is no
# measure of what was announced)
check_eq "(d) the same $N_D URLs announced 25 times" 25 "$announced"
IMGCACHE_TOPIC=compact-test start_worker d1 --drain --group compact-first
check "(d) a first drain caches them (and reads every copy)" wait_worker d1 120
check_eq "(d) each of them downloaded once" "$N_D" "$(served d)"
check_eq "(d) and not twice" "" "$(served_twice d)"
# the cleaner never touches the active segment: one event more, 100 ms after
# the last, rolls it. The producer would not announce a cached URL again, so
# the last event goes in once more as it is (the same URL: dirty too).
sleep 0.2
last=$(kcat -b "$KAFKA_BROKERS" -C -t compact-test -o -1 -c 1 -e -q -f '%k\t%s\n' 2>/dev/null)
check "(d) the last event is read back" test -n "$last"
printf '%s\n' "$last" | kcat -b "$KAFKA_BROKERS" -P -t compact-test -K '\t' 2>/dev/null
check_eq "(d) and produced once more, to roll the segment" 0 "$?"
compacted() { [ "$(topic_keys compact-test | wc -l)" -le $((N_D + 1)) ]; }
check "(d) the log cleaner compacts the topic to one event per URL (polled)" wait_for 90 compacted
check_eq "(d) every URL is still there after compaction" "$N_D" "$(topic_keys compact-test | sort -u | wc -l)"
media_reset
IMGCACHE_TOPIC=compact-test start_worker d2 --drain --group compact-replay --from-beginning
check "(d) a replay under a new group exits 0" wait_worker d2 120
consumed=$(worker_counter d2 consumed)
check "(d) the replay sees each URL once (consumed=${consumed:-?}, at most $((N_D + 1)))" \
    test "${consumed:-0}" -ge "$N_D" -a "${consumed:-0}" -le $((N_D + 1))
check_eq "(d) and downloads nothing" 0 "$(media_total)"

# ---- (f) four draining workers on a backlog, three joining the first ----------------------
# Each joins while the others hold the partitions: on a real broker its
# first cooperative step may assign it nothing, which once read as "caught
# up" (the workers exited 0 with most of the backlog unread).
import "$(chats f 1 $N_F)"
check "(f) the backlog is announced" test $? -eq 0
start_worker f1 --drain --group drain-together --concurrency 2
check "(f) the first draining worker is caching" wait_for 60 cached_over f 10
# the others join while it holds every partition and has downloads in flight
for k in 2 3 4; do start_worker "f$k" --drain --group drain-together --concurrency 2; done
for k in 1 2 3 4; do
    check "(f) draining worker $k exits 0" wait_worker "f$k" 180
done
check_eq "(f) every URL of the backlog is cached when the drains end" "$N_F" \
    "$(q "SELECT count(*) FROM cached_images WHERE source_url LIKE '$MEDIA_URL/f/%'")"

# ---- (e) a replay after a broker restart ---------------------------------------------
before=$(topic_keys image-needed | sort -u)
check "(e) the main topic holds the URLs of (a) to (c) and (f)" test "$(printf '%s\n' "$before" | wc -l)" -ge $((N_A + N_B + N_C + N_F))
check "(e) the broker stops cleanly" broker_down
check "(e) and starts again on the same data" broker_up
check_eq "(e) the topic holds the same URLs after the restart" "$before" "$(topic_keys image-needed | sort -u)"
media_reset
MEDIA_URL=$M2 media_reset
start_worker e1 --drain --group replay-after-restart --from-beginning
check "(e) a replay under a new group exits 0" wait_worker e1 180
consumed=$(worker_counter e1 consumed)
check "(e) the replay consumes every URL (consumed=${consumed:-?})" \
    test "${consumed:-0}" -ge $((N_A + N_B + N_C + N_F))
check_eq "(e) and downloads nothing (all cached)" "0 0" "$(media_total) $(MEDIA_URL=$M2 media_total)"
it_done
