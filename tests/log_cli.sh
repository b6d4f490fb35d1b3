#!/bin/sh
# `spate log stats|verify|dump` on a log written by tests/log_make, then on
# the same log with one payload byte flipped: verify must fail and say so.
# Usage: log_cli.sh SPATE LOG_MAKE
set -eu
spate=$1 make_log=$2
dir=$(mktemp -d /tmp/spate-logcli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "log_cli.sh: FAIL: $*" >&2; exit 1; }

"$make_log" "$dir/lg" 10 || fail "log_make"
"$spate" log stats "$dir/lg" | grep -q "1 segment(s), .* sequence 0\.\.29" || fail "stats: $("$spate" log stats "$dir/lg")"
"$spate" log verify "$dir/lg" | grep -q "OK: 30 records" || fail "verify"
out=$("$spate" log dump "$dir/lg" --from 25 -n 3)
[ "$(echo "$out" | wc -l)" = 3 ] || fail "dump printed: $out"
echo "$out" | head -1 | grep -q "^25 .* record-08-1" || fail "dump from 25: $out"

# A writer that ended without closing leaves its segment preallocated (zeros
# after the last frame, the file larger than its frames): stats counts the
# frames, verify and dump take the zeros for the end.
"$make_log" "$dir/pre" 10 exit || fail "log_make exit"
seg=$(ls "$dir/pre"/*.seg)
[ "$(stat -c %s "$seg")" -gt 8192 ] || fail "no preallocated tail: $(stat -c %s "$seg") bytes"
"$spate" log stats "$dir/pre" | grep -q "1 segment(s), .* sequence 0\.\.29" || fail "stats (preallocated): $("$spate" log stats "$dir/pre")"
"$spate" log verify "$dir/pre" | grep -q "OK: 30 records" || fail "verify (preallocated): $("$spate" log verify "$dir/pre" 2>&1)"
"$spate" log dump "$dir/pre" | tail -1 | grep -q "^29 " || fail "dump (preallocated)"

# Flip a byte inside the last record's payload: its frame's CRC fails.
seg=$(ls "$dir/lg"/*.seg)
size=$(stat -c %s "$seg")
printf 'X' | dd of="$seg" bs=1 seek=$((size - 10)) conv=notrunc 2>/dev/null
if "$spate" log verify "$dir/lg" > "$dir/v.out" 2>&1; then fail "verify passed a corrupt log"; fi
grep -q "CRC" "$dir/v.out" || fail "verify did not say why: $(cat "$dir/v.out")"

# A damaged frame in the middle: verify names it and fails; repair records
# a skip in the log; then verify reports it as repaired and passes, and
# dump goes past it saying so.
"$make_log" "$dir/m" 10 || fail "log_make"
seg=$(ls "$dir/m"/*.seg)
size=$(stat -c %s "$seg")
printf 'X' | dd of="$seg" bs=1 seek=$(( (4096 + size) / 2 )) conv=notrunc 2>/dev/null
if "$spate" log verify "$dir/m" > "$dir/m.out" 2>&1; then fail "verify passed a damaged log"; fi
grep -q "DAMAGED: segment 00000000000000000000.seg offset" "$dir/m.out" || fail "verify: $(cat "$dir/m.out")"
if "$spate" log dump "$dir/m" > /dev/null 2> "$dir/d.err"; then fail "dump went past damage"; fi
grep -q "DAMAGED" "$dir/d.err" || fail "dump did not say where: $(cat "$dir/d.err")"
"$spate" log repair "$dir/m" --note "log_cli test" > "$dir/r.out" 2>&1 || fail "repair: $(cat "$dir/r.out")"
grep -q "recorded" "$dir/r.out" || fail "repair: $(cat "$dir/r.out")"
grep -q "note=log_cli test" "$dir/m/REPAIR" || fail "journal: $(cat "$dir/m/REPAIR")"
"$spate" log verify "$dir/m" > "$dir/m2.out" 2>&1 || fail "verify after repair: $(cat "$dir/m2.out")"
grep -q "REPAIRED" "$dir/m2.out" || fail "verify does not report the repair: $(cat "$dir/m2.out")"
"$spate" log dump "$dir/m" > "$dir/d2.out" 2> "$dir/d2.err" || fail "dump after repair: $(cat "$dir/d2.err")"
grep -q "repair journal" "$dir/d2.err" || fail "dump did not say it skipped: $(cat "$dir/d2.err")"
tail -1 "$dir/d2.out" | grep -q "^29 " || fail "dump did not reach the end: $(tail -1 "$dir/d2.out")"
echo "log_cli.sh: stats, verify, dump, corruption detection and repair OK"
