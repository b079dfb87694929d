#!/usr/bin/env bash
# Revalidation and refresh (`imgcache-producer refresh`): cached images not
# checked for --older-than are announced with reason=refresh, and workers
# check each with its source instead of counting a cache hit.
#   http(s), against the media server (which counts conditional requests,
#   304s and full downloads): unchanged -> one conditional request, a 304,
#   only refreshed_at moves; touched (same bytes, new validators) -> a full
#   download, the same blob, new validators; rewritten -> a full download,
#   a new blob, the row repointed, the old blob kept; deleted (404) -> the
#   cached row untouched, an image_failures row, nothing retried or
#   dead-lettered.
#   A BEEPER_MEDIA_DIR file: its size and mtime stand in for an ETag;
#   a file:// URL through BEEPER_MEDIA_SERVER: the server's validators.
#   Five refresh events of one URL: one conditional request, at most one
#   download; a refresh event older than the row's last check: no request.
#   --network and --limit choose what is announced; bad values are refused.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 4

LOCAL=$TESTS_TMP/beeper/media
for n in nm same chg gone five; do media_image "$MEDIA/r/$n.png" "imgcache-refresh-$n"; done
for n in loc-nm loc-chg; do media_image "$LOCAL/$n.png" "imgcache-refresh-$n"; done
start_media "$MEDIA"
M=$MEDIA_URL
export BEEPER_MEDIA_DIR=$LOCAL
FILE=file:///home/user/.config/BeeperTexts/media
# every failure here is on 127.0.0.1: keep the circuit breaker out of the way
export IMGCACHE_BREAKER_THRESHOLD=100000 IMGCACHE_RETRY_BACKOFF=200ms

CHATS=$TESTS_TMP/chats.jsonl
: > "$CHATS"
chat() { # id network url
    printf '{"id":"%s","accountID":"acc","title":"Chat %s","type":"group","network":"%s","imgURL":"%s"}\n' \
        "$1" "$1" "$2" "$3" >> "$CHATS"
}
for n in nm same chg gone; do chat "c-$n" Refresh "$M/r/$n.png"; done
for n in loc-nm loc-chg; do chat "c-$n" Refresh "$FILE/$n.png"; done
chat c-five Other "$M/r/five.png"

check "import succeeds" "$BIN/imgcache-producer" import --quiet "$CHATS"
start_worker w1 --drain
check "the first worker caches every image and exits 0" wait_worker w1 120
check_eq "7 images cached" 7 "$(q "SELECT count(*) FROM cached_images")"
check "a media file is cached with its size+mtime tag as its ETag" \
    grep -q '^file:size=[0-9]*;mtime=[0-9]*\.[0-9]*$' <(q "SELECT etag FROM cached_images WHERE source_url = '$FILE/loc-nm.png'")

out=$("$BIN/imgcache-producer" refresh --quiet 2>>"$TESTS_TMP/refresh.log")
check_eq "refresh right after caching: nothing is older than 30 days" "urls=0 published=0" "$out"

# ---- the sources change ------------------------------------------------------------
touch -d '2031-01-01 00:00:00' "$MEDIA/r/same.png"
media_image "$MEDIA/r/chg.png" "imgcache-refresh-chg-NEW"
rm "$MEDIA/r/gone.png"
media_image "$LOCAL/loc-chg.png" "imgcache-refresh-loc-chg-NEW"
q "UPDATE cached_images SET refreshed_at = now() - interval '40 days'" > /dev/null
row() { q "SELECT sha256 || '|' || imgcache_public_url(b.storage_key) || '|' || coalesce(c.etag, '-') FROM cached_images c JOIN image_blobs b USING (sha256) WHERE c.source_url = '$1'"; }
OLD_CHG=$(row "$M/r/chg.png")
OLD_CHG_SHA=${OLD_CHG%%|*}
OLD_GONE=$(row "$M/r/gone.png")
OLD_SAME=$(row "$M/r/same.png")
OLD_NM=$(row "$M/r/nm.png")
OLD_LOC_NM=$(row "$FILE/loc-nm.png")
OLD_LOC_CHG_SHA=$(q "SELECT sha256 FROM cached_images WHERE source_url = '$FILE/loc-chg.png'")
media_reset

stat_of() { curl -fsS "$MEDIA_URL/__stats" | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
out=$("$BIN/imgcache-producer" refresh --network Refresh --quiet 2>>"$TESTS_TMP/refresh.log")
check_eq "refresh --network Refresh announces its 6 stale images" "urls=6 published=6" "$out"
start_worker w2 --drain
check "the refreshing worker drains and exits 0" wait_worker w2 120

check_eq "media server: 4 conditional requests (the http images of Refresh)" 4 "$(stat_of conditional)"
check_eq "media server: one 304 (the unchanged image)" 1 "$(stat_of not_modified)"
check_eq "media server: 2 full downloads (touched, rewritten)" 2 "$(stat_of full)"
check_eq "worker: not_modified=2 refreshed_same=1 refreshed_changed=2 refresh_failed=1" "2 1 2 1" \
    "$(worker_counter w2 not_modified) $(worker_counter w2 refreshed_same) $(worker_counter w2 refreshed_changed) $(worker_counter w2 refresh_failed)"
fresh() { q "SELECT refreshed_at > now() - interval '1 hour' FROM cached_images WHERE source_url = '$1'"; }

check_eq "unchanged (304): the row as it was" "$OLD_NM" "$(row "$M/r/nm.png")"
check_eq "unchanged (304): refreshed_at moved" t "$(fresh "$M/r/nm.png")"

NEW_SAME_ETAG=$(curl -sI "$M/r/same.png" | sed -n 's/^ETag: \(.*\)\r$/\1/p')
check_eq "same bytes: the same blob, the new ETag" "${OLD_SAME%|*}|$NEW_SAME_ETAG" "$(row "$M/r/same.png")"
check "same bytes: the ETag did change" test "${OLD_SAME##*|}" != "$NEW_SAME_ETAG"
check_eq "same bytes: refreshed_at moved" t "$(fresh "$M/r/same.png")"

NEW_CHG_SHA=$(sha256sum "$MEDIA/r/chg.png" | cut -d' ' -f1)
check_eq "new bytes: the row points at the new blob" "$NEW_CHG_SHA" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$M/r/chg.png'")"
check "new bytes: a new public URL" test "$(row "$M/r/chg.png" | cut -d'|' -f2)" != "$(echo "$OLD_CHG" | cut -d'|' -f2)"
check_eq "new bytes: the old blob's row is kept for gc" 1 \
    "$(q "SELECT count(*) FROM image_blobs WHERE sha256 = '$OLD_CHG_SHA'")"
check "new bytes: the old blob's file is kept" \
    test -f "$IMGCACHE_STORAGE_DIR/$(q "SELECT storage_key FROM image_blobs WHERE sha256 = '$OLD_CHG_SHA'")"
check_eq "new bytes: refreshed_at moved" t "$(fresh "$M/r/chg.png")"

check_eq "404: the cached row untouched" "$OLD_GONE" "$(row "$M/r/gone.png")"
check_eq "404: refreshed_at did not move (the next refresh asks again)" f "$(fresh "$M/r/gone.png")"
check_eq "404: recorded on image_failures, not permanent, no retry time" "http_404|f|-" \
    "$(q "SELECT error_class || '|' || permanent::text::char || '|' || coalesce(next_retry_at::text, '-')
          FROM image_failures WHERE source_url = '$M/r/gone.png'")"
check_eq "404: the view still serves the cached picture" cached \
    "$(q "SELECT image_source FROM chat_avatars WHERE chat_id = 'c-gone'")"
check_eq "404: nothing published to -retry or -dlt" "" \
    "$(topic_dump "${TOPIC:-image-needed}-retry"; topic_dump "${TOPIC:-image-needed}-dlt")"

check_eq "media file unchanged: the row as it was, refreshed" "$OLD_LOC_NM t" \
    "$(row "$FILE/loc-nm.png") $(fresh "$FILE/loc-nm.png")"
check_eq "media file rewritten: the row points at its new bytes" "$(sha256sum "$LOCAL/loc-chg.png" | cut -d' ' -f1)" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$FILE/loc-chg.png'")"
check "media file rewritten: the sha256 did change" test "$OLD_LOC_CHG_SHA" != \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$FILE/loc-chg.png'")"
check_eq "--network Refresh left the Other chat's image alone" f "$(fresh "$M/r/five.png")"
check_eq "still 7 cached images; 9 blobs (2 old ones kept)" "7 9" \
    "$(q "SELECT count(*) FROM cached_images") $(q "SELECT count(*) FROM image_blobs")"

# ---- five announcements, one check -----------------------------------------------
media_image "$MEDIA/r/five.png" "imgcache-refresh-five-NEW"
media_reset
for i in 1 2 3 4 5; do
    out=$("$BIN/imgcache-producer" refresh --network Other --older-than 7d --quiet 2>>"$TESTS_TMP/refresh.log")
    [ "$out" = "urls=1 published=1" ] || echo "# refresh run $i said: $out"
done
# this worker serves its metrics: scraped once it has read the five events
METRICS_PORT=$(pick_port) || it_bail "no free port"
export IMGCACHE_METRICS_ADDR=127.0.0.1:$METRICS_PORT
start_worker w3
unset IMGCACHE_METRICS_ADDR
metric() { # 'NAME{LABELS}': its value in the last scrape
    grep -F "$1 " "$TESTS_TMP/scrape.txt" | awk '{print $2}'
}
five_done() {
    curl -fsS -o "$TESTS_TMP/scrape.txt" "http://127.0.0.1:$METRICS_PORT/metrics" &&
        [ "$(metric 'imgcache_events_consumed_total{topic="image-needed"}')" = 5 ] &&
        [ "$(metric 'imgcache_jobs_total{outcome="revalidated"}')" = 1 ]
}
check "the worker reads the five events and refreshes the image" wait_for 60 five_done
check_eq "metrics: one revalidation, changed; nothing else counted" "1 0 0 0 1 0" \
    "$(metric 'imgcache_revalidations_total{result="changed"}') $(metric 'imgcache_revalidations_total{result="same"}') $(metric 'imgcache_revalidations_total{result="not_modified"}') $(metric 'imgcache_revalidations_total{result="failed"}') $(metric 'imgcache_jobs_total{outcome="revalidated"}') $(metric 'imgcache_jobs_total{outcome="cached"}')"
check "the worker of the five events stops and exits 0" stop_worker w3 60
check_eq "five refresh events: one conditional request, one full download" "1 1" \
    "$(stat_of conditional) $(stat_of full)"
check_eq "five refresh events: the row points at the new bytes" "$(sha256sum "$MEDIA/r/five.png" | cut -d' ' -f1)" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$M/r/five.png'")"

# a refresh event produced before the row's last check: already answered
media_reset
printf '%s\t{"v":1,"source_url":"%s","chat_id":"c-five","reason":"refresh","produced_at":"2026-01-01T00:00:00.000Z"}\n' \
    "$M/r/five.png" "$M/r/five.png" | kcat -b "$KAFKA_BROKERS" -P -t "${TOPIC:-image-needed}" -K '	'
start_worker w4 --drain
check "the late-event worker drains and exits 0" wait_worker w4 120
check_eq "a refresh event older than the last check: no request" 0 "$(stat_of total)"
check_eq "it counts as already cached" 1 "$(worker_counter w4 already_cached)"

# ---- file:// through the media server (no BEEPER_MEDIA_DIR): its validators -------
media_image "$MEDIA/ms/srv.png" "imgcache-refresh-srv"
printf '{"id":"c-srv","accountID":"acc","title":"Server","type":"group","network":"Server","imgURL":"%s"}\n' \
    "$FILE/srv.png" > "$TESTS_TMP/srv.jsonl"
check "import of the media-server chat succeeds" "$BIN/imgcache-producer" import --quiet "$TESTS_TMP/srv.jsonl"
unset BEEPER_MEDIA_DIR
export BEEPER_MEDIA_SERVER=$M/ms
start_worker w5 --drain
check "the media-server worker caches it and exits 0" wait_worker w5 120
check "cached with the media server's ETag" test -n "$(q "SELECT etag FROM cached_images WHERE source_url = '$FILE/srv.png'")"
srv_round() { # name: set the row back, refresh network Server, drain a worker
    q "UPDATE cached_images SET refreshed_at = now() - interval '40 days' WHERE source_url = '$FILE/srv.png'" > /dev/null
    media_reset
    out=$("$BIN/imgcache-producer" refresh --network Server --quiet 2>>"$TESTS_TMP/refresh.log")
    [ "$out" = "urls=1 published=1" ] || echo "# refresh --network Server said: $out"
    start_worker "$1" --drain
    wait_worker "$1" 120
}
OLD_SRV=$(row "$FILE/srv.png")
check "media server, unchanged: the worker drains and exits 0" srv_round w6
check_eq "media server, unchanged: 1 conditional request, one 304, no download" "1 1 0" \
    "$(stat_of conditional) $(stat_of not_modified) $(stat_of full)"
check_eq "media server, unchanged: the row as it was, refreshed" "$OLD_SRV t" "$(row "$FILE/srv.png") $(fresh "$FILE/srv.png")"
media_image "$MEDIA/ms/srv.png" "imgcache-refresh-srv-NEW"
check "media server, rewritten: the worker drains and exits 0" srv_round w7
check_eq "media server, rewritten: 1 conditional request, no 304, one download" "1 0 1" \
    "$(stat_of conditional) $(stat_of not_modified) $(stat_of full)"
check_eq "media server, rewritten: the row points at the new bytes" "$(sha256sum "$MEDIA/ms/srv.png" | cut -d' ' -f1)" \
    "$(q "SELECT sha256 FROM cached_images WHERE source_url = '$FILE/srv.png'")"

# ---- the command line ---------------------------------------------------------------
out=$("$BIN/imgcache-producer" refresh --older-than 0 --limit 2 --quiet 2>>"$TESTS_TMP/refresh.log")
check_eq "--limit 2 announces 2" "urls=2 published=2" "$out"
out=$("$BIN/imgcache-producer" refresh --older-than=0 --network=Nowhere --quiet 2>>"$TESTS_TMP/refresh.log")
check_eq "an unknown network announces nothing" "urls=0 published=0" "$out"
"$BIN/imgcache-producer" refresh --older-than soon > "$TESTS_TMP/bad.out" 2>&1
check_eq "--older-than soon: exit 2" 2 $?
check "--older-than soon: the message names the option and the value" grep -q -- "--older-than.*'soon'" "$TESTS_TMP/bad.out"
"$BIN/imgcache-producer" refresh --limit 0 > "$TESTS_TMP/bad.out" 2>&1
check_eq "--limit 0: exit 2" 2 $?
"$BIN/imgcache-producer" refresh --network > "$TESTS_TMP/bad.out" 2>&1
check_eq "--network without a value: exit 2" 2 $?

check "the workers never crashed or logged an error" \
    bash -c "! grep -aE ' error |AddressSanitizer|runtime error' '$TESTS_TMP'/w[1-7].log"
it_done
