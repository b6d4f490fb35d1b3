#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""small_frames.py OUT.pcap [--packets N] [--flows F] [--size BYTES]

Writes a classic pcap of N small Ethernet/IPv4 frames (60 bytes by
default: the 64-byte wire minimum without FCS) spread over F UDP and TCP
flows, both directions of each, for bench/ingress_af_packet.sh to replay
with tcpreplay. Checksums are correct (the IPv4 header's; UDP 0, TCP
computed) so the frames are what a real wire would carry.
"""
import argparse
import struct


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(i, flows, size):
    f = i % flows
    back = (i // flows) % 2  # every other round the reverse direction
    a = bytes([10, 214, (f >> 8) & 0xFF, f & 0xFF])
    b = bytes([10, 215, (f >> 8) & 0xFF, f & 0xFF])
    sport, dport = 10000 + f % 50000, 5201 if f % 4 else 443
    proto = 6 if f % 3 == 0 else 17
    if back:
        a, b, sport, dport = b, a, dport, sport
    if proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 0, 0)
    else:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, i, 0, 5 << 4, 0x18, 65535, 0, 0)
    payload_len = max(0, size - 14 - 20 - len(l4))
    payload = struct.pack("!I", i)[:payload_len].ljust(payload_len, b"\xab")
    tot = 20 + len(l4) + payload_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, i & 0xFFFF, 0, 64, proto, 0, a, b)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    if proto == 17:
        l4 = l4[:4] + struct.pack("!H", 8 + payload_len) + l4[6:]
    else:
        pseudo = a + b + struct.pack("!BBH", 0, 6, len(l4) + payload_len)
        c = csum(pseudo + l4 + payload)
        l4 = l4[:16] + struct.pack("!H", c) + l4[18:]
    macs = bytes([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]) if not back else \
        bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1])
    return macs + b"\x08\x00" + ip + l4 + payload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--packets", type=int, default=100000)
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--size", type=int, default=60)
    o = ap.parse_args()
    with open(o.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(o.packets):
            fr = frame(i, o.flows, o.size)
            us = i  # 1 us apart (tcpreplay --pps/--topspeed sets the pace)
            f.write(struct.pack("<IIII", us // 1000000, us % 1000000, len(fr), len(fr)))
            f.write(fr)


if __name__ == "__main__":
    main()
