"""The archive under faults, with real processes (issue 18's "Done when"):
a real recsvc (`twistd -n recsvc`), moto's S3 server behind a TCP proxy of
ours, and `recsvc-phone` making real calls. Each scenario ends by checking
the bucket: every finished recording's WAV and sidecar there once and
nothing else, each object's size and SHA-256 (of the bytes a GET serves,
and the store's ChecksumSHA256 too) equal to the original's.

1. kill -9 during uploads: calls finish, recsvc is SIGKILLed once some but
   not all files are journaled, then started again.
2. The store down for a minute while calls go on being recorded (and
   verified byte-exact by the phones), then back: the backlog drains.
3. A full local disk (a small tmpfs) while the store is down: calls until
   recsvc refuses them (`disk full`), then the store comes back: the
   backlog drains, the local WAVs are deleted once verified
   (keep_local_days: 0), the space returns and new calls record again.

"The store down" is the proxy stopped: its port refuses connections and
the connections it carried are cut, as when a MinIO or an S3 endpoint goes
away, while moto (which keeps its objects in memory only) keeps running
behind it with what it holds. Killing and restarting moto instead would
lose the objects uploaded before the outage.

"The original" of a file is the file recsvc wrote, hashed on the local
disk while nothing could delete it: scenarios 1 and 2 run with
keep_local_days: 30, and scenario 3 hashes its recordings while the store
is down (no upload is verified, so no WAV is deleted). The WAVs recorded
after the store came back in scenario 3 are deleted as soon as they are
verified: their objects are downloaded and their audio compared byte for
byte with what each phone sent instead.

    python bench/archive_faults.py                  # all three (make archive-faults)
    python bench/archive_faults.py --only 2 --outage 20
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from capacity import wait_listening  # noqa: E402

BIN = os.path.dirname(sys.executable)
# The archive's url is s3://BUCKET/calls; the node's objects are below its name.
NODE = "node-a"
PREFIX = f"calls/{NODE}/"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
KEEP_WORK = False  # --keep: the work folders (logs, config) are kept


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def hash_file(path: str) -> tuple[int, str]:
    with open(path, "rb") as handle:
        data = handle.read()
    return len(data), sha256_b64(data)


class StoreProxy:
    """A TCP proxy on a fixed port of 127.0.0.1 to the store: `stop` closes
    the port (connections are refused) and cuts the connections it carries;
    `start` opens the same port again."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def up(self) -> bool:
        return self._listener is not None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for each in connections:
            try:
                each.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            each.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            with self._lock:
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for each in (source, sink):
            try:
                each.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            self._connections.discard(source)
            self._connections.discard(sink)


class Moto:
    """moto's S3 server on a free port of 127.0.0.1."""

    def __init__(self, cpu: int | None = None) -> None:
        self.port = free_port()
        command = [os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_listening(self.port, 60, self.process)
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


class Recsvc:
    """A real `twistd -n recsvc` on a config of its own, AWS credentials for
    moto in its environment."""

    def __init__(self, work: str, root: str, bucket: str, endpoint: str, *,
                 keep_local_days: float, min_free_mb: int = 1, cpu: int | None = None,
                 archive: bool = True, port_range: tuple[int, int] = (43000, 43999),
                 extra: str = "") -> None:
        self.work, self.root = work, root
        self.control_port, self.http_port = free_port(), free_port()
        self.config = os.path.join(work, "recsvc.yaml")
        archive_section = (f'archive:\n  url: "s3://{bucket}/calls"\n'
                           f'  endpoint_url: "{endpoint}"\n  region: {REGION}\n'
                           f'  keep_local_days: {keep_local_days}\n') if archive else ""
        with open(self.config, "w", encoding="utf-8") as handle:
            handle.write(
                f'node: {NODE}\n'
                f'control:\n  listen: "tcp:{self.control_port}:interface=127.0.0.1"\n'
                # All the phones are 127.0.0.1: those whose recording the
                # server stopped (disk full) keep their connections.
                '  max_connections_per_ip: 5000\n'
                f'http:\n  listen: "tcp:{self.http_port}:interface=127.0.0.1"\n'
                f'rtp:\n  interface: 127.0.0.1\n  port_range: [{port_range[0]}, {port_range[1]}]\n'
                f'storage:\n  root: "{root}"\n  min_free_mb: {min_free_mb}\n'
                f'index:\n  database: "{os.path.join(work, "index", "recsvc.sqlite3")}"\n'
                + archive_section + extra)
        self.cpu = cpu
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        command = [os.path.join(BIN, "twistd"), "--nodaemon", "--pidfile=",
                   f"--logfile={os.path.join(self.work, f'twistd-{self.starts}.log')}",
                   "recsvc", "--config", self.config]
        if self.cpu is not None:
            command = ["taskset", "-c", str(self.cpu), *command]
        self.process = subprocess.Popen(command, env={**os.environ, **CREDENTIALS},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.control_port, 60, self.process)
        wait_listening(self.http_port, 60, self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def healthz(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz",
                                        timeout=2) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            # (503 while the disk is low: the body says so, with the archive.)
            try:
                return {**json.load(error), "code": error.code}
            except ValueError:
                return None
        except OSError:
            return None

    def log(self, start: int | None = None) -> str:
        """The log of one start (None: of all)."""
        text = ""
        for name in sorted(os.listdir(self.work)):
            if name.startswith(f"twistd-{'' if start is None else start}"):
                with open(os.path.join(self.work, name), encoding="utf-8",
                          errors="replace") as handle:
                    text += handle.read()
        return text


class HealthSampler:
    """/healthz's archive figures every ``interval`` seconds, in a thread."""

    def __init__(self, recsvc: Recsvc, interval: float = 0.5) -> None:
        self.recsvc, self.interval = recsvc, interval
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self._stopped = threading.Event()
        self.began = time.monotonic()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            body = self.recsvc.healthz()
            if body is not None and body.get("archive") is not None:
                self.samples.append((time.monotonic(),
                                     {**body["archive"], "status": body.get("status")}))
            self._stopped.wait(self.interval)

    def stop(self) -> None:
        self._stopped.set()

    def between(self, first: float, last: float) -> dict[str, Any]:
        """The largest figures seen in [first, last], and the causes."""
        seen = [s for t, s in self.samples if first <= t <= last]
        if not seen:
            return {"samples": 0}
        return {"samples": len(seen),
                "files_waiting_max": max(s["files_waiting"] for s in seen),
                "bytes_waiting_max": max(s["bytes_waiting"] for s in seen),
                "oldest_waiting_s_max": max(s["oldest_waiting_s"] for s in seen),
                "failing": sorted({cause for s in seen for cause in s["failing"]}),
                "statuses": sorted({str(s.get("status")) for s in seen})}

    def drained_at(self, after: float, timeout: float) -> float:
        """When /healthz first said nothing waits, after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for moment, figures in list(self.samples):
                if moment > after and figures["files_waiting"] == 0:
                    return moment
            time.sleep(0.1)
        raise RuntimeError(f"the backlog did not drain within {timeout:g} s: "
                           f"{self.samples[-1][1] if self.samples else 'no /healthz'}")


class Phones:
    """A `recsvc-phone` run in the background; its output parsed."""

    def __init__(self, recsvc: Recsvc, calls: int, duration: float, spread: float | None = None,
                 verify: bool = True, numbers: str = "138########", cpu: int | None = None) -> None:
        self.calls, self.duration, self.numbers = calls, duration, numbers
        command = [os.path.join(BIN, "recsvc-phone"), "127.0.0.1", str(recsvc.control_port),
                   "--calls", str(calls), "--duration", str(duration), "--numbers", numbers]
        if spread is not None:
            command += ["--spread", str(spread)]
        if verify:
            command += ["--storage-root", recsvc.root]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.output = ""

    def wait(self, timeout: float = 300) -> "Phones":
        try:
            self.output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output, _ = self.process.communicate()
            raise RuntimeError(f"recsvc-phone did not end within {timeout:g} s: "
                               f"{self.output[-2000:]}") from None
        return self

    @property
    def started(self) -> int:
        match = re.search(r"starts: (\d+) succeeded", self.output)
        return int(match.group(1)) if match else 0

    @property
    def refused(self) -> str:
        match = re.search(r"starts: \d+ succeeded, (\d+ failed .*)", self.output)
        return match.group(1) if match else "?"

    @property
    def byte_exact(self) -> tuple[int, int] | None:
        match = re.search(r"verified: (\d+) byte-exact, (\d+) not", self.output)
        return (int(match.group(1)), int(match.group(2))) if match else None


def finished_recordings(root: str) -> dict[str, str | None]:
    """The finished recordings under root: sidecar -> its WAV (None if it
    has no audio), paths relative to root."""
    found: dict[str, str | None] = {}
    for folder, folders, files in os.walk(root):
        folders[:] = [f for f in folders if not f.startswith(".")]
        for name in files:
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                continue
            if data.get("status") != "finished":
                continue
            relative = os.path.relpath(path, root)
            found[relative] = relative[:-len(".json")] + ".wav" if data.get("file") else None
    return found


def hash_originals(root: str, originals: dict[str, tuple[int, str]]) -> int:
    """Add the finished recordings' files under root not hashed yet; how
    many were added."""
    added = 0
    for sidecar, wav in finished_recordings(root).items():
        for relative in (sidecar, wav):
            if relative is not None and relative not in originals:
                path = os.path.join(root, relative)
                if os.path.exists(path):
                    originals[relative] = hash_file(path)
                    added += 1
    return added


def journal_lines(root: str) -> int:
    count = 0
    for folder, _, files in os.walk(os.path.join(root, ".archive")):
        if "verified.jsonl" in files:
            with open(os.path.join(folder, "verified.jsonl"), "rb") as handle:
                count += sum(1 for line in handle.read().split(b"\n") if line.endswith(b"}"))
    return count


def list_bucket(client: Any, bucket: str) -> list[dict[str, Any]]:
    objects = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects.extend(page.get("Contents", []))
    return objects


def stored_object(client: Any, bucket: str, key: str) -> tuple[int, str | None]:
    """An object's size and SHA-256 as the store serves it: of the bytes a
    GET gives (moto keeps the checksum a PUT sends without checking it),
    None unless the store's ChecksumSHA256 says the same."""
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    said = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    digest = sha256_b64(data)
    return len(data), digest if said.get("ChecksumSHA256") == digest else None


def check_bucket(client: Any, bucket: str, originals: dict[str, tuple[int, str]],
                 expected_keys: set[str]) -> dict[str, Any]:
    """The bucket against the originals: every expected key there once,
    nothing else, each object's size and SHA-256 the original's (see
    stored_object); and no content there more often than among the originals
    (a file uploaded twice under another name)."""
    listed = list_bucket(client, bucket)
    keys = [item["Key"] for item in listed]
    wanted = {PREFIX + relative for relative in expected_keys}
    stored = {key: stored_object(client, bucket, key) for key in keys}
    matches, mismatched = 0, []
    for relative in expected_keys:
        key = PREFIX + relative
        if key in stored and relative in originals:
            if stored[key] == originals[relative]:
                matches += 1
            else:
                mismatched.append(relative)
    # Content present more often in the bucket than among the originals.
    in_bucket = collections.Counter(stored.values())
    in_originals = collections.Counter(originals[r] for r in expected_keys if r in originals)
    duplicates = sum(max(0, count - in_originals[content]) for content, count in in_bucket.items())
    return {
        "expected": len(wanted), "found": len(keys), "distinct_keys": len(set(keys)),
        "missing": sorted(wanted - set(keys)), "extra": sorted(set(keys) - wanted),
        "checksum_matches": matches, "mismatched": mismatched,
        "duplicate_keys": len(keys) - len(set(keys)), "duplicate_contents": duplicates,
        "exactly_once": (set(keys) == wanted and len(keys) == len(set(keys)) and not mismatched
                         and matches == len(wanted) and duplicates == 0),
    }


def verify_in_archive(client: Any, bucket: str, root: str, recordings: dict[str, str | None],
                      phones: Phones, originals: dict[str, tuple[int, str]]) -> tuple[int, int]:
    """For recordings whose local WAV is gone (deleted once verified): the
    WAV object's audio compared byte for byte with what its phone sent (the
    phone's index is in the remote number its run gave it); a match makes
    the object's bytes its original. Their sidecars are hashed locally
    (sidecars stay). Returns (byte-exact, not)."""
    from recsvc.phonesim.simulator import call_audio
    from recsvc.storage.wav import NotAWav, audio_in

    audio = call_audio(phones.calls, phones.duration)
    digits = phones.numbers.count("#")
    exact = wrong = 0
    for sidecar, wav in recordings.items():
        if sidecar not in originals:
            originals[sidecar] = hash_file(os.path.join(root, sidecar))
        if wav is None or wav in originals:
            continue
        with open(os.path.join(root, sidecar), encoding="utf-8") as handle:
            index = int(json.load(handle)["remote_number"][-digits:])
        blob = client.get_object(Bucket=bucket, Key=PREFIX + wav)["Body"].read()
        try:
            sent = bytes(audio(index))
            same = audio_in(blob)[1] == sent
        except NotAWav:
            same = False
        if same:
            exact += 1
            originals[wav] = (len(blob), sha256_b64(blob))
        else:
            wrong += 1
    return exact, wrong


class Scenario:
    """What each scenario shares: a work folder, moto, the proxy, a bucket."""

    def __init__(self, name: str, moto: Moto, root: str | None = None) -> None:
        self.name = name
        self.moto = moto
        self.work = tempfile.mkdtemp(prefix="recsvc-archive-faults-")
        self.root = root or os.path.join(self.work, "recordings")
        self.proxy = StoreProxy(moto.port)
        self.proxy.start()
        self.client = moto.client()
        self.bucket = "faults-" + os.urandom(6).hex()
        self.client.create_bucket(Bucket=self.bucket)
        self.originals: dict[str, tuple[int, str]] = {}
        self.result: dict[str, Any] = {"scenario": name}

    def recsvc(self, **settings: Any) -> Recsvc:
        return Recsvc(self.work, self.root, self.bucket, f"http://127.0.0.1:{self.proxy.port}",
                      **settings)

    def check(self) -> dict[str, Any]:
        recordings = finished_recordings(self.root)
        expected = set(recordings) | {wav for wav in recordings.values() if wav is not None}
        self.result["recordings"] = len(recordings)
        self.result["bucket"] = check_bucket(self.client, self.bucket, self.originals, expected)
        # What the sidecars of recordings missing from the bucket say.
        missing = {key[len(PREFIX):] for key in self.result["bucket"]["missing"]}
        for sidecar in sorted(set(recordings) & missing):
            with open(os.path.join(self.root, sidecar), encoding="utf-8") as handle:
                data = json.load(handle)
            self.result.setdefault("not_archived", []).append(
                f"{sidecar}: stop_reason {data.get('stop_reason')!r}, "
                f"error {data.get('error')!r}")
        return self.result

    def close(self) -> None:
        self.proxy.stop()
        if KEEP_WORK:
            print(f"   (kept: {self.work})")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def scenario_kill(moto: Moto, calls: int, duration: float) -> dict[str, Any]:
    """SIGKILL while uploads are under way, after the calls have finished."""
    scenario = Scenario("1. kill -9 during uploads", moto)
    recsvc = scenario.recsvc(keep_local_days=30)
    try:
        # A slow store (the proxy's pace is moto's): uploads under way for
        # a while once all calls end together.
        recsvc.start()
        sampler = HealthSampler(recsvc, 0.2)
        phones = Phones(recsvc, calls, duration, spread=0.2)
        files = 2 * calls
        deadline = time.monotonic() + duration + 60
        while journal_lines(scenario.root) < files // 4:
            if time.monotonic() > deadline:
                raise RuntimeError("uploads did not begin")
            time.sleep(0.005)
        killed_with = journal_lines(scenario.root)
        waiting = recsvc.healthz()
        recsvc.kill()
        killed_at = time.monotonic()
        phones.wait()
        sampler.stop()
        hash_originals(scenario.root, scenario.originals)
        recsvc.start()
        sampler = HealthSampler(recsvc, 0.2)
        drained = sampler.drained_at(time.monotonic(), 300)
        while journal_lines(scenario.root) < len(scenario.originals):
            if time.monotonic() > drained + 30:
                break
            time.sleep(0.1)
        sampler.stop()
        scenario.result.update({
            "calls": calls, "started": phones.started, "byte_exact": phones.byte_exact,
            "killed_with_journal_lines": f"{killed_with} of {files}",
            "healthz_at_kill": (waiting or {}).get("archive"),
            "drain_s_after_kill": round(drained - killed_at, 1),
            "journal_lines_after": journal_lines(scenario.root),
            "recordings_verified_after_restart": recsvc.log(2).count(" verified in "),
        })
        recsvc.stop()
        return scenario.check()
    finally:
        recsvc.stop()
        scenario.close()


def scenario_outage(moto: Moto, calls: int, duration: float, outage: float) -> dict[str, Any]:
    """The store down for ``outage`` seconds while calls go on."""
    scenario = Scenario("2. the store down for a minute", moto)
    recsvc = scenario.recsvc(keep_local_days=30)
    try:
        recsvc.start()
        sampler = HealthSampler(recsvc, 0.5)
        # Calls start evenly over the outage and a little before and after
        # it: some finish before the store goes, most while it is down,
        # some after it is back.
        lead = min(10.0, outage / 4)
        spread = outage + 2 * lead - duration + 5
        began = time.monotonic()
        phones = Phones(recsvc, calls, duration, spread=max(spread, 1.0))
        time.sleep(lead + duration)
        before = journal_lines(scenario.root)
        scenario.proxy.stop()
        down_at = time.monotonic()
        time.sleep(outage)
        finished_during = len(finished_recordings(scenario.root))
        scenario.proxy.start()
        back_at = time.monotonic()
        phones.wait()
        drained = sampler.drained_at(back_at, 600)
        sampler.stop()
        hash_originals(scenario.root, scenario.originals)
        scenario.result.update({
            "calls": calls, "started": phones.started, "byte_exact": phones.byte_exact,
            "store_down_s": round(back_at - down_at, 1),
            "files_verified_before_outage": before,
            "recordings_finished_by_end_of_outage": finished_during,
            "healthz_during_outage": sampler.between(down_at, back_at),
            "drain_s_after_store_back": round(drained - back_at, 1),
            "phones_took_s": round(time.monotonic() - began, 1),
        })
        recsvc.stop()
        return scenario.check()
    finally:
        recsvc.stop()
        scenario.close()


def mount_tmpfs(where: str, megabytes: int) -> str | None:
    """Why a tmpfs cannot be mounted here, or None once it is."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    os.makedirs(where, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", where],
                            capture_output=True, text=True)
    return result.stderr.strip() or "mount failed" if result.returncode else None


def free_mb(path: str) -> float:
    stats = os.statvfs(path)
    return round(stats.f_bavail * stats.f_frsize / 1e6, 2)


def scenario_full_disk(moto: Moto, megabytes: int, calls: int, duration: float) -> dict[str, Any]:
    """A small tmpfs filled while the store is down; then the store back."""
    work = tempfile.mkdtemp(prefix="recsvc-archive-tmpfs-")
    mount = os.path.join(work, "disk")
    why = mount_tmpfs(mount, megabytes)
    if why is not None:
        shutil.rmtree(work, ignore_errors=True)
        return {"scenario": "3. a full local disk while the store is down", "skipped": why}
    scenario = Scenario("3. a full local disk while the store is down", moto,
                        root=os.path.join(mount, "recordings"))
    recsvc = scenario.recsvc(keep_local_days=0, min_free_mb=1)
    try:
        scenario.proxy.stop()
        recsvc.start()
        sampler = HealthSampler(recsvc, 0.5)
        down_at = time.monotonic()
        free_before = free_mb(mount)
        # More audio than the disk holds: the disk fills during the calls.
        phones = Phones(recsvc, calls, duration, spread=1.0).wait()
        refused_later = Phones(recsvc, 5, 2.0, numbers="137########").wait()
        free_when_full = free_mb(mount)
        stop_reasons = collections.Counter()
        for sidecar in finished_recordings(scenario.root):
            with open(os.path.join(scenario.root, sidecar), encoding="utf-8") as handle:
                stop_reasons[json.load(handle).get("stop_reason")] += 1
        hash_originals(scenario.root, scenario.originals)
        kept_wavs = sum(1 for r in scenario.originals if r.endswith(".wav"))
        time.sleep(2)
        scenario.proxy.start()
        back_at = time.monotonic()
        drained = sampler.drained_at(back_at, 600)
        time.sleep(1)
        local_wavs = sum(1 for wav in finished_recordings(scenario.root).values()
                         if wav is not None and os.path.exists(os.path.join(scenario.root, wav)))
        free_after = free_mb(mount)
        again = Phones(recsvc, 10, 3.0, numbers="139########", verify=False).wait()
        sampler.drained_at(time.monotonic(), 120)
        time.sleep(1)
        sampler.stop()
        new = {s: w for s, w in finished_recordings(scenario.root).items()
               if s not in scenario.originals}
        archive_exact = verify_in_archive(scenario.client, scenario.bucket, scenario.root, new,
                                          again, scenario.originals)
        scenario.result.update({
            "tmpfs_mb": megabytes, "free_mb_at_start": free_before,
            "calls": calls, "started": phones.started, "byte_exact": phones.byte_exact,
            "stop_reasons": dict(stop_reasons),
            "starts_once_full": refused_later.refused,
            "free_mb_when_full": free_when_full,
            "wavs_kept_while_down": kept_wavs,
            "healthz_while_down": sampler.between(down_at, back_at),
            "drain_s_after_store_back": round(drained - back_at, 1),
            "local_wavs_left_after_drain": local_wavs,
            "free_mb_after_drain": free_after,
            "new_calls_after": f"{again.started} of {again.calls} started, "
                               f"{archive_exact[0]} byte-exact in the archive, "
                               f"{archive_exact[1]} not",
        })
        recsvc.stop()
        return scenario.check()
    finally:
        recsvc.stop()
        scenario.close()
        subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(work, ignore_errors=True)


def summary(result: dict[str, Any]) -> str:
    lines = [f"== {result['scenario']}"]
    if "skipped" in result:
        return lines[0] + f"\n   skipped: {result['skipped']}"
    bucket = result["bucket"]
    for key, value in result.items():
        if key not in ("scenario", "bucket"):
            lines.append(f"   {key}: {value}")
    lines.append(
        f"   objects expected {bucket['expected']}, found {bucket['found']} "
        f"({bucket['distinct_keys']} distinct keys), missing {len(bucket['missing'])}, "
        f"other keys {len(bucket['extra'])}, checksum+size matches "
        f"{bucket['checksum_matches']}/{bucket['expected']}, mismatched "
        f"{len(bucket['mismatched'])}, duplicate contents {bucket['duplicate_contents']}")
    for what in ("missing", "extra", "mismatched"):
        for key in bucket[what][:5]:
            lines.append(f"     {what}: {key}")
    lines.append(f"   => {'PASS: every recording archived exactly once, verified by checksum' if bucket['exactly_once'] else 'FAIL'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the store is down")
    parser.add_argument("--tmpfs-mb", type=int, default=8)
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--keep", action="store_true",
                        help="keep each scenario's folder (twistd logs, config)")
    args = parser.parse_args()
    global KEEP_WORK
    KEEP_WORK = args.keep
    moto = Moto()
    results = []
    runs: dict[int, Callable[[], dict[str, Any]]] = {
        1: lambda: scenario_kill(moto, args.calls, 10.0),
        2: lambda: scenario_outage(moto, args.calls, 10.0, args.outage),
        3: lambda: scenario_full_disk(moto, args.tmpfs_mb, args.calls, 30.0),
    }
    try:
        for number in args.only:
            began = time.monotonic()
            result = runs[number]()
            result["took_s"] = round(time.monotonic() - began, 1)
            results.append(result)
            print(summary(result), flush=True)
    finally:
        moto.stop()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
    failed = [r["scenario"] for r in results if "bucket" in r and not r["bucket"]["exactly_once"]]
    print("\nall scenarios passed" if not failed else f"\nFAILED: {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
