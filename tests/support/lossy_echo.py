#!/usr/bin/env python3
"""An ICMP echo responder in user space, for links with loss and jitter
(no tc netem on these kernels): run it in an ISP namespace with
net.ipv4.icmp_echo_ignore_all=1. Echo requests to ADDRESS are dropped with
probability LOSS and answered after a delay drawn uniformly from
[MIN_MS, MAX_MS], by a schedule seeded with SEED (repeatable). With
RAMP_MS and RAMP_SECS, a queue fills: an extra delay that grows from 0 to
RAMP_MS over RAMP_SECS after the start, and stays.

    lossy_echo.py ADDRESS LOSS MIN_MS MAX_MS SEED [RAMP_MS RAMP_SECS]
"""
import heapq, random, select, socket, struct, sys, time

addr, loss, lo, hi, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
ramp_ms, ramp_secs = (float(sys.argv[6]), float(sys.argv[7])) if len(sys.argv) > 7 else (0.0, 1.0)
start = time.monotonic()
rng = random.Random(seed)
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

due = []  # (time, seq, packet, destination)
n = 0
print("ready", flush=True)
while True:
    timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
    r, _, _ = select.select([rx], [], [], timeout)
    now = time.monotonic()
    while due and due[0][0] <= now:
        _, _, pkt, dst = heapq.heappop(due)
        tx.sendto(pkt, (dst, 0))
    if not r:
        continue
    data, (src, _) = rx.recvfrom(65535)
    ihl = (data[0] & 0x0F) * 4
    if socket.inet_ntoa(data[16:20]) != addr or data[ihl] != 8:
        continue
    if rng.random() < loss:
        continue
    icmp = bytearray(data[ihl:])
    icmp[0] = 0
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", csum(bytes(icmp)))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                     socket.inet_aton(addr), socket.inet_aton(src))
    n += 1
    queue = ramp_ms * min(1.0, (now - start) / ramp_secs)
    heapq.heappush(due, (now + (rng.uniform(lo, hi) + queue) / 1000.0, n, ip + bytes(icmp), src))
