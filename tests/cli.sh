#!/bin/sh
# End-to-end test of the spate command: run a bus from a YAML file, put
# records from another process, tail them, hot deploy, stop with SIGINT and
# check the checkpoint file. Usage: cli.sh SPATE_BINARY
# SPATE_PLUGIN_PATH (set by tests/meson.build) points at the built plugins.
set -eu
spate=$1
name=cli.sh
. "$(dirname "$0")/engine_lib.sh"
bus="cli$$"

cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: in
    shards: 2
    ring_size: 64KiB
    huge_pages: off
consumers:
  - name: c
    stream: in
    plugin: count
    options: { summary: "$dir/sum-%s.json" }
    starting_position: trim_horizon
YAML

start_engine
grep -q "placement:" "$dir/run.log" || fail "no placement plan printed"

printf 'a\nb\nc\n' | "$spate" put "$dir/bus.yaml" in -k k1 -q || fail "put from stdin"
"$spate" put "$dir/bus.yaml" in hello world > "$dir/put.out" || fail "put"
[ "$(grep -c '^shard [01] seq [0-9]' "$dir/put.out")" = 2 ] || fail "put output: $(cat "$dir/put.out")"

"$spate" tail "$dir/bus.yaml" in -n 10 > "$dir/tail.out" || fail "tail"
[ "$(wc -l < "$dir/tail.out")" = 5 ] || fail "tail printed $(wc -l < "$dir/tail.out") lines"
grep -q ' len=5 hello$' "$dir/tail.out" || fail "tail: no hello: $(cat "$dir/tail.out")"
[ "$(grep -c ' len=1 [abc]$' "$dir/tail.out")" = 3 ] || fail "tail: a b c missing"

count_so=$(echo "$SPATE_PLUGIN_PATH" | cut -d: -f1)/count.so
"$spate" deploy "$dir/bus.yaml" c "$count_so" | grep -q deployed || fail "deploy"
"$spate" deploy "$dir/bus.yaml" nosuch "$count_so" 2>/dev/null && fail "deploy to an unknown consumer succeeded"

# Let the consumer take the records, then stop: drain, flush, checkpoint.
sleep 0.5
kill -INT "$pid"
wait "$pid" || fail "run exited with $?"
pid=
grep -q "stopping" "$dir/run.log" || fail "no orderly stop"
total=0
for s in 0 1; do
	n=$(awk -v s=$s '$1 == s { print $2 }' "$dir/state/in.c.ckpt")
	total=$((total + ${n:-0}))
done
[ "$total" = 5 ] || fail "checkpoints add up to $total, not 5: $(cat "$dir/state/in.c.ckpt")"
echo "cli.sh: run, put, tail, deploy, stop and checkpoints OK"
