#!/bin/sh
# `spate top BUS` in a real terminal: tmux runs it in a detached 160x50
# session while records flow; the captured screen must show the stream, both
# consumers with their totals' effects, and the workers. Usage: top_tmux.sh SPATE_BINARY
set -eu
spate=$1
command -v tmux >/dev/null 2>&1 || { echo "top_tmux.sh: SKIP: tmux absent"; exit 77; }
dir=$(mktemp -d /tmp/spate-top-XXXXXX)
bus="top$$"
sock="spate-top-$$"
pid=
cleanup() {
	tmux -L "$sock" kill-server 2>/dev/null || true
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	"$spate" rm "$dir/bus.yaml" >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "top_tmux.sh: FAIL: $*" >&2; [ -f "$dir/screen.txt" ] && cat "$dir/screen.txt" >&2; exit 1; }

cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: events
    shards: 2
    ring_size: 64KiB
    huge_pages: off
consumers:
  - name: counter
    stream: events
    plugin: count
    starting_position: trim_horizon
  - name: poisoned
    stream: events
    plugin: fail
    options: { seqs: "0" }
    bisect_on_error: true
    max_retry_attempts: 0
    starting_position: trim_horizon
YAML

"$spate" run "$dir/bus.yaml" --seconds 60 --interval 0 > "$dir/run.log" 2>&1 &
pid=$!
i=0
while [ ! -f "$dir/state/engine.pid" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "engine did not start"; sleep 0.1
done
seq 1 25 | "$spate" put "$dir/bus.yaml" events -k k -q || fail "put"

# A real terminal of 160x50; top refreshes every 300 ms here.
tmux -L "$sock" new-session -d -x 160 -y 50 "$spate top $bus --interval 300" || fail "tmux"
i=0
until tmux -L "$sock" capture-pane -p > "$dir/screen.txt" 2>/dev/null &&
	grep -q '^poisoned ' "$dir/screen.txt" && ! grep -q 'rates from the next' "$dir/screen.txt"; do
	i=$((i + 1)); [ $i -lt 50 ] || fail "top did not draw"; sleep 0.1
done
grep -q "^spate top - bus $bus - engine pid $pid running" "$dir/screen.txt" || fail "title line"
grep -q '^STREAM .*IN rec/s.*HEAD SEQ' "$dir/screen.txt" || fail "stream header"
grep -Eq '^events +[01] ' "$dir/screen.txt" || fail "stream row"
grep -Eq '^ +[01] .* 25 ' "$dir/screen.txt" || fail "head sequence 25 on one shard"
grep -q '^CONSUMER .*LAG rec.*p50.*p99.*p99.9.*ERRORS' "$dir/screen.txt" || fail "consumer header"
# counter: running, nothing failed; poisoned: one record failed.
grep -Eq '^counter +.* 0 +0 +0 running' "$dir/screen.txt" || fail "counter row"
grep -Eq '^poisoned +.* [1-9][0-9]* +0 +1 running' "$dir/screen.txt" || fail "poisoned row: 1 failed"
grep -Eq '^  shard [01] ' "$dir/screen.txt" || fail "per-shard rows"
grep -q '^WORKER .*BUSY' "$dir/screen.txt" || fail "worker header"
grep -Eq '^[01] +[0-9-]+ +(active|parked) ' "$dir/screen.txt" || fail "worker rows"
# q quits.
tmux -L "$sock" send-keys q
i=0
while tmux -L "$sock" has-session 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 50 ] || fail "top did not quit on q"; sleep 0.1
done
kill -INT "$pid"
wait "$pid" || fail "run exited with $?"
pid=
echo "top_tmux.sh: spate top renders in tmux"
