"""A good phone's Start and Stop latency while the control port is abused.

`twistd -n recsvc` (pinned to CPU 0) records calls from one well-behaved
phone (this process), one call at a time, each on a new control
connection from 127.0.0.1: connect, Start, half a second of PCMA, Stop.
Meanwhile `python -m recsvc.phonesim.abuse` (pinned to CPU 1) hammers the same port
from 127.0.0.2.. with one kind of abuse, then with all of them at once;
a first phase has no abuse, for comparison. The "spray" phase is harsher
and measured by a stricter rule: three addresses open connections as fast
as the abuser can, 512 bytes of garbage on each, while the phone starts
and stops a call every 0.1 s (0.1 s of audio in real time), each call's
connect + Start + Stop within 50 ms. Every recording is checked byte for
byte. Prints the figures and, with ``--write-docs``, rewrites the
flood section of docs/benchmarks.md and the "flood" entry of
docs/benchmarks.json.

    python bench/flood.py --calls 200 --write-docs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from capacity import BIN, DOCS, PYTHON, Lines, commit, memory_kb, pinned, wait_listening

from recsvc.phonesim.abuse import KINDS
from recsvc.phonesim.phone import timed_call
from recsvc.phonesim.simulator import finished_recordings, percentile, tone
from recsvc.cli.status import fetch_status
from recsvc.storage.wav import read_audio

CONTROL_PORT, HTTP_PORT = 10910, 10911
TARGET_MS = 100.0  # each of connect + Start, and Stop
# The spray phase: the abuse's addresses, the phone's calls, and the target
# for a whole call's connect + Start + Stop.
SPRAY_SOURCES = 3
SPRAY_AUDIO_S = 0.1
SPRAY_TARGET_MS = 50.0
MARK_BEGIN, MARK_END = "<!-- flood:begin -->", "<!-- flood:end -->"
# Counters that show what the server did with the abuse.
SHOWN_METRICS = (
    "recsvc_connections_refused", "recsvc_connections_closed", "recsvc_starts_refused",
)


def metrics() -> dict[str, float]:
    """The counters of SHOWN_METRICS, by name{labels}, and the kernel's
    count of connections dropped for a full accept queue (all listeners)."""
    status = fetch_status(f"http://127.0.0.1:{HTTP_PORT}")
    figures = {
        name + "".join(f'{{{k}="{v}"}}' for k, v in labels): value
        for name in SHOWN_METRICS for labels, value in status.figures.get(name, {}).items()
    }
    figures["kernel: accept queue overflows"] = float(listen_overflows())
    return figures


def listen_overflows() -> int:
    with open("/proc/net/netstat") as handle:
        rows = [line.split() for line in handle if line.startswith("TcpExt:")]
    return int(dict(zip(rows[0][1:], rows[1][1:]))["ListenOverflows"])


def phase(name: str, kinds: list[str], calls: int, work: str, audio: bytes,
          server_pid: int, sources: int = 8, interval: float = 0.002,
          call_target_ms: float | None = None) -> dict[str, Any]:
    """``calls`` calls of ``audio`` (a packet each ``interval`` s) while
    ``kinds`` of abuse come from ``sources`` addresses. The target: connect
    + Start and Stop each within TARGET_MS, or with ``call_target_ms``, the
    three together within it."""
    abuser = lines = None
    if kinds:
        abuser = subprocess.Popen(
            pinned(1, PYTHON, "-m", "recsvc.phonesim.abuse", "--port", str(CONTROL_PORT),
                   "--seconds", "3600", "--sources", str(sources), "--kinds", *kinds),
            stdout=subprocess.PIPE, text=True)
        lines = Lines(abuser)
        lines.wait_for("abusing", 30)
        time.sleep(2.0)  # the abuse in full swing
    timings = []
    try:
        for number in range(calls):
            timings.append(timed_call("127.0.0.1", CONTROL_PORT, f"{name}-{number}", audio,
                                      interval=interval))
        rss_mb = memory_kb(server_pid, "VmRSS") / 1024
    finally:
        counts = None
        if abuser is not None:
            abuser.terminate()
            abuser.wait(30)
            counts = json.loads(lines.rest()[-1])
    failed = [t.recording_id for t in timings
              if (t.started.result, t.stopped.result) != ("success", "success")]
    found = finished_recordings(os.path.join(work, "recordings"))
    exact = sum(1 for t in timings if t.recording_id in found
                and read_audio(found[t.recording_id])[1] == audio)

    def figures(values: list[float]) -> dict[str, float]:
        return {"p50": round(percentile(values, 0.5), 1), "p99": round(percentile(values, 0.99), 1),
                "max": round(max(values), 1)}
    whole = [t.connect_ms + t.start_ms + t.stop_ms for t in timings]
    if call_target_ms is None:
        within = max(max(t.connect_ms + t.start_ms, t.stop_ms) for t in timings) <= TARGET_MS
    else:
        within = max(whole) <= call_target_ms
    slowest = max(range(len(timings)), key=lambda n: whole[n])
    return {
        "phase": name, "kinds": kinds, "sources": sources if kinds else 0, "calls": calls,
        "failed": failed, "byte_exact": exact,
        "connect_start_ms": figures([t.connect_ms + t.start_ms for t in timings]),
        "stop_ms": figures([t.stop_ms for t in timings]),
        "call_ms": figures(whole),
        "target": (f"connect + Start + Stop within {call_target_ms:g} ms" if call_target_ms
                   else f"connect + Start, and Stop, each within {TARGET_MS:g} ms"),
        "within_target": within,
        "slowest_call": {"number": slowest, **{
            key: round(getattr(timings[slowest], key), 1)
            for key in ("connect_ms", "start_ms", "stop_ms")}},
        "server_rss_mb": round(rss_mb, 1),
        "abuse": counts,
    }


def run(calls: int, only: list[str]) -> dict[str, Any]:
    work = tempfile.mkdtemp(prefix="recsvc-flood-")
    server = None
    try:
        with open(os.path.join(work, "recsvc.yaml"), "w") as handle:
            handle.write(
                f'control:\n  listen: "tcp:{CONTROL_PORT}:interface=127.0.0.1"\n'
                f'http:\n  listen: "tcp:{HTTP_PORT}:interface=127.0.0.1"\n'
                "rtp:\n  interface: 127.0.0.1\n  port_range: [31000, 31999]\n"
                "storage:\n  root: recordings\n  min_free_mb: 1\n"
                # One phone makes every call: not a start-rate abuser.
                "recordings:\n  max_starts_per_minute: 100000\n"
            )
        server = subprocess.Popen(
            pinned(0, os.path.join(BIN, "twistd"), "-n", "--pidfile=", "--logfile=twistd.log",
                   "recsvc", "--config", "recsvc.yaml"), cwd=work)
        wait_listening(CONTROL_PORT)
        audio = tone(0.5, noise=300)
        short = tone(SPRAY_AUDIO_S, noise=300)
        phases: list[tuple[str, list[str], dict[str, Any]]] = [("quiet", [], {})]
        phases += [(kind, [kind], {}) for kind in KINDS if kind != "spray"]
        phases += [("all", list(KINDS), {}),
                   ("spray", ["spray"], {"sources": SPRAY_SOURCES, "audio": short,
                                         "interval": 0.02, "call_target_ms": SPRAY_TARGET_MS})]
        results = []
        for name, kinds, options in phases:
            if only and name not in only:
                continue
            before = metrics()
            options = {"audio": audio, **options}
            result = phase(name, kinds, calls, work, server_pid=server.pid, **options)
            after = metrics()
            result["server"] = {key: after[key] - before.get(key, 0.0) for key in after
                                if after[key] != before.get(key, 0.0)}
            print(json.dumps(result), flush=True)
            results.append(result)
        with open(os.path.join(work, "twistd.log"), encoding="utf-8", errors="replace") as log:
            log_lines = sum(1 for _ in log)
        return {"calls_per_phase": calls, "target_ms": TARGET_MS,
                "spray_target_ms": SPRAY_TARGET_MS, "phases": results,
                "server_log_lines": log_lines}
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            server.wait(60)
        shutil.rmtree(work, ignore_errors=True)


def table(results: dict[str, Any]) -> str:
    rows = ["| abuse | calls | failed | byte-exact | connect + Start p50 / p99 / max (ms) "
            "| Stop p50 / p99 / max (ms) | whole call p50 / p99 / max (ms) | target | met |",
            "|---|---|---|---|---|---|---|---|---|"]
    for result in results["phases"]:
        start, stop, call = result["connect_start_ms"], result["stop_ms"], result["call_ms"]
        rows.append(
            f"| {result['phase']} | {result['calls']} | {len(result['failed'])} "
            f"| {result['byte_exact']} | {start['p50']} / {start['p99']} / {start['max']} "
            f"| {stop['p50']} / {stop['p99']} / {stop['max']} "
            f"| {call['p50']} / {call['p99']} / {call['max']} | {result['target']} "
            f"| {'yes' if result['within_target'] else 'NO'} |")
    return "\n".join(rows)


def write_docs(results: dict[str, Any], command: str) -> None:
    day = datetime.date.today().isoformat()
    section = (f"{MARK_BEGIN}\nRun {day} at commit `{commit()}`: `{command}`.\n\n"
               f"{table(results)}\n\nWhat the server counted, per phase (from `/metrics`):\n\n"
               + "\n".join(f"- {r['phase']}: " + (", ".join(
                   f"`{k}` +{v:g}" for k, v in sorted(r["server"].items())) or "nothing")
                   for r in results["phases"])
               + f"\n\nServer log after all phases: {results['server_log_lines']} lines, for "
               f"{sum(r['calls'] for r in results['phases']):,} calls recorded.\n"
               + MARK_END)
    path = os.path.join(DOCS, "benchmarks.md")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    begin, end = text.index(MARK_BEGIN), text.index(MARK_END) + len(MARK_END)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text[:begin] + section + text[end:])
    json_path = os.path.join(DOCS, "benchmarks.json")
    with open(json_path, encoding="utf-8") as handle:
        everything = json.load(handle)
    everything["flood"] = {"date": day, "commit": commit(), "command": command, **results}
    with open(json_path, "w", encoding="utf-8") as handle:
        json.dump(everything, handle, indent=1)
        handle.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per phase")
    parser.add_argument("--phases", nargs="+", metavar="PHASE",
                        help="only these (quiet, a kind of abuse, all); not with --write-docs")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.phases and args.write_docs:
        parser.error("--phases measures a part: the docs show every phase")
    results = run(args.calls, args.phases or [])
    print(table(results))
    if args.write_docs:
        write_docs(results, "python bench/flood.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
