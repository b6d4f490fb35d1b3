#!/bin/sh
# The Prometheus endpoint of `spate run` (metrics.listen): scraped over HTTP
# with python3's urllib, accepted by `promtool check metrics` (Debian package
# prometheus), and its counters and histograms match what was put.
# Usage: prom.sh SPATE_BINARY
set -eu
spate=$1
command -v python3 >/dev/null 2>&1 || { echo "prom.sh: SKIP: python3 absent"; exit 77; }
command -v promtool >/dev/null 2>&1 || { echo "prom.sh: SKIP: promtool absent (apt-get install prometheus)"; exit 77; }
bus="prom$$"
port=$((20000 + $$ % 20000))
name=prom.sh
. "$(dirname "$0")/obs_bus.sh"
scrape() {
	python3 - "$1" "$2" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    ctype = r.headers.get("Content-Type", "")
    body = r.read()
if not ctype.startswith("text/plain; version=0.0.4"):
    sys.exit("content type %r" % ctype)
open(sys.argv[2], "wb").write(body)
PY
}

obs_bus "$bus" in ok bad "metrics: { listen: 127.0.0.1:$port }"
i=0
while ! grep -qs "metrics: Prometheus" "$dir/run.log"; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "engine did not start its endpoint"; sleep 0.1
done
obs_put40 in
i=0
until scrape "http://127.0.0.1:$port/metrics" "$dir/m.txt" &&
	grep -q '^spate_consumer_records_total{.*consumer="ok"} 40$' "$dir/m.txt" &&
	grep -q '^spate_consumer_failed_records_total{.*consumer="bad"} 1$' "$dir/m.txt"; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "no totals in the scrape: $(cat "$dir/m.txt" 2>/dev/null | head -50)"; sleep 0.1
done

promtool check metrics < "$dir/m.txt" > "$dir/promtool.out" 2>&1 || fail "promtool: $(cat "$dir/promtool.out")"
[ -s "$dir/promtool.out" ] && fail "promtool lint: $(cat "$dir/promtool.out")"

python3 - "$dir/m.txt" "$bus" <<'PY' || fail "scrape does not match"
import re, sys
text = open(sys.argv[1]).read()
bus = sys.argv[2]
samples = {}
for line in text.splitlines():
    if line.startswith("#") or not line:
        continue
    m = re.match(r'^([a-z_]+)\{([^}]*)\} (\S+)$', line)
    if not m:
        sys.exit("bad line %r" % line)
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
    samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
def total(name, **want):
    return sum(v for l, v in samples.get(name, []) if all(l.get(k) == x for k, x in want.items()))
def check(cond, what):
    if not cond:
        sys.exit("mismatch: " + what)
check(all(l.get("bus") == bus for s in samples.values() for l, _ in s), "bus label everywhere")
check(total("spate_engine_up") == 1, "engine up")
check(total("spate_stream_records_in_total", stream="in") == 40, "records in")
check(total("spate_consumer_records_total", consumer="ok") == 40, "ok records")
check(total("spate_consumer_bytes_total", consumer="ok") == 9 * 2 + 31 * 3, "ok bytes")
check(total("spate_consumer_records_total", consumer="bad") == 39, "bad records")
check(total("spate_consumer_failed_records_total", consumer="bad") == 1, "bad failed")
check(total("spate_consumer_lag_records", consumer="ok") == 0, "ok lag")
check(total("spate_consumer_up", consumer="ok") == 1, "ok up")
batches = total("spate_consumer_batches_total", consumer="ok")
check(batches >= 1, "batches")
# Histograms: cumulative, +Inf equals _count; sizes of every delivery,
# times of 1 delivery in 8.
check(total("spate_consumer_batch_records_count", consumer="ok") == batches, "batch count")
check(total("spate_consumer_process_duration_seconds_count", consumer="ok") == (batches + 7) // 8,
      "process() timed 1 in 8")
for name in ("spate_consumer_batch_records", "spate_consumer_process_duration_seconds",
             "spate_consumer_latency_seconds", "spate_stream_fsync_duration_seconds"):
    # One histogram per consumer (per stream for fsync): no shard label.
    check(all("shard" not in l for l, _ in samples[name + "_bucket"] + samples[name + "_count"]),
          name + " has no shard label")
for name in ("spate_consumer_batch_records", "spate_consumer_process_duration_seconds"):
    b = [(l["le"], v) for l, v in samples[name + "_bucket"]
         if l.get("consumer") == "ok" and l.get("stream") == "in"]
    vals = [v for _, v in b]
    check(len(b) > 2 and vals == sorted(vals), name + " buckets cumulative")
    check(b[-1][0] == "+Inf" and b[-1][1] == total(name + "_count", consumer="ok"), name + " +Inf")
    check(len([1 for l, _ in samples[name + "_count"] if l.get("consumer") == "ok"]) == 1,
          name + ": one series per consumer")
check([l for l, _ in samples["spate_stream_fsync_duration_seconds_count"]] ==
      [{"bus": bus, "stream": "in"}], "fsync: one series per stream")
recs = [(float(l["le"]), v) for l, v in samples["spate_consumer_batch_records_bucket"]
        if l.get("consumer") == "ok" and l["le"] != "+Inf"]
check(sum(v for le, v in recs if le == 64) == batches, "every batch of ok has at most 40 records")
check("spate_consumer_latency_seconds_bucket" in samples, "latency histogram")
check(total("spate_worker_loops_total") > 0, "worker loops")
PY
scrape "http://127.0.0.1:$port/" "$dir/root.txt" 2>/dev/null || true
obs_stop
echo "prom.sh: endpoint scraped, promtool accepts it, totals match"
