"""The benchmarks of docs/benchmarks.md, all in one run (`make bench`).

Everything on this machine, traffic on 127.0.0.1 only; the recorder under
test is pinned to CPU 0, the load generator to CPU 1. Every call is a
real-time 20 ms PCMA stream, the calls' starts spread evenly, 500 a second.

1. Capacity: `twistd -n recsvc` recording N concurrent calls from
   `recsvc-phone --calls N`; every recording checked byte for byte; the
   kernel's UDP receive-buffer drops counted. CPU and RSS are read from
   /proc over a steady window while all N calls are recording.
2. The ceiling: bench/bare_loop.py (receive and append, nothing else) fed
   the same traffic by bench/rtp_blast.py, measured over the same window.
3. What people use instead: one `ffmpeg -i rtp://` per call (Debian's
   ffmpeg), CPU and memory summed over the processes.
4. Start latency with 500 phones starting within a second, and stop latency
   (including the fsync), as the phones measure them: the N=500 capacity run.
5. Memory per active recording: the slope of RSS over N.

Writes docs/benchmarks.json, the results section of docs/benchmarks.md and
docs/capacity.png (matplotlib, from the `bench` extra).

    python bench/capacity.py                       # the full run, as make bench
    python bench/capacity.py --calls 250 --no-ffmpeg --no-docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from recsvc.phonesim.simulator import call_audio, percentile
from recsvc.storage.wav import NotAWav, read_audio

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PYTHON = sys.executable
DOCS = os.path.join(CHECKOUT, "docs")
PACKETS_PER_SECOND = 50  # 20 ms packets
# Phones start spread evenly, as real ones do, at most this many a second
# (the "500 phones starting within a second" of the latency target).
STARTS_PER_SECOND = 500
SETTLE = 2.0  # seconds after the last file was created before the window opens
MIN_WINDOW = 8.0  # seconds of all calls recording together, at least
CONTROL_PORT = 10900
BARE_BASE, FFMPEG_BASE = 40000, 50000
MARK_BEGIN, MARK_END = "<!-- results:begin -->", "<!-- results:end -->"


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # ended (and reaped)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def memory_kb(pid: int, field: str) -> int:
    """VmRSS (from status) or Pss (from smaps_rollup) of a process, in KB
    (0 once it has ended)."""
    name = "status" if field == "VmRSS" else "smaps_rollup"
    try:
        with open(f"/proc/{pid}/{name}") as handle:
            match = re.search(rf"^{field}:\s+(\d+)", handle.read(), re.M)
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def udp_receive_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer."""
    with open("/proc/net/snmp") as handle:
        rows = [line.split() for line in handle if line.startswith("Udp:")]
    return int(dict(zip(rows[0][1:], rows[1][1:]))["RcvbufErrors"])


class Lines:
    """A child's stdout, line by line, read in a thread."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> float:
        """Wait until a line containing ``text``; the time it came."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no {text!r} within {timeout} s") from None
            if line is None:
                raise RuntimeError(f"the process ended before {text!r}: {self.lines[-5:]}")
            self.lines.append(line)
            if text in line:
                return time.monotonic()

    def rest(self) -> list[str]:
        while (line := self._queue.get()) is not None:
            self.lines.append(line)
        return self.lines


def measure(pids: list[int], begin: float, length: float) -> dict[str, float]:
    """CPU seconds used by ``pids`` over [begin, begin + length] and their
    largest summed RSS and PSS (KB) within it, sampled every half second."""
    time.sleep(max(0.0, begin - time.monotonic()))
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    started = time.monotonic()
    rss = pss = 0
    while True:
        rss = max(rss, sum(memory_kb(pid, "VmRSS") for pid in pids))
        pss = max(pss, sum(memory_kb(pid, "Pss") for pid in pids))
        left = started + length - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(0.5, left))
    wall = time.monotonic() - started
    return {"cpu": sum(cpu_seconds(pid) for pid in pids) - cpu_before, "wall": wall,
            "rss_kb": rss, "pss_kb": pss}


def pinned(cpu: int, *command: str) -> list[str]:
    return ["taskset", "-c", str(cpu), *command]


def wait_listening(port: int, timeout: float = 20.0,
                   process: subprocess.Popen | None = None) -> None:
    """Until something accepts connections on 127.0.0.1:port (an error if
    ``process`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited ({process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def latency(report: list[str], kind: str) -> tuple[float | None, float | None]:
    for line in report:
        match = re.match(rf"{kind} latency p50 ([\d.]+) ms, p99 ([\d.]+) ms", line)
        if match:
            return float(match.group(1)), float(match.group(2))
    return None, None


def log_text(work: str) -> str:
    """twistd.log and its rotations, oldest first."""
    names = sorted((name for name in os.listdir(work) if name.startswith("twistd.log")),
                   key=lambda name: -int(name.rpartition(".")[2]) if name[-1].isdigit() else 0)
    text = ""
    for name in names:
        with open(os.path.join(work, name), encoding="utf-8", errors="replace") as handle:
            text += handle.read()
    return text


def wait_files_created(work: str, calls: int, timeout: float = 60.0) -> float:
    """When recsvc has logged the creation of every call's file (a Start is
    answered first, its file created behind it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_text(work).count(" records to ") >= calls:
            return time.monotonic()
        time.sleep(0.5)
    raise RuntimeError(f"recsvc did not create {calls} files within {timeout:g} s")


def server_start_ms(work: str) -> tuple[float | None, float | None]:
    """p50 and p99 of the Start times recsvc logs (from a Start's arrival
    to its answer), from twistd.log and its rotations."""
    times = [float(m.group(1)) for m in re.finditer(r" started from .* in ([\d.]+) ms", log_text(work))]
    return percentile(times, 0.5), percentile(times, 0.99)


def server_stop_ms(work: str) -> tuple[float | None, float | None]:
    """p50 and p99 of the stop times recsvc logs (from a stop to its files
    finished, when a Stop is answered), from twistd.log and its rotations."""
    times = [float(m.group(1)) for m in re.finditer(r" finished in .* ([\d.]+) ms after its stop",
                                                      log_text(work))]
    return percentile(times, 0.5), percentile(times, 0.99)


def figures(calls: int, window: dict[str, float]) -> dict[str, float]:
    packets = calls * PACKETS_PER_SECOND * window["wall"]
    return {
        "cpu_share": round(window["cpu"] / window["wall"], 3),
        "cpu_us_per_packet": round(1e6 * window["cpu"] / packets, 2),
    }


def run_recsvc(calls: int, duration: float, read_interval_ms: int) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="recsvc-bench-")
    server = phones = None
    try:
        with open(os.path.join(work, "recsvc.yaml"), "w") as handle:
            handle.write(
                f'control:\n  listen: "tcp:{CONTROL_PORT}:interface=127.0.0.1"\n'
                "rtp:\n  interface: 127.0.0.1\n  port_range: [30000, 39999]\n"
                f"  read_interval_ms: {read_interval_ms}\n"
                "storage:\n  root: recordings\n  min_free_mb: 1\n"
            )
        server = subprocess.Popen(
            pinned(0, os.path.join(BIN, "twistd"), "-n", "--pidfile=", "--logfile=twistd.log",
                   "recsvc", "--config", "recsvc.yaml"),
            cwd=work,
        )
        wait_listening(CONTROL_PORT)
        time.sleep(1.0)
        idle_rss = memory_kb(server.pid, "VmRSS")
        drops_before = udp_receive_errors()
        phones = subprocess.Popen(
            pinned(1, os.path.join(BIN, "recsvc-phone"), "127.0.0.1", str(CONTROL_PORT),
                   "--calls", str(calls), "--duration", str(duration),
                   "--spread", f"{max(1.0, calls / STARTS_PER_SECOND):g}",
                   "--storage-root", os.path.join(work, "recordings")),
            stdout=subprocess.PIPE, text=True,
        )
        output = Lines(phones)
        first_started = output.wait_for("first start answered", 120)
        all_started = output.wait_for("all starts answered", 120)
        all_created = wait_files_created(work, calls)
        # While every call records, in its file: from the last file's
        # creation (and a settling moment) to just before the first call ends.
        begin, end = all_created + SETTLE, first_started + duration - 1
        concurrent = end - begin >= MIN_WINDOW
        window = measure([server.pid], begin, max(end - begin, 1.0))
        report = output.rest()
        phones.wait()
        drops = udp_receive_errors() - drops_before
        server.terminate()
        server.wait(60)
        server_start = server_start_ms(work)
        server_stop = server_stop_ms(work)
        exact = re.search(r"verified: (\d+) byte-exact, (\d+) not", "\n".join(report))
        late = re.search(r"latest packet went ([\d.]+) ms late", "\n".join(report))
        byte_exact, not_exact = (int(exact.group(1)), int(exact.group(2))) if exact else (0, calls)
        start, stop = latency(report, "start"), latency(report, "stop")
        return {
            "calls": calls,
            "byte_exact": byte_exact,
            "not_exact": not_exact,
            "receive_buffer_drops": drops,
            "zero_loss": byte_exact == calls and drops == 0,
            **figures(calls, window),
            "idle_rss_mb": round(idle_rss / 1024, 1),
            "rss_mb": round(window["rss_kb"] / 1024, 1),
            "rss_kb_per_call": round((window["rss_kb"] - idle_rss) / calls, 1),
            "start_ms_p50": start[0], "start_ms_p99": start[1],
            "server_start_ms_p50": server_start[0], "server_start_ms_p99": server_start[1],
            "stop_ms_p50": stop[0], "stop_ms_p99": stop[1],
            "server_stop_ms_p50": server_stop[0], "server_stop_ms_p99": server_stop[1],
            "pacing_late_ms": float(late.group(1)) if late else None,
            "window_s": round(window["wall"], 1),
            # The phones could not start all calls in time for them to
            # record together long enough: the figures above are not a
            # measure of N concurrent calls (the load generator's limit).
            "generator_limited": not concurrent,
            "starts_took_s": round(all_started - first_started, 1),
            "files_took_s": round(all_created - first_started, 1),
            "report": report,
        }
    finally:
        for process in (phones, server):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(60)
        shutil.rmtree(work, ignore_errors=True)


def blast(calls: int, duration: float, base: int, step: int = 1) -> tuple[subprocess.Popen, Lines]:
    sender = subprocess.Popen(
        pinned(1, PYTHON, os.path.join(CHECKOUT, "bench", "rtp_blast.py"), "--calls", str(calls),
               "--base", str(base), "--port-step", str(step), "--seconds", str(duration)),
        stdout=subprocess.PIPE, text=True,
    )
    return sender, Lines(sender)


def run_bare(calls: int, duration: float, tick_ms: int) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="recsvc-bare-")
    try:
        loop = subprocess.Popen(
            pinned(0, PYTHON, os.path.join(CHECKOUT, "bench", "bare_loop.py"), "--sockets",
                   str(calls), "--base", str(BARE_BASE), "--seconds", str(duration + 15),
                   "--tick-ms", str(tick_ms), "--dir", work),
            stdout=subprocess.PIPE, text=True,
        )
        Lines(loop).wait_for("ready", 60)
        sender, output = blast(calls, duration, BARE_BASE)
        sending = output.wait_for("sending", 60)
        window = measure([loop.pid], sending + 1.0 + SETTLE, duration - 2 * SETTLE - 1)
        output.rest()
        sender.wait()
        loop.terminate()
        loop.wait(30)
        return {"calls": calls, **figures(calls, window)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_ffmpeg(calls: int, duration: float) -> dict[str, Any]:
    """One ffmpeg per call recording RTP to WAV; its CPU and memory summed.
    (ffmpeg uses port+1 for RTCP: the calls' ports are two apart.)"""
    work = tempfile.mkdtemp(prefix="recsvc-ffmpeg-")
    processes: list[subprocess.Popen] = []
    try:
        for index in range(calls):
            processes.append(subprocess.Popen(
                pinned(0, "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                       "-i", f"rtp://127.0.0.1:{FFMPEG_BASE + 2 * index}",
                       "-c:a", "copy", "-f", "wav", "-y", os.path.join(work, f"{index}.wav")),
                stdin=subprocess.DEVNULL,
            ))
        wait_udp_bound([FFMPEG_BASE + 2 * index for index in range(calls)])
        sender, output = blast(calls, duration, FFMPEG_BASE, step=2)
        sending = output.wait_for("sending", 60)
        pids = [process.pid for process in processes]
        window = measure(pids, sending + 1.0 + SETTLE, duration - 2 * SETTLE - 1)
        ended_early = sum(process.poll() is not None for process in processes)
        output.rest()
        sender.wait()
        time.sleep(1)
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait(60)
        identical = ffmpeg_identical(work, calls, duration)
        return {
            "calls": calls, **figures(calls, window),
            "rss_mb": round(window["rss_kb"] / 1024, 1),
            "pss_mb": round(window["pss_kb"] / 1024, 1),
            "pss_kb_per_call": round(window["pss_kb"] / calls, 1),
            "identical_after_first_packet": identical,
            "ended_early": ended_early,
        }
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)


def wait_udp_bound(ports: list[int], timeout: float = 60.0) -> None:
    """Until every port is bound (read from /proc/net/udp)."""
    wanted = set(ports)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/udp") as handle:
            bound = {int(line.split()[1].split(":")[1], 16) for line in handle.readlines()[1:]}
        if wanted <= bound:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{len(wanted - bound)} ffmpeg processes never listened")


def ffmpeg_identical(work: str, calls: int, duration: float) -> int:
    """How many of ffmpeg's files hold what their call sent, but for the
    first packet (which ffmpeg's RTP input drops)."""
    audio = call_audio(calls, duration)
    count = 0
    for index in range(calls):
        try:
            _, data = read_audio(os.path.join(work, f"{index}.wav"))
        except (OSError, NotAWav):
            continue
        count += data == audio(index)[160:]
    return count


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summaries(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per N from its runs (recsvc and the bare loop taken in
    turns): losses summed, the worst p99s, medians of the rest; the ratio
    is the median of each recsvc run's CPU per packet over the bare loop's
    run right after it (the machine's speed drifts between runs)."""
    by_calls: dict[int, list[dict[str, Any]]] = {}
    for run in results["recsvc"]:
        by_calls.setdefault(run["calls"], []).append(run)
    bare_by_calls: dict[int, list[dict[str, Any]]] = {}
    for run in results["bare"]:
        bare_by_calls.setdefault(run["calls"], []).append(run)
    lines = []
    for calls, runs in by_calls.items():
        line: dict[str, Any] = {
            "calls": calls, "runs": len(runs),
            "byte_exact": min(run["byte_exact"] for run in runs),
            "receive_buffer_drops": sum(run["receive_buffer_drops"] for run in runs),
            "zero_loss": all(run["zero_loss"] for run in runs),
            "generator_limited": any(run.get("generator_limited") for run in runs),
            "starts_took_s": max(run["starts_took_s"] for run in runs),
            "files_took_s": max((run.get("files_took_s", 0) for run in runs), default=0),
        }
        for key in ("cpu_share", "cpu_us_per_packet", "rss_mb", "rss_kb_per_call",
                    "start_ms_p50", "server_start_ms_p50", "stop_ms_p50", "server_stop_ms_p50",
                    "pacing_late_ms"):
            values = [run[key] for run in runs if run.get(key) is not None]
            line[key] = round(median(values), 3) if values else None
        for key in ("start_ms_p99", "server_start_ms_p99", "stop_ms_p99", "server_stop_ms_p99"):
            values = [run[key] for run in runs if run.get(key) is not None]
            line[key] = max(values) if values else None
        ceilings = bare_by_calls.get(calls, [])
        if ceilings:
            line["bare_us_per_packet"] = round(median([c["cpu_us_per_packet"] for c in ceilings]), 2)
            line["bare_cpu_share"] = round(median([c["cpu_share"] for c in ceilings]), 3)
            ratios = [run["cpu_us_per_packet"] / ceiling["cpu_us_per_packet"]
                      for run, ceiling in zip(runs, ceilings)]
            line["ratios"] = [round(ratio, 2) for ratio in ratios]
            line["ratio"] = round(median(ratios), 2)
        lines.append(line)
    return lines


# Beyond this share of a core recsvc falls behind: the audio it has not yet
# handed over piles up in memory, which is backlog, not a recording's cost.
KEEPS_UP = 0.8


def memory_slope(runs: list[dict[str, Any]]) -> float | None:
    """KB of RSS per active recording: the least-squares slope over N, over
    the runs where recsvc kept up."""
    points = [(run["calls"], run["rss_mb"] * 1024) for run in runs
              if not run.get("generator_limited") and run["cpu_share"] < KEEPS_UP]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return round(sum((x - mean_x) * (y - mean_y) for x, y in points) / spread, 1)


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| calls | runs | zero loss | byte-exact (each run) | kernel drops | recsvc CPU (of one core) "
        "| CPU per packet | bare loop, per packet | ratio (each pair) | RSS | RSS per call "
        "| start p50 / p99 (phones) | start p50 / p99 (in recsvc) | stop p50 / p99 (phones) "
        "| stop p50 / p99 (in recsvc) | phones' pacing, latest packet |",
        "| ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: |",
    ]
    for run in summaries(results):
        if run.get("generator_limited"):
            lines.append(
                f"| {run['calls']} | {run['runs']} | {'yes' if run['zero_loss'] else '**no**'} "
                f"| {run['byte_exact']} / {run['calls']} | {run['receive_buffer_drops']} "
                f"| not measured: with starts taking {run['starts_took_s']} s and files "
                f"{run.get('files_took_s', '-')} s, the calls did not record together, "
                f"in their files, for {MIN_WINDOW:g} s | | | | | | | | | | |"
            )
            continue
        ratio = (f"**{run['ratio']:.2f}x** ({', '.join(f'{r:.2f}' for r in run['ratios'])})"
                 if "ratio" in run else "-")
        bare_cost = f"{run['bare_us_per_packet']:.2f} µs" if "bare_us_per_packet" in run else "-"
        lines.append(
            f"| {run['calls']} | {run['runs']} | {'yes' if run['zero_loss'] else '**no**'} "
            f"| {run['byte_exact']} / {run['calls']} | {run['receive_buffer_drops']} "
            f"| {percent(run['cpu_share'])} | {run['cpu_us_per_packet']:.2f} µs "
            f"| {bare_cost} | {ratio} "
            f"| {run['rss_mb']} MB | {run['rss_kb_per_call']} KB "
            f"| {run['start_ms_p50']} / {run['start_ms_p99']} ms "
            f"| {run['server_start_ms_p50']} / {run['server_start_ms_p99']} ms "
            f"| {run['stop_ms_p50']} / {run['stop_ms_p99']} ms "
            f"| {run.get('server_stop_ms_p50', '-')} / {run.get('server_stop_ms_p99', '-')} ms "
            f"| {run.get('pacing_late_ms', '-')} ms late |"
        )
    out = "\n".join(lines)
    if results["ffmpeg"]:
        by_calls = {run["calls"]: run for run in summaries(results)}
        out += (
            "\n\nOne ffmpeg per call (`ffmpeg -i rtp://127.0.0.1:PORT -c:a copy -f wav FILE`), "
            "the same traffic:\n\n"
            "| calls | ffmpeg CPU (of one core, summed) | CPU per packet | PSS summed | PSS per call "
            "| files identical after the first packet | recsvc CPU | recsvc RSS |\n"
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        )
        for run in results["ffmpeg"]:
            ours = by_calls.get(run["calls"])
            our_rss = f"{ours['rss_mb']} MB" if ours else "-"
            out += (
                f"| {run['calls']} | {percent(run['cpu_share'])} | {run['cpu_us_per_packet']:.2f} µs "
                f"| {run['pss_mb']} MB | {run['pss_kb_per_call']} KB "
                f"| {run['identical_after_first_packet']} / {run['calls']} "
                f"| {percent(ours['cpu_share']) if ours else '-'} "
                f"| {our_rss} |\n"
            )
    for failed in results.get("failed_runs", []):
        out += (f"\nWith {failed['calls']} calls the load generator did not get every call "
                f"started ({failed['error']}): that is where one generator process ends.\n")
    slope = results.get("rss_kb_per_recording")
    if slope is not None:
        out += (f"\nMemory per active recording (slope of RSS over the runs above where recsvc "
                f"kept up, under {percent(KEEPS_UP)} of a core): **{slope} KB**.\n")
    return out


def plot(results: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    lines = [line for line in summaries(results) if not line.get("generator_limited")]
    series = (
        ("recsvc", [(line["calls"], line["cpu_share"]) for line in lines], "o-"),
        ("bare epoll loop (ceiling)",
         [(line["calls"], line["bare_cpu_share"]) for line in lines if "bare_cpu_share" in line], "s--"),
        ("one ffmpeg per call", [(run["calls"], run["cpu_share"]) for run in results["ffmpeg"]], "^:"),
    )
    for label, points, style in series:
        if points:
            axes.plot([x for x, _ in points], [100 * y for _, y in points], style, label=label)
    axes.plot([1000, 2000], [35, 60], "rx", markersize=9, label="targets (35 %, 60 %)")
    axes.set_xlabel("concurrent real-time calls (20 ms G.711)")
    axes.set_ylabel("CPU, % of one core")
    axes.set_title("Recording CPU against calls (2-core machine, load on the other core)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def write_docs(results: dict[str, Any], command: str) -> None:
    save_json(results)
    plot(results, os.path.join(DOCS, "capacity.png"))
    path = os.path.join(DOCS, "benchmarks.md")
    with open(path) as handle:
        text = handle.read()
    commands = "; then ".join(f"`{c}`" for c in results.get("commands", [command]))
    section = (
        f"{MARK_BEGIN}\n"
        f"Run {results['date']} at commit `{results['commit']}`: {commands}.\n\n"
        f"{table(results)}\n![CPU share against calls](capacity.png)\n{MARK_END}"
    )
    before, _, rest = text.partition(MARK_BEGIN)
    _, _, after = rest.partition(MARK_END)
    with open(path, "w") as handle:
        handle.write(before + section + after)


def save_json(results: dict[str, Any]) -> None:
    """docs/benchmarks.json: these results, and the entries other
    benchmarks keep there (bench/flood.py's "flood", bench/archive.py's
    "archive")."""
    path = os.path.join(DOCS, "benchmarks.json")
    try:
        with open(path) as handle:
            kept = {key: value for key, value in json.load(handle).items()
                    if key in ("flood", "archive")}
    except (OSError, ValueError):
        kept = {}
    with open(path, "w") as handle:
        json.dump({**results, **kept}, handle, indent=1)


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=CHECKOUT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="*", default=[100, 250, 500, 1000, 2000])
    parser.add_argument("--resume", metavar="JSON",
                        help="start from the results in this file (runs done there are not repeated)")
    parser.add_argument("--until-loss", type=int, default=0, metavar="STEP",
                        help="after the last N, go on in steps of STEP calls until loss appears")
    parser.add_argument("--max-calls", type=int, default=6000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--ffmpeg-calls", type=int, nargs="*", default=[100, 250])
    parser.add_argument("--no-bare", action="store_true")
    parser.add_argument("--pairs", type=int, default=3,
                        help="runs of recsvc at each N, each followed by one of the bare loop")
    parser.add_argument("--read-interval-ms", type=int, default=5, help="recsvc's rtp.read_interval_ms")
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "commit": commit(),
        "duration_s": args.duration, "recsvc": [], "bare": [], "ffmpeg": [],
    }
    if args.resume:
        with open(args.resume) as handle:
            results = json.load(handle)
        results["resumed"] = True
    done = {run["calls"] for run in results["recsvc"]}
    counts = [calls for calls in args.calls if calls not in done]
    while counts:
        calls = counts.pop(0)
        runs = []
        try:
            for _ in range(args.pairs):
                run = run_recsvc(calls, args.duration, args.read_interval_ms)
                results["recsvc"].append(run)
                runs.append(run)
                print(json.dumps({k: v for k, v in run.items() if k != "report"}), flush=True)
                if not args.no_docs:
                    save_json(results)  # so far, should a later run fail
                if not args.no_bare:
                    ceiling = run_bare(calls, args.duration, args.read_interval_ms)
                    results["bare"].append(ceiling)
                    print(json.dumps({"bare": ceiling}), flush=True)
        except RuntimeError as error:
            # The phones gave up (beyond what one load generator sends):
            # noted, and the search ends.
            results["failed_runs"] = results.get("failed_runs", []) + [
                {"calls": calls, "error": str(error)}
            ]
            print(json.dumps({"calls": calls, "failed": str(error)}), flush=True)
            break
        clean = all(run["zero_loss"] and not run["generator_limited"] for run in runs)
        if (not counts and args.until_loss and clean
                and calls + args.until_loss <= args.max_calls):
            counts.append(calls + args.until_loss)
    for calls in args.ffmpeg_calls:
        if any(run["calls"] == calls for run in results["ffmpeg"]):
            continue
        run = run_ffmpeg(calls, args.duration)
        results["ffmpeg"].append(run)
        print(json.dumps({"ffmpeg": run}), flush=True)
    results["rss_kb_per_recording"] = memory_slope(summaries(results))
    print(table(results))
    command = "python bench/capacity.py " + " ".join(sys.argv[1:])
    results.setdefault("commands", []).append(command)
    if not args.no_docs:
        write_docs(results, command)


if __name__ == "__main__":
    main()
