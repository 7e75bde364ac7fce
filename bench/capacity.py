"""Capacity benchmark: N concurrent real-time calls against `twistd -n recsvc`.

recsvc runs pinned to CPU 0, the simulated phones (recsvc-phone) pinned to
CPU 1. For each N it reports whether every recording is byte-exact, recsvc's
share of one core, its RSS, and CPU time per packet. Traffic stays on
127.0.0.1. Run with `make bench` (not part of `make test`).

    python bench/capacity.py --calls 250 500 --duration 20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        return int(re.search(r"VmRSS:\s+(\d+)", handle.read()).group(1))


def run(calls: int, duration: float, port: int) -> dict:
    work = tempfile.mkdtemp(prefix="recsvc-bench-")
    try:
        with open(os.path.join(work, "recsvc.yaml"), "w") as handle:
            handle.write(
                f'control:\n  listen: "tcp:{port}:interface=127.0.0.1"\n'
                "rtp:\n  interface: 127.0.0.1\n  port_range: [30000, 39999]\n"
                "storage:\n  root: recordings\n  min_free_mb: 1\n"
            )
        server = subprocess.Popen(
            ["taskset", "-c", "0", os.path.join(BIN, "twistd"), "-n", "--pidfile=",
             "--logfile=twistd.log", "recsvc", "--config", "recsvc.yaml"],
            cwd=work,
        )
        time.sleep(2)
        idle_rss = rss_kb(server.pid)
        cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
        phones = subprocess.Popen(
            ["taskset", "-c", "1", os.path.join(BIN, "recsvc-phone"), "127.0.0.1", str(port),
             "--calls", str(calls), "--duration", str(duration), "--spread", "1",
             "--storage-root", os.path.join(work, "recordings")],
            stdout=subprocess.PIPE, text=True,
        )
        peak_rss = idle_rss
        while phones.poll() is None:
            peak_rss = max(peak_rss, rss_kb(server.pid))
            time.sleep(0.5)
        report = phones.stdout.read()
        cpu = cpu_seconds(server.pid) - cpu_before
        wall = time.monotonic() - wall_before
        server.terminate()
        server.wait(30)
        packets = int(re.search(r"packets sent: (\d+)", report).group(1))
        exact = re.search(r"verified: (\d+) byte-exact, (\d+) not", report)
        return {
            "calls": calls,
            "byte_exact": int(exact.group(1)),
            "not_exact": int(exact.group(2)),
            "cpu_share": round(cpu / wall, 3),
            "cpu_us_per_packet": round(1e6 * cpu / max(packets, 1), 1),
            "peak_rss_mb": round(peak_rss / 1024, 1),
            "rss_kb_per_call": round((peak_rss - idle_rss) / calls, 1),
            "packets": packets,
            "report": report.strip().splitlines(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[100, 250])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=10900)
    args = parser.parse_args()
    for calls in args.calls:
        print(json.dumps(run(calls, args.duration, args.port)), flush=True)


if __name__ == "__main__":
    main()
