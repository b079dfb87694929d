#!/usr/bin/env bash
# make demo: a local stack under ./var (Apache Kafka, redis-server, PostgreSQL),
# the schema, the bundled sample chats (or a sync from your Beeper Desktop
# when BEEPER_API_TOKEN is set), two workers with --drain, then the avatars,
# `imgcache-producer stats` and the page of avatars (compose/page.sh) that
# the stack's nginx serves with the images.
# IMGCACHE_DEMO_DIR moves ./var elsewhere (the test of the demo uses a temp
# folder).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=${IMGCACHE_DEMO_DIR:-$ROOT/var}
BIN=$ROOT/bin

sh compose/stack.sh start "$VAR"
. "$VAR/stack.env"
export KAFKA_BROKERS REDIS_URL DATABASE_URL
if [ -n "${NGINX_URL:-}" ]; then
    # the folder the stack's nginx serves under IMGCACHE_PUBLIC_URL (which
    # migrate writes to settings.public_base_url, for the views)
    export IMGCACHE_STORAGE_DIR="$VAR/images" IMGCACHE_PUBLIC_URL
else
    export IMGCACHE_STORAGE_DIR="${IMGCACHE_STORAGE_DIR:-$VAR/images}"
fi
export IMGCACHE_LOG_LEVEL="${IMGCACHE_LOG_LEVEL:-warn}"
# A missing media file stays retryable (Beeper fills its media folder
# lazily), but the default schedule (2s,8s,32s,2m,8m) would keep a drain
# waiting 11 minutes for the sample's deliberately missing one.
export IMGCACHE_RETRY_BACKOFF="${IMGCACHE_RETRY_BACKOFF:-1s,2s}"
mkdir -p "$VAR/logs"

"$BIN/imgcache-producer" migrate

if [ -n "${BEEPER_API_TOKEN:-}" ]; then
    echo "== sync from Beeper Desktop at ${BEEPER_API_URL:-http://localhost:23373}"
    if [ -z "${BEEPER_MEDIA_DIR:-}" ] && [ -z "${BEEPER_MEDIA_SERVER:-}" ]; then
        for d in "$HOME/Library/Application Support/BeeperTexts/media" "$HOME/.config/BeeperTexts/media"; do
            [ -d "$d" ] && export BEEPER_MEDIA_DIR="$d" && break
        done
    fi
    "$BIN/imgcache-producer" sync > "$VAR/logs/producer.out"
    cat "$VAR/logs/producer.out"
else
    echo "== import of the bundled sample (compose/sample/chats.jsonl)"
    export BEEPER_MEDIA_DIR="$ROOT/compose/sample/media"
    "$BIN/imgcache-producer" import compose/sample/chats.jsonl > "$VAR/logs/producer.out"
    cat "$VAR/logs/producer.out"
    # A contact image, as a CRM's contacts system would fill it in.
    psql -XAtq "$DATABASE_URL" -c \
        "UPDATE chats SET contact_image_url = 'https://contacts.example/dan-okafor.jpg' WHERE chat_id = '!dan:beeper.local'"
fi

PUBLISHED=$(sed -n 's/.* published=\([0-9]*\).*/\1/p' "$VAR/logs/producer.out" | tail -n 1)

# What the workers have done so far, read from the database: "cached
# waiting failed".
counts() {
    psql -XAtq -F ' ' "$DATABASE_URL" -c "
        SELECT (SELECT count(*) FROM cached_images),
               (SELECT count(*) FROM image_failures WHERE NOT permanent),
               (SELECT count(*) FROM image_failures WHERE permanent)" 2>/dev/null
}
show_counts() { # "cached waiting failed" seconds
    set -- $1 "$2"
    echo "   ${PUBLISHED:-?} to fetch: $1 cached, $2 waiting for a retry, $3 failed (${4}s)"
}

# One line whenever the counts change (and every 5 s while they do not).
# The last line shown is kept in $LAST_SHOWN, so that the final counts can
# be shown once after the workers exit should this loop have missed them.
START=$(date +%s)
LAST_SHOWN="$VAR/logs/progress.last"
: > "$LAST_SHOWN"
progress() {
    local last="" line now shown=0
    while :; do
        line=$(counts) || line=""
        now=$(date +%s)
        if [ -n "$line" ] && { [ "$line" != "$last" ] || [ $((now - shown)) -ge 5 ]; }; then
            show_counts "$line" $((now - START))
            echo "$line" > "$LAST_SHOWN"
            last=$line
            shown=$now
        fi
        sleep 1
    done
}

echo "== two workers, --drain (logs in ${VAR#$ROOT/}/logs)"
# A short session timeout: a member that dies is noticed in 6 s, not 45 s
# (and the dev broker, IMGCACHE_BROKER=dev, waits it out on every join).
GROUP_OPTS="-X session.timeout.ms=6000 -X heartbeat.interval.ms=1000"
"$BIN/imgcache-worker" --drain --worker-id demo-1 $GROUP_OPTS 2> "$VAR/logs/worker-1.log" &
w1=$!
"$BIN/imgcache-worker" --drain --worker-id demo-2 $GROUP_OPTS 2> "$VAR/logs/worker-2.log" &
w2=$!
# the renderer makes each new blob's renditions meanwhile (thumb_url)
"$BIN/imgcache-renderer" $GROUP_OPTS 2> "$VAR/logs/renderer.log" &
renderer=$!
progress &
p=$!
rc=0
wait $w1 || rc=$?
wait $w2 || rc=$?
kill $p 2>/dev/null || :
wait $p 2>/dev/null || :
line=$(counts) || line=""
if [ -n "$line" ] && [ "$line" != "$(cat "$LAST_SHOWN")" ]; then
    show_counts "$line" $(($(date +%s) - START))
fi
if [ $rc -ne 0 ]; then
    kill -TERM $renderer 2>/dev/null || :
    echo "a worker failed (exit $rc); see $VAR/logs/worker-*.log" >&2
    tail -5 "$VAR/logs/worker-1.log" "$VAR/logs/worker-2.log" >&2
    exit $rc
fi

# Every cached blob rendered (or given up): at most 60 s, then SIGTERM (the
# renderer finishes its image and commits).
blobs_left() {
    psql -XAtq "$DATABASE_URL" -c "SELECT count(*) FROM image_blobs b
        WHERE NOT EXISTS (SELECT 1 FROM image_renditions r WHERE r.source_sha256 = b.sha256)
          AND NOT EXISTS (SELECT 1 FROM render_failures f WHERE f.source_sha256 = b.sha256 AND f.permanent)"
}
for _ in $(seq 1 300); do [ "$(blobs_left)" = 0 ] && break; sleep 0.2; done
kill -TERM $renderer 2>/dev/null || :
wait $renderer 2>/dev/null || :
echo "== renditions: $(psql -XAtq "$DATABASE_URL" -c "SELECT count(*) FROM image_renditions") (logs/renderer.log)"

echo "== chat_avatars"
psql -X -P pager=off "$DATABASE_URL" -c \
    "SELECT title, image_source, initials, image_url, thumb_url FROM chat_avatars ORDER BY title"
psql -X -P pager=off "$DATABASE_URL" -c \
    "SELECT source_url, error_class, last_error FROM image_failures"
echo "== imgcache-producer stats"
"$BIN/imgcache-producer" stats
if [ -n "${NGINX_URL:-}" ]; then
    sh compose/page.sh "$VAR/page/index.html"
    echo "== the avatars as a page: $NGINX_URL/ (images under $IMGCACHE_PUBLIC_URL/)"
fi
echo "Images are under $IMGCACHE_STORAGE_DIR. The stack keeps running: 'make stop' stops it;"
echo "'. ${VAR#$ROOT/}/stack.env && psql \"\$DATABASE_URL\"' opens the database."
