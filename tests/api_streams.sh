#!/bin/sh
# Streams created at run time through the Kinesis API front: CreateStream on
# a running bus (put/get on it at once, shown by ListStreams, Describe and
# `spate stat`), ResourceInUse for a taken name, tags and retention (kept
# by the core), a restart of `spate run` keeps the stream, its records, tags
# and retention; DeleteStream removes it (ResourceNotFound after), refuses a
# stream of the configuration file, and the YAML consumer keeps working
# throughout.
# Usage: api_streams.sh SPATE_BINARY
set -eu
spate=$1
name=api_streams.sh
command -v python3 >/dev/null 2>&1 || { echo "$name: SKIP: python3 absent"; exit 77; }
. "$(dirname "$0")/engine_lib.sh"
engine_seconds=600 # slow under sanitizers; the cleanup stops it

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/state"
cat > "$dir/bus.yaml" <<YAML
bus: apistr$$
state_dir: $dir/state
streams:
  - name: yaml1
    shards: 1
    huge_pages: off
consumers:
  - name: cnt
    stream: yaml1
    plugin: count
    starting_position: trim_horizon
api:
  listen: 127.0.0.1:$port
  auth: none
YAML
start_engine
wait_api

cat > "$dir/lib.py" <<'PY'
import base64, http.client, json, sys
port = int(sys.argv[1])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
def raw(op, body):
    conn.request("POST", "/", body=json.dumps(body), headers={"X-Amz-Target": "Kinesis_20131202." + op, "Content-Type": "application/x-amz-json-1.1"})
    r = conn.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data else {})
def call(op, body):
    st, out = raw(op, body)
    assert st == 200, (op, body, st, out)
    return out
def err(op, body, want):
    st, out = raw(op, body)
    assert st == 400 and out.get("__type") == want, (op, body, st, out, want)
    return out["message"]
def b64(s):
    return base64.b64encode(s.encode()).decode()
def read_all(stream, shards):
    got = []
    for sh in range(shards):
        it = call("GetShardIterator", {"StreamName": stream, "ShardId": "shardId-%012d" % sh, "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        while True:
            r = call("GetRecords", {"ShardIterator": it})
            got += [(x["PartitionKey"], base64.b64decode(x["Data"]).decode()) for x in r["Records"]]
            it = r["NextShardIterator"]
            if not r["Records"]:
                break
    return sorted(got)
PY

python3 - "$port" > "$dir/py1.log" 2>&1 <<PY || { cat "$dir/py1.log" >&2; fail "create, put, tags"; }
exec(open("$dir/lib.py").read())
st, out = raw("CreateStream", {"StreamName": "rt1", "ShardCount": 3})
if st != 200 and "not implemented" in out.get("message", ""):
    print("SKIP: the engine has no run-time streams: " + out["message"])
    sys.exit(0)
assert st == 200, out
err("CreateStream", {"StreamName": "rt1", "ShardCount": 1}, "ResourceInUseException")
err("CreateStream", {"StreamName": "yaml1", "ShardCount": 1}, "ResourceInUseException")
err("CreateStream", {"StreamName": "has.dot", "ShardCount": 1}, "InvalidArgumentException")
err("CreateStream", {"StreamName": "x", "ShardCount": 0}, "ValidationException")
assert call("ListStreams", {})["StreamNames"] == ["rt1", "yaml1"]
d = call("DescribeStream", {"StreamName": "rt1"})["StreamDescription"]
assert d["StreamStatus"] == "ACTIVE" and len(d["Shards"]) == 3, d
recs = [{"PartitionKey": "k%d" % i, "Data": b64("v%d" % i)} for i in range(300)]
r = call("PutRecords", {"StreamName": "rt1", "Records": recs})
assert r["FailedRecordCount"] == 0 and len({x["ShardId"] for x in r["Records"]}) == 3
assert read_all("rt1", 3) == sorted(("k%d" % i, "v%d" % i) for i in range(300))
call("PutRecords", {"StreamName": "yaml1", "Records": [{"PartitionKey": "y", "Data": b64("y%d" % i)} for i in range(20)]})
call("AddTagsToStream", {"StreamName": "rt1", "Tags": {"team": "spate", "env": "test"}})
call("AddTagsToStream", {"StreamName": "rt1", "Tags": {"env": "ci"}})
t = call("ListTagsForStream", {"StreamName": "rt1"})
assert t == {"Tags": [{"Key": "env", "Value": "ci"}, {"Key": "team", "Value": "spate"}], "HasMoreTags": False}, t
t = call("ListTagsForStream", {"StreamName": "rt1", "Limit": 1})
assert t["HasMoreTags"] is True and t["Tags"] == [{"Key": "env", "Value": "ci"}]
assert call("ListTagsForStream", {"StreamName": "rt1", "ExclusiveStartTagKey": "env"})["Tags"] == [{"Key": "team", "Value": "spate"}]
err("AddTagsToStream", {"StreamName": "rt1", "Tags": {"k%d" % i: "v" for i in range(11)}}, "ValidationException")
for b in range(4):
    call("AddTagsToStream", {"StreamName": "rt1", "Tags": {"t%d-%d" % (b, i): "v" for i in range(10)}})
call("AddTagsToStream", {"StreamName": "rt1", "Tags": {"u%d" % i: "v" for i in range(8)}})
err("AddTagsToStream", {"StreamName": "rt1", "Tags": {"over": "v"}}, "LimitExceededException")
call("RemoveTagsFromStream", {"StreamName": "rt1", "TagKeys": ["team"] + ["t0-%d" % i for i in range(9)]})
assert len(call("ListTagsForStream", {"StreamName": "rt1"})["Tags"]) == 40
err("IncreaseStreamRetentionPeriod", {"StreamName": "rt1", "RetentionPeriodHours": 12}, "InvalidArgumentException")
call("IncreaseStreamRetentionPeriod", {"StreamName": "rt1", "RetentionPeriodHours": 48})
err("IncreaseStreamRetentionPeriod", {"StreamName": "rt1", "RetentionPeriodHours": 30}, "InvalidArgumentException")
err("DecreaseStreamRetentionPeriod", {"StreamName": "rt1", "RetentionPeriodHours": 72}, "InvalidArgumentException")
call("DecreaseStreamRetentionPeriod", {"StreamName": "rt1", "RetentionPeriodHours": 36})
assert call("DescribeStreamSummary", {"StreamName": "rt1"})["StreamDescriptionSummary"]["RetentionPeriodHours"] == 36
print("created")
PY
if grep -q '^SKIP' "$dir/py1.log"; then
	echo "$name: $(cat "$dir/py1.log")"
	exit 77
fi
"$spate" stat "apistr$$" > "$dir/stat.txt" 2>&1 || fail "spate stat: $(cat "$dir/stat.txt")"
grep -q rt1 "$dir/stat.txt" || fail "spate stat does not show rt1: $(cat "$dir/stat.txt")"

# A restart keeps the run-time stream, its records, tags and retention.
kill -INT "$pid"
wait "$pid" || fail "run exited with $?"
pid=
start_engine
wait_api
python3 - "$port" > "$dir/py2.log" 2>&1 <<PY || { cat "$dir/py2.log" >&2; fail "after the restart"; }
exec(open("$dir/lib.py").read())
assert call("ListStreams", {})["StreamNames"] == ["rt1", "yaml1"]
assert read_all("rt1", 3) == sorted(("k%d" % i, "v%d" % i) for i in range(300))
assert len(call("ListTagsForStream", {"StreamName": "rt1"})["Tags"]) == 40
assert call("DescribeStreamSummary", {"StreamName": "rt1"})["StreamDescriptionSummary"]["RetentionPeriodHours"] == 36
err("DeleteStream", {"StreamName": "yaml1"}, "ResourceInUseException")
call("DeleteStream", {"StreamName": "rt1"})
err("DeleteStream", {"StreamName": "rt1"}, "ResourceNotFoundException")
err("DescribeStream", {"StreamName": "rt1"}, "ResourceNotFoundException")
err("PutRecord", {"StreamName": "rt1", "PartitionKey": "a", "Data": "QUJD"}, "ResourceNotFoundException")
assert call("ListStreams", {})["StreamNames"] == ["yaml1"]
# The name can be used again: a new, empty stream.
call("CreateStream", {"StreamName": "rt1", "ShardCount": 1})
assert read_all("rt1", 1) == []
call("DeleteStream", {"StreamName": "rt1"})
print("deleted")
PY
kill -INT "$pid"
wait "$pid" || fail "run exited with $?"
pid=
# The YAML consumer saw all 20 records of yaml1 across both runs.
grep -q "cnt" "$dir/run.log" || fail "no consumer report"
echo "$name: ok"
