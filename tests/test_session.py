"""Tests for recsvc.session: the recording state machine and the registry."""

from __future__ import annotations

import errno
import json
import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from recsvc.codec import CODECS
from recsvc.protocol.commands import CallParties
from recsvc.rtp import RtpPacket
from recsvc.session import (
    BY_CONNECTION,
    BY_PHONE,
    BY_SERVER,
    RECORDING,
    STOPPED,
    STOPPING,
    Recording,
    RecordingInfo,
    Registry,
)
from recsvc.storage import Storage, StorageError, sidecar_path
from recsvc.testing import (
    FailingWriter,
    FakePhoneLink,
    ManualRunner,
    MemoryWavWriter,
    run_now,
)


def packet(sequence: int, payload: bytes = b"\x01" * 160, payload_type: int = 8) -> RtpPacket:
    return RtpPacket(
        payload_type=payload_type, sequence=sequence, timestamp=sequence * 160,
        ssrc=1234, payload=payload,
    )


class RecordingTestsMixin:
    codec_name = "PCMA"
    audio_format = "g711"

    def make_recording(
        self, fail_at=None, close_error=None, runner=run_now, transcode=None
    ) -> Recording:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.storage = Storage(root=self.root, audio_format=self.audio_format)
        codec = CODECS[self.codec_name]
        self.memory = MemoryWavWriter(
            os.path.join(self.root, "call.wav"), self.storage.wav_format(codec)
        )
        self.link = FakePhoneLink()
        self.stopped: list[Recording] = []
        return Recording(
            info=RecordingInfo(
                recording_id="42",
                device="00:a8:59:00:00:01",
                codec=codec,
                direction="in",
                parties=CallParties("2001", "Desk", "+8613800138000", "Alice"),
                peer="127.0.0.1",
            ),
            started_at=self.clock.seconds(),
            writer=FailingWriter(self.memory, fail_at=fail_at, close_error=close_error),
            storage=self.storage,
            clock=self.clock,
            run_blocking=runner,
            transcode=transcode,
            on_stopped=self.stopped.append,
            link=self.link,
        )

    def sidecar(self) -> dict:
        with open(sidecar_path(self.memory.path), encoding="utf-8") as handle:
            return json.load(handle)


class RecordingTests(RecordingTestsMixin, SynchronousTestCase):
    def test_payloads_written_in_sequence_order(self) -> None:
        """Packets of the recording's payload type are written in sequence
        order, byte for byte, even when they arrive slightly out of order."""
        recording = self.make_recording()
        for sequence in (10, 12, 11, 13):
            recording.packet_received(packet(sequence, bytes([sequence]) * 160))
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.memory.contents()[-640:], b"".join(bytes([s]) * 160 for s in range(10, 14)))

    def test_other_payload_types_rejected(self) -> None:
        """Comfort noise, DTMF or another codec's payload are counted as
        rejected and never reach the file."""
        recording = self.make_recording()
        recording.packet_received(packet(1, payload_type=13))
        recording.packet_received(packet(2, payload_type=101))
        recording.packet_received(packet(3, payload_type=0))
        recording.datagram_invalid()
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.memory.data_bytes, 0)
        self.assertEqual((summary.packets.rejected, summary.packets.invalid), (3, 1))

    def test_stop_writes_sidecar(self) -> None:
        """Stopping finishes the WAV and writes a sidecar with the call's
        metadata, times in ISO 8601 UTC, duration and packet counts."""
        recording = self.make_recording()
        for sequence in range(50):
            recording.packet_received(packet(sequence))
        self.clock.advance(1.5)
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertTrue(self.memory.closed)
        data = self.sidecar()
        self.assertEqual(data["id"], "42")
        self.assertEqual(data["device"], "00:a8:59:00:00:01")
        self.assertEqual(data["codec"], "PCMA")
        self.assertEqual(data["direction"], "in")
        self.assertEqual(data["remote_number"], "+8613800138000")
        self.assertEqual(data["remote_name"], "Alice")
        self.assertEqual(data["local_number"], "2001")
        self.assertEqual(data["local_name"], "Desk")
        self.assertEqual(data["started_at"], "2023-11-14T22:13:20.000Z")
        self.assertEqual(data["stopped_at"], "2023-11-14T22:13:21.500Z")
        self.assertEqual(data["duration_s"], 1.0)
        self.assertEqual(data["stop_reason"], "hangup")
        self.assertEqual(data["stopped_by"], "phone")
        self.assertEqual(data["packets_received"], 50)
        self.assertEqual(data["packets_lost"], 0)
        self.assertEqual(data["bytes"], 8000)
        self.assertEqual(data["file"], "call.wav")
        self.assertEqual(summary.to_json(), data)

    def test_lost_packets_counted(self) -> None:
        """Sequence numbers that never arrive are counted as lost."""
        recording = self.make_recording()
        for sequence in (1, 2, 5, 6):
            recording.packet_received(packet(sequence))
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(summary.packets.lost, 2)
        self.assertEqual(summary.packets.received, 4)

    def test_stop_updates_parties(self) -> None:
        """Party fields given with the Stop replace the Start's (a transfer)."""
        recording = self.make_recording()
        self.successResultOf(
            recording.stop("hangup", BY_PHONE, (("remote_number", "555"), ("remote_name", "Bob")))
        )
        data = self.sidecar()
        self.assertEqual((data["remote_number"], data["remote_name"]), ("555", "Bob"))
        self.assertEqual(data["local_number"], "2001")

    def test_stop_idempotent_each_caller_own_deferred(self) -> None:
        """Stop twice while the files are being finished: two distinct
        Deferreds, neither fired until the files are on disk, both with the
        same summary; the first reason wins; the files are finished once."""
        runner = ManualRunner()
        recording = self.make_recording(runner=runner)
        first = recording.stop("hangup", BY_PHONE)
        second = recording.stop("shutdown", BY_SERVER)
        self.assertIsNot(first, second)
        self.assertEqual(recording.state, STOPPING)
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual(len(runner.pending), 1)
        runner.run_pending()
        summary = self.successResultOf(first)
        self.assertIs(self.successResultOf(second), summary)
        self.assertEqual((summary.stop_reason, summary.stopped_by), ("hangup", BY_PHONE))
        self.assertEqual(recording.state, STOPPED)
        self.assertEqual(self.stopped, [recording])

    def test_stop_after_stopped(self) -> None:
        """A stop after the recording has stopped fires at once with the
        same summary and finishes nothing again."""
        recording = self.make_recording()
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        again = self.successResultOf(recording.stop("shutdown", BY_SERVER))
        self.assertIs(again, summary)
        self.assertEqual(self.stopped, [recording])

    def test_packets_after_stop_ignored(self) -> None:
        """Once stopping, arriving packets are not written."""
        runner = ManualRunner()
        recording = self.make_recording(runner=runner)
        recording.packet_received(packet(1))
        recording.stop("hangup", BY_PHONE)
        recording.packet_received(packet(2))
        runner.run_pending()
        self.assertEqual(self.memory.data_bytes, 160)

    def test_server_stop_tells_phone(self) -> None:
        """A stop by the server sends the phone a RecordStopRequest with the
        reason; a stop by the phone or a lost connection sends nothing."""
        recording = self.make_recording()
        self.successResultOf(recording.stop("shutdown", BY_SERVER))
        self.assertEqual(self.link.stop_requests, [("42", "shutdown")])
        for stopped_by in (BY_PHONE, BY_CONNECTION):
            recording = self.make_recording()
            self.successResultOf(recording.stop("x", stopped_by))
            self.assertEqual(self.link.stop_requests, [])

    def test_write_error_stops_recording(self) -> None:
        """A write error stops the recording through the one stop path: the
        phone is told, the file keeps what was written before the error, and
        the sidecar names the error. The error is logged once."""
        recording = self.make_recording(fail_at=3)
        for sequence in range(6):
            recording.packet_received(packet(sequence, bytes([sequence + 1]) * 160))
        self.assertEqual(recording.state, STOPPED)
        self.assertEqual(len(self.link.stop_requests), 1)
        recording_id, reason = self.link.stop_requests[0]
        self.assertEqual(recording_id, "42")
        self.assertIn("No space left", reason)
        self.assertEqual(self.memory.contents()[-320:], b"\x01" * 160 + b"\x02" * 160)
        self.assertEqual(self.memory.data_bytes, 320)
        data = self.sidecar()
        self.assertEqual(data["stopped_by"], "server")
        self.assertEqual(data["packets_received"], 2)
        self.assertIn("No space left", data["error"])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_close_error_fails_stop(self) -> None:
        """If the file cannot be finished, every waiter gets a StorageError
        and the sidecar still records what happened."""
        recording = self.make_recording(close_error=OSError(errno.EIO, "Input/output error"))
        failure = self.failureResultOf(recording.stop("hangup", BY_PHONE), StorageError)
        self.assertIn("Input/output error", failure.getErrorMessage())
        self.assertEqual(self.sidecar()["error"], "Input/output error")
        self.assertEqual(recording.state, STOPPED)
        self.failureResultOf(recording.stop("again", BY_PHONE), StorageError)

    def test_pcm16_transcodes(self) -> None:
        """With a transcoder, payloads are stored decoded; the duration is in
        samples, not bytes."""
        self.audio_format = "pcm16"
        codec = CODECS["PCMA"]
        recording = self.make_recording(transcode=codec.to_pcm16)
        recording.packet_received(packet(1, b"\xd5" * 160))
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.memory.data_bytes, 320)
        self.assertEqual(summary.frames, 160)
        self.assertEqual(self.sidecar()["duration_s"], 0.02)
        self.assertEqual(self.memory.contents()[-320:], b"\x08\x00" * 160)

    def test_stop_updates_while_stopping(self) -> None:
        """A phone's Stop that arrives while a server stop is finishing the
        files still replaces the party fields; the first reason stays."""
        runner = ManualRunner()
        recording = self.make_recording(runner=runner)
        recording.stop("shutdown", BY_SERVER)
        phone = recording.stop("hangup", BY_PHONE, (("remote_number", "999"),))
        runner.run_pending()
        summary = self.successResultOf(phone)
        self.assertEqual((summary.stop_reason, summary.info.parties.remote_number), ("shutdown", "999"))
        self.assertEqual(self.sidecar()["remote_number"], "999")

    def test_begin_persists_start_metadata(self) -> None:
        """begin() writes a sidecar marked recording with what the phone said
        at Start; the stop replaces it with the finished one."""
        recording = self.make_recording()
        recording.begin()
        data = self.sidecar()
        self.assertEqual((data["status"], data["id"], data["remote_name"]), ("recording", "42", "Alice"))
        self.assertIsNone(data["stopped_at"])
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.sidecar()["status"], "finished")

    def test_stop_survives_failing_link(self) -> None:
        """A bug in telling the phone does not leave the stop hanging: the
        file is finished and every waiter fires."""
        recording = self.make_recording()

        class BrokenLink(FakePhoneLink):
            def send_stop_request(self, recording_id: str, reason: str) -> None:
                raise RuntimeError("link is broken")

        recording.link = BrokenLink()
        summary = self.successResultOf(recording.stop("shutdown", BY_SERVER))
        self.assertEqual(summary.stop_reason, "shutdown")
        self.assertTrue(self.memory.closed)
        self.assertEqual(self.stopped, [recording])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_initial_state(self) -> None:
        """A new recording is recording and has received nothing."""
        recording = self.make_recording()
        self.assertEqual(recording.state, RECORDING)
        self.assertEqual(recording.counts().received, 0)


class RegistryTests(SynchronousTestCase):
    def test_add_get_remove(self) -> None:
        """Recordings are found by id and removed only if they are the one
        registered under that id."""
        registry = Registry()
        first, other = _stub("1"), _stub("1")
        registry.add(first)
        self.assertIs(registry.get("1"), first)
        self.assertRaises(KeyError, registry.add, other)
        registry.remove(other)
        self.assertIs(registry.get("1"), first)
        registry.remove(first)
        self.assertIsNone(registry.get("1"))
        self.assertEqual(len(registry), 0)

    def test_iterate_while_removing(self) -> None:
        """Iterating the registry tolerates removal of recordings meanwhile
        (stopping all at shutdown removes them as they finish)."""
        registry = Registry()
        for name in "abc":
            registry.add(_stub(name))
        for recording in registry:
            registry.remove(recording)
        self.assertEqual(len(registry), 0)


class _Stub:
    def __init__(self, recording_id: str) -> None:
        self.recording_id = recording_id


def _stub(recording_id: str) -> Recording:
    return _Stub(recording_id)  # type: ignore[return-value]
