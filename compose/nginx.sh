#!/bin/sh
# nginx (Debian's nginx-light) serving the image store and the demo page on
# 127.0.0.1, with its configuration, pid, logs and temp files in DIR:
#
#   compose/nginx.sh start DIR PORT|auto STORE PREFIX PAGE_DIR
#                       render DIR/nginx.conf and DIR/server.conf, start, wait
#                       until it answers; prints the port (auto: a free one,
#                       retried when another process takes it first)
#   compose/nginx.sh render DIR LISTEN STORE PREFIX PAGE_DIR
#                       only write the two files (LISTEN: 127.0.0.1:PORT)
#   compose/nginx.sh stop DIR          safe when nothing runs
#   compose/nginx.sh status DIR        exit 0 when it runs
#
# STORE is IMGCACHE_STORAGE_DIR; PREFIX the path of IMGCACHE_PUBLIC_URL
# ("/images", or "" when the URL has none); PAGE_DIR holds index.html, served
# at /. The server block is compose/nginx-server.conf.template (also used by
# docker-compose.yml). As root, the workers run as root too: the store
# belongs to whoever ran the stack. NGINX overrides the binary.
set -u

PROG=nginx.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/compose/lib-proc.sh"
NGINX=${NGINX:-/usr/sbin/nginx}

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

nginx_running() { pid_is "$(read_pid "$DIR/nginx.pid")" "nginx: master"; }

# A folder given to nginx: absolute, and no character nginx's configuration
# syntax would read differently.
check_path() {
    case $2 in
        /*) ;;
        '') [ "$1" = PREFIX ] && return 0 ;;
        *) say "$1 '$2' is not an absolute path"; exit 2 ;;
    esac
    case $2 in
        *[!A-Za-z0-9._/+@:,=-]*) say "$1 '$2' has characters nginx.conf cannot carry unquoted"; exit 2 ;;
    esac
    return 0
}

cmd_render() { # listen store prefix page_dir
    check_path STORE "$2"
    check_path PREFIX "${3%/}"
    check_path PAGE_DIR "$4"
    mkdir -p "$DIR/tmp" || return 1
    user_line="# (not root: the workers run as the user who started nginx)"
    is_root && user_line="user $(id -un) $(id -gn);"
    NGINX_LISTEN=$1 NGINX_STORE=$2 NGINX_PREFIX=${3%/} NGINX_PAGE_DIR=$4 \
        envsubst '$NGINX_LISTEN $NGINX_STORE $NGINX_PREFIX $NGINX_PAGE_DIR' \
        < "$ROOT/compose/nginx-server.conf.template" > "$DIR/server.conf" || return 1
    NGINX_DIR=$DIR NGINX_USER_LINE=$user_line envsubst '$NGINX_DIR $NGINX_USER_LINE' \
        < "$ROOT/compose/nginx.conf.in" > "$DIR/nginx.conf"
}

# Starts nginx on port $1; 0 once it answers, 1 on failure, 3 when the port
# was taken.
start_on() {
    cmd_render "127.0.0.1:$1" "$STORE" "$PREFIX" "$PAGE_DIR" || return 1
    rm -f "$DIR/nginx.pid"
    : > "$DIR/error.log"
    if ! "$NGINX" -e "$DIR/error.log" -p "$DIR/" -c "$DIR/nginx.conf" >> "$DIR/error.log" 2>&1; then
        grep -q "Address already in use" "$DIR/error.log" && return 3
        log_tail "$DIR/error.log"
        return 1
    fi
    if wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$1/" && nginx_running; then
        return 0
    fi
    say "nginx started but does not answer on 127.0.0.1:$1"
    log_tail "$DIR/error.log"
    cmd_stop
    return 1
}

cmd_start() { # port store prefix page_dir
    [ -x "$NGINX" ] || { say "$NGINX is not installed (run: make deps; Debian package nginx-light)"; exit 1; }
    STORE=$2 PREFIX=${3%/} PAGE_DIR=$4
    mkdir -p "$DIR" "$STORE" "$PAGE_DIR" || exit 1
    if nginx_running; then
        say "nginx already runs in $DIR (pid $(read_pid "$DIR/nginx.pid")); restarting it"
        cmd_stop
    fi
    for attempt in 1 2 3 4 5; do
        port=$1
        [ "$port" = auto ] && { port=$(pick_port) || { say "no free port found for nginx"; exit 1; }; }
        start_on "$port"
        rc=$?
        if [ $rc = 0 ]; then
            say "nginx pid $(read_pid "$DIR/nginx.pid") on 127.0.0.1:$port (store $STORE under ${PREFIX:-/})"
            echo "$port"
            return 0
        fi
        [ $rc = 3 ] && [ "$1" = auto ] || break
        say "nginx: port $port was taken meanwhile; trying another (attempt $attempt)"
    done
    say "nginx failed to start"
    exit 1
}

cmd_stop() {
    stop_pidfile "$DIR/nginx.pid" "nginx: master" 15 nginx
    return 0
}

cmd_status() {
    if nginx_running; then
        echo "nginx:        running, pid $(read_pid "$DIR/nginx.pid")"
        return 0
    fi
    echo "nginx:        stopped"
    return 1
}

[ $# -ge 2 ] || usage
CMD=$1
DIR=$2
shift 2
case $CMD in
    start) [ $# = 4 ] || usage; mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd) || exit 1; cmd_start "$@" ;;
    render) [ $# = 4 ] || usage; mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd) || exit 1; cmd_render "$@" ;;
    stop) [ -d "$DIR" ] || exit 0; cmd_stop ;;
    status) [ -d "$DIR" ] || { echo "nginx:        stopped"; exit 1; }; cmd_status ;;
    *) usage ;;
esac
