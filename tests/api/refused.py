# SPDX-License-Identifier: MIT
"""Unsigned and wrongly signed requests are refused by spate's Kinesis front.

Each case is a real botocore request (Debian python3-botocore) or a plain
unsigned HTTP POST putting a record into the bus's YAML stream
"configured"; each must be answered with the AWS error type a client
branches on, and must change nothing: reading the stream from TRIM_HORIZON
afterwards finds only the one record a correctly signed request put.

Usage: refused.py ENDPOINT KEY_ID SECRET_FILE
"""
import base64
import datetime
import json
import sys
import urllib.error
import urllib.request

import boto3
import botocore.auth
import botocore.config
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

endpoint, key_id, secret_file = sys.argv[1:4]
with open(secret_file) as f:
    secret = f.read().strip()
cfg = botocore.config.Config(retries={"max_attempts": 1})


def fail(msg):
    print("refused: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def client(kid, sec, **kw):
    return boto3.client("kinesis", endpoint_url=endpoint, region_name=kw.pop("region", "us-east-1"),
                        aws_access_key_id=kid, aws_secret_access_key=sec, config=kw.pop("config", cfg), **kw)


def expect(code, msg_part, fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        if got != code or msg_part not in e.response["Error"].get("Message", ""):
            fail("expected %s (%r), got %s: %s" % (code, msg_part, got, e.response["Error"].get("Message")))
        return
    fail("expected %s, the call succeeded" % code)


def post(body, headers):
    req = urllib.request.Request(endpoint + "/", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


HDRS = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Kinesis_20131202.PutRecord"}
STREAM = "configured"


def put_body(data):
    return json.dumps({"StreamName": STREAM, "PartitionKey": "k",
                       "Data": base64.b64encode(data.encode()).decode()}).encode()


BODY = put_body("refused-unsigned")

# 1. No signature at all: a plain POST, and botocore with signing off.
status, ans = post(BODY, HDRS)
if status != 400 or ans.get("__type") != "MissingAuthenticationTokenException":
    fail("unsigned POST: %d %r" % (status, ans))
unsigned = client(key_id, secret, config=cfg.merge(botocore.config.Config(signature_version=botocore.UNSIGNED)))
expect("MissingAuthenticationTokenException", "Missing Authentication Token",
       unsigned.put_record, StreamName=STREAM, PartitionKey="k", Data=b"refused-nosign")

# 2. An Authorization header lacking its parts.
h = dict(HDRS, Authorization="AWS4-HMAC-SHA256 Credential=%s/20261204/us-east-1/kinesis/aws4_request" % key_id,
         **{"X-Amz-Date": "20261204T000000Z"})
status, ans = post(BODY, h)
if status != 400 or ans.get("__type") != "IncompleteSignatureException":
    fail("incomplete signature: %d %r" % (status, ans))

# 3. A key id spate does not know; the right id with the wrong secret.
expect("UnrecognizedClientException", "security token", client("AKIDNOTCONFIGURED", secret).put_record,
       StreamName=STREAM, PartitionKey="k", Data=b"refused-unknown")
expect("InvalidSignatureException", "does not match", client(key_id, secret + "x").put_record,
       StreamName=STREAM, PartitionKey="k", Data=b"refused-wrong")
# The scope of another region.
expect("InvalidSignatureException", "region", client(key_id, secret, region="eu-west-1").put_record,
       StreamName=STREAM, PartitionKey="k", Data=b"refused-region")

# 4. A body changed after signing.
creds = Credentials(key_id, secret)
req = AWSRequest(method="POST", url=endpoint + "/", data=BODY, headers=dict(HDRS))
botocore.auth.SigV4Auth(creds, "kinesis", "us-east-1").add_auth(req)
status, ans = post(put_body("refused-tampered"), dict(req.headers.items()))
if status != 400 or ans.get("__type") != "InvalidSignatureException":
    fail("tampered body: %d %r" % (status, ans))
# The same request untouched is accepted (the harness signs correctly).
req = AWSRequest(method="POST", url=endpoint + "/", data=put_body("accepted"), headers=dict(HDRS))
botocore.auth.SigV4Auth(creds, "kinesis", "us-east-1").add_auth(req)
status, ans = post(req.body, dict(req.headers.items()))
if status != 200:
    fail("a correctly signed hand-made request: %d %r" % (status, ans))

# 5. Signed correctly but 10 minutes ago, and 10 minutes ahead.
for minutes, words in ((-10, "Signature expired"), (10, "Signature not yet current")):
    class Clock(datetime.datetime):
        @classmethod
        def utcnow(cls, shift=minutes):
            return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=shift)
    real = botocore.auth.datetime.datetime
    botocore.auth.datetime.datetime = Clock
    try:
        req = AWSRequest(method="POST", url=endpoint + "/", data=BODY, headers=dict(HDRS))
        botocore.auth.SigV4Auth(creds, "kinesis", "us-east-1").add_auth(req)
    finally:
        botocore.auth.datetime.datetime = real
    status, ans = post(BODY, dict(req.headers.items()))
    if status != 400 or ans.get("__type") != "InvalidSignatureException" or words not in ans.get("message", ""):
        fail("%+d minutes: %d %r" % (minutes, status, ans))

# Nothing refused changed anything: the stream holds the accepted record only.
kin = client(key_id, secret)
it = kin.get_shard_iterator(StreamName=STREAM, ShardId="shardId-000000000000",
                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
got = []
for _ in range(20):
    r = kin.get_records(ShardIterator=it)
    got += [x["Data"] for x in r["Records"]]
    it = r["NextShardIterator"]
    if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
        break
if got != [b"accepted"]:
    fail("records in the stream after the refusals: %r" % got)
print("refused: unsigned (Missing), incomplete (Incomplete), unknown key (Unrecognized), wrong secret, "
      "wrong region, tampered body, 10 min old / ahead (InvalidSignature) refused; nothing but the "
      "signed record stored OK")
