#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# nats_bridge.sh - issue 13's end-to-end test: bus A -> NATS JetStream (a
# real 3-node nats-server cluster on loopback, replicas 3, file storage) ->
# bus B, with SIGKILLs on the way.
#
# Bus A: stream `orders` (2 shards, log), consumer `export` (plugin nats).
# Bus B: stream `orders` (2 shards, log), source `imp` (type nats), consumer
# `check` (plugin file, raw). soak_producer puts keyed records into A and
# logs each one A acknowledged. During the run: one NATS node is SIGKILLed
# and restarted, then bus B, then bus A. Verdict (tests/nats_check.py):
# every record acknowledged by A is in B's stream exactly once, in per-key
# order; the consumer on B saw every one of them in per-key order.
#
# NATS_BRIDGE_FORMAT=envelope runs both halves with `format: envelope` (the
# key in the payload; plugins/nats_conn.h) instead of the default headers.
#
# usage: nats_bridge.sh SPATE SOAK_PRODUCER NATS_JS CHECK_PY
# Skips (77) without nats-server or python3.
set -uo pipefail
spate=${1:?usage: nats_bridge.sh SPATE SOAK_PRODUCER NATS_JS CHECK_PY}
producer=${2:?}
natsjs=${3:?}
checker=${4:?}
command -v nats-server >/dev/null || { echo "SKIP: nats-server not installed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
export SPATE_PLUGIN_PATH=${SPATE_PLUGIN_PATH:?}

dir=$(mktemp -d /tmp/spate-nats-bridge.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	[ -n "${busA:-}" ] && "$spate" rm "$dir/a.yaml" >/dev/null 2>&1
	[ -n "${busB:-}" ] && "$spate" rm "$dir/b.yaml" >/dev/null 2>&1
	if [ "${keep:-0}" = 1 ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Free ports: bound by the kernel, released, used at once.
read -r -a ports <<<"$(python3 - <<'EOF'
import socket
ss = [socket.socket() for _ in range(11)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()
EOF
)"
cport=("${ports[0]}" "${ports[1]}" "${ports[2]}")
rport=("${ports[3]}" "${ports[4]}" "${ports[5]}")
mport=("${ports[6]}" "${ports[7]}" "${ports[8]}")
promport=${ports[9]}
promportA=${ports[10]}
servers="nats://127.0.0.1:${cport[0]},nats://127.0.0.1:${cport[1]},nats://127.0.0.1:${cport[2]}"
npid=(0 0 0)

start_node() { # i
	local i=$1 routes=""
	for j in 0 1 2; do
		[ "$j" = "$i" ] || routes="$routes${routes:+, }nats-route://127.0.0.1:${rport[$j]}"
	done
	mkdir -p "$dir/nats$i"
	cat >"$dir/nats$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:${cport[$i]}
http: 127.0.0.1:${mport[$i]}
jetstream { store_dir: "$dir/nats$i" }
cluster {
  name: spate-test
  listen: 127.0.0.1:${rport[$i]}
  routes: [$routes ]
}
EOF
	nats-server -c "$dir/nats$i.conf" >>"$dir/nats$i.log" 2>&1 &
	npid[$i]=$!
	pids+=("$!")
}
healthy() { # i: the node's JetStream is current
	curl -sf "http://127.0.0.1:${mport[$1]}/healthz" 2>/dev/null | grep -q ok
}
wait_healthy() {
	for _ in $(seq 1 300); do
		local ok=1
		for i in "$@"; do healthy "$i" || ok=0; done
		[ "$ok" = 1 ] && return 0
		for i in "$@"; do
			kill -0 "${npid[$i]}" 2>/dev/null || { echo "FAIL: NATS node $i died"; tail -n 5 "$dir/nats$i.log"; exit 1; }
		done
		sleep 0.1
	done
	echo "FAIL: NATS nodes $* not healthy"; tail -n 5 "$dir"/nats*.log; exit 1
}

# A misspelt key of the nats source: refused before anything starts, with
# the file, line and field.
cat >"$dir/bad.yaml" <<EOF
bus: nbX$$
state_dir: $dir/stateX
streams:
  - { name: orders, huge_pages: off }
sources:
  - name: imp
    type: nats
    stream: orders
    servrs: nats://127.0.0.1:1
    jetstream_stream: X
EOF
mkdir -p "$dir/stateX" && chmod 700 "$dir/stateX"
if "$spate" run "$dir/bad.yaml" >"$dir/bad.out" 2>&1; then
	echo "FAIL: a config with a misspelt nats key ran"; exit 1
fi
grep -qF 'bad.yaml:9: sources[0].servrs: unknown key; did you mean "servers"?' "$dir/bad.out" ||
	{ echo "FAIL: expected the file, line and field of the misspelt key:"; cat "$dir/bad.out"; exit 1; }
"$spate" rm "$dir/bad.yaml" >/dev/null 2>&1

for i in 0 1 2; do start_node "$i"; done
wait_healthy 0 1 2
"$natsjs" "$servers" create BRIDGE 'spate.>' 3 || { echo "FAIL: cannot create the JetStream stream"; exit 1; }

busA="nbA$$"
busB="nbB$$"
cat >"$dir/a.yaml" <<EOF
bus: $busA
state_dir: $dir/stateA
metrics: { listen: "127.0.0.1:$promportA" }
streams:
  - { name: orders, shards: 2, ring_size: 1MiB, huge_pages: off, durability: none, segment_size: 1MiB }
consumers:
  - name: export
    stream: orders
    plugin: nats
    starting_position: trim_horizon
    batch_size: 200
    retry_backoff: 10ms
    retry_backoff_max: 500ms
    options:
      servers: "$servers"
      subject: "spate.{bus}.{stream}.{shard}"
      jetstream_stream: BRIDGE
      ack_timeout: "2000"
      format: ${NATS_BRIDGE_FORMAT:-headers}
EOF
cat >"$dir/b.yaml" <<EOF
bus: $busB
state_dir: $dir/stateB
metrics: { listen: "127.0.0.1:$promport" }
streams:
  - { name: orders, shards: 2, ring_size: 1MiB, huge_pages: off, durability: none, segment_size: 1MiB }
sources:
  - name: imp
    type: nats
    stream: orders
    servers: [nats://127.0.0.1:${cport[0]}, nats://127.0.0.1:${cport[1]}, nats://127.0.0.1:${cport[2]}]
    jetstream_stream: BRIDGE
    ack_wait: 5s
    reconnect_wait: 50ms
    reconnect_max: 500ms
    format: ${NATS_BRIDGE_FORMAT:-headers}
consumers:
  - name: check
    stream: orders
    plugin: file
    starting_position: trim_horizon
    options: { path: "$dir/out/check.%s", format: raw }
EOF
mkdir -p "$dir/out" "$dir/stateA" "$dir/stateB"
chmod 700 "$dir/stateA" "$dir/stateB"

. "$(dirname "$0")/nats_lib.sh"
start_bus A a.yaml
start_bus B b.yaml

"$producer" "$busA" orders "$dir/acks.1" --keys 16 --rate 3000 --tag p1 2>"$dir/producer.log" &
ppid=$!
pids+=("$ppid")

sleep 3
echo "SIGKILL NATS node 1"
kill -9 "${npid[1]}"
sleep 2
start_node 1
wait_healthy 0 1 2
sleep 1
echo "SIGKILL bus B"
kill -9 "$pid_B"
sleep 1
start_bus B b.yaml
sleep 2
echo "SIGKILL bus A"
kill -9 "$pid_A"
sleep 1
start_bus A a.yaml
sleep 2
kill -TERM "$ppid"
wait "$ppid" 2>/dev/null
acked=$(cat "$dir"/acks.* | wc -l)
echo "producer: $(tail -n 1 "$dir/producer.log") ($acked acknowledged)"

# Wait until B's stream holds every acknowledged record (or 60 s).
dump_b() {
	"$spate" tail "$dir/b.yaml" orders --from trim_horizon -n 100000000 >"$dir/b.tail" 2>"$dir/b.tail.err"
}
for _ in $(seq 1 120); do
	dump_b
	n=$(wc -l <"$dir/b.tail")
	[ "$n" -ge "$acked" ] && break
	sleep 0.5
done
sleep 1
dump_b
# The import's state in the counters region: spate stat and Prometheus.
"$spate" stat "$busB" --json >"$dir/b.stat.json" 2>&1
curl -sf "http://127.0.0.1:$promport/metrics" >"$dir/b.prom" 2>&1
stat_ok=$(python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
s = [x for x in v.get("sources", []) if x["name"] == "imp"]
ok = s and s[0]["type"] == "nats" and s[0]["state"] == "up" and s[0]["counters"]["appended"] > 0 \
     and "redeliveries" in s[0]["counters"] and "lag" in s[0]["counters"]
print("ok" if ok else "bad: %s" % s)' "$dir/b.stat.json" 2>&1)
if [ "$stat_ok" != ok ]; then echo "FAIL: spate stat sources: $stat_ok"; keep=1; exit 1; fi
grep -q 'spate_source_up{bus="'"$busB"'",source="imp",type="nats",state="up"} 1' "$dir/b.prom" ||
	{ echo "FAIL: no spate_source_up for imp in /metrics"; keep=1; exit 1; }
grep -q 'spate_source_value{.*source="imp".*name="appended"}' "$dir/b.prom" ||
	{ echo "FAIL: no spate_source_value appended in /metrics"; keep=1; exit 1; }
echo "stat: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sources"][0]["counters"])' "$dir/b.stat.json")"
# The export's state: the consumer's status slot (spate/plugin.h revision
# 3) in A's counters region, spate stat and Prometheus.
"$spate" stat "$busA" --json >"$dir/a.stat.json" 2>&1
"$spate" stat "$busA" >"$dir/a.stat.txt" 2>&1
curl -sf "http://127.0.0.1:$promportA/metrics" >"$dir/a.prom" 2>&1
stat_ok=$(python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
s = [x for x in v.get("sources", []) if x["name"] == "export"]
c = s[0]["counters"] if s else {}
ok = s and s[0]["type"] == "consumer:nats" and s[0]["state"] == "up" and c.get("acked", 0) > 0 \
     and c.get("published", 0) >= c["acked"] and c.get("connected") == 2 \
     and all(k in c for k in ("pending_acks", "redeliveries", "duplicates", "lag", "disconnects"))
print("ok" if ok else "bad: %s" % s)' "$dir/a.stat.json" 2>&1)
if [ "$stat_ok" != ok ]; then echo "FAIL: spate stat of A: the export: $stat_ok"; keep=1; exit 1; fi
grep -q '^export .*consumer:nats .*up .*acked=' "$dir/a.stat.txt" ||
	{ echo "FAIL: spate stat (text) of A has no export line:"; cat "$dir/a.stat.txt"; keep=1; exit 1; }
grep -q 'spate_source_up{bus="'"$busA"'",source="export",type="consumer:nats",state="up"} 1' "$dir/a.prom" ||
	{ echo "FAIL: no spate_source_up for the export in A's /metrics"; keep=1; exit 1; }
grep -q 'spate_source_value{.*source="export".*name="pending_acks"}' "$dir/a.prom" ||
	{ echo "FAIL: no spate_source_value pending_acks for the export in A's /metrics"; keep=1; exit 1; }
echo "export: $(python3 -c 'import json,sys; print([x["counters"] for x in json.load(open(sys.argv[1]))["sources"] if x["name"] == "export"][0])' "$dir/a.stat.json")"
kill -TERM "$pid_A" "$pid_B" 2>/dev/null
wait "$pid_A" "$pid_B" 2>/dev/null
verdict=$(python3 "$checker" --acks "$dir"/acks.* --stream "$dir/b.tail" --consumer "$dir"/out/check.*)
echo "$verdict"
# spate bench bridge on this cluster, briefly: its JSON keeps the cases'
# schema (issue 13: impl, direction, record_size, records_per_sec, p99_ns).
"$spate" bench bridge --servers "$servers" --records 300 --runs 1 --sizes 64 \
	--format "${NATS_BRIDGE_FORMAT:-headers}" --json >"$dir/bench.json" 2>"$dir/bench.err" ||
	{ echo "FAIL: spate bench bridge"; tail -n 5 "$dir/bench.err"; keep=1; exit 1; }
bench_ok=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
keys = {"impl", "direction", "record_size", "records_per_sec", "p99_ns"}
got = {(c["impl"], c["direction"]) for c in d["cases"] if keys <= set(c) and c["records_per_sec"] > 0}
want = {(i, x) for i in ("spate", "libnats") for x in ("export", "import", "through")}
want.add(("libnats_floor", "import"))
print("ok" if got == want and len(d["ratios"]) == 3 else "bad: %s" % sorted(got))' "$dir/bench.json" 2>&1)
[ "$bench_ok" = ok ] || { echo "FAIL: bench bridge JSON: $bench_ok"; keep=1; exit 1; }
echo "bench bridge --json: seven cases (the import's floor too) and three ratios"
if ! grep -q '^OK' <<<"$verdict"; then
	echo "--- A log"; tail -n 30 "$dir/A.log"
	echo "--- B log"; tail -n 30 "$dir/B.log"
	keep=1
	exit 1
fi
exit 0
