"""Two recorder nodes, as the README's "Several nodes" sets them up: two
real recsvc processes (twistd), one PostgreSQL index, one S3 archive (the
test harness's own: a throwaway cluster and moto). A call recorded on
node A is found through node B's API and, once A's local copy is gone,
played by B from the archive, byte for byte."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from recsvc.media import g711
from recsvc.phonesim.phone import SimulatedPhone, rtp_packets, send_rtp
from tests.support import postgres, s3
from tests.support.builders import audio
from tests.support.loopback import reap
from tests.support.recordings import read_wav
from tests.support.servers import free_port

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
NUMBER = "13800138000"


class Node:
    """One recsvc process: its config, its ports, its storage root."""

    def __init__(self, test: SynchronousTestCase, name: str, database: str,
                 archive_url: str, endpoint_url: str, rtp_ports: tuple[int, int]) -> None:
        self.name = name
        self.root = os.path.abspath(test.mktemp())
        os.makedirs(self.root)
        self.control_port, self.http_port = free_port(), free_port()
        self.config = os.path.abspath(test.mktemp()) + ".yaml"
        with open(self.config, "w", encoding="utf-8") as handle:
            json.dump({  # (JSON is YAML)
                "node": name,
                "control": {"listen": f"tcp:{self.control_port}:interface=127.0.0.1"},
                "http": {"listen": f"tcp:{self.http_port}:interface=127.0.0.1"},
                "rtp": {"interface": "127.0.0.1", "port_range": list(rtp_ports)},
                "storage": {"root": self.root, "min_free_mb": 1},
                "index": {"database": database},
                "archive": {"url": archive_url, "endpoint_url": endpoint_url,
                            "region": s3.REGION, "keep_local_days": 0},
            }, handle)
        self.log = os.path.abspath(test.mktemp()) + ".log"

    def start(self, environment: dict[str, str]) -> subprocess.Popen[bytes]:
        self.process = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", f"--logfile={self.log}", "recsvc",
             "--config", self.config],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self.process

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str, **headers: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def log_text(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as handle:
                return handle.read()[-4000:]
        except OSError:
            return "(no log)"

    def wavs(self) -> list[str]:
        return [os.path.join(folder, name) for folder, _, files in os.walk(self.root)
                for name in files if name.endswith(".wav")]


class TwoNodesTests(SynchronousTestCase):
    def setUp(self) -> None:
        database = postgres.cluster().database()
        store = s3.server()
        bucket = store.bucket()
        self.client = store.client()
        self.bucket = bucket
        environment = dict(os.environ)
        settings = store.client_settings()
        if "aws_access_key_id" in settings:  # (moto's; a real endpoint's are in the environment)
            environment["AWS_ACCESS_KEY_ID"] = settings["aws_access_key_id"]
            environment["AWS_SECRET_ACCESS_KEY"] = settings["aws_secret_access_key"]
        archive_url = f"s3://{bucket}/calls"
        self.a = Node(self, "rec-a", database, archive_url, store.endpoint_url, (44000, 44009))
        self.b = Node(self, "rec-b", database, archive_url, store.endpoint_url, (44010, 44019))
        for node in (self.a, self.b):
            self.addCleanup(reap, node.start(environment))
        for node in (self.a, self.b):
            self.wait_until(lambda node=node: node.get("/healthz")[0] == 200,
                            f"{node.name} answers /healthz", node)

    def wait_until(self, predicate: Any, what: str, *nodes: Node, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if predicate():
                    return
            except OSError:
                pass  # (not listening yet)
            for node in nodes:
                if node.process.poll() is not None:
                    self.fail(f"{node.name} exited ({node.process.returncode}) before {what}:\n"
                              + node.log_text())
            if time.monotonic() > deadline:
                self.fail(f"not reached within {seconds:g} s: {what}\n"
                          + "\n".join(node.log_text() for node in nodes))
            time.sleep(0.05)

    def call_on_a(self, recording_id: str, sound: bytes) -> None:
        phone = SimulatedPhone("127.0.0.1", self.a.control_port)
        self.addCleanup(phone.close)
        phone.connect()
        started = phone.start(recording_id)
        self.assertEqual(started.result, "success", started)
        send_rtp(rtp_packets(sound, "PCMA"), started.server, started.port, interval=0.001)
        time.sleep(0.2)  # (the last datagrams read before the Stop)
        phone.stop(recording_id)
        phone.close()

    def test_recorded_on_a_found_and_played_through_b(self) -> None:
        """A call recorded on node A: node B's API finds it (node "rec-a")
        in the shared index; once A has archived it and deleted its local
        WAV, B plays it from the archive, the stored bytes exactly what the
        phone sent, any byte range of the decoded audio as the whole; A
        plays it from the archive too; the bucket holds its WAV and sidecar
        once each."""
        sound = audio(2, seed=18)
        self.call_on_a("two-nodes-1", sound)

        def found_on_b() -> list[dict[str, Any]]:
            status, body = self.b.get("/api/recordings?" + urllib.parse.urlencode(
                {"number": NUMBER}))
            return json.loads(body)["recordings"] if status == 200 else []

        self.wait_until(found_on_b, "node B finds the call", self.a, self.b)
        [row] = found_on_b()
        self.assertEqual((row["id"], row["node"]), ("two-nodes-1", "rec-a"))
        self.wait_until(lambda: not self.a.wavs(), "node A's local WAV is archived and deleted",
                        self.a, self.b)

        status, original = self.b.get("/api/recordings/two-nodes-1/audio?format=original")
        self.assertEqual(status, 200, original)
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(original)
        _, data, _ = read_wav(path)
        self.assertEqual(data, sound)
        status, decoded = self.b.get("/api/recordings/two-nodes-1/audio")
        self.assertEqual(status, 200)
        with open(path, "wb") as handle:
            handle.write(decoded)
        self.assertEqual(read_wav(path)[1], g711.decode_alaw(sound))
        status, part = self.b.get("/api/recordings/two-nodes-1/audio", Range="bytes=5000-9999")
        self.assertEqual((status, part), (206, decoded[5000:10000]))
        self.assertEqual(self.a.get("/api/recordings/two-nodes-1/audio")[1], decoded)

        keys = [item["Key"] for item in self.client.list_objects_v2(
            Bucket=self.bucket).get("Contents", [])]
        self.assertEqual(sorted(os.path.splitext(key)[1] for key in keys), [".json", ".wav"])
        self.assertTrue(all(key.startswith("calls/rec-a/") for key in keys), keys)
