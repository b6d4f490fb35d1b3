#!/bin/sh
# The Kinesis API front of `spate run` at the protocol level: every
# operation and error path over HTTP/1.1 (python3's http.client on one
# keep-alive connection), checked against the shapes AWS documents: shard
# ids and hash key ranges, MD5 routing and ExplicitHashKey, sequence numbers
# in put order, PutRecords' per-record results and a full shard's
# ProvisionedThroughputExceededException, the five iterator types,
# GetRecords paging and history from the log, tampered and expired
# iterators, ListShards/ListStreams paging; and that bad
# requests (malformed JSON, bad base64, oversized records and bodies) get
# the documented error and change nothing. (Run-time streams, tags and
# retention: api_streams.sh; SIGKILL after a 200: api_kill.sh.)
# Usage: api_proto.sh SPATE_BINARY
set -eu
spate=$1
name=api_proto.sh
command -v python3 >/dev/null 2>&1 || { echo "$name: SKIP: python3 absent"; exit 77; }
. "$(dirname "$0")/engine_lib.sh"
engine_seconds=600 # slow under sanitizers; the cleanup stops it

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bus="apiproto$$"
mkdir -p "$dir/state"
cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: orders
    shards: 2
    huge_pages: off
  - name: hist
    shards: 1
    ring_size: 64KiB
    huge_pages: off
    durability: interval
  - name: small
    shards: 1
    ring_size: 64KiB
    huge_pages: off
consumers:
  - name: stuck
    stream: small
    plugin: fail
    options: { contains: HANG, mode: hang }
    starting_position: trim_horizon
    timeout: 3s
api:
  listen: 127.0.0.1:$port
  auth: none
  region: eu-west-3
YAML
# A secret file others can read is refused at start, naming file:line:field.
printf 'secret\n' > "$dir/key.secret"
chmod 644 "$dir/key.secret"
mkdir -p "$dir/state2"
cat > "$dir/bad.yaml" <<YAML
bus: apibad$$
state_dir: $dir/state2
streams:
  - name: s
    huge_pages: off
api:
  listen: 127.0.0.1:$port
  auth:
    keys:
      - id: AKIDSPATE
        secret_file: key.secret
YAML
if "$spate" run "$dir/bad.yaml" --seconds 5 --interval 0 > "$dir/bad.log" 2>&1; then
	fail "spate run accepted a secret file of mode 0644"
fi
grep -q "bad.yaml:11: api.auth.keys\[0\].secret_file: .*key.secret: mode 0644" "$dir/bad.log" ||
	fail "no file:line:field for the 0644 secret: $(cat "$dir/bad.log")"
"$spate" rm "$dir/bad.yaml" > /dev/null 2>&1 || true

# Iterators expire after 5 minutes; the test shortens that (documented
# test knob) to see ExpiredIteratorException.
SPATE_API_ITER_TTL_MS=3000 start_engine
i=0
while ! grep -qs "api: Kinesis API" "$dir/run.log"; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "engine did not start its api"; sleep 0.1
done

python3 - "$port" > "$dir/py.log" 2>&1 <<'PY' || { cat "$dir/py.log" >&2; fail "protocol checks"; }
import base64, hashlib, http.client, json, os, sys, time
port = int(sys.argv[1])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

def raw(op, body, ctype="application/x-amz-json-1.1", method="POST", path="/"):
    h = {"Content-Type": ctype}
    if op is not None:
        h["X-Amz-Target"] = "Kinesis_20131202." + op
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    assert r.getheader("Content-Type") == "application/x-amz-json-1.1", r.getheader("Content-Type")
    return r.status, (json.loads(data) if data else {})

def call(op, body):
    st, out = raw(op, json.dumps(body))
    assert st == 200, (op, body, st, out)
    return out

def err(op, body, want, status=400, **kw):
    st, out = raw(op, body if isinstance(body, (str, bytes)) else json.dumps(body), **kw)
    assert st == status and out.get("__type") == want, (op, str(body)[:200], st, out, want)
    assert isinstance(out.get("message"), str)
    return out["message"]

def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()

def it(stream, shard, kind, **kw):
    body = {"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind}
    body.update(kw)
    return call("GetShardIterator", body)["ShardIterator"]

def drain(iterator, limit=10000):
    out = []
    while True:
        r = call("GetRecords", {"ShardIterator": iterator, "Limit": limit})
        assert isinstance(r["MillisBehindLatest"], int)
        out += r["Records"]
        iterator = r["NextShardIterator"]
        if not r["Records"]:
            return out, iterator

# --- ListStreams, Describe, ListShards -----------------------------------
ls = call("ListStreams", {})
assert ls["StreamNames"] == ["hist", "orders", "small"] and ls["HasMoreStreams"] is False, ls
p1 = call("ListStreams", {"Limit": 2})
assert p1["StreamNames"] == ["hist", "orders"] and p1["HasMoreStreams"] is True
p2 = call("ListStreams", {"NextToken": p1["NextToken"]})
assert p2["StreamNames"] == ["small"], p2
assert call("ListStreams", {"ExclusiveStartStreamName": "hist"})["StreamNames"] == ["orders", "small"]
d = call("DescribeStream", {"StreamName": "orders"})["StreamDescription"]
assert d["StreamStatus"] == "ACTIVE" and d["StreamARN"] == "arn:aws:kinesis:eu-west-3:000000000000:stream/orders", d
assert [s["ShardId"] for s in d["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
assert d["HasMoreShards"] is False and d["RetentionPeriodHours"] == 24
ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in d["Shards"]]
assert ranges[0][0] == 0 and ranges[-1][1] == 2**128 - 1 and ranges[0][1] + 1 == ranges[1][0], ranges
d1 = call("DescribeStream", {"StreamName": "orders", "Limit": 1})["StreamDescription"]
assert len(d1["Shards"]) == 1 and d1["HasMoreShards"] is True
d2 = call("DescribeStream", {"StreamARN": d["StreamARN"], "ExclusiveStartShardId": "shardId-000000000000"})
assert [s["ShardId"] for s in d2["StreamDescription"]["Shards"]] == ["shardId-000000000001"]
sm = call("DescribeStreamSummary", {"StreamName": "orders"})["StreamDescriptionSummary"]
assert sm["OpenShardCount"] == 2 and sm["StreamName"] == "orders", sm
s1 = call("ListShards", {"StreamName": "orders", "MaxResults": 1})
assert len(s1["Shards"]) == 1 and "NextToken" in s1
s2 = call("ListShards", {"NextToken": s1["NextToken"]})
assert [s["ShardId"] for s in s2["Shards"]] == ["shardId-000000000001"] and "NextToken" not in s2
err("ListShards", {"NextToken": s1["NextToken"], "StreamName": "orders"}, "InvalidArgumentException")
err("ListShards", {"NextToken": "AAAA" + s1["NextToken"][4:]}, "InvalidArgumentException")
lim = call("DescribeLimits", {})
assert lim["OpenShardCount"] == 4, lim

# --- PutRecord, PutRecords: routing, order, sequence numbers -------------
def shard_of(key=None, ehk=None):
    h = int(ehk) if ehk is not None else int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
    return [i for i, (lo, hi) in enumerate(ranges) if lo <= h <= hi][0]

r = call("PutRecord", {"StreamName": "orders", "PartitionKey": "alpha", "Data": b64("first")})
assert r["ShardId"] == "shardId-%012d" % shard_of("alpha") and len(r["SequenceNumber"]) == 42, r
sent = {0: [], 1: []}
sent[shard_of("alpha")].append(("alpha", b"first", r["SequenceNumber"]))
for batch in range(3):
    recs = [{"PartitionKey": "k%d" % (i % 7), "Data": b64("b%d-%d" % (batch, i))} for i in range(200)]
    recs.append({"PartitionKey": "x", "Data": b64("explicit-%d" % batch), "ExplicitHashKey": str(2**128 - 1)})
    recs.append({"PartitionKey": "y", "Data": "", "ExplicitHashKey": "0"})
    r = call("PutRecords", {"StreamName": "orders", "Records": recs})
    assert r["FailedRecordCount"] == 0 and len(r["Records"]) == len(recs), r
    for q, a in zip(recs, r["Records"]):
        want = shard_of(ehk=q["ExplicitHashKey"]) if "ExplicitHashKey" in q else shard_of(q["PartitionKey"])
        assert a["ShardId"] == "shardId-%012d" % want, (q, a)
        sent[want].append((q["PartitionKey"], base64.b64decode(q["Data"]), a["SequenceNumber"]))
for sh in (0, 1):
    seqs = [s for _, _, s in sent[sh]]
    assert seqs == sorted(seqs) and seqs == sorted(seqs, key=int) and len(set(seqs)) == len(seqs), sh
    got, nxt = drain(it("orders", "shardId-%012d" % sh, "TRIM_HORIZON"), limit=77)
    assert [(g["PartitionKey"], base64.b64decode(g["Data"]), g["SequenceNumber"]) for g in got] == sent[sh], sh
    now = time.time()
    assert all(abs(g["ApproximateArrivalTimestamp"] - now) < 120 for g in got)
    # LATEST sees only what comes after; the drained iterator sees it too.
    latest = it("orders", "shardId-%012d" % sh, "LATEST")
    assert call("GetRecords", {"ShardIterator": latest})["Records"] == []
    key = [k for k in ("k%d" % i for i in range(100)) if shard_of(k) == sh][0]
    a = call("PutRecord", {"StreamName": "orders", "PartitionKey": key, "Data": b64("late")})
    for iterator in (latest, nxt):
        g = call("GetRecords", {"ShardIterator": iterator})["Records"]
        assert [x["SequenceNumber"] for x in g] == [a["SequenceNumber"]], g
    sent[sh].append((key, b"late", a["SequenceNumber"]))
    # AT_ / AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP
    mid = sent[sh][len(sent[sh]) // 2][2]
    g = call("GetRecords", {"ShardIterator": it("orders", "shardId-%012d" % sh, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=mid), "Limit": 2})["Records"]
    assert g[0]["SequenceNumber"] == mid and len(g) == 2
    g = call("GetRecords", {"ShardIterator": it("orders", "shardId-%012d" % sh, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=mid), "Limit": 1})["Records"]
    assert int(g[0]["SequenceNumber"]) > int(mid)
    g = call("GetRecords", {"ShardIterator": it("orders", "shardId-%012d" % sh, "AT_TIMESTAMP", Timestamp=0)})["Records"]
    assert [x["SequenceNumber"] for x in g] == [s for _, _, s in sent[sh]]
    g = call("GetRecords", {"ShardIterator": it("orders", "shardId-%012d" % sh, "AT_TIMESTAMP", Timestamp=time.time() + 3600)})["Records"]
    assert g == []

# --- bad requests change nothing -----------------------------------------
def tails():
    return [len(drain(it("orders", "shardId-%012d" % s, "TRIM_HORIZON"))[0]) for s in (0, 1)]
before = tails()
err("PutRecords", '{"StreamName": "orders", "Records": [', "SerializationException")
err("PutRecords", '{"StreamName": "orders"} trailing', "SerializationException")
err("PutRecords", '[1, 2]', "SerializationException")
err("PutRecords", {"StreamName": "orders", "Records": "no"}, "SerializationException")
err("PutRecords", {"StreamName": 7, "Records": []}, "SerializationException")
good = {"PartitionKey": "a", "Data": b64("ok")}
err("PutRecords", {"StreamName": "orders", "Records": [good, {"PartitionKey": "a", "Data": "not base64!"}]}, "SerializationException")
err("PutRecords", {"StreamName": "orders", "Records": [good, {"PartitionKey": "a", "Data": "QUJD===="}]}, "SerializationException")
err("PutRecords", {"StreamName": "orders", "Records": [good, {"PartitionKey": "a", "Data": "QU JD"}]}, "SerializationException")
err("PutRecords", {"StreamName": "orders", "Records": [good, {"PartitionKey": "", "Data": "QUJD"}]}, "ValidationException")
err("PutRecords", {"StreamName": "orders", "Records": [good, {"PartitionKey": "k" * 257, "Data": "QUJD"}]}, "ValidationException")
err("PutRecords", {"StreamName": "orders", "Records": [good, {"Data": "QUJD"}]}, "ValidationException")
err("PutRecords", {"StreamName": "orders", "Records": [good, {"PartitionKey": "a", "Data": "QUJD", "ExplicitHashKey": str(2**128)}]}, "InvalidArgumentException")
err("PutRecords", {"StreamName": "orders", "Records": [good] * 501}, "ValidationException")
err("PutRecords", {"StreamName": "orders", "Records": []}, "ValidationException")
err("PutRecords", {"StreamName": "orders", "Records": [good, {"PartitionKey": "a", "Data": b64(b"z" * (1 << 20))}]}, "ValidationException")
err("PutRecord", {"StreamName": "orders", "PartitionKey": "a", "Data": b64(b"z" * ((1 << 20) - 1) + b"zz")}, "ValidationException")
err("PutRecord", {"StreamName": "nope", "PartitionKey": "a", "Data": "QUJD"}, "ResourceNotFoundException")
err("PutRecord", {"PartitionKey": "a", "Data": "QUJD"}, "ValidationException")
err("PutRecord", {"StreamName": "orders", "PartitionKey": "a", "Data": "QUJD"}, "SerializationException", ctype="application/x-amz-cbor-1.1")
# A body over 10 MiB is refused before it is read (answered at the headers).
import socket
sk = socket.create_connection(("127.0.0.1", port), timeout=30)
sk.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n"
           b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n\r\n{" % (10 * 1024 * 1024 + 1))
resp = b""
while b"}" not in resp:
    chunk = sk.recv(4096)
    if not chunk:
        break
    resp += chunk
sk.close()
assert resp.startswith(b"HTTP/1.1 413") and b'"__type":"ValidationException"' in resp, resp
assert tails() == before, (tails(), before)

# --- operations and routing errors ---------------------------------------
err("NoSuchOperation", {}, "UnknownOperationException")
assert "does not implement" in err("SplitShard", {"StreamName": "orders"}, "UnknownOperationException")
err(None, {}, "UnknownOperationException")
err("ListStreams", "", "UnknownOperationException", method="GET")
st, out = raw("ListStreams", "")
assert st == 200 and "StreamNames" in out
err("GetShardIterator", {"StreamName": "orders", "ShardId": "shardId-000000000009", "ShardIteratorType": "LATEST"}, "ResourceNotFoundException")
err("GetShardIterator", {"StreamName": "orders", "ShardId": "shardId-000000000000", "ShardIteratorType": "SIDEWAYS"}, "ValidationException")
err("GetShardIterator", {"StreamName": "orders", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_SEQUENCE_NUMBER"}, "InvalidArgumentException")
err("GetShardIterator", {"StreamName": "orders", "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": "12345"}, "InvalidArgumentException")
good_it = it("orders", "shardId-000000000000", "TRIM_HORIZON")
raw_it = bytearray(base64.b64decode(good_it))
raw_it[10] ^= 1
err("GetRecords", {"ShardIterator": base64.b64encode(bytes(raw_it)).decode()}, "InvalidArgumentException")
err("GetRecords", {"ShardIterator": "garbage"}, "InvalidArgumentException")
err("GetRecords", {"ShardIterator": good_it, "Limit": 10001}, "ValidationException")
err("GetRecords", {"ShardIterator": good_it, "Limit": 0}, "ValidationException")
err("GetRecords", {}, "ValidationException")
time.sleep(3.5)
err("GetRecords", {"ShardIterator": good_it}, "ExpiredIteratorException")

# --- a full shard: per-record ProvisionedThroughputExceededException -----
# The consumer of "small" hangs on its first record and holds the ring.
call("PutRecord", {"StreamName": "small", "PartitionKey": "h", "Data": b64("HANG")})
time.sleep(0.5)
failed = 0
blob = b64(b"f" * 1000)
for n in range(100):
    r = call("PutRecords", {"StreamName": "small", "Records": [{"PartitionKey": "k", "Data": blob}] * 10})
    codes = [x.get("ErrorCode") for x in r["Records"]]
    if r["FailedRecordCount"]:
        assert r["FailedRecordCount"] == codes.count("ProvisionedThroughputExceededException")
        i = codes.index("ProvisionedThroughputExceededException")
        # once a shard is full, its later records fail too (per-key order on retry)
        assert all(c == "ProvisionedThroughputExceededException" for c in codes[i:]), codes
        assert "Rate exceeded for shard shardId-000000000000" in r["Records"][i]["ErrorMessage"]
        failed += 1
        break
assert failed, "the shard never filled"
for n in range(200):
    st, out = raw("PutRecord", json.dumps({"StreamName": "small", "PartitionKey": "k", "Data": blob}))
    if st != 200:
        break
assert st == 400 and out["__type"] == "ProvisionedThroughputExceededException", out

# --- history from the log: the ring (64 KiB) no longer holds it ----------
sent = []
for b in range(30):
    recs = [{"PartitionKey": "p%d" % i, "Data": b64("h-%d-%d-" % (b, i) + "x" * 200)} for i in range(50)]
    while recs:
        r = call("PutRecords", {"StreamName": "hist", "Records": recs})
        sent += [(q["Data"], a["SequenceNumber"]) for q, a in zip(recs, r["Records"]) if "SequenceNumber" in a]
        recs = [q for q, a in zip(recs, r["Records"]) if "ErrorCode" in a]
        if recs:
            time.sleep(0.02)
assert len(sent) == 1500 and sum(len(base64.b64decode(d)) for d, _ in sent) > 4 * 65536
sent.sort(key=lambda x: x[1])
got, _ = drain(it("hist", "shardId-000000000000", "TRIM_HORIZON"), limit=333)
assert [(g["Data"], g["SequenceNumber"]) for g in got] == sent, (len(got), len(sent))
at = sent[100][1]
g = call("GetRecords", {"ShardIterator": it("hist", "shardId-000000000000", "AT_SEQUENCE_NUMBER", StartingSequenceNumber=at), "Limit": 3})["Records"]
assert [x["SequenceNumber"] for x in g] == [s for _, s in sent[100:103]]
print("api_proto: ok")
PY
grep -q "api_proto: ok" "$dir/py.log" || fail "no ok"
echo "$name: ok"
