# compose/lib-proc.sh: process and port helpers, sourced (POSIX sh) by
# compose/stack.sh and compose/kafka.sh. Set PROG before sourcing: say()
# prefixes its messages with it.
#
#   say MSG...                 "PROG: MSG" on stderr
#   is_root                    0 when running as root
#   pid_is PID WORD            0 when PID runs (not a zombie) and its command
#                              line contains WORD
#   read_pid FILE              the pid in FILE (digits only), or nothing
#   port_busy PORT             0 when something accepts TCP on 127.0.0.1:PORT
#   pick_port                  a free 127.0.0.1 port below the ephemeral range
#   stop_pid PID WORD [SECS]   SIGTERM, wait up to SECS (15), then SIGKILL
#   log_tail FILE [LINES]      the last lines of FILE on stderr
#   as_pg CMD...               CMD as the `postgres` user when root (initdb
#                              refuses root), else as we are
#   find_pgbin                 the folder of pg_ctl and initdb (not on PATH
#                              on Debian)

say() { echo "${PROG:-imgcache}: $*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

pid_is() {
    [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
    _state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ "$_state" != Z ] || return 1
    tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

read_pid() { [ -s "$1" ] && head -n 1 "$1" | tr -dc '0-9'; }

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
