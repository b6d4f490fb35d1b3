#!/bin/sh
# A put the Kinesis API front answered is not lost to a SIGKILL of
# `spate run`: clients keep putting (PutRecords on keep-alive connections,
# a memory-only stream and a `durability: always` one) while the engine is
# SIGKILLed; after a restart, every record answered 200 is read back by
# GetRecords from TRIM_HORIZON, with its sequence number and data, in order.
# (A memory-only stream's rings are shared memory: they outlive the
# process.) The `always` stream's shared memory is then deleted too, as a
# power loss would: it comes back from its log alone, and still holds every
# record answered 200, since such a stream answers only once durable.
# Usage: api_kill.sh SPATE_BINARY
set -eu
spate=$1
name=api_kill.sh
command -v python3 >/dev/null 2>&1 || { echo "$name: SKIP: python3 absent"; exit 77; }
. "$(dirname "$0")/engine_lib.sh"
engine_seconds=600 # slow under sanitizers; the cleanup stops it

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/state"
cat > "$dir/bus.yaml" <<YAML
bus: apikill$$
state_dir: $dir/state
streams:
  - name: mem
    shards: 2
    huge_pages: off
  - name: dur
    shards: 2
    huge_pages: off
    durability: always
api:
  listen: 127.0.0.1:$port
  auth: none
YAML
start_engine
wait_api

# Producers: 2 per stream, each logging "stream seq data" after every 200.
cat > "$dir/put.py" <<'PY'
import base64, http.client, json, sys
port, stream, who, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
log = open(out, "w", buffering=1)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
n = 0
try:
    while True:
        recs = [{"PartitionKey": "%s-%d" % (who, i % 5),
                 "Data": base64.b64encode(("%s-%d" % (who, n + i)).encode()).decode()}
                for i in range(50)]
        conn.request("POST", "/", body=json.dumps({"StreamName": stream, "Records": recs}),
                     headers={"X-Amz-Target": "Kinesis_20131202.PutRecords",
                              "Content-Type": "application/x-amz-json-1.1"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            continue
        res = json.loads(body)["Records"]
        # Written only after the whole answer arrived: an answered record.
        log.write("".join("%s %s %s\n" % (a["ShardId"], a["SequenceNumber"], q["Data"])
                          for q, a in zip(recs, res) if "SequenceNumber" in a))
        n += 50
except Exception:
    pass
PY
for s in mem dur; do
	for w in a b; do
		python3 "$dir/put.py" "$port" "$s" "$s$w" "$dir/acked.$s.$w" &
	done
done
# Let them put, then SIGKILL the engine mid-stream.
i=0
until [ "$(cat "$dir"/acked.* 2>/dev/null | wc -l)" -ge 4000 ]; do
	i=$((i + 1)); [ $i -lt 300 ] || fail "puts did not get going: $(cat "$dir"/acked.* | wc -l)"; sleep 0.1
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
pid=
wait # the producers end on the closed connections
acked=$(cat "$dir"/acked.* | wc -l)
# Power loss: the `always` stream's memory is gone; only its log remains.
rm -f "/dev/shm/spate.apikill$$.dur" "/dev/hugepages/spate.apikill$$.dur"

start_engine
wait_api
python3 - "$port" "$dir" > "$dir/check.log" 2>&1 <<'PY' || { cat "$dir/check.log" >&2; fail "answered records lost"; }
import glob, http.client, json, sys
port, d = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def call(op, body):
    conn.request("POST", "/", body=json.dumps(body), headers={"X-Amz-Target": "Kinesis_20131202." + op, "Content-Type": "application/x-amz-json-1.1"})
    r = conn.getresponse()
    out = json.loads(r.read() or b"{}")
    assert r.status == 200, (op, out)
    return out
total = 0
for stream in ("mem", "dur"):
    acked = {}
    for f in glob.glob(d + "/acked.%s.*" % stream):
        for line in open(f):
            parts = line.split()
            if len(parts) == 3:  # a line cut by the kill is not an answer
                acked[(parts[0], parts[1])] = parts[2]
    stored = {}
    for sh in ("shardId-000000000000", "shardId-000000000001"):
        it = call("GetShardIterator", {"StreamName": stream, "ShardId": sh, "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        seqs = []
        while True:
            r = call("GetRecords", {"ShardIterator": it})
            for x in r["Records"]:
                stored[(sh, x["SequenceNumber"])] = x["Data"]
                seqs.append(int(x["SequenceNumber"]))
            it = r["NextShardIterator"]
            if not r["Records"]:
                break
        assert seqs == sorted(seqs), "order"
    if stream == "dur":
        # Recreated from its log: a new incarnation (the first 22 digits),
        # the same ring sequence numbers (the last 20) and data.
        acked = {(k[0], k[1][-20:]): v for k, v in acked.items()}
        stored = {(k[0], k[1][-20:]): v for k, v in stored.items()}
    lost = [k for k in acked if stored.get(k) != acked[k]]
    assert not lost, "%s: %d of %d answered records lost or changed, e.g. %s" % (stream, len(lost), len(acked), lost[:3])
    total += len(acked)
print("api_kill: ok, %d answered records all there" % total)
PY
cat "$dir/check.log"
echo "$name: ok ($acked answered before the SIGKILL)"
