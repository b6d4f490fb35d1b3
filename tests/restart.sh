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
	# The waiting writer may evict the dead reader itself (ring side) before
	# the engine's watch frees and logs the slot: wait for the log line.
	for _ in $(seq 1 50); do
		grep -q "stream $s/0: reader slot [0-9]* of dead process $tpid freed" "$dir/run.log" &&
			break
		sleep 0.1
	done
	grep -q "stream $s/0: reader slot [0-9]* of dead process $tpid freed" "$dir/run.log" ||
		fail "$s: no eviction of reader pid $tpid logged"
done
kill -INT "$pid"; wait "$pid" || fail "run exited with $?"; pid=
# Every record of the persisted stream reached its log.
"$spate" log stats "$dir/state/log/dur/0000" > "$dir/stats.out" || fail "log stats"
grep -q "sequence 0\.\.2999," "$dir/stats.out" || fail "log stats: $(cat "$dir/stats.out")"
# No engine: the persister's gate stays, so a put blocks on the full ring
# instead of overwriting what the next engine must write ...
# shellcheck disable=SC2046 # one argument per record
"$spate" put "$dir/bus.yaml" dur -k k -q \
	$(seq 1 3000 | sed 's/$/-a-record-of-some-forty-bytes-or-so/') > "$dir/blocked.out" 2>&1 &
ppid=$!
sleep 1
kill -0 "$ppid" 2>/dev/null || fail "a put with no engine did not wait: $(cat "$dir/blocked.out")"
# ... until the stream is removed: its region is retired, and the put told.
"$spate" rm "$dir/bus.yaml" > /dev/null || fail "rm"
i=0
while kill -0 "$ppid" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 50 ] || { kill "$ppid"; fail "the put still waits after rm"; }
	sleep 0.1
done
if wait "$ppid"; then fail "the put into a removed stream succeeded"; fi
grep -q "Stale" "$dir/blocked.out" || fail "put after rm: $(cat "$dir/blocked.out")"
echo "restart.sh: dead readers evicted at run time on memory-only and persisted streams, a put with no engine waits behind the gate until rm retires the stream OK"
