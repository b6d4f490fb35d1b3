#!/bin/sh
# Dead peers are evicted while the engine runs (issue 9 item 1, engine
# side): a `spate tail -f` reader killed with SIGKILL no longer holds a
# 64 KiB ring's writers back, so a put of 3,000 records completes, on a
# memory-only stream and on a persisted one, and the engine's log names the
# freed slot and its pid. Usage: restart.sh SPATE_BINARY
set -eu
spate=$1
name=restart.sh
. "$(dirname "$0")/engine_lib.sh"
bus="rst$$"

cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: mem
    shards: 1
    ring_size: 64KiB
    huge_pages: off
  - name: dur
    shards: 1
    ring_size: 64KiB
    huge_pages: off
    durability: interval
    segment_size: 1MiB
YAML

start_engine
for s in mem dur; do
	"$spate" tail "$dir/bus.yaml" "$s" -f > "$dir/tail-$s.out" 2>&1 &
	tpid=$!
	sleep 0.3
	kill -0 "$tpid" 2>/dev/null || fail "$s: tail -f exited: $(cat "$dir/tail-$s.out")"
	kill -9 "$tpid"
	wait "$tpid" 2>/dev/null || true
	# 3,000 records of ~40 bytes are about twice the ring: the dead
	# reader must be evicted for the put to complete.
	# shellcheck disable=SC2046 # one argument per record
	timeout 20 "$spate" put "$dir/bus.yaml" "$s" -k k -q \
		$(seq 1 3000 | sed 's/$/-a-record-of-some-forty-bytes-or-so/') ||
		fail "$s: the put of 3,000 records did not complete (status $?)"
	grep -q "stream $s/0: reader slot [0-9]* of dead process $tpid freed" "$dir/run.log" ||
		fail "$s: no eviction of reader pid $tpid logged"
done
kill -INT "$pid"; wait "$pid" || fail "run exited with $?"; pid=
# Every record of the persisted stream reached its log.
"$spate" log stats "$dir/state/log/dur/0000" > "$dir/stats.out" || fail "log stats"
grep -q "sequence 0\.\.2999," "$dir/stats.out" || fail "log stats: $(cat "$dir/stats.out")"
echo "restart.sh: dead readers evicted at run time on memory-only and persisted streams OK"
