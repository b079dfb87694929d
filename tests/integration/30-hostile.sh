#!/usr/bin/env bash
# Hostile sources and hostile events against one worker: every bad answer of
# the project's media server (impostor bodies, truncation, caps, stalls,
# redirect loops, a redirect into an internal address), file:// escapes out
# of BEEPER_MEDIA_DIR, undecodable events. Each ends with the right
# error_class in image_failures and on the dead-letter topic, retryable ones
# only after their retries, and the worker keeps going and exits 0.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 12

INTERNAL="$TESTS_TMP/internal"
BEEPER="$TESTS_TMP/beeper/BeeperTexts/media"
OUTSIDE="$TESTS_TMP/outside"
mkdir -p "$MEDIA/h" "$INTERNAL" "$BEEPER/sub" "$OUTSIDE"

# A valid image that no other file shares: the avatar plus a unique tail.
unique() { { cat "$IMG/$1"; printf 'imgcache-hostile-%s' "$2"; } > "$3"; }

cp "$IMG/html-as.jpg" "$MEDIA/h/html.jpg"
cp "$IMG/image.svg" "$MEDIA/h/image.svg"
cp "$IMG/text.txt" "$MEDIA/h/text.jpg"
cp "$IMG/doc.pdf" "$MEDIA/h/doc.png"
cp "$IMG/huge-header.png" "$MEDIA/h/huge-header.png"
# the same 60000x60000 header padded to 1 MiB, sent chunked: only an abort at
# the header (long before the 64 KiB byte cap) gives too_many_pixels
cp "$IMG/huge-header.png" "$MEDIA/h/huge-header-padded.png"
truncate -s 1M "$MEDIA/h/huge-header-padded.png"
# over the byte cap: a valid PNG head, then 1 MiB (and 256 MiB, sparse)
for n in big-cl big-chunked; do
    { cat "$IMG/avatar.png"; head -c 1048576 /dev/zero; } > "$MEDIA/h/$n.png"
done
for n in huge-cl huge-chunked; do
    cp "$IMG/avatar.png" "$MEDIA/h/$n.png"
    truncate -s 256M "$MEDIA/h/$n.png"
done
{ cat "$IMG/avatar.png"; head -c 8192 /dev/urandom; } > "$MEDIA/h/trunc.png"
# GIFs whose logical screen is 1x1: one frame of 60000x60000 (sent chunked
# and padded to 1 MiB, so only the frame descriptor in the first bytes can
# refuse it before the byte cap), and one more frame than the cap allows
gif_frame() { printf '\x2c\x00\x00\x00\x00%b\x00\x02\x02\x4c\x01\x00' "$1"; }
{ printf 'GIF89a\x01\x00\x01\x00\x00\x00\x00'; gif_frame '\x60\xea\x60\xea'; printf '\x3b'; } \
    > "$MEDIA/h/gif-huge-frame.gif"
truncate -s 1M "$MEDIA/h/gif-huge-frame.gif"
{ printf 'GIF89a\x01\x00\x01\x00\x00\x00\x00'
  for _ in $(seq 1001); do gif_frame '\x01\x00\x01\x00'; done; printf '\x3b'; } > "$MEDIA/h/gif-frames.gif"
for n in stall loop to-internal r503 r429 r503ra ok after-bad; do
    unique avatar.png "$n" "$MEDIA/h/$n.png"
done
# the same bytes as ok.png, so a refused row leaves no file without a row
cp "$MEDIA/h/ok.png" "$MEDIA/h/refused-row.png"
unique avatar.png internal "$INTERNAL/x.png"
unique avatar.png direct "$INTERNAL/direct.png"
# the media folder: one good file; a symlink (file and folder) out of it
unique avatar.gif beeper-good "$BEEPER/sub/good.gif"
unique avatar.png secret "$OUTSIDE/secret.png"
ln -s "$OUTSIDE/secret.png" "$BEEPER/evil.png"
ln -s "$OUTSIDE" "$BEEPER/linkdir"
SECRET_SHA=$(sha256sum < "$OUTSIDE/secret.png" | cut -d' ' -f1)

# the internal listener first: start_media sets MEDIA_URL and MEDIA_PID
start_media "$INTERNAL" --bind 127.0.0.2
INTERNAL_URL=$MEDIA_URL
# request timestamps (debug log) give the Retry-After gap
IMGCACHE_LOG_LEVEL=debug start_media "$MEDIA"
MEDIA_LOG="$TESTS_TMP/media$IT_MEDIA_N.log"
M=$MEDIA_URL

check "the internal listener runs on 127.0.0.2" curl -fsS -o /dev/null "$INTERNAL_URL/__stats"

media_fault /h/trunc.png truncate
media_fault /h/big-chunked.png chunked
media_fault /h/huge-chunked.png chunked
media_fault /h/huge-header-padded.png chunked
media_fault /h/gif-huge-frame.gif chunked
media_fault /h/stall.png stall
media_fault /h/loop.png redirect "location=$M/h/loop.png"
media_fault /h/to-internal.png redirect "location=$INTERNAL_URL/x.png"
media_fault /h/r503.png status status=503 count=2
media_fault /h/r429.png status status=429 retry_after=1 count=1
media_fault /h/r503ra.png status status=503 retry_after=1 count=1

export BEEPER_MEDIA_DIR="$BEEPER"
FILE=file:///Users/me/Library/Application%20Support/BeeperTexts/media
F_GOOD="$FILE/sub/good.gif"
F_DOTDOT="$FILE/../../../outside/secret.png"
F_ENC="$FILE/%2e%2e/%2e%2e/%2E%2E/outside/secret.png"
F_ENC_MIXED="$FILE/sub/.%2E/.%2e/../outside/secret.png"
F_ABS="file://$OUTSIDE/secret.png"
F_ABS_AFTER="$FILE/$OUTSIDE/secret.png"
F_LINK="$FILE/evil.png"
F_DIRLINK="$FILE/linkdir/secret.png"
F_MISSING="$FILE/sub/not-there.png"
F_MISSING_NONUTF8="$FILE/sub/%ff%fe-not-there.png"

# url|error_class|permanent|media requests (- when not an http URL of $M)
CASES="$TESTS_TMP/cases"
cat > "$CASES" <<EOF
$M/h/html.jpg|not_image|true|1
$M/h/image.svg|not_image|true|1
$M/h/text.jpg|not_image|true|1
$M/h/doc.png|not_image|true|1
$M/h/trunc.png|truncated|true|3
$M/h/big-cl.png|too_large|true|1
$M/h/big-chunked.png|too_large|true|1
$M/h/huge-cl.png|too_large|true|1
$M/h/huge-chunked.png|too_large|true|1
$M/h/huge-header.png|too_many_pixels|true|1
$M/h/huge-header-padded.png|too_many_pixels|true|1
$M/h/gif-huge-frame.gif|too_many_pixels|true|1
$M/h/gif-frames.gif|not_image|true|1
$M/h/stall.png|timeout|true|3
$M/h/loop.png|redirects|true|4
$M/h/to-internal.png|refused_address|true|1
$INTERNAL_URL/direct.png|refused_address|true|-
$M/h/missing.png|http_404|true|1
$M/h/refused-row.png|database|true|1
$F_DOTDOT|bad_url|true|-
$F_ENC|bad_url|true|-
$F_ENC_MIXED|bad_url|true|-
$F_ABS|bad_url|true|-
$F_ABS_AFTER|bad_url|true|-
$F_LINK|file_refused|true|-
$F_DIRLINK|file_refused|true|-
$F_MISSING|file_missing|true|-
$F_MISSING_NONUTF8|file_missing|true|-
ftp://127.0.0.1/h/ok.png|bad_url|true|-
gopher://127.0.0.1:70/1/h/ok.png|bad_url|true|-
javascript:alert(document.cookie)|bad_url|true|-
EOF
GOOD=("$M/h/ok.png" "$M/h/r503.png" "$M/h/r429.png" "$M/h/r503ra.png" "$F_GOOD")

# ---- the events ------------------------------------------------------------------
# Undecodable events and a good one behind them, all on partition 0.
printf 'this is not JSON {' > "$TESTS_TMP/ev-notjson"
printf '{"v":1,"chat_id":"c1","reason":"test"}' > "$TESTS_TMP/ev-nourl"
{ printf '{"v":1,"source_url":"%s/h/' "$M"; head -c 100000 /dev/zero | tr '\0' a; printf '.png"}'; } \
    > "$TESTS_TMP/ev-big"
printf '{"v":1,"source_url":"%s/h/after-bad.png"}' "$M" > "$TESTS_TMP/ev-after"
publish_raw bad-notjson "$TESTS_TMP/ev-notjson" 0 > /dev/null
publish_raw bad-nourl "$TESTS_TMP/ev-nourl" 0 > /dev/null
publish_raw bad-big "$TESTS_TMP/ev-big" 0 > /dev/null
publish_raw "$M/h/after-bad.png" "$TESTS_TMP/ev-after" 0 > /dev/null
mapfile -t URLS < <(cut -d'|' -f1 "$CASES")
publish_url "${URLS[@]}" "${GOOD[@]}"
check_eq "every event is on the topic" "$(( ${#URLS[@]} + ${#GOOD[@]} + 4 ))" \
    "$(kcat -b "$KAFKA_BROKERS" -C -t image-needed -e -q -f '%k\n' 2>/dev/null | wc -l)"

# bytes the media server read from its files (pread, sendfile) until now
media_read_bytes() { sed -n 's/^rchar: //p' "/proc/$MEDIA_PID/io"; }
read_before=$(media_read_bytes)

# PostgreSQL refuses one image's row (as a constraint would): that image
# fails alone, the others of its commit batch are cached
q "CREATE FUNCTION test_refuse_row() RETURNS trigger LANGUAGE plpgsql AS \$\$
   BEGIN IF NEW.source_url LIKE '%/refused-row.png' THEN RAISE EXCEPTION 'test trigger refuses this row'; END IF;
   RETURN NEW; END \$\$;
   CREATE TRIGGER test_refuse_row BEFORE INSERT OR UPDATE ON cached_images
   FOR EACH ROW EXECUTE FUNCTION test_refuse_row()" > /dev/null

export IMGCACHE_MAX_BYTES=64KiB IMGCACHE_FETCH_TIMEOUT=3s IMGCACHE_CONNECT_TIMEOUT=2s
export IMGCACHE_RETRY_BACKOFF=200ms,200ms
# every failure here is on 127.0.0.1: keep the circuit breaker out of the way
export IMGCACHE_BREAKER_THRESHOLD=100000
t0=$(now_ms)
start_worker w1 --drain
check "the worker drains every hostile event and exits 0" wait_worker w1 150
elapsed=$(( $(now_ms) - t0 ))
echo "# the worker ran ${elapsed} ms"
read_after=$(media_read_bytes)

topic_dump image-needed-dlt > "$TESTS_TMP/dlt.tsv"
topic_dump image-needed-retry > "$TESTS_TMP/retry.tsv"
q "SELECT source_url || '|' || error_class || '|' || permanent || '|' || attempts || '|' ||
          coalesce(last_error, '') FROM image_failures" > "$TESTS_TMP/failures.txt"

# ---- each case -------------------------------------------------------------------
dlt_of() { awk -F'\t' -v k="$1" '$1 == k' "$TESTS_TMP/dlt.tsv"; }
retries_of() { awk -F'\t' -v k="$1" '$1 == k' "$TESTS_TMP/retry.tsv" | wc -l; }
failure_of() { q "SELECT error_class || '|' || permanent FROM image_failures WHERE source_url = \$\$$1\$\$"; }

while IFS='|' read -r url class perm count; do
    name=${url#"$M"}
    name=${name#"$FILE"}
    check_eq "$name: image_failures says $class, permanent" "$class|$perm" "$(failure_of "$url")"
    check_eq "$name: one dead letter, error_class $class" "1 $class" \
        "$(dlt_of "$url" | wc -l) $(dlt_of "$url" | hdr error_class)"
    if [ "$count" != - ]; then
        check_eq "$name: requested $count time(s)" "$count" "$(media_count "${url#"$M"}")"
    fi
done < "$CASES"
check_eq "nothing failed was cached" 0 \
    "$(q "SELECT count(*) FROM cached_images WHERE source_url IN (SELECT source_url FROM image_failures)")"

# reasons
reason_of() { q "SELECT last_error FROM image_failures WHERE source_url = \$\$$1\$\$"; }
check_eq "HTML served as .jpg: the reason says HTML" "looks like HTML, not an image" "$(reason_of "$M/h/html.jpg")"
check_eq "SVG: the reason names the script risk" "SVG is refused: it can carry scripts" "$(reason_of "$M/h/image.svg")"
check_eq "text: the reason says plain text" "looks like plain text, not an image" "$(reason_of "$M/h/text.jpg")"
check_eq "the DLT error_message is the same reason" "looks like HTML, not an image" \
    "$(dlt_of "$M/h/html.jpg" | hdr error_message)"
check "a refused row: the reason quotes PostgreSQL" \
    grep -qF 'PostgreSQL refused the row: ' <(reason_of "$M/h/refused-row.png")
check "a refused row: the reason carries the server's message" \
    grep -qF 'test trigger refuses this row' <(reason_of "$M/h/refused-row.png")
check "too_many_pixels names the size" grep -qF '60000x60000' <(reason_of "$M/h/huge-header.png")

# retryable classes: retried through the retry topic, then dead
check_eq "truncated: 2 retries on the retry topic, then 3 attempts recorded" "2 3" \
    "$(retries_of "$M/h/trunc.png") $(q "SELECT attempts FROM image_failures WHERE source_url = '$M/h/trunc.png'")"
check_eq "timeout: 2 retries on the retry topic" 2 "$(retries_of "$M/h/stall.png")"
check_eq "the dead letter of a retried URL says attempts=3" 3 "$(dlt_of "$M/h/stall.png" | hdr attempts)"
check_eq "the retry carries error_class and the source" "truncated image-needed" \
    "$(awk -F'\t' -v k="$M/h/trunc.png" '$1 == k' "$TESTS_TMP/retry.tsv" | head -n 1 | hdr error_class) $(awk -F'\t' -v k="$M/h/trunc.png" '$1 == k' "$TESTS_TMP/retry.tsv" | head -n 1 | hdr source_topic)"
check "a retry carries next_attempt_at, a dead letter does not" \
    test "$(retries_of "$M/h/trunc.png")" -gt 0 -a -n "$(awk -F'\t' -v k="$M/h/trunc.png" '$1 == k' "$TESTS_TMP/retry.tsv" | head -n 1 | hdr next_attempt_at)" \
    -a -z "$(dlt_of "$M/h/trunc.png" | hdr next_attempt_at)"
for u in "$M/h/html.jpg" "$M/h/missing.png" "$M/h/loop.png" "$M/h/to-internal.png" "$M/h/huge-cl.png" "$F_LINK"; do
    check_eq "permanent ${u##*/}: no retry" 0 "$(retries_of "$u")"
done
check_eq "404: http_status 404 in the row and the dead letter" "404 404" \
    "$(q "SELECT http_status FROM image_failures WHERE source_url = '$M/h/missing.png'") $(dlt_of "$M/h/missing.png" | hdr http_status)"

# the byte cap stops the transfer while streaming: 2 x 256 MiB offered (one
# with Content-Length, one chunked); a full read of either is 256 MiB
read_mib=$(( (read_after - read_before) / 1048576 ))
echo "# the media server read $read_mib MiB from its files during the run"
check "over the byte cap: the server read far less than one 256 MiB body" test "$read_mib" -lt 128
check_eq "no temporary file left behind" 0 "$(find "$IMGCACHE_STORAGE_DIR/.tmp" -type f | wc -l)"

# redirects and internal addresses
check_eq "the 127.0.0.2 listener got no request" 0 \
    "$(MEDIA_URL=$INTERNAL_URL media_total)"
check "refused_address names the address, not a token" \
    grep -qF 'refused to connect to internal address 127.0.0.2' <(reason_of "$M/h/to-internal.png")

# the media folder
check_eq "nothing outside the media folder was read" "0 0" \
    "$(q "SELECT count(*) FROM image_blobs WHERE sha256 = '$SECRET_SHA'") $(find "$IMGCACHE_STORAGE_DIR" -name "$SECRET_SHA*" | wc -l)"
check_eq "a good file:// avatar from BEEPER_MEDIA_DIR is cached" \
    "$(sha256sum < "$BEEPER/sub/good.gif" | cut -d' ' -f1)" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$F_GOOD'")"
check "a '..' segment is named in the reason" grep -qF "'..' segment" <(reason_of "$F_DOTDOT")
check "a %2e%2e segment is refused as '..'" grep -qF "'..' segment" <(reason_of "$F_ENC")
check "a symlink out of the folder resolves outside" grep -qF 'resolves outside BEEPER_MEDIA_DIR' <(reason_of "$F_LINK")

# undecodable events
check_eq "not JSON: a bad_event dead letter" "bad_event" "$(dlt_of bad-notjson | hdr error_class)"
check "not JSON: the reason says so" grep -q 'not JSON' <(dlt_of bad-notjson | hdr error_message)
check_eq "no source_url: a bad_event dead letter" "bad_event" "$(dlt_of bad-nourl | hdr error_class)"
check "no source_url: the reason says so" grep -q 'no source_url' <(dlt_of bad-nourl | hdr error_message)
check_eq "a 100 KB event: a bad_event dead letter" "bad_event" "$(dlt_of bad-big | hdr error_class)"
check "a 100 KB event: the reason names the 64 KiB limit" grep -q 'over the 65536-byte limit' <(dlt_of bad-big | hdr error_message)
check_eq "a 100 KB event: the dead letter keeps the original value" "$(wc -c < "$TESTS_TMP/ev-big")" \
    "$(kcat -b "$KAFKA_BROKERS" -C -t image-needed-dlt -e -q -f '%k\t%S\n' 2>/dev/null | awk -F'\t' '$1 == "bad-big" { print $2 }')"
check_eq "undecodable events leave no image_failures row" 0 \
    "$(q "SELECT count(*) FROM image_failures WHERE source_url LIKE '%aaaaaaaaaa%' OR source_url IN ('bad-notjson', 'bad-nourl')")"
for s in ftp gopher javascript; do
    check "$s: the reason names the unsupported scheme" \
        grep -qF "unsupported URL scheme '$s'" <(grep "^$s:" "$TESTS_TMP/dlt.tsv" | hdr error_message)
done
check "the worker went on after the bad events: the good one behind them is cached" \
    test "$(q "SELECT count(*) FROM cached_images WHERE source_url = '$M/h/after-bad.png'")" = 1
check "the summary counts 3 bad events" grep -q 'event=summary .* bad_events=3 ' "$TESTS_TMP/w1.log"

# retries that succeed
check_eq "503 twice, then 200: cached after 3 requests" "1 3" \
    "$(q "SELECT count(*) FROM cached_images WHERE source_url = '$M/h/r503.png'") $(media_count /h/r503.png)"
check_eq "503 twice, then 200: no failure row and no dead letter" "0 0" \
    "$(q "SELECT count(*) FROM image_failures WHERE source_url = '$M/h/r503.png'") $(dlt_of "$M/h/r503.png" | wc -l)"
check_eq "404: exactly one image_failures row, one dead letter, one request" "1 1 1" \
    "$(q "SELECT count(*) FROM image_failures WHERE source_url = '$M/h/missing.png'") $(dlt_of "$M/h/missing.png" | wc -l) $(media_count /h/missing.png)"
# media server debug lines: "<ISO time> ... path=/h/r429.png status=429"
request_ms() {
    grep -F "path=$1 " "$MEDIA_LOG" | grep -F "status=$2 " | head -n 1 | cut -d' ' -f1 |
        sed 's/^\(.*\)T\(..\):\(..\):\(..\)\.\(...\)Z$/\2 \3 \4 \5/' |
        awk '{ print (($1 * 60 + $2) * 60 + $3) * 1000 + $4 }'
}
for p in /h/r429.png:429 /h/r503ra.png:503; do
    path=${p%:*}
    st=${p#*:}
    check_eq "$st with Retry-After: 1, then 200: cached after 2 requests" "1 2" \
        "$(q "SELECT count(*) FROM cached_images WHERE source_url = '$M$path'") $(media_count "$path")"
    first=$(request_ms "$path" "$st")
    second=$(request_ms "$path" 200)
    gap=$(( ${second:-0} - ${first:-0} ))
    echo "# $path: ${gap} ms between the $st and the retry"
    check "$st with Retry-After: 1: the retry came at least 1 s later" test "$gap" -ge 1000
done

check_eq "every good URL is cached" "${#GOOD[@]}" \
    "$(q "SELECT count(*) FROM cached_images WHERE source_url IN ($(printf "'%s'," "${GOOD[@]}" | sed 's/,$//'))")"
check_eq "one dead letter per failing URL, none for the rest" \
    "$(( $(wc -l < "$CASES") + 3 ))" "$(wc -l < "$TESTS_TMP/dlt.tsv")"
check "the summary line is complete" \
    grep -qE 'event=summary consumed=[0-9]+ already_cached=[0-9]+ downloaded=[0-9]+ new_blobs=[0-9]+ committed=[0-9]+ failed=[0-9]+ retries=[0-9]+ dead_letters=[0-9]+ bad_events=3' \
    "$TESTS_TMP/w1.log"
check "the worker never crashed or logged an error" bash -c "! grep -aE ' error |event=db_down|AddressSanitizer|runtime error' '$TESTS_TMP/w1.log'"
it_done
