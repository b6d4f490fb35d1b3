#!/bin/sh
# One engine per bus, end to end (issue 9, items 10 and 14): a second
# `spate run` is refused naming the first's pid; `spate rm` refuses a live
# bus; after the engine is SIGKILLed, a stale engine.pid naming an
# unrelated process never makes `spate deploy` signal it (it says no engine
# runs, at once), `spate put` to the memory-only stream says its engine is
# gone, `spate rm` works and a new engine starts.
# Usage: engine_lock.sh SPATE_BINARY
set -eu
spate=$1
name=engine_lock.sh
. "$(dirname "$0")/engine_lib.sh"
bus="lock$$"
bystander=
cleanup_extra() { [ -n "$bystander" ] && kill "$bystander" 2>/dev/null || true; }

cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: in
    shards: 1
    ring_size: 64KiB
    huge_pages: off
consumers:
  - name: c
    stream: in
    plugin: count
    starting_position: trim_horizon
YAML

start_engine
first=$pid

# A second engine on the same configuration: refused, naming the holder.
if "$spate" run "$dir/bus.yaml" --seconds 5 --interval 0 > "$dir/run2.log" 2>&1; then
	fail "a second engine started: $(cat "$dir/run2.log")"
fi
grep -q "another live engine runs (pid $first holds $dir/state/engine.lock)" "$dir/run2.log" ||
	fail "second run does not name pid $first: $(cat "$dir/run2.log")"
kill -0 "$first" || fail "the first engine died"

# spate rm refuses a live bus and removes nothing.
if "$spate" rm "$dir/bus.yaml" > "$dir/rm.out" 2>&1; then
	fail "spate rm removed a live bus: $(cat "$dir/rm.out")"
fi
grep -q "bus $bus is live: engine pid $first" "$dir/rm.out" || fail "rm: $(cat "$dir/rm.out")"
"$spate" put "$dir/bus.yaml" in -q still-here || fail "the stream went away under a live engine"

# The engine crashes; engine.pid now names an unrelated process.
kill -9 "$first"
wait "$first" 2>/dev/null || true
pid=
sleep 300 &
bystander=$!
echo "$bystander" > "$dir/state/engine.pid"
count_so=$(echo "$SPATE_PLUGIN_PATH" | cut -d: -f1)/count.so
start=$(date +%s)
if "$spate" deploy "$dir/bus.yaml" c "$count_so" > "$dir/deploy.out" 2>&1; then
	fail "deploy succeeded with no engine: $(cat "$dir/deploy.out")"
fi
took=$(($(date +%s) - start))
kill -0 "$bystander" || fail "spate deploy signalled the unrelated pid $bystander"
grep -q "no engine runs" "$dir/deploy.out" || fail "deploy: $(cat "$dir/deploy.out")"
[ "$took" -lt 5 ] || fail "deploy took $took s to see that no engine runs"

# A put into the memory-only stream its dead engine left: said, not done.
if "$spate" put "$dir/bus.yaml" in -q lost > "$dir/put.out" 2>&1; then
	fail "put into a dead engine's region succeeded silently"
fi
grep -q "its engine (pid $first) is not running" "$dir/put.out" || fail "put: $(cat "$dir/put.out")"

# The lock died with the engine: rm works, and a new engine starts.
"$spate" rm "$dir/bus.yaml" > "$dir/rm2.out" 2>&1 || fail "rm after the engine died: $(cat "$dir/rm2.out")"
grep -q "stream in: removed" "$dir/rm2.out" || fail "rm2: $(cat "$dir/rm2.out")"
start_engine
"$spate" put "$dir/bus.yaml" in -q again || fail "put to the new engine"
echo "engine_lock.sh: second run refused, rm of a live bus refused, stale engine.pid ignored, dead engine's region reported OK"
