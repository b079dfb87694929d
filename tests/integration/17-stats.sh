#!/usr/bin/env bash
# `imgcache-producer stats` against a small fleet: its --json figures equal
# SQL counts this script computes on its own; the backlog of the workers'
# group is every published event while no worker runs, and 0 after two
# workers drained it; a renderer (presets 64,128) ran: the renditions, the
# blobs missing the default 256 px preset, the given-up render (a corrupt
# PNG), image-stored and image-stored-dlt's sizes (kcat) and the
# renderer's group, with no backlog; with Kafka or PostgreSQL unreachable it names what
# failed, prints the other half and exits 1; no secret in any output.
. "$ROOT/tests/integration/lib.sh"
it_setup 4

P="$BIN/imgcache-producer"
mkdir -p "$MEDIA/a"

# 12 distinct images, 3 more URLs with the bytes of p1 (dedup), one HTML page
exts=(jpg png gif webp)
for i in $(seq 1 12); do
    e=${exts[$((i % 4))]}
    media_image "$MEDIA/a/p$i.$e" "stats-test-$i"
done
for k in 1 2 3; do cp "$MEDIA/a/p1.png" "$MEDIA/a/copy$k.png"; done
cp "$IMG/html-as.jpg" "$MEDIA/a/broken.jpg"
# a PNG whose header is fine (the worker stores it) and whose pixels are not
{ head -c 60 "$IMG/avatar.png"; head -c 150 /dev/zero; tail -c 59 "$IMG/avatar.png"; } > "$MEDIA/a/corrupt.png"
start_media "$MEDIA"

# singles on WhatsApp (the other participant's picture), groups on Telegram
# (their own), chats without a network, one with only a contact image
CHATS="$TESTS_TMP/chats.jsonl"
: > "$CHATS"
for c in $(seq 1 8); do
    e=${exts[$((c % 4))]}
    printf '{"id":"single-%d","accountID":"wa","title":"Person %d","type":"single","network":"WhatsApp","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true},{"id":"u%d","fullName":"Person %d","imgURL":"%s/a/p%d.%s","isSelf":false}],"hasMore":false}}\n' \
        "$c" "$c" "$c" "$c" "$MEDIA_URL" "$c" "$e" >> "$CHATS"
done
for g in 9 10 11 12; do
    e=${exts[$((g % 4))]}
    printf '{"id":"group-%d","accountID":"tg","title":"Group %d","type":"group","network":"Telegram","imgURL":"%s/a/p%d.%s"}\n' \
        "$g" "$g" "$MEDIA_URL" "$g" "$e" >> "$CHATS"
done
for k in 1 2 3; do
    printf '{"id":"copy-%d","accountID":"x","title":"Copy %d","type":"group","imgURL":"%s/a/copy%d.png"}\n' \
        "$k" "$k" "$MEDIA_URL" "$k" >> "$CHATS"
done
printf '{"id":"broken","accountID":"x","title":"Broken","type":"group","network":"Signal","imgURL":"%s/a/broken.jpg"}\n' "$MEDIA_URL" >> "$CHATS"
printf '{"id":"contact","accountID":"x","title":"Contact","type":"group","network":"Signal"}\n' >> "$CHATS"
printf '{"id":"nothing","accountID":"x","title":"Nothing","type":"group"}\n' >> "$CHATS"
printf '{"id":"corrupt","accountID":"x","title":"Corrupt","type":"group","imgURL":"%s/a/corrupt.png"}\n' "$MEDIA_URL" >> "$CHATS"

out=$("$P" import --quiet "$CHATS" 2> "$TESTS_TMP/import.err")
check "import succeeds" test $? -eq 0
published=$(echo "$out" | sed -n 's/.* published=\([0-9]*\).*/\1/p')
check_eq "import published every URL" 17 "$published"
q "UPDATE chats SET contact_image_url = 'https://contacts.test/c.png' WHERE chat_id IN ('contact', 'single-8')" > /dev/null

# the group's backlog while nobody consumes: every event
"$P" stats --json > "$TESTS_TMP/before.json" 2> "$TESTS_TMP/before.err"
check_eq "stats exits 0 with everything reachable" 0 "$?" || sed "s/^/#   /" "$TESTS_TMP/before.err"
group=${IMGCACHE_GROUP:-imgcache-workers}
jget() { jq -r "$1" "$2"; }
check_eq "the topic holds every published event" "$published" \
    "$(jget '.kafka.topics["image-needed"].events' "$TESTS_TMP/before.json")"
check_eq "the workers' group is listed first" "$group" "$(jget '.kafka.groups[0].group' "$TESTS_TMP/before.json")"
check_eq "its backlog is every event while no worker runs" "$published" \
    "$(jget '.kafka.groups[0].backlog' "$TESTS_TMP/before.json")"
check_eq "nothing is cached yet" 0 "$(jget '.postgresql.images.cached_images' "$TESTS_TMP/before.json")"

start_worker w1 --drain
start_worker w2 --drain
check "the first worker drains and exits 0" wait_worker w1 120
check "the second worker drains and exits 0" wait_worker w2 120
# a retry still pending, as a 503 would leave it
q "INSERT INTO image_failures (source_url, error_class, permanent, next_retry_at)
   VALUES ('https://elsewhere.test/x.png', 'http_503', false, now() + interval '1 hour')" > /dev/null

# a renderer with two presets of the default three: the third is missing
"$BIN/imgcache-renderer" --renditions 64,128 -X session.timeout.ms=6000 -X heartbeat.interval.ms=1000 \
    < /dev/null > "$TESTS_TMP/renderer.log" 2>&1 &
RPID=$!
_it_track "$RPID"
rendered() {
    [ "$(q "SELECT count(*) FROM image_renditions")" = 24 ] &&
        [ "$(q "SELECT count(*) FROM render_failures WHERE permanent")" = 1 ]
}
check "the renderer makes 64 and 128 px of the 12 images and gives the corrupt PNG up" wait_for 60 rendered
kill -TERM "$RPID"
check "the renderer stops on SIGTERM (committing its offsets)" wait_pid "$RPID" 20

"$P" stats --json > "$TESTS_TMP/after.json" 2> "$TESTS_TMP/after.err"
check_eq "stats exits 0 after the drain" 0 "$?"
A="$TESTS_TMP/after.json"
check_eq "the backlog is 0 after the drain" 0 "$(jget '.kafka.groups[0].backlog' "$A")"
check_eq "no group has a backlog after the drain" 0 "$(jget '[.kafka.groups[].backlog] | add' "$A")"

# the PostgreSQL figures against independent SQL
sql_eq() { # NAME JQ-PATH SQL
    check_eq "$1" "$(q "$3")" "$(jget "$2" "$A")"
}
sql_eq "chats" .postgresql.chats "SELECT count(*) FROM chats"
sql_eq "participants" .postgresql.participants "SELECT count(*) FROM chat_participants"
for src in cached contact initials; do
    sql_eq "chats whose avatar is $src" ".postgresql.avatars.$src" \
        "SELECT count(*) FROM chat_avatars WHERE image_source = '$src'"
done
check_eq "coverage by network" \
    "$(q "SELECT coalesce(c.network, 'null') || ' ' || count(*) || ' ' || count(*) FILTER (WHERE a.image_source = 'cached')
          || ' ' || count(*) FILTER (WHERE a.image_source = 'contact') || ' ' || count(*) FILTER (WHERE a.image_source = 'initials')
          FROM chats c JOIN chat_avatars a USING (chat_id) GROUP BY c.network ORDER BY c.network NULLS LAST")" \
    "$(jq -r '.postgresql.avatars.by_network[] | "\(.network) \(.chats) \(.cached) \(.contact) \(.initials)"' "$A")"
sql_eq "cached images" .postgresql.images.cached_images "SELECT count(*) FROM cached_images"
sql_eq "distinct blobs" .postgresql.images.blobs "SELECT count(DISTINCT sha256) FROM cached_images"
sql_eq "stored bytes" .postgresql.images.stored_bytes "SELECT sum(byte_size) FROM image_blobs"
sql_eq "bytes not stored twice" .postgresql.dedup.bytes_saved \
    "SELECT sum(byte_size) - (SELECT sum(byte_size) FROM image_blobs) FROM cached_images"
check_eq "13 blobs and 16 URLs: the copies saved 3 × p1's size" \
    "$(( 3 * $(stat -c %s "$MEDIA/a/p1.png") ))" "$(jget .postgresql.dedup.bytes_saved "$A")"
sql_eq "permanent failures" .postgresql.failures.permanent "SELECT count(*) FROM image_failures WHERE permanent"
sql_eq "failures pending a retry" .postgresql.failures.pending_retry \
    "SELECT count(*) FROM image_failures WHERE NOT permanent"
check_eq "failures by class" \
    "$(q "SELECT error_class || ' ' || count(*) FILTER (WHERE permanent) || ' ' || count(*) FILTER (WHERE NOT permanent)
          FROM image_failures GROUP BY error_class" | sort)" \
    "$(jq -r '.postgresql.failures.by_class[] | "\(.error_class) \(.permanent) \(.pending_retry)"' "$A" | sort)"
sql_eq "the oldest refreshed_at" .postgresql.oldest_refreshed_at \
    "SELECT to_char(min(refreshed_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM cached_images"
sql_eq "rendition rows" .postgresql.renditions.rows "SELECT count(*) FROM image_renditions"
sql_eq "blobs missing the 256 px preset (not given up)" .postgresql.renditions.missing \
    "SELECT count(*) FROM image_blobs b WHERE NOT EXISTS (SELECT 1 FROM image_renditions r WHERE r.source_sha256 = b.sha256 AND r.preset = 256)
       AND NOT EXISTS (SELECT 1 FROM render_failures f WHERE f.source_sha256 = b.sha256 AND f.permanent)"
check_eq "that is the 12 renderable blobs" 12 "$(jget .postgresql.renditions.missing "$A")"
sql_eq "given-up renders" .postgresql.renditions.given_up "SELECT count(*) FROM render_failures WHERE permanent"
check_eq "the presets compared with: IMGCACHE_RENDITIONS" "64,128,256" "$(jq -r '.postgresql.renditions.presets | join(",")' "$A")"
events_in() { kcat -b "$KAFKA_BROKERS" -C -t "$1" -e -q -f '%k\n' 2>/dev/null | wc -l; }
check_eq "image-stored's size: its events (kcat)" "$(events_in image-stored)" \
    "$(jget '.kafka.topics["image-stored"].events' "$A")"
check_eq "image-stored-dlt's size: one dead letter per given-up render" \
    "$(q "SELECT count(*) FROM render_failures WHERE permanent")|$(events_in image-stored-dlt)" \
    "$(jget '.kafka.topics["image-stored-dlt"].events' "$A")|$(jget '.kafka.topics["image-stored-dlt"].events' "$A")"
if [ "${IMGCACHE_BROKER:-kafka}" = kafka ]; then
    check_eq "the renderer's group reads image-stored only, with no backlog" "imgcache-renderer image-stored 0" \
        "$(jq -r '.kafka.groups[] | select(.group == "imgcache-renderer") | "\(.group) \(.topics | keys | join(",")) \(.backlog)"' "$A")"
else # librdkafka's mock cluster does not list the groups it coordinates
    echo "# the dev broker lists no groups: the renderer's group is checked on Kafka only"
fi
check_eq "the workers' group reads image-needed and -retry" "image-needed,image-needed-retry" \
    "$(jq -r '.kafka.groups[0].topics | keys | join(",")' "$A")"
check_eq "the failures are the broken page and the pending 503" "not_image 1 0
http_503 0 1" "$(jq -r '.postgresql.failures.by_class[] | "\(.error_class) \(.permanent) \(.pending_retry)"' "$A" | sort -r)"

# the human-readable report: aligned, short, the same figures
"$P" stats > "$TESTS_TMP/human.out" 2>&1
check_eq "stats (human) exits 0" 0 "$?"
check "the report has the coverage line" grep -Eq '^avatars +[0-9]+ chats: cached [0-9]+ \([0-9.]+%\)' "$TESTS_TMP/human.out"
check "the report names the group and its backlog" grep -Eq "^backlog +$group 0 " "$TESTS_TMP/human.out"
check "the report has the dead letters" grep -q 'image-needed-dlt' "$TESTS_TMP/human.out"
check "the report has the renditions" grep -Eqx 'renditions +24 rows; 12 blobs missing one of 64,128,256 px; 1 given up' \
    "$TESTS_TMP/human.out"
check "the report has the renderer's topics" \
    grep -Eqx 'render events +image-stored [0-9]+, image-stored-dlt 1 \(dead letters: no group consumes them\)' "$TESTS_TMP/human.out"
[ "${IMGCACHE_BROKER:-kafka}" = kafka ] &&
    check "the report has the renderer's backlog" grep -Eqx ' +imgcache-renderer 0 \(image-stored 0\)' "$TESTS_TMP/human.out"
check "the report is short" test "$(wc -l < "$TESTS_TMP/human.out")" -le 25
sed 's/^/#   /' "$TESTS_TMP/human.out"

# the indexed queries: EXPLAIN the two the indexes of migration 003 serve
plan=$(q "EXPLAIN SELECT min(refreshed_at) FROM cached_images")
check "min(refreshed_at) reads the index" grep -q 'cached_images_refreshed_at_idx' <<< "$plan"

# Kafka unreachable: the PostgreSQL half, Kafka named, exit 1, no secret
SECRET_PW=stats-sasl-pw-$$
SECRET_TOKEN=stats-token-$$
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KAFKA_BROKERS="127.0.0.1:$closed" IMGCACHE_KAFKA_CONFIG="sasl.username=u,sasl.password=$SECRET_PW" \
    BEEPER_API_TOKEN="$SECRET_TOKEN" timeout 60 "$P" stats > "$TESTS_TMP/nokafka.out" 2> "$TESTS_TMP/nokafka.err"
check_eq "stats with Kafka down exits 1" 1 "$?"
check "it still prints the PostgreSQL half" grep -Eq '^cached images +[0-9]+ URLs' "$TESTS_TMP/nokafka.out"
check "it says Kafka is unavailable" grep -Eq '^kafka +unavailable: Kafka \(KAFKA_BROKERS\)' "$TESTS_TMP/nokafka.out"
check "its error names Kafka" grep -q 'imgcache-producer: Kafka (KAFKA_BROKERS)' "$TESTS_TMP/nokafka.err"
KAFKA_BROKERS="127.0.0.1:$closed" timeout 60 "$P" stats --json > "$TESTS_TMP/nokafka.json" 2> /dev/null
check_eq "--json with Kafka down: postgresql there, kafka null, the reason" "true null true" \
    "$(jq -r '"\(.postgresql != null) \(.kafka) \(.errors.kafka | test("KAFKA_BROKERS"))"' "$TESTS_TMP/nokafka.json")"

# PostgreSQL unreachable, with a password in the URL: Kafka's half, exit 1
DATABASE_URL="postgresql://imgcache:$SECRET_PW@127.0.0.1:$closed/nowhere" BEEPER_API_TOKEN="$SECRET_TOKEN" \
    timeout 60 "$P" stats > "$TESTS_TMP/nopg.out" 2> "$TESTS_TMP/nopg.err"
check_eq "stats with PostgreSQL down exits 1" 1 "$?"
check "it still prints the backlog" grep -Eq "^backlog +$group 0" "$TESTS_TMP/nopg.out"
check "it says PostgreSQL is unavailable" grep -Eq '^postgresql +unavailable: ' "$TESTS_TMP/nopg.out"
check "its error is on stderr" grep -q '^imgcache-producer: ' "$TESTS_TMP/nopg.err"
no_secret() { ! grep -l -e "$SECRET_PW" -e "$SECRET_TOKEN" "$@"; }
check "no secret in any stats output" no_secret "$TESTS_TMP"/nokafka.* "$TESTS_TMP"/nopg.*

# topics that do not exist: no backlog, said so, not an error
"$P" --topic nosuch stats > "$TESTS_TMP/notopic.out" 2> "$TESTS_TMP/notopic.err"
check_eq "stats on a topic that does not exist exits 0" 0 "$?"
check "it says the topics are missing" grep -Eq '^kafka events +nosuch missing, nosuch-retry missing' "$TESTS_TMP/notopic.out"
"$P" --stored-topic nosuch-stored stats > "$TESTS_TMP/nostored.out" 2> "$TESTS_TMP/nostored.err"
check "and so for the renderer's topics" \
    grep -Eq '^render events +nosuch-stored missing, nosuch-stored-dlt missing' "$TESTS_TMP/nostored.out"

"$P" stats --bogus > /dev/null 2> "$TESTS_TMP/bogus.err"
check_eq "stats with an unknown option exits 2" 2 "$?"
check "and names it" grep -q "stats: unknown option '--bogus'" "$TESTS_TMP/bogus.err"
it_done
