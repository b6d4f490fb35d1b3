#!/bin/sh
# SPDX-License-Identifier: MIT
# The pipelined hand-over of `isolation: process` (issue 12) under kills:
# while an isolated child runs batch k, the engine has already peeked and
# prepared batch k+1 (engine/consumer.c peek_ahead, isolate.c iso_prepare),
# which must not be handed over before k is acknowledged. This test keeps a
# backlog in front of a slow isolated plugin (tests/crashy_plugin.c,
# delay_us per batch) and SIGKILLs its child again and again from outside,
# so that kills land while k runs and k+1 is prepared. Then, from the
# plugin's own log of the batches it finished ("shard first last count"),
# in the order it wrote them:
#   - no gap: every record of the shard was delivered, in order;
#   - a batch seen again is a retry of the batch a kill interrupted (its
#     range exactly, after the line of its first delivery), and there are no
#     more of them than crashes the supervisor counted: batch k+1 was never
#     run twice nor ahead of k;
#   - nothing went to on_failure, every crash was a retried delivery, and
#     the checkpoint is at the head.
#   isolate_kill.sh SPATE PLUGIN_DIR
set -eu
spate=$1
plugins=$2
name=isolate_kill
. "$(dirname "$0")/engine_lib.sh"
export SPATE_PLUGIN_PATH="$plugins"
find_crashy "$plugins"
n=40000
cat > "$dir/bus.yaml" <<YAML
bus: isokill$$
state_dir: $dir/state
streams:
  - name: events
    shards: 1
    ring_size: 16MiB
    huge_pages: off
  - name: failed
    shards: 1
    ring_size: 1MiB
    huge_pages: off
consumers:
  - name: slow
    stream: events
    plugin: $so
    isolation: process
    batch_size: 10
    starting_position: trim_horizon
    retry_backoff: 1ms
    on_failure: failed
    options: { fault: segv, every: "0", delay_us: "150", out: "$dir/slow.out" }
YAML
engine_seconds=150 start_engine
seq 1 $n | "$spate" put "$dir/bus.yaml" events -q || fail "put"
bus=$(sed -n 's/^bus: //p' "$dir/bus.yaml")
stat_json() { "$spate" stat "$bus" --json --interval 0; }
checkpoint() { stat_json | python3 -c '
import json, sys
v = json.load(sys.stdin)
c = [c for c in v["consumers"] if c["name"] == "slow"][0]
print(c["shards"][0]["checkpoint"], v["streams"][0]["shards"][0]["head_seq"])'; }
# Kill the child every 40 ms while the backlog lasts (at most 40 kills).
kills=0
deadline=$(( $(date +%s) + 100 ))
while :; do
	set -- $(checkpoint)
	[ "$1" != "$2" ] || break
	[ "$(date +%s)" -lt "$deadline" ] || fail "the consumer did not reach the head ($1 of $2)"
	kill -0 "$pid" 2>/dev/null || fail "the engine died"
	if [ $kills -lt 40 ]; then
		child=$(pgrep -P "$pid" -f spate-isolate | head -1 || true)
		if [ -n "$child" ] && kill -KILL "$child" 2>/dev/null; then
			kills=$((kills + 1))
		fi
	fi
	sleep 0.04
done
[ $kills -ge 5 ] || fail "only $kills kills landed before the backlog was drained"
stat_json > "$dir/stat.json" || fail "stat"
python3 - "$dir/slow.out" "$dir/stat.json" "$kills" <<'PY' || fail "see above"
import json, sys
out, stat, kills = sys.argv[1], sys.argv[2], int(sys.argv[3])
v = json.load(open(stat))
head = v["streams"][0]["shards"][0]["head_seq"]
c = [c for c in v["consumers"] if c["name"] == "slow"][0]
s = c["supervisor"]
nxt, again, last_range = 0, 0, None
for i, l in enumerate(open(out)):
    shard, a, b, n = (int(x) for x in l.split())
    assert shard == 0 and n == b - a + 1, "line %d: %s" % (i + 1, l)
    if a == nxt:
        nxt = b + 1
        last_range = (a, b)
    elif (a, b) == last_range:
        again += 1  # the batch a kill interrupted after its line was written
    else:
        sys.exit("line %d: batch %d..%d after %d..%d (expected %d next): a record "
                 "lost, duplicated or out of order" % (i + 1, a, b, last_range[0],
                                                       last_range[1], nxt))
assert nxt == head, "delivered up to %d, head %d" % (nxt, head)
assert again <= s["crashes"], (again, s)
assert s["crashes"] >= kills // 2, ("kills %d" % kills, s)
assert c["failed"] == 0, c
failed = [x for x in v["streams"] if x["name"] == "failed"][0]
assert sum(x["head_seq"] for x in failed["shards"]) == 0, failed
print("isolate_kill: %d records, %d kills, %d crashes counted, %d batches delivered again, "
      "%d invocations" % (head, kills, s["crashes"], again, s["invocations"]))
PY
kill -INT "$pid"; wait "$pid" || fail "run exited with $?"; pid=
echo "isolate_kill: ok"
