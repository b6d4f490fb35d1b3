#!/bin/sh
# `spate top BUS` in a real terminal: tmux runs it in a detached 160x50
# session while records flow; the captured screen must show the stream, both
# consumers with their totals' effects, and the workers. Usage: top_tmux.sh SPATE_BINARY
set -eu
spate=$1
command -v tmux >/dev/null 2>&1 || { echo "top_tmux.sh: SKIP: tmux absent"; exit 77; }
bus="top$$"
sock="spate-top-$$"
name=top_tmux.sh
. "$(dirname "$0")/obs_bus.sh"
obs_cleanup_extra() { tmux -L "$sock" kill-server 2>/dev/null || true; }
obs_bus "$bus" events counter poisoned
obs_put40 events

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
grep -Eq '^ +[01] .* 40 ' "$dir/screen.txt" || fail "head sequence 40 on one shard"
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
obs_stop
echo "top_tmux.sh: spate top renders in tmux"
