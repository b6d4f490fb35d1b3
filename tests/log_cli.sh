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

# Flip a byte inside the last record's payload: its frame's CRC fails.
seg=$(ls "$dir/lg"/*.seg)
size=$(stat -c %s "$seg")
printf 'X' | dd of="$seg" bs=1 seek=$((size - 10)) conv=notrunc 2>/dev/null
if "$spate" log verify "$dir/lg" > "$dir/v.out" 2>&1; then fail "verify passed a corrupt log"; fi
grep -q "CRC" "$dir/v.out" || fail "verify did not say why: $(cat "$dir/v.out")"
echo "log_cli.sh: stats, verify, dump and corruption detection OK"
