#!/usr/bin/env bash
# Passwords in DATABASE_URL, REDIS_URL and the Kafka SASL settings never
# leave the connection they open. Against a PostgreSQL role with a password
# (pg_hba asks it for that role only), a password-protected redis-server
# and the dev broker (which does not speak SASL: the point is that the
# settings are accepted and never printed): the right password, a wrong
# one, a server that is down, and malformed values (a bad %-escape, a bare
# '/', '@' or space, a comma in a SASL password). Malformed values are
# configuration errors (exit 2) that name the variable. Then every output,
# log (debug level), row and event is searched for the passwords.
. "$ROOT/tests/integration/lib.sh"
it_setup 2

P="$BIN/imgcache-producer"
W="$BIN/imgcache-worker"
OUT="$TESTS_TMP/out"
mkdir -p "$OUT"
# The Kafka properties file holds a password: it lives beside TESTS_TMP,
# which is searched at the end.
SECRET_DIR="$TESTS_TMP.secret"
mkdir -p "$SECRET_DIR"
export IMGCACHE_LOG_LEVEL=debug IMGCACHE_DRAIN_WAIT=20s

# Distinctive cores, plus characters that need care in a URL or a list.
PG_CORE="PgPw${RANDOM}x${RANDOM}Secret"
REDIS_CORE="RedisPw${RANDOM}y${RANDOM}Secret"
KAFKA_CORE="KafkaPw${RANDOM}z${RANDOM}Secret"
PG_PW="$PG_CORE a/b@c%d:e?f#g"
REDIS_PW="$REDIS_CORE/@%:,!"
KAFKA_PW="Kafka,${KAFKA_CORE},Pw#=\\"
# Percent-encodes $1 for a URL's password (urlencode keeps '/').
pw_encode() { local e; e=$(urlencode "$1"); printf '%s' "${e//\//%2F}"; }

# status NAME CMD...: runs CMD with stdout and stderr in OUT/NAME.{out,err}
# and prints its exit status.
status() {
    local name=$1
    shift
    "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" < /dev/null
    echo $?
}
# refused NAME STATUS TEXT: the malformed-value case NAME exited with STATUS
# 2, and its error names TEXT (the variable).
refused() {
    check_eq "$1: exit 2 (configuration)" 2 "$2"
    check "$1: the error names $3" grep -q "$3" "$OUT/$1.err"
}

# ---- a PostgreSQL role that must give its password ----------------------------
IT_DATABASE_URL=$DATABASE_URL
DB=${DATABASE_URL##*/}
DB=${DB%%\?*}
PG_HOSTPORT=${STACK_DATABASE_URL#*://}
PG_HOSTPORT=${PG_HOSTPORT#*@}
PG_HOSTPORT=${PG_HOSTPORT%%/*}
PG_PORT=${PG_HOSTPORT##*:}
ROLE=imgcache_secret_role
hba=$(psql -XAtq "$STACK_DATABASE_URL" -c "SHOW hba_file") || it_bail "cannot read hba_file"
if ! grep -q " $ROLE " "$hba"; then
    # first match wins: this line before the stack's trust lines
    { echo "host all $ROLE 127.0.0.1/32 scram-sha-256"; cat "$hba"; } > "$SECRET_DIR/hba"
    cat "$SECRET_DIR/hba" > "$hba" || it_bail "cannot write $hba"
fi
# -v passes the password to psql as a variable, never in a file
psql -XAtq -v ON_ERROR_STOP=1 -v pw="$PG_PW" "$STACK_DATABASE_URL" \
    -c "DROP ROLE IF EXISTS $ROLE" > "$OUT/role.log" 2>&1 || it_bail "cannot drop role" "$OUT/role.log"
psql -XAtq -v ON_ERROR_STOP=1 -v pw="$PG_PW" "$STACK_DATABASE_URL" >> "$OUT/role.log" 2>&1 <<EOF || it_bail "cannot create role" "$OUT/role.log"
CREATE ROLE $ROLE LOGIN SUPERUSER PASSWORD :'pw';
SELECT pg_reload_conf();
EOF
good_db="postgresql://$ROLE:$(pw_encode "$PG_PW")@127.0.0.1:$PG_PORT/$DB"
wrong_db="postgresql://$ROLE:$(pw_encode "$PG_CORE-wrong")@127.0.0.1:$PG_PORT/$DB"
# the reload is asynchronous: wait until the wrong password is refused
wait_for 15 bash -c '! psql -XAtq "$1" -c "SELECT 1"' _ "$wrong_db" ||
    it_bail "PostgreSQL still lets $ROLE in without its password"

# ---- a password-protected redis-server ------------------------------------------
for _ in $(seq 20); do
    RPORT=$((15000 + RANDOM % 17000))
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$RPORT" 2>/dev/null || break
done
# the password goes on the command line, never into a file
redis-server --bind 127.0.0.1 --port "$RPORT" --requirepass "$REDIS_PW" --save '' --appendonly no \
    > "$TESTS_TMP/redis-pw.log" 2>&1 < /dev/null &
REDIS_PID=$!
_it_track "$REDIS_PID"
redis_pong() { [ "$(REDISCLI_AUTH="$REDIS_PW" redis-cli -p "$RPORT" PING 2>/dev/null)" = PONG ]; }
wait_for 15 redis_pong || it_bail "the password-protected redis-server did not start" "$TESTS_TMP/redis-pw.log"
good_redis="redis://:$(pw_encode "$REDIS_PW")@127.0.0.1:$RPORT/0"
wrong_redis="redis://:$(pw_encode "$REDIS_CORE-wrong")@127.0.0.1:$RPORT/0"
DOWN_PORT=1   # nothing listens on port 1

# ---- images to fetch: one new avatar per worker run, so each run needs leases --
FILES="$TESTS_TMP/files"
mkdir -p "$FILES"
start_media "$FILES"
chat() { # chat N: a chat whose avatar is the new image N
    media_image "$FILES/a$1.png" "imgcache-secret-urls-$1"
    printf '{"id":"c%s","accountID":"wa","title":"C %s","type":"group","imgURL":"%s/a%s.png","participants":{"items":[{"id":"me","fullName":"Me","isSelf":true}],"hasMore":false}}\n' \
        "$1" "$1" "$MEDIA_URL" "$1" > "$TESTS_TMP/chat$1.jsonl"
    "$P" import "$TESTS_TMP/chat$1.jsonl" > "$OUT/import$1.out" 2> "$OUT/import$1.err"
}
cached() { q "SELECT count(*) FROM cached_images WHERE source_url = '$MEDIA_URL/a$1.png'"; }

# ---- DATABASE_URL -----------------------------------------------------------------
check_eq "migrate with the password in a URL (percent-encoded / @ % : ? # space)" 0 \
    "$(DATABASE_URL=$good_db status db-good-migrate "$P" migrate)"
pg_kw_pw=${PG_PW//\\/\\\\}
check_eq "migrate with the password quoted in a key=value conninfo" 0 \
    "$(DATABASE_URL="host=127.0.0.1 port=$PG_PORT dbname=$DB user=$ROLE password='${pg_kw_pw//\'/\\\'}'" \
        status db-good-keyword "$P" migrate)"
rc=$(DATABASE_URL=$wrong_db status db-wrong-migrate "$P" migrate)
check_eq "a wrong database password: exit 1" 1 "$rc"
check "a wrong database password: libpq's message, whose user is named" \
    grep -q "password authentication failed for user \"$ROLE\"" "$OUT/db-wrong-migrate.err"
check_eq "a worker with a wrong database password: exit 1" 1 \
    "$(DATABASE_URL=$wrong_db status db-wrong-worker "$W" --drain)"
check "the worker's event=start_failed line says why" grep -q 'event=start_failed.*password authentication failed' \
    "$OUT/db-wrong-worker.err"
check_eq "the database down, with a password: exit 1" 1 \
    "$(DATABASE_URL="postgresql://$ROLE:$(pw_encode "$PG_PW")@127.0.0.1:$DOWN_PORT/$DB" status db-down "$P" migrate)"
check "the database down: connection refused" grep -q 'Connection refused' "$OUT/db-down.err"

# malformed: libpq's parse errors quote the text they cannot parse
n=0
for url in "postgresql://$ROLE:${PG_CORE}%ZZ@127.0.0.1:$PG_PORT/$DB" \
           "postgresql://$ROLE:${PG_CORE}/${PG_CORE}@127.0.0.1:$PG_PORT/$DB" \
           "postgresql://$ROLE:4242/${PG_CORE}@127.0.0.1:$PG_PORT/$DB" \
           "postgresql://$ROLE:${PG_CORE}@${PG_CORE}@127.0.0.1:$PG_PORT/$DB" \
           "host=127.0.0.1 port=$PG_PORT user=$ROLE password=$PG_CORE x$PG_CORE" \
           "host=127.0.0.1 port=$PG_PORT user=$ROLE password='$PG_CORE"; do
    n=$((n + 1))
    refused "db-bad$n-producer" "$(DATABASE_URL=$url status "db-bad$n-producer" "$P" migrate)" DATABASE_URL
    refused "db-bad$n-worker" "$(DATABASE_URL=$url status "db-bad$n-worker" "$W" --drain)" DATABASE_URL
done
refused db-bad-flag "$(status db-bad-flag "$W" --database-url "postgresql://u:${PG_CORE}%ZZ@127.0.0.1:1/x")" \
    DATABASE_URL

# ---- REDIS_URL (the database: the role with its password) ---------------------------
export DATABASE_URL=$good_db
chat 1
start_worker redis-good --drain --redis-url "$good_redis"
check "a worker with the Redis password drains and exits 0" wait_worker redis-good 90
check_eq "its avatar is cached" 1 "$(cached 1)"
check "it took a lease in the password-protected Redis" \
    bash -c 'REDISCLI_AUTH="$1" redis-cli -p "$2" INFO commandstats | grep -q "^cmdstat_set:calls=[1-9]"' _ "$REDIS_PW" "$RPORT"
check_eq "it never found Redis down" 0 "$(grep -c 'event=redis_down' "$TESTS_TMP/redis-good.log")"

chat 2
start_worker redis-wrong --drain --redis-url "$wrong_redis"
check "a worker with a wrong Redis password goes on without leases, exits 0" wait_worker redis-wrong 90
check_eq "its avatar is cached" 1 "$(cached 2)"
check "it says Redis refused the password" grep -q 'event=redis_down.*AUTH failed' "$TESTS_TMP/redis-wrong.log"

chat 3
start_worker redis-down --drain --redis-url "redis://:$(pw_encode "$REDIS_PW")@127.0.0.1:$DOWN_PORT/0"
check "a worker whose Redis is down goes on without leases, exits 0" wait_worker redis-down 90
check_eq "its avatar is cached" 1 "$(cached 3)"
check "it says Redis is down" grep -q 'event=redis_down.*refused' "$TESTS_TMP/redis-down.log"

n=0
for url in "redis://u:12/${REDIS_CORE}@127.0.0.1:$RPORT/0" "redis://:${REDIS_CORE}/x@127.0.0.1:$RPORT/0" \
           "redis://:${REDIS_CORE} x@127.0.0.1:$RPORT/0"; do
    n=$((n + 1))
    refused "redis-bad$n" "$(REDIS_URL=$url status "redis-bad$n" "$W" --drain)" REDIS_URL
done

# ---- Kafka SASL ------------------------------------------------------------------
SASL="security.protocol=sasl_plaintext,sasl.mechanisms=PLAIN,sasl.username=imgcache"
kafka_escaped=${KAFKA_PW//\\/\\\\}
kafka_escaped=${kafka_escaped//,/\\,}
cat > "$SECRET_DIR/kafka.properties" <<EOF
# SASL for imgcache
security.protocol=sasl_plaintext
  sasl.mechanisms = PLAIN

sasl.username=imgcache
sasl.password=$KAFKA_PW
EOF
# The dev broker does not speak SASL: librdkafka's handshake fails, so the
# producer cannot publish (exit 1), but the settings were accepted.
rc=$(IMGCACHE_KAFKA_CONFIG="$SASL,sasl.password=$kafka_escaped" status kafka-env "$P" backfill)
check_eq "SASL settings with an escaped comma are accepted (no exit 2)" 1 "$rc"
check "... and librdkafka tried SASL" grep -qi 'sasl\|authentication' "$OUT/kafka-env.err"
rc=$(IMGCACHE_KAFKA_CONFIG_FILE="$SECRET_DIR/kafka.properties" status kafka-file "$P" backfill)
check_eq "SASL settings from IMGCACHE_KAFKA_CONFIG_FILE are accepted (no exit 2)" 1 "$rc"
check "... and librdkafka tried SASL" grep -qi 'sasl\|authentication' "$OUT/kafka-file.err"
IMGCACHE_DRAIN_WAIT=1s IMGCACHE_KAFKA_CONFIG_FILE="$SECRET_DIR/kafka.properties" \
    start_worker kafka-worker --drain
wait_worker kafka-worker 60
check_eq "a worker with SASL settings from the file starts (no exit 2) and reports it could not drain" 1 "$?"
check "... as 'not drained'" grep -q 'not drained: no partition assignment' "$TESTS_TMP/kafka-worker.log"
check "... after librdkafka tried SASL" grep -qi 'sasl\|authentication' "$TESTS_TMP/kafka-worker.log"

refused kafka-bad-comma "$(IMGCACHE_KAFKA_CONFIG="$SASL,sasl.password=$KAFKA_PW" status kafka-bad-comma "$P" backfill)" \
    IMGCACHE_KAFKA_CONFIG
refused kafka-bad-tail \
    "$(IMGCACHE_KAFKA_CONFIG="$SASL,sasl.password=Kafka,${KAFKA_CORE}=Pw" status kafka-bad-tail "$W" --drain)" \
    'after sasl.password'
printf 'sasl.password=%s\n%s\n' "$KAFKA_PW" "$KAFKA_CORE" > "$SECRET_DIR/bad.properties"
refused kafka-bad-file "$(IMGCACHE_KAFKA_CONFIG_FILE="$SECRET_DIR/bad.properties" status kafka-bad-file "$P" backfill)" \
    IMGCACHE_KAFKA_CONFIG_FILE
refused kafka-bad-x "$(status kafka-bad-x "$W" -X "$KAFKA_CORE")" '\-X'

# ---- --help with every secret set --------------------------------------------------
REDIS_URL=$good_redis IMGCACHE_KAFKA_CONFIG="$SASL,sasl.password=$kafka_escaped" \
    IMGCACHE_KAFKA_CONFIG_FILE="$SECRET_DIR/kafka.properties" status worker-help "$W" --help > /dev/null
REDIS_URL=$good_redis IMGCACHE_KAFKA_CONFIG="$SASL,sasl.password=$kafka_escaped" \
    status producer-help "$P" --help > /dev/null

# ---- everything written --------------------------------------------------------------
pg_dump --data-only --no-owner "$IT_DATABASE_URL" > "$OUT/db.sql" 2>&1
check "pg_dump of the database" grep -q "a1.png" "$OUT/db.sql"
for t in image-needed image-needed-retry image-needed-dlt; do
    kcat -b "$KAFKA_BROKERS" -C -t "$t" -e -q -f 'key=%k\theaders=%h\tvalue=%s\n' > "$OUT/topic-$t.txt" 2>/dev/null
done
check "the topic has the avatars' events" grep -q "a3.png" "$OUT/topic-image-needed.txt"
find "$TESTS_TMP" -type f > "$OUT/files.txt"
check_eq "the searched outputs are all there" "" \
    "$(for f in db-wrong-migrate.err db-bad1-producer.err db-bad6-worker.err redis-bad1.err kafka-env.err \
        kafka-bad-comma.err worker-help.out producer-help.out; do [ -s "$OUT/$f" ] || echo "$f is empty"; done)"
check "the workers logged at debug level" grep -q ' debug ' "$TESTS_TMP/redis-good.log"
for core in "$PG_CORE" "$REDIS_CORE" "$KAFKA_CORE"; do
    check_eq "${core%%[0-9]*} appears nowhere the programs wrote" "" "$(grep -rlaF -- "$core" "$TESTS_TMP")"
done
# the stack's pg_hba.conf as it was
grep -v " $ROLE " "$hba" > "$SECRET_DIR/hba" && cat "$SECRET_DIR/hba" > "$hba"
psql -XAtq "$STACK_DATABASE_URL" -c "SELECT pg_reload_conf()" > /dev/null
rm -rf "$SECRET_DIR"
it_done
