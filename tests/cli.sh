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

# Usage errors and --help, before anything runs (issue 9, "Also").
for cmd in run put tail deploy rm log stat top demo bench "bench ring" "bench pipeline" \
	"bench persist" "bench replay" "log verify" help version; do
	# shellcheck disable=SC2086
	"$spate" $cmd --help > "$dir/help.out" 2>&1 || fail "spate $cmd --help exited with $?"
	grep -qi "usage\|commands\|spate" "$dir/help.out" || fail "spate $cmd --help: $(cat "$dir/help.out")"
done
refused() { # refused MESSAGE_PATTERN ARGS...: exit status 2 and the message
	pat=$1; shift
	st=0; "$spate" "$@" > "$dir/err.out" 2>&1 || st=$?
	[ "$st" = 2 ] || fail "spate $* exited with $st, not 2: $(cat "$dir/err.out")"
	grep -q -e "$pat" "$dir/err.out" || fail "spate $*: no '$pat' in: $(cat "$dir/err.out")"
}
refused "-n takes a count" tail "$dir/bus.yaml" in -n -3
refused "-n takes a count" tail "$dir/bus.yaml" in -n 3x
refused "--from takes trim_horizon, latest or a sequence number" tail "$dir/bus.yaml" in --from bogus
refused "--shard takes" tail "$dir/bus.yaml" in --shard -1
# A plugin that does not load: the error names the file, line and consumer.
echo "not an ELF file" > "$dir/bad.so"
sed "s|plugin: count|plugin: $dir/bad.so|; s|bus: $bus|bus: ${bus}b|" "$dir/bus.yaml" > "$dir/bad.yaml"
line=$(grep -n -e "- name: c$" "$dir/bad.yaml" | cut -d: -f1) # the consumer's entry
"$spate" run "$dir/bad.yaml" --seconds 1 > "$dir/err.out" 2>&1 && fail "run with a bad plugin succeeded"
grep -q "bad.yaml:$line: consumer c: .*$dir/bad.so" "$dir/err.out" ||
	fail "plugin load error without file, line ($line) and consumer: $(cat "$dir/err.out")"
"$spate" rm "$dir/bad.yaml" > /dev/null 2>&1 || true
# No engine yet: put says so, and names a stream the config lacks.
"$spate" put "$dir/bus.yaml" in x > "$dir/err.out" 2>&1 && fail "put with no engine succeeded"
grep -q "no engine runs it" "$dir/err.out" || fail "put with no engine: $(cat "$dir/err.out")"

start_engine
grep -q "placement:" "$dir/run.log" || fail "no placement plan printed"
"$spate" put "$dir/bus.yaml" nosuch x > "$dir/err.out" 2>&1 && fail "put to a missing stream succeeded"
grep -q "stream nosuch does not exist: .* defines in" "$dir/err.out" ||
	fail "put to a missing stream: $(cat "$dir/err.out")"
grep -q "is .spate run. up" "$dir/err.out" && fail "put blames the engine: $(cat "$dir/err.out")"

printf 'a\nb\nc\n' | "$spate" put "$dir/bus.yaml" in -k k1 -q || fail "put from stdin"
"$spate" put "$dir/bus.yaml" in hello world > "$dir/put.out" || fail "put"
[ "$(grep -c '^shard [01] seq [0-9]' "$dir/put.out")" = 2 ] || fail "put output: $(cat "$dir/put.out")"

"$spate" tail "$dir/bus.yaml" in -n 10 > "$dir/tail.out" || fail "tail"
[ "$(wc -l < "$dir/tail.out")" = 5 ] || fail "tail printed $(wc -l < "$dir/tail.out") lines"
grep -q ' len=5 hello$' "$dir/tail.out" || fail "tail: no hello: $(cat "$dir/tail.out")"
[ "$(grep -c ' len=1 [abc]$' "$dir/tail.out")" = 3 ] || fail "tail: a b c missing"

# Lines of standard input are batched: a summary, not a line per record;
# -v prints one line per record.
seq 1 3000 | "$spate" put "$dir/bus.yaml" in -k many > "$dir/seq.out" || fail "seq | put"
[ "$(wc -l < "$dir/seq.out")" = 1 ] || fail "seq | put printed $(wc -l < "$dir/seq.out") lines"
grep -q "3000 record(s) in [0-9]* batch(es) to stream in, none 0 failed" "$dir/seq.out" ||
	fail "seq | put summary: $(cat "$dir/seq.out")"
b=$(sed -n 's/.* in \([0-9]*\) batch(es).*/\1/p' "$dir/seq.out")
[ "$b" -ge 3 ] && [ "$b" -lt 100 ] || fail "3000 lines put in $b batches"
seq 1 5 | "$spate" put "$dir/bus.yaml" in -k many -v > "$dir/seqv.out" || fail "seq | put -v"
[ "$(grep -c '^shard [01] seq [0-9]' "$dir/seqv.out")" = 5 ] || fail "put -v: $(cat "$dir/seqv.out")"
"$spate" tail "$dir/bus.yaml" in -n 10000 > "$dir/tail_all.out" || fail "tail all"
[ "$(wc -l < "$dir/tail_all.out")" = 3010 ] || fail "tail printed $(wc -l < "$dir/tail_all.out") lines, not 3010"

count_so=$(echo "$SPATE_PLUGIN_PATH" | cut -d: -f1)/count.so
"$spate" deploy "$dir/bus.yaml" c "$count_so" > "$dir/deploy.out" 2>&1
grep -q deployed "$dir/deploy.out" || fail "deploy: $(cat "$dir/deploy.out")"
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
[ "$total" = 3010 ] || fail "checkpoints add up to $total, not 3010: $(cat "$dir/state/in.c.ckpt")"

# Access (docs/security.md): a state_dir others can write is refused, and so
# is a region another user owns.
chmod 0777 "$dir/state"
"$spate" run "$dir/bus.yaml" --seconds 1 > "$dir/err.out" 2>&1 && fail "run with a 0777 state_dir"
grep -q "refusing state_dir $dir/state: owner uid [0-9]*, mode 0777" "$dir/err.out" ||
	fail "0777 state_dir: $(cat "$dir/err.out")"
chmod 0700 "$dir/state"
region=$(ls /dev/hugepages/spate.$bus.in /dev/shm/spate.$bus.in 2>/dev/null | head -1)
[ -n "$region" ] || fail "no region file for stream in"
if [ "$(id -u)" = 0 ]; then
	chown 65534 "$region"
	"$spate" put "$dir/bus.yaml" in x > "$dir/err.out" 2>&1 && fail "put into a region of uid 65534"
	grep -q "refusing shared memory $region: owner uid 65534 .*mode 0600" "$dir/err.out" ||
		fail "put into a region of uid 65534: $(cat "$dir/err.out")"
	"$spate" run "$dir/bus.yaml" --seconds 1 > "$dir/err.out" 2>&1 && fail "run over a region of uid 65534"
	grep -q "refusing shared memory $region" "$dir/err.out" || fail "run: $(cat "$dir/err.out")"
	chown 0 "$region"
else
	echo "cli.sh: not root: the foreign-owner region check is skipped (tests/test_shm.c has it)"
fi
chmod 0666 "$region"
"$spate" put "$dir/bus.yaml" in x > "$dir/err.out" 2>&1 && fail "put into a 0666 region"
grep -q "refusing shared memory $region: .*mode 0666.*writable by other users" "$dir/err.out" ||
	fail "put into a 0666 region: $(cat "$dir/err.out")"
chmod 0600 "$region"
echo "cli.sh: run, put, tail, deploy, stop, checkpoints and access checks OK"
