#!/bin/sh
# A local stack of real servers in one folder, for tests and the demo:
# redis-server, PostgreSQL and the dev broker (bin/imgcache-devbroker), all on
# free 127.0.0.1 ports, with their pids, logs and data in DIR.
#
#   compose/stack.sh start DIR [--fast]   start (or, if running, just print env)
#   compose/stack.sh stop DIR             stop all three; safe when nothing runs
#   compose/stack.sh env DIR              print DIR/stack.env
#   compose/stack.sh status DIR           which servers run
#
# start writes DIR/stack.env (". DIR/stack.env" to use it):
#   export KAFKA_BROKERS=... REDIS_URL=... DATABASE_URL=... BROKER_CTL=DIR/broker.ctl
# `echo "down 1" > DIR/broker.ctl` sends a command to the dev broker; its
# answers go to DIR/broker.out. --fast turns PostgreSQL's durability off
# (tests only). Files in DIR: redis.{pid,log}, pg/ (data), pg.log,
# broker.{pid,out,log,ctl}. Works as root (PostgreSQL runs as the `postgres`
# user) and as a normal user. IMGCACHE_DEVBROKER overrides the broker binary.
set -u

PROG=stack.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BROKER_BIN=${IMGCACHE_DEVBROKER:-$ROOT/bin/imgcache-devbroker}

say() { echo "$PROG: $*" >&2; }
# During start, a failure stops whatever already started.
STARTING=0
die() {
    say "$*"
    if [ "$STARTING" = 1 ]; then
        STARTING=0
        stop_all
    fi
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: compose/stack.sh start DIR [--fast] | stop DIR | env DIR | status DIR
A local redis-server, PostgreSQL and dev broker on free 127.0.0.1 ports, with
data, logs and pids in DIR. For development and tests only.
EOF
    exit 2
}

# ---- helpers ---------------------------------------------------------------

is_root() { [ "$(id -u)" = 0 ]; }

# Runs a PostgreSQL server program as the user that owns the data.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_role() {
    if is_root; then echo postgres; else id -un; fi
}

find_pgbin() {
    if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then
        echo /usr/lib/postgresql/15/bin
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    d=$(command -v pg_ctl 2>/dev/null) && { dirname "$d"; return 0; }
    return 1
}

# 0 when pid runs (not a zombie) and its command line contains the word.
pid_is() {
    [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ "$state" != Z ] || return 1
    tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

read_pid() { [ -s "$1" ] && head -n 1 "$1" | tr -dc '0-9'; }

# 0 when something accepts TCP connections on 127.0.0.1:port.
port_busy() {
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# A port that nothing listens on, below Linux's ephemeral range (32768+) so
# that servers binding port 0 (mock brokers, media servers) never take it.
pick_port() {
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        n=$(od -An -N2 -tu2 /dev/urandom | tr -dc '0-9')
        p=$((15000 + n % 17000))
        port_busy "$p" || { echo "$p"; return 0; }
    done
    return 1
}

# Waits until pid is gone: TERM, up to $3 seconds, then KILL.
stop_pid() {
    pid=$1 name=$2 secs=${3:-15}
    pid_is "$pid" "$name" || return 0
    kill -TERM "$pid" 2>/dev/null
    i=0
    while pid_is "$pid" "$name" && [ $i -lt $((secs * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if pid_is "$pid" "$name"; then
        say "$name (pid $pid) did not stop in ${secs}s; killing it"
        kill -KILL "$pid" 2>/dev/null
        while pid_is "$pid" "$name"; do sleep 0.1; done
    fi
    return 0
}

log_tail() {
    [ -s "$1" ] || return 0
    say "last lines of $1:"
    tail -n "${2:-20}" "$1" | sed 's/^/    /' >&2
}

# ---- redis -----------------------------------------------------------------

redis_running() { pid_is "$(read_pid "$DIR/redis.pid")" redis-server; }

start_redis() {
    command -v redis-server >/dev/null || die "redis-server is not installed (run: make deps)"
    for attempt in 1 2 3 4 5; do
        port=$(pick_port) || die "no free port found for redis"
        rm -f "$DIR/redis.pid"
        : > "$DIR/redis.log"
        redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
            --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" \
            --dir "$DIR" --protected-mode yes >> "$DIR/redis.log" 2>&1
        i=0
        while [ $i -lt 100 ]; do
            pid=$(read_pid "$DIR/redis.pid")
            if [ -n "$pid" ] && pid_is "$pid" redis-server &&
               redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null |
                   grep -q "^process_id:$pid"; then
                REDIS_PORT=$port
                say "redis-server pid $pid on 127.0.0.1:$port"
                return 0
            fi
            if grep -q "Address already in use" "$DIR/redis.log"; then
                break
            fi
            if [ $i -gt 20 ] && { [ -z "$pid" ] || ! pid_is "$pid" redis-server; }; then
                break
            fi
            sleep 0.1
            i=$((i + 1))
        done
        [ -n "$(read_pid "$DIR/redis.pid")" ] && stop_pid "$(read_pid "$DIR/redis.pid")" redis-server 5
        grep -q "Address already in use" "$DIR/redis.log" || break
        say "redis: port $port was taken meanwhile; trying another (attempt $attempt)"
    done
    log_tail "$DIR/redis.log"
    return 1
}

stop_redis() {
    pid=$(read_pid "$DIR/redis.pid")
    if [ -n "$pid" ] && pid_is "$pid" redis-server; then
        stop_pid "$pid" redis-server 15
        say "redis-server stopped"
    fi
    rm -f "$DIR/redis.pid"
}

# ---- PostgreSQL ------------------------------------------------------------

pg_pid() { read_pid "$DIR/pg/postmaster.pid" 2>/dev/null; }
pg_running() { pid_is "$(pg_pid)" postgres; }

# Lets the postgres user reach DIR when we are root (mktemp -d makes 0700).
pg_reach_dir() {
    is_root || return 0
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user (run: make deps)"
    runuser -u postgres -- test -x "$DIR" && return 0
    chmod a+x "$DIR"
    runuser -u postgres -- test -x "$DIR" ||
        die "the postgres user cannot reach $DIR (a parent folder is closed); use a folder under /tmp"
}

pg_init() {
    [ -s "$DIR/pg/PG_VERSION" ] && return 0
    rm -rf "$DIR/pg"
    mkdir -m 700 "$DIR/pg" || return 1
    is_root && chown postgres:postgres "$DIR/pg"
    set -- -D "$DIR/pg" -A trust -E UTF8 --locale=C.UTF-8
    [ "$FAST" = 1 ] && set -- "$@" --no-sync
    if ! as_pg "$PGBIN/initdb" "$@" > "$DIR/pg-initdb.log" 2>&1; then
        say "initdb failed"
        log_tail "$DIR/pg-initdb.log"
        return 1
    fi
    echo "include_if_exists = 'imgcache.conf'" >> "$DIR/pg/postgresql.conf"
}

pg_write_conf() {
    {
        echo "# written by compose/stack.sh at every start"
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $1"
        echo "unix_socket_directories = ''"
        echo "max_connections = 300"
        if [ "$FAST" = 1 ]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } > "$DIR/pg/imgcache.conf"
    is_root && chown postgres:postgres "$DIR/pg/imgcache.conf"
    return 0
}

start_pg() {
    PGBIN=$(find_pgbin) || die "PostgreSQL server binaries not found (run: make deps)"
    pg_reach_dir
    pg_init || return 1
    : > "$DIR/pg.log"
    is_root && chown postgres:postgres "$DIR/pg.log"
    PG_PORT=
    for attempt in 1 2 3 4 5; do
        port=$(pick_port) || die "no free port found for PostgreSQL"
        pg_write_conf "$port"
        : > "$DIR/pg.log"
        if as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -w -t 60 -s start >> "$DIR/pg.log" 2>&1; then
            i=0
            while ! "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; do
                i=$((i + 1))
                [ $i -lt 30 ] || { say "PostgreSQL started but does not answer on port $port"; break; }
                sleep 0.2
            done
            if [ $i -lt 30 ]; then
                PG_PORT=$port
                break
            fi
            as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m immediate -w -s stop >/dev/null 2>&1
            log_tail "$DIR/pg.log"
            return 1
        fi
        grep -q "could not bind\|Address already in use" "$DIR/pg.log" || { log_tail "$DIR/pg.log"; return 1; }
        say "PostgreSQL: port $port was taken meanwhile; trying another (attempt $attempt)"
    done
    [ -n "${PG_PORT:-}" ] || { log_tail "$DIR/pg.log"; return 1; }
    role=$(pg_role)
    exists=$("$PGBIN/psql" -XAtq -h 127.0.0.1 -p "$PG_PORT" -U "$role" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = 'imgcache'" 2>> "$DIR/pg.log") || {
        say "cannot connect to PostgreSQL as role '$role'"
        log_tail "$DIR/pg.log"
        return 1
    }
    if [ "$exists" != 1 ]; then
        "$PGBIN/psql" -XAtq -h 127.0.0.1 -p "$PG_PORT" -U "$role" -d postgres \
            -c "CREATE DATABASE imgcache" >> "$DIR/pg.log" 2>&1 || {
            say "cannot create database imgcache"
            log_tail "$DIR/pg.log"
            return 1
        }
    fi
    say "PostgreSQL pid $(pg_pid) on 127.0.0.1:$PG_PORT (role $role, database imgcache)"
    return 0
}

stop_pg() {
    pid=$(pg_pid)
    if [ -n "$pid" ] && pid_is "$pid" postgres; then
        PGBIN=$(find_pgbin) || PGBIN=
        if [ -z "$PGBIN" ] || ! as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast -w -t 30 -s stop >/dev/null 2>&1; then
            stop_pid "$pid" postgres 30
        fi
        say "PostgreSQL stopped"
    fi
    return 0
}

# ---- dev broker ------------------------------------------------------------

broker_running() { pid_is "$(read_pid "$DIR/broker.pid")" imgcache-devbroker; }

start_broker() {
    [ -x "$BROKER_BIN" ] || die "$BROKER_BIN is missing (run: make bin/imgcache-devbroker)"
    rm -f "$DIR/broker.ctl" "$DIR/broker.pid"
    mkfifo "$DIR/broker.ctl" || return 1
    : > "$DIR/broker.out"
    : > "$DIR/broker.log"
    # Its own session, so a Ctrl-C in the terminal that ran `make demo` leaves
    # it running like the other two. stdin is the FIFO opened read-write: it
    # never sees end-of-file, and writers never block while it runs.
    setsid sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$DIR/broker.pid" \
        "$BROKER_BIN" <>"$DIR/broker.ctl" >"$DIR/broker.out" 2>"$DIR/broker.log" &
    i=0
    while [ $i -lt 300 ]; do
        KAFKA_BROKERS=$(sed -n 's/^KAFKA_BROKERS=//p' "$DIR/broker.out" | head -n 1)
        if [ -n "$KAFKA_BROKERS" ]; then
            say "dev broker pid $(read_pid "$DIR/broker.pid") at $KAFKA_BROKERS"
            return 0
        fi
        if [ $i -gt 10 ] && ! broker_running; then
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    say "the dev broker did not print KAFKA_BROKERS"
    log_tail "$DIR/broker.log"
    return 1
}

stop_broker() {
    pid=$(read_pid "$DIR/broker.pid")
    if [ -n "$pid" ] && pid_is "$pid" imgcache-devbroker; then
        stop_pid "$pid" imgcache-devbroker 15
        say "dev broker stopped"
    fi
    rm -f "$DIR/broker.pid"
    return 0
}

# ---- commands --------------------------------------------------------------

stop_all() {
    stop_broker
    stop_redis
    stop_pg
    rm -f "$DIR/stack.env"
}

cmd_start() {
    mkdir -p "$DIR" || die "cannot create $DIR"
    DIR=$(cd "$DIR" && pwd)
    case $DIR in
        *[!A-Za-z0-9._/+@:,=-]*) die "folder '$DIR' has characters the env file cannot carry unquoted" ;;
    esac
    if [ -s "$DIR/stack.env" ] && redis_running && pg_running && broker_running; then
        cat "$DIR/stack.env"
        return 0
    fi
    if redis_running || pg_running || broker_running; then
        say "a partial stack runs in $DIR; restarting it"
        stop_all
    fi
    rm -f "$DIR/stack.env"
    # before anything starts: a folder PostgreSQL cannot use fails at once
    pg_reach_dir
    STARTING=1
    start_redis || { say "redis-server failed to start"; stop_all; exit 1; }
    start_pg || { say "PostgreSQL failed to start"; stop_all; exit 1; }
    start_broker || { say "the dev broker failed to start"; stop_all; exit 1; }
    echo "export KAFKA_BROKERS=$KAFKA_BROKERS REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" \
        "DATABASE_URL=postgresql://$(pg_role)@127.0.0.1:$PG_PORT/imgcache" \
        "BROKER_CTL=$DIR/broker.ctl" > "$DIR/stack.env.tmp" &&
        mv "$DIR/stack.env.tmp" "$DIR/stack.env" || { stop_all; die "cannot write $DIR/stack.env"; }
    STARTING=0
    cat "$DIR/stack.env"
}

cmd_stop() {
    [ -d "$DIR" ] || return 0
    DIR=$(cd "$DIR" && pwd)
    stop_all
}

cmd_env() {
    [ -s "$DIR/stack.env" ] || die "no stack in $DIR (start one: compose/stack.sh start $DIR)"
    cat "$DIR/stack.env"
}

cmd_status() {
    rc=0
    if redis_running; then echo "redis-server: running, pid $(read_pid "$DIR/redis.pid")"; else echo "redis-server: stopped"; rc=1; fi
    if pg_running; then echo "postgresql:   running, pid $(pg_pid)"; else echo "postgresql:   stopped"; rc=1; fi
    if broker_running; then echo "dev broker:   running, pid $(read_pid "$DIR/broker.pid")"; else echo "dev broker:   stopped"; rc=1; fi
    return $rc
}

[ $# -ge 2 ] || usage
CMD=$1
DIR=$2
shift 2
FAST=0
for a in "$@"; do
    case $a in
        --fast) FAST=1 ;;
        *) say "unknown argument '$a'"; usage ;;
    esac
done
[ -n "$DIR" ] || usage

case $CMD in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    status) cmd_status ;;
    *) usage ;;
esac
