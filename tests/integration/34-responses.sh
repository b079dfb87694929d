#!/usr/bin/env bash
# Hostile responses: error statuses whose bodies are gzip-of-gzip bombs (4
# GiB of zeros in some 10 KB; the issue's 16 GiB held the loop 36 s) or never
# end, statuses outside 100-599, and
# validators too long to keep. Error bodies are not read, so bombs never
# hold the worker's loop: ordinary images published while bombs are in
# flight are cached on time (row timestamps against the publish time). Each
# hostile URL ends with its status's class: an endless 404 is http_404, not
# a timeout; 600 and 999 are permanent protocol errors, not retried 5xx.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 4

N_GOOD=20
for i in $(seq 0 $N_GOOD); do
    media_image "$MEDIA/g/$i.png" "imgcache-responses-$i"
done
for n in etag-long etag-255 etag-256 lm-long plain; do
    media_image "$MEDIA/v/$n.png" "imgcache-responses-$n"
done
start_media "$MEDIA"
M=$MEDIA_URL

BOMBS404=(/b/bomb404-1.png /b/bomb404-2.png /b/bomb404-3.png /b/bomb404-4.png)
BOMBS503=(/b/bomb503-1.png /b/bomb503-2.png)
for p in "${BOMBS404[@]}"; do media_fault "$p" bomb status=404 size=4GiB || it_bail "cannot set a fault"; done
for p in "${BOMBS503[@]}"; do media_fault "$p" bomb status=503 size=4GiB || it_bail "cannot set a fault"; done
media_fault /b/bomb200.png bomb status=200 size=4GiB || it_bail "cannot set a fault"
media_fault /b/endless404.png endless status=404 || it_bail "cannot set a fault"
media_fault /s/600.png status status=600 || it_bail "cannot set a fault"
media_fault /s/999.png status status=999 || it_bail "cannot set a fault"
LONG_ETAG="\"$(head -c 998 /dev/zero | tr '\0' e)\""
ETAG_255="\"$(head -c 253 /dev/zero | tr '\0' f)\""
ETAG_256="\"$(head -c 254 /dev/zero | tr '\0' g)\""
LONG_LM="Sun, 06 Nov 1994 08:49:37 GMT$(head -c 71 /dev/zero | tr '\0' ' ')x"
media_fault /v/etag-long.png validators "etag=$LONG_ETAG" || it_bail "cannot set a fault"
media_fault /v/etag-255.png validators "etag=$ETAG_255" || it_bail "cannot set a fault"
media_fault /v/etag-256.png validators "etag=$ETAG_256" || it_bail "cannot set a fault"
media_fault /v/lm-long.png validators "last_modified=$LONG_LM" || it_bail "cannot set a fault"
check_eq "the test's validators have the intended lengths" "1000 255 256 101" \
    "${#LONG_ETAG} ${#ETAG_255} ${#ETAG_256} ${#LONG_LM}"

# every failure here is on 127.0.0.1: keep the circuit breaker out of the way;
# a fetch timeout far above "on time", so a body read to the timeout shows
export IMGCACHE_BREAKER_THRESHOLD=100000 IMGCACHE_FETCH_TIMEOUT=10s
export IMGCACHE_RETRY_BACKOFF=200ms,200ms
start_worker w1
publish_url "$M/g/0.png" > /dev/null
first_cached() { test "$(q "SELECT count(*) FROM cached_images WHERE source_url = '$M/g/0.png'")" = 1; }
check "the worker caches a first image" wait_for 60 first_cached

# ---- bombs in flight, ordinary images behind them -------------------------------
HOSTILE=()
for p in "${BOMBS404[@]}" "${BOMBS503[@]}" /b/bomb200.png /b/endless404.png /s/600.png /s/999.png; do
    HOSTILE+=("$M$p")
done
publish_url "${HOSTILE[@]}" > /dev/null
bomb_requested() {
    local p
    for p in "${BOMBS404[@]}" "${BOMBS503[@]}"; do
        [ "$(media_count "$p")" -gt 0 ] && return 0
    done
    return 1
}
check "the worker requests the bombs" wait_for 60 bomb_requested
GOOD=()
for i in $(seq 1 $N_GOOD); do GOOD+=("$M/g/$i.png"); done
t_pub=$(now_ms)
publish_url "${GOOD[@]}" > /dev/null
good_in() { q "SELECT count(*) FROM cached_images WHERE source_url LIKE '$M/g/%' AND source_url <> '$M/g/0.png'"; }
all_good_in() { test "$(good_in)" = "$N_GOOD"; }
wait_for 180 all_good_in
check_eq "every ordinary image is cached" "$N_GOOD" "$(good_in)"
last_ms=$(q "SELECT (extract(epoch FROM max(cached_at)) * 1000)::bigint FROM cached_images
             WHERE source_url LIKE '$M/g/%' AND source_url <> '$M/g/0.png'")
lag=$(( ${last_ms:-0} - t_pub ))
echo "# the last ordinary image was cached ${lag} ms after it was published"
check "ordinary images behind the bombs are cached within 5 s" test "$lag" -ge 0 -a "$lag" -lt 5000

# ---- each hostile URL: classified by its status ----------------------------------
all_hostile_failed() {
    test "$(q "SELECT count(*) FROM image_failures WHERE permanent AND source_url LIKE '$M/_/%'")" = "${#HOSTILE[@]}"
}
check "every hostile URL ends as a permanent failure" wait_for 60 all_hostile_failed
check "the worker stops and exits 0" stop_worker w1 60
failure_of() {
    q "SELECT error_class || '|' || permanent || '|' || attempts || '|' || coalesce(http_status::text, '-')
       FROM image_failures WHERE source_url = '$M$1'"
}
for p in "${BOMBS404[@]}"; do
    check_eq "$p: http_404, permanent, 1 attempt" "http_404|true|1|404" "$(failure_of "$p")"
    check_eq "$p: requested once" 1 "$(media_count "$p")"
done
for p in "${BOMBS503[@]}"; do
    check_eq "$p: http_503, retried, then permanent after 3 attempts" "http_503|true|3|503" "$(failure_of "$p")"
done
check_eq "an endless 404 body: http_404 at once, not a timeout" "http_404|true|1|404" "$(failure_of /b/endless404.png)"
check "a 200 bomb: refused at the first bytes (not_image or too_large)" \
    grep -qE '^(not_image|too_large)\|true\|1\|' <(failure_of /b/bomb200.png)
check_eq "status 600: a permanent protocol error, requested once" "protocol|true|1|600 1" \
    "$(failure_of /s/600.png) $(media_count /s/600.png)"
check_eq "status 999: a permanent protocol error, requested once" "protocol|true|1|999 1" \
    "$(failure_of /s/999.png) $(media_count /s/999.png)"
check_eq "status 999: the reason names the range" "HTTP status 999 is outside 100-599" \
    "$(q "SELECT last_error FROM image_failures WHERE source_url = '$M/s/999.png'")"

# ---- validators: whole or not at all ---------------------------------------------
publish_url "$M/v/etag-long.png" "$M/v/etag-255.png" "$M/v/etag-256.png" "$M/v/lm-long.png" \
    "$M/v/plain.png" > /dev/null
start_worker w2 --drain
check "the validators worker drains and exits 0" wait_worker w2 120
val() { q "SELECT coalesce(length($2)::text, 'null') FROM cached_images WHERE source_url = '$M$1'"; }
check_eq "a 1000-character ETag: not stored (a cut one never matches)" null "$(val /v/etag-long.png etag)"
check_eq "a 255-character ETag: stored whole" "$ETAG_255" \
    "$(q "SELECT etag FROM cached_images WHERE source_url = '$M/v/etag-255.png'")"
check_eq "a 256-character ETag: not stored" null "$(val /v/etag-256.png etag)"
check_eq "a 101-character Last-Modified: not stored" null "$(val /v/lm-long.png last_modified)"
check "a dropped Last-Modified leaves the ETag" test "$(val /v/lm-long.png etag)" != null
check_eq "ordinary validators are stored whole" \
    "$(curl -sI "$M/v/plain.png" | sed -n 's/^ETag: \(.*\)\r$/\1/p')|$(curl -sI "$M/v/plain.png" | sed -n 's/^Last-Modified: \(.*\)\r$/\1/p')" \
    "$(q "SELECT etag || '|' || last_modified FROM cached_images WHERE source_url = '$M/v/plain.png'")"

check "the workers never crashed or logged an error" \
    bash -c "! grep -aE ' error |AddressSanitizer|runtime error' '$TESTS_TMP/w1.log' '$TESTS_TMP/w2.log'"
it_done
