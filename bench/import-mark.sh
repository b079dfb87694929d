#!/usr/bin/env bash
# bench/import-mark.sh: what keeping gc's reference clock costs an import.
# Schema 4 marked every URL an import saw (last_seen_at); schema 6 lets
# triggers note only the URLs that lose a reference (unreferenced_at).
# Times `imgcache-producer import --quiet` of one generated file with two
# builds of the producer on the same stack (dev broker, PostgreSQL with
# --fast), each run on a fresh database:
#   new    an import into an empty database (no cached row);
#   re     the same file again with every URL cached and last marked two
#          days ago: schema 4 rewrites every cached row's last_seen_at
#          (its worst case: the first sync of the day);
#   seen   the same, last marked 10 minutes ago: schema 4 locks the rows
#          but does not rewrite them (every other sync within the hour);
#   moved  every URL cached, then a file where every participant has a
#          new picture: schema 6's trigger fires for each (its worst case).
# RUNS (default 5) runs each, old and new alternating; the median counts,
# of the wall time and of the CPU time (the producer's and the PostgreSQL
# backends', which a busy machine inflates much less than the wall time).
# CASES picks cases (default: all four). It asserts nothing.
#
#   [RUNS=N] [CASES="re moved"] bench/import-mark.sh OLD_PRODUCER NEW_PRODUCER [CHATS]
set -u
OLD=$1 NEW=$2 N=${3:-50000} RUNS=${RUNS:-5} CASES=${CASES:-new re seen moved}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/imgcache-mark.XXXXXX)
trap 'IMGCACHE_BROKER=dev sh "$ROOT/compose/stack.sh" stop "$W/stack" > /dev/null 2>&1; rm -rf "$W"' EXIT
IMGCACHE_BROKER=dev sh "$ROOT/compose/stack.sh" start "$W/stack" --fast > /dev/null 2> "$W/stack.log" ||
    { cat "$W/stack.log"; exit 1; }
. "$W/stack/stack.env"
. "$ROOT/compose/lib-proc.sh"
pg_pid=$(head -n 1 "$(cat "$W/stack/pg.location")/pg/postmaster.pid")
export KAFKA_BROKERS DATABASE_URL IMGCACHE_LOG_LEVEL=warn
base=$DATABASE_URL

# N single chats, each with its own participant picture, and N groups
# with a picture of their own: 2N distinct URLs
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) {
    printf "{\"id\":\"s%d\",\"type\":\"single\",\"title\":\"S %d\",\"participants\":{\"items\":[{\"id\":\"me\",\"isSelf\":true},{\"id\":\"u%d\",\"fullName\":\"U %d\",\"imgURL\":\"https://img.test/u/%d.png\"}],\"hasMore\":false}}\n", i, i, i, i, i
    printf "{\"id\":\"g%d\",\"type\":\"group\",\"title\":\"G %d\",\"imgURL\":\"https://img.test/g/%d.png\"}\n", i, i, i } }' > "$W/chats.jsonl"
# the same chats, every participant with a new picture
sed 's|img.test/u/\([0-9]*\)\.png|img.test/u/\1-v2.png|' "$W/chats.jsonl" > "$W/moved.jsonl"

psql_q() { psql "$1" -qAtX -v ON_ERROR_STOP=1 -c "$2"; }
run=0
fresh_db() { # producer -> DATABASE_URL of a fresh, migrated database
    run=$((run + 1))
    psql_q "$base" "CREATE DATABASE mark$run TEMPLATE template0 ENCODING 'UTF8'" > /dev/null
    DATABASE_URL=$(printf '%s' "$base" | sed "s|/[^/?]*\(?.*\)\{0,1\}$|/mark$run\1|")
    "$1" migrate > /dev/null
}
# every URL cached, last seen $1 ago (schema 4's last_seen_at; schema 6 has none)
cache_all() {
    psql_q "$DATABASE_URL" "INSERT INTO image_blobs (sha256, storage_key, content_type, byte_size)
        VALUES (repeat('a', 64), 'aa/a.png', 'image/png', 1);
        INSERT INTO cached_images (source_url, sha256, content_type, byte_size)
        SELECT u, repeat('a', 64), 'image/png', 1
        FROM (SELECT img_source_url FROM chats WHERE img_source_url IS NOT NULL
              UNION SELECT img_source_url FROM chat_participants WHERE img_source_url IS NOT NULL) s(u);
        DO \$\$ BEGIN UPDATE cached_images SET last_seen_at = now() - interval '$1';
        EXCEPTION WHEN undefined_column THEN NULL; END \$\$;" > /dev/null
    psql_q "$DATABASE_URL" "VACUUM ANALYZE" > /dev/null
}
# CPU ticks of PID's exited and reaped children (/proc/PID/stat cutime +
# cstime): the shell's for the producer, the postmaster's for its backends
child_ticks() { awk '{ print $16 + $17 }' "/proc/$1/stat"; }
# neither a backend of database $1 nor an exited child the postmaster has
# not reaped yet (whose time is not in its cutime yet)
no_backend_of() { ! ps -o stat=,cmd= --ppid "$pg_pid" | grep -q -e " $1 " -e '^Z'; }
timed() { # command... -> "wall_ms cpu_ms"
    local t0 t1 c0 c1
    c0=$(( $(child_ticks $$) + $(child_ticks "$pg_pid") ))
    t0=$(now_ms)
    "$@" > /dev/null || echo "failed: $*" >&2
    t1=$(now_ms)
    wait_for 10 no_backend_of "mark$run" || echo "a backend of mark$run is still there" >&2
    c1=$(( $(child_ticks $$) + $(child_ticks "$pg_pid") ))
    echo "$((t1 - t0)) $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) ))"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
median_of() { cut -d' ' -f"$1" "$2" | median; } # column, file

# old and new alternate, so a change of the machine's load hits both
for case in $CASES; do
    for i in $(seq "$RUNS"); do
        for which in old new; do
            bin=$OLD; [ $which = new ] && bin=$NEW
            fresh_db "$bin"
            if [ $case != new ]; then
                "$bin" import --quiet "$W/chats.jsonl" > /dev/null
                if [ $case = re ]; then cache_all '2 days'; else cache_all '10 minutes'; fi
            fi
            file=$W/chats.jsonl; [ $case = moved ] && file=$W/moved.jsonl
            timed "$bin" import --quiet "$file" >> "$W/$which-$case.all"
        done
    done
done
printf '%-8s %12s %12s %12s %12s\n' import old_ms new_ms old_cpu_ms new_cpu_ms
for case in $CASES; do
    printf '%-8s %12s %12s %12s %12s\n' "$case" "$(median_of 1 "$W/old-$case.all")" \
        "$(median_of 1 "$W/new-$case.all")" "$(median_of 2 "$W/old-$case.all")" "$(median_of 2 "$W/new-$case.all")"
done
