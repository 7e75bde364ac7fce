"""End to end over loopback: a simulated phone against the real service tree
(real TCP and UDP sockets, real files), and against `twistd -n recsvc`."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

import attrs
import yaml
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from recsvc import g711, makeService
from recsvc.phone import SimulatedPhone, rtp_packets, send_rtp
from recsvc.protocol.commands import StopRequest, StopResponse
from recsvc.storage import sidecar_path
from recsvc.testing import FailingWriter
from recsvc.wav import WavFileWriter

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_wav(path: str) -> tuple[dict[str, int], bytes, int]:
    """(fmt fields, data chunk bytes, RIFF size) of a WAV file, checking the
    chunk sizes add up to the file length."""
    with open(path, "rb") as handle:
        blob = handle.read()
    assert blob[:4] == b"RIFF" and blob[8:12] == b"WAVE", path
    riff_size = struct.unpack_from("<I", blob, 4)[0]
    assert riff_size + 8 == len(blob), (riff_size + 8, len(blob))
    offset, fmt, data = 12, {}, None
    while offset < len(blob):
        name, size = blob[offset:offset + 4], struct.unpack_from("<I", blob, offset + 4)[0]
        body = blob[offset + 8:offset + 8 + size]
        if name == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            fmt = {"tag": tag, "channels": channels, "rate": rate, "bits": bits}
        elif name == b"data":
            data = body
        offset += 8 + size + (size & 1)
    assert data is not None, "no data chunk"
    return fmt, data, riff_size


def ffprobe(path: str) -> dict:
    """What ffprobe reads of a file (the Makefile's test target installs it)."""
    if shutil.which("ffprobe") is None:
        raise SkipTest("ffprobe is not installed (make test installs Debian's ffmpeg)")
    output = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", path],
        check=True, capture_output=True, text=True,
    ).stdout
    [stream] = json.loads(output)["streams"]
    return stream


def sox_info(path: str) -> dict[str, str]:
    """What sox reads of a file's header (``sox --i``)."""
    if shutil.which("sox") is None:
        raise SkipTest("sox is not installed (make test installs Debian's sox)")
    output = subprocess.run(["sox", "--i", path], check=True, capture_output=True, text=True).stdout
    return {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in output.splitlines()) if value
    }


def recordings(root: str) -> dict[str, str]:
    """Recording id -> WAV path of the finished recordings under root."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    sidecar = json.load(handle)
                if sidecar["status"] == "finished":
                    found[sidecar["id"]] = os.path.join(folder, sidecar["file"])
    return found


def sidecar_of(wav_path: str) -> dict:
    with open(sidecar_path(wav_path), encoding="utf-8") as handle:
        return json.load(handle)


def audio(seconds: float, seed: int) -> bytes:
    return random.Random(seed).randbytes(int(8000 * seconds))


class ServiceEndToEndTests(TestCase):
    """The service tree from recsvc.makeService on the running reactor."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.tree = makeService({
            "control": {"listen": "tcp:0:interface=127.0.0.1"},
            "rtp": {"interface": "127.0.0.1", "port_range": [42000, 42999]},
            "storage": {"root": self.root},
        })
        self.recorder = self.tree.getServiceNamed("recorder")
        self.tree.startService()
        self.addCleanup(self._stop_tree)
        port = yield self.tree.getServiceNamed("control").whenListening()
        self.port = port.getHost().port

    def _stop_tree(self):
        if self.tree.running:
            return self.tree.stopService()

    def phone(self, framing: str = "bare") -> SimulatedPhone:
        phone = SimulatedPhone("127.0.0.1", self.port, framing=framing)
        self.addCleanup(phone.close)
        return phone

    @inlineCallbacks
    def wait_for(self, predicate, seconds: float = 5.0):
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                self.fail("condition not reached in time")
            yield deferLater(reactor, 0.01, lambda: None)

    def call(self, framing: str, recording_id: str, sound: bytes, codec: str = "PCMA"):
        """A whole call in a thread: start, RTP, stop. Returns the replies."""
        phone = self.phone(framing)
        phone.connect()
        started = phone.start(recording_id, codec=codec)
        assert started.result == "success", started
        send_rtp(rtp_packets(sound, codec), started.server, started.port)
        # No pause: the Stop may be read before the last datagrams are.
        stopped = phone.stop(recording_id, updates=(("remote_name", "Transferred"),))
        phone.close()
        return started, stopped

    @inlineCallbacks
    def check_framing(self, framing: str):
        sound = audio(2, seed=len(framing))
        started, stopped = yield deferToThread(self.call, framing, "call-" + framing, sound)
        self.assertEqual((started.server, stopped.result), ("127.0.0.1", "success"))
        self.assertTrue(42000 <= started.port <= 42999)
        path = recordings(self.root)["call-" + framing]
        fmt, data, _ = read_wav(path)
        self.assertEqual(fmt, {"tag": 6, "channels": 1, "rate": 8000, "bits": 8})
        self.assertEqual(data, sound)
        sidecar = sidecar_of(path)
        self.assertEqual(sidecar["remote_name"], "Transferred")
        self.assertEqual(sidecar["packets_received"], 100)
        self.assertEqual(sidecar["duration_s"], 2.0)
        self.assertEqual(sidecar["stopped_by"], "phone")
        stream = ffprobe(path)
        self.assertEqual((stream["codec_name"], stream["sample_rate"]), ("pcm_alaw", "8000"))
        self.assertEqual(float(stream["duration"]), 2.0)
        info = sox_info(path)
        self.assertEqual((info["Sample Encoding"], info["Sample Rate"]), ("8-bit A-law", "8000"))
        self.assertTrue(info["Duration"].startswith("00:00:02.00 = 16000 samples"), info["Duration"])

    def test_bare_framing(self):
        """A phone sending bare messages (as the firmware does) records a
        byte-exact A-law WAV that ffprobe reads."""
        return self.check_framing("bare")

    def test_crlf_framing(self):
        """The same call with CRLF-terminated messages."""
        return self.check_framing("crlf")

    def test_lf_framing(self):
        """The same call with LF-terminated messages."""
        return self.check_framing("lf")

    def test_nul_framing(self):
        """The same call with NUL-terminated messages."""
        return self.check_framing("nul")

    @inlineCallbacks
    def test_pcmu_to_pcm16(self):
        """With storage.format pcm16 a mu-law call is stored decoded, as
        16-bit PCM that equals the G.711 decoding of what was sent."""
        self.recorder.storage = attrs.evolve(self.recorder.storage, audio_format="pcm16")
        sound = audio(1, seed=7)
        yield deferToThread(self.call, "bare", "u1", sound, "PCMU")
        path = recordings(self.root)["u1"]
        fmt, data, _ = read_wav(path)
        self.assertEqual(fmt, {"tag": 1, "channels": 1, "rate": 8000, "bits": 16})
        self.assertEqual(data, g711.decode_ulaw(sound))
        stream = ffprobe(path)
        self.assertEqual(stream["codec_name"], "pcm_s16le")

    @inlineCallbacks
    def test_connection_lost(self):
        """A phone whose TCP connection breaks mid-call: what arrived is kept
        as a finished, playable file, stopped_by connection."""
        sound = audio(1.5, seed=3)

        def call_then_drop():
            phone = self.phone()
            phone.connect()
            started = phone.start("drop-1")
            send_rtp(rtp_packets(sound), started.server, started.port)
            time.sleep(0.1)
            phone.close()

        yield deferToThread(call_then_drop)
        yield self.wait_for(lambda: "drop-1" in recordings(self.root))
        path = recordings(self.root)["drop-1"]
        self.assertEqual(read_wav(path)[1], sound)
        sidecar = sidecar_of(path)
        self.assertEqual((sidecar["stopped_by"], sidecar["stop_reason"]), ("connection", "connection lost"))
        self.assertEqual(float(ffprobe(path)["duration"]), 1.5)

    @inlineCallbacks
    def test_write_failure(self):
        """A disk that fails (ENOSPC on the 31st write): the server sends the
        phone a RecordStopRequest, keeps the 30 packets written before the
        error as a valid file, and other recordings go on."""
        self.recorder.storage = attrs.evolve(
            self.recorder.storage,
            open_writer=lambda path, fmt: FailingWriter(WavFileWriter(path, fmt), fail_at=31),
        )
        sound = audio(2, seed=11)  # more than the reorder window, so writes begin

        def failing_call():
            phone = self.phone("crlf")
            phone.connect()
            started = phone.start("full-1")
            send_rtp(rtp_packets(sound), started.server, started.port)
            request = phone.receive()
            phone.send(StopResponse("full-1", "success"))
            phone.close()
            return request

        request = yield deferToThread(failing_call)
        self.assertIsInstance(request, StopRequest)
        self.assertEqual(request.recording_id, "full-1")
        self.assertIn("No space left on device", request.reason)
        yield self.wait_for(lambda: "full-1" in recordings(self.root))
        path = recordings(self.root)["full-1"]
        self.assertEqual(read_wav(path)[1], sound[:30 * 160])
        sidecar = sidecar_of(path)
        self.assertEqual(sidecar["stopped_by"], "server")
        self.assertIn("No space left on device", sidecar["error"])
        self.assertEqual(float(ffprobe(path)["duration"]), 0.6)

    @inlineCallbacks
    def test_shutdown(self):
        """Stopping the service stops each recording with reason shutdown,
        tells the phone, finishes the file and closes the connection."""
        sound = audio(1, seed=5)
        phone = self.phone("lf")

        def start_and_send():
            phone.connect()
            started = phone.start("sd-1")
            send_rtp(rtp_packets(sound), started.server, started.port)
            time.sleep(0.1)

        yield deferToThread(start_and_send)
        stopping = self.tree.stopService()
        request = yield deferToThread(phone.receive)
        self.assertEqual((request.recording_id, request.reason), ("sd-1", "shutdown"))
        yield stopping
        with self.assertRaises(ConnectionError):
            yield deferToThread(phone.receive)
        path = recordings(self.root)["sd-1"]
        self.assertEqual(read_wav(path)[1], sound)
        self.assertEqual(sidecar_of(path)["stop_reason"], "shutdown")


class TwistdEndToEndTests(TestCase):
    """`twistd -n recsvc --config FILE` as a user runs it."""

    timeout = 60

    def test_twistd_records_stops_and_exits(self):
        """Under twistd: a call stopped by the phone, a call whose connection
        drops and a call still running at SIGTERM all end as byte-exact,
        ffprobe-readable files; the running one's phone is told; the process
        shuts down cleanly within seconds."""
        return deferToThread(self._run_twistd)

    def _run_twistd(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        config = os.path.join(workdir, "recsvc.yaml")
        with open(config, "w", encoding="utf-8") as handle:
            yaml.safe_dump({
                "control": {"listen": "tcp:0:interface=127.0.0.1"},
                "rtp": {"interface": "127.0.0.1", "port_range": [43000, 43999]},
                "storage": {"root": "recordings"},
            }, handle)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        process = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "--logfile=-", "recsvc", "--config", config],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            port = None
            log = []
            deadline = time.monotonic() + 20
            while port is None and time.monotonic() < deadline:
                line = process.stdout.readline()
                if not line:
                    break
                log.append(line)
                match = re.search(r"Control listening on 127\.0\.0\.1:(\d+)", line)
                port = int(match.group(1)) if match else None
            self.assertIsNotNone(port, "".join(log))
            sounds = {name: audio(1, seed=n) for n, name in enumerate(["a", "b", "c"])}

            phone = SimulatedPhone("127.0.0.1", port)
            phone.connect()
            started = phone.start("a")
            send_rtp(rtp_packets(sounds["a"]), started.server, started.port)
            time.sleep(0.1)
            self.assertEqual(phone.stop("a").result, "success")

            dropped = SimulatedPhone("127.0.0.1", port)
            dropped.connect()
            started = dropped.start("b")
            send_rtp(rtp_packets(sounds["b"]), started.server, started.port)
            time.sleep(0.1)
            dropped.close()

            started = phone.start("c")
            send_rtp(rtp_packets(sounds["c"]), started.server, started.port)
            time.sleep(0.1)
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            request = phone.receive()
            self.assertEqual((request.recording_id, request.reason), ("c", "shutdown"))
            # twistd re-raises the signal once it has shut down cleanly, so
            # the status is "terminated by SIGTERM", as systemd expects.
            self.assertIn(process.wait(timeout=10), (0, -signal.SIGTERM))
            self.assertLess(time.monotonic() - began, 5)
            self.assertIn("Server Shut Down.", process.stdout.read())
            phone.close()
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
        found = recordings(os.path.join(workdir, "recordings"))
        self.assertEqual(sorted(found), ["a", "b", "c"])
        expected_by = {"a": "phone", "b": "connection", "c": "server"}
        for name, path in found.items():
            self.assertEqual(read_wav(path)[1], sounds[name])
            self.assertEqual(sidecar_of(path)["stopped_by"], expected_by[name])
            stream = ffprobe(path)
            self.assertEqual((stream["codec_name"], float(stream["duration"])), ("pcm_alaw", 1.0))
