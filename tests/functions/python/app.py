# SPDX-License-Identifier: MIT
# A Kinesis-triggered Lambda handler in Python, and the misbehaving ones of
# tests/functions.sh's failure cases, chosen by $MODE:
#   ok      report records whose data starts with "bad" in batchItemFailures
#   crash   a record "crash..." kills the process (SIGSEGV)
#   slow    a record "slow..." sleeps past the function's timeout
#   init    the module fails at import (an init error)
#   hog     a record "hog..." allocates far past memory_limit
# Every record handled is appended to $OUT as "<key> <sequence> <data>".
import base64
import os
import signal
import time

MODE = os.environ.get("MODE", "ok")
if MODE == "init":
    raise RuntimeError("cannot reach the database (init)")


def handler(event, context):
    failures = []
    with open(os.environ["OUT"], "a") as out:
        for r in event["Records"]:
            k = r["kinesis"]
            data = base64.b64decode(k["data"]).decode()
            if MODE == "crash" and data.startswith("crash"):
                os.kill(os.getpid(), signal.SIGSEGV)
            if MODE == "slow" and data.startswith("slow"):
                time.sleep(30)
            if MODE == "hog" and data.startswith("hog"):
                hog = bytearray(1 << 30)
                hog[::4096] = b"x" * len(hog[::4096])
            if data.startswith("bad"):
                failures.append({"itemIdentifier": k["sequenceNumber"]})
                continue
            out.write(f'{k["partitionKey"]} {k["sequenceNumber"]} {data}\n')
            out.flush()
    return {"batchItemFailures": failures}
