#!/usr/bin/env bash
# What a user sees for a mistake on the command line: a flag without its
# value is named (it printed a garbage byte, '-\357'), an error names the
# flag the user typed (not its IMGCACHE_ variable), values that used to be
# accepted silently are refused, and a worker start error is one line.
. "$ROOT/tests/integration/lib.sh"

out() { "$@" 2>&1; echo "exit=$?"; }

o=$(out "$BIN/imgcache-producer" --sync-timeout)
check_eq "a missing value names the flag" "imgcache-producer: --sync-timeout needs a value|exit=2" "$(echo "$o" | paste -sd'|')"
o=$(out "$BIN/imgcache-worker" --concurrency)
check_eq "the worker's too" "imgcache-worker: --concurrency needs a value|exit=2" "$(echo "$o" | paste -sd'|')"
o=$(IMGCACHE_LOG_LEVEL=info out "$BIN/imgcache-worker" --log-level loud)
check_eq "a bad flag value names the flag" \
    "imgcache-worker: --log-level: 'loud' is not debug, info, warn or error|exit=2" "$(echo "$o" | paste -sd'|')"
o=$(IMGCACHE_LOG_LEVEL=loud out "$BIN/imgcache-worker")
check "the same from the environment names the variable" grep -q "^imgcache-worker: IMGCACHE_LOG_LEVEL: 'loud'" <<< "$o"
for v in '2s,,5s' '' '2s,' 'soon'; do
    o=$(out "$BIN/imgcache-worker" --retry-backoff "$v")
    check "--retry-backoff '$v' is refused with a reason" grep -Eq "^imgcache-worker: --retry-backoff: .*(empty|not a duration)" <<< "$o"
done
o=$(out "$BIN/imgcache-worker" --public-url 'not a url')
check "--public-url 'not a url' is refused" grep -q "^imgcache-worker: --public-url: 'not a url' is not a URL" <<< "$o"

# a start error (PostgreSQL not listening on port 1): one line, not two
o=$(DATABASE_URL=postgresql://u@127.0.0.1:1/none KAFKA_BROKERS=127.0.0.1:1 out "$BIN/imgcache-worker" --drain)
check_eq "a worker start error is printed once" 1 "$(grep -c 'cannot connect to PostgreSQL' <<< "$o")"
it_done
