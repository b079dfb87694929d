#!/usr/bin/env bash
# Builds and runs the libFuzzer targets tests/fuzz/fuzz_<name>.c (behind
# `make fuzz` and tests/integration/60-fuzz.sh; run from anywhere).
#
#   bash tests/fuzz/run.sh [--seconds N] [--seconds-for NAME=N] [--jobs N] [--corpus DIR] [NAME...]
#
#   --seconds N   each target runs N seconds (-max_total_time; default 60)
#   --seconds-for NAME=N   target NAME runs N seconds instead (repeatable)
#   --jobs N      targets run at the same time (default 1)
#   --corpus DIR  writable corpus folder, one subfolder per target (default
#                 build/fuzz/corpus); the seeds tests/fuzz/seeds/<name> (and
#                 tests/fixtures/images for sniff and rendition) are read,
#                 never written
#   NAME...       targets (default: every tests/fuzz/fuzz_*.c)
#
# First it checks that $FUZZ_CC (clang) can build and run a trivial libFuzzer
# binary; when it cannot, it says why and exits 77 (skipped). Then it builds
# build/fuzz/fuzz_<name> through the Makefile and prints one line per target:
#   ok - fuzz NAME (runs=..., corpus=...)
#   not ok - fuzz NAME: crash input build/fuzz/artifacts/NAME-crash-<sha1>
# followed by the end of its log as "#" lines. Logs: build/fuzz/NAME.log.
# Reproduce a crash: build/fuzz/fuzz_NAME build/fuzz/artifacts/NAME-crash-...
# Exit: 0 all passed, 1 a target crashed or did not build, 77 skipped.
set -u

cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
FUZZ_CC=${FUZZ_CC:-clang}
FUZZ_CFLAGS=${FUZZ_CFLAGS:--g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined}
MAKE=${MAKE:-make}
SECONDS_EACH=60
JOBS=1
CORPUS=$ROOT/build/fuzz/corpus
OUT=$ROOT/build/fuzz
ARTIFACTS=$OUT/artifacts
TARGETS=()
declare -A SECONDS_FOR=()

usage() {
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECONDS_EACH=${2:-}; shift 2 ;;
        --seconds-for)
            case ${2:-} in
                ?*=*) ;;
                *) echo "fuzz: --seconds-for wants NAME=SECONDS, e.g. rendition=4" >&2; exit 2 ;;
            esac
            case ${2#*=} in
                ''|*[!0-9]*) echo "fuzz: --seconds-for wants NAME=SECONDS, e.g. rendition=4" >&2; exit 2 ;;
            esac
            SECONDS_FOR[${2%%=*}]=${2#*=}
            shift 2 ;;
        --jobs) JOBS=${2:-}; shift 2 ;;
        --corpus) CORPUS=${2:-}; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "fuzz: unknown option '$1'" >&2; usage ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
case $SECONDS_EACH in ''|*[!0-9]*) echo "fuzz: --seconds wants a number of seconds" >&2; exit 2 ;; esac
case $JOBS in ''|*[!0-9]*|0) echo "fuzz: --jobs wants a positive number" >&2; exit 2 ;; esac
if [ ${#TARGETS[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        [ -f "$f" ] || continue
        n=${f#tests/fuzz/fuzz_}
        TARGETS+=("${n%.c}")
    done
fi
for t in "${TARGETS[@]}"; do
    [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz: no target tests/fuzz/fuzz_$t.c" >&2; exit 2; }
done
mkdir -p "$OUT" "$ARTIFACTS" || exit 1

# ---- can this machine build a libFuzzer binary? ------------------------------
probe_dir=$(mktemp -d "${TMPDIR:-/tmp}/imgcache-fuzz-probe.XXXXXX") || exit 1
trap 'rm -rf "$probe_dir"' EXIT
cat > "$probe_dir/probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return (int)(size > 0 && data[0] == 0xff) * 0;
}
EOF
if ! command -v "${FUZZ_CC%% *}" > /dev/null 2>&1; then
    echo "fuzz: skipped: $FUZZ_CC is not installed (libFuzzer needs clang and libclang-rt-dev)"
    exit 77
fi
# shellcheck disable=SC2086
if ! $FUZZ_CC $FUZZ_CFLAGS "$probe_dir/probe.c" -o "$probe_dir/probe" > "$probe_dir/cc.log" 2>&1; then
    echo "fuzz: skipped: $FUZZ_CC cannot build a libFuzzer binary (is libclang-rt-dev installed?):"
    head -n 5 "$probe_dir/cc.log" | sed 's/^/#   /'
    exit 77
fi
if ! "$probe_dir/probe" -runs=10 > "$probe_dir/run.log" 2>&1; then
    echo "fuzz: skipped: a trivial libFuzzer binary does not run:"
    tail -n 5 "$probe_dir/run.log" | sed 's/^/#   /'
    exit 77
fi

# ---- build ---------------------------------------------------------------------
bins=()
for t in "${TARGETS[@]}"; do bins+=("build/fuzz/fuzz_$t"); done
if ! "$MAKE" --no-print-directory FUZZ_CC="$FUZZ_CC" FUZZ_CFLAGS="$FUZZ_CFLAGS" "${bins[@]}" \
        > "$OUT/build.log" 2>&1; then
    cat "$OUT/build.log" | sed 's/^/# /'
fi

# ---- run -----------------------------------------------------------------------
# Runs one target; its result goes to $OUT/NAME.result for report().
run_one() {
    local t=$1 bin=$ROOT/build/fuzz/fuzz_$1 log=$OUT/$1.log dirs=() rc
    local secs=${SECONDS_FOR[$1]:-$SECONDS_EACH}
    rm -f "$OUT/$t.result"
    if [ ! -x "$bin" ]; then
        echo "build" > "$OUT/$t.result"
        return
    fi
    mkdir -p "$CORPUS/$t"
    dirs+=("$CORPUS/$t")
    [ -d "tests/fuzz/seeds/$t" ] && dirs+=("$ROOT/tests/fuzz/seeds/$t")
    case $t in sniff|rendition) dirs+=("$ROOT/tests/fixtures/images") ;; esac
    # a hung target is a failure too: the run must end
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        timeout -k 10 $((secs + 120)) "$bin" -max_total_time="$secs" \
            -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$ARTIFACTS/$t-" "${dirs[@]}" < /dev/null > "$log" 2>&1
    rc=$?
    echo "$rc" > "$OUT/$t.result"
}

report() {
    local t=$1 log=$OUT/$1.log res crash runs corpus
    local secs=${SECONDS_FOR[$1]:-$SECONDS_EACH}
    res=$(cat "$OUT/$t.result" 2>/dev/null || echo missing)
    if [ "$res" = build ]; then
        echo "not ok - fuzz $t: build/fuzz/fuzz_$t did not build (see $OUT/build.log)"
        return 1
    fi
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(find "$CORPUS/$t" -type f | wc -l)
    if [ "$res" = 0 ] && [ -z "$crash" ]; then
        echo "ok - fuzz $t (${secs}s, runs=${runs:-?}, corpus=$corpus)"
        return 0
    fi
    if [ -n "$crash" ]; then
        echo "not ok - fuzz $t: crash input ${crash#"$ROOT"/}"
        echo "#   reproduce: build/fuzz/fuzz_$t ${crash#"$ROOT"/}"
    elif [ "$res" = 124 ] || [ "$res" = 137 ]; then
        echo "not ok - fuzz $t: still running $((secs + 120))s after its start (log $log)"
    else
        echo "not ok - fuzz $t: exit status $res (log ${log#"$ROOT"/})"
    fi
    { grep -E 'ERROR|SUMMARY|runtime error|deadly' "$log" | head -n 6
      grep -E '^ *#[0-9]+ 0x' "$log" | head -n 8; } | sed 's/^/#   /'
    return 1
}

# Stopped from outside: stop the fuzzers too (timeout, then the binary).
stop_children() {
    local p c
    for p in $(jobs -p); do
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
            kill -TERM $(ps -o pid= --ppid "$c" 2>/dev/null) "$c" 2>/dev/null
        done
        kill -TERM "$p" 2>/dev/null
    done
    rm -rf "$probe_dir"
    exit 143
}
trap stop_children INT TERM HUP

failed=0
i=0
while [ $i -lt ${#TARGETS[@]} ]; do
    batch=("${TARGETS[@]:i:JOBS}")
    for t in "${batch[@]}"; do
        run_one "$t" &
    done
    wait
    for t in "${batch[@]}"; do
        report "$t" || failed=$((failed + 1))
    done
    i=$((i + JOBS))
done
[ $failed -eq 0 ] || exit 1
exit 0
