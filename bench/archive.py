"""The archive row of `make bench`: recsvc recording about N concurrent
calls, sustained, with and without `archive:` (moto's S3 server), and
whether the uploads keep up with the recordings finishing.

recsvc is pinned to CPU 0; the phones and moto to CPU 1. The calls are
sustained: a new `recsvc-phone` process every --every seconds, each with
N * every / duration calls of --duration seconds whose starts are spread
over those seconds, so that about N calls record at any moment and some
finish every second (each process's phones have MAC addresses of their
own). Once the first calls end (a duration after the first start), the
window opens: recsvc's CPU share over it, and /healthz's archive figures
(files and bytes waiting, the oldest's age) every few seconds, their
least-squares slope the backlog's trend. Then no new calls start, every
phone verifies its recordings byte for byte (the local copies are kept:
archive.keep_local_days 30), the backlog drains, and every finished
recording's WAV and sidecar are checked in the bucket: there once, nothing
else, size and SHA-256 of the bytes served (and the store's checksum)
equal to the local file's.

moto keeps every object in memory: its RSS is reported (about 8 KB a
second of call, 2.4 GB for 5 minutes of 1,000 calls).

    python bench/archive.py --calls 1000 --window 300 --write-docs   # as make bench
    python bench/archive.py --calls 200 --window 60 --duration 30 --every 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from archive_faults import (  # noqa: E402
    PREFIX, Moto, Recsvc, finished_recordings, hash_file, list_bucket, stored_object)
from capacity import commit, cpu_seconds, memory_kb  # noqa: E402

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
DOCS = os.path.join(CHECKOUT, "docs")
MARK_BEGIN, MARK_END = "<!-- archive:begin -->", "<!-- archive:end -->"
SAMPLE_EVERY = 5.0


class Fleet:
    """recsvc-phone processes started every ``every`` seconds (pinned to
    ``cpu``), each with its own MAC prefix; their outputs kept."""

    def __init__(self, port: int, root: str, calls: int, duration: float, every: float,
                 cpu: int) -> None:
        self.port, self.root, self.duration, self.every, self.cpu = port, root, duration, every, cpu
        self.per_process = max(1, round(calls * every / duration))
        self.processes: list[subprocess.Popen] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        began = time.monotonic()
        while not self._stop.is_set():
            number = len(self.processes)
            self.processes.append(subprocess.Popen(
                ["taskset", "-c", str(self.cpu), os.path.join(BIN, "recsvc-phone"), "127.0.0.1",
                 str(self.port), "--calls", str(self.per_process), "--duration",
                 str(self.duration), "--spread", str(self.every),
                 "--device-prefix", f"00:a8:{number // 256:02x}:{number % 256:02x}",
                 "--storage-root", self.root],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            self._stop.wait(max(0.0, began + (number + 1) * self.every - time.monotonic()))

    def stop_starting(self) -> None:
        self._stop.set()
        self._thread.join()

    def wait(self) -> dict[str, Any]:
        outputs = [process.communicate()[0] for process in self.processes]
        calls = exact = not_exact = started = 0
        problems = []
        for output in outputs:
            calls += self.per_process
            match = re.search(r"starts: (\d+) succeeded", output)
            started += int(match.group(1)) if match else 0
            match = re.search(r"verified: (\d+) byte-exact, (\d+) not", output)
            if match:
                exact += int(match.group(1))
                not_exact += int(match.group(2))
            if not match or int(match.group(2)):
                problems.append(output[-600:])
        return {"phone_processes": len(outputs), "calls": calls, "started": started,
                "byte_exact": exact, "not_exact": not_exact, "problems": problems[:3]}


def files_verified(recsvc: Recsvc) -> float:
    """recsvc_archive_files_verified_total, from /metrics (0 without)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{recsvc.http_port}/metrics",
                                    timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return 0.0
    match = re.search(r"^recsvc_archive_files_verified_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def cpu_times(cpu: int) -> tuple[int, int]:
    """CPU ``cpu``'s busy and total ticks so far (/proc/stat)."""
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith(f"cpu{cpu} "):
                ticks = [int(field) for field in line.split()[1:]]
                idle = ticks[3] + ticks[4]  # idle, iowait
                return sum(ticks) - idle, sum(ticks)
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x (per second of x)."""
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else None


def check_archive(moto: Moto, bucket: str, root: str) -> dict[str, Any]:
    """Every finished recording's files in the bucket once, nothing else,
    each with the local file's size and SHA-256 (of the bytes served, and
    the store's; see archive_faults.stored_object)."""
    client = moto.client()
    recordings = finished_recordings(root)
    expected = set(recordings) | {wav for wav in recordings.values() if wav is not None}
    keys = [item["Key"] for item in list_bucket(client, bucket)]
    wanted = {PREFIX + relative for relative in expected}
    verified = 0
    for relative in expected:
        if PREFIX + relative not in keys:
            continue
        verified += (stored_object(client, bucket, PREFIX + relative)
                     == hash_file(os.path.join(root, relative)))
    return {"recordings": len(recordings), "objects_expected": len(wanted),
            "objects_found": len(keys), "missing": len(wanted - set(keys)),
            "other_keys": len(set(keys) - wanted), "verified": verified,
            "exactly_once": set(keys) == wanted and len(keys) == len(set(keys))
            and verified == len(wanted)}


def run(archive: bool, calls: int, duration: float, every: float, window: float) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="recsvc-bench-archive-")
    root = os.path.join(work, "recordings")
    moto = Moto(cpu=1) if archive else None
    bucket = "bench-" + os.urandom(6).hex()
    if moto is not None:
        moto.client().create_bucket(Bucket=bucket)
    recsvc = Recsvc(work, root, bucket, moto.url if moto else "", keep_local_days=30, cpu=0,
                    archive=archive, port_range=(30000, 39999))
    fleet = None
    try:
        recsvc.start()
        time.sleep(1.0)
        fleet = Fleet(recsvc.control_port, root, calls, duration, every, cpu=1)
        fleet.start()
        # Calls begin to end a duration after the first start: the window
        # opens then (and a few seconds more), with about N calls recording.
        opened = time.monotonic() + duration + 2 * every
        time.sleep(max(0.0, opened - time.monotonic()))
        cpu_before = cpu_seconds(recsvc.process.pid)
        verified_before = files_verified(recsvc)
        moto_before = cpu_seconds(moto.process.pid) if moto is not None else 0.0
        cpu1_before = cpu_times(1)
        samples: list[tuple[float, dict[str, Any]]] = []
        rss = moto_rss = 0
        began = time.monotonic()
        while True:
            now = time.monotonic()
            body = recsvc.healthz() or {}
            if body.get("archive") is not None:
                samples.append((now - began, body["archive"]))
            rss = max(rss, memory_kb(recsvc.process.pid, "VmRSS"))
            if moto is not None:
                moto_rss = max(moto_rss, memory_kb(moto.process.pid, "VmRSS"))
            if now - began >= window:
                break
            time.sleep(min(SAMPLE_EVERY, began + window - now))
        wall = time.monotonic() - began
        cpu = cpu_seconds(recsvc.process.pid) - cpu_before
        moto_cpu = cpu_seconds(moto.process.pid) - moto_before if moto is not None else 0.0
        cpu1_busy, cpu1_total = (now - before for now, before in zip(cpu_times(1), cpu1_before))
        verified_in_window = files_verified(recsvc) - verified_before
        active = len([line for line in recsvc.log().splitlines() if " records to " in line])
        fleet.stop_starting()
        phones = fleet.wait()
        result: dict[str, Any] = {
            "archive": archive, "calls": calls, "call_duration_s": duration,
            "window_s": round(wall, 1), "cpu_share": round(cpu / wall, 4),
            "recsvc_rss_mb": round(rss / 1024, 1), "files_created": active, **phones,
            "cpu1_busy_share": round(cpu1_busy / max(cpu1_total, 1), 4),
        }
        if archive:
            result["moto_cpu_share"] = round(moto_cpu / wall, 4)
            result["uploads_per_s_in_window"] = round(verified_in_window / wall, 1)
            waiting = (recsvc.healthz() or {}).get("archive", {}).get("files_waiting", 0)
            drain_began = time.monotonic()
            while (recsvc.healthz() or {}).get("archive", {}).get("files_waiting", 1):
                if time.monotonic() - drain_began > 600:
                    break
                time.sleep(1)
            files = [(t, s["files_waiting"]) for t, s in samples]
            data = [(t, s["bytes_waiting"]) for t, s in samples]
            result.update({
                "samples": [(round(t, 1), s["files_waiting"], s["bytes_waiting"],
                             s["oldest_waiting_s"]) for t, s in samples],
                "backlog_start": samples[0][1] if samples else None,
                "backlog_end": samples[-1][1] if samples else None,
                "backlog_max_files": max((f for _, f in files), default=None),
                "backlog_max_oldest_s": max((s["oldest_waiting_s"] for _, s in samples),
                                            default=None),
                "files_slope_per_min": round(60 * (slope(files) or 0), 2),
                "bytes_slope_per_min": round(60 * (slope(data) or 0)),
                "drain_after_window_s": round(time.monotonic() - drain_began, 1),
                "uploads_per_s_draining": round(
                    waiting / max(time.monotonic() - drain_began, 0.1), 1),
                "moto_rss_mb": round(max(moto_rss, memory_kb(moto.process.pid, "VmRSS")) / 1024),
            })
            recsvc.stop()
            result.update(check_archive(moto, bucket, root))
        return result
    finally:
        if fleet is not None:
            for process in fleet.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        recsvc.stop()
        if moto is not None:
            moto.stop()
        shutil.rmtree(work, ignore_errors=True)


def load() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def table(without: dict[str, Any], with_: dict[str, Any]) -> str:
    rise = (with_["cpu_share"] - without["cpu_share"]) / without["cpu_share"]
    start, end = with_.get("backlog_start") or {}, with_.get("backlog_end") or {}
    zero_loss = all(r["not_exact"] == 0 and r["byte_exact"] == r["calls"] for r in (without, with_))
    rows = [
        "| | without archive | with archive |",
        "| --- | ---: | ---: |",
        f"| recsvc CPU (of one core) | {100 * without['cpu_share']:.1f} % "
        f"| {100 * with_['cpu_share']:.1f} % |",
        f"| rise, of the figure without | | **{100 * rise:+.1f} %** (target: under +10 %) |",
        f"| recsvc RSS | {without['recsvc_rss_mb']} MB | {with_['recsvc_rss_mb']} MB |",
        f"| calls (phone processes) | {without['calls']} ({without['phone_processes']}) "
        f"| {with_['calls']} ({with_['phone_processes']}) |",
        f"| byte-exact | {without['byte_exact']} / {without['calls']} "
        f"| {with_['byte_exact']} / {with_['calls']} |",
        f"| backlog at the window's start: files, bytes, oldest | "
        f"| {start.get('files_waiting')}, {start.get('bytes_waiting')}, "
        f"{start.get('oldest_waiting_s')} s |",
        f"| backlog at its end | | {end.get('files_waiting')}, {end.get('bytes_waiting')}, "
        f"{end.get('oldest_waiting_s')} s |",
        f"| backlog, most files / oldest seen | | {with_.get('backlog_max_files')} / "
        f"{with_.get('backlog_max_oldest_s')} s |",
        f"| backlog trend (least squares, every {SAMPLE_EVERY:g} s) | "
        f"| {with_.get('files_slope_per_min')} files/min, "
        f"{with_.get('bytes_slope_per_min')} bytes/min |",
        f"| files verified a second, in the window / draining after it | "
        f"| {with_.get('uploads_per_s_in_window')} / {with_.get('uploads_per_s_draining')} |",
        f"| drained after the window | | {with_.get('drain_after_window_s')} s |",
        f"| moto's CPU (on CPU 1 with the phones) | | {100 * with_.get('moto_cpu_share', 0):.1f} % |",
        f"| CPU 1 busy (the phones, and moto) | {100 * without.get('cpu1_busy_share', 0):.1f} % "
        f"| {100 * with_.get('cpu1_busy_share', 0):.1f} % |",
        f"| objects verified in the bucket (size + SHA-256 of a GET's bytes = the file's) | "
        f"| {with_.get('verified')} / {with_.get('objects_expected')} "
        f"({with_.get('objects_found')} found, {with_.get('missing')} missing, "
        f"{with_.get('other_keys')} other) |",
        f"| moto's RSS (on CPU 1, objects in memory) | | {with_.get('moto_rss_mb')} MB |",
        f"| zero loss, exactly once | | {'yes' if zero_loss and with_.get('exactly_once') else '**no**'} |",
    ]
    return "\n".join(rows)


def write_docs(results: dict[str, Any], text_table: str) -> None:
    path = os.path.join(DOCS, "benchmarks.md")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    section = (f"{MARK_BEGIN}\nRun {results['date']} at commit `{results['commit']}`: "
               f"`{results['command']}` (load average before: {results['load_before']}).\n\n"
               f"{text_table}\n{MARK_END}")
    if MARK_BEGIN in text:
        begin, end = text.index(MARK_BEGIN), text.index(MARK_END) + len(MARK_END)
        text = text[:begin] + section + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n## The archive at load\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    json_path = os.path.join(DOCS, "benchmarks.json")
    with open(json_path, encoding="utf-8") as handle:
        everything = json.load(handle)
    everything["archive"] = results
    with open(json_path, "w", encoding="utf-8") as handle:
        json.dump(everything, handle, indent=1)


def tables_again() -> None:
    """Write the section again from docs/benchmarks.json's last run (once
    `table` changes)."""
    with open(os.path.join(DOCS, "benchmarks.json"), encoding="utf-8") as handle:
        results = json.load(handle)["archive"]
    write_docs(results, table(results["without"], results["with"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="concurrent calls, about")
    parser.add_argument("--window", type=float, default=300.0, help="seconds measured")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds a call lasts")
    parser.add_argument("--every", type=float, default=6.0,
                        help="seconds between two recsvc-phone processes")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--tables-again", action="store_true",
                        help="no run: write the docs' section again from benchmarks.json")
    args = parser.parse_args()
    if args.tables_again:
        tables_again()
        return
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "commit": commit(),
        "command": "python bench/archive.py " + " ".join(sys.argv[1:]), "load_before": load()}
    for archive in (False, True):
        run_result = run(archive, args.calls, args.duration, args.every, args.window)
        results["with" if archive else "without"] = run_result
        print(json.dumps({k: v for k, v in run_result.items() if k != "samples"}), flush=True)
    results["load_after"] = load()
    text_table = table(results["without"], results["with"])
    print(text_table)
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    if args.write_docs:
        write_docs(results, text_table)


if __name__ == "__main__":
    main()
