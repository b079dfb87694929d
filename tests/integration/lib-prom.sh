# tests/integration/lib-prom.sh: a real Prometheus (Debian's) and the
# metrics endpoint's helpers, for 70-metrics and 71-fleet-metrics. Source
# it after lib.sh:
#
#   . "$ROOT/tests/integration/lib.sh"
#   . "$ROOT/tests/integration/lib-prom.sh"
#
#   prom_require                  bails unless prometheus and promtool are installed
#   prom_start DIR JOB TARGET...  Prometheus on a free loopback port, data and
#                                 config in DIR, scraping each TARGET (host:port)
#                                 every second as job JOB -> PROM (its URL), PROM_PID
#   prom_stop                     stops it (its CPU would blur timing checks)
#   promql QUERY                  the first value of an instant query, or nothing
#   promql_is QUERY VALUE         0 when promql QUERY prints VALUE
#   promql_has QUERY              0 when the query has a result
#   sample 'NAME{LABELS}' FILE    the value of one sample line of a scrape,
#                                 name and labels exactly as rendered
#   http_status URL               the HTTP status of a GET (000: no answer)

. "$ROOT/compose/lib-proc.sh"   # pick_port, stop_pid, log_tail

prom_require() {
    command -v promtool > /dev/null && command -v prometheus > /dev/null ||
        it_bail "prometheus and promtool are not installed (make deps)"
}

prom_start() {
    local dir=$1 job=$2 port t targets=""
    shift 2
    for t in "$@"; do
        targets="$targets${targets:+, }'$t'"
    done
    port=$(pick_port) || it_bail "no free port for Prometheus"
    mkdir -p "$dir/data"
    cat > "$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: $job
    static_configs:
      - targets: [$targets]
EOF
    prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
        --web.listen-address="127.0.0.1:$port" --log.level=warn > "$dir/prometheus.log" 2>&1 &
    PROM_PID=$!
    _it_track "$PROM_PID"
    PROM=http://127.0.0.1:$port
    PROM_LOG=$dir/prometheus.log
    wait_for 60 curl -sf "$PROM/-/ready" || it_bail "Prometheus did not start" "$PROM_LOG"
}

prom_stop() {
    stop_pid "$PROM_PID" prometheus
}

promql() {
    curl -sf --max-time 5 --data-urlencode "query=$1" "$PROM/api/v1/query" |
        python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
}
promql_is() { [ "$(promql "$1")" = "$2" ]; }
promql_has() { [ -n "$(promql "$1")" ]; }

sample() { sed -n "s/^$(printf '%s' "$1" | sed 's/[][\.*^$]/\\&/g') \([^ ]*\)$/\1/p" "$2"; }

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1"; }
