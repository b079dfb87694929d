#!/usr/bin/env bash
# The metrics endpoint (common/metrics.c, common/metrics_http.c) served by
# the stand-in worker bin/imgcache-metricsd, before it is wired into the
# worker: promtool accepts its scrapes; a real Prometheus (Debian's, on a
# free loopback port, scraping every second) finds the counter value the
# program reports; a hostile scraper (slowloris, 10,000 connections, an
# endless header) neither slows the program's loop nor blocks a normal
# scrape; /healthz goes 503 while the loop is paused, 200 again after.
# Needs no database, Redis or broker.
. "$ROOT/tests/integration/lib.sh"
PROG=70-metrics
. "$ROOT/tests/integration/lib-prom.sh"

JOBS=500
D=$TESTS_TMP/metricsd
mkdir -p "$D"
prom_require

"$BIN/imgcache-metricsd" --port-file "$D/port" --turns-file "$D/turns" --jobs "$JOBS" --stale-ms 1000 \
    > "$D/metricsd.log" 2>&1 &
MD_PID=$!
_it_track "$MD_PID"
wait_for 10 test -s "$D/port" || it_bail "imgcache-metricsd did not start" "$D/metricsd.log"
URL=http://127.0.0.1:$(cat "$D/port")

status_of() { http_status "$URL$1"; }
status_is() { [ "$(status_of "$1")" = "$2" ]; }
turns() { cat "$D/turns" 2>/dev/null || echo 0; }
turns_above() { [ "$(turns)" -gt "$1" ]; }
# Milliseconds the loop takes to turn $1 more times (from the turns file,
# which does not go through the HTTP thread); 99999 after 30 s.
ms_for_turns() {
    local start start_ms
    start=$(turns)
    start_ms=$(now_ms)
    while [ "$(turns)" -lt $((start + $1)) ]; do
        [ $(($(now_ms) - start_ms)) -lt 30000 ] || { echo 99999; return 1; }
        sleep 0.05
    done
    echo $(($(now_ms) - start_ms))
}
cached_done() {
    curl -sf --max-time 5 "$URL/metrics" > "$D/poll.txt" &&
        [ "$(sample 'imgcache_jobs_total{outcome="cached"}' "$D/poll.txt")" = "$JOBS" ]
}

# ---- (a) the endpoint and promtool
check "the loop finishes its $JOBS sample jobs" wait_for 30 cached_done
curl -sf --max-time 5 -D "$D/headers.txt" "$URL/metrics" > "$D/scrape.txt"
check "promtool check metrics accepts a scrape" promtool check metrics < "$D/scrape.txt"
check "the scrape is text format 0.0.4" grep -qi '^Content-Type: text/plain; version=0.0.4' "$D/headers.txt"
for name in imgcache_build_info process_resident_memory_bytes process_open_fds imgcache_consumer_lag \
    imgcache_download_duration_seconds; do
    check "the scrape has $name" grep -q "^# TYPE $name " "$D/scrape.txt"
done
check_eq "lag of the drained partition is 0" 0 \
    "$(sample 'imgcache_consumer_lag{topic="image-needed",partition="0"}' "$D/scrape.txt")"
check_eq "/healthz is 200 while the loop turns" 200 "$(status_of /healthz)"
check_eq "/readyz is 200 once the owner says ready" 200 "$(status_of /readyz)"
check_eq "an unknown path is 404" 404 "$(status_of /admin)"
check_eq "POST is 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -d x "$URL/metrics")"

# ---- (b) a real Prometheus scrapes it
prom_start "$D/prom" metricsd "127.0.0.1:$(cat "$D/port")"
QUERY='sum(imgcache_jobs_total{outcome="cached"})'
check "Prometheus has scraped the program" wait_for 30 promql_is 'up{job="metricsd"}' 1 ||
    log_tail "$PROM_LOG"
wait_for 30 promql_has "$QUERY"
curl -sf --max-time 5 "$URL/metrics" > "$D/scrape2.txt"
check_eq "Prometheus' $QUERY is the value the program reports" \
    "$(sample 'imgcache_jobs_total{outcome="cached"}' "$D/scrape2.txt")" "$(promql "$QUERY")"
check_eq "Prometheus sees the build info" 1 "$(promql 'count(imgcache_build_info{version!="",commit!=""})')"
prom_stop     # its CPU would blur the rates below

# ---- (c) a hostile scraper
base_ms=$(ms_for_turns 1000)
python3 "$ROOT/tests/metricsd/hostile.py" --port "$(cat "$D/port")" --seconds 20 \
    --ready "$D/hostile.ready" --report "$D/hostile.json" > "$D/hostile.log" 2>&1 &
HOSTILE_PID=$!
_it_track "$HOSTILE_PID"
wait_for 30 test -s "$D/hostile.ready" || it_bail "the hostile scraper did not start" "$D/hostile.log"
attack_ms=$(ms_for_turns 1000)
echo "# 1000 loop turns: ${base_ms} ms before the attack, ${attack_ms} ms during it"
check "the loop turns at least half as fast under attack (${attack_ms} ms against ${base_ms} ms for 1000 turns)" \
    test "$attack_ms" -le $((base_ms * 2))
scrape_s=$(curl -sf --max-time 2 -o "$D/scrape3.txt" -w '%{time_total}' "$URL/metrics")
check "a normal scrape succeeds within 2 s under attack (${scrape_s:-failed} s)" test -s "$D/scrape3.txt"
check "promtool accepts the scrape taken under attack" promtool check metrics < "$D/scrape3.txt"
check_eq "/healthz is 200 under attack" 200 "$(status_of /healthz)"
check "the hostile scraper ends by itself" wait_for 40 eval '! pid_alive "$HOSTILE_PID"'
hostile() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$D/hostile.json" "$1" 2>/dev/null ||
        echo 0
}
echo "# hostile scraper: $(cat "$D/hostile.json" 2>/dev/null)"
check "10,000 connections were opened" test "$(hostile flood_opened)" -eq 10000
check "the per-address limit closed all but 8 of them at once" test "$(hostile flood_closed_within_3s)" -ge 9992
check "the idle timeout closed the other 8" test "$(hostile flood_closed_by_server)" -eq 10000
check "slowloris kept at most 8 connections (and held some: the attack was real)" \
    test "$(hostile slow_alive_at_end)" -le 8 -a "$(hostile slow_alive_at_end)" -ge 1
check "every endless header was cut off by the server" test "$(hostile huge_cut)" -eq 4
check "the server took far less than the 64 MiB sent at it" test "$(hostile huge_max_sent)" -lt $((16 << 20))
check "the endpoint answers after the attack" curl -sf --max-time 5 -o /dev/null "$URL/metrics"

# ---- /healthz when the loop stops turning
kill -USR1 "$MD_PID"
check "/healthz goes 503 while the loop is paused" wait_for 10 status_is /healthz 503
check "its body says why" sh -c "curl -s --max-time 5 '$URL/healthz' | grep -q 'stalled: the loop has not turned for'"
paused_at=$(turns)
kill -USR2 "$MD_PID"
check "/healthz is 200 again once the loop turns" wait_for 10 status_is /healthz 200
check "the loop turns again" wait_for 10 turns_above "$paused_at"
stop_pid "$MD_PID" imgcache-metricsd
check "imgcache-metricsd stops on SIGTERM" grep -q 'event=stop turns=' "$D/metricsd.log"

it_done
