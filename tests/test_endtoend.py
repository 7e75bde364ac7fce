"""End to end over loopback: a simulated phone against the real service tree
(real TCP and UDP sockets, real files), and against `twistd -n recsvc`."""

from __future__ import annotations

import array
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import attrs
import yaml
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from recsvc import makeService

from recsvc.media import g711

from recsvc.storage import wav
from recsvc.index import store as recording_index
from recsvc.phonesim.phone import SimulatedPhone, expected_recording, plan_call, rtp_packets, send_rtp
from recsvc.control.commands import StopRequest, StopResponse
from recsvc.media.rtp import build_rtp
from recsvc.testing import FailingWriter
from recsvc.storage.wav import WavFileWriter
from tests.support.builders import audio
from tests.support.loopback import LoopbackServiceMixin, reap
from tests.support.output import OutputLines
from tests.support.recordings import read_wav, recordings, sidecar_of

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


class ServiceEndToEndTests(LoopbackServiceMixin, TestCase):
    """Calls over loopback sockets, checked byte for byte."""

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

    @inlineCallbacks
    def test_finished_call_found_in_the_index(self):
        """A finished call is indexed (in SQLite, off the reactor thread)
        and found by its number as a supervisor types it."""
        yield deferToThread(self.call, "bare", "indexed-1", audio(1, seed=3))
        deadline = time.monotonic() + 5
        search = recording_index.Search(number="138 0013 8000")
        while True:
            found = yield self.recorder.index.run(recording_index.search, search)
            if found or time.monotonic() > deadline:
                break
            yield deferLater(reactor, 0.05, lambda: None)
        [row] = found
        self.assertEqual((row["id"], row["remote_name"], row["duration_s"]),
                         ("indexed-1", "Transferred", 1.0))
        self.assertEqual(os.path.join(self.root, row["path"]), recordings(self.root)["indexed-1"])

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
    def test_reactor_never_fsyncs(self):
        """A whole call (start, audio over several syncs, stop, shutdown)
        makes its file system calls (open, mkdir, fsync, syncfs, rename,
        statvfs) off the reactor thread."""
        calls = []
        for module, name in [(os, name) for name in (
            "fsync", "fdatasync", "rename", "replace", "open", "mkdir", "statvfs"
        )] + [(wav, "_syncfs")]:
            original = getattr(module, name)

            def spy(*args, _original=original, _name=name.strip("_")):
                calls.append((_name, threading.current_thread() is threading.main_thread()))
                return _original(*args)

            self.patch(module, name, spy)
        sound = audio(2, seed=8)

        def call():
            phone = self.phone()
            phone.connect()
            started = phone.start("sync-1")
            packets = list(rtp_packets(sound))
            send_rtp(iter(packets[:60]), started.server, started.port)
            time.sleep(1.2)  # a couple of syncs
            send_rtp(iter(packets[60:]), started.server, started.port)
            time.sleep(0.7)  # a durable sync of the second part
            phone.stop("sync-1")
            phone.close()

        yield deferToThread(call)
        yield self.tree.stopService()
        names = {name for name, _ in calls}
        self.assertTrue({"fsync", "syncfs", "rename", "open", "mkdir"} <= names, names)
        self.assertEqual([name for name, on_reactor in calls if on_reactor], [])
        self.assertEqual(read_wav(recordings(self.root)["sync-1"])[1], sound)

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
        """A disk that fails (ENOSPC on the second hand-over of audio to the
        file): the server sends the phone a RecordStopRequest, keeps what
        the first hand-over wrote as a valid file, and the phone's answer is
        accepted."""
        self.recorder.storage = attrs.evolve(
            self.recorder.storage,
            open_writer=lambda path, fmt: FailingWriter(WavFileWriter(path, fmt), fail_at=2),
        )
        sound = audio(3, seed=11)
        packets = list(rtp_packets(sound))

        def failing_call():
            phone = self.phone("crlf")
            phone.connect()
            started = phone.start("full-1")
            # Two seconds, then (after a sync has written them) one more.
            send_rtp(iter(packets[:100]), started.server, started.port)
            time.sleep(1.0)
            send_rtp(iter(packets[100:]), started.server, started.port)
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
        written = read_wav(path)[1]
        self.assertEqual(written, sound[:len(written)])
        self.assertTrue(8000 <= len(written) <= 16000, len(written))
        sidecar = sidecar_of(path)
        self.assertEqual(sidecar["stopped_by"], "server")
        self.assertIn("No space left on device", sidecar["error"])
        self.assertEqual(float(ffprobe(path)["duration"]), len(written) / 8000)

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


class FullDiskEndToEndTests(TestCase):
    """A real file system that fills up mid-call: a 3 MB tmpfs."""

    timeout = 60

    def mount_tmpfs(self, megabytes: int) -> str:
        if os.geteuid() != 0:
            raise SkipTest("mounting a tmpfs needs root")
        where = os.path.abspath(self.mktemp())
        os.makedirs(where)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", where],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise SkipTest(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", where], check=False)
        return where

    @inlineCallbacks
    def test_tmpfs_fills_mid_call(self):
        """The disk fills during a call: the server stops the recording
        (RecordStopRequest, reason "disk full") before the disk is full,
        the file is a valid WAV of what was received, and the next Start is
        refused with reason "disk full"."""
        where = self.mount_tmpfs(3)
        with open(os.path.join(where, "filler"), "wb") as filler:
            filler.write(b"\0" * 1_800_000)  # leaves about 1.3 MB
        root = os.path.join(where, "recordings")
        tree = makeService({
            "control": {"listen": "tcp:0:interface=127.0.0.1"},
            "http": {"listen": "tcp:0:interface=127.0.0.1"},
            "rtp": {"interface": "127.0.0.1", "port_range": [44000, 44999]},
            "storage": {"root": root, "min_free_mb": 1},
        })
        tree.startService()
        self.addCleanup(lambda: tree.stopService() if tree.running else None)
        port = (yield tree.getServiceNamed("control").whenListening()).getHost().port
        sound = audio(150, seed=3)  # 1.2 MB: more than the room left

        def call():
            phone = SimulatedPhone("127.0.0.1", port, timeout=20)
            phone.connect()
            started = phone.start("full-1")
            assert started.result == "success", started
            send_rtp(rtp_packets(sound), started.server, started.port, interval=0.001)
            request = phone.receive()  # sent while the disk filled
            phone.send(StopResponse("full-1", "success"))
            second = phone.start("full-2")
            phone.close()
            return request, second

        request, second = yield deferToThread(call)
        self.assertEqual((request.recording_id, request.reason), ("full-1", "disk full"))
        self.assertEqual((second.result, second.reason), ("failed", "disk full"))
        yield self.wait_finished(root, "full-1")
        path = recordings(root)["full-1"]
        written = read_wav(path)[1]
        self.assertGreater(len(written), 0)
        self.assertEqual(written, sound[:len(written)])
        self.assertEqual(sidecar_of(path)["stop_reason"], "disk full")
        self.assertEqual(float(ffprobe(path)["duration"]), len(written) / 8000)

    @inlineCallbacks
    def wait_finished(self, root: str, recording_id: str):
        deadline = time.monotonic() + 10
        while recording_id not in recordings(root):
            self.assertLess(time.monotonic(), deadline)
            yield deferLater(reactor, 0.05, lambda: None)


class TwistdEndToEndTests(TestCase):
    """`twistd -n recsvc --config FILE` as a user runs it."""

    timeout = 60

    def test_twistd_records_stops_and_exits(self):
        """Under twistd: a call stopped by the phone, a call whose connection
        drops and a call still running at SIGTERM all end as byte-exact,
        ffprobe-readable files; the running one's phone is told; the process
        shuts down cleanly within seconds."""
        return deferToThread(self._run_twistd)

    def workdir(self) -> str:
        """A working directory with a config: control on a free loopback
        port, recordings under ./recordings."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        with open(os.path.join(workdir, "recsvc.yaml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump({
                "control": {"listen": "tcp:0:interface=127.0.0.1"},
                "http": {"listen": "tcp:0:interface=127.0.0.1"},
                "rtp": {"interface": "127.0.0.1", "port_range": [43000, 43999]},
                "storage": {"root": "recordings", "min_free_mb": 1},
            }, handle)
        return workdir

    def start_twistd(self, workdir: str) -> tuple[subprocess.Popen, int]:
        """``twistd -n recsvc`` in ``workdir``, and its control port. Its
        output is read by a thread, so a twistd that hangs silently fails
        the test after 20 s instead of hanging it."""
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        process = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "--logfile=-", "recsvc", "--config", "recsvc.yaml"],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.addCleanup(reap, process)
        output = process.output_lines = OutputLines(process.stdout)  # type: ignore[attr-defined]
        match = output.wait_for(r"Listening for control connections on 127\.0\.0\.1:(\d+)")
        if match:
            return process, int(match.group(1))
        process.kill()
        self.fail("twistd did not listen:\n" + "".join(output.seen))

    def test_kill9_then_restart(self):
        """kill -9 in the middle of a call, then a restart: the recording is
        a playable file with all but at most the last second of what was
        sent, its sidecar marked interrupted (server crash) and keeping the
        call's metadata."""
        return deferToThread(self._kill9)

    def _kill9(self):
        workdir = self.workdir()
        process, port = self.start_twistd(workdir)
        sound = audio(3, seed=42)
        try:
            phone = SimulatedPhone("127.0.0.1", port)
            phone.connect()
            started = phone.start("crash-1")
            send_rtp(rtp_packets(sound), started.server, started.port, interval=0.02)
            process.kill()  # SIGKILL: no shutdown, no finishing
            process.wait()
            phone.close()
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        self.assertEqual(recordings(os.path.join(workdir, "recordings")), {})
        process, port = self.start_twistd(workdir)
        try:
            deadline = time.monotonic() + 10
            while "crash-1" not in recordings(os.path.join(workdir, "recordings")):
                self.assertLess(time.monotonic(), deadline, "not recovered")
                time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(10)
        path = recordings(os.path.join(workdir, "recordings"))["crash-1"]
        kept = read_wav(path)[1]
        self.assertEqual(kept, sound[:len(kept)])
        self.assertGreaterEqual(len(kept), len(sound) - 8000)
        sidecar = sidecar_of(path)
        self.assertEqual(
            (sidecar["stop_reason"], sidecar["stopped_by"], sidecar["interrupted"]),
            ("server crash", "server", True),
        )
        self.assertEqual((sidecar["id"], sidecar["remote_number"]), ("crash-1", "13800138000"))
        self.assertEqual(sidecar["bytes"], len(kept))
        self.assertEqual(float(ffprobe(path)["duration"]), len(kept) / 8000)
        self.assertFalse(os.path.exists(path + ".part"))

    def _run_twistd(self):
        workdir = self.workdir()
        process, port = self.start_twistd(workdir)
        try:
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
            self.assertIn("Server Shut Down.", process.output_lines.rest())
            phone.close()
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        found = recordings(os.path.join(workdir, "recordings"))
        self.assertEqual(sorted(found), ["a", "b", "c"])
        expected_by = {"a": "phone", "b": "connection", "c": "server"}
        for name, path in found.items():
            self.assertEqual(read_wav(path)[1], sounds[name])
            self.assertEqual(sidecar_of(path)["stopped_by"], expected_by[name])
            stream = ffprobe(path)
            self.assertEqual((stream["codec_name"], float(stream["duration"])), ("pcm_alaw", 1.0))


class MediaEndToEndTests(LoopbackServiceMixin, TestCase):
    """RTP as real networks deliver it, over loopback, checked byte for byte."""

    def send_plan(self, port: int, datagrams: list[tuple[str, bytes]]) -> None:
        """Send (source address, datagram) pairs; each source address keeps
        one socket, so one sender keeps one port."""
        sockets = {}
        try:
            for host, datagram in datagrams:
                if host not in sockets:
                    sockets[host] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sockets[host].bind((host, 0))
                sockets[host].sendto(datagram, ("127.0.0.1", port))
                time.sleep(0.0005)
        finally:
            for sock in sockets.values():
                sock.close()

    def test_faulty_network(self):
        """Loss (5%), reordering, duplicates, a mid-call SSRC change, 30 ms
        packets, comfort noise and DTMF: the file's length matches the
        timestamps and every received payload sits at its offset byte for
        byte; a foreign sender's packets never appear in it (nor are more
        of them counted than it sent); the sidecar
        lists the digit and the counts."""
        return self.faulty_network(seed=5)

    def test_faulty_network_other_faults(self):
        """The same with another pattern of faults."""
        return self.faulty_network(seed=6)

    def test_faulty_network_third_pattern(self):
        """The same with a third pattern of faults."""
        return self.faulty_network(seed=7)

    @inlineCallbacks
    def faulty_network(self, seed: int):
        sound = audio(6, seed=21)
        plan = plan_call(
            sound, ptime_ms=30, ssrc_changes=(24000,), silences=((8000, 4000),),
            dtmf=((30000, 5, 1600),), seed=4,
        )
        rng = random.Random(seed)
        count = len(plan)
        # Left intact: the first and last packets (where the file begins and
        # ends), the CN and DTMF packets and their neighbours (which say what
        # a silence is), and the last and first packets around the SSRC
        # change (a new stream is placed after what the old one was seen to
        # reach, and this sender sends faster than real time).
        keep = {0, count - 1}
        for index, planned in enumerate(plan):
            if planned.kind != "audio":
                keep.update((index - 1, index, index + 1))
            elif index and plan[index - 1].packet.ssrc != planned.packet.ssrc:
                keep.update((index - 1, index))
        lost = {i for i in range(count) if i not in keep and rng.random() < 0.05}
        order = [i for i in range(count) if i not in lost]
        for k in range(len(order) - 1):
            if order[k] not in keep and order[k + 1] not in keep and rng.random() < 0.1:
                order[k], order[k + 1] = order[k + 1], order[k]
        duplicates = [i for i in order if i not in keep and rng.random() < 0.05]
        datagrams = []
        for index in order + duplicates:
            datagrams.append(("127.0.0.1", build_rtp(plan[index].packet)))
            if rng.random() < 0.1:
                forged = attrs.evolve(plan[index].packet, payload=b"\x99" * 240)
                datagrams.append(("127.0.0.2", build_rtp(forged)))
        self.assertTrue(lost and duplicates)

        def call():
            phone = self.phone()
            phone.connect()
            started = phone.start(f"net-{seed}")
            self.send_plan(started.port, datagrams)
            stopped = phone.stop(f"net-{seed}")
            phone.close()
            return stopped

        stopped = yield deferToThread(call)
        self.assertEqual(stopped.result, "success")
        path = recordings(self.root)[f"net-{seed}"]
        _, data, _ = read_wav(path)
        expected = expected_recording(plan, set(order), b"\xd5")
        self.assertEqual(len(data), len(expected))
        self.assertEqual(data, expected)
        self.assertNotIn(b"\x99" * 240, data)
        sidecar = sidecar_of(path)
        self.assertEqual([d["digit"] for d in sidecar["dtmf"]], ["5"])
        self.assertEqual(sidecar["dtmf"][0]["offset_s"], 3.75)
        self.assertEqual(sidecar["dtmf"][0]["duration_ms"], 200.0)
        self.assertEqual(sidecar["packets_lost"], len(lost))
        # Counted until the port is connected to the phone; dropped by the
        # kernel after that.
        self.assertLessEqual(sidecar["packets_rejected"].get("foreign address", 0),
                             sum(1 for host, _ in datagrams if host == "127.0.0.2"))
        self.assertEqual(sidecar["comfort_noise_ms"], 500.0)
        self.assertEqual(sidecar["stream_restarts"], 1)
        self.assertEqual(sidecar["duration_s"], len(expected) / 8000)
        # Every repeat is dropped: as a duplicate, or, for repeats of the
        # first stream arriving after the change of SSRC, as another source
        # (or, if enough of them come in a row, a duplicate after all).
        self.assertEqual(
            sidecar["packets_duplicate"] + sidecar["packets_rejected"].get("unconfirmed source", 0),
            len(duplicates),
        )
        self.assertEqual(sidecar["packets_late"], 0)
        self.assertEqual(sidecar["packets_received"], sum(
            1 for i in order if plan[i].kind == "audio"))
        self.assertEqual(sidecar["gaps"]["count"], len([
            i for i in lost if i - 1 not in lost]))
        self.assertGreater(sidecar["gaps"]["filled_ms"], 0)
        self.assertGreaterEqual(sidecar["jitter_ms"], 0)
        self.assertEqual(sidecar["discontinuities"], [])
        self.assertGreaterEqual(sidecar["source_switches"], 1)

    @inlineCallbacks
    def test_g722(self):
        """A G.722 call is stored as 16 kHz 16-bit PCM, the G.722 decoding of
        the payloads sent (RTP clock 8000, RFC 3551)."""
        import G722

        encoder = G722.G722(16000, 64000)
        tone = array.array("h", (int(9000 * math.sin(i / 7)) for i in range(16000)))
        payload = encoder.encode(tone)  # 8000 bytes: one second, 8000 RTP ticks

        def call():
            phone = self.phone()
            phone.connect()
            started = phone.start("g722-1", codec="G722")
            assert started.result == "success", started
            send_rtp(rtp_packets(payload, "G722"), started.server, started.port)
            stopped = phone.stop("g722-1")
            phone.close()
            return stopped

        yield deferToThread(call)
        path = recordings(self.root)["g722-1"]
        fmt, data, _ = read_wav(path)
        self.assertEqual(fmt, {"tag": 1, "channels": 1, "rate": 16000, "bits": 16})
        decoded = G722.G722(16000, 64000, use_numpy=False).decode(payload)
        self.assertEqual(data, decoded.tobytes())
        self.assertEqual(sidecar_of(path)["duration_s"], 1.0)
        self.assertEqual(float(ffprobe(path)["duration"]), 1.0)


class RefusedAddressEndToEndTests(LoopbackServiceMixin, TestCase):
    """control.allow without 127.0.0.1: a connection from it is closed at once."""

    def more_config(self):
        return {"control": {"listen": "tcp:0:interface=127.0.0.1", "allow": ["10.0.0.0/8"]}}

    @inlineCallbacks
    def test_connection_refused(self):
        """Over a real socket, a connection from an address not in
        control.allow is closed before anything is answered, and nothing is
        recorded."""
        def talk():
            # Closed at once (reset): whether at connect, send or read.
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as client:
                    client.sendall(b"cmd=RecordStartRequest&id=x&device=00a859000001&codec=PCMA")
                    return client.recv(1024)
            except ConnectionError:
                return b""
        self.assertEqual((yield deferToThread(talk)), b"")
        self.assertEqual(len(self.recorder.registry), 0)


class DeviceAllowEndToEndTests(LoopbackServiceMixin, TestCase):
    """devices.allow: a phone not on it is told why; one on it records."""

    def more_config(self):
        return {"devices": {"allow": ["00-A8-59-12-34-56"]}}

    @inlineCallbacks
    def test_disallowed_mac_gets_a_clear_failure(self):
        """Over a real socket, a phone on devices.allow (spelt another way)
        records, and one not on it is answered failed with reason "device
        not allowed"."""
        def calls():
            allowed = SimulatedPhone("127.0.0.1", self.port, device="00:a8:59:12:34:56")
            other = SimulatedPhone("127.0.0.1", self.port, device="00:a8:59:99:99:99")
            try:
                allowed.connect()
                other.connect()
                return allowed.start("ok-1"), other.start("no-1")
            finally:
                allowed.close()
                other.close()
        accepted, refused = yield deferToThread(calls)
        self.assertEqual(accepted.result, "success")
        self.assertEqual((refused.result, refused.reason), ("failed", "device not allowed"))
