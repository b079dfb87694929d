#!/usr/bin/env bash
# Chaos run of the worker fleet: a generated workload through Kafka to a pool
# of workers that are killed (-9) and restarted at random moments while Redis
# and PostgreSQL are paused (SIGSTOP, then SIGCONT 1-3 s later). Then one
# draining worker finishes whatever is left, and the outcome is checked:
# every published URL must end cached or as a permanent failure, and every
# cached row must point at a stored blob with the source's bytes.
#
#   bash tests/chaos/chaos.sh [options]
#
#   --events N        events published (default 3000)
#   --unique N        distinct URLs among them (default 2/3 of the events)
#   --seconds S       length of the chaos phase (default 60)
#   --seed N          random seed: workload and chaos schedule (default: time)
#   --workers N       workers in the pool (default 3)
#   --concurrency N   downloads in flight per worker (default 16)
#   --latency-ms N    media server latency per request (default 20)
#   --lease-ttl D     worker lease lifetime (default 10s; a killed holder's
#                     lease blocks its URL until it expires)
#   --drain-timeout S how long the final draining worker may take (default 300)
#   --stack-dir DIR   compose/stack.sh folder of the servers in use, to find
#                     the redis-server and PostgreSQL pids to pause
#   --no-pause        kill workers only; never pause Redis or PostgreSQL
#   --keep            keep the work folder (logs, media, stack) at the end
#
# Servers: with KAFKA_BROKERS, REDIS_URL and DATABASE_URL all set it uses
# them (a fresh broker and database are best: it runs `imgcache-producer
# migrate`, consumes with group imgcache-chaos and counts only its own URLs);
# otherwise it starts its own stack (compose/stack.sh start DIR --fast) and
# stops it on exit. The servers it pauses must be local processes: their pids
# come from the stack folder (--stack-dir, or its own stack), else from
# `redis-cli INFO` and PostgreSQL's data_directory/postmaster.pid. Paused
# servers are always resumed, also when this script is interrupted.
#
# Workload: URLs on bin/imgcache-mediaserver (127.0.0.1), each a copy of
# tests/fixtures/images/avatar.{jpg,png,gif,webp} with a unique tail; a few
# URLs answer 404 (permanent failures), a few answer 503 once (retried:
# workers run with --retry-backoff 200ms,400ms); extra events repeat random
# URLs. Events are published with kcat in bursts over the first 60% of the
# chaos phase, keyed by URL with the producer's partitioner.
#
# Output: progress on stderr ("chaos: ..."); on stdout exactly
#   events=N unique_urls=N cached=N failed=N lost=N duplicate_downloads=N
# one per line. lost counts URLs neither in cached_images nor in
# image_failures with permanent = true; duplicate_downloads counts media
# server requests beyond one per URL (two for a 503-once URL).
# Exit status: 0 all good; 1 lost > 0, a worker crashed (exited without being
# killed, or not 0 after SIGTERM), the drain failed, a cached row's blob is
# missing or has other bytes, or the events were not all published;
# 2 bad usage; 3 the setup failed.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-$ROOT/bin}
. "$ROOT/compose/lib-proc.sh"
. "$ROOT/tests/lib-fleet.sh"

EVENTS=3000
UNIQUE=
CHAOS_SECONDS=60
SEED=
NWORKERS=3
CONCURRENCY=16
LATENCY_MS=20
LEASE_TTL=10s
DRAIN_TIMEOUT=300
STACK_DIR=${CHAOS_STACK_DIR:-}
PAUSES=1
KEEP=0
GROUP=imgcache-chaos
BURSTS=10

usage() {
    sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

num() {
    case ${2:-} in ''|*[!0-9]*) echo "chaos: $1 wants a whole number, not '${2:-}'" >&2; exit 2 ;; esac
}

while [ $# -gt 0 ]; do
    case $1 in
        --events) num "$1" "${2:-}"; EVENTS=$2; shift 2 ;;
        --unique) num "$1" "${2:-}"; UNIQUE=$2; shift 2 ;;
        --seconds) num "$1" "${2:-}"; CHAOS_SECONDS=$2; shift 2 ;;
        --seed) num "$1" "${2:-}"; SEED=$2; shift 2 ;;
        --workers) num "$1" "${2:-}"; NWORKERS=$2; shift 2 ;;
        --concurrency) num "$1" "${2:-}"; CONCURRENCY=$2; shift 2 ;;
        --latency-ms) num "$1" "${2:-}"; LATENCY_MS=$2; shift 2 ;;
        --lease-ttl) LEASE_TTL=${2:-}; shift 2 ;;
        --drain-timeout) num "$1" "${2:-}"; DRAIN_TIMEOUT=$2; shift 2 ;;
        --stack-dir) STACK_DIR=${2:-}; shift 2 ;;
        --no-pause) PAUSES=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage ;;
        *) echo "chaos: unknown argument '$1'" >&2; usage ;;
    esac
done
[ -n "$SEED" ] || SEED=$(( $(date +%s) % 100000 ))
[ -n "$UNIQUE" ] || UNIQUE=$(( EVENTS * 2 / 3 ))
[ "$UNIQUE" -ge 1 ] && [ "$UNIQUE" -le "$EVENTS" ] || { echo "chaos: --unique must be 1..--events" >&2; exit 2; }
[ "$NWORKERS" -ge 1 ] || { echo "chaos: --workers must be at least 1" >&2; exit 2; }
# a few of each fault kind: 1 in 200 URLs, at least 3, at most 15 (the
# breaker opens after 20 consecutive retryable failures to one host)
NFAULT=$(( UNIQUE / 200 ))
[ $NFAULT -lt 3 ] && NFAULT=3
[ $NFAULT -gt 15 ] && NFAULT=15
[ $((2 * NFAULT)) -lt "$UNIQUE" ] || NFAULT=0
N404=$NFAULT
N503=$NFAULT

# ---- helpers --------------------------------------------------------------------

# (compose/lib-proc.sh: now_ms, pid_alive, pid_is, descendants, wait_pid,
# read_pid; tests/lib-fleet.sh: worker_spawn, media_*)
T0=$(now_ms)
# timestamped, unlike lib-proc.sh's
say() {
    local ms=$(( $(now_ms) - T0 ))
    printf 'chaos: +%d.%ds %s\n' $((ms / 1000)) $(((ms % 1000) / 100)) "$*" >&2
}
die() { say "error: $*"; exit 3; }

# R = a random integer in [lo, hi] from bash's seeded RANDOM (never call it
# in $(...): a subshell's draws do not advance this shell's sequence).
R=0
rnd() {
    R=$(( $1 + (RANDOM * 32768 + RANDOM) % ($2 - $1 + 1) ))
}

# ---- work folder, cleanup ---------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgcache-chaos.XXXXXX") || exit 3
chmod 755 "$WORK"    # PostgreSQL runs as `postgres` when we are root
mkdir -p "$WORK/logs" "$WORK/media" "$WORK/images"
OWN_STACK=0
MEDIA_PID=
PAUSED_PIDS_FILE=$WORK/paused.pids
: > "$PAUSED_PIDS_FILE"
declare -a WPID=() WNAME=() WKILLED=() WRESTART_AT=()
declare -a PAUSERS=()
DRAIN_PID=
CLEANED=0

resume_all() {
    local p
    # shellcheck disable=SC2013
    for p in $(sort -u "$PAUSED_PIDS_FILE" 2>/dev/null); do
        kill -CONT "$p" 2>/dev/null
    done
}

cleanup() {
    local rc=$? p i
    [ "$CLEANED" = 1 ] && return
    CLEANED=1
    trap - EXIT INT TERM HUP
    for p in "${PAUSERS[@]}"; do
        pid_alive "$p" && kill -TERM "$p" 2>/dev/null
    done
    resume_all
    for i in "${!WPID[@]}"; do
        pid_alive "${WPID[$i]}" && kill -KILL "${WPID[$i]}" 2>/dev/null
    done
    pid_alive "$DRAIN_PID" && kill -KILL "$DRAIN_PID" 2>/dev/null
    pid_alive "$MEDIA_PID" && kill -TERM "$MEDIA_PID" 2>/dev/null
    wait 2>/dev/null
    resume_all
    if [ "$OWN_STACK" = 1 ]; then
        sh "$ROOT/compose/stack.sh" stop "$WORK/stack" > /dev/null 2>&1
    fi
    if [ "$KEEP" = 1 ]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
exit_trap cleanup

for b in imgcache-worker imgcache-producer imgcache-mediaserver; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is not built (run: make)"
done
for c in kcat psql redis-cli curl sha256sum awk; do
    command -v "$c" > /dev/null || die "$c is not installed (run: make deps)"
done

say "seed=$SEED events=$EVENTS unique_urls=$UNIQUE seconds=$CHAOS_SECONDS workers=$NWORKERS 404=$N404 503_once=$N503 work=$WORK"

# ---- servers ----------------------------------------------------------------------

if [ -z "${KAFKA_BROKERS:-}" ] || [ -z "${REDIS_URL:-}" ] || [ -z "${DATABASE_URL:-}" ]; then
    say "starting a stack in $WORK/stack"
    OWN_STACK=1
    sh "$ROOT/compose/stack.sh" start "$WORK/stack" --fast > "$WORK/stack.out" 2> "$WORK/logs/stack.log" ||
        { cat "$WORK/logs/stack.log" >&2; die "the stack did not start"; }
    # shellcheck disable=SC1091
    . "$WORK/stack/stack.env"
    STACK_DIR=$WORK/stack
fi
export KAFKA_BROKERS REDIS_URL DATABASE_URL

REDIS_PID=
PG_DATA=
if [ "$PAUSES" = 1 ]; then
    if [ -n "$STACK_DIR" ] && [ -s "$STACK_DIR/redis.pid" ]; then
        REDIS_PID=$(read_pid "$STACK_DIR/redis.pid")
    else
        REDIS_PID=$(redis-cli -u "$REDIS_URL" INFO server 2>/dev/null | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
    fi
    pid_is "$REDIS_PID" redis-server || { say "warning: no local redis-server pid found: Redis is not paused"; REDIS_PID=; }
    if [ -n "$STACK_DIR" ] && [ -d "$STACK_DIR/pg" ]; then
        PG_DATA=$STACK_DIR/pg
    else
        PG_DATA=$(psql -XAtq "$DATABASE_URL" -c 'SHOW data_directory' 2>/dev/null)
    fi
    PG_PID=
    [ -n "$PG_DATA" ] && PG_PID=$(read_pid "$PG_DATA/postmaster.pid")
    pid_is "$PG_PID" postgres || { say "warning: no local PostgreSQL postmaster found: PostgreSQL is not paused"; PG_DATA=; }
fi

"$BIN/imgcache-producer" migrate > "$WORK/logs/migrate.log" 2>&1 ||
    { tail -n 5 "$WORK/logs/migrate.log" >&2; die "imgcache-producer migrate failed"; }

export IMGCACHE_STORAGE_DIR=$WORK/images
export IMGCACHE_PUBLIC_URL=http://cdn.chaos.test/images
export IMGCACHE_LOG_LEVEL=${IMGCACHE_LOG_LEVEL:-info}
unset IMGCACHE_GROUP IMGCACHE_TOPIC IMGCACHE_WORKER_ID

# ---- workload ---------------------------------------------------------------------

RUN=chaos-$SEED-$$
mkdir -p "$WORK/media/$RUN"
media_start "$WORK/media.out" "$WORK/logs/media.log" --root "$WORK/media" --latency-ms "$LATENCY_MS" ||
    die "the media server did not start"
# workers trust scheme + host + port: the media server's own port only
export IMGCACHE_ALLOW_HOSTS=${MEDIA_URL#http://}
case $MEDIA_URL in http://127.*) ;; *) die "the media server is not on 127.0.0.0/8: $MEDIA_URL" ;; esac

# urls.tsv: id, kind (ok, 404, 503), path; events.txt: URL ids in publish order
awk -v seed="$SEED" -v n="$EVENTS" -v u="$UNIQUE" -v n404="$N404" -v n503="$N503" \
    -v run="$RUN" -v urls="$WORK/urls.tsv" -v events="$WORK/events.txt" '
BEGIN {
    srand(seed)
    split("jpg png gif webp", ext, " ")
    for (i = 1; i <= u; i++) kind[i] = "ok"
    for (k = 0; k < n404 + n503; ) {
        i = 1 + int(rand() * u)
        if (kind[i] != "ok") continue
        kind[i] = (k < n404) ? "404" : "503"
        k++
    }
    for (i = 1; i <= u; i++)
        printf "%d\t%s\t/%s/%d.%s\n", i, kind[i], run, i, ext[1 + i % 4] > urls
    # every URL once, then repeats of random URLs (a few URLs are popular)
    for (e = 1; e <= u; e++) ev[e] = e
    for (; e <= n; e++) {
        if (rand() < 0.2) ev[e] = 1 + int(rand() * (u < 20 ? u : 20))
        else ev[e] = 1 + int(rand() * u)
    }
    for (e = n; e > 1; e--) {    # Fisher-Yates
        j = 1 + int(rand() * e)
        t = ev[e]; ev[e] = ev[j]; ev[j] = t
    }
    for (e = 1; e <= n; e++) print ev[e] > events
}' || die "workload generation failed"

while IFS=$'\t' read -r id kind path; do
    [ "$kind" = 404 ] && continue
    media_image "$WORK/media$path" "imgcache-chaos-$RUN-$id"
done < "$WORK/urls.tsv"
# the expected content of every URL: url, kind, sha256 (empty for a 404)
( cd "$WORK/media" && find "$RUN" -type f -print0 | xargs -0 sha256sum ) > "$WORK/sums.txt" ||
    die "cannot hash the media files"
awk -v base="$MEDIA_URL" 'NR == FNR { sha["/" $2] = $1; next }
    { printf "%s\t%s\t%s\n", base $3, $2, ($2 == "404" ? "\\N" : sha[$3]) }' \
    "$WORK/sums.txt" "$WORK/urls.tsv" > "$WORK/expected.tsv"
[ "$(grep -c . "$WORK/expected.tsv")" = "$UNIQUE" ] || die "expected.tsv is incomplete"

while IFS=$'\t' read -r id kind path; do
    [ "$kind" = 503 ] || continue
    media_fault "$path" status status=503 count=1 || die "cannot set a fault on $path"
done < "$WORK/urls.tsv"

# bursts/K.tsv: "url<TAB>event json" lines
mkdir -p "$WORK/bursts"
produced_at=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
awk -v base="$MEDIA_URL" -v nb="$BURSTS" -v n="$EVENTS" -v dir="$WORK/bursts" -v at="$produced_at" '
NR == FNR { path[$1] = $3; next }
{
    e = FNR
    b = int((e - 1) * nb / n)
    url = base path[$1]
    printf "%s\t{\"v\":1,\"source_url\":\"%s\",\"chat_id\":\"chaos-chat-%d\",\"account_id\":\"chaos\",\"reason\":\"import\",\"produced_at\":\"%s\"}\n", \
        url, url, e, at > (dir "/" b ".tsv")
}' "$WORK/urls.tsv" "$WORK/events.txt" || die "cannot write the event bursts"
say "workload ready: $(find "$WORK/media/$RUN" -type f | wc -l) files on $MEDIA_URL"

PUBLISHED=0
PUBLISH_FAILED=0
publish_burst() {
    local f=$WORK/bursts/$1.tsv n
    [ -s "$f" ] || return 0
    n=$(grep -c . "$f")
    if kcat -b "$KAFKA_BROKERS" -P -t image-needed -K $'\t' -X partitioner=murmur2_random \
            -X enable.idempotence=true < "$f" > "$WORK/logs/kcat-$1.log" 2>&1; then
        PUBLISHED=$((PUBLISHED + n))
        say "published burst $1: $n events"
    else
        PUBLISH_FAILED=$((PUBLISH_FAILED + n))
        say "error: burst $1 ($n events) not published: $(tail -n 1 "$WORK/logs/kcat-$1.log")"
    fi
}

# ---- workers ------------------------------------------------------------------------

GEN=0
KILLS=0
CRASHES=0
RESTARTS=0
PAUSES_REDIS=0
PAUSES_PG=0

start_worker() {
    local slot=$1 name
    GEN=$((GEN + 1))
    name=w$slot.$GEN
    worker_spawn "$name" "$WORK/logs/$name.log" --retry-backoff 200ms,400ms --lease-ttl "$LEASE_TTL" \
        --grace 5s --concurrency "$CONCURRENCY" --group "$GROUP"
    WPID[$slot]=$WORKER_PID
    WNAME[$slot]=$name
    WKILLED[$slot]=0
    WRESTART_AT[$slot]=0
}

# Reports a worker that misbehaved (the caller counts it) with its log's end.
crashed() {
    say "CRASH: worker $1 $2; last lines of its log:"
    tail -n 15 "$WORK/logs/$1.log" | sed 's/^/chaos:     /' >&2
    cp "$WORK/logs/$1.log" "$WORK/logs/CRASHED-$1.log" 2>/dev/null
}

# stop_failed NAME PID STATUS WHEN_124 WHEN: a worker that did not end as
# told: still running (wait_pid's 124: killed now) or exited STATUS, not 0.
stop_failed() {
    if [ "$3" = 124 ]; then
        kill -KILL "$2" 2>/dev/null
        wait "$2" 2>/dev/null
        crashed "$1" "still running $4 (killed)"
    else
        crashed "$1" "exited $3${5:+ $5} (expected 0)"
    fi
}

# A worker that ended without being killed crashed: record it, restart it.
check_workers() {
    local i rc
    for i in "${!WPID[@]}"; do
        [ -n "${WPID[$i]}" ] || continue
        pid_alive "${WPID[$i]}" && continue
        wait "${WPID[$i]}" 2>/dev/null
        rc=$?
        CRASHES=$((CRASHES + 1))
        crashed "${WNAME[$i]}" "exited by itself with status $rc (pid ${WPID[$i]})"
        WPID[$i]=
        WRESTART_AT[$i]=$(( $(now_ms) + 500 ))
    done
}

kill_worker() {
    local slot=$1 pid=${WPID[$1]} rc
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=$?
    KILLS=$((KILLS + 1))
    if [ $rc -ne 137 ]; then
        CRASHES=$((CRASHES + 1))
        crashed "${WNAME[$slot]}" "had already exited with status $rc before kill -9"
    fi
    say "kill -9 ${WNAME[$slot]} (pid $pid)"
    WPID[$slot]=
    rnd 0 3000
    WRESTART_AT[$slot]=$(( $(now_ms) + R ))
}

restart_due() {
    local i now
    now=$(now_ms)
    for i in $(seq 1 "$NWORKERS"); do
        if [ -z "${WPID[$i]:-}" ] && [ "${WRESTART_AT[$i]:-0}" -le "$now" ]; then
            start_worker "$i"
            RESTARTS=$((RESTARTS + 1))
            say "restarted slot $i as ${WNAME[$i]} (pid ${WPID[$i]})"
        fi
    done
}

# ---- pauses -------------------------------------------------------------------------

REDIS_BUSY_UNTIL=0
PG_BUSY_UNTIL=0

# pause_pids MS PID...: SIGSTOP now, SIGCONT after MS, in the background;
# the pids are recorded so that cleanup resumes them whatever happens.
pause_pids() {
    local ms=$1
    shift
    printf '%s\n' "$@" >> "$PAUSED_PIDS_FILE"
    (
        trap 'kill -CONT "$@" 2>/dev/null' EXIT
        trap 'exit 0' TERM INT HUP
        kill -STOP "$@" 2>/dev/null
        sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
    ) &
    PAUSERS+=($!)
}

pause_redis() {
    local ms
    rnd 1000 3000
    ms=$R
    pid_is "$REDIS_PID" redis-server || return 0
    pause_pids "$ms" "$REDIS_PID"
    PAUSES_REDIS=$((PAUSES_REDIS + 1))
    REDIS_BUSY_UNTIL=$(( $(now_ms) + ms + 200 ))
    say "pause redis-server for ${ms}ms"
}

pause_pg() {
    local ms pm pids
    rnd 1000 3000
    ms=$R
    pm=$(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null | tr -dc '0-9')
    pid_is "$pm" postgres || return 0
    # the postmaster first (no new backends), then every server process
    pids=$(descendants "$pm" | tr '\n' ' ')
    # shellcheck disable=SC2086
    pause_pids "$ms" "$pm" $pids
    PAUSES_PG=$((PAUSES_PG + 1))
    PG_BUSY_UNTIL=$(( $(now_ms) + ms + 200 ))
    say "pause PostgreSQL (postmaster $pm and $(echo $pids | wc -w) server processes) for ${ms}ms"
}

# ---- the chaos phase ------------------------------------------------------------------

RANDOM=$SEED
for i in $(seq 1 "$NWORKERS"); do
    start_worker "$i"
done
say "started $NWORKERS workers: ${WNAME[*]}"

start=$(now_ms)
end=$(( start + CHAOS_SECONDS * 1000 ))
publish_window=$(( CHAOS_SECONDS * 600 ))     # 60% of the phase, in ms
next_burst=0
rnd 1000 3000
next_action=$(( start + R ))
while :; do
    now=$(now_ms)
    while [ $next_burst -lt $BURSTS ] && [ $(( start + next_burst * publish_window / BURSTS )) -le "$now" ]; do
        publish_burst "$next_burst"
        next_burst=$((next_burst + 1))
    done
    [ "$now" -lt "$end" ] || break
    check_workers
    restart_due
    if [ "$now" -ge "$next_action" ]; then
        rnd 0 9
        choice=$R
        if [ "$PAUSES" = 0 ] || [ -z "$REDIS_PID$PG_DATA" ]; then
            choice=0
        fi
        if [ $choice -le 3 ]; then
            live=()
            for i in $(seq 1 "$NWORKERS"); do
                [ -n "${WPID[$i]:-}" ] && live+=("$i")
            done
            if [ ${#live[@]} -gt 0 ]; then
                rnd 0 $((${#live[@]} - 1))
                kill_worker "${live[$R]}"
            fi
        elif [ $choice -le 6 ] && [ -n "$REDIS_PID" ] && [ "$now" -ge "$REDIS_BUSY_UNTIL" ]; then
            pause_redis
        elif [ -n "$PG_DATA" ] && [ "$now" -ge "$PG_BUSY_UNTIL" ]; then
            pause_pg
        fi
        rnd 500 3000
        next_action=$(( $(now_ms) + R ))
    fi
    sleep 0.1
done

say "chaos over: $KILLS kills, $RESTARTS restarts, $PAUSES_REDIS Redis pauses, $PAUSES_PG PostgreSQL pauses"
for p in "${PAUSERS[@]}"; do
    wait "$p" 2>/dev/null
done
PAUSERS=()
resume_all
while [ $next_burst -lt $BURSTS ]; do
    publish_burst "$next_burst"
    next_burst=$((next_burst + 1))
done
check_workers

# ---- stop the pool, drain ---------------------------------------------------------------

BAD_STOPS=0
for i in $(seq 1 "$NWORKERS"); do
    [ -n "${WPID[$i]:-}" ] && kill -TERM "${WPID[$i]}" 2>/dev/null
done
for i in $(seq 1 "$NWORKERS"); do
    pid=${WPID[$i]:-}
    [ -n "$pid" ] || continue
    wait_pid "$pid" 30
    rc=$?
    if [ $rc -ne 0 ]; then
        BAD_STOPS=$((BAD_STOPS + 1))
        stop_failed "${WNAME[$i]}" "$pid" $rc "30 s after SIGTERM" "after SIGTERM"
    fi
    WPID[$i]=
done
say "pool stopped; draining with one worker"

drain_start=$(now_ms)
worker_spawn drain "$WORK/logs/drain.log" --retry-backoff 200ms,400ms --lease-ttl "$LEASE_TTL" \
    --concurrency "$CONCURRENCY" --group "$GROUP" --drain --drain-wait 60s
DRAIN_PID=$WORKER_PID
DRAIN_OK=1
wait_pid "$DRAIN_PID" "$DRAIN_TIMEOUT"
rc=$?
if [ $rc -ne 0 ]; then
    DRAIN_OK=0
    stop_failed drain "$DRAIN_PID" $rc "after ${DRAIN_TIMEOUT}s" ""
fi
DRAIN_PID=
DRAIN_SECONDS=$(( ($(now_ms) - drain_start) / 1000 ))
say "drain finished in ${DRAIN_SECONDS}s: $(grep -o 'event=summary.*' "$WORK/logs/drain.log" | tail -n 1)"

# ---- verify ---------------------------------------------------------------------------

# events really in the topic for this run (what kcat reported is not proof)
kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%k\n' 2>/dev/null > "$WORK/topic-keys.txt"
EVENTS_SEEN=$(grep -c -F "/$RUN/" "$WORK/topic-keys.txt")

psql -XAtq -v ON_ERROR_STOP=1 "$DATABASE_URL" > "$WORK/verify.out" 2> "$WORK/logs/verify.log" <<EOF
CREATE TEMP TABLE chaos_urls (url text PRIMARY KEY, kind text NOT NULL, sha text);
\copy chaos_urls FROM '$WORK/expected.tsv'
SELECT 'cached=' || count(*) FROM chaos_urls u JOIN cached_images c ON c.source_url = u.url;
SELECT 'failed=' || count(*) FROM chaos_urls u
 WHERE NOT EXISTS (SELECT 1 FROM cached_images c WHERE c.source_url = u.url)
   AND EXISTS (SELECT 1 FROM image_failures f WHERE f.source_url = u.url AND f.permanent);
SELECT 'lost=' || count(*) FROM chaos_urls u
 WHERE NOT EXISTS (SELECT 1 FROM cached_images c WHERE c.source_url = u.url)
   AND NOT EXISTS (SELECT 1 FROM image_failures f WHERE f.source_url = u.url AND f.permanent);
SELECT 'lost_url=' || u.url || ' kind=' || u.kind || ' failure=' ||
       coalesce((SELECT f.error_class || '/permanent=' || f.permanent || '/attempts=' || f.attempts
                 FROM image_failures f WHERE f.source_url = u.url), 'none')
  FROM chaos_urls u
 WHERE NOT EXISTS (SELECT 1 FROM cached_images c WHERE c.source_url = u.url)
   AND NOT EXISTS (SELECT 1 FROM image_failures f WHERE f.source_url = u.url AND f.permanent)
 ORDER BY u.url LIMIT 20;
SELECT 'wrong_sha=' || count(*) FROM chaos_urls u JOIN cached_images c ON c.source_url = u.url
 WHERE u.sha IS NULL OR c.sha256 <> u.sha;
SELECT 'no_blob_row=' || count(*) FROM chaos_urls u JOIN cached_images c ON c.source_url = u.url
 WHERE NOT EXISTS (SELECT 1 FROM image_blobs b WHERE b.sha256 = c.sha256);
SELECT 'unexpected_failures=' || count(*) FROM chaos_urls u JOIN image_failures f ON f.source_url = u.url
 WHERE f.permanent AND u.kind <> '404'
   AND NOT EXISTS (SELECT 1 FROM cached_images c WHERE c.source_url = u.url);
SELECT 'failure_classes=' || coalesce(string_agg(x, ','), '') FROM (
  SELECT f.error_class || ':' || count(*) AS x FROM chaos_urls u JOIN image_failures f ON f.source_url = u.url
   WHERE f.permanent GROUP BY f.error_class ORDER BY 1) s;
SELECT 'blob ' || b.sha256 || ' ' || b.storage_key FROM chaos_urls u
  JOIN cached_images c ON c.source_url = u.url JOIN image_blobs b ON b.sha256 = c.sha256
 GROUP BY b.sha256, b.storage_key;
EOF
if [ $? -ne 0 ]; then
    cat "$WORK/logs/verify.log" >&2
    die "the verification queries failed"
fi
val() { sed -n "s/^$1=//p" "$WORK/verify.out" | head -n 1; }
CACHED=$(val cached)
FAILED=$(val failed)
LOST=$(val lost)
WRONG_SHA=$(val wrong_sha)
NO_BLOB_ROW=$(val no_blob_row)

# every blob a cached row points at: the file exists and has those bytes
awk '$1 == "blob" { printf "%s  %s/%s\n", $2, dir, $3 }' dir="$IMGCACHE_STORAGE_DIR" \
    "$WORK/verify.out" > "$WORK/blobs.sha256"
BLOBS=$(grep -c . "$WORK/blobs.sha256")
BAD_FILES=0
if [ "$BLOBS" -gt 0 ]; then
    sha256sum -c --quiet "$WORK/blobs.sha256" > "$WORK/blobs.check" 2>&1
    BAD_FILES=$(grep -c ': FAILED' "$WORK/blobs.check")
fi
BAD_BLOBS=$(( WRONG_SHA + NO_BLOB_ROW + BAD_FILES ))
TMP_LEFT=$(find "$IMGCACHE_STORAGE_DIR/.tmp" -type f 2>/dev/null | wc -l)

# media requests beyond one per URL (two for a 503-once URL)
media_counts > "$WORK/media-counts.tsv" || die "cannot read the media server's counters"
read -r DUPLICATES NEVER_REQUESTED < <(awk -F'\t' '
    NR == FNR { want[$3] = ($2 == "503") ? 2 : 1; next }
    { got[$1] = $2 }
    END {
        d = 0; never = 0
        for (p in got) if (p in want && got[p] > want[p]) d += got[p] - want[p]
        for (p in want) if (!(p in got)) never++
        print d, never
    }' "$WORK/urls.tsv" "$WORK/media-counts.tsv")

say "summary: kills=$KILLS restarts=$RESTARTS pauses_redis=$PAUSES_REDIS pauses_pg=$PAUSES_PG" \
    "crashes=$CRASHES bad_stops=$BAD_STOPS drain_ok=$DRAIN_OK drain_seconds=$DRAIN_SECONDS"
say "summary: published=$PUBLISHED publish_failed=$PUBLISH_FAILED events_in_topic=$EVENTS_SEEN" \
    "expected_failed=$N404 $(val unexpected_failures | sed 's/^/unexpected_failures=/')" \
    "$(grep '^failure_classes=' "$WORK/verify.out")"
say "summary: blobs=$BLOBS bad_blobs=$BAD_BLOBS (wrong_sha=$WRONG_SHA no_blob_row=$NO_BLOB_ROW bad_files=$BAD_FILES)" \
    "tmp_files_left=$TMP_LEFT never_requested=$NEVER_REQUESTED"
grep '^lost_url=' "$WORK/verify.out" | sed 's/^/chaos:   /' >&2
[ "$BAD_FILES" -gt 0 ] && head -n 10 "$WORK/blobs.check" | sed 's/^/chaos:   /' >&2

echo "events=$EVENTS_SEEN"
echo "unique_urls=$UNIQUE"
echo "cached=$CACHED"
echo "failed=$FAILED"
echo "lost=$LOST"
echo "duplicate_downloads=$DUPLICATES"

status=0
[ "$LOST" -eq 0 ] || { say "FAIL: $LOST URLs lost"; status=1; }
[ "$CRASHES" -eq 0 ] || { say "FAIL: $CRASHES workers exited by themselves during the chaos (logs: CRASHED-*.log)"; status=1; }
[ "$BAD_STOPS" -eq 0 ] || { say "FAIL: $BAD_STOPS workers did not exit 0 after SIGTERM (logs: CRASHED-*.log)"; status=1; }
[ "$DRAIN_OK" = 1 ] || { say "FAIL: the draining worker did not finish cleanly"; status=1; }
[ "$BAD_BLOBS" -eq 0 ] || { say "FAIL: $BAD_BLOBS cached rows point at a missing or wrong blob"; status=1; }
if [ "$PUBLISH_FAILED" -gt 0 ] || [ "$EVENTS_SEEN" -ne "$EVENTS" ]; then
    say "FAIL: $EVENTS events generated, $EVENTS_SEEN in the topic"
    status=1
fi
if [ $status -ne 0 ] && [ "$KEEP" = 0 ]; then
    KEEP=1    # the logs are the evidence
fi
exit $status
