#!/usr/bin/env bash
# `imgcache-producer topics` against a real one-node Apache Kafka broker
# (compose/kafka.sh, its own, in $TESTS_TMP/kafka): creates the five topics
# (compacted main topic, time retention on -retry and -dlt, the compacted
# image-stored topic (IMGCACHE_STORED_TOPIC) and the renderer's dead
# letters on its -dlt, with -dlt's retention), read back with
# DescribeConfigs by a second run); a second run changes nothing; a
# differing partition count is a note; a main topic that is not compacted
# is reported and exits 1, and stays as it was; --config reaches the main
# topic; a replication factor above the broker count, an unknown option, a
# bad number exit 2 with a message naming the setting and create nothing;
# an unreachable cluster and the dev broker (no Admin API) end within
# --timeout with a message naming KAFKA_BROKERS. No database is needed.
. "$ROOT/tests/integration/lib.sh"

P="$BIN/imgcache-producer"
KDIR="$TESTS_TMP/kafka"
export IMGCACHE_LOG_LEVEL=warn
# image-stored under the main topic's prefix, so partitions_of lists it too
export IMGCACHE_STORED_TOPIC=image-needed-stored

# The broker runs under setsid, outside our process group: stop it
# explicitly, then let lib.sh's cleanup stop the rest (with our status).
stop_kafka() {
    local rc=$?
    sh "$ROOT/compose/kafka.sh" stop "$KDIR" > /dev/null 2>&1
    (exit $rc)
    _it_cleanup
}
trap stop_kafka EXIT

sh "$ROOT/compose/kafka.sh" start "$KDIR" > "$TESTS_TMP/kafka.start" 2>&1 ||
    it_bail "compose/kafka.sh start failed" "$TESTS_TMP/kafka.start"
KAFKA_BROKERS=$(sed -n 's/^KAFKA_BROKERS=//p' "$TESTS_TMP/kafka.start")
[ -n "$KAFKA_BROKERS" ] || it_bail "compose/kafka.sh printed no KAFKA_BROKERS" "$TESTS_TMP/kafka.start"
export KAFKA_BROKERS
_it_track "$(sh "$ROOT/compose/kafka.sh" pid "$KDIR")"
echo "# broker: Apache Kafka $(sh "$ROOT/compose/kafka.sh" version "$KDIR") at $KAFKA_BROKERS"

# Runs the producer with the arguments; stdout in $OUT, stderr in $ERR, the
# exit status in $RC. `timeout` only turns a hang into a failure.
run() {
    timeout 120 "$P" "$@" > "$TESTS_TMP/out" 2> "$TESTS_TMP/err"
    RC=$?
    OUT=$(cat "$TESTS_TMP/out")
    ERR=$(cat "$TESTS_TMP/err")
}
# "name partitions" of every topic whose name starts with $1, sorted, as
# the broker's metadata (kcat -L) says.
partitions_of() {
    kcat -b "$KAFKA_BROKERS" -L 2>/dev/null |
        sed -n 's/^  topic "\([^"]*\)" with \([0-9]*\) partitions:$/\1 \2/p' |
        awk -v p="$1" 'index($1, p) == 1' | sort
}
# Succeeds when the fixed string $2 is in $1.
has() {
    case $1 in *"$2"*) return 0 ;; esac
    echo "'$2' not in:"
    printf '%s\n' "$1"
    return 1
}

# --- creation ----------------------------------------------------------------------
run topics --partitions 3
check_eq "first run exits 0" 0 "$RC"
check_eq "first run creates the five topics" \
"topic image-needed created (partitions 3, replication-factor default, cleanup.policy compact)
topic image-needed-retry created (partitions 3, replication-factor default, cleanup.policy delete, retention.ms 604800000)
topic image-needed-dlt created (partitions 3, replication-factor default, cleanup.policy delete, retention.ms 2592000000)
topic image-needed-stored created (partitions 3, replication-factor default, cleanup.policy compact)
topic image-needed-stored-dlt created (partitions 3, replication-factor default, cleanup.policy delete, retention.ms 2592000000)
created=5 existing=0 differing=0" "$OUT"
check_eq "first run warns of nothing" "" "$ERR"
check_eq "the broker has the five topics, 3 partitions each" \
"image-needed 3
image-needed-dlt 3
image-needed-retry 3
image-needed-stored 3
image-needed-stored-dlt 3" "$(partitions_of image-needed)"

# --- idempotent: the configs read back from the broker ------------------------------
run topics --partitions 3
check_eq "second run exits 0" 0 "$RC"
check_eq "second run reads back compaction and retention, creates nothing" \
"topic image-needed exists (partitions 3, cleanup.policy compact)
topic image-needed-retry exists (partitions 3, cleanup.policy delete, retention.ms 604800000)
topic image-needed-dlt exists (partitions 3, cleanup.policy delete, retention.ms 2592000000)
topic image-needed-stored exists (partitions 3, cleanup.policy compact)
topic image-needed-stored-dlt exists (partitions 3, cleanup.policy delete, retention.ms 2592000000)
created=0 existing=5 differing=0" "$OUT"
check_eq "second run warns of nothing" "" "$ERR"

# --- a different partition count: a note, nothing changed ---------------------------
run topics
check_eq "another partition count exits 0" 0 "$RC"
check "the note names topic, setting, actual and expected" \
    has "$ERR" "warning: topic image-needed-retry: partitions is 3, expected 12 (left unchanged)"
check "the summary counts the differences" has "$OUT" "created=0 existing=5 differing=5"
check_eq "the partitions stay as they were" \
"image-needed 3
image-needed-dlt 3
image-needed-retry 3
image-needed-stored 3
image-needed-stored-dlt 3" "$(partitions_of image-needed)"

# --- a main topic that is not compacted: reported, exit 1, unchanged -----------------
run --topic legacy --stored-topic legacy-stored topics --config cleanup.policy=delete --retry-retention 1h
check_eq "pre-creating legacy (not compacted) exits 0" 0 "$RC"
run --topic legacy --stored-topic legacy-stored topics
check_eq "a main topic without compaction exits 1" 1 "$RC"
check "the warning names the topic, cleanup.policy, what it is and what was expected" \
    has "$ERR" "warning: topic legacy: cleanup.policy is delete, expected compact (left unchanged)"
check "a differing retention on -retry is reported too" \
    has "$ERR" "warning: topic legacy-retry: retention.ms is 3600000, expected 604800000 (left unchanged)"
check "the exists line shows the topic's own policy" \
    has "$OUT" "topic legacy exists (partitions 12, cleanup.policy delete)"
run --topic legacy --stored-topic legacy-stored topics --config cleanup.policy=delete --retry-retention 1h
check_eq "legacy is left unchanged (as pre-created, nothing differs)" \
    "0 created=0 existing=5 differing=0" "$RC $(printf '%s\n' "$OUT" | tail -n 1)"

# --- --config reaches the main topic (as a compaction test needs) --------------------
run --topic compacting --stored-topic compacting-stored topics --partitions 1 --config segment.ms=100 --config min.cleanable.dirty.ratio=0.01
check_eq "--config: created, exit 0" "0 created=5 existing=0 differing=0" "$RC $(printf '%s\n' "$OUT" | tail -n 1)"
run --topic compacting --stored-topic compacting-stored topics --partitions 1 --config segment.ms=100 --config min.cleanable.dirty.ratio=0.01
check "--config values are read back from the broker" \
    has "$OUT" "topic compacting exists (partitions 1, cleanup.policy compact, segment.ms 100, min.cleanable.dirty.ratio 0.01)"
check "-retry does not get the main topic's --config" \
    has "$OUT" "topic compacting-retry exists (partitions 1, cleanup.policy delete, retention.ms 604800000)"
check "nor does the renderer's dead-letter topic" \
    has "$OUT" "topic compacting-stored-dlt exists (partitions 1, cleanup.policy delete, retention.ms 2592000000)"

# --- refused settings: exit 2, named, nothing created ---------------------------------
run --topic rf3 topics --replication-factor 3
check_eq "--replication-factor 3 on one broker exits 2" 2 "$RC"
check_eq "its message names the setting and the broker count" \
    "imgcache-producer: --replication-factor 3 is more than the 1 broker(s) of the cluster" "$ERR"
check_eq "--replication-factor 3 creates none of the three" "" "$(partitions_of rf3)"

run --topic badcfg topics --config no.such.config=1
check_eq "an unknown topic config exits 2" 2 "$RC"
check "its message names the config" has "$ERR" "no.such.config"
check_eq "an unknown topic config creates none of the three" "" "$(partitions_of badcfg)"

run topics --no-such-option=hunter2
check_eq "an unknown option exits 2" 2 "$RC"
check_eq "its message names the option, not its value" \
    "imgcache-producer: topics: unknown option or argument '--no-such-option' (see topics --help)" "$ERR"

run topics --partitions many
check_eq "a non-numeric --partitions exits 2" 2 "$RC"
check "its message names --partitions" has "$ERR" "--partitions: 'many' is not a whole number"

run topics --retry-retention forever
check_eq "a bad --retry-retention exits 2" 2 "$RC"

run -X no.such.property=1 topics
check_eq "a bad -X property exits 2" 2 "$RC"
check "its message names the property" has "$ERR" "no.such.property"

run topics --help
check_eq "topics --help exits 0" 0 "$RC"
check "topics --help documents the options" has "$OUT" "--replication-factor N"

# --- a cluster that does not answer: bounded, names KAFKA_BROKERS ---------------------
start_ms=$(now_ms)
KAFKA_BROKERS=127.0.0.1:1 run topics --timeout 2s
check_eq "an unreachable cluster exits 1" 1 "$RC"
check "its message names KAFKA_BROKERS and the timeout" \
    has "$ERR" "the cluster at KAFKA_BROKERS=127.0.0.1:1 did not answer within 2s"
check "an unreachable cluster is given up within the timeout" \
    test $(( $(now_ms) - start_ms )) -lt 10000

# The dev broker (librdkafka's mock cluster) has no CreateTopics: the
# command must end, not hang.
mkfifo "$TESTS_TMP/dev.ctl" || it_bail "cannot make $TESTS_TMP/dev.ctl"
"$BIN/imgcache-devbroker" --partitions 1 <> "$TESTS_TMP/dev.ctl" > "$TESTS_TMP/dev.out" 2> "$TESTS_TMP/dev.log" &
_it_track $!
wait_for 30 grep -q '^KAFKA_BROKERS=' "$TESTS_TMP/dev.out" || it_bail "the dev broker did not start" "$TESTS_TMP/dev.log"
DEV=$(sed -n 's/^KAFKA_BROKERS=//p' "$TESTS_TMP/dev.out")
start_ms=$(now_ms)
KAFKA_BROKERS=$DEV run --topic fresh topics --timeout 3s
check_eq "the dev broker: exits 1" 1 "$RC"
check "the dev broker: the message says CreateTopics got no answer in time" \
    has "$ERR" "CreateTopics: no answer from the cluster at KAFKA_BROKERS=$DEV within 3s"
check "the dev broker: given up within the timeout (and the client's margin)" \
    test $(( $(now_ms) - start_ms )) -lt 15000

it_done
