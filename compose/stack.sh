#!/bin/sh
# A local stack of real servers in one folder, for tests and the demo:
# redis-server, PostgreSQL, a Kafka broker and nginx, all on free 127.0.0.1
# ports, with their pids, logs and data in DIR.
#
#   compose/stack.sh start DIR [--fast]   start (or, if running, just print env)
#   compose/stack.sh stop DIR             stop them all; safe when nothing runs
#   compose/stack.sh env DIR              print DIR/stack.env
#   compose/stack.sh status DIR           which servers run
#
# The broker is Apache Kafka (compose/kafka.sh: jars from Maven Central, data
# in DIR/kafka) with the topics made by `imgcache-producer topics`; with
# IMGCACHE_BROKER=dev it is the dev broker instead (bin/imgcache-devbroker,
# librdkafka's in-memory mock cluster: no Java needed, nothing durable).
# start writes DIR/stack.env (". DIR/stack.env" to use it):
#   export KAFKA_BROKERS=... REDIS_URL=... DATABASE_URL=... IMGCACHE_BROKER=kafka|dev
#          KAFKA_DIR=DIR/kafka (kafka) | BROKER_CTL=DIR/broker.ctl (dev)
#          IMGCACHE_PUBLIC_URL=http://127.0.0.1:PORT/images NGINX_URL=http://127.0.0.1:PORT
# nginx (compose/nginx.sh, files in DIR/nginx) serves DIR/images, the store
# of `make demo`, under /images and DIR/page/index.html (the demo page) at /;
# without nginx installed the stack starts without it (and those two
# variables).
# `echo "down 1" > DIR/broker.ctl` sends a command to the dev broker; its
# answers go to DIR/broker.out. --fast turns PostgreSQL's durability off
# (tests only). Files in DIR: redis.{pid,log}, pg/ (data), pg.log, kafka/ or
# broker.{pid,out,log,ctl}. Works as root (PostgreSQL runs as the `postgres`
# user) and as a normal user. As root, when the `postgres` user cannot reach
# DIR (a folder under /root, which is 0700), PostgreSQL's data and log live
# in /var/lib/postgresql/imgcache/<hash of DIR>/ instead, and DIR/pg.location
# says where. IMGCACHE_DEVBROKER overrides the dev broker binary.
set -u

PROG=stack.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/compose/lib-proc.sh"
BROKER_BIN=${IMGCACHE_DEVBROKER:-$ROOT/bin/imgcache-devbroker}
BROKER_KIND=${IMGCACHE_BROKER:-kafka}
PARTITIONS=${IMGCACHE_STACK_PARTITIONS:-12}

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
A local redis-server, PostgreSQL, Kafka broker (IMGCACHE_BROKER=kafka, the
default, or dev) and nginx (serving DIR/images and DIR/page) on free
127.0.0.1 ports, with data, logs and pids in DIR.
For development and tests only.
EOF
    exit 2
}

# ---- helpers ---------------------------------------------------------------

pg_role() {
    if is_root; then echo postgres; else id -un; fi
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

stop_redis() { stop_pidfile "$DIR/redis.pid" redis-server 15 redis-server; }

# ---- PostgreSQL ------------------------------------------------------------

# PostgreSQL's data and log: DIR/pg and DIR/pg.log, or, as root when the
# postgres user cannot reach DIR (a clone under /root, which is 0700), a
# folder of its own under its home, named by a hash of DIR. DIR/pg.location
# remembers which, so stop and status find a stack started either way.
PG_HOME_STACKS=/var/lib/postgresql/imgcache
pg_locate() {
    PGROOT=$DIR
    [ -s "$DIR/pg.location" ] && PGROOT=$(cat "$DIR/pg.location")
    PGDATA=$PGROOT/pg
    PGLOG=$PGROOT/pg.log
}

pg_pid() { read_pid "$PGDATA/postmaster.pid" 2>/dev/null; }
pg_running() { pid_is "$(pg_pid)" postgres; }

# Lets the postgres user reach its folder when we are root: DIR itself when
# only DIR is closed (mktemp -d makes 0700), else a folder of its own.
pg_reach_dir() {
    is_root || return 0
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user (run: make deps)"
    [ "$PGROOT" = "$DIR" ] || return 0
    runuser -u postgres -- test -x "$DIR" && return 0
    chmod a+x "$DIR"
    runuser -u postgres -- test -x "$DIR" && return 0
    PGROOT=$PG_HOME_STACKS/$(printf '%s' "$DIR" | sha256sum | cut -c1-16)
    PGDATA=$PGROOT/pg
    PGLOG=$PGROOT/pg.log
}

# Makes PGROOT when it is not DIR, owned by postgres, and says where it is.
pg_make_root() {
    [ "$PGROOT" = "$DIR" ] && return 0
    mkdir -p "$PGROOT" || die "cannot create $PGROOT"
    chown postgres:postgres "$PG_HOME_STACKS" "$PGROOT" || die "cannot give $PGROOT to the postgres user"
    chmod 700 "$PGROOT"
    if [ ! -s "$DIR/pg.location" ]; then
        echo "$PGROOT" > "$DIR/pg.location"
        say "the postgres user cannot reach $DIR: PostgreSQL's data is in $PGROOT (see $DIR/pg.location)"
    fi
}

pg_init() {
    [ -s "$PGDATA/PG_VERSION" ] && return 0
    rm -rf "$PGDATA"
    mkdir -m 700 "$PGDATA" || return 1
    is_root && chown postgres:postgres "$PGDATA"
    set -- -D "$PGDATA" -A trust -E UTF8 --locale=C.UTF-8
    [ "$FAST" = 1 ] && set -- "$@" --no-sync
    if ! as_pg "$PGBIN/initdb" "$@" > "$DIR/pg-initdb.log" 2>&1; then
        say "initdb failed"
        log_tail "$DIR/pg-initdb.log"
        return 1
    fi
    echo "include_if_exists = 'imgcache.conf'" >> "$PGDATA/postgresql.conf"
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
    } > "$PGDATA/imgcache.conf"
    is_root && chown postgres:postgres "$PGDATA/imgcache.conf"
    return 0
}

start_pg() {
    PGBIN=$(find_pgbin) || die "PostgreSQL server binaries not found (run: make deps)"
    pg_make_root
    pg_init || return 1
    : > "$PGLOG"
    is_root && chown postgres:postgres "$PGLOG"
    PG_PORT=
    for attempt in 1 2 3 4 5; do
        port=$(pick_port) || die "no free port found for PostgreSQL"
        pg_write_conf "$port"
        : > "$PGLOG"
        if as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 -s start >> "$PGLOG" 2>&1; then
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
            as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w -s stop >/dev/null 2>&1
            log_tail "$PGLOG"
            return 1
        fi
        grep -q "could not bind\|Address already in use" "$PGLOG" || { log_tail "$PGLOG"; return 1; }
        say "PostgreSQL: port $port was taken meanwhile; trying another (attempt $attempt)"
    done
    [ -n "${PG_PORT:-}" ] || { log_tail "$PGLOG"; return 1; }
    role=$(pg_role)
    exists=$("$PGBIN/psql" -XAtq -h 127.0.0.1 -p "$PG_PORT" -U "$role" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = 'imgcache'" 2>> "$PGLOG") || {
        say "cannot connect to PostgreSQL as role '$role'"
        log_tail "$PGLOG"
        return 1
    }
    if [ "$exists" != 1 ]; then
        "$PGBIN/psql" -XAtq -h 127.0.0.1 -p "$PG_PORT" -U "$role" -d postgres \
            -c "CREATE DATABASE imgcache" >> "$PGLOG" 2>&1 || {
            say "cannot create database imgcache"
            log_tail "$PGLOG"
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
        if [ -z "$PGBIN" ] || ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 -s stop >/dev/null 2>&1; then
            stop_pid "$pid" postgres 30
        fi
        say "PostgreSQL stopped"
    fi
    return 0
}

# ---- the broker: Apache Kafka, or the dev broker --------------------------------

# What runs in DIR (the kind a stack was started with), else what to start.
broker_kind() {
    if [ -s "$DIR/broker.kind" ]; then cat "$DIR/broker.kind"; else echo "$BROKER_KIND"; fi
}

dev_running() { pid_is "$(read_pid "$DIR/broker.pid")" imgcache-devbroker; }
kafka_running() { sh "$ROOT/compose/kafka.sh" status "$DIR/kafka" > /dev/null 2>&1; }
broker_running() {
    case $(broker_kind) in
        dev) dev_running ;;
        *) kafka_running ;;
    esac
}

start_dev_broker() {
    [ -x "$BROKER_BIN" ] || die "$BROKER_BIN is missing (run: make bin/imgcache-devbroker)"
    rm -f "$DIR/broker.ctl" "$DIR/broker.pid"
    mkfifo "$DIR/broker.ctl" || return 1
    : > "$DIR/broker.out"
    : > "$DIR/broker.log"
    # Its own session, so a Ctrl-C in the terminal that ran `make demo` leaves
    # it running like the other two. stdin is the FIFO opened read-write: it
    # never sees end-of-file, and writers never block while it runs.
    setsid sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$DIR/broker.pid" \
        "$BROKER_BIN" --partitions "$PARTITIONS" <>"$DIR/broker.ctl" >"$DIR/broker.out" 2>"$DIR/broker.log" &
    i=0
    while [ $i -lt 300 ]; do
        KAFKA_BROKERS=$(sed -n 's/^KAFKA_BROKERS=//p' "$DIR/broker.out" | head -n 1)
        if [ -n "$KAFKA_BROKERS" ]; then
            say "dev broker (librdkafka's mock cluster, not Kafka) pid $(read_pid "$DIR/broker.pid") at $KAFKA_BROKERS"
            return 0
        fi
        if [ $i -gt 10 ] && ! dev_running; then
            break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    say "the dev broker did not print KAFKA_BROKERS"
    log_tail "$DIR/broker.log"
    return 1
}

# Apache Kafka, then the topics, made the way a production cluster gets them.
start_kafka() {
    out=$(sh "$ROOT/compose/kafka.sh" start "$DIR/kafka") || return 1
    KAFKA_BROKERS=${out#KAFKA_BROKERS=}
    [ -x "$ROOT/bin/imgcache-producer" ] || die "$ROOT/bin/imgcache-producer is missing (run: make)"
    if ! KAFKA_BROKERS=$KAFKA_BROKERS "$ROOT/bin/imgcache-producer" topics --partitions "$PARTITIONS" \
            > "$DIR/topics.log" 2>&1; then
        say "imgcache-producer topics failed"
        log_tail "$DIR/topics.log"
        return 1
    fi
    return 0
}

start_broker() {
    case $BROKER_KIND in
        dev) start_dev_broker ;;
        kafka) start_kafka ;;
        *) die "IMGCACHE_BROKER is '$BROKER_KIND'; use kafka (Apache Kafka, the default) or dev (the mock cluster)" ;;
    esac
    rc=$?
    [ $rc = 0 ] && echo "$BROKER_KIND" > "$DIR/broker.kind"
    return $rc
}

stop_broker() {
    stop_pidfile "$DIR/broker.pid" imgcache-devbroker 15 "dev broker"
    [ -d "$DIR/kafka" ] && sh "$ROOT/compose/kafka.sh" stop "$DIR/kafka"
    rm -f "$DIR/broker.kind"
    return 0
}

# ---- nginx -------------------------------------------------------------------

have_nginx() { [ -x "${NGINX:-/usr/sbin/nginx}" ]; }
nginx_running() { sh "$ROOT/compose/nginx.sh" status "$DIR/nginx" > /dev/null 2>&1; }

start_nginx() {
    NGINX_PORT=
    if ! have_nginx; then
        say "nginx is not installed (Debian package nginx-light; make deps): the store is not served over HTTP"
        return 0
    fi
    NGINX_PORT=$(sh "$ROOT/compose/nginx.sh" start "$DIR/nginx" auto "$DIR/images" /images "$DIR/page") || return 1
    return 0
}

stop_nginx() { sh "$ROOT/compose/nginx.sh" stop "$DIR/nginx"; }

# ---- commands --------------------------------------------------------------

stop_all() {
    stop_nginx
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
    pg_locate
    if [ -s "$DIR/stack.env" ] && redis_running && pg_running && broker_running &&
       [ "$(broker_kind)" = "$BROKER_KIND" ] && { ! have_nginx || nginx_running; }; then
        cat "$DIR/stack.env"
        return 0
    fi
    if redis_running || pg_running || broker_running || nginx_running; then
        say "a partial stack (or one with another broker) runs in $DIR; restarting it"
        stop_all
    fi
    rm -f "$DIR/stack.env"
    pg_reach_dir
    STARTING=1
    start_redis || { say "redis-server failed to start"; stop_all; exit 1; }
    start_pg || { say "PostgreSQL failed to start"; stop_all; exit 1; }
    start_broker || { say "the broker ($BROKER_KIND) failed to start"; stop_all; exit 1; }
    start_nginx || { say "nginx failed to start"; stop_all; exit 1; }
    if [ "$BROKER_KIND" = dev ]; then
        broker_env="IMGCACHE_BROKER=dev BROKER_CTL=$DIR/broker.ctl"
    else
        broker_env="IMGCACHE_BROKER=kafka KAFKA_DIR=$DIR/kafka"
    fi
    echo "export KAFKA_BROKERS=$KAFKA_BROKERS REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" \
        "DATABASE_URL=postgresql://$(pg_role)@127.0.0.1:$PG_PORT/imgcache" \
        "$broker_env" ${NGINX_PORT:+"IMGCACHE_PUBLIC_URL=http://127.0.0.1:$NGINX_PORT/images"} \
        ${NGINX_PORT:+"NGINX_URL=http://127.0.0.1:$NGINX_PORT"} > "$DIR/stack.env.tmp" &&
        mv "$DIR/stack.env.tmp" "$DIR/stack.env" || { stop_all; die "cannot write $DIR/stack.env"; }
    STARTING=0
    cat "$DIR/stack.env"
}

cmd_stop() {
    [ -d "$DIR" ] || return 0
    DIR=$(cd "$DIR" && pwd)
    pg_locate
    stop_all
}

cmd_env() {
    [ -s "$DIR/stack.env" ] || die "no stack in $DIR (start one: compose/stack.sh start $DIR)"
    cat "$DIR/stack.env"
}

cmd_status() {
    pg_locate
    rc=0
    if redis_running; then echo "redis-server: running, pid $(read_pid "$DIR/redis.pid")"; else echo "redis-server: stopped"; rc=1; fi
    if pg_running; then echo "postgresql:   running, pid $(pg_pid)"; else echo "postgresql:   stopped"; rc=1; fi
    case $(broker_kind) in
        dev) if dev_running; then echo "dev broker:   running, pid $(read_pid "$DIR/broker.pid")"; else echo "dev broker:   stopped"; rc=1; fi ;;
        *) sh "$ROOT/compose/kafka.sh" status "$DIR/kafka" || rc=1 ;;
    esac
    if have_nginx; then sh "$ROOT/compose/nginx.sh" status "$DIR/nginx" || rc=1; fi
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
