#!/bin/sh
# SPDX-License-Identifier: MIT
# `isolation: process` end to end with the real spate binary (issue 12,
# item 5): consumers whose plugin (tests/crashy_plugin.c) segfaults,
# aborts, exits, hangs, writes into its read-only record or leaks past its
# memory_limit, each in its own supervised child. While they crash, the bus
# keeps going: an in-process consumer of the same stream and every isolated
# one see every record at least once, the crashes and timeouts are counted
# (spate stat --json: "supervisor"), a poison record that kills the child
# every time reaches the on_failure stream after its retries, and every
# checkpoint ends at the head of its shard.
#   isolate.sh SPATE PLUGIN_DIR [SECONDS]
# With SECONDS (the crash-loop soak), only the crash loop runs: a producer
# keeps putting for that long into a consumer whose child segfaults on every
# 1000th batch; at the end no record is missing and every crash is counted.
set -eu
spate=$1
plugins=$2
soak=${3:-}
# The crash loop's length: SPATE_CRASH_LOOP_SECONDS overrides the test's
# short one (CI: 30 s), e.g. 600 for the issue's 10 minutes:
#   SPATE_CRASH_LOOP_SECONDS=600 meson test -C build isolate_crash_loop -t 10
[ -z "$soak" ] || soak=${SPATE_CRASH_LOOP_SECONDS:-$soak}
name=isolate
. "$(dirname "$0")/engine_lib.sh"
export SPATE_PLUGIN_PATH="$plugins"
find_crashy "$plugins"
n=600
# Under AddressSanitizer or ThreadSanitizer the child reserves terabytes of
# shadow address space: RLIMIT_AS (this machine's memory_limit without a
# delegated cgroup v2) cannot hold it, so the leak case runs unsanitized only.
leak=1
ldd "$spate" 2>/dev/null | grep -qE 'lib(asan|tsan)' && leak=
[ -n "$leak" ] || echo "isolate: the leak case is skipped under a sanitizer (RLIMIT_AS vs its shadow memory)"

iso() { # name fault extra-options extra-keys
	cat <<YAML
  - name: $1
    stream: events
    plugin: $so
    isolation: process
    batch_size: ${bs:-10}
    starting_position: trim_horizon
    retry_backoff: 1ms
    options: { fault: $2, out: "$dir/$1.out"$3 }
$4
YAML
}

if [ -n "$soak" ]; then
	cat > "$dir/bus.yaml" <<YAML
bus: isosoak$$
state_dir: $dir/state
streams:
  - name: events
    shards: 2
    ring_size: 16MiB
    huge_pages: off
  - name: failed
    shards: 1
    ring_size: 1MiB
    huge_pages: off
consumers:
$(bs=100 iso loop segv ', every: "1000"' '    on_failure: failed')
YAML
	"$spate" run "$dir/bus.yaml" --seconds $((soak + 60)) --interval 0 > "$dir/run.log" 2>&1 &
	pid=$!
	i=0; while [ ! -f "$dir/state/engine.pid" ]; do i=$((i+1)); [ $i -lt 100 ] || fail "no start"; sleep 0.1; done
	end=$(( $(date +%s) + soak )); total=0
	while [ "$(date +%s)" -lt "$end" ]; do
		seq $((total + 1)) $((total + 20000)) | "$spate" put "$dir/bus.yaml" events -q || fail "put"
		total=$((total + 20000))
		sleep 0.1 # a steady load, not a backlog to drain at the end
	done
	echo "isolate soak: put $total records in $soak s"
else
	cat > "$dir/bus.yaml" <<YAML
bus: iso$$
state_dir: $dir/state
streams:
  - name: events
    shards: 2
    ring_size: 1MiB
    huge_pages: off
  - name: failed
    shards: 1
    ring_size: 1MiB
    huge_pages: off
consumers:
  - name: inproc
    stream: events
    plugin: $so
    batch_size: 10
    starting_position: trim_horizon
    options: { fault: segv, out: "$dir/inproc.out" }
$(iso segv segv ', every: "7"' '')
$(iso abort abort ', every: "5"' '')
$(iso exit exit ', every: "9"' '')
$(iso write write ', every: "11"' '')
$(iso hang hang ', every: "13"' '    timeout: 500ms')
$([ -z "$leak" ] || iso leak leak ', every: "6"' '    memory_limit: 96MiB')
$(iso poison segv ', contains: POISON' '    max_retry_attempts: 2
    bisect_on_error: true
    on_failure: failed')
YAML
	start_engine
	seq 1 $((n / 2)) | "$spate" put "$dir/bus.yaml" events -q || fail "put"
	echo POISON-1 | "$spate" put "$dir/bus.yaml" events -k poison -q || fail "put"
	seq $((n / 2 + 1)) $n | "$spate" put "$dir/bus.yaml" events -q || fail "put"
	total=$((n + 1))
fi

# Every consumer's records: "shard seq" lines, distinct, against the heads.
heads() { "$spate" stat "$1" --json --interval 0 | python3 -c '
import json, sys
v = json.load(sys.stdin)
print(" ".join(str(s["head_seq"]) for s in v["streams"][0]["shards"]))'; }
bus=$(sed -n 's/^bus: //p' "$dir/bus.yaml")
covered() { # consumer expected-missing
	[ -f "$dir/$1.out" ] || return 1
	python3 - "$dir/$1.out" "$2" $(heads "$bus") <<'PY'
import sys
path, skip, heads = sys.argv[1], int(sys.argv[2]), [int(h) for h in sys.argv[3:]]
# "shard first last count" per batch: merge the ranges per shard.
rng = [[] for _ in heads]
for l in open(path):
    f = l.split()
    if len(f) == 4 and int(f[3]) == int(f[2]) - int(f[1]) + 1:
        rng[int(f[0])].append((int(f[1]), int(f[2])))
missing = 0
for s, h in enumerate(heads):
    nxt = 0
    for a, b in sorted(rng[s]):
        if a > nxt:
            missing += min(a, h) - nxt
        nxt = max(nxt, b + 1)
    missing += max(0, h - nxt)
sys.exit(0 if missing == skip else 1)
PY
}
consumers="loop"
[ -n "$soak" ] || consumers="inproc segv abort exit write hang ${leak:+leak} poison"
deadline=$(( $(date +%s) + 90 ))
for c in $consumers; do
	miss=0; [ "$c" = poison ] && miss=1
	until covered "$c" $miss; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "consumer $c did not see every record"
		kill -0 "$pid" 2>/dev/null || fail "the engine died"
		sleep 0.5
	done
done
kill -0 "$pid" || fail "the engine died"

"$spate" stat "$bus" --json --interval 0 > "$dir/stat.json" || fail "stat"
python3 - "$dir/stat.json" "$soak" <<'PY' || fail "counters: $(cat "$dir/stat.json")"
import json, sys
v = json.load(sys.stdin if False else open(sys.argv[1]))
soak = sys.argv[2]
cons = {c["name"]: c for c in v["consumers"]}
def sup(n):
    s = cons[n].get("supervisor")
    assert s, "no supervisor block for " + n
    return s
if soak:
    s = sup("loop")
    assert s["crashes"] >= 1, s
    # Every crash was inside a batch: one failed invocation, one failed
    # delivery of the consumer, retried (nothing given up, no timeouts).
    assert s["errors"] == s["crashes"] and s["timeouts"] == 0, s
    assert cons["loop"]["errors"] == s["crashes"], (cons["loop"], s)
    assert cons["loop"]["failed"] == 0, cons["loop"]
    assert s["cold_starts"] == s["crashes"] + s["procs"], s
    heads = sum(x["head_seq"] for x in v["streams"][0]["shards"])
    failed = [x for x in v["streams"] if x["name"] == "failed"][0]
    on_failure = sum(x["head_seq"] for x in failed["shards"])
    # Every crash was retried to success: nothing given up to on_failure.
    assert on_failure == 0, failed
    print("isolate soak: records in %d, delivered %d (batches %d), on_failure %d; "
          "supervisor: %d invocations, %d errors, %d crashes, %d timeouts, %d cold starts, "
          "init p50 %s ns; consumer errors %d, failed %d" % (
        heads, cons["loop"]["records"], cons["loop"]["batches"], on_failure, s["invocations"],
        s["errors"], s["crashes"], s["timeouts"], s["cold_starts"], s.get("init_p50_ns"),
        cons["loop"]["errors"], cons["loop"]["failed"]))
    sys.exit(0)
assert "supervisor" not in cons["inproc"] or not cons["inproc"]["supervisor"]
for n in ("segv", "abort", "exit", "write"):
    s = sup(n)
    assert s["crashes"] >= 1 and s["cold_starts"] >= 2, (n, s)
    assert cons[n]["errors"] >= 1 and cons[n]["failed"] == 0, (n, cons[n])
s = sup("hang")
assert s["timeouts"] >= 1, s
if "leak" in cons:
    assert sup("leak")["crashes"] + sup("leak")["oom_kills"] >= 1, sup("leak")
    assert sup("leak")["mem_mode"] in ("cgroup", "rlimit"), sup("leak")
assert cons["poison"]["failed"] == 1, cons["poison"]
for n, c in cons.items():
    assert c["state"] == "running", (n, c["state"])
PY

"$spate" stat "$bus" --interval 0 > "$dir/stat.txt" || fail "stat (text)"
grep -qE "processes [0-9]+/[0-9]+ \(memory_limit: [a-z]+\): [0-9]+ invocations" "$dir/stat.txt" ||
	fail "no processes line in spate stat: $(cat "$dir/stat.txt")"
if [ -z "$soak" ]; then
	"$spate" tail "$dir/bus.yaml" failed --from trim_horizon -n 1 > "$dir/failed.txt" 2>&1 ||
		fail "tail failed: $(cat "$dir/failed.txt")"
	grep -q POISON-1 "$dir/failed.txt" || fail "the poison record is not in on_failure: $(cat "$dir/failed.txt")"
fi

# Every checkpoint reaches its shard's head (the last delivery's result
# moves it; poll, it is written after the batch).
ckpts_at_head() {
	"$spate" stat "$bus" --json --interval 0 | python3 -c '
import json, sys
v = json.load(sys.stdin)
heads = [s["head_seq"] for s in v["streams"][0]["shards"]]
bad = [(c["name"], x["shard"], x["checkpoint"]) for c in v["consumers"] if c["stream"] == "events"
       for x in c["shards"] if x["checkpoint"] != heads[x["shard"]]]
sys.exit(1 if bad else 0)'
}
i=0
until ckpts_at_head; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "checkpoints not at the heads"; sleep 0.2
done
# Stop cleanly, start again: nothing is delivered twice past the checkpoints.
for c in $consumers; do wc -l < "$dir/$c.out" > "$dir/$c.lines"; done
kill -INT "$pid"; wait "$pid" || fail "run exited with $?"; pid=
grep -q "restarting after back-off" "$dir/run.log" || fail "no restart in the log"
start_engine
sleep 2
for c in $consumers; do
	[ "$(wc -l < "$dir/$c.out")" = "$(cat "$dir/$c.lines")" ] ||
		fail "consumer $c got records again after a clean restart"
done
kill -INT "$pid"; wait "$pid" || fail "run exited with $?"; pid=
echo "isolate: ok ($total records)"
