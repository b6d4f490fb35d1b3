#!/bin/sh
# The spate command with a persisted stream: `spate run` writes the log,
# `spate put` on an `always` stream returns once durable, a SIGKILLed engine
# loses none of it, a restarted one continues the numbering, and
# `spate log verify|stats|dump` read it. Usage: persist_cli.sh SPATE_BINARY
set -eu
spate=$1
name=persist_cli.sh
. "$(dirname "$0")/engine_lib.sh"
bus="pcli$$"

cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: in
    shards: 1
    ring_size: 64KiB
    huge_pages: off
    durability: always
    segment_size: 1MiB
YAML

start_engine
grep -q "persister 0 -> cpu" "$dir/run.log" || fail "the plan does not place the persister"
seq 1 100 | "$spate" put "$dir/bus.yaml" in -k k -q || fail "put 100"
sleep 0.2
at=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
sleep 0.2
"$spate" put "$dir/bus.yaml" in durable > "$dir/put.out" || fail "put"
grep -q '^shard 0 seq 100$' "$dir/put.out" || fail "put output: $(cat "$dir/put.out")"
# Acknowledged as durable: a SIGKILL now loses nothing.
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
log="$dir/state/log/in/0000"
"$spate" log verify "$log" > "$dir/verify.out" 2>&1 || fail "verify: $(cat "$dir/verify.out")"
"$spate" log stats "$log" > "$dir/stats.out" || fail "stats"
grep -q "sequence 0\.\.100," "$dir/stats.out" || fail "stats: $(cat "$dir/stats.out")"
"$spate" log dump "$log" --from 100 > "$dir/dump.out" || fail "dump"
grep -q "durable" "$dir/dump.out" || fail "dump --from 100: $(cat "$dir/dump.out")"
"$spate" log dump "$log" --at "$at" > "$dir/dump_at.out" || fail "dump --at $at"
[ "$(wc -l < "$dir/dump_at.out")" = 1 ] && grep -q '^100 .*durable$' "$dir/dump_at.out" ||
	fail "dump --at $at: $(cat "$dir/dump_at.out")"
"$spate" log dump "$log" --at yesterday 2>/dev/null && fail "dump --at yesterday was accepted"

# Restart: the numbering goes on from the log.
start_engine
"$spate" put "$dir/bus.yaml" in again > "$dir/put2.out" || fail "put after restart"
grep -q '^shard 0 seq 101$' "$dir/put2.out" || fail "after restart: $(cat "$dir/put2.out")"
kill -INT "$pid"; wait "$pid" || fail "run exited with $?"; pid=

# History from the log: with the shared memory, and without it.
"$spate" tail "$dir/bus.yaml" in -n 1000 > "$dir/tail.out" || fail "tail"
[ "$(wc -l < "$dir/tail.out")" = 102 ] || fail "tail printed $(wc -l < "$dir/tail.out") lines, not 102"
"$spate" tail "$dir/bus.yaml" in --from 100 > "$dir/tail100.out" || fail "tail --from 100"
[ "$(wc -l < "$dir/tail100.out")" = 2 ] && grep -q 'durable$' "$dir/tail100.out" &&
	grep -q 'again$' "$dir/tail100.out" || fail "tail --from 100: $(cat "$dir/tail100.out")"
# With no engine, an `always` put says nothing would make it durable.
if "$spate" put "$dir/bus.yaml" in orphan > "$dir/put3.out" 2>&1; then
	fail "put with no persister succeeded"
fi
grep -q "no engine is persisting" "$dir/put3.out" || fail "put with no engine: $(cat "$dir/put3.out")"
# No shared memory at all: the log alone has the same history.
"$spate" rm "$dir/bus.yaml" > /dev/null || fail "rm"
"$spate" tail "$dir/bus.yaml" in -n 1000 > "$dir/tail_rm.out" || fail "tail with no shared memory"
cmp -s "$dir/tail.out" "$dir/tail_rm.out" || fail "tail from the log alone differs"
echo "persist_cli.sh: run, durable put, SIGKILL, log tools, restart and tail from the log OK"
