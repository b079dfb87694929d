# tests/integration/lib.sh: sourced (by bash) at the top of every
# integration script:   . "$ROOT/tests/integration/lib.sh"
#
# tests/run.sh exports ROOT, BIN, TESTS_TMP (a fresh folder per script) and
# the stack's KAFKA_BROKERS, REDIS_URL, DATABASE_URL, BROKER_CTL. lib.sh sets
# IMG (tests/fixtures/images) and MEDIA ($TESTS_TMP/media, not made).
#
#   it_setup [partitions]      own database, empty Redis, own broker (Apache
#                              Kafka with its topics, or the dev broker:
#                              IMGCACHE_BROKER), IMGCACHE_* settings,
#                              `imgcache-producer migrate`
#   start_media DIR [args...]  media server -> MEDIA_URL, MEDIA_PID; one on
#                              127.0.0.1 is added to IMGCACHE_ALLOW_HOSTS
#   media_count PATH | media_total | media_counts | media_fault PATH MODE [k=v...] |
#   media_reset | urlencode STR      (tests/lib-fleet.sh)
#   broker_name | broker_down | broker_up | broker_kill | broker_freeze |
#   broker_thaw                the script's broker (see "the broker" below)
#   broker_ctl "down 1"        one dev broker command; 0 when it answers ok
#                              (the answer is printed; in $(...) it is bare)
#   start_nginx STORE PREFIX PAGE_DIR   nginx (compose/nginx.sh) serving
#                              STORE under PREFIX and PAGE_DIR/index.html
#                              at / -> NGINX_URL (http://127.0.0.1:PORT)
#   start_worker NAME [args]   imgcache-worker in the background, log NAME.log
#   stop_worker NAME [secs]    SIGTERM, wait; returns the worker's exit status
#   kill_worker NAME           SIGKILL
#   worker_counter NAME FIELD  FIELD of the worker's event=summary line
#   wait_worker NAME [secs]    wait for exit (default 60 s); its exit status,
#                              124 on timeout
#   q "SQL"                    psql one statement on the script's database
#                              (tests/lib-fleet.sh)
#   wait_for SECS CMD...       poll CMD every 0.2 s; 1 on timeout
#                              (compose/lib-proc.sh, with pid_alive,
#                              descendants, wait_pid, now_ms...)
#   check NAME CMD...          "ok - NAME" or "not ok - NAME" plus CMD's output
#   check_eq NAME EXPECTED ACTUAL
#   absent STR FILE...         0 when the fixed string STR is in none of the
#                              FILEs (check "..." absent "$TOKEN" out.log)
#   storage_problems [DIR]     prints every disagreement of the store and the
#                              image_blobs/cached_images rows
#   it_done                    checks the store against the rows (when
#                              it_setup ran), then exits 1 if any check
#                              failed, else 0
#
# Every process started here is stopped when the script exits, however it
# exits. check runs CMD in the current shell (so wait_worker works inside it)
# and returns CMD's status. Never print a line starting with "ok " yourself:
# tests/run.sh counts those as passed checks.

: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${BIN:=$ROOT/bin}"
export ROOT BIN

IT_NAME=$(basename "$0" .sh)
IT_OWN_TMP=0
if [ -z "${TESTS_TMP:-}" ]; then
    TESTS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/imgcache-it.XXXXXX")
    IT_OWN_TMP=1
fi
mkdir -p "$TESTS_TMP"
export TESTS_TMP

# the fixture images, and the folder a script's media server serves
IMG=$ROOT/tests/fixtures/images
MEDIA=$TESTS_TMP/media

IT_CHECKS=0
IT_FAILED=0
IT_MEDIA_N=0
IT_PIDS=()
IT_KAFKA_DIRS=()
IT_NGINX_DIRS=()
declare -A IT_WORKER_PID=()
BROKER_PID=

# ---- processes -----------------------------------------------------------------

PROG=$IT_NAME
. "$ROOT/compose/lib-proc.sh"
. "$ROOT/tests/lib-fleet.sh"

# Remembers a pid to stop at exit (also in a file, for tests/run.sh).
_it_track() {
    IT_PIDS+=("$1")
    echo "$1" >> "$TESTS_TMP/.it-pids"
}

_it_cleanup() {
    local rc=$? dir
    trap - EXIT INT TERM HUP
    stop_tree 5 "${IT_PIDS[@]}"
    wait 2>/dev/null
    # the brokers run in sessions of their own (setsid): stopped by name
    for dir in "${IT_KAFKA_DIRS[@]}"; do
        sh "$ROOT/compose/kafka.sh" stop "$dir" > /dev/null 2>&1
    done
    for dir in "${IT_NGINX_DIRS[@]}"; do
        sh "$ROOT/compose/nginx.sh" stop "$dir" > /dev/null 2>&1
    done
    [ "$IT_OWN_TMP" = 1 ] && rm -rf "$TESTS_TMP"
    exit "$rc"
}
exit_trap _it_cleanup

# Ends the script: a failed prerequisite, not a test result.
it_bail() {
    echo "not ok - $IT_NAME setup: $1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then
        tail -n 20 "$2" | sed 's/^/#   /'
    fi
    exit 1
}

# ---- checks ---------------------------------------------------------------------

check() {
    local name=$1 rc out="$TESTS_TMP/.check.out"
    shift
    IT_CAPTURING=1 "$@" > "$out" 2>&1
    rc=$?
    IT_CHECKS=$((IT_CHECKS + 1))
    if [ $rc -eq 0 ]; then
        echo "ok - $name"
    else
        IT_FAILED=$((IT_FAILED + 1))
        echo "not ok - $name"
        echo "#   command: $*"
        echo "#   exit status: $rc"
        head -n 40 "$out" | sed 's/^/#   /'
    fi
    return $rc
}

absent() {
    local s=$1
    shift
    ! grep -qF -- "$s" "$@"
}

check_eq() {
    IT_CHECKS=$((IT_CHECKS + 1))
    if [ "$2" == "$3" ]; then
        echo "ok - $1"
        return 0
    fi
    IT_FAILED=$((IT_FAILED + 1))
    echo "not ok - $1"
    printf '%s\n' "$2" | head -n 20 | sed 's/^/#   expected: /'
    printf '%s\n' "$3" | head -n 20 | sed 's/^/#   actual:   /'
    return 1
}

# Every script that set up a database and a store ends with this check: a
# worker that deleted or damaged a stored blob (as store_open once did to
# <dir>/ff on every restart) fails the script that ran it, whatever that
# script was testing. IT_STORE_CHECK=0 skips it.
it_done() {
    if [ "${IT_SETUP_DONE:-0}" = 1 ] && [ "${IT_STORE_CHECK:-1}" = 1 ]; then
        check_eq "the store agrees with image_blobs" "" "$(storage_problems)"
    fi
    echo "# $IT_NAME: $IT_CHECKS checks, $IT_FAILED failed"
    [ "$IT_FAILED" -eq 0 ] && exit 0
    exit 1
}

# ---- storage ----------------------------------------------------------------------

# Prints one line per problem: a cached row without its blob file, a file
# whose bytes do not hash to its sha256, a stored file no row points at, a
# .part file outside .tmp, a blob count that differs from the file count.
storage_problems() {
    local dir=${1:-$IMGCACHE_STORAGE_DIR} sha key got f rel files rows
    while IFS='|' read -r sha key; do
        [ -n "$sha" ] || continue
        if [ ! -f "$dir/$key" ]; then
            echo "missing blob file $key (sha256 $sha)"
            continue
        fi
        got=$(sha256sum "$dir/$key" | cut -d' ' -f1)
        [ "$got" = "$sha" ] || echo "$key hashes to $got, row says $sha"
        case $key in "${sha:0:2}/$sha".*) ;; *) echo "$key is not <first 2 hex digits>/<sha256>.<ext> for $sha" ;; esac
    done < <(q "SELECT b.sha256, b.storage_key FROM image_blobs b")
    q "SELECT c.source_url FROM cached_images c LEFT JOIN image_blobs b USING (sha256) WHERE b.sha256 IS NULL" |
        sed 's/^/cached row without an image_blobs row: /'
    # renditions (schema 8) are stored files too, named by their own rows
    q "SELECT storage_key FROM image_blobs UNION SELECT storage_key FROM image_renditions" | sort > "$TESTS_TMP/.keys"
    find "$dir" -path "$dir/.tmp" -prune -o -type f -print | sed "s|^$dir/||" | sort > "$TESTS_TMP/.files"
    comm -13 "$TESTS_TMP/.keys" "$TESTS_TMP/.files" | sed 's/^/stored file no row points at: /'
    grep '\.part$' "$TESTS_TMP/.files" | sed 's/^/a .part file outside .tmp: /'
    files=$(wc -l < "$TESTS_TMP/.files")
    rows=$(wc -l < "$TESTS_TMP/.keys")
    [ "$files" = "$rows" ] || echo "$files stored files, $rows image_blobs and image_renditions keys"
    return 0
}

# ---- nginx -----------------------------------------------------------------------

# nginx daemonizes (its pid file is in TESTS_TMP/nginx): stopped at exit by
# compose/nginx.sh, not by pid.
start_nginx() {
    local dir=$TESTS_TMP/nginx port
    IT_NGINX_DIRS+=("$dir")
    port=$(sh "$ROOT/compose/nginx.sh" start "$dir" auto "$1" "$2" "$3" 2> "$TESTS_TMP/nginx.log") ||
        it_bail "nginx did not start" "$TESTS_TMP/nginx.log"
    NGINX_URL=http://127.0.0.1:$port
}

# ---- setup ----------------------------------------------------------------------

it_setup() {
    local parts=${1:-12} db
    if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
        it_bail "no stack: run through tests/run.sh (sh tests/run.sh $IT_NAME), or source a stack.env"
    fi
    : "${STACK_DATABASE_URL:=$DATABASE_URL}"
    export STACK_DATABASE_URL

    # a database of our own, named after the script
    db=it_$(printf '%s' "$IT_NAME" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_' '_' | cut -c1-60)
    fresh_database "$db" "$TESTS_TMP/setup.log" || it_bail "cannot create database $db" "$TESTS_TMP/setup.log"

    [ "$(redis-cli -u "$REDIS_URL" FLUSHALL 2>&1)" = OK ] || it_bail "redis FLUSHALL failed at $REDIS_URL"

    export IMGCACHE_STORAGE_DIR="$TESTS_TMP/images"
    export IMGCACHE_PUBLIC_URL=http://cdn.test/images
    export IMGCACHE_LOG_LEVEL=info
    # the test media servers listen on loopback, which workers refuse unless
    # trusted: start_media trusts each one's origin (host and port) here
    export IMGCACHE_ALLOW_HOSTS=
    mkdir -p "$IMGCACHE_STORAGE_DIR"
    IT_SETUP_DONE=1

    # a broker of our own: no offsets, groups or events from other scripts
    case ${IMGCACHE_BROKER:-kafka} in
        dev) _it_dev_broker_start "$parts" ;;
        kafka) _it_kafka_start "$parts" ;;
        *) it_bail "IMGCACHE_BROKER is '$IMGCACHE_BROKER'; use kafka or dev" ;;
    esac
    echo "# broker: $(broker_name) at $KAFKA_BROKERS"

    if [ -x "$BIN/imgcache-producer" ]; then
        "$BIN/imgcache-producer" migrate > "$TESTS_TMP/migrate.log" 2>&1 ||
            it_bail "imgcache-producer migrate failed" "$TESTS_TMP/migrate.log"
    else
        echo "# $BIN/imgcache-producer is not built: no migration"
    fi
}

# ---- the broker -----------------------------------------------------------------
# Apache Kafka (IMGCACHE_BROKER=kafka, the default; compose/kafka.sh, data in
# $TESTS_TMP/kafka) or the dev broker (IMGCACHE_BROKER=dev: librdkafka's
# mock cluster, for a machine without Java). The helpers fail the broker the
# way each allows:
#   broker_name        "Apache Kafka 3.9.1" (read from the broker's own log)
#                      or "dev broker (librdkafka mock cluster, not Kafka)"
#   broker_down        Kafka: a clean stop (SIGTERM); dev: "down 1"
#   broker_up          Kafka: a start on the same data and port; dev: "up 1"
#   broker_kill        Kafka only: SIGKILL (then broker_up)
#   broker_freeze / broker_thaw   Kafka only: SIGSTOP / SIGCONT

_it_kafka_start() {
    KAFKA_DIR=$TESTS_TMP/kafka
    if [ -d "$KAFKA_DIR" ]; then
        sh "$ROOT/compose/kafka.sh" stop "$KAFKA_DIR" > /dev/null 2>&1
        rm -rf "$KAFKA_DIR"
    fi
    IT_KAFKA_DIRS+=("$KAFKA_DIR")
    sh "$ROOT/compose/kafka.sh" start "$KAFKA_DIR" > "$TESTS_TMP/kafka.out" 2> "$TESTS_TMP/kafka.log" ||
        it_bail "Apache Kafka did not start" "$TESTS_TMP/kafka.log"
    KAFKA_BROKERS=$(sed -n 's/^KAFKA_BROKERS=//p' "$TESTS_TMP/kafka.out")
    export KAFKA_BROKERS KAFKA_DIR
    [ -x "$BIN/imgcache-producer" ] || it_bail "$BIN/imgcache-producer is not built"
    "$BIN/imgcache-producer" topics --partitions "$1" > "$TESTS_TMP/topics.log" 2>&1 ||
        it_bail "imgcache-producer topics failed" "$TESTS_TMP/topics.log"
}

_it_dev_broker_start() {
    local ok=1
    if pid_alive "$BROKER_PID"; then
        kill -TERM "$BROKER_PID"
        wait_pid "$BROKER_PID" 10 > /dev/null
    fi
    [ -x "$BIN/imgcache-devbroker" ] || it_bail "$BIN/imgcache-devbroker is not built"
    BROKER_PID=
    devbroker_start "$TESTS_TMP/broker.ctl" "$TESTS_TMP/broker.out" "$TESTS_TMP/broker.log" "$1" || ok=0
    [ -n "$BROKER_PID" ] && _it_track "$BROKER_PID"
    [ $ok = 1 ] || it_bail "the dev broker did not start" "$TESTS_TMP/broker.log"
    BROKER_CTL=$TESTS_TMP/broker.ctl
    BROKER_OUT=$TESTS_TMP/broker.out
    export KAFKA_BROKERS BROKER_CTL BROKER_OUT BROKER_PID
}

broker_name() {
    local v
    if [ "${IMGCACHE_BROKER:-kafka}" = dev ]; then
        echo "dev broker (librdkafka mock cluster, not Kafka)"
        return 0
    fi
    v=$(sh "$ROOT/compose/kafka.sh" version "$KAFKA_DIR" 2>/dev/null) || v="(version not logged)"
    echo "Apache Kafka $v"
}

_it_kafka_only() {
    [ "${IMGCACHE_BROKER:-kafka}" = kafka ] && return 0
    echo "# $1 needs Apache Kafka (IMGCACHE_BROKER=kafka)" >&2
    return 2
}

_it_kafka_pid() {
    sh "$ROOT/compose/kafka.sh" pid "$KAFKA_DIR"
}

broker_down() {
    if [ "${IMGCACHE_BROKER:-kafka}" = dev ]; then
        broker_ctl "down 1"
        return
    fi
    sh "$ROOT/compose/kafka.sh" stop "$KAFKA_DIR" 2>> "$TESTS_TMP/kafka.log"
}

broker_up() {
    local out
    if [ "${IMGCACHE_BROKER:-kafka}" = dev ]; then
        broker_ctl "up 1"
        return
    fi
    out=$(sh "$ROOT/compose/kafka.sh" start "$KAFKA_DIR" 2>> "$TESTS_TMP/kafka.log") || return 1
    # the same address as before, or the clients cannot find it again
    [ "$out" = "KAFKA_BROKERS=$KAFKA_BROKERS" ] || { echo "# broker_up: $out, was $KAFKA_BROKERS" >&2; return 1; }
}

broker_kill() {
    local pid
    _it_kafka_only broker_kill || return
    pid=$(_it_kafka_pid) || return 1
    kill -KILL "$pid" && wait_gone "$pid" 30
}

broker_freeze() {
    local pid
    _it_kafka_only broker_freeze || return
    pid=$(_it_kafka_pid) || return 1
    kill -STOP "$pid"
}

broker_thaw() {
    local pid
    _it_kafka_only broker_thaw || return
    pid=$(_it_kafka_pid) || return 1
    kill -CONT "$pid"
}

# ---- dev broker control -------------------------------------------------------------

_it_lines_over() {
    [ "$(wc -l < "$1")" -gt "$2" ]
}

broker_ctl() {
    local out=${BROKER_OUT:-${BROKER_CTL%.ctl}.out} before reply
    [ -p "$BROKER_CTL" ] || { echo "# broker_ctl: $BROKER_CTL is not a FIFO" >&2; return 2; }
    before=$(wc -l < "$out")
    # the write blocks only if no broker reads the FIFO: bound it
    timeout 5 bash -c 'printf "%s\n" "$1" > "$2"' _ "$1" "$BROKER_CTL" ||
        { echo "# broker_ctl: no dev broker reads $BROKER_CTL" >&2; return 2; }
    if ! wait_for 15 _it_lines_over "$out" "$before"; then
        echo "# broker_ctl: no answer to '$1'" >&2
        return 2
    fi
    reply=$(sed -n "$((before + 1))p" "$out")
    BROKER_REPLY=$reply
    # bare when captured; commented when it would land in the test's output
    if [ "${BASH_SUBSHELL:-0}" -gt 0 ] || [ -n "${IT_CAPTURING:-}" ]; then
        printf '%s\n' "$reply"
    else
        printf '# broker: %s\n' "$reply"
    fi
    case $reply in
        ok*) return 0 ;;
        *) return 1 ;;
    esac
}

# ---- media server ---------------------------------------------------------------

start_media() {
    local dir=$1 log ok=1
    shift
    IT_MEDIA_N=$((IT_MEDIA_N + 1))
    log=$TESTS_TMP/media$IT_MEDIA_N.log
    [ -x "$BIN/imgcache-mediaserver" ] || it_bail "$BIN/imgcache-mediaserver is not built"
    media_start "$TESTS_TMP/media$IT_MEDIA_N.out" "$log" --root "$dir" "$@" || ok=0
    _it_track "$MEDIA_PID"
    [ $ok = 1 ] || it_bail "the media server did not start" "$log"
    # workers trust scheme + host + port: add this server's port. One bound
    # elsewhere (30-hostile's "internal" 127.0.0.2) stays untrusted.
    case $MEDIA_URL in
        http://127.0.0.1:*)
            IMGCACHE_ALLOW_HOSTS=${IMGCACHE_ALLOW_HOSTS:+$IMGCACHE_ALLOW_HOSTS,}${MEDIA_URL#http://} ;;
    esac
    export MEDIA_URL MEDIA_PID IMGCACHE_ALLOW_HOSTS
}

# ---- workers --------------------------------------------------------------------

start_worker() {
    local name=$1
    shift
    [ -x "$BIN/imgcache-worker" ] || it_bail "$BIN/imgcache-worker is not built"
    worker_spawn "$name" "$TESTS_TMP/$name.log" "$@"
    IT_WORKER_PID[$name]=$WORKER_PID
    echo "$WORKER_PID" > "$TESTS_TMP/$name.pid"
    _it_track "$WORKER_PID"
}

_it_worker_pid() {
    local pid=${IT_WORKER_PID[$1]:-}
    [ -n "$pid" ] || { echo "# no worker named '$1'" >&2; return 1; }
    echo "$pid"
}

stop_worker() {
    local pid rc
    pid=$(_it_worker_pid "$1") || return 127
    kill -TERM "$pid" 2>/dev/null
    wait_pid "$pid" "${2:-60}"
    rc=$?
    if [ $rc -eq 124 ] && pid_alive "$pid"; then
        echo "# stop_worker $1: still running ${2:-60}s after SIGTERM; killed" >&2
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 124
    fi
    return $rc
}

kill_worker() {
    local pid
    pid=$(_it_worker_pid "$1") || return 127
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

worker_counter() {
    summary_field "$TESTS_TMP/$1.log" "$2"
}

wait_worker() {
    local pid rc
    pid=$(_it_worker_pid "$1") || return 127
    wait_pid "$pid" "${2:-60}"
    rc=$?
    [ $rc -eq 124 ] && pid_alive "$pid" && echo "# wait_worker $1: still running after ${2:-60}s" >&2
    return $rc
}
