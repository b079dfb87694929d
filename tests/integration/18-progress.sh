#!/usr/bin/env bash
# Progress for people: import and backfill on a terminal (a pseudo-terminal
# made by util-linux's `script`) show one live line rewritten with '\r', at
# most 4 times a second, finished with a newline before the summary; with
# stderr not a terminal the event=progress log line stays; --quiet shows
# neither.
. "$ROOT/tests/integration/lib.sh"
it_setup 4

P="$BIN/imgcache-producer"
command -v script > /dev/null || it_bail "util-linux's script is not installed"
N=40

# N chats, one a line, written 50 ms apart: the import runs about 2 s. The
# 20th chat's image URL is over the length limit: it is dropped with a
# warning logged while the live line is on screen.
GEN="$TESTS_TMP/slow-chats.sh"
LONG=$(head -c 3000 /dev/zero | tr '\0' 'x')
cat > "$GEN" <<EOF
for i in \$(seq 1 $N); do
    url=https://img.test/slow-\$i.png
    [ "\$i" = 20 ] && url=https://img.test/$LONG
    printf '{"id":"slow-%d","title":"Slow %d","type":"group","imgURL":"%s"}\n' "\$i" "\$i" "\$url"
    sleep 0.05
done
EOF
PUB=$((N - 1))

# 0 when the extended regex PATTERN matches nowhere in FILE (bytes).
nowhere() { # PATTERN FILE
    ! grep -aEq -- "$1" "$2"
}

# The whole screen of a command run on a pseudo-terminal, raw bytes.
on_terminal() { # OUTFILE COMMAND
    script -qec "$2" /dev/null < /dev/null > "$1" 2>&1
}

start=$(now_ms)
on_terminal "$TESTS_TMP/tty.out" "sh '$GEN' | '$P' --batch-size 1 import -"
check_eq "import on a terminal exits 0" 0 "$?"
elapsed_ms=$(( $(now_ms) - start ))
updates=$(grep -ao $'\rimport: [0-9,]* chats' "$TESTS_TMP/tty.out" | wc -l)
check "the live line was rewritten while the import ran (${updates} updates)" test "$updates" -ge 3
max=$(( elapsed_ms / 250 + 2 ))
check "at most 4 updates a second ($updates in ${elapsed_ms} ms, at most $max)" test "$updates" -le "$max"
check "the line shows count, rate and elapsed time" \
    grep -aEq $'\rimport: '"$N"' chats \([0-9,]+ published, [0-9,]+ already cached\), [0-9,]+ chats/s, [0-9.]+s' \
    "$TESTS_TMP/tty.out"
check "the warning about the dropped URL was logged" grep -aq 'event=url_dropped' "$TESTS_TMP/tty.out"
check "a log line never continues the live line: it was ended first" \
    nowhere $'\x1b\\[K[^\r]' "$TESTS_TMP/tty.out"
# the summary starts a line of its own: the live line was ended
tr '\r' '\n' < "$TESTS_TMP/tty.out" > "$TESTS_TMP/tty.lines"
check "the summary is on its own line after the live line" \
    grep -aEq "^chats=$N participants=0 urls=$N published=$PUB " "$TESTS_TMP/tty.lines"
check "no log line interleaved: event=progress is not shown on a terminal" \
    nowhere 'event=progress' "$TESTS_TMP/tty.out"

# not a terminal: no '\r', the log line of today
q "TRUNCATE chats CASCADE" > /dev/null 2>&1
sh "$GEN" | "$P" --batch-size 1 import - > "$TESTS_TMP/pipe.out" 2> "$TESTS_TMP/pipe.err"
check_eq "import into a pipe exits 0" 0 "$?"
check "no live line when stderr is not a terminal" nowhere $'\r' "$TESTS_TMP/pipe.err"
check "the progress log line stays" grep -q 'event=progress reason=import chats=40 ' "$TESTS_TMP/pipe.err"

# --quiet: neither
on_terminal "$TESTS_TMP/quiet.out" "sh '$GEN' | '$P' --batch-size 1 import --quiet -"
check_eq "import --quiet on a terminal exits 0" 0 "$?"
check "--quiet: no live line" nowhere 'import: ' "$TESTS_TMP/quiet.out"
check "--quiet: the summary still" grep -aq "^chats=$N " "$TESTS_TMP/quiet.out"
sh "$GEN" | "$P" --batch-size 1 import --quiet - > /dev/null 2> "$TESTS_TMP/quiet.err"
check "--quiet: no progress log line" nowhere 'event=progress' "$TESTS_TMP/quiet.err"

# backfill shares the module: its line counts URLs
on_terminal "$TESTS_TMP/backfill.out" "'$P' backfill"
check_eq "backfill on a terminal exits 0" 0 "$?"
check "backfill's live line counts URLs" grep -aEq $'\rbackfill: '"$PUB"' urls \('"$PUB"' published' "$TESTS_TMP/backfill.out"
check "backfill's summary on its own line" grep -aEq "^urls=$PUB published=$PUB" <(tr '\r' '\n' < "$TESTS_TMP/backfill.out")
on_terminal "$TESTS_TMP/backfill-quiet.out" "'$P' backfill --quiet"
check "backfill --quiet: no live line" nowhere 'backfill: ' "$TESTS_TMP/backfill-quiet.out"
"$P" import --quiet --bogus - < /dev/null > /dev/null 2> "$TESTS_TMP/bogus.err"
check_eq "an unknown import option exits 2" 2 "$?"
check "and is named" grep -q "import: unknown option '--bogus'" "$TESTS_TMP/bogus.err"
it_done
