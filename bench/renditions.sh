#!/usr/bin/env bash
# bench/renditions.sh: renditions per second per core, common/rendition.c
# (build/bench/rendition-bench) side by side with Debian's vipsthumbnail, on
# the same images, sizes and format, in one session. bench/run.sh runs it as
# its "renditions" section; it also runs alone:
#
#   bash bench/renditions.sh [--images N] [--rounds R] [--seed S] [--cpu C]
#                            [--sizes 64,128,256] [--keep]
#
#   --images N   generated avatars (default 100): 400..1080 px squares-ish,
#                1 in 4 PNG, the rest JPEG Q85 (rendition-bench generate)
#   --rounds R   rounds (default 3); each runs, one after the other:
#                rendition_make (one decode, centre crop), vipsthumbnail (one
#                run per size over all images: --size SxS --smartcrop centre
#                -o %s-S.webp[Q=80,strip]), one vips_thumbnail_buffer per size
#                (what vipsthumbnail does, in-process), rendition_make with
#                the attention crop, rendition_make with 2 libvips threads
#   --cpu C      the core every run is pinned to (taskset; default the last)
#
# Every run is pinned to one core with libvips' concurrency 1 (but the
# "threads2" one), so "per core" is renditions / CPU seconds (user + system)
# of the process; wall-clock rates are printed too. A line per variant gives
# the median over the rounds, then the ratio against vipsthumbnail. The last
# line is "json {...}" for bench/run.sh's results.json.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=bench/renditions.sh
IMAGES=100
ROUNDS=3
SEED=7
SIZES=64,128,256
CPU=$(($(nproc) - 1))
KEEP=0

usage() {
    sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --images) IMAGES=${2:-}; shift ;;
        --rounds) ROUNDS=${2:-}; shift ;;
        --seed) SEED=${2:-}; shift ;;
        --cpu) CPU=${2:-}; shift ;;
        --sizes) SIZES=${2:-}; shift ;;
        --keep) KEEP=1 ;;
        -h|--help) usage ;;
        *) echo "$PROG: unknown option '$1'" >&2; usage ;;
    esac
    shift
done
for v in IMAGES:--images ROUNDS:--rounds SEED:--seed CPU:--cpu; do
    var=${v%%:*}
    val=${!var}
    [[ $val =~ ^[0-9]+$ ]] || { echo "$PROG: ${v#*:} must be a number (got '$val')" >&2; exit 2; }
done
[[ $SIZES =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "$PROG: --sizes wants px,px,... (got '$SIZES')" >&2; exit 2; }
[ "$IMAGES" -ge 1 ] && [ "$ROUNDS" -ge 1 ] || { echo "$PROG: --images and --rounds must be at least 1" >&2; exit 2; }
for c in vipsthumbnail taskset /usr/bin/time; do
    command -v "$c" > /dev/null 2>&1 || { echo "$PROG: $c is not installed (make deps: libvips-tools, util-linux, time)" >&2; exit 1; }
done

BENCH=$ROOT/build/bench/rendition-bench
make -C "$ROOT" --no-print-directory -s build/bench/rendition-bench > /dev/null || { echo "$PROG: cannot build $BENCH" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgcache-renditions.XXXXXX") || exit 1
[ "$KEEP" = 1 ] && echo "# work folder: $WORK (kept)" || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/img" "$WORK/out"
"$BENCH" generate "$WORK/img" "$IMAGES" "$SEED" > "$WORK/files" || { echo "$PROG: generate failed" >&2; exit 1; }
mapfile -t FILES < "$WORK/files"
NSIZES=$(echo "$SIZES" | tr ',' '\n' | wc -l)
RENDITIONS=$((IMAGES * NSIZES))
export VIPS_CONCURRENCY=1

# ours VARIANT ARGS...: "renditions cpu_s wall_s" from one rendition-bench run
ours() {
    local line
    shift
    line=$(taskset -c "$CPU" "$BENCH" run --sizes "$SIZES" "$@" "${FILES[@]}") || return 1
    echo "$line" | sed -n 's/.*renditions=\([0-9]*\) wall_s=\([0-9.]*\) cpu_s=\([0-9.]*\).*/\1 \3 \2/p'
}

# vipsthumbnail, one run per size over every image: "renditions cpu_s wall_s"
theirs() {
    local s cpu=0 wall=0 t
    rm -f "$WORK"/out/*
    for s in ${SIZES//,/ }; do
        t=$(/usr/bin/time -f '%U %S %e' taskset -c "$CPU" vipsthumbnail --size "${s}x$s" --smartcrop centre \
                -o "$WORK/out/%s-$s.webp[Q=80,strip]" "${FILES[@]}" 2>&1 > /dev/null | tail -n 1) || return 1
        cpu=$(awk -v c="$cpu" -v u="${t%% *}" -v r="$(echo "$t" | cut -d' ' -f2)" 'BEGIN { printf "%.3f", c + u + r }')
        wall=$(awk -v w="$wall" -v e="${t##* }" 'BEGIN { printf "%.3f", w + e }')
    done
    [ "$(find "$WORK/out" -name '*.webp' | wc -l)" -eq "$RENDITIONS" ] || { echo "$PROG: vipsthumbnail wrote $(find "$WORK/out" -name '*.webp' | wc -l) of $RENDITIONS files" >&2; return 1; }
    echo "$RENDITIONS $cpu $wall"
}

VARIANTS=(once vipsthumbnail per-size attention threads2)
declare -A CPU_RATE WALL_RATE
for r in $(seq 1 "$ROUNDS"); do
    for v in "${VARIANTS[@]}"; do
        case $v in
            once) res=$(ours once) ;;
            vipsthumbnail) res=$(theirs) ;;
            per-size) res=$(ours per-size --per-size) ;;
            attention) res=$(ours attention --attention) ;;
            threads2) res=$(VIPS_CONCURRENCY=2 ours threads2 --concurrency 2) ;;
        esac
        [ -n "$res" ] || { echo "$PROG: the $v run failed" >&2; exit 1; }
        read -r n c w <<< "$res"
        CPU_RATE[$v]+="$(awk -v n="$n" -v c="$c" 'BEGIN { printf "%.1f", n / c }') "
        WALL_RATE[$v]+="$(awk -v n="$n" -v w="$w" 'BEGIN { printf "%.1f", n / w }') "
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
BASE=$(echo "${CPU_RATE[vipsthumbnail]}" | median)
echo "renditions: $IMAGES images (seed $SEED), sizes $SIZES, WebP Q80, $ROUNDS rounds alternating, pinned to CPU $CPU, libvips $(vips --version 2>/dev/null | cut -d- -f2)"
printf '  %-14s %14s %14s %10s   %s\n' variant "rend/cpu-s" "rend/s(wall)" "x vipsthumb" "per round (rend/cpu-s)"
json=
for v in "${VARIANTS[@]}"; do
    m=$(echo "${CPU_RATE[$v]}" | median)
    mw=$(echo "${WALL_RATE[$v]}" | median)
    x=$(awk -v a="$m" -v b="$BASE" 'BEGIN { printf "%.2f", a / b }')
    printf '  %-14s %14s %14s %10s   %s\n' "$v" "$m" "$mw" "${x}x" "${CPU_RATE[$v]% }"
    json+="${json:+,}\"$v\":{\"renditions_per_cpu_s\":$m,\"renditions_per_wall_s\":$mw,\"x_vipsthumbnail\":$x,\"rounds\":[${CPU_RATE[$v]// /,}]}"
done
json=${json//,]/]}
echo "  once: rendition_make (decode to the largest preset once, smaller ones from it); per-size: vips_thumbnail_buffer per"
echo "  preset in-process; attention: once with the attention crop; threads2: once with 2 libvips threads (same core)"
echo "json {\"images\":$IMAGES,\"sizes\":\"$SIZES\",\"rounds\":$ROUNDS,\"cpu\":$CPU,$json}"
