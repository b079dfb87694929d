#!/usr/bin/env bash
# The workers' metrics endpoint (IMGCACHE_METRICS_ADDR) on a real fleet: a
# real Prometheus scrapes two workers every second while they cache a batch
# of images, and its sum of the cached-jobs counter is the number of
# cached_images rows; promtool accepts every scrape; the consumer lag rises
# while a backlog waits behind a stopped origin and falls to 0 once it is
# drained; /readyz is 503 while PostgreSQL is stopped and for a group
# member without a partition, 200 otherwise; /healthz is 200. A worker
# without the setting opens no port.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
PROG=71-fleet-metrics
. "$ROOT/tests/integration/lib-prom.sh"
prom_require
it_setup 4

IMG=$ROOT/tests/fixtures/images
D=$TESTS_TMP/metrics
mkdir -p "$D" "$TESTS_TMP/media/a" "$TESTS_TMP/slow/b"
exts=(jpg png gif webp)
N=40        # images of the fleet run
M=20        # images of the backlog behind the stopped origin
for i in $(seq 1 $N); do
    e=${exts[$((i % 4))]}
    { cat "$IMG/avatar.$e"; printf 'fleet-metrics-%d' "$i"; } > "$TESTS_TMP/media/a/p$i.$e"
done
for i in $(seq 1 $M); do
    e=${exts[$((i % 4))]}
    { cat "$IMG/avatar.$e"; printf 'backlog-%d' "$i"; } > "$TESTS_TMP/slow/b/q$i.$e"
done
start_media "$TESTS_TMP/media"
FAST_URL=$MEDIA_URL
start_media "$TESTS_TMP/slow"
SLOW_URL=$MEDIA_URL
SLOW_PID=$MEDIA_PID

# The port a worker logged (it asked for port 0), or nothing yet.
metrics_port() {
    sed -n 's/.*event=metrics_listening .*port=\([0-9]*\).*/\1/p' "$TESTS_TMP/$1.log" | head -n 1
}
has_metrics_port() { [ -n "$(metrics_port "$1")" ]; }
# Starts worker NAME with the endpoint on a free port -> URL_<NAME>.
# Statistics every second (-X wins over the worker's 5 s): the lag moves fast.
start_metrics_worker() {
    local name=$1 port
    shift
    start_worker "$name" --metrics-addr 127.0.0.1:0 -X statistics.interval.ms=1000 "$@"
    wait_for 30 has_metrics_port "$name" || it_bail "worker $name logged no metrics port" "$TESTS_TMP/$name.log"
    port=$(metrics_port "$name")
    printf -v "URL_$name" 'http://127.0.0.1:%s' "$port"
}
url_of() { local v="URL_$1"; echo "${!v}"; }
status_is() { [ "$(http_status "$(url_of "$1")$2")" = "$3" ]; }
# Saves a scrape of worker $1 as LAST_SCRAPE; every one is kept for
# promtool at the end (named by time and shell: polls run in subshells).
scrape() {
    LAST_SCRAPE=$D/scrape-$(now_ms)-$BASHPID-$1.txt
    curl -sf --max-time 5 "$(url_of "$1")/metrics" > "$LAST_SCRAPE"
}
cached_rows() { q "SELECT count(*) FROM cached_images"; }
rows_are() { [ "$(cached_rows)" = "$1" ]; }
# rows_are, scraping both workers at each poll: promtool sees them mid-run
rows_are_scraping() { scrape w1; scrape w2; rows_are "$1"; }
# The sum of a sample over both workers' scrapes, taken now.
fleet_sum() {
    local name total=0 v
    for name in w1 w2; do
        scrape "$name" || return 1
        v=$(sample "$1" "$LAST_SCRAPE")
        total=$((total + ${v%.*}))
    done
    echo "$total"
}
fleet_sum_is() { [ "$(fleet_sum "$1")" = "$2" ]; }
# Prometheus' answer, as an integer (it prints counters as "40").
prom_int_is() { local v; v=$(promql "$1"); [ -n "$v" ] && [ "${v%.*}" = "$2" ]; }

# ---- the fleet: two workers, both scraped by Prometheus
start_metrics_worker w1 --fetch-timeout 120s
start_metrics_worker w2 --fetch-timeout 120s
prom_start "$D/prom" imgcache-worker "${URL_w1#http://}" "${URL_w2#http://}"
check "Prometheus scrapes both workers" wait_for 30 promql_is 'count(up{job="imgcache-worker"} == 1)' 2 ||
    log_tail "$PROM_LOG"
check "both workers get a partition: /readyz 200" \
    wait_for 60 eval 'status_is w1 /readyz 200 && status_is w2 /readyz 200'
for name in w1 w2; do
    check_eq "/healthz of $name is 200" 200 "$(http_status "$(url_of $name)/healthz")"
done

urls=()
for i in $(seq 1 $N); do urls+=("$FAST_URL/a/p$i.${exts[$((i % 4))]}"); done
publish_url "${urls[@]}" > /dev/null
check "the fleet caches the $N images" wait_for 90 rows_are_scraping "$N"
CACHED='imgcache_jobs_total{outcome="cached"}'
check "the workers' own counters add up to the $N rows" wait_for 10 fleet_sum_is "$CACHED" "$N"
check "Prometheus' sum($CACHED) reaches the $N cached_images rows" \
    wait_for 20 prom_int_is "sum($CACHED)" "$N"
check "Prometheus sees events consumed from the main topic" \
    wait_for 20 prom_int_is 'sum(imgcache_events_consumed_total{topic="image-needed"})' "$N"
check "Prometheus has download times of every image" \
    wait_for 20 prom_int_is 'sum(imgcache_download_duration_seconds_count)' "$N"
check "and commit batches" wait_for 20 promql_has 'sum(imgcache_commit_batch_images_count) > 0'
for name in w1 w2; do
    scrape "$name"
    check_eq "$name: dependency_up of PostgreSQL is 1" 1 \
        "$(sample 'imgcache_dependency_up{dependency="postgresql"}' "$LAST_SCRAPE")"
    check_eq "$name: dependency_up of Redis is 1" 1 \
        "$(sample 'imgcache_dependency_up{dependency="redis"}' "$LAST_SCRAPE")"
done

# ---- the lag: a backlog waits behind a stopped origin, then drains
kill -STOP "$SLOW_PID"
LAG='imgcache_consumer_lag'
check "the lag is 0 before the backlog" wait_for 20 prom_int_is "sum($LAG)" 0
urls=()
for i in $(seq 1 $M); do urls+=("$SLOW_URL/b/q$i.${exts[$((i % 4))]}"); done
publish_url "${urls[@]}" > /dev/null
# nothing of the backlog can finish while its origin is stopped (the
# downloads wait within --fetch-timeout): the lag is exactly M
check "the lag rises to the $M waiting events (Prometheus)" wait_for 30 prom_int_is "sum($LAG)" "$M"
# every lag series of both workers' own scrapes, added up
lag_total() {
    local total=0 name v
    for name in w1 w2; do
        scrape "$name" || return 1
        for v in $(sed -n 's/^imgcache_consumer_lag{[^}]*} \([0-9]*\)$/\1/p' "$LAST_SCRAPE"); do
            total=$((total + v))
        done
    done
    echo "$total"
}
check_eq "the workers' own lag series add up to $M" "$M" "$(lag_total)"
check_eq "the rows did not grow while the origin is stopped" "$N" "$(cached_rows)"
check "downloads are in flight meanwhile" wait_for 10 promql_has 'sum(imgcache_downloads_in_flight) > 0'
kill -CONT "$SLOW_PID"
check "the backlog is cached once the origin answers" wait_for 90 rows_are_scraping $((N + M))
check "the lag falls to 0 (Prometheus)" wait_for 30 prom_int_is "sum($LAG)" 0

# ---- readiness while PostgreSQL is stopped
if stack_pg_stop; then
    for name in w1 w2; do
        check "$name: /readyz is 503 while PostgreSQL is stopped" wait_for 20 status_is "$name" /readyz 503
        check "$name: it says why" sh -c "curl -s --max-time 5 '$(url_of $name)/readyz' | grep -q 'PostgreSQL unreachable'"
        scrape "$name"
        check_eq "$name: dependency_up of PostgreSQL is 0" 0 \
            "$(sample 'imgcache_dependency_up{dependency="postgresql"}' "$LAST_SCRAPE")"
        check_eq "$name: /healthz stays 200 (the loop turns)" 200 "$(http_status "$(url_of $name)/healthz")"
    done
else
    check "PostgreSQL stops (lib-faults.sh)" false
fi
check "PostgreSQL starts again" stack_pg_start
for name in w1 w2; do
    check "$name: /readyz is 200 again" wait_for 30 status_is "$name" /readyz 200
done

# ---- the count once more, after the last commit
check "Prometheus' sum($CACHED) is the $((N + M)) cached_images rows" \
    wait_for 20 prom_int_is "sum($CACHED)" "$(cached_rows)"
check_eq "Prometheus saw no failure" 0 "$(promql 'sum(imgcache_failures_total)')"
prom_stop

# ---- a port another process holds: a configuration error at start-up
start_worker clash --metrics-addr "127.0.0.1:$(metrics_port w1)"
wait_worker clash 30
check_eq "a worker whose metrics port is taken exits 2" 2 "$?"
check "its one error line names IMGCACHE_METRICS_ADDR and --metrics-addr" \
    grep -q 'IMGCACHE_METRICS_ADDR (--metrics-addr) 127.0.0.1:[0-9]*: ' "$TESTS_TMP/clash.log"

# ---- off by default: no port
# The TCP ports process $1 listens on (from its sockets' inodes).
listening_ports() {
    local pid=$1 inodes
    inodes=$(ls -l "/proc/$pid/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | tr '\n' '|')
    [ -n "$inodes" ] || return 0
    awk -v re="^(${inodes%|})\$" '$4 == "0A" && $10 ~ re { n = split($2, a, ":"); print a[n] }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r hex; do printf '%d\n' "0x$hex"; done
}
start_worker quiet --concurrency 2
check "the worker without IMGCACHE_METRICS_ADDR starts" wait_for 30 grep -q 'event=started' "$TESTS_TMP/quiet.log"
check_eq "a worker with it listens on the port it logged, only" "$(metrics_port w1)" \
    "$(listening_ports "${IT_WORKER_PID[w1]}")"
check_eq "a worker without it listens on no port" "" "$(listening_ports "${IT_WORKER_PID[quiet]}")"
check "and logs none" test -z "$(metrics_port quiet)"
for name in w1 w2; do
    check "$name stops cleanly" stop_worker "$name" 30
done
stop_worker quiet 30

# ---- a member of a group with more members than partitions
# topic "solo" has one partition (and solo-retry one): of three workers
# one is alive without a partition until another leaves
solo_group() {
    local name idle=
    IMGCACHE_TOPIC=solo "$BIN/imgcache-producer" topics --partitions 1 > "$D/solo-topics.log" 2>&1 ||
        it_bail "topics solo failed" "$D/solo-topics.log"
    export IMGCACHE_TOPIC=solo IMGCACHE_GROUP=solo
    for name in s1 s2 s3; do
        start_metrics_worker "$name" --concurrency 2
    done
    check "two of three solo workers have a partition and are ready" wait_for 60 ready_count_is 2
    for name in s1 s2 s3; do
        status_is "$name" /readyz 503 && idle=$name
    done
    check "the third is alive (/healthz 200) but not ready (503): no partition assignment" \
        sh -c "[ -n '$idle' ] && curl -s --max-time 5 '$(url_of "${idle:-s1}")/readyz' | grep -q 'no partition assignment' &&
               [ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 '$(url_of "${idle:-s1}")/healthz')\" = 200 ]"
    scrape "${idle:-s1}"
    check "its scrape has no lag series (it owns no partition)" test -z "$(grep '^imgcache_consumer_lag{' "$LAST_SCRAPE")"
    for name in s1 s2 s3; do
        [ "$name" = "$idle" ] && continue
        stop_worker "$name" 30
        break
    done
    check "once a member leaves, the idle worker gets its partition: /readyz 200" \
        wait_for 60 status_is "${idle:-s1}" /readyz 200
}
ready_count() {
    local n=0 name
    for name in s1 s2 s3; do
        status_is "$name" /readyz 200 && n=$((n + 1))
    done
    echo "$n"
}
ready_count_is() { [ "$(ready_count)" = "$1" ]; }
MIN_SCRAPES=12
if [ "${IMGCACHE_BROKER:-kafka}" = kafka ]; then
    solo_group
    MIN_SCRAPES=13
else
    # the dev broker makes every topic with the partition count it was given
    echo "# a member without a partition (a topic of one partition) needs Apache Kafka: skipped"
fi

# ---- every scrape taken above
bad=0
scrapes=0
for f in "$D"/scrape-*.txt; do
    [ -s "$f" ] || continue
    scrapes=$((scrapes + 1))
    promtool check metrics < "$f" > "$D/promtool.out" 2>&1 || { bad=$((bad + 1)); sed 's/^/# /' "$D/promtool.out"; }
done
echo "# $scrapes worker scrapes taken"
# at least (each poll runs once): two in each of the two waits for rows, two
# for the counters, two for dependency_up, two with the backlog waiting, two
# with PostgreSQL down, one of the idle member (Kafka); every one must have
# answered
check "the workers were scraped in every phase (fleet, backlog, PostgreSQL down, solo)" \
    test "$scrapes" -ge "$MIN_SCRAPES"
check_eq "promtool check metrics accepts every one of the $scrapes worker scrapes" 0 "$bad"

# ---- the README's alert rules are the compose stack's, and promtool accepts them
check "promtool check rules accepts compose/prometheus-rules.yml" \
    promtool check rules "$ROOT/compose/prometheus-rules.yml"
readme_rules() {
    awk '/^A sample alert rule/ { want = 1 } want && /^```yaml$/ { on = 1; next } on && /^```$/ { exit } on' \
        "$ROOT/README.md"
}
check_eq "README's sample alert rule is compose/prometheus-rules.yml" "$(cat "$ROOT/compose/prometheus-rules.yml")" \
    "$(readme_rules)"

it_done
