#!/usr/bin/env bash
# A short libFuzzer round: every tests/fuzz/fuzz_*.c target for
# FUZZ_TEST_SECONDS (default 10) on a fresh corpus seeded from
# tests/fuzz/seeds, one "ok - fuzz NAME" (or "not ok" with the crash input,
# kept in build/fuzz/artifacts/) per target. Needs clang with libFuzzer:
# when a trivial fuzzer does not build here, the round is skipped with a
# message (no check runs). `make fuzz` runs the long version.
. "$ROOT/tests/integration/lib.sh"

secs=${FUZZ_TEST_SECONDS:-10}
jobs=$(nproc 2>/dev/null || echo 1)
[ "$jobs" -gt 2 ] && jobs=2
# rendition decodes real images with libvips (~1,000 inputs/s, not sniff's
# millions): a few seconds reach its gates; `make fuzz` runs it long
bash "$ROOT/tests/fuzz/run.sh" --seconds "$secs" \
    --seconds-for rendition="${FUZZ_TEST_RENDITION_SECONDS:-4}" --jobs "${FUZZ_TEST_JOBS:-$jobs}" \
    --corpus "$TESTS_TMP/corpus" < /dev/null &
_it_track $!
wait $!
rc=$?
if [ $rc -eq 77 ]; then
    echo "# $IT_NAME: SKIPPED, clang with libFuzzer is not available on this machine"
    exit 0
fi
exit $rc
