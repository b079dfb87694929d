# compose/lib-proc.sh: the one library of process, clock and port helpers,
# sourced (POSIX sh: dash runs compose/*.sh and tests/run.sh) by
# compose/stack.sh, compose/kafka.sh, tests/run.sh, tests/integration/lib.sh
# (so every integration script), tests/chaos/chaos.sh and bench/run.sh. It
# lives in compose/ because compose/ ships without tests/. Set PROG before
# sourcing: say() prefixes its messages with it (a script with a say of its
# own defines it after sourcing). Helpers keep their state in _-prefixed
# globals (POSIX has no `local`).
#
#   say MSG...                 "PROG: MSG" on stderr
#   is_root                    0 when running as root
#   pid_alive PID              0 while PID exists and is not a zombie (PID 1
#                              here reaps late: a zombie counts as gone)
#   pid_is PID WORD            pid_alive, and its command line contains WORD
#   descendants PID            the pids of PID's children, theirs, ... (from
#                              /proc; no ps, no pgrep, whose -f would also
#                              match a `bash -c "..."` naming the pattern)
#   wait_gone PID [SECS]       0 once PID is gone, 1 after SECS (30)
#   wait_pid PID [SECS]        PID's exit status (a child of this shell) once
#                              it ends, 124 while it still runs after SECS (60)
#   stop_tree SECS PID...      SIGTERM to each PID and its descendants, wait up
#                              to SECS, then SIGKILL what is left
#   now_ms                     wall clock in milliseconds
#   exit_trap FUNC             FUNC runs at exit however the script ends:
#                              SIGINT, SIGTERM, SIGHUP exit 130, 143, 129
#                              (FUNC sees that status in $?); FUNC should
#                              begin with `trap - EXIT INT TERM HUP`
#   wait_for SECS CMD...       runs CMD every 0.2 s until it succeeds: 0, or 1
#                              after SECS (its whole seconds, + 1 s), 2 when
#                              SECS is not a number
#   read_pid FILE              the pid in FILE (digits only), or nothing
#   stop_pidfile FILE WORD SECS WHAT   stop_pid on the pid in FILE when it is
#                              WORD (resumed first, if SIGSTOPped), say "WHAT
#                              stopped", remove FILE
#   port_busy PORT             0 when something accepts TCP on 127.0.0.1:PORT
#   pick_port                  a free 127.0.0.1 port below the ephemeral range
#   stop_pid PID WORD [SECS]   SIGTERM, wait up to SECS (15), then SIGKILL
#   log_tail FILE [LINES]      the last lines of FILE on stderr
#   as_pg CMD...               CMD as the `postgres` user when root (initdb
#                              refuses root), else as we are
#   find_pgbin                 the folder of pg_ctl and initdb (not on PATH
#                              on Debian)
#   maven_fetch POM DIR WHAT   POM's runtime dependencies into DIR with Maven
#                              (once: DIR/.complete holds the pom's sha256; a
#                              changed pom fetches anew); DIR is replaced
#                              whole, never left half-filled; MAVEN_CHECK, if
#                              set, names a function run on the new folder
#                              (its path in $1) that may refuse it (non-zero)

say() { echo "${PROG:-imgcache}: $*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

pid_alive() {
    [ -n "${1:-}" ] && [ -r "/proc/$1/status" ] || return 1
    _state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$_state" ] && [ "$_state" != Z ]
}

pid_is() {
    pid_alive "${1:-}" || return 1
    tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

# One pass over /proc/*/stat: field 4 is the parent (after "(comm) ", which
# may hold spaces and parentheses, hence the greedy match).
descendants() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
        { rest = $0; sub(/^[0-9]+ \(.*\) /, "", rest); split(rest, f, " ")
          kids[f[2]] = kids[f[2]] " " $1 }
        function walk(p,   n, i, k) {
            n = split(kids[p], k, " ")
            for (i = 1; i <= n; i++) { print k[i]; walk(k[i]) }
        }
        END { walk(root) }'
}

# EPOCHREALTIME (bash 5) when there is one, else date (GNU: %N).
now_ms() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        # seconds and microseconds glued: no leading zero, so not octal
        _t=${EPOCHREALTIME%%[!0-9]*}${EPOCHREALTIME##*[!0-9]}
        echo $((_t / 1000))
    else
        date +%s%3N
    fi
}

exit_trap() {
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
}

wait_gone() {
    _wg_end=$(( $(now_ms) + ${2:-30} * 1000 ))
    while pid_alive "$1"; do
        [ "$(now_ms)" -lt "$_wg_end" ] || return 1
        sleep 0.1
    done
    return 0
}

wait_pid() {
    wait_gone "$1" "${2:-60}" || return 124
    wait "$1" 2>/dev/null
}

stop_tree() {
    _st_secs=$1
    shift
    _st_all=
    for _st_p in "$@"; do
        pid_alive "$_st_p" || continue
        _st_all="$_st_all $_st_p $(descendants "$_st_p" | tr '\n' ' ')"
    done
    [ -n "$_st_all" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM $_st_all 2>/dev/null
    _st_end=$(( $(now_ms) + _st_secs * 1000 ))
    for _st_p in $_st_all; do
        while pid_alive "$_st_p" && [ "$(now_ms)" -lt "$_st_end" ]; do sleep 0.1; done
    done
    for _st_p in $_st_all; do
        pid_alive "$_st_p" && kill -KILL "$_st_p" 2>/dev/null
    done
    for _st_p in "$@"; do wait "$_st_p" 2>/dev/null; done
    return 0
}

wait_for() {
    _wf_secs=${1%%.*}
    shift
    case ${_wf_secs:-0} in *[!0-9]*) echo "wait_for: '$_wf_secs' is not seconds" >&2; return 2 ;; esac
    _wf_end=$(( $(now_ms) + ${_wf_secs:-0} * 1000 + 999 ))
    while :; do
        "$@" > /dev/null 2>&1 && return 0
        [ "$(now_ms)" -lt "$_wf_end" ] || return 1
        sleep 0.2
    done
}

read_pid() { [ -s "$1" ] && head -n 1 "$1" | tr -dc '0-9'; }

stop_pidfile() {
    _sf_pid=$(read_pid "$1")
    if pid_is "$_sf_pid" "$2"; then
        # a stopped (SIGSTOP) process cannot take the SIGTERM
        kill -CONT "$_sf_pid" 2>/dev/null
        stop_pid "$_sf_pid" "$2" "$3"
        say "$4 stopped"
    fi
    rm -f "$1"
}

port_busy() {
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Below Linux's ephemeral range (32768+), so that servers binding port 0
# (media servers, mock brokers) never take it.
pick_port() {
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
        _n=$(od -An -N2 -tu2 /dev/urandom | tr -dc '0-9')
        _p=$((15000 + _n % 17000))
        port_busy "$_p" || { echo "$_p"; return 0; }
    done
    return 1
}

stop_pid() {
    _pid=$1 _name=$2 _secs=${3:-15}
    pid_is "$_pid" "$_name" || return 0
    kill -TERM "$_pid" 2>/dev/null
    _i=0
    while pid_is "$_pid" "$_name" && [ $_i -lt $((_secs * 10)) ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    if pid_is "$_pid" "$_name"; then
        say "$_name (pid $_pid) did not stop in ${_secs}s; killing it"
        kill -KILL "$_pid" 2>/dev/null
        while pid_is "$_pid" "$_name"; do sleep 0.1; done
    fi
    return 0
}

log_tail() {
    [ -s "$1" ] || return 0
    say "last lines of $1:"
    tail -n "${2:-20}" "$1" | sed 's/^/    /' >&2
}

# Runs a PostgreSQL server program as the user that owns the data.
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
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

maven_fetch() {
    _mf_pom=$1 _mf_dir=$2 _mf_what=$3
    _mf_sum=$(sha256sum "$_mf_pom" | cut -d' ' -f1)
    [ -f "$_mf_dir/.complete" ] && [ "$(cat "$_mf_dir/.complete")" = "$_mf_sum" ] && return 0
    for _mf_cmd in java mvn; do
        command -v "$_mf_cmd" >/dev/null 2>&1 || { say "$_mf_cmd is not installed (run: make deps)"; return 1; }
    done
    say "fetching $_mf_what's jars with Maven into $_mf_dir (once)"
    mkdir -p "$(dirname "$_mf_dir")" || { say "cannot create $(dirname "$_mf_dir")"; return 1; }
    _mf_tmp=$(mktemp -d "$_mf_dir.tmp.XXXXXX") || { say "cannot create a folder beside $_mf_dir"; return 1; }
    if ! mvn -B -q -f "$_mf_pom" dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$_mf_tmp" > "$_mf_tmp.log" 2>&1; then
        say "Maven could not fetch $_mf_what's jars"
        log_tail "$_mf_tmp.log" 30
        rm -rf "$_mf_tmp" "$_mf_tmp.log"
        return 1
    fi
    rm -f "$_mf_tmp.log"
    if [ -n "${MAVEN_CHECK:-}" ] && ! "$MAVEN_CHECK" "$_mf_tmp"; then
        rm -rf "$_mf_tmp"
        return 1
    fi
    echo "$_mf_sum" > "$_mf_tmp/.complete"
    rm -rf "$_mf_dir"
    mv "$_mf_tmp" "$_mf_dir" || { say "cannot move the jars to $_mf_dir"; return 1; }
    say "$(ls "$_mf_dir" | wc -l) jars, $(du -sh "$_mf_dir" | cut -f1)"
}

# A server script's start_once, tried up to 3 times: its status 3 means a
# port it chose was taken before the server bound it, so the port file ($1)
# is dropped and the next try picks anew. Any other failure exits 1.
start_on_free_ports() {
    for attempt in 1 2 3; do
        start_once
        rc=$?
        [ $rc = 0 ] && return 0
        [ $rc = 3 ] || exit 1
        say "a port was taken meanwhile; trying another (attempt $attempt)"
        rm -f "$1"
    done
    exit 1
}

# The command line of the server scripts (kafka.sh, s3proxy.sh): `fetch`,
# or `CMD DIR` where the script defines cmd_CMD (start, stop, status, pid,
# ...). Sets DIR, runs cmd_CMD and exits with its status; anything else
# calls the script's usage.
server_cli() {
    [ $# -ge 1 ] || usage
    CMD=$1
    shift
    if [ "$CMD" = fetch ]; then
        [ $# = 0 ] || usage
        cmd_fetch
        exit $?
    fi
    [ $# -ge 1 ] || usage
    DIR=$1
    shift
    [ $# = 0 ] || { say "unknown argument '$1'"; usage; }
    [ -n "$DIR" ] || usage
    case $CMD in
        '' | *[!a-z]*) usage ;;
    esac
    command -v "cmd_$CMD" > /dev/null 2>&1 || usage
    "cmd_$CMD"
    exit $?
}
