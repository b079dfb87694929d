#!/bin/sh
# Installs the Debian packages imgcache needs to build and test, if any is
# missing. The common case (all installed) does nothing and needs no network.
# A Java 17 runtime and Maven run the Apache Kafka broker of the local stack
# (compose/kafka.sh, whose jars `make deps` then fetches from Maven Central
# once).
# Distribution services (redis, postgresql) need not run: the tests and the
# demo start their own servers (compose/stack.sh), so their start-up during
# installation is suppressed.
set -eu

PACKAGES="build-essential pkg-config librdkafka-dev libcurl4-openssl-dev libhiredis-dev
libjansson-dev libpq-dev libssl-dev libcmocka-dev libmicrohttpd-dev uthash-dev
redis-server postgresql postgresql-client kcat valgrind curl
clang libclang-rt-14-dev time strace linux-perf openjdk-17-jre-headless maven python3-yaml
prometheus libvips-dev libvips-tools nginx-light chromium awscli"

missing=
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case $status in
        *" installed") ;;
        *) missing="$missing $p" ;;
    esac
done
[ -n "$missing" ] || exit 0

echo "deps.sh: installing:$missing" >&2
if [ "$(id -u)" = 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
else
    echo "deps.sh: missing packages:$missing" >&2
    echo "deps.sh: run as root, or install sudo, or run: apt-get install$missing" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: apt-get not found; install by hand:$missing" >&2
    exit 1
fi

# policy-rc.d answering 101 stops invoke-rc.d from starting the packages'
# services during installation; only ours is removed afterwards.
POLICY=/usr/sbin/policy-rc.d
our_policy=0
cleanup() {
    if [ "$our_policy" = 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from imgcache compose/deps.sh\nexit 101\n' |
        $SUDO tee "$POLICY" > /dev/null
    $SUDO chmod 755 "$POLICY"
    our_policy=1
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
echo "deps.sh: done" >&2
