#!/bin/sh
# An S3-compatible server (s3proxy, from Maven Central) for the S3 tests and
# the benchmark: its filesystem backend under DIR, AWS Signature V4 checked
# (so a signing bug fails the tests), on a free 127.0.0.1 port, with one
# bucket made by a signed PUT. Nothing is downloaded by hand and no jar is
# committed: `fetch` asks Maven for compose/s3proxy/pom.xml's dependencies
# once, into a cache folder outside the work tree.
#
#   compose/s3proxy.sh fetch          jars into $S3PROXY_JARS (once)
#   compose/s3proxy.sh start DIR      start it with its objects in DIR/data
#                                     and print, one per line,
#                                     AWS_ENDPOINT_URL=http://127.0.0.1:PORT,
#                                     AWS_REGION, AWS_ACCESS_KEY_ID,
#                                     AWS_SECRET_ACCESS_KEY, S3_BUCKET; a
#                                     restart on the same DIR keeps its port
#                                     (while free) and its objects
#   compose/s3proxy.sh stop DIR       SIGTERM, then SIGKILL; no process left
#   compose/s3proxy.sh status DIR     "running, pid N" (exit 0) or "stopped"
#   compose/s3proxy.sh pid DIR        its pid (for SIGSTOP/SIGKILL in tests)
#
# Environment:
#   S3PROXY_JARS     the jar folder (default
#                    ${XDG_CACHE_HOME:-~/.cache}/imgcache/s3proxy-4.1.0)
#   S3_BUCKET        the bucket made at start (default imgcache)
#   S3PROXY_START_TIMEOUT  seconds to wait for it to serve (default 60)
# The test credentials are made up at DIR's first start and kept in
# DIR/credentials (they guard a loopback test server, nothing else).
# Files in DIR: s3proxy.properties, credentials, port, data/, s3proxy.pid,
# s3proxy.out (its log).
set -u

PROG=s3proxy.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/compose/lib-proc.sh"

S3PROXY_VERSION=4.1.0
POM=$ROOT/compose/s3proxy/pom.xml
S3PROXY_JARS=${S3PROXY_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/imgcache/s3proxy-$S3PROXY_VERSION}
S3_BUCKET=${S3_BUCKET:-imgcache}
S3PROXY_START_TIMEOUT=${S3PROXY_START_TIMEOUT:-60}
REGION=us-east-1
# Debian's awscli: the one on PATH may be another (pyenv's) without botocore
AWS=/usr/bin/aws

usage() {
    cat >&2 <<EOF
usage: compose/s3proxy.sh fetch | start DIR | stop DIR | status DIR | pid DIR
s3proxy $S3PROXY_VERSION (S3 API, filesystem backend, SigV4 on) on a free
127.0.0.1 port, with its objects in DIR, from jars Maven fetches once into
$S3PROXY_JARS.
EOF
    exit 2
}

check_jars() {
    [ -f "$1/s3proxy-$S3PROXY_VERSION.jar" ] || { say "s3proxy-$S3PROXY_VERSION.jar is missing"; return 1; }
}

cmd_fetch() {
    MAVEN_CHECK=check_jars maven_fetch "$POM" "$S3PROXY_JARS" "s3proxy $S3PROXY_VERSION" || exit 1
}

server_pid() { read_pid "$DIR/s3proxy.pid"; }
server_running() { pid_is "$(server_pid)" org.gaul.s3proxy.Main; }

credentials() {
    if [ ! -s "$DIR/credentials" ]; then
        key=$(od -An -N8 -tx1 /dev/urandom | tr -dc '0-9a-f')
        secret=$(od -An -N20 -tx1 /dev/urandom | tr -dc '0-9a-f')
        (umask 077 && echo "AKTEST$key $secret" > "$DIR/credentials")
    fi
    read -r ACCESS_KEY SECRET_KEY < "$DIR/credentials"
}

write_config() {
    (umask 077 && cat > "$DIR/s3proxy.properties") <<EOF
# written by compose/s3proxy.sh at every start
s3proxy.endpoint=http://127.0.0.1:$PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$ACCESS_KEY
s3proxy.credential=$SECRET_KEY
jclouds.provider=filesystem
jclouds.filesystem.basedir=$DIR/data
jclouds.region=$REGION
EOF
}

choose_port() {
    if [ -s "$DIR/port" ]; then
        read -r PORT < "$DIR/port"
        [ -n "$PORT" ] && ! port_busy "$PORT" && return 0
    fi
    PORT=$(pick_port) || { say "no free port found"; return 1; }
    echo "$PORT" > "$DIR/port"
}

aws_cli() {
    AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_DEFAULT_REGION=$REGION \
        AWS_EC2_METADATA_DISABLED=true "$AWS" --endpoint-url "http://127.0.0.1:$PORT" "$@"
}

# 0 once it answers a signed request (an unsigned one proves less).
serves() { aws_cli s3api list-buckets >/dev/null 2>&1; }

make_bucket() {
    aws_cli s3api head-bucket --bucket "$S3_BUCKET" >/dev/null 2>&1 && return 0
    aws_cli s3api create-bucket --bucket "$S3_BUCKET" >> "$DIR/s3proxy.out" 2>&1 ||
        { say "cannot create bucket $S3_BUCKET"; log_tail "$DIR/s3proxy.out" 10; return 1; }
}

print_env() {
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$PORT"
    echo "AWS_REGION=$REGION"
    echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
    echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
    echo "S3_BUCKET=$S3_BUCKET"
}

start_once() {
    choose_port || return 1
    write_config
    : >> "$DIR/s3proxy.out"
    out_start=$(wc -l < "$DIR/s3proxy.out")
    setsid sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$DIR/s3proxy.pid" \
        java -Xms32m -Xmx256m -XX:+UseSerialGC -Djava.awt.headless=true -cp "$S3PROXY_JARS/*" \
        org.gaul.s3proxy.Main --properties "$DIR/s3proxy.properties" \
        < /dev/null >> "$DIR/s3proxy.out" 2>&1 &
    end=$(( $(date +%s) + S3PROXY_START_TIMEOUT ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if serves; then
            make_bucket || return 1
            say "s3proxy $S3PROXY_VERSION pid $(server_pid) on 127.0.0.1:$PORT, bucket $S3_BUCKET"
            print_env
            return 0
        fi
        if [ -s "$DIR/s3proxy.pid" ] && ! server_running; then
            break
        fi
        sleep 0.2
    done
    if server_running; then
        say "s3proxy did not serve within ${S3PROXY_START_TIMEOUT}s"
        stop_pid "$(server_pid)" org.gaul.s3proxy.Main 10
    fi
    tail -n +"$((out_start + 1))" "$DIR/s3proxy.out" | grep -q 'Address already in use' && return 3
    say "s3proxy exited while starting; it said:"
    tail -n +"$((out_start + 1))" "$DIR/s3proxy.out" | tail -n 15 | sed 's/^/    /' >&2
    return 1
}

cmd_start() {
    mkdir -p "$DIR/data" || { say "cannot create $DIR/data"; exit 1; }
    DIR=$(cd "$DIR" && pwd)
    [ -x "$AWS" ] || { say "$AWS (Debian's awscli) is not installed (run: make deps)"; exit 1; }
    credentials
    if server_running && [ -s "$DIR/port" ]; then
        read -r PORT < "$DIR/port"
        serves && make_bucket && { print_env; return 0; }
        say "s3proxy runs in $DIR but does not answer; restarting it"
        stop_pid "$(server_pid)" org.gaul.s3proxy.Main 15
    fi
    cmd_fetch
    start_on_free_ports "$DIR/port"
}

cmd_stop() {
    [ -d "$DIR" ] || return 0
    stop_pidfile "$DIR/s3proxy.pid" org.gaul.s3proxy.Main 15 s3proxy
    return 0
}

cmd_status() {
    if server_running; then
        echo "s3proxy:      running, pid $(server_pid)"
        return 0
    fi
    echo "s3proxy:      stopped"
    return 1
}

cmd_pid() {
    server_running || { say "no s3proxy runs in $DIR"; return 1; }
    server_pid
}

server_cli "$@"
