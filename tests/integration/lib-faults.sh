# tests/integration/lib-faults.sh: helpers for the hostile-input, secrets and
# outage scripts. Source it right after lib.sh and BEFORE it_setup:
#
#   . "$ROOT/tests/integration/lib.sh"
#   . "$ROOT/tests/integration/lib-faults.sh"
#   it_setup 12
#
# (it_setup replaces BROKER_CTL with the script's own dev broker; the shared
# stack's folder is learnt from the stack's BROKER_CTL before that.)
#
#   publish_url URL...           one image-needed event per URL (key = URL)
#   publish_raw KEY FILE [PART]  one message whose value is FILE's bytes
#   topic_dump TOPIC             every message as "key<TAB>headers" (kcat %h)
#   hdr NAME                     filter: the header NAME of each dumped line
#   stack_redis_stop / stack_redis_start      the shared stack's redis-server
#   stack_pg_stop / stack_pg_start            the shared stack's PostgreSQL
#   faults_restore               starts whatever of the two is stopped (also
#                                run at exit, however the script exits)
# (find_pgbin, as_pg and now_ms: compose/lib-proc.sh, which lib.sh sources)

# tests/run.sh runs every *.sh of this folder: run directly, this file checks
# what its stack helpers need (see the end of the file).
FAULTS_SELF_TEST=0
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    FAULTS_SELF_TEST=1
    . "$(cd "$(dirname "$0")" && pwd)/lib.sh"
    : "${STACK_DATABASE_URL:=${DATABASE_URL:-}}"
fi

# ---- the shared stack -------------------------------------------------------------

_faults_stack_dir() {
    local d
    for d in "${IMGCACHE_STACK_DIR:-}" "$(dirname "${BROKER_CTL:-/nonexistent/x}")" \
        "$(cd "$TESTS_TMP/../../stack" 2>/dev/null && pwd)"; do
        [ -n "$d" ] && [ -d "$d/pg" ] && [ -f "$d/redis.pid" ] && { echo "$d"; return 0; }
    done
    return 1
}
FAULTS_STACK_DIR=$(_faults_stack_dir) || FAULTS_STACK_DIR=
FAULTS_REDIS_DOWN=0
FAULTS_PG_DOWN=0

# The port of the stack's redis (REDIS_URL is the stack's: it_setup keeps it).
_faults_redis_port() {
    local hp=${REDIS_URL#redis://}
    hp=${hp#*@}
    hp=${hp%%/*}
    echo "${hp##*:}"
}

stack_redis_stop() {
    [ -n "$FAULTS_STACK_DIR" ] || { echo "# no stack folder known" >&2; return 1; }
    FAULTS_REDIS_DOWN=1
    # SHUTDOWN NOSAVE: the stack's redis has no persistence anyway
    redis-cli -u "$REDIS_URL" SHUTDOWN NOSAVE > /dev/null 2>&1
    wait_for 15 _faults_redis_gone
}

_faults_redis_gone() {
    ! redis-cli -u "$REDIS_URL" PING > /dev/null 2>&1
}

_faults_redis_up() {
    [ "$(redis-cli -u "$REDIS_URL" PING 2>/dev/null)" = PONG ]
}

# The same command line compose/stack.sh uses, so its `stop` still works.
stack_redis_start() {
    local dir=$FAULTS_STACK_DIR port
    [ -n "$dir" ] || { echo "# no stack folder known" >&2; return 1; }
    _faults_redis_up && { FAULTS_REDIS_DOWN=0; return 0; }
    port=$(_faults_redis_port)
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --dir "$dir" --protected-mode yes >> "$dir/redis.log" 2>&1
    wait_for 20 _faults_redis_up || { echo "# redis did not come back on port $port" >&2; return 1; }
    FAULTS_REDIS_DOWN=0
}

_faults_pg_ready() {
    psql -XAtq "$STACK_DATABASE_URL" -c 'SELECT 1' > /dev/null 2>&1
}

stack_pg_stop() {
    local bin
    [ -n "$FAULTS_STACK_DIR" ] || { echo "# no stack folder known" >&2; return 1; }
    bin=$(find_pgbin) || { echo "# pg_ctl not found" >&2; return 1; }
    FAULTS_PG_DOWN=1
    as_pg "$bin/pg_ctl" -D "$FAULTS_STACK_DIR/pg" -m "${1:-fast}" -w -t 30 -s stop > /dev/null 2>&1
    ! _faults_pg_ready
}

stack_pg_start() {
    local bin
    [ -n "$FAULTS_STACK_DIR" ] || { echo "# no stack folder known" >&2; return 1; }
    _faults_pg_ready && { FAULTS_PG_DOWN=0; return 0; }
    bin=$(find_pgbin) || { echo "# pg_ctl not found" >&2; return 1; }
    as_pg "$bin/pg_ctl" -D "$FAULTS_STACK_DIR/pg" -l "$FAULTS_STACK_DIR/pg.log" -w -t 60 -s start \
        > /dev/null 2>&1
    wait_for 30 _faults_pg_ready || { echo "# PostgreSQL did not come back" >&2; return 1; }
    FAULTS_PG_DOWN=0
}

faults_restore() {
    if [ "$FAULTS_REDIS_DOWN" = 1 ] || { [ -n "$FAULTS_STACK_DIR" ] && ! _faults_redis_up; }; then
        stack_redis_start || echo "# faults_restore: redis did not start" >&2
    fi
    if [ "$FAULTS_PG_DOWN" = 1 ] || { [ -n "$FAULTS_STACK_DIR" ] && ! _faults_pg_ready; }; then
        stack_pg_start || echo "# faults_restore: PostgreSQL did not start" >&2
    fi
}

_faults_on_exit() {
    local rc=$?
    faults_restore
    (exit "$rc")
    _it_cleanup
}
trap _faults_on_exit EXIT

# ---- Kafka ------------------------------------------------------------------------

# One image-needed event per URL, keyed by the URL (as the producer does).
publish_url() {
    local u
    for u in "$@"; do
        printf '%s\t{"v":1,"source_url":"%s","chat_id":"test","reason":"test"}\n' "$u" "$u"
    done | kcat -b "$KAFKA_BROKERS" -P -t "${TOPIC:-image-needed}" -K '	' 2>&1
}

# One message with FILE's bytes as its value (no line splitting).
publish_raw() {
    local key=$1 file=$2 part=${3:-}
    # kcat -P with file arguments sends each file as one message
    kcat -b "$KAFKA_BROKERS" -P -t "${TOPIC:-image-needed}" -k "$key" ${part:+-p "$part"} "$file" 2>&1
}

topic_dump() {
    kcat -b "$KAFKA_BROKERS" -C -t "$1" -e -q -f '%k\t%h\n' 2>/dev/null
}

# Lines of "key<TAB>headers" in, the value of header $1 out (one per line).
# kcat prints headers as name=value,name=value without escaping: a value
# ends where the next known header name begins (error_message has commas).
hdr() {
    awk -F'\t' -v name="$1" '
        BEGIN { n = split("source_topic source_partition source_offset attempts error_class " \
                          "error_message first_failed_at next_attempt_at http_status", names, " ") }
        {
            h = "," $2
            p = index(h, "," name "=")
            if (!p) next
            v = substr(h, p + length(name) + 2)
            cut = length(v) + 1
            for (i = 1; i <= n; i++) {
                q = index(v, "," names[i] "=")
                if (q && q < cut) cut = q
            }
            print substr(v, 1, cut - 1)
        }'
}

# ---- run directly -------------------------------------------------------------------

if [ "$FAULTS_SELF_TEST" = 1 ]; then
    check "the shared stack's folder is found (redis.pid, pg/)" test -n "$FAULTS_STACK_DIR"
    check "its redis answers on REDIS_URL" _faults_redis_up
    check "its PostgreSQL answers" _faults_pg_ready
    check "pg_ctl is installed" find_pgbin
    check "pg_ctl knows the stack's cluster" as_pg "$(find_pgbin)/pg_ctl" -D "$FAULTS_STACK_DIR/pg" status
    it_done
fi
