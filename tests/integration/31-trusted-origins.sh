#!/usr/bin/env bash
# Trust is for scheme + host + port. The default BEEPER_API_URL
# (http://localhost:23373) and an IMGCACHE_ALLOW_HOSTS entry with a port
# trust that port only: another service on the same host (an internal-only
# image server, Redis, PostgreSQL) is refused, however the host name is
# spelled and also when a trusted server redirects there. Every refused port
# gives the same answer, so a listening port cannot be told from a closed one.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 4

INTERNAL="$TESTS_TMP/internal"
mkdir -p "$MEDIA" "$INTERNAL"
unique() { media_image "$2" "imgcache-origins-$1"; }
LITERAL="$TESTS_TMP/literal"
mkdir -p "$LITERAL"
unique literal "$LITERAL/lit.png"
for n in ok upper redirect; do unique "$n" "$MEDIA/$n.png"; done
for n in secret secret-upper secret-redirect; do unique "$n" "$INTERNAL/$n.png"; done

# an internal-only image server on another port of the same host
start_media "$INTERNAL"
INTERNAL_PORT=${MEDIA_URL##*:}
INTERNAL_URL=$MEDIA_URL
# one trusted by address: [::1]:PORT trusts that address for any name
start_media "$LITERAL" --bind ::1
LITERAL_PORT=${MEDIA_URL##*:}
start_media "$MEDIA"
PORT=${MEDIA_URL##*:}
M=http://localhost:$PORT
REDIS_PORT=$(printf '%s' "$REDIS_URL" | sed -E 's|^[a-z]+://([^@/]*@)?[^:/]+:([0-9]+).*|\2|')
PG_PORT=$(printf '%s' "$DATABASE_URL" | sed -E 's|^[a-z]+://([^@/]*@)?[^:/]+:([0-9]+).*|\2|')
check "the stack's Redis and PostgreSQL ports are known" test -n "$REDIS_PORT" -a -n "$PG_PORT"

# trusted: the media server's origin, by name and port (nothing else of
# localhost but the default BEEPER_API_URL's port 23373)
export IMGCACHE_ALLOW_HOSTS="localhost:$PORT,[::1]:$LITERAL_PORT"
unset BEEPER_API_URL BEEPER_MEDIA_SERVER
export IMGCACHE_RETRY_BACKOFF=100ms IMGCACHE_CONNECT_TIMEOUT=2s IMGCACHE_FETCH_TIMEOUT=3s
export IMGCACHE_BREAKER_THRESHOLD=100000

media_fault /redirect.png redirect "location=//localhost:$INTERNAL_PORT/secret-redirect.png"

REFUSED=("http://localhost:$INTERNAL_PORT/secret.png"
         "http://LocalHost:$INTERNAL_PORT/secret-upper.png"
         "$M/redirect.png"
         "http://localhost:$REDIS_PORT/x.png"
         "http://localhost:$PG_PORT/x.png"
         "http://localhost:1/x.png")
# (curl tries localhost's 127.0.0.1 first, refused there, then ::1, trusted)
CACHED=("$M/ok.png" "http://LOCALHOST:$PORT/upper.png" "http://localhost:$LITERAL_PORT/lit.png")
publish_url "${REFUSED[@]}" "${CACHED[@]}" > /dev/null
check "events published" test $? -eq 0

start_worker w --drain
check "the worker drains and exits 0" wait_worker w 90

for u in "${CACHED[@]}"; do
    check_eq "cached from the trusted origin: $u" 1 "$(q "SELECT count(*) FROM cached_images WHERE source_url = '$u'")"
done
for u in "${REFUSED[@]}"; do
    check_eq "refused at once, permanently: $u" "refused_address|t|1" \
        "$(q "SELECT error_class, permanent, attempts FROM image_failures WHERE source_url = '$u'")"
done
check_eq "nothing reached the internal server on the other port" 0 \
    "$(MEDIA_URL=$INTERNAL_URL media_total)"
# Redis, PostgreSQL, the internal server and a closed port: one answer
answers=$(for u in "http://localhost:$INTERNAL_PORT/secret.png" "http://localhost:$REDIS_PORT/x.png" \
                   "http://localhost:$PG_PORT/x.png" "http://localhost:1/x.png"; do
    q "SELECT error_class, http_status, last_error FROM image_failures WHERE source_url = '$u'" |
        sed -E 's/address [^ ]+ port [0-9]+/address A port P/'
done | sort -u | wc -l)
check_eq "a listening port answers like a closed one" 1 "$answers"

# an allow entry that cannot be read is a configuration error naming it
IMGCACHE_ALLOW_HOSTS="localhost:$PORT,media.lan:99999" "$BIN/imgcache-worker" --drain \
    > "$TESTS_TMP/bad-allow.out" 2> "$TESTS_TMP/bad-allow.err" < /dev/null
check_eq "a bad IMGCACHE_ALLOW_HOSTS entry: exit status 2" 2 "$?"
check "...and the error names the entry" grep -q "IMGCACHE_ALLOW_HOSTS.*'media.lan:99999'" "$TESTS_TMP/bad-allow.err"
it_done
