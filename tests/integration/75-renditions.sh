#!/usr/bin/env bash
# imgcache-renderer behind a fleet that cached real pictures:
#  - the worker publishes image-stored for each new blob; the renderer makes
#    every preset (64,128,256) of every cached image, square, never upscaled
#    (checked with vipsheader against the source's size and the row);
#  - no EXIF (GPS) survives; a rotated-EXIF JPEG comes out upright; an
#    animated GIF gives its first frame;
#  - a renderer killed with kill -9 in the middle of an image loses nothing:
#    after a restart every preset is there, one row each;
#  - a render past IMGCACHE_RENDER_TIMEOUT ends the process (SIGALRM), a
#    crash counts too, and after IMGCACHE_RENDER_ATTEMPTS the image is given
#    up (render_failures) instead of crashing the renderer again; a corrupt
#    image and one over IMGCACHE_MAX_PIXELS are given up at once; each
#    given-up image leaves exactly one dead letter on image-stored-dlt
#    (kcat): keyed by sha256, the image-stored event as its value, the error
#    class in its headers; a replay does not add another;
#  - `renditions backfill` publishes only blobs missing a preset; a replay
#    under a new group with an extra preset adds it, downloading nothing;
#  - chat_avatars.thumb_url and avatar_renditions show the URLs;
#  - SIGTERM stops the renderer cleanly (exit 0);
#  - gc removes a blob's renditions (rows and files), but not a file
#    another blob's rendition row still names (identical output).
# The crash and the hang come from the renderer's test hooks
# (IMGCACHE_RENDER_TEST_CRASH / _HANG = a sha256), see worker/render_image.c.
. "$ROOT/tests/integration/lib.sh"
it_setup 2

P="$BIN/imgcache-producer"
STORE=$IMGCACHE_STORAGE_DIR
R_IMG=$IMG/renditions

mkdir -p "$MEDIA"
for f in gps.jpg rotated.jpg anim.gif small.png large.jpg; do cp "$R_IMG/$f" "$MEDIA/$f"; done
for f in avatar.jpg avatar.png avatar.webp; do cp "$IMG/$f" "$MEDIA/$f"; done
media_image "$MEDIA/poison.png" "imgcache-render-poison"
# avatar.png's pixels with bytes of its own: another blob, the same renditions
media_image "$MEDIA/twin.png" "imgcache-render-twin"
# a PNG whose header is fine (the worker stores it) and whose pixels are not
head -c 60 "$IMG/avatar.png" > "$MEDIA/corrupt.png"
head -c 150 /dev/zero >> "$MEDIA/corrupt.png"
tail -c 59 "$IMG/avatar.png" >> "$MEDIA/corrupt.png"
start_media "$MEDIA"
M=$MEDIA_URL
GOOD="gps.jpg rotated.jpg anim.gif small.png avatar.jpg avatar.png avatar.webp twin.png"
N_GOOD=8
POISON=$(sha256sum "$MEDIA/poison.png" | cut -d' ' -f1)

n=0
for f in $GOOD poison.png corrupt.png large.jpg; do
    n=$((n + 1))
    printf '{"id":"g-%02d","accountID":"x","title":"G %s","type":"group","imgURL":"%s/%s"}\n' "$n" "$f" "$M" "$f"
done > "$TESTS_TMP/chats.jsonl"
"$P" import --quiet "$TESTS_TMP/chats.jsonl" > "$TESTS_TMP/import.out" 2> "$TESTS_TMP/import.err"
check "import exits 0" test $? -eq 0
start_worker w1 --drain
check "the worker drains and exits 0" wait_worker w1 60
check_eq "11 URLs cached" 11 "$(q "SELECT count(*) FROM cached_images")"
HITS=$(media_total)

# ---- helpers ------------------------------------------------------------------------
# renderer NAME [env...] -- [args...]: one renderer in the background; RPID
renderer() {
    local name=$1
    shift
    env "$@" "$BIN/imgcache-renderer" -X session.timeout.ms=6000 -X heartbeat.interval.ms=1000 \
        --max-pixels 700000 < /dev/null >> "$TESTS_TMP/$name.log" 2>&1 &
    RPID=$!
    _it_track "$RPID"
}
rows_of() { q "SELECT count(*) FROM image_renditions WHERE source_sha256 <> '$POISON'"; }
attempts() { q "SELECT coalesce((SELECT attempts || '|' || error_class || '|' || permanent FROM render_failures WHERE source_sha256 = '$1'), 'none')"; }
poison_started() { [ "$(q "SELECT count(*) FROM render_failures WHERE source_sha256 = '$POISON' AND attempts = $1")" = 1 ]; }
rows_for() { q "SELECT count(*) FROM image_renditions r JOIN cached_images c ON c.sha256 = r.source_sha256 WHERE c.source_url = '$M/$1'"; }
src_of() { q "SELECT r.preset || ' ' || r.storage_key || ' ' || r.width || ' ' || r.height FROM image_renditions r JOIN cached_images c ON c.sha256 = r.source_sha256 WHERE c.source_url = '$M/$1' ORDER BY r.preset"; }
key_of() { q "SELECT r.storage_key FROM image_renditions r JOIN cached_images c ON c.sha256 = r.source_sha256 WHERE c.source_url = '$M/$1' AND r.preset = $2"; }
given_up() { q "SELECT f.error_class FROM render_failures f JOIN cached_images c ON c.sha256 = f.source_sha256 WHERE c.source_url = '$M/$1' AND f.permanent"; }
all_done() { [ "$(rows_of)" -ge $((N_GOOD * $1)) ] && [ "$(q "SELECT count(*) FROM render_failures WHERE permanent")" = 3 ]; }

# ---- a renderer killed with kill -9 in the middle of an image -----------------------
# it hangs on the poison image (a decoder that never returns): killed there
renderer r1 IMGCACHE_RENDER_TEST_HANG="$POISON"
check "r1 starts rendering the poison image (attempt 1 counted before decoding)" wait_for 40 poison_started 1
kill -KILL "$RPID"
wait "$RPID" 2>/dev/null

# ---- the time limit: SIGALRM ends a render that does not finish ---------------------
renderer r2 IMGCACHE_RENDER_TEST_HANG="$POISON" IMGCACHE_RENDER_TIMEOUT=1s
R2=$RPID
wait_pid "$R2" 40
check_eq "r2 hangs on the poison image and is ended by its time limit (SIGALRM: exit 142)" 142 "$?"
check_eq "attempt 2 counted" "2|started|false" "$(attempts "$POISON")"

# ---- a crash counts too; after 3 attempts the image is given up, not retried ---------
# a supervisor restarts the renderer after each crash, as Docker would
export IMGCACHE_RENDER_TEST_CRASH=$POISON
(
    for i in 1 2 3 4 5; do
        "$BIN/imgcache-renderer" -X session.timeout.ms=6000 -X heartbeat.interval.ms=1000 --max-pixels 700000 \
            < /dev/null >> "$TESTS_TMP/r3.log" 2>&1 &
        echo $! > "$TESTS_TMP/r3.pid"
        wait $!
        rc=$?
        echo "$rc" >> "$TESTS_TMP/r3.exits"
        [ "$rc" = 134 ] || break
    done
) &
_it_track "$!"
unset IMGCACHE_RENDER_TEST_CRASH
check "every preset of every renderable image, and 3 images given up" wait_for 45 all_done 3
check_eq "the poison image: given up after 3 unfinished renders" "4|crashed_or_timed_out|true" "$(attempts "$POISON")"
check_eq "the renderer crashed once on it, then went on (no crash loop)" "134" "$(cat "$TESTS_TMP/r3.exits")"
check_eq "the corrupt PNG is given up as a bad image" bad_image "$(given_up corrupt.png)"
check_eq "the 1200x800 JPEG over --max-pixels is given up as too large" too_large "$(given_up large.jpg)"
# ---- dead letters: one per given-up image, on image-stored-dlt ----------------------
# "sha256 error_class" of each dead letter, and of each image-stored event
# whose value a dead letter does not repeat byte for byte
dead_letters() {
    kcat -b "$KAFKA_BROKERS" -C -t image-stored-dlt -e -q -f '%k\t%h\n' 2>/dev/null |
        sed -n 's/^\([0-9a-f]*\)\t.*error_class=\([a-z_]*\).*$/\1 \2/p' | sort
}
sha_of() { q "SELECT sha256 FROM cached_images WHERE source_url = '$M/$1'"; }
WANT_DLT=$(printf '%s crashed_or_timed_out\n%s bad_image\n%s too_large\n' "$POISON" "$(sha_of corrupt.png)" \
    "$(sha_of large.jpg)" | sort)
check_eq "image-stored-dlt: exactly one dead letter per given-up image, with its class" "$WANT_DLT" "$(dead_letters)"
values_differ() {
    kcat -b "$KAFKA_BROKERS" -C -t image-stored -e -q -f '%k\t%s\n' 2>/dev/null | sort -u > "$TESTS_TMP/stored.tsv"
    kcat -b "$KAFKA_BROKERS" -C -t image-stored-dlt -e -q -f '%k\t%s\n' 2>/dev/null | sort -u > "$TESTS_TMP/dlt.tsv"
    comm -13 "$TESTS_TMP/stored.tsv" "$TESTS_TMP/dlt.tsv"
}
check_eq "each dead letter's value is its image-stored event, as consumed" "" "$(values_differ)"
dlt_headers() { kcat -b "$KAFKA_BROKERS" -C -t image-stored-dlt -e -q -f '%k %h\n' 2>/dev/null; }
check_eq "the headers say where each came from: image-stored, partition, offset, attempts, class" 3 \
    "$(dlt_headers | grep -c ' source_topic=image-stored,source_partition=[0-9]*,source_offset=[0-9]*,attempts=[0-9]*,error_class=[a-z_]*,error_message=.*,first_failed_at=')"
check_eq "the poison image's dead letter counts its 4 renders" "attempts=4" \
    "$(dlt_headers | grep "^$POISON " | grep -o 'attempts=[0-9]*')"
check_eq "one row per image and preset (kill -9 and crashes lost nothing, added nothing)" \
    "$((N_GOOD * 3))|$((N_GOOD * 3))" \
    "$(q "SELECT count(*) || '|' || count(DISTINCT (source_sha256, preset)) FROM image_renditions")"

# ---- what the renditions are --------------------------------------------------------
sizes_ok() { # file: each rendition square, min(preset, source's shorter side), as its row says
    local src w h short preset key rw rh got
    src=$MEDIA/$1
    w=$(vipsheader -f width "$src") h=$(vipsheader -f height "$src")
    short=$((w < h ? w : h))
    while read -r preset key rw rh; do
        want=$((preset < short ? preset : short))
        got="$(vipsheader -f width "$STORE/$key")x$(vipsheader -f height "$STORE/$key")"
        [ "$got|$rw|$rh" = "${want}x$want|$want|$want" ] || { echo "$1 preset $preset: file $got, row $rw x $rh, want $want"; return 1; }
        [ "$(vipsheader -f vips-loader "$STORE/$key")" = webpload ] || { echo "$key is not WebP"; return 1; }
    done < <(src_of "$1")
    [ "$(rows_for "$1")" = 3 ]
}
for f in $GOOD; do
    check "$f: 64, 128, 256 as square WebP, never upscaled (vipsheader)" sizes_ok "$f"
done
no_exif() {
    local key
    for key in $(q "SELECT r.storage_key FROM image_renditions r JOIN cached_images c ON c.sha256 = r.source_sha256 WHERE c.source_url = '$M/gps.jpg'"); do
        vipsheader -a "$STORE/$key" | grep -i -E 'exif|gps|xmp|icc' && return 1
        grep -a -q -E 'Exif|GPS' "$STORE/$key" && { echo "$key holds Exif bytes"; return 1; }
    done
    return 0
}
check "no EXIF (GPS) in any rendition of gps.jpg" no_exif
# red and blue (vips getpoint: "R G B")
is_red() { set -- $(vips getpoint "$1" "$2" "$3"); [ "${1%.*}" -gt 180 ] && [ "${3%.*}" -lt 80 ]; }
is_blue() { set -- $(vips getpoint "$1" "$2" "$3"); [ "${1%.*}" -lt 80 ] && [ "${3%.*}" -gt 180 ]; }
ROT=$STORE/$(key_of rotated.jpg 64)
check "rotated.jpg comes out upright: red top-right, blue top-left and bottom" \
    eval 'is_red "$ROT" 48 16 && is_blue "$ROT" 16 16 && is_blue "$ROT" 48 48'
ANIM=$STORE/$(key_of anim.gif 64)
check "anim.gif: the first frame (red), one page" \
    eval 'is_red "$ANIM" 16 16 && [ "$(vipsheader -f n-pages "$ANIM" 2>/dev/null || echo 1)" = 1 ]'

# ---- the views ------------------------------------------------------------------------
# the base URL the views build URLs with (schema 5; `migrate` may have set it already)
q "UPDATE settings SET public_base_url = 'http://cdn.test/images'" > /dev/null
check_eq "chat_avatars.thumb_url: the 128 px rendition's URL for every renderable chat" \
    "$N_GOOD" "$(q "SELECT count(*) FROM chat_avatars a JOIN cached_images c ON c.source_url = a.source_url JOIN image_renditions r ON r.source_sha256 = c.sha256 AND r.preset = 128 WHERE a.thumb_url = 'http://cdn.test/images/' || r.storage_key")"
check_eq "no thumb_url for the given-up images" "3" "$(q "SELECT count(*) FROM chat_avatars WHERE thumb_url IS NULL AND image_source = 'cached'")"
check_eq "avatar_renditions: one URL per cached image and preset" "$((N_GOOD * 3))" \
    "$(q "SELECT count(*) FROM avatar_renditions WHERE url LIKE 'http://cdn.test/images/__/%.webp'")"

# ---- SIGTERM: a clean stop --------------------------------------------------------------
R3=$(cat "$TESTS_TMP/r3.pid")
kill -TERM "$R3"
check "SIGTERM: the renderer exits 0" wait_for 20 eval '[ "$(tail -n 1 "$TESTS_TMP/r3.exits")" = 0 ]'
check "its last line counts what it did" grep -q 'event=stopped events=' "$TESTS_TMP/r3.log"

# ---- backfill and replay: a new preset, nothing downloaded ----------------------------------
out=$("$P" renditions backfill 2> "$TESTS_TMP/backfill1.err")
check_eq "renditions backfill: nothing is missing" "published=0" "$out"
out=$(IMGCACHE_RENDITIONS=64,96,128,256 "$P" renditions backfill 2> "$TESTS_TMP/backfill2.err")
check_eq "with a 96 px preset: every renderable blob is published" "published=$N_GOOD" "$out"
renderer r4 IMGCACHE_RENDITIONS=64,96,128,256 IMGCACHE_RENDER_GROUP=imgcache-renderer-replay
check "a replay under a new group adds the 96 px preset to every renderable image" wait_for 40 all_done 4
check_eq "96 px rows" "$N_GOOD" "$(q "SELECT count(*) FROM image_renditions WHERE preset = 96")"
check_eq "nothing was downloaded again (media server requests unchanged)" "$HITS" "$(media_total)"
check_eq "still one row per image and preset" "$((N_GOOD * 4))" "$(q "SELECT count(DISTINCT (source_sha256, preset)) FROM image_renditions")"
check_eq "the replay skipped the given-up images: still one dead letter each" "$WANT_DLT" "$(dead_letters)"
kill -TERM "$RPID"
check "r4 stops on SIGTERM with exit 0" wait_pid "$RPID" 20

check "no secret or crash in the renderer logs" absent "Segmentation" "$TESTS_TMP"/r*.log

# ---- gc: a blob's renditions go with it; a file shared with another blob stays --------
check_eq "twin.png and avatar.png share their rendition files" 4 \
    "$(q "SELECT count(*) FROM image_renditions t JOIN image_renditions a ON a.storage_key = t.storage_key AND a.preset = t.preset AND a.source_sha256 <> t.source_sha256 JOIN cached_images c ON c.sha256 = t.source_sha256 WHERE c.source_url = '$M/twin.png'")"
GPS_KEYS=$(q "SELECT r.storage_key FROM image_renditions r JOIN cached_images c ON c.sha256 = r.source_sha256 WHERE c.source_url = '$M/gps.jpg'")
TWIN_KEYS=$(q "SELECT r.storage_key FROM image_renditions r JOIN cached_images c ON c.sha256 = r.source_sha256 WHERE c.source_url = '$M/twin.png'")
q "DELETE FROM chats WHERE chat_id IN ('g-01', 'g-08')" > /dev/null # gps.jpg, twin.png
find "$STORE" -type f -exec touch -d '2 hours ago' {} +
"$P" gc --grace 0 --quiet > "$TESTS_TMP/gc.out" 2> "$TESTS_TMP/gc.err"
check "gc exits 0" test $? -eq 0
check_eq "gc took the two blobs' rendition rows" "$(((N_GOOD - 2) * 4))" "$(q "SELECT count(*) FROM image_renditions")"
all_gone() { local k; for k in $GPS_KEYS; do [ ! -e "$STORE/$k" ] || { echo "$k still there"; return 1; }; done; }
all_there() { local k; for k in $TWIN_KEYS; do [ -f "$STORE/$k" ] || { echo "$k gone"; return 1; }; done; }
check "gc removed gps.jpg's rendition files" all_gone
check "gc kept twin.png's rendition files: avatar.png's rows name them" all_there
it_done
