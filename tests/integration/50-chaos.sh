#!/usr/bin/env bash
# A short chaos round (tests/chaos/chaos.sh): 1500 events over 1000 URLs to
# 3 workers that are killed -9 and restarted while Redis and PostgreSQL are
# paused, for 20 s; then one draining worker. Nothing may be lost, no worker
# may crash, every cached row must point at the right stored bytes.
# Duplicate downloads are allowed under SIGKILL and Redis outages: reported,
# not checked. CHAOS_SEED, CHAOS_EVENTS, CHAOS_SECONDS override the round.
. "$ROOT/tests/integration/lib.sh"

# the test stack's folder (its redis-server and PostgreSQL are the ones to
# pause); it_setup points BROKER_CTL at this script's own broker
STACK_DIR=
[ -n "${BROKER_CTL:-}" ] && STACK_DIR=$(dirname "$BROKER_CTL")
it_setup 12
# chaos.sh stores under its own work folder and checks every blob itself
# ("every cached row's blob matches"); it_done's store check would look at
# this script's empty one
IT_STORE_CHECK=0

seed=${CHAOS_SEED:-$(( $(date +%s) % 100000 ))}
events=${CHAOS_EVENTS:-1500}
echo "# chaos seed $seed (rerun: CHAOS_SEED=$seed sh tests/run.sh 50-chaos)"
out=$TESTS_TMP/chaos.out
err=$TESTS_TMP/chaos.err
# TMPDIR: a failed run keeps its work folder (logs) under TESTS_TMP
TMPDIR=$TESTS_TMP bash "$ROOT/tests/chaos/chaos.sh" --events "$events" --seconds "${CHAOS_SECONDS:-20}" \
    --seed "$seed" --stack-dir "$STACK_DIR" --drain-timeout 150 < /dev/null > "$out" 2> "$err" &
chaos_pid=$!
_it_track "$chaos_pid"
wait "$chaos_pid"
rc=$?
sed 's/^/# /' "$out"
grep -E 'summary:|FAIL|CRASH|error|lost_url|kept' "$err" | sed 's/^/# /'

val() { sed -n "s/^$1=//p" "$out" | head -n 1; }
# a key=value from chaos.sh's "summary:" lines on stderr
info() { grep 'summary:' "$err" | grep -o "[( ]$1=[^ )]*" | head -n 1 | sed 's/^.[^=]*=//'; }

check "the chaos run completes" test "$rc" -le 1 -a -n "$(val lost)"
check_eq "every event was published" "$events" "$(val events)"
check_eq "lost is 0" 0 "$(val lost)"
cached=$(val cached)
failed=$(val failed)
check_eq "every URL is cached or a permanent failure" "$(val unique_urls)" "$(( ${cached:-0} + ${failed:-0} ))"
check_eq "every cached row's blob matches" 0 "$(info bad_blobs)"
check_eq "no worker exited by itself during the chaos" 0 "$(info crashes)"
check_eq "SIGTERM: every pool worker exits 0" 0 "$(info bad_stops)"
check_eq "the draining worker finished and exited 0" 1 "$(info drain_ok)"
check_eq "only the 404 URLs failed (503-once URLs were retried)" "0 $(info expected_failed)" \
    "$(info unexpected_failures) $(val failed)"
echo "# duplicate_downloads=$(val duplicate_downloads) (information: allowed under SIGKILL and Redis pauses)"
echo "# chaos: kills=$(info kills) pauses_redis=$(info pauses_redis) pauses_pg=$(info pauses_pg) drain_seconds=$(info drain_seconds)"
if [ "$rc" -ne 0 ]; then
    echo "# chaos.sh log (last 40 lines):"
    tail -n 40 "$err" | sed 's/^/#   /'
fi
it_done
