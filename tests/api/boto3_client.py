# SPDX-License-Identifier: MIT
"""boto3 (Debian python3-boto3) against spate's Kinesis API front, signatures on.

create-stream -> put-record / put-records -> list-shards (paged) ->
get-shard-iterator (TRIM_HORIZON, AFTER_SEQUENCE_NUMBER, LATEST) ->
get-records (drained) -> delete-stream, checking payloads, order per
partition key, one shard per key, sequence numbers, and the error types a
boto3 program branches on (e.response['Error']['Code']).

Usage: boto3_client.py ENDPOINT KEY_ID SECRET_FILE STREAM [CA_BUNDLE]
Exit 0 and one line "boto3 ... OK", or a message and exit 1.
"""
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError

endpoint, key_id, secret_file, stream = sys.argv[1:5]
ca = sys.argv[5] if len(sys.argv) > 5 else None
with open(secret_file) as f:
    secret = f.read().strip()

kin = boto3.client(
    "kinesis", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id=key_id, aws_secret_access_key=secret,
    verify=ca if ca else True,
    config=botocore.config.Config(retries={"max_attempts": 1}))


def fail(msg):
    print("boto3_client: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def expect_error(code, fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        if got != code:
            fail("%s(%s): expected %s, got %s (%s)" % (fn.__name__, kw, code, got, e))
        return e
    fail("%s(%s): expected %s, succeeded" % (fn.__name__, kw, code))


# create-stream; the waiter polls DescribeStream until ACTIVE.
kin.create_stream(StreamName=stream, ShardCount=2)
kin.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
expect_error("ResourceInUseException", kin.create_stream, StreamName=stream, ShardCount=2)
expect_error("ResourceNotFoundException", kin.describe_stream, StreamName=stream + "-absent")
summary = kin.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
if summary["OpenShardCount"] != 2 or summary["StreamStatus"] != "ACTIVE":
    fail("describe-stream-summary: %r" % summary)

# put-record: 30 records of key "single", each answered with its shard and
# a sequence number that grows.
sent = {}  # key -> [data, ...] in put order
last = None
for i in range(30):
    data = b"single-%03d" % i
    r = kin.put_record(StreamName=stream, PartitionKey="single", Data=data)
    if last and int(r["SequenceNumber"]) <= int(last["SequenceNumber"]):
        fail("put-record sequence numbers do not grow: %s then %s" % (last["SequenceNumber"], r["SequenceNumber"]))
    if last and r["ShardId"] != last["ShardId"]:
        fail("one key in two shards: %s, %s" % (last["ShardId"], r["ShardId"]))
    last = r
    sent.setdefault("single", []).append(data)

# put-records: 4 batches of 500 over 40 keys, binary payloads (every byte value).
for b in range(4):
    recs = []
    for i in range(500):
        key = "key-%02d" % (i % 40)
        data = bytes([b, i % 256, (i * 7) % 256]) + ("%s/%d/%d" % (key, b, i)).encode()
        recs.append({"PartitionKey": key, "Data": data})
        sent.setdefault(key, []).append(data)
    r = kin.put_records(StreamName=stream, Records=recs)
    if r["FailedRecordCount"] != 0 or len(r["Records"]) != 500:
        fail("put-records: %d failed of %d" % (r["FailedRecordCount"], len(r["Records"])))
    for x in r["Records"]:
        if "SequenceNumber" not in x or not x["ShardId"].startswith("shardId-"):
            fail("put-records entry: %r" % x)
total = sum(len(v) for v in sent.values())

# list-shards, one per page: NextToken pages through both.
shards, tok = [], None
while True:
    r = kin.list_shards(NextToken=tok, MaxResults=1) if tok else kin.list_shards(StreamName=stream, MaxResults=1)
    shards += r["Shards"]
    tok = r.get("NextToken")
    if not tok:
        break
if [s["ShardId"] for s in shards] != ["shardId-000000000000", "shardId-000000000001"]:
    fail("list-shards: %r" % shards)
if shards[0]["HashKeyRange"]["StartingHashKey"] != "0" or \
        int(shards[1]["HashKeyRange"]["EndingHashKey"]) != 2 ** 128 - 1:
    fail("hash key ranges: %r" % [s["HashKeyRange"] for s in shards])

# get-records from TRIM_HORIZON, drained shard by shard.
got = {}  # key -> [data...] in read order
key_shard = {}
first_seqs = {}
for s in shards:
    it = kin.get_shard_iterator(StreamName=stream, ShardId=s["ShardId"],
                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    prev = None
    seqs = []
    for _ in range(1000):
        r = kin.get_records(ShardIterator=it, Limit=700)
        for x in r["Records"]:
            k = x["PartitionKey"]
            if key_shard.setdefault(k, s["ShardId"]) != s["ShardId"]:
                fail("key %s in two shards" % k)
            if prev is not None and int(x["SequenceNumber"]) <= prev:
                fail("sequence numbers out of order in %s" % s["ShardId"])
            prev = int(x["SequenceNumber"])
            seqs.append(x["SequenceNumber"])
            if "ApproximateArrivalTimestamp" not in x:
                fail("no ApproximateArrivalTimestamp")
            got.setdefault(k, []).append(x["Data"])
        it = r.get("NextShardIterator")
        if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
            break
    first_seqs[s["ShardId"]] = seqs
for k, v in sent.items():
    if got.get(k) != v:
        fail("key %s: read %d records, put %d, or in another order" % (k, len(got.get(k, [])), len(v)))
if sum(len(v) for v in got.values()) != total:
    fail("read %d records, put %d" % (sum(len(v) for v in got.values()), total))
if not all(first_seqs.values()):
    fail("a shard got no record: %r" % {k: len(v) for k, v in first_seqs.items()})

# AFTER_SEQUENCE_NUMBER: starts right after the 10th record of shard 0;
# AT_SEQUENCE_NUMBER at it.
s0 = shards[0]["ShardId"]
seqs = first_seqs[s0]
for typ, want in (("AFTER_SEQUENCE_NUMBER", seqs[10]), ("AT_SEQUENCE_NUMBER", seqs[9])):
    it = kin.get_shard_iterator(StreamName=stream, ShardId=s0, ShardIteratorType=typ,
                                StartingSequenceNumber=seqs[9])["ShardIterator"]
    r = kin.get_records(ShardIterator=it, Limit=1)
    if [x["SequenceNumber"] for x in r["Records"]] != [want]:
        fail("%s: got %r, expected %s" % (typ, [x["SequenceNumber"] for x in r["Records"]], want))

# LATEST sees only what comes after it.
it = kin.get_shard_iterator(StreamName=stream, ShardId=key_shard["single"],
                            ShardIteratorType="LATEST")["ShardIterator"]
kin.put_record(StreamName=stream, PartitionKey="single", Data=b"after-latest")
r = kin.get_records(ShardIterator=it)
if [x["Data"] for x in r["Records"]] != [b"after-latest"]:
    fail("LATEST: %r" % [x["Data"] for x in r["Records"]])

# A tampered iterator is refused, not served.
bad = it[:-4] + ("AAAA" if not it.endswith("AAAA") else "BBBB")
expect_error("InvalidArgumentException", kin.get_records, ShardIterator=bad)
expect_error("ResourceNotFoundException", kin.put_record, StreamName=stream + "-absent",
             PartitionKey="k", Data=b"x")
expect_error("ResourceNotFoundException", kin.get_shard_iterator, StreamName=stream,
             ShardId="shardId-000000000009", ShardIteratorType="TRIM_HORIZON")

# delete-stream; the waiter polls until it is gone.
kin.delete_stream(StreamName=stream)
kin.get_waiter("stream_not_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
expect_error("ResourceNotFoundException", kin.describe_stream_summary, StreamName=stream)
print("boto3 %s: create, %d records by put-record(s) over %d keys, list-shards paged, "
      "get-records drained in order per key, AFTER/AT_SEQUENCE_NUMBER, LATEST, error types, delete OK"
      % (boto3.__version__, total, len(sent)))
