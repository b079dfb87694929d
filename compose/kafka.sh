#!/bin/sh
# A one-node Apache Kafka broker (KRaft: broker and controller in one JVM,
# no ZooKeeper) for tests, the demo and the benchmark, from the jars Maven
# Central publishes. Nothing is downloaded by hand and no jar is committed:
# `fetch` asks Maven for compose/kafka/pom.xml's dependencies once, into a
# cache folder outside the work tree.
#
#   compose/kafka.sh fetch            jars into $KAFKA_JARS (once; later runs
#                                     reuse them and download nothing)
#   compose/kafka.sh start DIR
#                                     start a broker with its data in DIR and
#                                     print KAFKA_BROKERS=127.0.0.1:PORT; a
#                                     new DIR is formatted with a fresh
#                                     cluster id, an existing one keeps its
#                                     topics and committed offsets (and its
#                                     port, while that is free)
#   compose/kafka.sh stop DIR         SIGTERM, up to 30 s for a controlled
#                                     shutdown, then SIGKILL; no process left
#   compose/kafka.sh status DIR       "running, pid N" (exit 0) or "stopped"
#   compose/kafka.sh pid DIR          the broker's pid (for SIGSTOP/SIGKILL in
#                                     tests)
#   compose/kafka.sh version DIR      the version the broker logged at start
#
# Environment:
#   KAFKA_JARS       the jar folder (default
#                    ${XDG_CACHE_HOME:-~/.cache}/imgcache/kafka-3.9.1)
#   KAFKA_HEAP_OPTS  the broker's heap (default -Xms128m -Xmx512m: measured
#                    in the README; the stock scripts' 1 GiB is for real loads)
#   KAFKA_START_TIMEOUT  seconds to wait for the broker to serve (default 90)
# Files in DIR: server.properties, log4j.properties, data/ (the log), ports,
# kafka.pid, kafka.out (JVM stdout/stderr), server.log (the broker's log).
set -u

PROG=kafka.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/compose/lib-proc.sh"

KAFKA_VERSION=3.9.1
POM=$ROOT/compose/kafka/pom.xml
KAFKA_JARS=${KAFKA_JARS:-${XDG_CACHE_HOME:-$HOME/.cache}/imgcache/kafka-$KAFKA_VERSION}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}

usage() {
    cat >&2 <<EOF
usage: compose/kafka.sh fetch | start DIR | stop DIR | status DIR | pid DIR | version DIR
A one-node Apache Kafka $KAFKA_VERSION broker (KRaft) on a free 127.0.0.1 port,
with its data in DIR, from jars Maven fetches once into
$KAFKA_JARS.
EOF
    exit 2
}

need() {
    command -v "$1" >/dev/null 2>&1 || { say "$1 is not installed (run: make deps)"; exit 1; }
}

# ---- the jars ----------------------------------------------------------------

# Exactly one slf4j binding and a 1.7 API, or the broker logs nothing.
check_jars() {
    bindings=$(ls "$1" | grep -c '^slf4j-\(reload4j\|log4j12\|simple\|jdk14\|nop\)-')
    if [ "$bindings" != 1 ] || ! ls "$1" | grep -q '^slf4j-api-1\.7\.'; then
        say "the fetched jars do not hold exactly one slf4j binding and slf4j-api 1.7.x:"
        ls "$1" | grep '^slf4j' | sed 's/^/    /' >&2
        return 1
    fi
    [ -f "$1/kafka_2.13-$KAFKA_VERSION.jar" ] || { say "kafka_2.13-$KAFKA_VERSION.jar is missing"; return 1; }
}

cmd_fetch() {
    MAVEN_CHECK=check_jars maven_fetch "$POM" "$KAFKA_JARS" "Apache Kafka $KAFKA_VERSION" || exit 1
}

# ---- the broker ----------------------------------------------------------------

java_run() {
    # shellcheck disable=SC2086
    java -Djava.awt.headless=true -cp "$KAFKA_JARS/*" "$@"
}

broker_pid() { read_pid "$DIR/kafka.pid"; }
broker_running() { pid_is "$(broker_pid)" kafka.Kafka; }

write_config() {
    port=$1 cport=$2
    cat > "$DIR/server.properties" <<EOF
# written by compose/kafka.sh at every start: a one-node test broker
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
# one node: the internal topics cannot have the default 3 replicas, or no
# group ever forms and no transaction starts
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# 1 partition instead of 50: the first coordinator look-up is quick
offsets.topic.num.partitions=1
# the first rebalance of a group at once, not after 3 s
group.initial.rebalance.delay.ms=0
# topics are created on purpose (imgcache-producer topics), never by a typo
auto.create.topics.enable=false
# sized for 2 cores shared with PostgreSQL, Redis and the workers
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
# the log cleaner looks for work every second (default 15 s), so a compacted
# topic with a small segment.ms is cleaned while a test waits
log.cleaner.backoff.ms=1000
# a broker killed with SIGKILL registers again once its old registration
# expires: after 3 s instead of 9 (heartbeats every 500 ms keep a live one)
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# a group member frozen or killed is noticed within 6 s (tests use
# session.timeout.ms=6000, the smallest a default broker accepts)
group.min.session.timeout.ms=6000
EOF
    cat > "$DIR/log4j.properties" <<EOF
# written by compose/kafka.sh: the broker's log in one file, warnings of the
# chatty request and controller loggers only
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$DIR/server.log
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.controller=INFO
EOF
}

format_storage() {
    [ -s "$DIR/data/meta.properties" ] && return 0
    id=$(java_run kafka.tools.StorageTool random-uuid 2>> "$DIR/kafka.out" | tail -n 1) || id=
    [ -n "$id" ] || { say "kafka.tools.StorageTool random-uuid failed"; log_tail "$DIR/kafka.out"; return 1; }
    if ! java_run -Dlog4j.configuration="file:$DIR/log4j.properties" kafka.tools.StorageTool format \
            -t "$id" -c "$DIR/server.properties" --ignore-formatted >> "$DIR/kafka.out" 2>&1; then
        say "formatting $DIR/data failed"
        log_tail "$DIR/kafka.out"
        return 1
    fi
    say "formatted $DIR/data (cluster id $id)"
}

# 0 once the broker answers a metadata request on port $1.
serves() {
    kcat -L -b "127.0.0.1:$1" -m 2 2>/dev/null | grep -q '^ *1 brokers:'
}

# Ports of the last start, while both are free: a restart keeps the address
# its clients know.
choose_ports() {
    if [ -s "$DIR/ports" ]; then
        read -r PORT CPORT < "$DIR/ports"
        if [ -n "$PORT" ] && [ -n "$CPORT" ] && ! port_busy "$PORT" && ! port_busy "$CPORT"; then
            return 0
        fi
    fi
    PORT=$(pick_port) && CPORT=$(pick_port) && [ "$PORT" != "$CPORT" ] ||
        { say "no free ports found"; return 1; }
    echo "$PORT $CPORT" > "$DIR/ports"
}

start_once() {
    choose_ports || return 1
    write_config "$PORT" "$CPORT"
    format_storage || return 1
    : >> "$DIR/server.log"
    : >> "$DIR/kafka.out"
    log_start=$(wc -l < "$DIR/server.log")
    out_start=$(wc -l < "$DIR/kafka.out")
    # its own session: a Ctrl-C in the terminal that ran `make demo` leaves
    # it running like the other servers
    # shellcheck disable=SC2086
    setsid sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$DIR/kafka.pid" \
        java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$DIR/log4j.properties" -Dkafka.logs.dir="$DIR" \
        -cp "$KAFKA_JARS/*" kafka.Kafka "$DIR/server.properties" \
        < /dev/null >> "$DIR/kafka.out" 2>&1 &
    end=$(( $(date +%s) + KAFKA_START_TIMEOUT ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if serves "$PORT"; then
            say "Apache Kafka $(cmd_version 2>/dev/null || echo "$KAFKA_VERSION") pid $(broker_pid) on 127.0.0.1:$PORT (controller $CPORT)"
            echo "KAFKA_BROKERS=127.0.0.1:$PORT"
            return 0
        fi
        if [ -s "$DIR/kafka.pid" ] && ! broker_running; then
            break
        fi
        sleep 0.2
    done
    if broker_running; then
        say "the broker did not serve within ${KAFKA_START_TIMEOUT}s"
        stop_pid "$(broker_pid)" kafka.Kafka 10
    fi
    tail -n +"$((log_start + 1))" "$DIR/server.log" | grep -q 'Address already in use' && return 3
    say "the broker exited while starting; the JVM said:"
    tail -n +"$((out_start + 1))" "$DIR/kafka.out" | tail -n 10 | sed 's/^/    /' >&2
    say "the last lines it logged ($DIR/server.log):"
    tail -n +"$((log_start + 1))" "$DIR/server.log" | grep -v '^[[:space:]]' | tail -n 15 | sed 's/^/    /' >&2
    return 1
}

cmd_start() {
    mkdir -p "$DIR" || { say "cannot create $DIR"; exit 1; }
    DIR=$(cd "$DIR" && pwd)
    if broker_running && [ -s "$DIR/ports" ]; then
        read -r PORT CPORT < "$DIR/ports"
        serves "$PORT" && { echo "KAFKA_BROKERS=127.0.0.1:$PORT"; return 0; }
        say "a broker runs in $DIR but does not answer; restarting it"
        stop_pid "$(broker_pid)" kafka.Kafka 30
    fi
    need java
    need kcat
    cmd_fetch
    start_on_free_ports "$DIR/ports"
}

cmd_stop() {
    [ -d "$DIR" ] || return 0
    stop_pidfile "$DIR/kafka.pid" kafka.Kafka 30 "Apache Kafka"
    return 0
}

cmd_status() {
    if broker_running; then
        echo "kafka:        running, pid $(broker_pid)"
        return 0
    fi
    echo "kafka:        stopped"
    return 1
}

cmd_pid() {
    broker_running || { say "no broker runs in $DIR"; return 1; }
    broker_pid
}

# As the broker itself logged it at start (AppInfoParser: "Kafka version: X").
cmd_version() {
    DIR=$(cd "$DIR" 2>/dev/null && pwd) || exit 1
    v=$(sed -n 's/.*Kafka version: \([^ ]*\).*/\1/p' "$DIR/server.log" 2>/dev/null | tail -n 1)
    [ -n "$v" ] || return 1
    echo "$v"
}

server_cli "$@"
