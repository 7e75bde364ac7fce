"""The ceiling: a bare Python epoll loop that only receives RTP and appends
it to files, over N UDP sockets (ports BASE .. BASE+N-1 on 127.0.0.1).

Every ``--tick-ms`` it reads all ready sockets (one datagram per ready
socket per poll, level-triggered, into one preallocated buffer), appends
each datagram's payload to its socket's bytearray, and once a second
appends those to one file per socket. No parsing, no checks: what a
recorder cannot do with less. Prints a JSON line: packets, bytes, CPU.

    python bench/bare_loop.py --sockets 1000 --base 40000 --seconds 30 --dir /tmp/bare
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, required=True)
    parser.add_argument("--base", type=int, default=40000)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--tick-ms", type=float, default=10.0)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    poller = select.epoll()
    sockets = {}
    for index in range(args.sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", args.base + index))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        poller.register(sock.fileno(), select.EPOLLIN)
        out = open(os.path.join(args.dir, f"{index}.raw"), "ab", buffering=0)
        sockets[sock.fileno()] = (sock.recvfrom_into, bytearray(), out)
    buffer = bytearray(2048)
    view = memoryview(buffer)
    tick = args.tick_ms / 1000
    packets = 0
    print(json.dumps({"ready": args.sockets}), flush=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    began = time.monotonic()
    end = began + args.seconds
    next_flush = began + 1.0
    poll = poller.poll
    while True:
        now = time.monotonic()
        if now >= end:
            break
        while True:
            ready = poll(0)
            if not ready:
                break
            for fd, _ in ready:
                receive, pending, _ = sockets[fd]
                size, _ = receive(buffer)
                pending += view[12:size]
                packets += 1
        if now >= next_flush:
            next_flush += 1.0
            for _, pending, out in sockets.values():
                if pending:
                    out.write(pending)
                    pending.clear()
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    for _, pending, out in sockets.values():
        out.write(pending)
        out.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    wall = time.monotonic() - began
    print(json.dumps({
        "sockets": args.sockets, "packets": packets, "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3), "cpu_share": round(cpu / wall, 3),
        "cpu_us_per_packet": round(1e6 * cpu / max(packets, 1), 2),
        "max_rss_kb": after.ru_maxrss,
    }), flush=True)


if __name__ == "__main__":
    main()
