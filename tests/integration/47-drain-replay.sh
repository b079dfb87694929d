#!/usr/bin/env bash
# Drains, replays and the worker's counters:
#  - identical bytes under several URLs, cached in one go, make one file and
#    count as one new blob (new_blobs was counted per URL when the copies
#    shared a commit batch);
#  - a URL refused before any download: its dead letter's `attempts` is
#    what its failure row says (the header said 0, the row 1);
#  - --drain --from-beginning on a group that has committed everything
#    replays the topic (it reported `drained` at once with consumed=0: the
#    drain check read the group's committed offsets, at the end);
#  - --drain without an assignment within IMGCACHE_DRAIN_WAIT while the
#    group has unconsumed events is not drained: exit 1 with the reason; with
#    nothing left for the group it is, exit 0.
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/lib-faults.sh"
it_setup 4

CONTENTS=8 COPIES=4
urls=()
for c in $(seq $CONTENTS); do
    media_image "$MEDIA/c$c-1.png" "imgcache-drain-$c"
    for k in $(seq 2 $COPIES); do cp "$MEDIA/c$c-1.png" "$MEDIA/c$c-$k.png"; done
done
start_media "$MEDIA"
M=$MEDIA_URL
for c in $(seq $CONTENTS); do
    for k in $(seq $COPIES); do urls+=("$M/c$c-$k.png"); done
done
BAD="ftp://files.invalid/refused.png"
publish_url "${urls[@]}" "$BAD" > /dev/null || it_bail "cannot publish"
EVENTS=$(( CONTENTS * COPIES + 1 ))


# 1. one drain caches everything; the copies share their blobs
start_worker d1 --drain --concurrency 64
wait_worker d1 90
check_eq "the first drain exits 0" 0 "$?"
check_eq "every URL is cached" "$(( CONTENTS * COPIES ))" "$(q "SELECT count(*) FROM cached_images")"
files=$(find "$IMGCACHE_STORAGE_DIR" -path "$IMGCACHE_STORAGE_DIR/.tmp" -prune -o -type f -print | wc -l)
check_eq "one file per distinct content" "$CONTENTS" "$files"
check_eq "the summary's new_blobs is the number of files" "$files" "$(worker_counter d1 new_blobs)"

# 2. the refused URL: header and row agree on the attempts
topic_dump image-needed-dlt > "$TESTS_TMP/dlt.tsv"
row_attempts=$(q "SELECT attempts FROM image_failures WHERE source_url = '$BAD'")
dlt_attempts=$(awk -F'\t' -v k="$BAD" '$1 == k' "$TESTS_TMP/dlt.tsv" | hdr attempts)
check_eq "the refused URL has a failure row with 1 attempt" 1 "$row_attempts"
check_eq "its dead letter says attempts=$row_attempts, as its row" "$row_attempts" "$dlt_attempts"

# 3. the same group, everything committed: --from-beginning replays it
start_worker d2 --drain --from-beginning
wait_worker d2 90
check_eq "the replay drain exits 0" 0 "$?"
check_eq "the replay consumed every event of the topic" "$EVENTS" "$(worker_counter d2 consumed)"
check_eq "...and found the images cached (nothing downloaded)" "0 $(( CONTENTS * COPIES ))" \
    "$(worker_counter d2 downloaded) $(worker_counter d2 already_cached)"

# 4. no assignment within the wait: drained only if nothing was left.
# A member that holds every partition and is frozen (SIGSTOP) keeps a new
# member waiting until its session expires (30 s here): a real broker
# assigns a free group in milliseconds. The holder is a kcat consumer with
# the workers' assignor that reads the topic without committing anything.
# hold_group GROUP N: a holder that has its assignment and has read N events
hold_group() {
    local out=$TESTS_TMP/holder-$1.out
    kcat -b "$KAFKA_BROKERS" -G "$1" -X partition.assignment.strategy=cooperative-sticky \
        -X enable.auto.commit=false -X auto.offset.reset=earliest -X session.timeout.ms=30000 \
        -u -f '%k\n' image-needed > "$out" 2> "$out.err" &
    HOLDER=$!
    _it_track "$HOLDER"
    wait_for 30 grep -q 'rebalanced: .*assignment of [1-9]' "$out.err" || echo "# hold_group $1: no assignment: $(tail -n 3 "$out.err")"
    wait_for 30 bash -c "[ \$(wc -l < '$out') -ge $2 ]" || echo "# hold_group $1: the holder read $(wc -l < "$out") events"
    kill -STOP "$HOLDER"
}
release_group() {
    kill -KILL "$HOLDER" 2>/dev/null
    wait "$HOLDER" 2>/dev/null
}
hold_group never-assigned "$EVENTS"
start_worker d3 --drain --drain-wait 1s --group never-assigned
wait_worker d3 60
check_eq "a drain of a group with unconsumed events and no assignment exits 1" 1 "$?"
check "its reason names the wait and the unconsumed events" \
    grep -q "not drained: no partition assignment within 1000 ms (IMGCACHE_DRAIN_WAIT) while group never-assigned has $EVENTS unconsumed events on image-needed" "$TESTS_TMP/d3.log"
release_group
hold_group imgcache-workers 0
start_worker d4 --drain --drain-wait 1s
wait_worker d4 60
check_eq "the same for a group that consumed everything exits 0" 0 "$?"
check "it says there was nothing to drain" grep -q 'event=drained reason="no partition assignment within 1000 ms, and group imgcache-workers has no unconsumed event' "$TESTS_TMP/d4.log"
release_group
it_done
