#!/bin/sh
# Run-time streams survive a SIGKILL of their engine (issue 11 item 4, core
# side): streams_add runs the bus's engine, creates stream "rt" at run time
# (durability always) and puts 1,000 records, each acknowledged once
# durable; `spate stat` shows the new stream while it runs; it is killed
# with SIGKILL; `spate run` brings "rt" back from its definition, first
# with its shared memory as the kill left it, then, after the memory is
# removed as a reboot would (spate rm), from its log: each time `spate
# stat` and the Prometheus endpoint show it with every acknowledged record,
# and the log holds them all. Usage: streams_restart.sh SPATE STREAMS_ADD
set -eu
spate=$1
helper=$2
command -v python3 >/dev/null 2>&1 || { echo "streams_restart.sh: SKIP: python3 absent"; exit 77; }
name=streams_restart.sh
. "$(dirname "$0")/engine_lib.sh"
bus="srt$$"
port=$((20000 + ($$ + 7) % 20000))
hpid=
cleanup_extra() { [ -n "$hpid" ] && kill -9 "$hpid" 2>/dev/null; wait 2>/dev/null || true; }

cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
metrics: { listen: 127.0.0.1:$port }
streams:
  - name: in
    shards: 1
    ring_size: 64KiB
    huge_pages: off
consumers:
  - name: k
    stream: in
    plugin: count
YAML

"$helper" "$dir/bus.yaml" rt 1000 > "$dir/helper.out" 2> "$dir/helper.err" &
hpid=$!
i=0
until grep -q ready "$dir/helper.out"; do
	kill -0 "$hpid" 2>/dev/null || fail "helper exited: $(cat "$dir/helper.err")"
	i=$((i + 1)); [ $i -lt 300 ] || fail "helper not ready: $(cat "$dir/helper.err")"; sleep 0.1
done
"$spate" stat "$bus" --json --interval 0 > "$dir/s1.json" || fail "stat while the helper runs"
python3 - "$dir/s1.json" <<'PY' || fail "stat does not show rt: $(cat "$dir/s1.json")"
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if "rt" in [s["name"] for s in d["streams"]] else 1)
PY
[ -f "$dir/state/streams/rt.json" ] || fail "no definition file"
kill -9 "$hpid"; wait "$hpid" 2>/dev/null || true; hpid=

# spate run brings "rt" back: stat and Prometheus show it, at 1,000 records.
check_back() {
	start_engine
	i=0
	until "$spate" stat "$bus" --json --interval 0 > "$dir/s2.json" 2>/dev/null &&
		python3 - "$dir/s2.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = {x["name"]: x for x in d["streams"]}
sys.exit(0 if "rt" in s and "in" in s else 1)
PY
	do
		i=$((i + 1)); [ $i -lt 100 ] || fail "$1: stat after restart: $(cat "$dir/s2.json")"; sleep 0.1
	done
	grep -q "stream rt: log" "$dir/run.log" || fail "$1: rt's log not reopened"
	python3 - "http://127.0.0.1:$port/metrics" > "$dir/m.txt" <<'PY' || fail "$1: scrape"
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
PY
	grep -q '^spate_stream_head_sequence{bus="'"$bus"'",stream="rt",shard="0"} 1000$' "$dir/m.txt" ||
		fail "$1: Prometheus does not show rt at 1000: $(grep stream=\"rt\" "$dir/m.txt" | head)"
}
# 1. Its shared memory survived the SIGKILL: attached again.
check_back "memory kept"
kill -INT "$pid"; wait "$pid" || fail "run exited with $?"; pid=
# 2. A reboot: the bus's shared memory is gone (spate rm also finds "rt"):
# recreated from its log, numbering continued.
"$spate" rm "$dir/bus.yaml" > "$dir/rm.out" || fail "rm: $(cat "$dir/rm.out")"
grep -q "stream rt: removed" "$dir/rm.out" || fail "rm did not remove rt: $(cat "$dir/rm.out")"
check_back "memory removed"
kill -INT "$pid"; wait "$pid" || fail "run exited with $?"; pid=
"$spate" log stats "$dir/state/log/rt/0000" > "$dir/stats.out" || fail "log stats"
grep -q "sequence 0\.\.999," "$dir/stats.out" || fail "log stats: $(cat "$dir/stats.out")"
grep -q '"owner": *"restart-test"' "$dir/state/streams/rt.json" || fail "tag lost: $(cat "$dir/state/streams/rt.json")"
echo "streams_restart.sh: a run-time stream created and filled, its engine SIGKILLed: spate run brought it back from its definition with its memory, then (memory removed) from its log (1,000 acknowledged records), shown by spate stat and Prometheus OK"
