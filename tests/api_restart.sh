#!/bin/sh
# What the Kinesis API front keeps across a restart of `spate run`, driven
# by boto3 (a real client) with signatures on:
#  1. shard iterators: an iterator taken before a SIGKILL, and one before a
#     normal stop, still reads after the restart (the iterator key is the
#     bus's, in state_dir); a tampered one is still refused; a key file of
#     the wrong mode is refused at start with a message naming it.
#  2. streams made by CreateStream take `api.create` (here durability:
#     always): after a stop AND the loss of the stream's shared memory (as
#     after a reboot), GetRecords from TRIM_HORIZON returns every record put,
#     from the stream's log. Bad api.create keys name file:line:field.
# Usage: api_restart.sh SPATE_BINARY
set -eu
spate=$1
name=api_restart.sh
command -v python3 >/dev/null 2>&1 || { echo "$name: SKIP: python3 absent"; exit 77; }
python3 -c 'import boto3' 2>/dev/null || { echo "$name: SKIP: python3-boto3 absent"; exit 77; }
. "$(dirname "$0")/engine_lib.sh"
engine_seconds=600 # slow under sanitizers; the cleanup stops it
bus=apirst$$
cleanup_extra() { rm -f "/dev/shm/spate.$bus."* "/dev/hugepages/spate.$bus."* 2>/dev/null || true; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/state"
(umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(30))' > "$dir/secret")
cat > "$dir/bus.yaml" <<YAML
bus: $bus
state_dir: $dir/state
streams:
  - name: conf
    shards: 2
    huge_pages: off
api:
  listen: 127.0.0.1:$port
  auth:
    keys:
      - { id: AKIDRESTART$$, secret_file: $dir/secret }
  create:
    durability: always
    ring_size: 1MiB
    huge_pages: off
YAML

cat > "$dir/t.py" <<'PY'
import json, sys, time
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
port, key_id, secret, d, phase = sys.argv[1:6]
k = boto3.client("kinesis", endpoint_url="http://127.0.0.1:%s" % port, region_name="us-east-1",
                 aws_access_key_id=key_id, aws_secret_access_key=open(secret).read().strip(),
                 config=Config(retries={"max_attempts": 1}))
SH = ["shardId-000000000000", "shardId-000000000001"]
state = d + "/iters.json"

def put(stream, n, tag):
    out = []
    for base in range(0, n, 100):
        recs = [{"PartitionKey": "k%d" % (i % 7), "Data": ("%s-%s-%d" % (stream, tag, i)).encode()}
                for i in range(base, base + 100)]
        r = k.put_records(StreamName=stream, Records=recs)
        assert r["FailedRecordCount"] == 0, r
        out += [(a["ShardId"], q["Data"].decode()) for q, a in zip(recs, r["Records"])]
    return out

def drain(it):
    got = []
    while True:
        r = k.get_records(ShardIterator=it, Limit=1000)
        got += [x["Data"].decode() for x in r["Records"]]
        it = r["NextShardIterator"]
        if not r["Records"] and r["MillisBehindLatest"] == 0:
            return got

if phase == "put":
    k.create_stream(StreamName="made", ShardCount=2)
    s = {"conf": {}, "made": put("made", 300, "a")}
    recs = put("conf", 300, "a")
    for sh in SH:
        want = [dd for (h, dd) in recs if h == sh]
        assert len(want) > 10, (sh, len(want))
        start = k.get_shard_iterator(StreamName="conf", ShardId=sh,
                                     ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        r = k.get_records(ShardIterator=start, Limit=5)
        assert [x["Data"].decode() for x in r["Records"]] == want[:5], r
        s["conf"][sh] = {"start": start, "next": r["NextShardIterator"], "want": want}
    json.dump(s, open(state, "w"))
    print("put: 300 records into conf and into the created stream made")
elif phase == "iter":
    s = json.load(open(state))
    for sh, x in s["conf"].items():
        # Read with the iterators the previous engine issued.
        assert drain(x["next"]) == x["want"][5:], sh
        assert drain(x["start"]) == x["want"], sh
        bad = x["next"][:-6] + ("AAAAAA" if x["next"][-6:] != "AAAAAA" else "BBBBBB")
        try:
            k.get_records(ShardIterator=bad)
            raise AssertionError("a tampered iterator was served")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "InvalidArgumentException", e.response
    print("iter: iterators from before the restart read on; a tampered one is refused")
elif phase == "made":
    s = json.load(open(state))
    assert k.describe_stream_summary(StreamName="made")["StreamDescriptionSummary"]["OpenShardCount"] == 2
    for sh in SH:
        want = [dd for (h, dd) in s["made"] if h == sh]
        it = k.get_shard_iterator(StreamName="made", ShardId=sh,
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got = drain(it)
        assert got == want, "%s: %d records back of %d put: %s" % (sh, len(got), len(want), got[:3])
    print("made: every record of the created stream is back from its log")
PY
t() { python3 "$dir/t.py" "$port" "AKIDRESTART$$" "$dir/secret" "$dir" "$1" || fail "phase $1 ($2)"; }
stop_engine() { kill "-$1" "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# api.create errors name file:line:field, before anything starts.
bad_create() {
	sed "/^  create:/,\$d" "$dir/bus.yaml" > "$dir/bad.yaml"
	printf '  create:\n    %s\n' "$1" >> "$dir/bad.yaml"
	rc=0
	"$spate" run "$dir/bad.yaml" --seconds 5 --interval 0 > "$dir/bad.log" 2>&1 || rc=$?
	[ $rc != 0 ] && grep -q "bad.yaml:$2: api.create.$3: $4" "$dir/bad.log" ||
		fail "api.create { $1 }: expected bad.yaml:$2: api.create.$3: $4, got: $(cat "$dir/bad.log")"
}
bad_create "durability: sometimes" 13 durability "expected one of off, none, interval, always"
bad_create "shards: 3" 13 shards "not allowed here"
bad_create "log_dir: /tmp" 13 log_dir "not allowed here"
bad_create "ring_size: 100KiB" 13 ring_size "expected"

start_engine
wait_api
t put "first start"

stop_engine KILL
start_engine
wait_api
t iter "after a SIGKILL"

stop_engine INT
start_engine
wait_api
t iter "after a normal stop"

# A reboot: the shared memory is gone, the logs and definitions remain.
stop_engine INT
rm -f "/dev/shm/spate.$bus."* "/dev/hugepages/spate.$bus."*
start_engine
wait_api
t made "after the loss of shared memory"
stop_engine INT

# The key file: 32 bytes, mode 0600; one others may read is refused, with
# its name in the message.
key="$dir/state/api-iterator.key"
[ "$(stat -c %a "$key")" = 600 ] || fail "$key: mode $(stat -c %a "$key"), expected 600"
[ "$(stat -c %s "$key")" = 32 ] || fail "$key: $(stat -c %s "$key") bytes, expected 32"
chmod 644 "$key"
rc=0
"$spate" run "$dir/bus.yaml" --seconds 5 --interval 0 > "$dir/bad.log" 2>&1 || rc=$?
[ $rc != 0 ] || fail "spate run served with a key file of mode 0644"
grep -q "api-iterator.key.*mode 0600" "$dir/bad.log" || fail "no clear error: $(cat "$dir/bad.log")"
echo "$name: ok"
