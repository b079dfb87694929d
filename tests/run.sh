#!/bin/sh
# The test runner behind `make test` (run from anywhere; it works in the repo
# root). Starts a private stack (compose/stack.sh, --fast) in a fresh temp
# folder, runs every unit binary build/tests/test_* and then every
# tests/integration/*.sh in name order (lib.sh and lib-*.sh are sourced
# helpers, not tests), and ends with the line
# "N passed, N failed". Exit 0 only when nothing failed and something passed.
#
#   sh tests/run.sh [FILTER...]   only units and scripts whose name contains a
#                                 FILTER (ONLY="..." works too), e.g. `20-`
# Environment:
#   IMGCACHE_BROKER  kafka (default: Apache Kafka, compose/kafka.sh) or dev
#                 (librdkafka's mock cluster, for a machine without Java);
#                 every integration script names the broker it ran against
#   TEST_PREFIX   wraps each unit binary, e.g. "valgrind --error-exitcode=1"
#                 (empty: the units run plainly, then once more under
#                 valgrind's leak check when valgrind is installed, one check
#                 per binary: "ok - valgrind test_x")
#   UNIT_VALGRIND=0  skip that valgrind pass
#   IT_TIMEOUT    seconds one integration script may run (default 900)
#   UNIT_TIMEOUT  seconds one unit binary may run (default 600)
#   KEEP_TMP=1    keep the temp folder (logs, databases) for a post-mortem
set -u

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
PROG=run.sh
. "$ROOT/compose/lib-proc.sh"    # pid_is
BIN=$ROOT/bin
TEST_PREFIX=${TEST_PREFIX:-}
IT_TIMEOUT=${IT_TIMEOUT:-900}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-600}
FILTERS="$* ${ONLY:-}"

run_started_ms=$(now_ms)
passed=0
failed=0
failures=""
cleaned=0

TMP=$(mktemp -d "${TMPDIR:-/tmp}/imgcache-test.XXXXXX") || {
    echo "run.sh: cannot create a temp folder"
    echo "0 passed, 1 failed"
    exit 1
}
chmod 755 "$TMP"    # PostgreSQL runs as `postgres` when we are root

cleanup() {
    [ "$cleaned" = 1 ] && return 0
    cleaned=1
    sh "$ROOT/compose/stack.sh" stop "$TMP/stack" >/dev/null 2>&1
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "run.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
# An interrupt stops the running integration script's process group (its
# lib.sh trap then stops what it started), waits for it, and cleans up.
current_pgfile=
on_interrupt() {
    trap '' INT TERM HUP
    if [ -n "$current_pgfile" ] && [ -s "$current_pgfile" ]; then
        kill -s TERM -- "-$(cat "$current_pgfile")" 2>/dev/null
        wait
    fi
    exit "$1"
}
trap cleanup EXIT
trap 'on_interrupt 130' INT
trap 'on_interrupt 143' TERM
trap 'on_interrupt 129' HUP

# 0 when no filter was given or the name contains one of them.
selected() {
    set -f
    for flt in $FILTERS; do
        case $1 in *"$flt"*) set +f; return 0 ;; esac
    done
    set +f
    [ -z "$(echo "$FILTERS" | tr -d ' ')" ]
}

# Prefixes each line of stdin with "$1 | ", line by line (live output).
prefix() {
    while IFS= read -r line || [ -n "$line" ]; do
        printf '%s | %s\n' "$1" "$line"
    done
}

# Sum of the numbers on stdin (one per line).
sum() {
    s=0
    while read -r n; do
        [ -n "$n" ] && s=$((s + n))
    done
    echo "$s"
}

# "12.3s" since $1 (from now_ms): each test's line shows what it cost, so
# the suite's budget (20 min in CI) can be watched script by script.
elapsed_since() {
    ms=$(( $(now_ms) - $1 ))
    echo "$((ms / 1000)).$((ms % 1000 / 100))s"
}

note_failure() {
    failures="$failures $1($2)"
}

finish() {
    echo "== summary"
    if [ -n "$failures" ]; then
        echo "failed:$failures"
    fi
    [ "${KEEP_TMP:-0}" = 1 ] && echo "logs kept in $TMP"
    echo "took $(elapsed_since "$run_started_ms")"
    echo "$passed passed, $failed failed"
    if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
        exit 0
    fi
    exit 1
}

# Kills what a script left running (lib.sh records every pid it starts):
# a script killed by the timeout could not clean up after itself.
reap_leftovers() {
    [ -f "$1/.it-pids" ] || return 0
    for pid in $(cat "$1/.it-pids"); do
        if pid_is "$pid" imgcache-; then
            echo "run.sh: killing leftover pid $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline")"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
}

# ---- the stack ---------------------------------------------------------------
echo "== stack"
if ! sh "$ROOT/compose/stack.sh" start "$TMP/stack" --fast > "$TMP/stack.out" 2> "$TMP/stack.log"; then
    prefix stack < "$TMP/stack.log"
    echo "run.sh: the test stack did not start"
    failed=$((failed + 1))
    note_failure stack 1
    cleanup
    finish
fi
prefix stack < "$TMP/stack.log"
. "$TMP/stack/stack.env"
STACK_DATABASE_URL=$DATABASE_URL
IMGCACHE_STACK_DIR=$TMP/stack
IMGCACHE_BROKER=${IMGCACHE_BROKER:-kafka}
export KAFKA_BROKERS REDIS_URL DATABASE_URL STACK_DATABASE_URL ROOT BIN IMGCACHE_STACK_DIR IMGCACHE_BROKER
[ -n "${BROKER_CTL:-}" ] && export BROKER_CTL
export CMOCKA_MESSAGE_OUTPUT=STDOUT

# ---- unit tests --------------------------------------------------------------
units=0
failed_units=""
for t in build/tests/test_*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    case $t in *.o|*.d) continue ;; esac
    name=$(basename "$t")
    selected "$name" || continue
    [ $units -eq 0 ] && echo "== unit tests${TEST_PREFIX:+ (under $TEST_PREFIX)}"
    units=$((units + 1))
    log="$TMP/$name.log"
    started_ms=$(now_ms)
    # shellcheck disable=SC2086
    timeout --foreground -k 10 "$UNIT_TIMEOUT" $TEST_PREFIX "$t" < /dev/null > "$log" 2>&1
    rc=$?
    prefix "$name" < "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test(s)\..*/\1/p' "$log" | sum)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test(s), listed below:.*/\1/p' "$log" | sum)
    if [ "$rc" -eq 124 ]; then
        echo "$name | run.sh: timed out after ${UNIT_TIMEOUT}s"
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "$name | run.sh: exit status $rc without a FAILED line: counted as 1 failure"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$f" -gt 0 ] && note_failure "$name" "$f" && failed_units="$failed_units $name"
    echo "$name: $p passed, $f failed ($(elapsed_since "$started_ms"))"
done

# ---- unit tests under valgrind's leak check --------------------------------------
# When the units did not already run under TEST_PREFIX: each binary once more
# under valgrind, one check per binary, judged by valgrind's own verdict (no
# memory error, no leak); a binary whose tests failed above is not run again,
# so its failures are counted once.
if [ $units -gt 0 ] && [ -z "$TEST_PREFIX" ] && [ "${UNIT_VALGRIND:-1}" != 0 ]; then
    if ! command -v valgrind > /dev/null 2>&1; then
        echo "== valgrind is not installed: no leak check of the unit tests (make deps installs it)"
    else
        echo "== unit tests under valgrind --leak-check=full"
        for t in build/tests/test_*; do
            [ -f "$t" ] && [ -x "$t" ] || continue
            case $t in *.o|*.d) continue ;; esac
            name=$(basename "$t")
            selected "$name" || continue
            case " $failed_units " in
                *" $name "*) echo "valgrind $name: not run, its tests fail above"; continue ;;
            esac
            # valgrind cannot run what ASan, TSan or MSan instrumented
            if grep -qa -e __asan_init -e __tsan_init -e __msan_init "$t"; then
                echo "valgrind $name: not run, built with a sanitizer (SANITIZE=...)"
                continue
            fi
            log="$TMP/$name.valgrind.log"
            timeout --foreground -k 10 "$UNIT_TIMEOUT" valgrind --leak-check=full --error-exitcode=1 \
                "$t" < /dev/null > "$log" 2>&1
            rc=$?
            errors=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$log" | sum)
            if [ "$rc" -eq 0 ] && [ "$errors" -eq 0 ] && grep -q '^==[0-9]*== ERROR SUMMARY:' "$log"; then
                echo "ok - valgrind $name"
                passed=$((passed + 1))
            else
                [ "$rc" -eq 124 ] && echo "$name | run.sh: timed out under valgrind after ${UNIT_TIMEOUT}s"
                echo "not ok - valgrind $name (exit status $rc, $errors valgrind errors)"
                grep '^==[0-9]*== ' "$log" | head -n 40 | prefix "$name"
                failed=$((failed + 1))
                note_failure "valgrind-$name" 1
            fi
        done
    fi
fi

# ---- integration tests -------------------------------------------------------
scripts=0
for s in tests/integration/*.sh; do
    [ -f "$s" ] || continue
    name=$(basename "$s" .sh)
    case $name in lib|lib[-_.]*) continue ;; esac     # sourced helpers, not tests
    selected "$name" || continue
    [ $scripts -eq 0 ] && echo "== integration tests"
    scripts=$((scripts + 1))
    TESTS_TMP="$TMP/it/$name"
    mkdir -p "$TESTS_TMP"
    log="$TMP/it/$name.log"
    rcfile="$TMP/it/$name.rc"
    pgfile="$TMP/it/$name.pgid"
    echo 1 > "$rcfile"
    started_ms=$(now_ms)
    # timeout runs the script in a process group of its own and, when time is
    # up, signals the whole group: nothing the script started survives to
    # hold the output pipe open. The pipeline runs in the background so that
    # a Ctrl-C interrupts `wait` and on_interrupt can stop that group.
    {
        TESTS_TMP=$TESTS_TMP timeout -k 20 "$IT_TIMEOUT" bash "$s" < /dev/null &
        echo $! > "$pgfile"
        wait $!
        echo $? > "$rcfile"
    } 2>&1 | tee "$log" | prefix "$name" &
    current_pgfile=$pgfile
    wait $!
    current_pgfile=
    rc=$(cat "$rcfile")
    reap_leftovers "$TESTS_TMP"
    ok=$(grep -c '^ok ' "$log")
    notok=$(grep -c '^not ok ' "$log")
    if [ "$rc" -eq 124 ]; then
        echo "$name | run.sh: timed out after ${IT_TIMEOUT}s"
    fi
    if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
        echo "$name | run.sh: exit status $rc without a 'not ok' line: counted as 1 failure"
        notok=1
    fi
    if [ "$ok" -eq 0 ] && [ "$notok" -eq 0 ]; then
        echo "$name | run.sh: warning: no checks ran"
    fi
    passed=$((passed + ok))
    failed=$((failed + notok))
    [ "$notok" -gt 0 ] && note_failure "$name" "$notok"
    echo "$name: $ok passed, $notok failed ($(elapsed_since "$started_ms"))"
done

if [ $units -eq 0 ] && [ $scripts -eq 0 ]; then
    echo "run.sh: no unit binary or integration script matches '$FILTERS'"
fi

echo "== stopping the stack"
sh "$ROOT/compose/stack.sh" stop "$TMP/stack" 2>&1 | prefix stack
cleanup
finish
