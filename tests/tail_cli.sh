#!/bin/sh
# `spate tail --from trim_horizon` on a live persisted stream: while a
# producer in another process writes without pause, the history comes from
# the log and the rest from the ring; no record may fall between the two
# (issue 9 item 16). Every tail's output must be the sequence 0, 1, 2, ...
# without a gap. A tail without -f ends once it has caught up with the ring,
# so each one goes through the handover; the producer is finite, so a tail
# that cannot catch up still ends when the producer does.
# Usage: tail_cli.sh SPATE_BINARY
set -eu
spate=$1
name=tail_cli.sh
. "$(dirname "$0")/engine_lib.sh"
bus="tcli$$"
prod=
total=3000000
cleanup_extra() { [ -n "$prod" ] && kill "$prod" 2>/dev/null && wait "$prod" 2>/dev/null || true; }

cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: in
    shards: 1
    ring_size: 64KiB
    huge_pages: off
    durability: none
    segment_size: 1MiB
YAML

start_engine
# The producer: numbered lines, one key (one shard).
seq 1 $total | "$spate" put "$dir/bus.yaml" in -k k -q 2> "$dir/put.err" &
prod=$!
log="$dir/state/log/in/0000"
logged() {
	"$spate" log stats "$log" 2>/dev/null | sed -n 's/.*sequence 0\.\.\([0-9]*\),.*/\1/p'
}
i=0
while [ "$(logged)" = "" ] || [ "$(logged)" -lt 20000 ]; do
	i=$((i + 1)); [ $i -lt 300 ] || fail "the producer did not fill the log: $(cat "$dir/put.err")"
	sleep 0.1
done
round=0
while [ $round -lt 4 ] && kill -0 "$prod" 2>/dev/null; do
	round=$((round + 1))
	before=$(logged)
	"$spate" tail "$dir/bus.yaml" in --from trim_horizon -n "$total" > "$dir/tail.out" ||
		fail "tail exited with $?"
	# Lines are "0/SEQ ts=...": the sequence numbers must run 0, 1, 2, ...
	awk -F'[/ ]' -v r=$round '
		$2 != NR - 1 { printf "round %d: line %d has seq %s, expected %d\n", r, NR, $2, NR - 1; bad = 1; exit 1 }
		END { if (!bad) printf "round %d: %d records in sequence\n", r, NR }' "$dir/tail.out" ||
		fail "records skipped at the log-to-ring handover"
	n=$(wc -l < "$dir/tail.out")
	[ "$n" -ge "$before" ] || fail "round $round: tail printed $n records, the log held $before before it"
done
[ $round -gt 0 ] || fail "the producer ended before the first tail: $(cat "$dir/put.err")"
echo "tail_cli.sh: trim_horizon tails of a live persisted stream are gapless"
