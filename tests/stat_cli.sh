#!/bin/sh
# `spate stat BUS --json` against a running bus with known totals: one
# consumer takes every record, another (fail plugin, bisection, no retries)
# gives up exactly one poison record. The JSON must parse (python3 json)
# and its figures must match what was put. Usage: stat_cli.sh SPATE_BINARY
set -eu
spate=$1
command -v python3 >/dev/null 2>&1 || { echo "stat_cli.sh: SKIP: python3 absent"; exit 77; }
bus="stat$$"
name=stat_cli.sh
. "$(dirname "$0")/obs_bus.sh"
obs_bus "$bus" in ok bad
obs_put40 in
bytes=$((9 * 2 + 31 * 3))
i=0
until "$spate" stat "$bus" --json --interval 0 > "$dir/s.json" &&
	python3 - "$dir/s.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
c = {x["name"]: x for x in d["consumers"]}
sys.exit(0 if c["ok"]["records"] == 40 and c["bad"]["failed"] == 1 and c["bad"]["records"] == 39 else 1)
PY
do
	i=$((i + 1)); [ $i -lt 100 ] || fail "consumers did not finish: $(cat "$dir/s.json")"; sleep 0.1
done

"$spate" stat "$bus" --json --interval 300 > "$dir/s.json" || fail "stat --json"
python3 - "$dir/s.json" "$bus" "$bytes" <<'PY' || fail "stat --json does not match: $(cat "$dir/s.json")"
import json, sys
d = json.load(open(sys.argv[1]))
bus, nbytes = sys.argv[2], int(sys.argv[3])
def check(cond, what):
    if not cond:
        print("mismatch:", what, file=sys.stderr)
        sys.exit(1)
check(d["schema"] == "spate.stat/2", "schema")
check(d["bus"] == bus, "bus")
check(d["engine"]["alive"] is True, "engine alive")
check(250 <= d["interval_ms"] <= 5000, "interval %s" % d["interval_ms"])
s = d["streams"][0]
check(s["name"] == "in" and len(s["shards"]) == 2, "stream shape")
check(s["fsync"]["count"] == 0, "fsync histogram per stream (not persisted: empty)")
check(all("fsync" not in x["persist"] for x in s["shards"]), "no per-shard fsync histogram")
check(sum(x["records_in"] for x in s["shards"]) == 40, "records_in")
check(sorted(x["head_seq"] for x in s["shards"]) == [0, 40], "head_seq")
full = [x for x in s["shards"] if x["head_seq"] == 40][0]
check(full["oldest_seq"] == 0 and full["oldest_ts_ns"] > 0, "oldest of the full shard")
check(full["records_in_per_sec"] == 0, "no records came in during the interval")
check(1 <= full["put_batches"] <= 40 and full["put_failed"] == 0 and full["backpressure"] == 0,
      "spate put counted its batches (lines are batched) in the region")
c = {x["name"]: x for x in d["consumers"]}
ok, bad = c["ok"], c["bad"]
check(ok["state"] == "running" and ok["plugin"] == "count", "ok state/plugin")
check(ok["records"] == 40 and ok["bytes"] == nbytes, "ok records/bytes %d/%d" % (ok["records"], ok["bytes"]))
check(ok["failed"] == 0 and ok["errors"] == 0 and ok["retries"] == 0, "ok has no failures")
check(ok["lag_records"] == 0 and ok["age_ms"] == 0, "ok lag")
check(ok["batches"] >= 1 and ok["batch_size"]["count"] == ok["batches"], "batch histogram count")
check(ok["process"]["count"] == (ok["batches"] + 7) // 8, "process() timed 1 delivery in 8")
check(ok["latency"]["count"] == ok["process"]["count"], "latency sampled on the same deliveries")
check(ok["batch_size"]["max"] <= 40, "batch size max")
check(bad["records"] == 39 and bad["failed"] == 1 and bad["expired"] == 0, "bad totals")
check(bad["errors"] >= 1 and bad["bisections"] >= 1 and bad["bisections"] == bad["errors"] - 1,
      "bad: every failed delivery but the last was bisected (%d errors, %d bisections)" % (bad["errors"], bad["bisections"]))
check(bad["bytes"] == nbytes - 2, "bad bytes (r1 failed)")
check(all("latency" not in x and "batch_size" not in x for x in ok["shards"]),
      "histograms are per consumer, not per shard")
check(bad["batch_size"]["count"] == bad["batches"], "bad: batch sizes of both shards")
shard = [x for x in ok["shards"] if x["records"] == 40][0]
check(shard["checkpoint"] == 40 and shard["lag_records"] == 0, "ok shard checkpoint")
check(len(d["workers"]) >= 1 and all("busy_fraction" in w for w in d["workers"]), "workers")
check(sum(w["tasks"] for w in d["workers"]) == 4, "4 tasks placed")
PY

"$spate" stat "$bus" --interval 100 > "$dir/s.txt" || fail "stat (text)"
grep -q '^ok ' "$dir/s.txt" || fail "stat text has no row for consumer ok: $(cat "$dir/s.txt")"
"$spate" stat nosuchbus$$ 2>/dev/null && fail "stat of an unknown bus succeeded"

obs_stop
# The engine removed its counters with it.
"$spate" stat "$bus" --json --interval 0 > "$dir/s.json" 2> "$dir/s.err" && fail "stat after the engine ended"
grep -q "no counters for bus $bus" "$dir/s.err" || fail "stat after stop said: $(cat "$dir/s.err")"
echo "stat_cli.sh: spate stat --json parses and matches the known totals"
