# tests/lib-fleet.sh: what a test run of the fleet needs around it, shared
# by tests/integration/lib.sh, tests/chaos/chaos.sh and bench/run.sh (bash:
# all three are bash scripts): starting the programs under test (worker, dev
# broker, media server), a fresh database, and the media server's files and
# counters. Each caller keeps its own bookkeeping (which pids to stop, where
# logs go, how to fail). Source it after compose/lib-proc.sh (its wait_for
# and pid_alive), with ROOT (the repository) and BIN (the binaries' folder)
# set.
#
#   worker_spawn NAME LOG [args]  imgcache-worker --worker-id NAME in the
#                                 background with the tests' short group
#                                 timeouts, output to LOG; WORKER_PID. With
#                                 WORKER_WRAP set, that command line runs it
#                                 (/usr/bin/time, perf, strace...)
#   devbroker_start CTL OUT LOG PARTITIONS  imgcache-devbroker (librdkafka's
#                                 mock cluster) in the background, commands
#                                 read from the FIFO CTL (made here), answers
#                                 and its address to OUT; BROKER_PID, and
#                                 KAFKA_BROKERS once it serves (1 when it did
#                                 not within 30 s)
#   fresh_database DB LOG         drops and makes database DB on the server of
#                                 STACK_DATABASE_URL (psql's output to LOG)
#                                 and exports DATABASE_URL naming it
#   q SQL                         one statement on DATABASE_URL, bare output
#   media_start OUT LOG [args]    imgcache-mediaserver in the background,
#                                 stdout to OUT; MEDIA_PID, and MEDIA_URL once
#                                 it listens (1 when it did not within 15 s)
#   media_total                   requests the media server has served
#   media_counts                  "path<TAB>requests", one line per path
#   media_count PATH              requests for PATH
#   media_served_over N [PREFIX]  media_counts' lines of the paths (beginning
#                                 with PREFIX) served more than N times
#   media_fault PATH MODE [k=v...]  e.g. media_fault /a.jpg status status=503
#                                 count=2; 1 (and the answer on stderr) when
#                                 the server refuses it
#   media_reset                   counters and faults back to nothing
#   summary_field LOG NAME        counter NAME of the worker's last
#                                 event=summary line in LOG
#   media_image FILE TAG          FILE (its folder made) = the fixture
#                                 tests/fixtures/images/avatar.<FILE's
#                                 extension> with TAG appended: still that
#                                 image, with bytes (a sha256) of its own
#   urlencode STR                 STR percent-encoded for a query ('/' kept)

worker_spawn() {
    local name=$1 log=$2
    shift 2
    # shellcheck disable=SC2086
    ${WORKER_WRAP:-} "$BIN/imgcache-worker" -X session.timeout.ms=6000 -X heartbeat.interval.ms=1000 \
        --worker-id "$name" "$@" < /dev/null > "$log" 2>&1 &
    WORKER_PID=$!
}

devbroker_start() {
    KAFKA_BROKERS=
    rm -f "$1"
    mkfifo "$1" || return 1
    # stdin is the FIFO opened read-write: never end-of-file, writers never block
    "$BIN/imgcache-devbroker" --partitions "$4" <> "$1" > "$2" 2> "$3" &
    BROKER_PID=$!
    wait_for 30 grep -q '^KAFKA_BROKERS=' "$2" || return 1
    KAFKA_BROKERS=$(sed -n 's/^KAFKA_BROKERS=//p' "$2")
}

fresh_database() {
    local base=${STACK_DATABASE_URL%%\?*}
    psql -XAtq -v ON_ERROR_STOP=1 "$STACK_DATABASE_URL" \
        -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" > "$2" 2>&1 || return 1
    DATABASE_URL="${base%/*}/$1"
    # the stack's parameters (sslmode...) too
    [ "$base" != "$STACK_DATABASE_URL" ] && DATABASE_URL="$DATABASE_URL?${STACK_DATABASE_URL#*\?}"
    export DATABASE_URL
}

q() {
    psql -XAtq -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"
}

media_start() {
    local out=$1 log=$2
    shift 2
    MEDIA_URL=
    "$BIN/imgcache-mediaserver" "$@" < /dev/null > "$out" 2> "$log" &
    MEDIA_PID=$!
    wait_for 15 media_listening "$out" || return 1
    MEDIA_URL=$(sed -n 's/^MEDIA_URL=//p' "$out")
}

# 0 once OUT has the server's address; 1 also when the server has exited.
media_listening() {
    grep -q '^MEDIA_URL=' "$1" && return 0
    pid_alive "$MEDIA_PID" || return 0
    return 1
}

media_total() {
    curl -fsS "$MEDIA_URL/__stats" | sed -n 's/^{"total":\([0-9]*\).*/\1/p'
}

media_counts() {
    local stats
    stats=$(curl -fsS "$MEDIA_URL/__stats") || return 1
    printf '%s\n' "$stats" | grep -o '"/[^"]*":[0-9]*' | sed 's/^"\(.*\)":\([0-9]*\)$/\1\t\2/'
    return 0
}

media_served_over() {
    media_counts | awk -F'\t' -v n="$1" -v prefix="${2:-}" 'index($1, prefix) == 1 && $2 > n'
}

media_count() {
    curl -fsS "$MEDIA_URL/__count?path=$(urlencode "$1")"
}

media_fault() {
    local url="$MEDIA_URL/__fault?path=$(urlencode "$1")&mode=$(urlencode "$2")" kv answer
    shift 2
    for kv in "$@"; do
        url+="&$(urlencode "${kv%%=*}")=$(urlencode "${kv#*=}")"
    done
    answer=$(curl -sS -X POST "$url" 2>&1)
    case $answer in
        "ok "*) return 0 ;;
        *) echo "# media_fault: $answer" >&2; return 1 ;;
    esac
}

media_reset() {
    curl -fsS -X POST "$MEDIA_URL/__reset" > /dev/null
}

summary_field() {
    grep 'event=summary' "$1" | tail -n 1 | grep -o " $2=[0-9]*" | cut -d= -f2
}

media_image() {
    # [ -d ] is a builtin: no process per file (chaos.sh writes thousands)
    [ -d "${1%/*}" ] || mkdir -p "${1%/*}"
    { cat "$ROOT/tests/fixtures/images/avatar.${1##*.}" && printf '%s' "$2"; } > "$1"
}

urlencode() {
    local LC_ALL=C s=$1 out= c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [a-zA-Z0-9./_~-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}
