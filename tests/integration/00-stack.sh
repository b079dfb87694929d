#!/usr/bin/env bash
# The test stack itself, before anything of ours runs on it: PostgreSQL,
# Redis, a fresh dev broker (topics, produce and consume, control commands)
# and the media server (files, counters, faults, tokens).
. "$ROOT/tests/integration/lib.sh"
it_setup 12

# ---- PostgreSQL and Redis
check_eq "PostgreSQL answers select 1" 1 "$(q 'SELECT 1')"
check_eq "the script has a database of its own" it_00_stack "$(q 'SELECT current_database()')"
check_eq "redis answers PING" PONG "$(redis-cli -u "$REDIS_URL" PING 2>&1)"

# ---- the dev broker
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

check "broker_ctl 'down 1' answers ok" broker_ctl "down 1"
check "broker_ctl 'up 1' answers ok" broker_ctl "up 1"
check_eq "an unknown broker id answers error" error "$(broker_ctl 'down 99' | cut -d' ' -f1)"
check_eq "the broker serves again after down and up" 12 "$(partitions_of image-needed)"

# ---- the media server
MEDIA=$TESTS_TMP/media
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

# ---- stack.sh in a folder PostgreSQL cannot reach (as root it runs as postgres)
if [ "$(id -u)" = 0 ]; then
    closed=$TESTS_TMP/closed
    mkdir -p "$closed/stack"
    chmod 700 "$closed"
    out=$(sh "$ROOT/compose/stack.sh" start "$closed/stack" 2>&1)
    rc=$?
    check_eq "stack.sh start under a closed folder fails" 1 "$rc"
    check "and says which folder the postgres user cannot reach" grep -qF "cannot reach $closed/stack" <<< "$out"
    check_eq "and leaves no redis-server behind" "" "$(pgrep -f "redis-server.*" -a | grep -F "$closed" || true)"
    check "and no redis.pid (it checked before starting anything)" test ! -e "$closed/stack/redis.pid"
fi

it_done
