#!/usr/bin/env bash
# make demo: a local stack under ./var (Apache Kafka, redis-server, PostgreSQL),
# the schema, the bundled sample chats (or a sync from your Beeper Desktop
# when BEEPER_API_TOKEN is set), two workers with --drain, then the avatars.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=$ROOT/var
BIN=$ROOT/bin

sh compose/stack.sh start "$VAR"
. "$VAR/stack.env"
export KAFKA_BROKERS REDIS_URL DATABASE_URL
export IMGCACHE_STORAGE_DIR="${IMGCACHE_STORAGE_DIR:-$VAR/images}"
export IMGCACHE_LOG_LEVEL="${IMGCACHE_LOG_LEVEL:-warn}"
mkdir -p "$VAR/logs"

"$BIN/imgcache-producer" migrate

if [ -n "${BEEPER_API_TOKEN:-}" ]; then
    echo "== sync from Beeper Desktop at ${BEEPER_API_URL:-http://localhost:23373}"
    if [ -z "${BEEPER_MEDIA_DIR:-}" ] && [ -z "${BEEPER_MEDIA_SERVER:-}" ]; then
        for d in "$HOME/Library/Application Support/BeeperTexts/media" "$HOME/.config/BeeperTexts/media"; do
            [ -d "$d" ] && export BEEPER_MEDIA_DIR="$d" && break
        done
    fi
    "$BIN/imgcache-producer" sync
else
    echo "== import of the bundled sample (compose/sample/chats.jsonl)"
    export BEEPER_MEDIA_DIR="$ROOT/compose/sample/media"
    "$BIN/imgcache-producer" import compose/sample/chats.jsonl
    # A contact image, as a CRM's contacts system would fill it in.
    psql -XAtq "$DATABASE_URL" -c \
        "UPDATE chats SET contact_image_url = 'https://contacts.example/dan-okafor.jpg' WHERE chat_id = '!dan:beeper.local'"
fi

echo "== two workers, --drain (logs in var/logs)"
# A short session timeout: a member that dies is noticed in 6 s, not 45 s
# (and the dev broker, IMGCACHE_BROKER=dev, waits it out on every join).
GROUP_OPTS="-X session.timeout.ms=6000 -X heartbeat.interval.ms=1000"
"$BIN/imgcache-worker" --drain --worker-id demo-1 $GROUP_OPTS 2> "$VAR/logs/worker-1.log" &
w1=$!
"$BIN/imgcache-worker" --drain --worker-id demo-2 $GROUP_OPTS 2> "$VAR/logs/worker-2.log" &
w2=$!
rc=0
wait $w1 || rc=$?
wait $w2 || rc=$?
if [ $rc -ne 0 ]; then
    echo "a worker failed (exit $rc); see var/logs/worker-*.log" >&2
    tail -5 "$VAR/logs/worker-1.log" "$VAR/logs/worker-2.log" >&2
    exit $rc
fi

echo "== chat_avatars"
psql -X -P pager=off "$DATABASE_URL" -c \
    "SELECT title, image_source, initials, image_url FROM chat_avatars ORDER BY title"
echo "== summary"
psql -X -P pager=off "$DATABASE_URL" -c "
    SELECT (SELECT count(*) FROM chats) AS chats,
           (SELECT count(*) FROM chat_participants) AS participants,
           (SELECT count(*) FROM cached_images) AS cached_images,
           (SELECT count(*) FROM image_blobs) AS stored_blobs,
           (SELECT count(*) FROM image_failures) AS failures"
psql -X -P pager=off "$DATABASE_URL" -c \
    "SELECT source_url, error_class, last_error FROM image_failures"
echo "Images are under $IMGCACHE_STORAGE_DIR. The stack keeps running: 'make stop' stops it;"
echo "'. var/stack.env && psql \"\$DATABASE_URL\"' opens the database."
