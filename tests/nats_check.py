#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""nats_check.py - the verdict of tests/nats_bridge.sh.

Inputs:
  --acks FILES      soak_producer ack files: "<key>,<seq> <shard> <shard-seq>"
                    (records bus A acknowledged)
  --stream FILE     `spate tail` of B's stream: every record of it, each
                    shard in order; payloads are keyed envelopes with an
                    origin (spate/kinesis.h, type 0xF2), shown with \\xNN
                    escapes
  --consumer FILES  B's consumer output (the file plugin, format raw: a
                    4-byte little-endian length, then the payload)

Verdict, one line: "OK ..." or "FAIL ...": in B's stream every acked record
exactly once and per-key in order (no duplicate at all); in the consumer's
output every acked record at least once, first sightings per-key in order.
"""
import argparse
import re
import struct
import sys

REC = re.compile(rb"^[A-Za-z0-9_-]+\.[0-9]+\.[0-9]+,[0-9]+$")


def unescape(text):
    out = bytearray()
    i = 0
    b = text.encode("latin-1")
    while i < len(b):
        if b[i:i + 2] == b"\\x" and i + 4 <= len(b):
            out.append(int(b[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(b[i])
            i += 1
    return bytes(out)


KEYS = {}


def envelope_data(p):
    """The data of a keyed envelope with an origin (or None). Its partition
    key (which the import takes from the export's Spate-Record header, or
    the payload's envelope) is remembered in KEYS against the record's own
    key (the "<key>" of its "<key>,<seq>" data): see key_errors()."""
    if len(p) < 2:
        return None
    kl = p[0] | p[1] << 8
    if kl == 0 or 2 + kl + 12 > len(p):
        return None
    d = p[2 + kl + 12:]
    if REC.match(d):
        KEYS.setdefault(d.rsplit(b",", 1)[0], set()).add(p[2:2 + kl])
    return d


def key_errors():
    """B's keys must map one to one onto the producer's keys: one key at B
    per producer key (a type-0 record shows its key hash in hex), and no
    two producer keys sharing one (a key taken from the subject would)."""
    errs = ["%s has %d keys at B" % (k.decode(), len(v)) for k, v in KEYS.items() if len(v) > 1]
    owner = {}
    for k, v in KEYS.items():
        for b in v:
            if b in owner and owner[b] != k:
                errs.append("%s and %s share key %r at B" % (owner[b].decode(), k.decode(), b))
            owner[b] = k
    return errs


def judge(name, records, acked, exact):
    seen = {}
    last = {}
    dup = misorder = 0
    examples = []
    for r in records:
        if not REC.match(r):
            continue
        r = r.decode()
        if r in seen:
            dup += 1
            if len(examples) < 3:
                examples.append("dup " + r)
            continue
        seen[r] = 1
        k, s = r.rsplit(",", 1)
        s = int(s)
        if k in last and s <= last[k]:
            misorder += 1
            if len(examples) < 3:
                examples.append("misorder %s after %d" % (r, last[k]))
        last[k] = s
    missing = [a for a in acked if a not in seen]
    ok = not missing and not misorder and (not exact or not dup) and acked
    line = "%s: acked %d found %d missing %d dup %d misorder %d records %d" % (
        name, len(acked), len(acked) - len(missing), len(missing), dup, misorder, len(records))
    if missing:
        examples.append("missing e.g. " + " ".join(missing[:3]))
    if examples:
        line += " | " + "; ".join(examples)
    return ok, line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--acks", nargs="+", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--consumer", nargs="*", default=[])
    a = ap.parse_args()
    acked = []
    for f in a.acks:
        with open(f) as fh:
            for line in fh:
                if line.endswith("\n") and line.strip():
                    acked.append(line.split()[0])
    stream = []
    with open(a.stream, encoding="latin-1") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(" ", 4)
            if len(parts) < 5:
                continue
            d = envelope_data(unescape(parts[4]))
            if d is not None:
                stream.append(d)
    cons = []
    for f in a.consumer:
        with open(f, "rb") as fh:
            b = fh.read()
        i = 0
        while i + 4 <= len(b):
            (n,) = struct.unpack_from("<I", b, i)
            if i + 4 + n > len(b):
                break  # a torn last record (a SIGKILL mid-write)
            d = envelope_data(b[i + 4:i + 4 + n])
            if d is not None:
                cons.append(d)
            i += 4 + n
    ok1, l1 = judge("B stream (exactly once)", stream, acked, True)
    ok2, l2 = judge("B consumer (at least once)", cons, acked, False)
    ke = key_errors()
    l3 = "keys: %d at B for %d, %d wrong%s" % (
        sum(len(v) for v in KEYS.values()), len(KEYS), len(ke), (" e.g. " + ke[0]) if ke else "")
    print(("OK " if ok1 and ok2 and not ke else "FAIL ") + l1 + " || " + l2 + " || " + l3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
