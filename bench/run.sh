#!/usr/bin/env bash
# bench/run.sh: the imgcache benchmark (issue 4). It asserts nothing: it
# prints one table and writes bench/results.json.
#
#   bench/run.sh [--quick] [--images N] [--dup K] [--latency-ms L]
#                [--concurrency C] [--workers "1 2 4"] [--seed S]
#                [--profile | --no-profile | --profile-only] [--keep]
#                [--fleet-only] [--fetch-wait MS] [--worker-bin PATH]
#                [--renderer-only]
#                [--renditions-only | --no-renditions]
#
# The broker: Apache Kafka (IMGCACHE_BROKER=kafka, the default;
# compose/kafka.sh, a fresh one-node broker per configuration, its data in
# the work folder, topics made by `imgcache-producer topics`) or, with
# IMGCACHE_BROKER=dev, the dev broker (librdkafka's mock cluster, for a
# machine without Java). The results name the one that ran.
#
# What it does, all in its own folder under /tmp (removed at exit; --keep
# leaves it), with every process it starts stopped at exit:
#   1. generates N distinct images (seed S; sizes uniform in 5-200 KiB;
#      JPEG/PNG/WebP = the fixtures in tests/fixtures/images + filler) and K
#      chat files, each referencing every image once (so each URL is in K
#      chats);
#   2. serves them from bin/imgcache-mediaserver on 127.0.0.1 (--latency-ms);
#   3. baseline: curl --parallel --parallel-max C over the same URLs (a
#      warm-up run, not counted, then 3 runs: the median counts);
#   4. fleet, for each worker count, in "live" mode (as in production: the
#      fleet is up when the sync happens): fresh database, Redis (FLUSHALL),
#      broker (32 partitions per topic) and storage folder; W workers
#      started (no --drain) and left to settle (every worker assigned, all
#      64 partitions of image-needed and image-needed-retry held); then ONE
#      import of the K chat files concatenated (K x N chats; the producer
#      announces a URL once per run, so N events); when every image is a
#      row (or a failure), SIGTERM to the workers. End to end = the
#      import's start -> the last row committed (max cached_at); also the
#      import's own time (overlapping the downloads), first -> last commit,
#      per-event latency produced_at -> cached_at, downloads per URL, peak
#      RSS and CPU per worker;
#   5. a "backlog" run for the dedup target: the largest worker count, K
#      imports first (every URL in K events, all queued), then the workers
#      with --drain (they exit once caught up); downloads per URL;
#   6. then, live: 50 ms latency with concurrency 128 and one worker;
#      concurrency 256 with 200 KiB images (peak RSS), live and again in
#      backlog mode (a full prefetch queue); in backlog mode, as
#      the replays need its topic: a run of 5 x N events (100,000 by default)
#      sampling RSS over time, then replays of that topic under a new group
#      (default prefetch and a 1 MiB one); live-latency runs (a worker
#      already running, chats fed at ~500/s). The full run adds a live run
#      with 1 GiB of unrelated dirty data written just before the import, and
#      the profile: callgrind (perf record -g instead when hardware
#      counters work), perf cpu-clock by library, the event loop's off-CPU
#      time by stack (perf sched_switch) and its system calls (strace).
#      --quick: 2,000 (600 x 200 KiB) images, workers "1 2" (backlog run: 2),
#      1 curl run per baseline instead of 3, no dirty-data run, no profile.
# --profile-only runs just step 6's profile (printed, results.json untouched).
# --fleet-only runs the first baseline and step 4's live fleets, prints their
# lines and stops (results.json untouched): for comparing two builds.
# renditions: bench/renditions.sh (its header says how), after the fleets:
# common/rendition.c's renditions per core side by side with Debian's
# vipsthumbnail, same images, sizes and format, alternating (--quick: 40
# images, 2 rounds). --renditions-only runs just that (results.json untouched).
# --fetch-wait MS gives the live fleets -X fetch.wait.max.ms=MS (default: the
# broker's own 500 ms on Kafka; 10 on the dev broker, whose empty fetch waits
# the whole time even when data arrives).
# --renderer-only runs the first baseline and the renderer pair (below), prints
# their lines and stops (results.json untouched). The full run has the pair
# after step 4: one worker live without, then with imgcache-renderer beside
# it (issue 16: the download rate with renditions being made on the same
# cores), side by side.
# --worker-bin PATH runs that imgcache-worker (another build) instead of
# bin/imgcache-worker; the producer and media server stay this tree's.
# `make bench` builds first; run directly, it uses whatever is in bin/.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=bench/run.sh
# pid_alive, descendants, stop_tree, wait_gone, wait_for, read_pid...
. "$ROOT/compose/lib-proc.sh"
# worker_spawn, devbroker_start, fresh_database, q, media_start, media_total...
. "$ROOT/tests/lib-fleet.sh"
START_EPOCH=$EPOCHREALTIME

# ---- options -------------------------------------------------------------------
QUICK=0
IMAGES=
DUP=3
LAT=0
CONC=64
WORKERS=
SEED=42
PROFILE=auto
KEEP=0
PARTITIONS=32
FLEET_ONLY=0
RENDERER_ONLY=0
RENDITIONS=yes
FETCH_WAIT=
WORKER_BIN=$ROOT/bin/imgcache-worker
BROKER_KIND=${IMGCACHE_BROKER:-kafka}

usage() {
    sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --images) IMAGES=${2:?}; shift ;;
        --dup) DUP=${2:?}; shift ;;
        --latency-ms) LAT=${2:?}; shift ;;
        --concurrency) CONC=${2:?}; shift ;;
        --workers) WORKERS=${2:?}; shift ;;
        --seed) SEED=${2:?}; shift ;;
        --profile) PROFILE=yes ;;
        --profile-only) PROFILE=only ;;
        --no-profile) PROFILE=no ;;
        --keep) KEEP=1 ;;
        --fleet-only) FLEET_ONLY=1 ;;
        --renderer-only) RENDERER_ONLY=1 ;;
        --renditions-only) RENDITIONS=only ;;
        --no-renditions) RENDITIONS=no ;;
        --fetch-wait) FETCH_WAIT=${2:?}; shift ;;
        --worker-bin) WORKER_BIN=${2:?}; shift ;;
        -h|--help) usage ;;
        *) echo "$PROG: unknown option '$1'" >&2; usage ;;
    esac
    shift
done
for v in IMAGES:--images DUP:--dup LAT:--latency-ms CONC:--concurrency SEED:--seed FETCH_WAIT:--fetch-wait; do
    var=${v%%:*}
    val=${!var}
    [ -z "$val" ] || [[ $val =~ ^[0-9]+$ ]] || { echo "$PROG: ${v#*:} must be a number (got '$val')" >&2; exit 2; }
done
case $BROKER_KIND in
    kafka|dev) ;;
    *) echo "$PROG: IMGCACHE_BROKER is '$BROKER_KIND'; use kafka (Apache Kafka, the default) or dev (the mock cluster)" >&2; exit 2 ;;
esac
[ -x "$WORKER_BIN" ] || { echo "$PROG: --worker-bin '$WORKER_BIN' is not an executable file" >&2; exit 2; }
# The mock holds an empty fetch for the whole fetch.wait.max.ms (500 ms by
# default) even when data arrives meanwhile, so an idle worker saw the first
# events late; a real broker answers as soon as data arrives.
[ -z "$FETCH_WAIT" ] && [ "$BROKER_KIND" = dev ] && FETCH_WAIT=10
LIVE_FLEET_ARGS=()
[ -n "$FETCH_WAIT" ] && LIVE_FLEET_ARGS=(-X "fetch.wait.max.ms=$FETCH_WAIT")
if [ "$QUICK" = 1 ]; then
    : "${IMAGES:=2000}"
    : "${WORKERS:=1 2}"
    RSS256_IMAGES=600
    LIVE_IMAGES=1000
    BASE_REPS=1
    [ "$PROFILE" = auto ] && PROFILE=no
else
    : "${IMAGES:=20000}"
    : "${WORKERS:=1 2 4}"
    RSS256_IMAGES=5000
    LIVE_IMAGES=5000
    BASE_REPS=3
    [ "$PROFILE" = auto ] && PROFILE=yes
fi
[ "$IMAGES" -ge 10 ] && [ "$DUP" -ge 1 ] && [ "$CONC" -ge 1 ] || { echo "$PROG: --images >= 10, --dup >= 1, --concurrency >= 1" >&2; exit 2; }
LONG_DUP=5                      # 5 x 20,000 = the 100,000-event run
LONG_EVENTS=$((IMAGES * LONG_DUP))
PROFILE_IMAGES=400

if [ "$RENDITIONS" = only ]; then
    if [ "$QUICK" = 1 ]; then exec bash "$ROOT/bench/renditions.sh" --images 40 --rounds 2; fi
    exec bash "$ROOT/bench/renditions.sh"
fi

# ---- output helpers ------------------------------------------------------------
elapsed() { awk -v a="$START_EPOCH" -v b="$EPOCHREALTIME" 'BEGIN { s = b - a; printf "%02d:%02d", s / 60, s % 60 }'; }
say() { echo "[$(elapsed)] $*"; }
warn() { echo "[$(elapsed)] WARNING: $*"; WARNINGS+=("$*"); }
die() { echo "$PROG: $*" >&2; exit 1; }
WARNINGS=()

# calc EXPR [DECIMALS]: floating point with awk; variables as name=value pairs.
calc() {
    local expr=$1 dec=${2:-2}
    shift
    [ $# -gt 0 ] && shift
    awk "$@" "BEGIN { v = ($expr); printf \"%.${dec}f\", v }" 2>/dev/null || echo null
}
# JSON number or null
jn() { case ${1:-} in ''|null|nan|-nan|inf|-inf) echo null ;; *) echo "$1" ;; esac; }
# JSON string (the values here never hold control characters)
js() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

# ---- prerequisites ---------------------------------------------------------------
need_pkg() { # command package
    command -v "$1" > /dev/null 2>&1 || [ -x "$1" ] && return 0
    say "installing Debian package $2 (for $1)"
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" > /dev/null ||
        { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q > /dev/null &&
          $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" > /dev/null; } ||
        die "cannot install $2"
}
need_pkg /usr/bin/time time
need_pkg curl curl
need_pkg kcat kcat
need_pkg psql postgresql-client
need_pkg redis-cli redis-server
need_pkg cc build-essential

for b in imgcache-producer imgcache-worker imgcache-devbroker imgcache-mediaserver; do
    [ -x "$ROOT/bin/$b" ] || die "bin/$b is missing: run make bench (or make all)"
done
if [ "$BROKER_KIND" = kafka ]; then
    command -v java > /dev/null 2>&1 || die "java is not installed: run make deps, or IMGCACHE_BROKER=dev for the mock cluster"
fi

# ---- work folder, process tracking, cleanup --------------------------------------
WORK=$(mktemp -d /tmp/imgcache-bench.XXXXXX) || die "mktemp failed"
chmod 755 "$WORK"               # PostgreSQL runs as 'postgres' and must reach it
PIDS=()
STACK_UP=0
KAFKA_DIR=

track() { PIDS+=("$1"); }
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    stop_tree 5 "${PIDS[@]}"
    [ -n "$KAFKA_DIR" ] && sh "$ROOT/compose/kafka.sh" stop "$KAFKA_DIR" > /dev/null 2>&1
    [ "$STACK_UP" = 1 ] && sh "$ROOT/compose/stack.sh" stop "$WORK/stack" > /dev/null 2>&1
    if [ "$KEEP" = 1 ]; then
        echo "$PROG: kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
exit_trap cleanup

# ---- snapshot of the programs under test ----------------------------------------
mkdir -p "$WORK/bin"
cp "$ROOT"/bin/imgcache-{producer,devbroker,mediaserver,renderer} "$WORK/bin/"
cp "$WORKER_BIN" "$WORK/bin/imgcache-worker" || die "cannot copy $WORKER_BIN"
BIN=$WORK/bin
COMMIT=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=false
[ -n "$(git -C "$ROOT" status --porcelain -- common worker producer compose tests/mediaserver 2>/dev/null)" ] && DIRTY=true
BIN_MTIME=$(stat -c %y "$WORKER_BIN" | cut -d. -f1)

say "imgcache benchmark: $([ $QUICK = 1 ] && echo quick || echo full) run, commit ${COMMIT:0:12}$([ $DIRTY = true ] && echo ' (+ uncommitted changes)'), worker binary built $BIN_MTIME"
say "work folder $WORK"
[ "$WORKER_BIN" = "$ROOT/bin/imgcache-worker" ] || say "worker binary: $WORKER_BIN"
say "broker: $([ "$BROKER_KIND" = kafka ] && echo "Apache Kafka (compose/kafka.sh), a fresh one per configuration" || echo "dev broker (librdkafka's mock cluster, not Kafka)"); live fleets' fetch.wait.max.ms: ${FETCH_WAIT:-500, the default}"

# ---- the load generator -------------------------------------------------------
mkdir -p "$ROOT/build/bench"
GEN=$ROOT/build/bench/gen
if [ ! -x "$GEN" ] || [ "$ROOT/bench/gen.c" -nt "$GEN" ]; then
    cc -O2 -std=c11 -Wall -Wextra -Werror -o "$GEN" "$ROOT/bench/gen.c" || die "cannot build $GEN"
fi

FIXTURES=$ROOT/tests/fixtures/images
say "generating $IMAGES images (seed $SEED, 5-200 KiB, jpg/png/webp)"
"$GEN" "$WORK/media" a "$IMAGES" "$SEED" 5120 204800 "$FIXTURES" > "$WORK/manifest-a.tsv" || die "gen failed"
say "generating $RSS256_IMAGES images of 200 KiB (seed $((SEED + 1)))"
"$GEN" "$WORK/media" b "$RSS256_IMAGES" "$((SEED + 1))" 204800 204800 "$FIXTURES" > "$WORK/manifest-b.tsv" || die "gen failed"
BYTES_A=$(awk -F'\t' '{ s += $2 } END { print s }' "$WORK/manifest-a.tsv")
say "set a: $(calc "b / 1048576" 0 -v b="$BYTES_A") MiB, mean $(calc "b / n / 1024" 1 -v b="$BYTES_A" -v n="$IMAGES") KiB per image"

# chats FILEPREFIX MANIFEST MEDIA_URL COPIES [LIMIT]: COPIES files of one chat
# per image; copy k is FILEPREFIX-k.jsonl; chats are Beeper single chats whose
# picture is the other participant's.
gen_chats() {
    local prefix=$1 manifest=$2 url=$3 copies=$4 limit=${5:-0} k
    for k in $(seq 1 "$copies"); do
        awk -F'\t' -v u="$url" -v k="$k" -v lim="$limit" '
            lim > 0 && NR > lim { exit }
            { i = NR - 1
              printf "{\"id\":\"bench-%d-%d\",\"accountID\":\"bench\",\"title\":\"Bench Person %d\",\"type\":\"single\",\"network\":\"WhatsApp\",\"imgURL\":\"%s/%s\",\"lastActivity\":\"2026-11-20T10:00:00.000Z\",\"participants\":{\"items\":[{\"id\":\"me\",\"fullName\":\"Me\",\"isSelf\":true},{\"id\":\"u%d\",\"fullName\":\"Bench Person %d\",\"imgURL\":\"%s/%s\",\"isSelf\":false}],\"hasMore\":false,\"total\":2}}\n",
                     k, i, i, u, $1, i, i, u, $1 }' "$manifest" > "$prefix-$k.jsonl"
    done
}

# ---- CPU accounting -------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)
# tree_ticks PID...: CPU ticks of each process and its descendants (live ones
# and, through cutime/cstime, the reaped ones).
tree_ticks() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v roots="$*" '
        { line = $0; pid = $1; sub(/^[0-9]+ \(.*\) /, "", line); split(line, f, " ")
          t[pid] = f[12] + f[13] + f[14] + f[15]; kids[f[2]] = kids[f[2]] " " pid }
        function sum(p,   s, i, n2, arr) { s = t[p]; n2 = split(kids[p], arr, " "); for (i = 1; i <= n2; i++) s += sum(arr[i]); return s }
        END { n = split(roots, r, " "); for (i = 1; i <= n; i++) printf "%s%d", (i > 1 ? " " : ""), (r[i] in t ? sum(r[i]) : 0); print "" }'
}
host_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $6, $7 + $8; exit }' /proc/stat; }
# snap: "wall host_busy host_total host_iowait host_irq+softirq media pg redis
# broker this-script's-tree kernel-threads" (ticks)
snap() {
    local pg redis
    pg=$(read_pid "$WORK/stack/pg/postmaster.pid")
    redis=$(read_pid "$WORK/stack/redis.pid")
    echo "$EPOCHREALTIME $(host_ticks) $(tree_ticks "${MEDIA_PID:-0}" "${pg:-0}" "${redis:-0}" "${BROKER_PID:-0}" "$$" 2)"
}
# usage_between "SNAP1" "SNAP2" -> sets U_WALL U_HOST_PCT U_IOWAIT_PCT
# U_MEDIA_PCT U_MEDIA_S U_PG_S U_REDIS_S U_BROKER_S U_KERNEL_PCT U_OTHER_PCT
# (percent of one core; the machine has NCPU*100 %). U_KERNEL_PCT: interrupts,
# softirqs (loopback TCP) and kernel threads (writeback, journal), mostly work
# done for us. U_OTHER_PCT: processes that are not ours (other jobs on the
# machine: noise in the figures).
usage_between() {
    read -r U_WALL U_HOST_PCT U_IOWAIT_PCT U_MEDIA_PCT U_MEDIA_S U_PG_S U_REDIS_S U_BROKER_S U_KERNEL_PCT U_OTHER_PCT < <(
        awk -v a="$1" -v b="$2" -v tck="$CLK_TCK" -v ncpu="$NCPU" 'BEGIN {
            split(a, x, " "); split(b, y, " ")
            wall = y[1] - x[1]; if (wall <= 0) wall = 1e-9
            tot = y[3] - x[3]; if (tot <= 0) tot = 1
            kern = (y[5] - x[5]) + (y[11] - x[11])
            other = (y[2] - x[2]) - kern - (y[7] - x[7]) - (y[8] - x[8]) - (y[10] - x[10])
            if (other < 0) other = 0
            printf "%.3f %.0f %.0f %.0f %.2f %.2f %.2f %.2f %.0f %.0f\n", wall,
                (y[2] - x[2]) / tot * 100 * ncpu, (y[4] - x[4]) / tot * 100 * ncpu,
                (y[6] - x[6]) / tck / wall * 100, (y[6] - x[6]) / tck,
                (y[7] - x[7]) / tck, (y[8] - x[8]) / tck, (y[9] - x[9]) / tck,
                kern / tot * 100 * ncpu, other / tot * 100 * ncpu }')
}

# ---- servers ------------------------------------------------------------------
say "starting PostgreSQL and redis-server (compose/stack.sh, durable settings)"
STACK_UP=1
# The stack's own broker is not used (each configuration gets its own, below):
# the dev one starts in no time and is stopped at once.
IMGCACHE_BROKER=dev IMGCACHE_DEVBROKER=$BIN/imgcache-devbroker sh "$ROOT/compose/stack.sh" start "$WORK/stack" > "$WORK/stack.out" 2> "$WORK/stack.log" ||
    { cat "$WORK/stack.log" >&2; die "compose/stack.sh start failed"; }
. "$WORK/stack/stack.env"
STACK_DATABASE_URL=$DATABASE_URL
# Each configuration gets its own broker: the stack's one is not used.
sb=$(read_pid "$WORK/stack/broker.pid")
pid_alive "$sb" && { kill -TERM "$sb"; wait_gone "$sb" 10; }
PG_VERSION=$(psql -XAtq "$STACK_DATABASE_URL" -c "SHOW server_version" 2>/dev/null | cut -d' ' -f1)

q0=$(snap); sleep 2; q1=$(snap); usage_between "$q0" "$q1"
say "machine before the run: load average $(cut -d' ' -f1-3 /proc/loadavg), other processes using $U_OTHER_PCT% CPU of $((NCPU * 100))%"
[ "${U_OTHER_PCT:-0}" -le 15 ] || warn "the machine is busy before the start ($U_OTHER_PCT% CPU used by other processes): figures will be noisy"

declare -A MEDIA_URLS=() MEDIA_PIDS=()
# workers trust scheme + host + port: every media server's own port
trust_media() {
    local u
    IMGCACHE_ALLOW_HOSTS=
    for u in "${MEDIA_URLS[@]}"; do
        IMGCACHE_ALLOW_HOSTS+=${u#http://},
    done
    export IMGCACHE_ALLOW_HOSTS
}
# media_for LATENCY: starts (once) a media server over $WORK/media with that
# added latency; sets MEDIA_URL, MEDIA_PID.
media_for() {
    local lat=$1 ok=1
    if [ -z "${MEDIA_PIDS[$lat]:-}" ]; then
        media_start "$WORK/media-$lat.out" "$WORK/media-$lat.log" --root "$WORK/media" --latency-ms "$lat" \
            --max-connections 2048 || ok=0
        MEDIA_PIDS[$lat]=$MEDIA_PID
        track "$MEDIA_PID"
        [ $ok = 1 ] || die "the media server did not start: $(tail -n 5 "$WORK/media-$lat.log")"
        MEDIA_URLS[$lat]=$MEDIA_URL
        trust_media
    fi
    MEDIA_URL=${MEDIA_URLS[$lat]}
    MEDIA_PID=${MEDIA_PIDS[$lat]}
}
media_max_per_path() { media_served_over 0 | awk -F'\t' 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }'; }

BROKER_PID=
BROKER_DESC=
# start_broker NAME: stops the previous configuration's broker and starts a
# fresh one (no topics, offsets or groups carried over); sets BROKER_PID (the
# JVM or the dev broker, for the CPU accounting), exports KAFKA_BROKERS.
start_broker() {
    local name=$1 ok=1
    if [ "$BROKER_KIND" = dev ]; then
        stop_tree 10 "$BROKER_PID"
        BROKER_PID=
        devbroker_start "$WORK/broker.ctl" "$WORK/$name.broker.out" "$WORK/$name.broker.log" "$PARTITIONS" || ok=0
        [ -n "$BROKER_PID" ] && track "$BROKER_PID"
        [ $ok = 1 ] || die "the dev broker did not start"
        export KAFKA_BROKERS
        BROKER_DESC="dev broker (librdkafka's mock cluster, not Kafka)"
        return 0
    fi
    if [ -n "$KAFKA_DIR" ]; then
        sh "$ROOT/compose/kafka.sh" stop "$KAFKA_DIR" > /dev/null 2>> "$WORK/$name.broker.log"
        # its log is no longer needed and would fill the disk over a full run
        rm -rf "$KAFKA_DIR/data"
    fi
    KAFKA_DIR=$WORK/kafka-$name
    sh "$ROOT/compose/kafka.sh" start "$KAFKA_DIR" > "$WORK/$name.broker.out" 2>> "$WORK/$name.broker.log" ||
        die "Apache Kafka did not start: $(tail -n 5 "$WORK/$name.broker.log")"
    export KAFKA_BROKERS=$(sed -n 's/^KAFKA_BROKERS=//p' "$WORK/$name.broker.out")
    BROKER_PID=$(sh "$ROOT/compose/kafka.sh" pid "$KAFKA_DIR") || die "no broker pid in $KAFKA_DIR"
    "$BIN/imgcache-producer" topics --partitions "$PARTITIONS" > "$WORK/$name.topics.log" 2>&1 ||
        die "imgcache-producer topics failed: $(tail -n 3 "$WORK/$name.topics.log")"
    BROKER_DESC="Apache Kafka $(sh "$ROOT/compose/kafka.sh" version "$KAFKA_DIR" || echo '(version not logged)') (KRaft, one node; heap ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m})"
}

# fresh_env NAME: own database, empty Redis, a new broker, an empty
# storage folder, schema migrated. Exports what the programs read.
fresh_env() {
    local name=$1 db
    db=bench_$(echo "$name" | tr -c 'a-zA-Z0-9_\n' _)
    fresh_database "$db" "$WORK/$name.setup.log" || die "cannot create database $db"
    [ "$(redis-cli -u "$REDIS_URL" FLUSHALL 2>&1)" = OK ] || die "redis FLUSHALL failed"
    start_broker "$name"
    # nothing is deleted before the end: on ext4, creating files right after
    # deleting many is slow (the inode allocator skips recently deleted ones)
    mkdir -p "$WORK/store-$name"
    export IMGCACHE_STORAGE_DIR=$WORK/store-$name
    export IMGCACHE_PUBLIC_URL=http://cdn.bench.invalid/images
    trust_media
    export IMGCACHE_LOG_LEVEL=info
    export REDIS_URL
    unset IMGCACHE_BATCH_SIZE
    "$BIN/imgcache-producer" migrate > "$WORK/$name.migrate.log" 2>&1 || die "migrate failed: $(tail -n 3 "$WORK/$name.migrate.log")"
}
rows_at_least() { [ "$(q 'SELECT count(*) FROM cached_images')" -ge "$1" ]; }

# settle: write back every dirty page first (outside the measured time). The
# worker's batched durability calls syncfs(), which also waits for data that
# others left dirty on the same filesystem (here: the generated images and the
# curl baseline's files), so a phase must not inherit someone else's backlog.
settle() { sync; sleep 1; }
# release DIR...: empty the files (truncate, not delete) once measured, so the
# page cache does not fill the machine's memory over the run (reclaim costs CPU)
# while no inode is freed (on ext4, creating files right after many deletions
# is slow: the inode allocator skips recently deleted inodes for a few minutes)
release() { find "$@" -type f -exec truncate -s 0 {} + 2> /dev/null; return 0; }

# ---- workers -------------------------------------------------------------------
# start_worker LOGPREFIX ARGS...: imgcache-worker under /usr/bin/time -v (or
# under $WRAP); sets WPID (the wrapper) and WCHILD (the worker itself).
start_worker() {
    local name=$1 i
    shift
    WORKER_WRAP="/usr/bin/time -v -o $WORK/$name.time ${WRAP:-}" worker_spawn "$name" "$WORK/$name.log" "$@"
    WPID=$WORKER_PID
    track "$WPID"
    WCHILD=
    for i in $(seq 1 100); do
        WCHILD=$(descendants "$WPID" | head -n 1)
        [ -n "$WCHILD" ] && break
        sleep 0.02
    done
}
# wait_pids SECS PID...: 0 when all ended in time; else TERM them, return 124.
wait_pids() {
    local secs=$1 end p alive
    shift
    end=$(( ${EPOCHREALTIME%.*} + secs ))
    while :; do
        alive=0
        for p in "$@"; do pid_alive "$p" && alive=1; done
        [ $alive = 0 ] && break
        if [ "${EPOCHREALTIME%.*}" -ge "$end" ]; then
            stop_tree 30 "$@"
            return 124
        fi
        sleep 0.1
    done
    for p in "$@"; do wait "$p" 2>/dev/null; done
    return 0
}
time_field() { sed -n "s/^[[:space:]]*$2: //p" "$1" 2>/dev/null | head -n 1; }
worker_cpu() { awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$1" 2>/dev/null; }
worker_rss_kb() { time_field "$1" "Maximum resident set size (kbytes)"; }
worker_exit() { time_field "$1" "Exit status" | grep . || echo signal; }
log_epoch() { # LOG PATTERN: the time of the first matching line, as epoch seconds
    local ts
    ts=$(grep -m 1 -- "$2" "$1" | cut -d' ' -f1)
    [ -n "$ts" ] && date -d "$ts" +%s.%N 2>/dev/null
}

# rss_sampler OUT PID...: "epoch pid rss_kb hwm_kb" every 0.25 s while any runs
rss_sampler() {
    local out=$1 p any
    shift
    while :; do
        any=0
        for p in "$@"; do
            [ -r "/proc/$p/status" ] || continue
            any=1
            awk -v t="$EPOCHREALTIME" -v p="$p" '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { if (r != "") print t, p, r, h }' \
                "/proc/$p/status" 2>/dev/null
        done >> "$out"
        [ $any = 1 ] || break
        sleep 0.25
    done
}

# ---- import ---------------------------------------------------------------------
# run_imports NAME PREFIX COPIES: runs the copies one after the other; sets
# IMP_T0 IMP_T1 IMP_CHATS IMP_PUBLISHED IMP_CPU IMP_OK
run_imports() {
    local name=$1 prefix=$2 copies=$3 k out c p
    IMP_CHATS=0 IMP_PUBLISHED=0 IMP_CPU=0 IMP_OK=1
    IMP_T0=$EPOCHREALTIME
    for k in $(seq 1 "$copies"); do
        /usr/bin/time -f '%e %U %S' -o "$WORK/$name.import$k.time" \
            "$BIN/imgcache-producer" import "$prefix-$k.jsonl" > "$WORK/$name.import$k.out" 2> "$WORK/$name.import$k.log" ||
            { IMP_OK=0; warn "$name: import $k failed: $(tail -n 3 "$WORK/$name.import$k.log" | tr '\n' ' ')"; }
        out=$(grep -o 'chats=[0-9]*.*' "$WORK/$name.import$k.out" | tail -n 1)
        c=$(echo "$out" | grep -o 'chats=[0-9]*' | head -n 1 | cut -d= -f2)
        p=$(echo "$out" | grep -o 'published=[0-9]*' | cut -d= -f2)
        IMP_CHATS=$((IMP_CHATS + ${c:-0}))
        IMP_PUBLISHED=$((IMP_PUBLISHED + ${p:-0}))
        IMP_CPU=$(calc "c + u + s" 2 -v c="$IMP_CPU" -v u="$(cut -d' ' -f2 "$WORK/$name.import$k.time" | tail -n 1)" \
            -v s="$(cut -d' ' -f3 "$WORK/$name.import$k.time" | tail -n 1)")
    done
    IMP_T1=$EPOCHREALTIME
}

# latency_sql: per URL, first produced_at -> cached_at, in ms: "p50|p99|max|n"
latency_of_topic() {
    local name=$1
    kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%s\n' > "$WORK/$name.events.jsonl" 2> "$WORK/$name.kcat.log"
    q "SET client_min_messages = warning; DROP TABLE IF EXISTS bench_events; CREATE TABLE bench_events (j jsonb)" > /dev/null
    psql -XAtq -v ON_ERROR_STOP=1 "$DATABASE_URL" \
        -c "COPY bench_events FROM STDIN WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')" \
        < "$WORK/$name.events.jsonl" > /dev/null
    q "WITH e AS (SELECT j->>'source_url' AS u, min((j->>'produced_at')::timestamptz) AS p
                  FROM bench_events GROUP BY 1),
            l AS (SELECT extract(epoch FROM c.cached_at - e.p) * 1000 AS ms
                  FROM e JOIN cached_images c ON c.source_url = e.u)
       SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 0),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 0),
              round(max(ms)::numeric, 0), count(*),
              (SELECT count(*) FROM bench_events) FROM l"
}

# ---- results --------------------------------------------------------------------
J_BASE=() J_FLEET=() J_IMPORT=() J_EXTRA=()
declare -A CURL_RATE=() CURL_MAX=()
TABLE=()
IMPORT_ALONE=
# the table: config W C lat_ms mode images e2e_s img/s xcurl imp_s stdy/s p50ms p99ms dl/URL rssMiB cpu/1k med%
ROWFMT='%-22s %3s %4s %4s %-7s %7s %7s %8s %6s %6s %7s %6s %6s %6s %7s %7s %5s'

# ---- curl baseline ----------------------------------------------------------------
# baseline NAME MANIFEST LATENCY CONCURRENCY
baseline() {
    local name=$1 manifest=$2 lat=$3 c=$4 n s1 s2 secs rate curlcpu mbps r
    local rates=() runs=() got served bytes
    media_for "$lat"
    n=$(wc -l < "$manifest")
    say "baseline $name: curl --parallel --parallel-max $c, $n URLs, latency ${lat} ms, a warm-up run and $BASE_REPS measured runs"
    # warm-up, not counted: the first curl run after the images are
    # generated ran at 35-50 % of the next ones (its own CPU time doubled) in
    # every recent full run; counting it would lower the baseline
    for r in w $(seq 1 "$BASE_REPS"); do
        mkdir -p "$WORK/curl-$name-$r"
        awk -F'\t' -v u="$MEDIA_URL" -v d="$WORK/curl-$name-$r" '{ printf "url = \"%s/%s\"\noutput = \"%s/%d\"\n", u, $1, d, NR }' \
            "$manifest" > "$WORK/$name-$r.curl.cfg"
        settle
        media_reset
        s1=$(snap)
        /usr/bin/time -f '%e %U %S' -o "$WORK/$name-$r.curl.time" \
            curl -sS --no-progress-meter --fail --parallel --parallel-max "$c" -K "$WORK/$name-$r.curl.cfg" \
            > /dev/null 2> "$WORK/$name-$r.curl.log" || warn "baseline $name: curl reported errors: $(head -n 2 "$WORK/$name-$r.curl.log" | tr '\n' ' ')"
        s2=$(snap)
        usage_between "$s1" "$s2"
        secs=$U_WALL
        curlcpu=$(tail -n 1 "$WORK/$name-$r.curl.time" | awk '{ printf "%.2f", $2 + $3 }')
        got=$(find "$WORK/curl-$name-$r" -type f | wc -l)
        bytes=$(du -sb "$WORK/curl-$name-$r" | cut -f1)
        release "$WORK/curl-$name-$r"
        served=$(media_total)
        rate=$(calc "n / s" 0 -v n="$got" -v s="$secs")
        mbps=$(calc "b / s / 1048576" 0 -v b="$bytes" -v s="$secs")
        if [ "$r" = w ]; then
            say "  warm-up (not counted): $got files in ${secs}s = $rate images/s; curl CPU ${curlcpu}s"
            continue
        fi
        say "  run $r: $got files in ${secs}s = $rate images/s ($mbps MiB/s); curl CPU ${curlcpu}s ($(calc "c / s * 100" 0 -v c="$curlcpu" -v s="$secs")%), media server CPU $U_MEDIA_PCT%, host CPU $U_HOST_PCT% of $((NCPU * 100))% (kernel threads and irq $U_KERNEL_PCT%, other jobs $U_OTHER_PCT%)"
        [ "${U_OTHER_PCT:-0}" -le 15 ] || warn "baseline $name run $r: other processes used $U_OTHER_PCT% CPU during the run (noise)"
        rates+=("$rate")
        runs+=("{\"images\":$got,\"requests_served\":$(jn "$served"),\"seconds\":$secs,\"images_per_s\":$(jn "$rate"),\"mib_per_s\":$(jn "$mbps"),\"curl_cpu_s\":$(jn "$curlcpu"),\"media_server_cpu_pct\":$(jn "$U_MEDIA_PCT"),\"host_cpu_pct\":$(jn "$U_HOST_PCT"),\"host_iowait_pct\":$(jn "$U_IOWAIT_PCT"),\"kernel_cpu_pct\":$(jn "$U_KERNEL_PCT"),\"other_jobs_cpu_pct\":$(jn "$U_OTHER_PCT")}")
        BASE_LAST_ROW="$secs|$curlcpu|$got|$U_MEDIA_PCT|$rate"
        eval "BASE_ROW_$r=\$BASE_LAST_ROW"
    done
    # the median run is the baseline
    local med lo hi k
    med=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    lo=$(printf '%s\n' "${rates[@]}" | sort -n | head -n 1)
    hi=$(printf '%s\n' "${rates[@]}" | sort -n | tail -n 1)
    for k in $(seq 1 "$BASE_REPS"); do
        [ "${rates[$((k - 1))]}" = "$med" ] && { eval "BASE_LAST_ROW=\$BASE_ROW_$k"; break; }
    done
    IFS='|' read -r secs curlcpu got U_MEDIA_PCT rate <<< "$BASE_LAST_ROW"
    CURL_RATE[$name]=$med
    CURL_MAX[$name]=$hi
    say "  baseline $name: median $med images/s (runs: ${rates[*]})"
    J_BASE+=("{\"name\":$(js "$name"),\"concurrency\":$c,\"latency_ms\":$lat,\"images\":$n,\"images_per_s\":$(jn "$med"),\"images_per_s_min\":$(jn "$lo"),\"images_per_s_max\":$(jn "$hi"),\"runs\":[$(IFS=,; echo "${runs[*]}")]}")
    TABLE+=("$(printf "$ROWFMT" "curl $name" - "$c" "$lat" - "$got" "$secs" "$med" 1.00 - "$lo-$hi" - - - - "$(calc "c / n * 1000" 2 -v c="$curlcpu" -v n="$got")" "$U_MEDIA_PCT")")
}

# ---- one fleet configuration --------------------------------------------------------
# group_state LOG...: "LOGS_ASSIGNED NET MIN_NET": how many of the workers' logs
# have an event=assigned line, the sum over them of the partitions assigned
# minus those revoked, and the smallest such net count of one worker.
group_state() {
    awk 'match($0, /event=(assigned|revoked) partitions=[0-9]+/) {
            s = substr($0, RSTART, RLENGTH); v = s; sub(/.*partitions=/, "", v)
            if (s ~ /assigned/) { a[FILENAME] = 1; net[FILENAME] += v } else net[FILENAME] -= v }
         END { min = -1
               for (i = 1; i < ARGC; i++) { f = ARGV[i]; if (f in a) na++; t += net[f]; if (min < 0 || net[f] < min) min = net[f] }
               printf "%d %d %d\n", na, t, min }' "$@" 2> /dev/null
}
# wait_group SECS LOG...: polls (0.1 s) until the group is settled: every log
# has event=assigned, the workers hold together every partition of the two
# topics they subscribe to (image-needed and image-needed-retry, PARTITIONS
# each) and, when there are no more workers than partitions, each holds at
# least one (so no rebalance is still under way). 0 when settled; 1 after
# SECS; 2 when a worker ($WAIT_GROUP_PIDS) has exited. Sets GROUP_STATE.
wait_group() {
    local secs=$1 want=$((2 * PARTITIONS)) end na net min p alive
    shift
    end=$(( ${EPOCHREALTIME%.*} + secs ))
    while :; do
        read -r na net min < <(group_state "$@")
        GROUP_STATE="$na of $# worker(s) assigned, $net of $want partitions held, fewest held by one worker $min"
        [ "$na" = $# ] && [ "$net" = "$want" ] && { [ $# -gt "$want" ] || [ "$min" -gt 0 ]; } && return 0
        alive=1
        for p in ${WAIT_GROUP_PIDS:-}; do pid_alive "$p" || alive=0; done
        [ $alive = 1 ] || return 2
        [ "${EPOCHREALTIME%.*}" -lt "$end" ] || return 1
        sleep 0.1
    done
}
# watch_rows OUT: one psql connection that prints "rows|failures"
# (cached_images, image_failures) every 0.2 s (\watch) into OUT; sets
# WATCH_PID. One connection instead of a psql process per poll: the polling
# costs next to nothing in the measured window.
watch_rows() {
    psql -XAtq "$DATABASE_URL" > "$1" 2> "$1.log" <<'EOF' &
SELECT (SELECT count(*) FROM cached_images), (SELECT count(*) FROM image_failures) \watch 0.2
EOF
    WATCH_PID=$!
    track "$WATCH_PID"
}
# wait_rows N SECS OUT PID...: polls (0.1 s) until rows + failures >= N, read
# from watch_rows's OUT (or by a query when that psql is gone). 0 when done,
# 1 after SECS, 2 when every PID has exited. Sets WAIT_ROWS WAIT_FAILS.
wait_rows() {
    local n=$1 secs=$2 out=$3 end line p alive
    shift 3
    end=$(( ${EPOCHREALTIME%.*} + secs ))
    WAIT_ROWS=0 WAIT_FAILS=0
    while :; do
        if pid_alive "$WATCH_PID"; then
            line=$(tail -n 1 "$out" 2> /dev/null)
        else
            line=$(q "SELECT (SELECT count(*) FROM cached_images), (SELECT count(*) FROM image_failures)" 2> /dev/null)
        fi
        if [[ $line =~ ^([0-9]+)\|([0-9]+)$ ]]; then
            WAIT_ROWS=${BASH_REMATCH[1]} WAIT_FAILS=${BASH_REMATCH[2]}
            [ $((WAIT_ROWS + WAIT_FAILS)) -ge "$n" ] && return 0
        fi
        alive=0
        for p in "$@"; do pid_alive "$p" && alive=1; done
        [ $alive = 1 ] || return 2
        [ "${EPOCHREALTIME%.*}" -lt "$end" ] || return 1
        sleep 0.1
    done
}
# rebalance_lines FROM_LINES LOG...: event=assigned/revoked lines past the
# given line counts (one per log, comma-separated)
rebalance_lines() {
    local from=$1 i=0 l c s=0
    shift
    IFS=, read -r -a c <<< "$from"
    for l in "$@"; do
        s=$(( s + $(tail -n +"$(( ${c[$i]:-0} + 1 ))" "$l" | grep -c 'event=\(assigned\|revoked\)') ))
        i=$((i + 1))
    done
    echo "$s"
}
line_counts() { local l s=; for l in "$@"; do s+="${s:+,}$(wc -l < "$l")"; done; echo "$s"; }

# fleet NAME SET WORKERS CONCURRENCY LATENCY COPIES BASELINE MODE
# COPIES chat files name every image of SET once each (each URL in COPIES chats).
#   live: the W workers start first (no --drain) and join the group; once the
#     group is settled, ONE import of a file holding all COPIES chat files
#     (the producer announces a URL once per run: one event per URL); the run
#     ends when every image is a cached_images or image_failures row, then the
#     workers get SIGTERM. Start of the measured window: the import's start.
#   backlog: COPIES imports one after the other (every URL in COPIES events),
#     then the W workers with --drain, which exit once caught up. Start of the
#     measured window: the first import's start.
# End of the window in both: max(cached_at).
fleet() {
    local name=$1 set=$2 nw=$3 c=$4 lat=$5 copies=$6 base=$7 mode=$8 n i k
    local manifest=$WORK/manifest-$set.tsv
    n=$(wc -l < "$manifest")
    media_for "$lat"
    if [ "$mode" = live ]; then
        say "fleet $name (live): $nw worker(s) started first (no --drain), concurrency $c, latency ${lat} ms; once they hold every partition, one import of $n images x $copies chats = $((n * copies)) chats, one event per URL"
    else
        say "fleet $name (backlog): $copies imports of $n chats (every URL in $copies events), then $nw worker(s) with --drain, concurrency $c, latency ${lat} ms"
    fi
    fresh_env "$name"
    gen_chats "$WORK/chats-$name" "$manifest" "$MEDIA_URL" "$copies"
    local imp_prefix=$WORK/chats-$name imp_runs=$copies
    if [ "$mode" = live ]; then
        for k in $(seq 1 "$copies"); do cat "$WORK/chats-$name-$k.jsonl"; done > "$WORK/chats-$name-all-1.jsonl"
        imp_prefix=$WORK/chats-$name-all imp_runs=1
    fi
    settle

    local wpids=() wchildren=() wlogs=() t_w0 t_w1 t_done rc=0 pgx0 rcmd0 sampler settled_s= lines0= rebal=0
    local s0 s1 s2
    # steps shared by the two modes (bash scoping: they set fleet's locals)
    start_fleet() { # [--drain]
        t_w0=$EPOCHREALTIME
        for i in $(seq 1 "$nw"); do
            start_worker "$name-w$i" "$@" --concurrency "$c"
            wpids+=("$WPID")
            wchildren+=("$WCHILD")
            wlogs+=("$WORK/$name-w$i.log")
        done
        rss_sampler "$WORK/$name.rss" "${wchildren[@]}" &
        sampler=$!
        track "$sampler"
    }
    counters0() {
        pgx0=$(q "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        rcmd0=$(redis-cli -u "$REDIS_URL" INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p')
    }
    pre_hook() {
        if [ -n "${FLEET_PRE_HOOK:-}" ]; then
            say "  before the measured window: $FLEET_PRE_HOOK"
            eval "$FLEET_PRE_HOOK"
        fi
    }

    if [ "$mode" = live ]; then
        # LIVE_FLEET_ARGS: the fetch wait (--fetch-wait; see the options)
        start_fleet "${LIVE_FLEET_ARGS[@]}"
        WAIT_GROUP_PIDS="${wchildren[*]}" wait_group 60 "${wlogs[@]}"
        case $? in
            1) warn "$name: the group did not settle in 60 s ($GROUP_STATE); importing anyway" ;;
            2) warn "$name: a worker exited before the group settled ($GROUP_STATE)" ;;
        esac
        settled_s=$(calc "e - t" 2 -v e="$EPOCHREALTIME" -v t="$t_w0")
        say "  group settled ${settled_s}s after the workers' start: $GROUP_STATE"
        pre_hook
        media_reset
        counters0
        watch_rows "$WORK/$name.rows"
        lines0=$(line_counts "${wlogs[@]}")
        s0=$(snap)
        run_imports "$name" "$imp_prefix" 1
        s1=$(snap)
    else
        media_reset
        s0=$(snap)
        run_imports "$name" "$imp_prefix" "$copies"
        s1=$(snap)
    fi
    usage_between "$s0" "$s1"
    local imp_s=$U_WALL imp_pg=$U_PG_S imp_broker=$U_BROKER_S
    local chats_rate ev_rate imp_note=
    chats_rate=$(calc "c / s" 0 -v c="$IMP_CHATS" -v s="$imp_s")
    ev_rate=$(calc "c / s" 0 -v c="$IMP_PUBLISHED" -v s="$imp_s")
    [ "$mode" = live ] && imp_note=" (1 run, overlapping the workers' downloads: PostgreSQL and broker CPU include the workers' share)"
    say "  import: $IMP_CHATS chats, $IMP_PUBLISHED events in ${imp_s}s ($imp_runs run(s)) = $chats_rate chats/s, $ev_rate events/s; producer CPU ${IMP_CPU}s, PostgreSQL ${imp_pg}s, broker ${imp_broker}s$imp_note"
    J_IMPORT+=("{\"config\":$(js "$name"),\"mode\":$(js "$mode"),\"overlaps_workers\":$([ "$mode" = live ] && echo true || echo false),\"runs\":$imp_runs,\"chats\":$IMP_CHATS,\"events\":$IMP_PUBLISHED,\"seconds\":$imp_s,\"chats_per_s\":$(jn "$chats_rate"),\"events_per_s\":$(jn "$ev_rate"),\"producer_cpu_s\":$(jn "$IMP_CPU"),\"postgres_cpu_s\":$(jn "$imp_pg"),\"broker_cpu_s\":$(jn "$imp_broker"),\"ok\":$([ $IMP_OK = 1 ] && echo true || echo false)}")
    if [ "$mode" = backlog ] && [ -z "${IMPORT_ALONE:-}" ]; then
        IMPORT_ALONE="$chats_rate chats/s, $ev_rate events/s ($name: $imp_runs runs of $n chats in ${imp_s}s, nothing else running)"
    fi

    local timeout=$(( 300 + n * copies / 100 ))
    if [ "$mode" = live ]; then
        # the end: every image is a row (or a failure), read on one psql
        # connection; then SIGTERM to the workers themselves (not to the
        # time wrappers), which finish and commit their offsets
        [ $IMP_OK = 1 ] || timeout=30
        wait_rows "$n" "$timeout" "$WORK/$name.rows" "${wchildren[@]}"
        case $? in
            1) warn "$name: $WAIT_ROWS rows and $WAIT_FAILS failures for $n images after ${timeout}s; stopping the workers" ;;
            2) warn "$name: every worker exited before the end ($WAIT_ROWS rows, $WAIT_FAILS failures for $n images)" ;;
        esac
        t_done=$EPOCHREALTIME
        s2=$(snap)
        rebal=$(rebalance_lines "$lines0" "${wlogs[@]}")
        stop_tree 5 "$WATCH_PID"
        for i in "${!wpids[@]}"; do
            k=${wchildren[$i]:-$(descendants "${wpids[$i]}" | head -n 1)}
            [ -n "$k" ] && kill -TERM "$k" 2> /dev/null
        done
        wait_pids 60 "${wpids[@]}" || { rc=124; warn "$name: a worker was still running 60 s after SIGTERM (stopped)"; }
        t_w1=$EPOCHREALTIME
    else
        pre_hook
        counters0
        start_fleet --drain
        wait_pids "$timeout" "${wpids[@]}" || { rc=124; warn "$name: a worker was still running after ${timeout}s (stopped with SIGTERM)"; }
        t_w1=$EPOCHREALTIME
        t_done=$t_w1
        s2=$(snap)
        # the measured window of backlog mode: the workers' phase
        s0=$s1
    fi
    wait "$sampler" 2>/dev/null
    usage_between "$s0" "$s2"

    # results from PostgreSQL, the media server and the workers
    sleep 0.6 # PostgreSQL publishes transaction counts at most once a second
    local pgx rcmd
    pgx=$(( $(q "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()") - pgx0 - 1 ))
    rcmd=$(( $(redis-cli -u "$REDIS_URL" INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p') - rcmd0 - 1 ))
    local rows fails first last blobs
    IFS='|' read -r rows fails first last blobs < <(q "SELECT count(*), (SELECT count(*) FROM image_failures),
        coalesce(extract(epoch FROM min(cached_at)), 0), coalesce(extract(epoch FROM max(cached_at)), 0),
        (SELECT count(*) FROM image_blobs) FROM cached_images")
    local files tmpfiles
    # blob files only: a renderer beside the fleet adds rendition files
    files=$(find "$IMGCACHE_STORAGE_DIR" -path "$IMGCACHE_STORAGE_DIR/.tmp" -prune -o -type f -print |
        sed "s|^$IMGCACHE_STORAGE_DIR/||" | sort |
        comm -23 - <(q "SELECT DISTINCT storage_key FROM image_renditions EXCEPT SELECT storage_key FROM image_blobs" | sort) | wc -l)
    tmpfiles=$(find "$IMGCACHE_STORAGE_DIR/.tmp" -type f 2> /dev/null | wc -l)
    # FLEET_KEEP_STORE: a renderer still reads the blobs (renderer_pair releases them)
    [ -n "${FLEET_KEEP_STORE:-}" ] || release "$IMGCACHE_STORAGE_DIR" "$WORK/unrelated-dirty.bin"
    local served maxpath
    served=$(media_total)
    maxpath=$(media_max_per_path)
    local p50 p99 pmax nl nev
    IFS='|' read -r p50 p99 pmax nl nev < <(latency_of_topic "$name")
    local cpu=0 rss_list= rss_max=0 exits= consumed=0 cached=0 downloaded=0 waited=0 failed=0 assigned_first= assigns=0
    for i in $(seq 1 "$nw"); do
        local tf=$WORK/$name-w$i.time lf=$WORK/$name-w$i.log r a
        cpu=$(calc "a + b" 2 -v a="$cpu" -v b="$(worker_cpu "$tf")")
        r=$(worker_rss_kb "$tf")
        rss_list+="${rss_list:+,}$(calc "r / 1024" 1 -v r="${r:-0}")"
        [ "${r:-0}" -gt "$rss_max" ] && rss_max=$r
        exits+="${exits:+,}$(worker_exit "$tf")"
        consumed=$((consumed + $(summary_field "$lf" consumed || echo 0)))
        cached=$((cached + $(summary_field "$lf" already_cached || echo 0)))
        downloaded=$((downloaded + $(summary_field "$lf" downloaded || echo 0)))
        waited=$((waited + $(summary_field "$lf" waited_for_other_worker || echo 0)))
        failed=$((failed + $(summary_field "$lf" failed || echo 0)))
        assigns=$((assigns + $(grep -c 'event=assigned' "$lf")))
        a=$(log_epoch "$lf" "event=assigned")
        [ -n "$a" ] && { [ -z "$assigned_first" ] || [ "$(calc "a < f" 0 -v a="$a" -v f="$assigned_first")" = 1 ]; } && assigned_first=$a
    done
    local e2e_s e2e_rate ratio fleet_s= fleet_rate= steady steady_s first_s join_s cpu1k host1k dl_per_url
    e2e_s=$(calc "l - t" 2 -v l="$last" -v t="$IMP_T0")
    e2e_rate=$(calc "r / s" 0 -v r="$rows" -v s="$e2e_s")
    ratio=$(calc "a / b" 2 -v a="$e2e_rate" -v b="${CURL_RATE[$base]:-0}")
    first_s=$(calc "f - t" 2 -v f="$first" -v t="$IMP_T0")
    steady_s=$(calc "l - f" 2 -v l="$last" -v f="$first")
    steady=$(calc "r / (l - f)" 0 -v r="$rows" -v l="$last" -v f="$first")
    if [ "$mode" = backlog ]; then
        fleet_s=$(calc "l - t" 2 -v l="$last" -v t="$t_w0")
        fleet_rate=$(calc "r / s" 0 -v r="$rows" -v s="$fleet_s")
    fi
    join_s=$(calc "a - t" 2 -v a="${assigned_first:-0}" -v t="$t_w0")
    cpu1k=$(calc "c / r * 1000" 2 -v c="$cpu" -v r="$rows")
    host1k=$(calc "(h / 100 * w) / r * 1000" 2 -v h="$U_HOST_PCT" -v w="$U_WALL" -v r="$rows")
    dl_per_url=$(calc "s / n" 3 -v s="$served" -v n="$n")
    local rss_max_mib
    rss_max_mib=$(calc "r / 1024" 1 -v r="$rss_max")
    if [ "$mode" = live ]; then
        say "  all rows in $(calc "d - t" 2 -v d="$t_done" -v t="$IMP_T0")s after the import's start (seen by polling); workers stopped with SIGTERM, exited (${exits}) $(calc "a - b" 1 -v a="$t_w1" -v b="$t_done")s later; first assignment ${join_s}s after their start, $assigns assignment(s) over $nw worker(s), $rebal assign/revoke event(s) within the measured window"
        say "  rows $rows/$n, failures $fails, blobs $blobs, stored files $files"
        say "  end to end (import start -> last commit) ${e2e_s}s = $e2e_rate images/s (${ratio}x curl $base); import ${imp_s}s (overlapping); first commit ${first_s}s after the import's start; first->last commit ${steady_s}s = $steady images/s"
        say "  latency produced->committed p50 ${p50} ms, p99 ${p99} ms, max ${pmax} ms (per event: consumed as produced, one event per URL, queueing behind the import's burst included); downloads/URL $dl_per_url (max per path $maxpath)"
    else
        say "  workers exited (${exits}) after $(calc "a - b" 1 -v a="$t_w1" -v b="$t_w0")s; first assignment after ${join_s}s, $assigns assignments over $nw worker(s); rows $rows/$n, failures $fails, blobs $blobs, stored files $files"
        say "  end to end (first import start -> last commit) ${e2e_s}s = $e2e_rate images/s (${ratio}x curl $base); imports ${imp_s}s; workers' part (start -> last commit, group join included) ${fleet_s}s = $fleet_rate images/s; first->last commit ${steady_s}s = $steady images/s"
        say "  latency produced->committed p50 ${p50} ms, p99 ${p99} ms (backlog: every event queued before the workers start); downloads/URL $dl_per_url (max per path $maxpath) for $nev events"
    fi
    say "  peak RSS MiB per worker [$rss_list]; worker CPU ${cpu}s = $cpu1k s/1k images; over the measured window ($U_WALL s): host CPU $U_HOST_PCT% (iowait $U_IOWAIT_PCT%) of $((NCPU * 100))%; media server $U_MEDIA_PCT%; PostgreSQL ${U_PG_S}s, redis ${U_REDIS_S}s, broker ${U_BROKER_S}s; kernel (irq, softirq, kernel threads) $U_KERNEL_PCT%; other jobs on the machine $U_OTHER_PCT%"
    [ "${U_OTHER_PCT:-0}" -le 15 ] || warn "$name: other processes used $U_OTHER_PCT% CPU during the run (noise)"
    say "  worker counters: consumed $consumed, already cached $cached, downloaded $downloaded, waited for another worker $waited, failed $failed; PostgreSQL transactions $pgx, Redis commands $rcmd"
    [ "$rows" = "$n" ] || warn "$name: $rows rows for $n images"
    [ "$fails" = 0 ] || warn "$name: $fails image_failures rows"
    [ "$files" = "$blobs" ] || warn "$name: $files stored files for $blobs image_blobs rows"
    [ "$tmpfiles" = 0 ] || warn "$name: $tmpfiles temporary files left under .tmp"
    [ "$served" = "$n" ] || warn "$name: the media server served $served requests for $n images"
    [ "$rebal" = 0 ] || warn "$name: the group rebalanced during the measured window ($rebal assign/revoke events)"
    case ",$exits," in *[!0,]*) warn "$name: worker exit statuses $exits" ;; esac

    J_FLEET+=("{\"name\":$(js "$name"),\"mode\":$(js "$mode"),\"image_set\":$(js "$set"),\"workers\":$nw,\"concurrency\":$c,\"latency_ms\":$lat,\"images\":$n,\"chats_per_url\":$copies,\"import_runs\":$imp_runs,\"events\":$(jn "$nev"),\"rows\":$rows,\"failures\":$fails,\"blobs\":$blobs,\"stored_files\":$files,\"tmp_files_left\":$tmpfiles,\"end_to_end_s\":$(jn "$e2e_s"),\"end_to_end_images_per_s\":$(jn "$e2e_rate"),\"curl_baseline\":$(js "$base"),\"ratio_to_curl\":$(jn "$ratio"),\"import_s\":$imp_s,\"import_overlaps_workers\":$([ "$mode" = live ] && echo true || echo false),\"first_commit_s\":$(jn "$first_s"),\"first_to_last_commit_s\":$(jn "$steady_s"),\"workers_to_last_commit_s\":$(jn "$fleet_s"),\"workers_images_per_s\":$(jn "$fleet_rate"),\"first_to_last_commit_images_per_s\":$(jn "$steady"),\"group_join_s\":$(jn "$join_s"),\"group_settled_s\":$(jn "$settled_s"),\"assignments\":$assigns,\"rebalance_events_in_window\":$rebal,\"latency_kind\":$(js "$([ "$mode" = live ] && echo per_event || echo backlog)"),\"latency_p50_ms\":$(jn "$p50"),\"latency_p99_ms\":$(jn "$p99"),\"latency_max_ms\":$(jn "$pmax"),\"downloads\":$(jn "$served"),\"downloads_per_url\":$(jn "$dl_per_url"),\"max_downloads_one_url\":$(jn "$maxpath"),\"peak_rss_mib\":[$rss_list],\"worker_cpu_s\":$cpu,\"worker_cpu_s_per_1k_images\":$(jn "$cpu1k"),\"window_s\":$(jn "$U_WALL"),\"host_cpu_s_per_1k_images\":$(jn "$host1k"),\"host_cpu_pct\":$(jn "$U_HOST_PCT"),\"host_iowait_pct\":$(jn "$U_IOWAIT_PCT"),\"media_server_cpu_pct\":$(jn "$U_MEDIA_PCT"),\"postgres_cpu_s\":$(jn "$U_PG_S"),\"redis_cpu_s\":$(jn "$U_REDIS_S"),\"broker_cpu_s\":$(jn "$U_BROKER_S"),\"kernel_cpu_pct\":$(jn "$U_KERNEL_PCT"),\"other_jobs_cpu_pct\":$(jn "$U_OTHER_PCT"),\"worker_exit\":$(js "$exits"),\"consumed\":$consumed,\"already_cached\":$cached,\"downloaded\":$downloaded,\"waited_for_other_worker\":$waited,\"failed\":$failed,\"postgres_transactions\":$pgx,\"redis_commands\":$rcmd}")
    TABLE+=("$(printf "$ROWFMT" "$name" "$nw" "$c" "$lat" "$mode" "$rows" "$e2e_s" "$e2e_rate" "$ratio" "$imp_s" "$steady" "$p50" "$p99" "$dl_per_url" "$rss_max_mib" "$cpu1k" "$U_MEDIA_PCT")")
    LAST_FLEET_RSS=$WORK/$name.rss
    LAST_FLEET_RSS_MAX=$rss_max_mib
    LAST_FLEET_STEADY=$steady
    LAST_FLEET_E2E=$e2e_rate
    LAST_FLEET_DLPU=$dl_per_url
    # the RSS profile starts at the first commit: between assignment and the
    # first download a worker idles (drain check, first fetch) at its
    # start-up size, which would pass for "before growth" in a short run
    if [ "$(calc "f > 0" 0 -v f="$first")" = 1 ]; then LAST_FLEET_T0=$first; else LAST_FLEET_T0=${assigned_first:-$t_w0}; fi
    LAST_FLEET_EVENTS=$nev
    LAST_FLEET_CONSUMED=$consumed
}

# rss_profile FILE T0 -> "tenths(comma-separated MiB, max per tenth of the run)|first|last|max"
rss_profile() {
    awk -v t0="$2" '{ t[NR] = $1; r[NR] = $3 } END {
        if (NR == 0) { print "||"; exit }
        span = t[NR] - t0; if (span <= 0) span = 1
        for (i = 1; i <= NR; i++) { k = int((t[i] - t0) / span * 10); if (k > 9) k = 9; if (k < 0) k = 0; if (r[i] > m[k]) m[k] = r[i]; if (r[i] > mx) mx = r[i] }
        s = ""; for (k = 0; k < 10; k++) s = s (k ? "," : "") (k in m ? sprintf("%.1f", m[k] / 1024) : "null")
        printf "%s|%.1f|%.1f|%.1f\n", s, r[1] / 1024, r[NR] / 1024, mx / 1024 }' "$1"
}

# ---- replay ---------------------------------------------------------------------------
# replay CONFIG EVENTS KEY LABEL [WORKER ARGS...]
replay() {
    local name=$1 events=$2 key=$3 label=$4 served a d secs rate total_s consumed cpu rss ex
    shift 4
    settle
    media_reset
    say "$label: 1 worker, --group bench-$key --from-beginning --drain over the $events cached events${*:+ ($*)}"
    local t0=$EPOCHREALTIME
    start_worker "$name-$key" --drain --group "bench-$key" --from-beginning --concurrency "$CONC" "$@"
    wait_pids 600 "$WPID" || warn "$label: the worker did not finish in 600 s"
    local t1=$EPOCHREALTIME
    served=$(media_total)
    a=$(log_epoch "$WORK/$name-$key.log" "event=assigned")
    d=$(log_epoch "$WORK/$name-$key.log" "event=drained")
    consumed=$(summary_field "$WORK/$name-$key.log" consumed)
    secs=$(calc "d - a" 2 -v d="${d:-0}" -v a="${a:-0}")
    total_s=$(calc "b - a" 2 -v b="$t1" -v a="$t0")
    rate=$(calc "c / s" 0 -v c="${consumed:-0}" -v s="$secs")
    cpu=$(worker_cpu "$WORK/$name-$key.time")
    rss=$(calc "r / 1024" 1 -v r="$(worker_rss_kb "$WORK/$name-$key.time")")
    ex=$(worker_exit "$WORK/$name-$key.time")
    say "  $label: consumed $consumed events in ${secs}s from assignment to drained = $rate events/s (${total_s}s with start-up and group join); media server requests: $served (must be 0); CPU ${cpu}s; peak RSS $rss MiB; exit $ex"
    [ "$served" = 0 ] || warn "$label downloaded $served images"
    REPLAY_RATE=$rate
    REPLAY_SERVED=$served
    REPLAY_RSS=$rss
    J_EXTRA+=("\"$key\":{\"worker_args\":$(js "$*"),\"events\":$(jn "$consumed"),\"topic_events\":$(jn "$events"),\"seconds_assigned_to_drained\":$(jn "$secs"),\"seconds_total\":$(jn "$total_s"),\"events_per_s\":$(jn "$rate"),\"media_server_requests\":$(jn "$served"),\"worker_cpu_s\":$(jn "$cpu"),\"peak_rss_mib\":$(jn "$rss"),\"exit\":$(js "$ex")}")
    TABLE+=("$(printf "$ROWFMT" "$label (events/s)" 1 "$CONC" "$LAT" replay "$consumed" "$secs" "$rate" - - - - - "$(calc "s / n" 3 -v s="$served" -v n="$IMAGES")" "$rss" "$(calc "c / n * 1000" 3 -v c="$cpu" -v n="${consumed:-1}")" -)")
}

# ---- live: one worker already running, chats fed at ~500/s -------------------------------
# live NAME [WORKER ARGS...]
live() {
    local name=$1 n=$LIVE_IMAGES lat=$LAT
    shift
    media_for "$lat"
    say "$name: 1 worker running before the import${*:+ ($*)}; $n chats fed at ~500/s (IMGCACHE_BATCH_SIZE=10): per-event latency"
    fresh_env "$name"
    gen_chats "$WORK/chats-$name" "$WORK/manifest-a.tsv" "$MEDIA_URL" 1 "$n"
    settle
    media_reset
    start_worker "$name-w1" --concurrency "$CONC" "$@"
    local wp=$WPID
    wait_for 60 grep -q 'event=assigned' "$WORK/$name-w1.log" || warn "$name: no assignment in 60 s"
    # probe: a plain kcat consumer (fetch.wait.max.ms=10) stamps the time
    # each event becomes visible, so the broker's share of the latency shows
    (
        kcat -b "$KAFKA_BROKERS" -C -t image-needed -o end -u -q -X fetch.wait.max.ms=10 -f '%s\n' 2> /dev/null |
            while IFS= read -r l; do
                l=${l#*\"produced_at\":\"}
                echo "$EPOCHREALTIME,${l%%\"*}"
            done > "$WORK/$name.probe.csv"
    ) &
    local probe=$!
    track "$probe"
    sleep 3
    local t0=$EPOCHREALTIME
    (
        c=0
        while IFS= read -r line; do
            printf '%s\n' "$line"
            c=$((c + 1))
            [ $((c % 25)) = 0 ] && sleep 0.05
        done < "$WORK/chats-$name-1.jsonl"
    ) | IMGCACHE_BATCH_SIZE=10 "$BIN/imgcache-producer" import - > "$WORK/$name.import.out" 2> "$WORK/$name.import.log"
    local t1=$EPOCHREALTIME
    wait_for 120 rows_at_least "$n" || warn "$name: not every image cached 120 s after the import"
    sleep 1
    stop_tree 5 "$probe"
    local k50 k99
    q "SET client_min_messages = warning; DROP TABLE IF EXISTS bench_probe; CREATE TABLE bench_probe (seen float8, produced timestamptz)" > /dev/null
    psql -XAtq "$DATABASE_URL" -c "COPY bench_probe FROM STDIN WITH (FORMAT csv)" < "$WORK/$name.probe.csv" > /dev/null 2>&1
    IFS='|' read -r k50 k99 < <(q "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 0),
        round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 0)
        FROM (SELECT (seen - extract(epoch FROM produced)) * 1000 AS ms FROM bench_probe) x")
    kill -TERM "$(descendants "$wp" | head -n 1)" 2>/dev/null
    wait_pids 60 "$wp" || warn "$name: the worker did not stop on SIGTERM"
    local p50 p99 pmax nl nev feed_rate ex
    IFS='|' read -r p50 p99 pmax nl nev < <(latency_of_topic "$name")
    feed_rate=$(calc "n / (b - a)" 0 -v n="$n" -v a="$t0" -v b="$t1")
    ex=$(worker_exit "$WORK/$name-w1.time")
    say "  fed $n chats at $feed_rate/s; latency produced->committed p50 $p50 ms, p99 $p99 ms, max $pmax ms ($nl rows); worker exit $ex"
    say "  of which Kafka (produced -> seen by a kcat consumer with fetch.wait.max.ms=10): p50 $k50 ms, p99 $k99 ms"
    LIVE_LINES+=("$name${*:+ ($*)}: p50 $p50 ms, p99 $p99 ms, max $pmax ms at $feed_rate chats/s; produced -> visible to kcat: p50 $k50 ms, p99 $k99 ms")
    J_LIVE+=("{\"name\":$(js "$name"),\"worker_args\":$(js "$*"),\"images\":$n,\"feed_chats_per_s\":$(jn "$feed_rate"),\"latency_p50_ms\":$(jn "$p50"),\"latency_p99_ms\":$(jn "$p99"),\"latency_max_ms\":$(jn "$pmax"),\"rows\":$(jn "$nl"),\"kafka_probe_p50_ms\":$(jn "$k50"),\"kafka_probe_p99_ms\":$(jn "$k99"),\"worker_exit\":$(js "$ex")}")
}

# ---- profile --------------------------------------------------------------------------
# json_lines FILE: the lines of FILE as a JSON array body
json_lines() { awk '{ gsub(/\\/, "\\\\\\\\"); gsub(/"/, "\\\""); sub(/^ +/, ""); printf "%s\"%s\"", (NR > 1 ? "," : ""), $0 }' "$1" 2>/dev/null; }
# profile_under CONFIG IMAGES TOOL WRAP [SECS]: a fresh environment with
# IMAGES chats imported, then one --drain worker CONFIG-w1 under the command
# line WRAP; warns when it has not finished after SECS (600).
profile_under() {
    local cfg=$1 n=$2 tool=$3 wrap=$4 secs=${5:-600}
    fresh_env "$cfg"
    gen_chats "$WORK/chats-$cfg" "$WORK/manifest-a.tsv" "$MEDIA_URL" 1 "$n"
    "$BIN/imgcache-producer" import "$WORK/chats-$cfg-1.jsonl" > /dev/null 2> "$WORK/$cfg.import.log"
    say "profile: $tool, 1 worker, $n images"
    settle
    WRAP=$wrap start_worker "$cfg-w1" --drain --concurrency "$CONC"
    wait_pids "$secs" "$WPID" || warn "profile: the worker did not finish under $tool"
}
profile() {
    local name=profile n=$PROFILE_IMAGES tool total=
    media_for 0
    if perf stat -e instructions true 2>&1 | grep -q '[0-9][0-9,]* *instructions'; then
        tool=perf
        profile_under "$name" "$n" "perf record -g" "perf record -q -g -o $WORK/perf.data --"
        perf report -i "$WORK/perf.data" --stdio --no-children --percent-limit 0.5 2> /dev/null |
            grep -E '^ +[0-9.]+%' | head -n 30 > "$WORK/profile.top"
    else
        tool=callgrind
        say "profile: hardware counters unavailable here (perf stat -e instructions: <not supported>)"
        profile_under "$name" "$n" "valgrind --tool=callgrind" \
            "valgrind --tool=callgrind --callgrind-out-file=$WORK/callgrind.out" 900
        total=$(callgrind_annotate "$WORK/callgrind.out" 2> /dev/null | grep 'PROGRAM TOTALS' | awk '{ print $1 }')
        callgrind_annotate --inclusive=no "$WORK/callgrind.out" 2> /dev/null |
            awk '/PROGRAM TOTALS/ { next } /^ *[0-9,]+ +\( *[0-9.]+%\)/ { print }' | head -n 30 > "$WORK/profile.top"
        callgrind_annotate --inclusive=yes "$WORK/callgrind.out" 2> /dev/null |
            awk '/PROGRAM TOTALS/ { next } /^ *[0-9,]+ +\( *[0-9.]+%\)/ { print }' | head -n 40 > "$WORK/profile.incl"
    fi
    say "  rows cached under the profiler: $(q 'SELECT count(*) FROM cached_images')/$n; top self cost (instructions${total:+, total $total}):"
    head -n 15 "$WORK/profile.top" | cut -c1-150 | sed 's/^/      /'

    # Native CPU time (kernel included), sampled on the software clock: it
    # works without hardware counters, and SHA-256 runs its SHA-NI code here
    # (under valgrind it cannot).
    local sn=$(( IMAGES < 2000 ? IMAGES : 2000 )) clk=
    if perf record -q -e cpu-clock -o "$WORK/perf-probe.data" true > /dev/null 2>&1; then
        profile_under "$name-clock" "$sn" "perf record -e cpu-clock (software clock sampling, all threads, kernel included)" \
            "perf record -q -e cpu-clock -F 1999 -o $WORK/perf-clock.data --"
        perf report -i "$WORK/perf-clock.data" --stdio --no-children --sort dso --percent-limit 0.5 2> /dev/null |
            grep -E '^ +[0-9.]+%' | head -n 12 > "$WORK/profile.clock"
        perf report -i "$WORK/perf-clock.data" --stdio --no-children --sort dso,sym --percent-limit 0.4 2> /dev/null |
            grep -E '^ +[0-9.]+%' | head -n 25 >> "$WORK/profile.clock"
        say "  top CPU time (cpu-clock samples; the group join is idle and not sampled):"
        head -n 25 "$WORK/profile.clock" | cut -c1-150 | sed 's/^/      /'
        clk=$(json_lines "$WORK/profile.clock")
    fi

    # Off-CPU view from the scheduler (perf record -e sched:sched_switch with
    # DWARF user stacks, and --switch-events for the exact switch-in times):
    # from assignment to drained, how long the event loop (the main thread)
    # runs, and where it sleeps, by the worker's frames on its stack (state
    # S = sleeping, D = waiting for disk I/O, R = preempted while runnable).
    local offcpu=
    if perf record -q -e sched:sched_switch --switch-events -o "$WORK/perf-probe.data" true > /dev/null 2>&1; then
        profile_under "$name-sched" "$sn" "perf record -e sched:sched_switch --call-graph dwarf --switch-events (off-CPU)" \
            "perf record -q -e sched:sched_switch --call-graph dwarf,65528 --switch-events -m 64M -o $WORK/sched.data --"
        local lf=$WORK/$name-sched-w1.log s0 a d wchild
        wchild=$(grep -o 'imgcache-worker\[[0-9]*' "$lf" | head -n 1 | tr -dc 0-9)
        s0=$(log_epoch "$lf" "event=started")
        a=$(log_epoch "$lf" "event=assigned")
        d=$(log_epoch "$lf" "event=drained")
        local lastc
        lastc=$(q "SELECT extract(epoch FROM max(cached_at)) FROM cached_images")
        perf script -i "$WORK/sched.data" --show-switch-events -F tid,time,event,trace,ip,sym 2> /dev/null |
            awk -v P="$wchild" -v from="$(calc "a - s" 3 -v a="${a:-0}" -v s="${s0:-0}")" \
                -v to="$(calc "d - s" 3 -v d="${d:-0}" -v s="${s0:-0}")" \
                -v lastc="$(calc "l - s" 3 -v l="${lastc:-0}" -v s="${s0:-0}")" '
            /^ *[0-9]+ +[0-9]+\.[0-9]+: / {
                inblock = 0
                tid = $1; t = $2; sub(/:$/, "", t); t += 0
                if (tid != P) next
                if (t0 == "") t0 = t
                r = t - t0
                if ($0 ~ /sched:sched_switch/) { key = ""; n = 0; inblock = 1; state = $0; sub(/.*prev_state=/, "", state); sub(/ .*/, "", state); next }
                if ($0 ~ /PERF_RECORD_SWITCH OUT/) { if (in_t != "" && r >= from && r <= to) RUN += t - in_t; out_t = t; out_r = r; next }
                if ($0 ~ /PERF_RECORD_SWITCH IN/) {
                    if (out_t != "" && out_r >= from && out_r <= to) { k = state ": " (key == "" ? "?" : key); W[k] += t - out_t; N[k]++; TW += t - out_t; if (out_r > lastc) A[k] += t - out_t }
                    in_t = t; out_t = ""; next }
                next }
            inblock && NF >= 2 { s = $2
                if (s ~ /^rd_kafka_[a-z_]+$|^caught_up$|^PQ[a-zA-Z]+$|^redis[A-Za-z]+$|^db_[a-z_]+$|^lease_[a-z_]+$|^store_[a-z_]+$|syncfs|^fsync|^write_results$|^lookup_and_lease|^release_leases|^fetch_wait$|^curl_multi_[a-z]+$|^__libc_open64$|^rename$|^mkdir$|^worker_[a-z_]+$|^consume$|^handle_message$/)
                    if (n++ < 3) key = key (key ? " < " : "") s }
            END {
                span = to - from; if (span <= 0) span = 1
                printf "main thread, assignment to drained: %.2f s (last row committed at %.2f s); running %.2f s (%.0f%%); asleep or preempted %.2f s\n", span, lastc - from, RUN, RUN / span * 100, TW
                for (k in W) if (W[k] >= 0.005) printf "%8.0f ms %6d x  %-58s%s\n", W[k] * 1000, N[k], k, (A[k] > 0.0005 ? sprintf(" (%.0f ms of it after the last commit)", A[k] * 1000) : "") }' |
            { IFS= read -r head; echo "$head"; sort -rn | head -n 14; } > "$WORK/offcpu.txt"
        local lost
        lost=$(perf report -i "$WORK/sched.data" --stats 2> /dev/null | awk '$1 ~ /^LOST/ && $2 == "events:" { s += $3 } END { print s + 0 }')
        [ "${lost:-0}" = 0 ] || { echo "(perf lost $lost events: the figures above are incomplete)" >> "$WORK/offcpu.txt"; warn "profile: perf lost $lost events"; }
        say "  off-CPU time of the event loop by where it slept:"
        sed 's/^/      /' "$WORK/offcpu.txt"
        offcpu=$(json_lines "$WORK/offcpu.txt")
        [ "$KEEP" = 1 ] || release "$WORK/sched.data"
    fi

    # Off-CPU view: where the event loop's wall time goes (system calls of the
    # main thread only, wall time, strace -c -w). strace slows every call a
    # little; read it for proportions, not rates.
    local st=
    if command -v strace > /dev/null 2>&1 || need_pkg strace strace; then
        profile_under "$name-strace" "$sn" "strace -c -w (system calls of the worker's main thread, the event loop)" \
            "strace -c -w -o $WORK/strace.txt"
        awk 'NR > 2 && /^ *[0-9]/ && NF >= 5' "$WORK/strace.txt" | head -n 12 > "$WORK/strace.top"
        local a d
        a=$(log_epoch "$WORK/$name-strace-w1.log" "event=assigned")
        d=$(log_epoch "$WORK/$name-strace-w1.log" "event=drained")
        say "  main thread, $(calc "d - a" 1 -v d="${d:-0}" -v a="${a:-0}")s from assignment to drained (plus the group join, spent in poll):"
        sed 's/^/      /' "$WORK/strace.top"
        st=$(json_lines "$WORK/strace.top")
    fi
    J_EXTRA+=("\"profile\":{\"tool\":$(js "$tool"),\"images\":$n,\"concurrency\":$CONC,\"total_instructions\":$(js "$total"),\"top_self\":[$(json_lines "$WORK/profile.top")],\"top_inclusive\":[$(json_lines "$WORK/profile.incl")],\"cpu_clock_images\":$sn,\"cpu_clock_top\":[$clk],\"offcpu_main_thread\":[$offcpu],\"strace_main_thread_images\":$sn,\"strace_main_thread\":[$st]}")
}

# ---- the renderer beside the fleet (issue 16) ---------------------------------------
# The same live fleet twice, side by side: without, then with one
# imgcache-renderer started before the import (a FLEET_PRE_HOOK), rendering
# the image-stored events as the worker publishes them, on the same cores.
# Then the renderer is left to finish: renditions per second of its own.
start_renderer() {
    "$BIN/imgcache-renderer" -X session.timeout.ms=6000 -X heartbeat.interval.ms=1000 \
        < /dev/null > "$WORK/$1-renderer.log" 2>&1 &
    RENDER_PID=$!
    track "$RENDER_PID"
    RENDER_T0=$EPOCHREALTIME
}
renditions_done() { [ "$(q "SELECT count(*) FROM image_blobs b WHERE NOT EXISTS (SELECT 1 FROM image_renditions r WHERE r.source_sha256 = b.sha256) AND NOT EXISTS (SELECT 1 FROM render_failures f WHERE f.source_sha256 = b.sha256 AND f.permanent)")" = 0 ]; }
renderer_pair() {
    local name="w1-c$CONC-l$LAT" without with at_end blobs n secs rate
    fleet "$name-norender" a 1 "$CONC" "$LAT" "$DUP" "$MAIN_BASE" live
    without=$LAST_FLEET_E2E
    FLEET_KEEP_STORE=1 FLEET_PRE_HOOK="start_renderer $name-render" \
        fleet "$name-render" a 1 "$CONC" "$LAT" "$DUP" "$MAIN_BASE" live
    with=$LAST_FLEET_E2E
    at_end=$(q "SELECT count(*) FROM image_renditions")
    wait_for 600 renditions_done || warn "$name-render: renditions not finished after 600 s"
    secs=$(calc "e - t" 2 -v e="$EPOCHREALTIME" -v t="$RENDER_T0")
    kill -TERM "$RENDER_PID" 2> /dev/null
    wait_pids 30 "$RENDER_PID"
    IFS='|' read -r n blobs < <(q "SELECT (SELECT count(*) FROM image_renditions), (SELECT count(*) FROM image_blobs)")
    release "$IMGCACHE_STORAGE_DIR"
    local gave_up
    gave_up=$(q "SELECT count(*) FROM render_failures WHERE permanent")
    [ "$gave_up" = 0 ] || warn "$name-render: $gave_up images given up by the renderer (see $name-render-renderer.log)"
    rate=$(calc "n / s" 1 -v n="$n" -v s="$secs")
    say "renderer beside the fleet: downloads end to end $without images/s without, $with images/s with a renderer ($(calc "b / a" 2 -v a="$without" -v b="$with")x); $at_end renditions made by the last commit, all $n (of $blobs blobs) ${secs}s after the renderer's start = $rate renditions/s ($(calc "n / 3 / s" 1 -v n="$n" -v s="$secs") images/s, 3 presets each)"
    J_EXTRA+=("\"renderer_beside_fleet\":{\"config\":$(js "$name"),\"images_per_s_without\":$(jn "$without"),\"images_per_s_with\":$(jn "$with"),\"renditions_by_last_commit\":$at_end,\"renditions\":$n,\"blobs\":$blobs,\"renderer_s\":$(jn "$secs"),\"renditions_per_s\":$(jn "$rate")}")
}

# =========================================================================================
# the run
# =========================================================================================
if [ "$PROFILE" = only ]; then
    profile
    [ ${#WARNINGS[@]} -eq 0 ] || printf 'warning: %s\n' "${WARNINGS[@]}"
    exit 0
fi
media_for "$LAT"
baseline "c$CONC-l$LAT" "$WORK/manifest-a.tsv" "$LAT" "$CONC"
MAIN_BASE="c$CONC-l$LAT"
if [ "$FLEET_ONLY" = 0 ]; then
    [ "$MAIN_BASE" = c128-l50 ] || baseline "c128-l50" "$WORK/manifest-a.tsv" 50 128
    baseline "c256-l0-200k" "$WORK/manifest-b.tsv" 0 256
fi

if [ "$RENDERER_ONLY" = 1 ]; then
    renderer_pair
    echo "broker: $BROKER_DESC"
    printf '%s\n' "${TABLE[@]}"
    [ ${#WARNINGS[@]} -eq 0 ] || printf 'warning: %s\n' "${WARNINGS[@]}"
    exit 0
fi
declare -A MAIN_RATE=() MAIN_RATIO=() MAIN_DLPU=() MAIN_RSS=()
for w in $WORKERS; do
    fleet "w$w-c$CONC-l$LAT" a "$w" "$CONC" "$LAT" "$DUP" "$MAIN_BASE" live
    MAIN_RATE[$w]=$LAST_FLEET_E2E
    MAIN_DLPU[$w]=$LAST_FLEET_DLPU
    MAIN_RSS[$w]=$LAST_FLEET_RSS_MAX
done
if [ "$FLEET_ONLY" = 1 ]; then
    echo "broker: $BROKER_DESC; live fleets' fetch.wait.max.ms: ${FETCH_WAIT:-default}; worker: $WORKER_BIN"
    printf '%s\n' "${TABLE[@]}"
    [ ${#WARNINGS[@]} -eq 0 ] || printf 'warning: %s\n' "${WARNINGS[@]}"
    exit 0
fi
renderer_pair
# the dedup target: every URL in DUP events, all queued before the largest
# fleet starts, so several workers see the same URL at about the same time
maxw=$(echo $WORKERS | tr ' ' '\n' | sort -n | tail -n 1)
DEDUP_CONFIG="w$maxw-c$CONC-l$LAT-backlog"
fleet "$DEDUP_CONFIG" a "$maxw" "$CONC" "$LAT" "$DUP" "$MAIN_BASE" backlog
DEDUP_DLPU=$LAST_FLEET_DLPU
DEDUP_EVENTS=$LAST_FLEET_EVENTS
if [ "$QUICK" = 0 ]; then
    # 1 GiB of unrelated dirty data on the same filesystem when the import
    # starts (another writer: logs, a database): the worker's syncfs() waits
    # for it too
    FLEET_PRE_HOOK="cat $WORK/media/a/* | head -c 1073741824 > $WORK/unrelated-dirty.bin" \
        fleet "w1-c$CONC-l$LAT-dirty1g" a 1 "$CONC" "$LAT" "$DUP" "$MAIN_BASE" live
fi
fleet "w1-c128-l50" a 1 128 50 "$DUP" "c128-l50" live
L50_STEADY=$LAST_FLEET_STEADY
L50_E2E=$LAST_FLEET_E2E
fleet "w1-c256-200k" b 1 256 0 "$DUP" "c256-l0-200k" live
RSS256=$LAST_FLEET_RSS_MAX RSS256_CONFIG=w1-c256-200k
# the same with a backlog: librdkafka's prefetch queue is full while every
# download slot is busy, the worst case for the worker's memory
fleet "w1-c256-200k-backlog" b 1 256 0 "$DUP" "c256-l0-200k" backlog
if [ "$(calc "b > l" 0 -v b="$LAST_FLEET_RSS_MAX" -v l="$RSS256")" = 1 ]; then
    RSS256=$LAST_FLEET_RSS_MAX RSS256_CONFIG=w1-c256-200k-backlog
fi

# backlog mode: the replays below need this run's topic of LONG_DUP events
# per URL (100,000 by default), and the RSS profile is over those events
fleet "w1-c$CONC-long" a 1 "$CONC" "$LAT" "$LONG_DUP" "$MAIN_BASE" backlog
IFS='|' read -r RSS_TENTHS RSS_FIRST RSS_LAST RSS_MAX < <(rss_profile "$LAST_FLEET_RSS" "$LAST_FLEET_T0")
say "  RSS over the $LAST_FLEET_EVENTS-event run, max per tenth of the time from the first commit to exit (MiB): $RSS_TENTHS"
J_EXTRA+=("\"rss_over_time\":{\"config\":\"w1-c$CONC-long\",\"events\":$(jn "$LAST_FLEET_EVENTS"),\"consumed\":$(jn "$LAST_FLEET_CONSUMED"),\"sample_interval_s\":0.25,\"max_mib_per_tenth\":[$RSS_TENTHS],\"first_sample_mib\":$(jn "$RSS_FIRST"),\"last_sample_mib\":$(jn "$RSS_LAST"),\"max_mib\":$(jn "$RSS_MAX")}")
cp "$LAST_FLEET_RSS" "$WORK/long.rss"
replay "w1-c$CONC-long" "$LAST_FLEET_EVENTS" replay replay
R_RATE=$REPLAY_RATE R_SERVED=$REPLAY_SERVED R_RSS=$REPLAY_RSS
# librdkafka prefetches up to queued.max.messages.kbytes (64 MiB by default)
# of a backlog: the same replay with a 1 MiB prefetch shows its share of RSS
replay "w1-c$CONC-long" "$LAST_FLEET_EVENTS" replay_prefetch_1mib "replay-q1M" -X queued.max.messages.kbytes=1024

LIVE_LINES=() J_LIVE=()
live live
# the same with a 10 ms fetch wait (the dev broker's workaround): on Kafka,
# side by side, whether it still helps
live live-fetchwait10 -X fetch.wait.max.ms=10
J_EXTRA+=("\"live\":[$(IFS=,; echo "${J_LIVE[*]}")]")
[ "$PROFILE" = yes ] && profile

# ---- renditions: rendition_make against vipsthumbnail (bench/renditions.sh) -------------
REND_LINES=()
REND_X=
if [ "$RENDITIONS" = yes ]; then
    say "renditions: common/rendition.c and vipsthumbnail side by side"
    rend_args=()
    [ "$QUICK" = 1 ] && rend_args=(--images 40 --rounds 2)
    if bash "$ROOT/bench/renditions.sh" "${rend_args[@]}" > "$WORK/renditions.txt" 2>&1; then
        mapfile -t REND_LINES < <(grep -v '^json ' "$WORK/renditions.txt")
        J_EXTRA+=("\"renditions\":$(sed -n 's/^json //p' "$WORK/renditions.txt")")
        REND_X=$(awk '$1 == "once" { sub(/x$/, "", $4); print $4 }' "$WORK/renditions.txt")
    else
        warn "bench/renditions.sh failed: $(tail -n 1 "$WORK/renditions.txt")"
    fi
fi

# ---- targets ---------------------------------------------------------------------------
J_TARGETS=()
TARGET_LINES=()
target() { # name goal actual met(1/0) note
    local m
    m=$([ "$4" = 1 ] && echo met || echo MISSED)
    TARGET_LINES+=("$(printf '  %-58s %-12s %-10s %s' "$1" "$2" "$3" "$m${5:+ ($5)}")")
    J_TARGETS+=("{\"target\":$(js "$1"),\"goal\":$(js "$2"),\"actual\":$(js "$3"),\"met\":$([ "$4" = 1 ] && echo true || echo false)}")
}
for w in $WORKERS; do
    r=$(calc "a / b" 2 -v a="${MAIN_RATE[$w]}" -v b="${CURL_RATE[$MAIN_BASE]}")
    rmax=$(calc "a / b" 2 -v a="${MAIN_RATE[$w]}" -v b="${CURL_MAX[$MAIN_BASE]}")
    target "end to end, $w worker(s), ${LAT} ms: >= 0.5x curl" ">= 0.50x" "${r}x" "$(calc "r >= 0.5" 0 -v r="$r")" "median curl run; vs the fastest: ${rmax}x"
done
target "50 ms latency, c128, 1 worker: images/s (end to end)" ">= 1500" "$L50_E2E" "$(calc "r >= 1500" 0 -v r="$L50_E2E")" "first->last commit: $L50_STEADY/s"
target "downloads per unique URL, $maxw workers, $DUP events/URL (backlog)" "1.00" "$DEDUP_DLPU" "$(calc "d <= 1.0" 0 -v d="$DEDUP_DLPU")" "$DEDUP_CONFIG, $DEDUP_EVENTS events"
target "peak RSS per worker, c256, 200 KiB images" "<= 64 MiB" "$RSS256 MiB" "$(calc "r <= 64" 0 -v r="$RSS256")" "larger of live and backlog: $RSS256_CONFIG"
# growth = max of tenths 7-9 - max of tenths 2-6: the last tenth holds the
# shutdown (RSS falls there) and would hide growth
tenths_max() { echo "$RSS_TENTHS" | cut -d, -f"$1" | tr ',' '\n' | grep -v null | sort -n | tail -n 1; }
growth=$(calc "l - m" 1 -v l="$(tenths_max 7-9)" -v m="$(tenths_max 2-6)")
target "RSS growth over $LAST_FLEET_EVENTS events (max of tenths 7-9 - of 2-6)" "~0 MiB" "$growth MiB" "$(calc "g <= 2" 0 -v g="$growth")"
[ -n "$REND_X" ] && target "renditions per core (64,128,256 WebP): x vipsthumbnail" ">= 0.90x" "${REND_X}x" "$(calc "r >= 0.9" 0 -v r="$REND_X")" "rendition_make, one decode per image"
target "replay of $LAST_FLEET_EVENTS cached events, 1 worker: events/s" ">= 20000" "$R_RATE" "$(calc "r >= 20000" 0 -v r="${R_RATE:-0}")" "downloads: $R_SERVED"

# ---- report --------------------------------------------------------------------------------
MACHINE_CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM_GIB=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
OS=$(. /etc/os-release && echo "$PRETTY_NAME")
FS=$(df -T "$WORK" | awk 'NR == 2 { print $2 }')
RDKAFKA=$(pkg-config --modversion rdkafka 2>/dev/null)
CURLV=$(curl --version | head -n 1 | cut -d' ' -f2)
TOTAL=$(elapsed)

echo
echo "imgcache benchmark — commit ${COMMIT:0:12}$([ $DIRTY = true ] && echo '+dirty'), $NCPU x $MACHINE_CPU, $MEM_GIB GiB, $OS, $FS, total $TOTAL"
echo "broker: $BROKER_DESC; live fleets' fetch.wait.max.ms: ${FETCH_WAIT:-500, the default}"
printf "$ROWFMT\n" config W C lat_ms mode images e2e_s img/s xcurl imp_s stdy/s p50ms p99ms dl/URL rssMiB cpu/1k med%
for l in "${TABLE[@]}"; do echo "$l"; done
echo "  mode live: the workers run (group settled) before ONE import of all the chats (each URL in $DUP chats, one event per URL);"
echo "    backlog: $DUP imports (each URL in $DUP events; long: $LONG_DUP) first, then the workers with --drain."
echo "  e2e = (first) import start -> last row committed (max cached_at); xcurl = e2e img/s / the curl baseline of the same URLs;"
echo "  imp_s = the import's own time (live: overlapping the downloads); stdy/s = first -> last commit;"
echo "  p50/p99 = per URL, first produced_at -> cached_at: live = per-event latency (consumed as produced, queueing behind"
echo "    the import's burst included), backlog = time spent in the backlog; cpu/1k = worker CPU s per 1,000 images;"
echo "  med% = media server CPU (% of one core; $((NCPU * 100))% available); curl rows: img/s = median of the runs, stdy/s column = min-max."
echo "import alone: ${IMPORT_ALONE:-no backlog run} (every import, live ones overlapping the workers, is in results.json)"
echo "live latency (1 worker already running, chats fed at ~500/s):"
for l in "${LIVE_LINES[@]}"; do echo "  $l"; done
echo "RSS over the ${LAST_FLEET_EVENTS}-event run, max per tenth of the time from the first commit to exit (MiB): $RSS_TENTHS"
for l in "${REND_LINES[@]}"; do echo "$l"; done
echo "targets:"
for l in "${TARGET_LINES[@]}"; do echo "$l"; done
if [ ${#WARNINGS[@]} -gt 0 ]; then
    echo "warnings:"
    for l in "${WARNINGS[@]}"; do echo "  $l"; done
fi

join() { local IFS=,; echo "$*"; }
warn_json=
for w in "${WARNINGS[@]}"; do warn_json+="${warn_json:+,}$(js "$w")"; done
extra=$(join "${J_EXTRA[@]}")
cat > "$ROOT/bench/results.json.tmp" <<EOF
{
  "generated_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "commit": "$COMMIT",
  "uncommitted_changes": $DIRTY,
  "worker_binary_built": "$BIN_MTIME",
  "run": "$([ $QUICK = 1 ] && echo quick || echo full)",
  "total_time": "$TOTAL",
  "broker": {"kind": $(js "$BROKER_KIND"), "description": $(js "$BROKER_DESC"), "live_fleet_fetch_wait_max_ms": $(jn "${FETCH_WAIT:-null}")},
  "machine": {"cpus": $NCPU, "cpu": $(js "$MACHINE_CPU"), "memory_gib": $MEM_GIB, "os": $(js "$OS"), "kernel": "$(uname -r)", "filesystem": "$FS", "postgresql": "$PG_VERSION", "librdkafka": "$RDKAFKA", "curl": "$CURLV"},
  "options": {"images": $IMAGES, "chats_per_url": $DUP, "latency_ms": $LAT, "concurrency": $CONC, "workers": [$(echo $WORKERS | tr ' ' ',')], "seed": $SEED, "partitions": $PARTITIONS, "image_bytes": $BYTES_A, "rss256_images": $RSS256_IMAGES, "long_run_events": $LONG_EVENTS, "dedup_config": $(js "$DEDUP_CONFIG")},
  "baselines": [$(join "${J_BASE[@]}")],
  "import": [$(join "${J_IMPORT[@]}")],
  "fleet": [$(join "${J_FLEET[@]}")],
  $extra,
  "targets": [$(join "${J_TARGETS[@]}")],
  "warnings": [$warn_json]
}
EOF
if command -v jq > /dev/null 2>&1 && ! jq . "$ROOT/bench/results.json.tmp" > /dev/null 2>&1; then
    warn "results.json is not valid JSON (kept as bench/results.json.bad)"
    mv "$ROOT/bench/results.json.tmp" "$ROOT/bench/results.json.bad"
else
    mv "$ROOT/bench/results.json.tmp" "$ROOT/bench/results.json"
    echo "wrote bench/results.json"
fi
