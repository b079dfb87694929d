#!/usr/bin/env bash
# The test stack itself, before anything of ours runs on it: PostgreSQL,
# Redis, a fresh broker (Apache Kafka: topics, produce and consume, a clean
# restart on the same data, a start that fails half-way; or the dev broker's
# control commands), the media server (files, counters, faults, tokens), and
# stack.sh in a folder the postgres user cannot reach.
. "$ROOT/tests/integration/lib.sh"
it_setup 12

# a running process (not a zombie: PID 1 here may be slow to reap the
# servers' orphans) whose command line has $1; called in this shell, whose
# own command line does not
no_process_like() {
    local p
    for p in $(pgrep -f -- "$1"); do
        pid_alive "$p" && return 1
    done
    return 0
}
not_running() { [ -n "$1" ] && ! pid_alive "$1"; }

# ---- PostgreSQL and Redis
check_eq "PostgreSQL answers select 1" 1 "$(q 'SELECT 1')"
check_eq "the script has a database of its own" it_00_stack "$(q 'SELECT current_database()')"
check_eq "redis answers PING" PONG "$(redis-cli -u "$REDIS_URL" PING 2>&1)"

# ---- the broker
partitions_of() {
    kcat -b "$KAFKA_BROKERS" -L -t "$1" 2>&1 |
        sed -n "s/.*topic \"$1\" with \([0-9]*\) partitions.*/\1/p"
}
for t in image-needed image-needed-retry image-needed-dlt; do
    check_eq "topic $t exists with 12 partitions" 12 "$(partitions_of "$t")"
done

msg="stack-check-$$-$RANDOM"
printf '%s\n' "$msg" | timeout 30 kcat -b "$KAFKA_BROKERS" -P -t image-needed -p 5 -k k1 2>&1
check_eq "a message produced with kcat comes back with kcat" "k1|$msg" \
    "$(timeout 30 kcat -b "$KAFKA_BROKERS" -C -t image-needed -p 5 -o beginning -c 1 -e -q -f '%k|%s\n' 2>&1)"

if [ "${IMGCACHE_BROKER:-kafka}" = dev ]; then
    check "broker_ctl 'down 1' answers ok" broker_ctl "down 1"
    check "broker_ctl 'up 1' answers ok" broker_ctl "up 1"
    check_eq "an unknown broker id answers error" error "$(broker_ctl 'down 99' | cut -d' ' -f1)"
else
    check "the broker names its version: 3.9.1" test "$(broker_name)" = "Apache Kafka 3.9.1"
    pid=$(sh "$ROOT/compose/kafka.sh" pid "$KAFKA_DIR")
    check "the broker stops cleanly (SIGTERM)" broker_down
    check "and leaves no process behind" not_running "$pid"
    check "a restart on the same data keeps its address" broker_up
    check_eq "and keeps the messages" "k1|$msg" \
        "$(timeout 30 kcat -b "$KAFKA_BROKERS" -C -t image-needed -p 5 -o beginning -c 1 -e -q -f '%k|%s\n' 2>&1)"
    # a start that fails half-way (a heap the JVM refuses) leaves nothing
    out=$(KAFKA_HEAP_OPTS=-Xmx1k sh "$ROOT/compose/kafka.sh" start "$TESTS_TMP/kafka-bad" 2>&1)
    check_eq "kafka.sh start with a broken JVM option fails" 1 "$?"
    check "and leaves no broker behind" no_process_like "kafka.Kafka $TESTS_TMP/kafka-bad/"
    bad=$TESTS_TMP/stack-bad
    out=$(KAFKA_HEAP_OPTS=-Xmx1k sh "$ROOT/compose/stack.sh" start "$bad" 2>&1)
    check_eq "stack.sh start whose broker fails exits 1" 1 "$?"
    redis_pid=$(sed -n 's/^\([0-9]*\):M .*Ready to accept connections.*/\1/p' "$bad/redis.log" | tail -n 1)
    check "its redis-server had started (pid ${redis_pid:-none}) and was stopped" \
        not_running "$redis_pid"
    check "its PostgreSQL had started" grep -q 'database system is ready' "$bad/pg.log"
    check "and was stopped" no_process_like "-D $bad/pg"
    check "and says what failed" grep -qF "the broker (kafka) failed to start" <<< "$out"
fi
check_eq "the broker serves again after down and up" 12 "$(partitions_of image-needed)"

# ---- the media server
mkdir -p "$MEDIA/a"
head -c 70000 /dev/urandom > "$MEDIA/a/x y.jpg"
start_media "$MEDIA"

curl -fsS -o "$TESTS_TMP/got.jpg" "$MEDIA_URL/a/x%20y.jpg"
check "the media server serves a file byte-identically" cmp "$MEDIA/a/x y.jpg" "$TESTS_TMP/got.jpg"
check_eq "and counts it" 1 "$(media_count '/a/x y.jpg')"
check_eq "content type by extension" image/jpeg \
    "$(curl -fsS -o /dev/null -w '%{content_type}' "$MEDIA_URL/a/x%20y.jpg")"

check "a fault is accepted" media_fault '/a/x y.jpg' status status=503 count=2
codes=$(for i in 1 2 3; do curl -s -o /dev/null -w '%{http_code} ' "$MEDIA_URL/a/x%20y.jpg"; done)
check_eq "status 503 count=2 answers 503 twice, then 200" "503 503 200 " "$codes"
check_eq "faulted requests are counted too" 5 "$(media_count '/a/x y.jpg')"
check_eq "media_total counts every file request" 5 "$(media_total)"
media_reset
check_eq "media_reset clears the counters" 0 "$(media_total)"

start_media "$MEDIA" --token s3cret
check_eq "--token: a request without it gets 403" 403 \
    "$(curl -s -o /dev/null -w '%{http_code}' "$MEDIA_URL/a/x%20y.jpg")"
check_eq "--token: a request with it gets 200" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' "$MEDIA_URL/a/x%20y.jpg?token=s3cret")"

# ---- stack.sh in a folder the postgres user cannot reach (a clone under /root)
if [ "$(id -u)" = 0 ]; then
    closed=$TESTS_TMP/closed
    mkdir -p "$closed/stack"
    chmod 700 "$closed"
    out=$(sh "$ROOT/compose/stack.sh" start "$closed/stack" --fast 2>&1)
    check_eq "stack.sh start under a closed folder succeeds" 0 "$?"
    pgroot=$(cat "$closed/stack/pg.location" 2>/dev/null)
    check "PostgreSQL's data went where its user can reach it" \
        bash -c "case '$pgroot' in /var/lib/postgresql/imgcache/?*) runuser -u postgres -- test -s '$pgroot/pg/PG_VERSION' ;; *) false ;; esac"
    check "and the stack says so" grep -qF "PostgreSQL's data is in $pgroot" <<< "$out"
    check "its PostgreSQL answers" bash -c ". '$closed/stack/stack.env' && psql -XAtq \"\$DATABASE_URL\" -c 'SELECT 1'"
    sh "$ROOT/compose/stack.sh" stop "$closed/stack" > /dev/null 2>&1
    check "stop leaves no PostgreSQL of it behind" no_process_like "-D $pgroot/pg"
    check "nor a broker" no_process_like "kafka.Kafka $closed/stack/"
    check "nor a redis-server" not_running \
        "$(sed -n 's/^\([0-9]*\):M .*Ready to accept connections.*/\1/p' "$closed/stack/redis.log" | tail -n 1)"
    case $pgroot in /var/lib/postgresql/imgcache/?*) rm -rf "$pgroot" ;; esac
fi

it_done
