"""Tests for recsvc.session: the recording state machine and its events."""

from __future__ import annotations

import errno
import json
import os

import attrs
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from recsvc.media.codec import CODECS
from recsvc.media.dtmf import TelephoneEvent, build_event
from recsvc.media.pipeline import MediaPipeline, MediaPolicy
from recsvc.control.commands import CallParties
from recsvc.media.rtp import RtpPacket
from recsvc.session import (
    BY_CONNECTION,
    BY_PHONE,
    BY_SERVER,
    RECORDING,
    STOPPED,
    STOPPING,
    IRecordingEvents,
    Limits,
    Recording,
    RecordingContext,
)
from recsvc.storage.folder import Storage, StorageError, sidecar_path
from recsvc.summary import RecordingInfo
from recsvc.testing import (
    FailingWriter,
    FakePhoneLink,
    ManualRunner,
    MemoryWavWriter,
    run_now,
)
from tests.support.events import KeptEvents, no_file
from tests.support.syncs import spy_syncs


def packet(sequence: int, payload: bytes = b"\x01" * 160, payload_type: int = 8) -> RtpPacket:
    return RtpPacket(
        payload_type=payload_type, sequence=sequence, timestamp=sequence * 160,
        ssrc=1234, payload=payload,
    )


class RecordingTestsMixin:
    codec_name = "PCMA"
    audio_format = "g711"

    def make_recording(
        self, fail_at=None, close_error=None, runner=run_now, limits=None, parts=None,
        window_ms=20, sync_files=True,
    ) -> Recording:
        """A recording on memory writers, by default with a 20 ms reorder
        window, so that in-order audio is written as it comes."""
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
        self.parts: list[MemoryWavWriter] = []

        def open_part(number: int) -> MemoryWavWriter:
            writer = MemoryWavWriter(
                os.path.join(self.root, f"call_part{number}.wav"), self.storage.wav_format(codec)
            )
            self.parts.append(writer)
            return writer

        self.events = KeptEvents(make_part=open_part if parts else no_file)
        self.stopped = self.events.stopped_recordings
        recording = Recording(
            info=RecordingInfo(
                recording_id="42",
                device="00:a8:59:00:00:01",
                codec=codec,
                direction="in",
                parties=CallParties("2001", "Desk", "+8613800138000", "Alice"),
                peer="127.0.0.1",
            ),
            started_at=self.clock.seconds(),
            first_file=FailingWriter(self.memory, fail_at=fail_at, close_error=close_error),
            media=MediaPipeline(
                codec, self.storage.encoder(codec), "127.0.0.1", MediaPolicy(reorder_window_ms=window_ms)
            ),
            context=RecordingContext(
                storage=self.storage, clock=self.clock, run_blocking=runner,
                limits=limits or Limits(),
            ),
            events=self.events,
            link=self.link,
        )
        recording.sync_files = sync_files
        return recording

    def feed(self, recording: Recording, sequence: int, payload: bytes = b"\x01" * 160,
             payload_type: int = 8, timestamp: int | None = None) -> None:
        """Packet ``sequence`` from the phone, 20 ms after the one before,
        handed to the file at once."""
        self.clock.advance(0.02)
        rtp = packet(sequence, payload, payload_type)
        if timestamp is not None:
            rtp = attrs.evolve(rtp, timestamp=timestamp)
        recording.packet_received(rtp, ("127.0.0.1", 5004))
        recording.sync()  # as the service does every sync_interval

    def sidecar(self) -> dict:
        with open(sidecar_path(self.memory.path), encoding="utf-8") as handle:
            return json.load(handle)


class RecordingEventsTests(RecordingTestsMixin, SynchronousTestCase):
    def test_kept_events_provide_the_interface(self) -> None:
        """The tests' events declare IRecordingEvents and have every
        method, so they cannot drift from what a recording calls."""
        self.assertTrue(verifyObject(IRecordingEvents, KeptEvents()))

    def test_events_in_order(self) -> None:
        """A recording tells its events that it started (once its first
        file exists), then of each finished file with its summary, then
        that it stopped, once, after the files."""
        recording = self.make_recording(limits=Limits(max_duration=1.0), parts=True)
        self.assertEqual(self.events.started_recordings, [])
        recording.begin()
        self.assertEqual(self.events.started_recordings, [recording])
        for sequence in range(60):
            self.feed(recording, sequence)
        self.assertEqual([path for path, _ in self.events.finished_files],
                         [self.memory.path])
        self.assertEqual(self.events.stopped_recordings, [])
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.successResultOf(recording.stop("again", BY_PHONE))
        self.assertEqual([path for path, _ in self.events.finished_files],
                         [self.memory.path, self.parts[0].path])
        self.assertEqual([summary.part for _, summary in self.events.finished_files], [1, 2])
        self.assertEqual(self.events.stopped_recordings, [recording])
        self.assertEqual(self.events.started_recordings, [recording])


class RecordingTests(RecordingTestsMixin, SynchronousTestCase):
    def test_payloads_written_in_sequence_order(self) -> None:
        """Packets of the recording's payload type are written in sequence
        order, byte for byte, even when they arrive slightly out of order."""
        recording = self.make_recording(window_ms=100)
        for sequence in (10, 12, 11, 13):
            self.feed(recording, sequence, bytes([sequence]) * 160)
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.memory.contents()[-640:], b"".join(bytes([s]) * 160 for s in range(10, 14)))

    def test_other_payload_types_rejected(self) -> None:
        """Another codec's payload and non-RTP datagrams are counted as
        rejected, by reason, and never reach the file."""
        recording = self.make_recording()
        self.feed(recording, 1, payload_type=0)
        self.feed(recording, 2, payload_type=18)
        self.feed(recording, 3, payload_type=0)
        recording.datagram_invalid()
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.memory.data_bytes, 0)
        self.assertEqual(
            summary.stats.rejected, {"payload type 0": 2, "payload type 18": 1, "not rtp": 1}
        )

    def test_finished_line_says_how_long_after_the_stop(self) -> None:
        """The log says when a recording's files are finished, and how long
        after its stop (the time a phone waits for its Stop's answer)."""
        runner = ManualRunner()
        recording = self.make_recording(runner=runner)
        runner.run_pending()
        self.feed(recording, 1)
        runner.run_pending()
        with capturedLogs() as events:
            stopped = recording.stop("hangup", BY_PHONE)
            self.clock.advance(0.0125)
            runner.run_pending()
        self.successResultOf(stopped)
        [finished] = [e for e in events if "finished in" in e["log_format"]]
        self.assertEqual((finished["recordingId"], finished["files"], finished["stopMs"]),
                         ("42", 1, 12.5))

    def test_stop_writes_sidecar(self) -> None:
        """Stopping finishes the WAV and writes a sidecar with the call's
        metadata, times in ISO 8601 UTC, duration and packet counts."""
        recording = self.make_recording()
        for sequence in range(50):
            self.feed(recording, sequence)
        self.clock.advance(0.5)
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
        self.assertEqual((data["part"], data["previous"], data["next"]), (1, None, None))
        self.assertEqual(summary.to_json(), data)

    def test_lost_packets_counted(self) -> None:
        """Sequence numbers that never arrive are counted as lost."""
        recording = self.make_recording()
        for sequence in (1, 2, 5, 6):
            self.feed(recording, sequence)
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(summary.stats.lost, 2)
        self.assertEqual(summary.stats.received, 4)
        self.assertEqual(summary.stats.gaps, 1)
        self.assertEqual(self.memory.data_bytes, 6 * 160)

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
        recording.begin()
        runner.run_pending()
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
        self.feed(recording, 1)
        recording.stop("hangup", BY_PHONE)
        self.feed(recording, 2)
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
            self.feed(recording, sequence, bytes([sequence + 1]) * 160)
        self.assertEqual(recording.state, STOPPED)
        self.assertEqual(len(self.link.stop_requests), 1)
        recording_id, reason = self.link.stop_requests[0]
        self.assertEqual(recording_id, "42")
        self.assertIn("No space left", reason)
        # The first packet waits for the second (the window opens), then one
        # write each: writes 1 and 2 reach the file, write 3 fails.
        self.assertEqual(self.memory.contents()[-480:], b"\x01" * 160 + b"\x02" * 160 + b"\x03" * 160)
        self.assertEqual(self.memory.data_bytes, 480)
        data = self.sidecar()
        self.assertEqual(data["stopped_by"], "server")
        self.assertEqual(data["packets_received"], 4)
        self.assertEqual(data["bytes"], 480)
        self.assertIn("No space left", data["error"])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_close_error_fails_stop(self) -> None:
        """If the file cannot be finished, every waiter gets a StorageError
        and the sidecar still records what happened; the file, there with
        its sidecar, is reported as kept, not as finished."""
        recording = self.make_recording(close_error=OSError(errno.EIO, "Input/output error"))
        with open(self.memory.path, "wb"):  # (under its name, as a real close leaves it)
            pass
        failure = self.failureResultOf(recording.stop("hangup", BY_PHONE), StorageError)
        self.assertIn("Input/output error", failure.getErrorMessage())
        self.assertEqual(self.sidecar()["error"], "Input/output error")
        self.assertEqual([(path, summary.error) for path, summary in self.events.kept_files],
                         [(self.memory.path, "Input/output error")])
        self.assertEqual(self.events.finished_files, [])
        self.assertEqual(recording.state, STOPPED)
        self.failureResultOf(recording.stop("again", BY_PHONE), StorageError)

    def test_close_error_without_the_file_reports_nothing(self) -> None:
        """A file that could not be finished and is not under its name
        (its rename failed) is reported neither as kept nor as finished."""
        recording = self.make_recording(close_error=OSError(errno.EIO, "Input/output error"))
        self.failureResultOf(recording.stop("hangup", BY_PHONE), StorageError)
        self.assertEqual((self.events.kept_files, self.events.finished_files), ([], []))

    def test_pcm16_transcodes(self) -> None:
        """With storage format pcm16, payloads are stored decoded; the
        duration is in samples, not bytes."""
        self.audio_format = "pcm16"
        recording = self.make_recording()
        self.feed(recording, 1, b"\xd5" * 160)
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
        recording.begin()
        runner.run_pending()
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

    def test_no_first_packet(self) -> None:
        """No RTP at all within first_packet_timeout: the server stops the
        recording and tells the phone why."""
        recording = self.make_recording(limits=Limits(first_packet_timeout=10, timeout=60))
        recording.begin()
        self.clock.advance(9.9)
        self.assertEqual(recording.state, RECORDING)
        self.clock.advance(0.1)
        self.assertEqual(recording.state, STOPPED)
        self.assertEqual(self.link.stop_requests, [("42", "no RTP received")])
        self.assertEqual(self.sidecar()["stopped_by"], "server")

    def test_rtp_timeout(self) -> None:
        """RTP that stops for rtp.timeout seconds stops the recording; a
        pause shorter than that (hold) does not."""
        recording = self.make_recording(limits=Limits(first_packet_timeout=10, timeout=60))
        recording.begin()
        self.feed(recording, 1)
        self.clock.advance(59)
        self.feed(recording, 2)
        self.clock.advance(59)
        self.assertEqual(recording.state, RECORDING)
        self.clock.advance(1)
        self.assertEqual(recording.state, STOPPED)
        self.assertEqual(self.link.stop_requests, [("42", "no RTP for 60 s")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_rejected_traffic_does_not_keep_alive(self) -> None:
        """Packets that are rejected (a stranger's, another payload type) do
        not count as RTP for the timeouts: the recording still stops."""
        recording = self.make_recording(limits=Limits(first_packet_timeout=10, timeout=60))
        recording.begin()
        for second in range(12):
            self.clock.advance(1)
            recording.packet_received(packet(second), ("192.0.2.99", 5004))
            recording.packet_received(packet(100 + second, payload_type=18), ("127.0.0.1", 5004))
        self.assertEqual(recording.state, STOPPED)
        self.assertEqual(self.link.stop_requests, [("42", "no RTP received")])

    def test_arrival_clock_injected(self) -> None:
        """Arrival times come from the injected clock (monotonic in
        production), not the reactor's wall clock: a wall-clock step does
        not read as a pause in the RTP."""
        monotonic = [100.0]
        recording = self.make_recording(window_ms=20)
        recording._now = lambda: monotonic[0]
        for sequence in range(10):
            monotonic[0] += 0.02
            if sequence == 5:
                self.clock.advance(3600)  # the wall clock steps an hour
            recording.packet_received(packet(sequence), ("127.0.0.1", 5004))
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual((summary.data_bytes, summary.stats.stream_restarts), (1600, 0))

    def test_stop_cancels_timeout(self) -> None:
        """A stopped recording leaves no timer behind."""
        recording = self.make_recording()
        recording.begin()
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_max_duration_parts(self) -> None:
        """A recording longer than max_duration goes on in a new file: each
        part's sidecar links the next and the previous, and the parts
        together hold the whole call."""
        recording = self.make_recording(limits=Limits(max_duration=1.0), parts=True)
        recording.begin()
        for sequence in range(120):
            self.feed(recording, sequence, bytes([sequence]) * 160)
        summary = self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual([w.path[-14:] for w in self.parts], ["call_part2.wav", "call_part3.wav"])
        whole = self.memory.contents()[-8000:] + b"".join(w.contents()[-8000:] for w in self.parts[:1])
        self.assertEqual(whole, b"".join(bytes([s]) * 160 for s in range(100)))
        self.assertEqual(self.parts[1].data_bytes, 20 * 160)
        first = self.sidecar()
        self.assertEqual((first["part"], first["next"], first["stop_reason"]), (1, "call_part2.wav", "max duration"))
        with open(sidecar_path(self.parts[0].path), encoding="utf-8") as handle:
            second = json.load(handle)
        self.assertEqual((second["part"], second["previous"], second["next"]), (2, "call.wav", "call_part3.wav"))
        self.assertEqual((summary.part, summary.previous, summary.stop_reason), (3, "call_part2.wav", "hangup"))

    def test_parts_split_exactly_and_never_empty(self) -> None:
        """A part ends exactly at max_duration even inside a packet, and a
        recording that stops right at the limit leaves no empty part."""
        recording = self.make_recording(limits=Limits(max_duration=1.0), parts=True)
        recording.begin()
        for sequence in range(40):
            self.feed(recording, sequence, bytes([sequence]) * 300, timestamp=sequence * 300)
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        sizes = [self.memory.data_bytes] + [w.data_bytes for w in self.parts]
        self.assertEqual(sizes, [8000, 4000])
        recording = self.make_recording(limits=Limits(max_duration=1.0), parts=True)
        for sequence in range(50):
            self.feed(recording, sequence)
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual((self.memory.data_bytes, self.parts), (8000, []))

    def test_part_sidecars_list_their_own_digits(self) -> None:
        """A digit pressed in the second part is listed in that part's
        sidecar, at its offset within that file, and not in the first."""
        recording = self.make_recording(limits=Limits(max_duration=1.0), parts=True)
        recording.begin()
        for sequence in range(100):
            if sequence == 60:  # 1.2 s into the call: a key press
                for repeat in range(3):
                    self.feed(recording, 1000 + repeat, build_event(TelephoneEvent(7, True, 10, 160)),
                              payload_type=101, timestamp=60 * 160)
                continue
            self.feed(recording, sequence)
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.sidecar()["dtmf"], [])
        with open(sidecar_path(self.parts[0].path), encoding="utf-8") as handle:
            second = json.load(handle)
        self.assertEqual(second["dtmf"], [{"digit": "7", "offset_s": 0.2, "duration_ms": 20.0}])


class SlowDiskTests(RecordingTestsMixin, SynchronousTestCase):
    def test_bounded_buffer(self) -> None:
        """While the disk has not taken the last hand-over (a stalled mount),
        audio waits in memory only up to max_buffer_s; what overflows is
        dropped, counted in the sidecar (overflow_ms) and logged once."""
        runner = ManualRunner()
        recording = self.make_recording(runner=runner, limits=Limits(max_buffer_s=1.0))
        recording.begin()
        runner.run_pending()
        for sequence in range(2):
            self.feed(recording, sequence)  # the first hand-over is now stuck
        for sequence in range(2, 80):
            self.feed(recording, sequence)
        runner.run_pending()
        stopped = recording.stop("hangup", BY_PHONE)
        runner.run_pending()
        summary = self.successResultOf(stopped)
        # 1 s (50 packets) waits besides the stuck hand-over; 28 overflow.
        self.assertEqual(summary.overflow_ms, 28 * 20.0)
        self.assertEqual(self.sidecar()["overflow_ms"], 560.0)
        self.assertEqual(self.memory.data_bytes, (80 - 28) * 160)


class RotationTests(RecordingTestsMixin, SynchronousTestCase):
    def test_next_part_created_off_the_reactor(self) -> None:
        """At max_duration the next file is created by the blocking runner,
        not on the reactor thread; its audio waits meanwhile and lands in
        it, and the full file's sidecar names it once it exists."""
        runner = ManualRunner()
        recording = self.make_recording(runner=runner, limits=Limits(max_duration=1.0), parts=True)
        recording.begin()
        runner.run_pending()
        for sequence in range(60):
            self.feed(recording, sequence, bytes([sequence]) * 160)
        self.assertEqual(self.parts, [])  # not created yet: a job waits for a thread
        runner.run_pending()
        self.assertEqual(len(self.parts), 1)
        stopped = recording.stop("hangup", BY_PHONE)
        runner.run_pending()
        self.successResultOf(stopped)
        self.assertEqual(self.parts[0].contents()[-1600:], b"".join(bytes([s]) * 160 for s in range(50, 60)))
        self.assertEqual(self.sidecar()["next"], "call_part2.wav")

    def test_next_part_cannot_be_created(self) -> None:
        """If the next file cannot be created the recording stops as a
        write error (the phone is told) and the full file is kept."""
        recording = self.make_recording(limits=Limits(max_duration=1.0), parts=True)

        def no_room(number: int):
            raise OSError(28, "No space left on device")

        self.events.make_part = no_room
        recording.begin()
        for sequence in range(60):
            self.feed(recording, sequence)
        self.assertEqual(recording.state, STOPPED)
        self.assertEqual(len(self.link.stop_requests), 1)
        self.assertIn("No space left", self.link.stop_requests[0][1])
        self.assertEqual(self.memory.data_bytes, 8000)
        self.assertEqual(self.sidecar()["stop_reason"], "max duration")
        self.flushLoggedErrors()


class WriteErrorLogTests(RecordingTestsMixin, SynchronousTestCase):
    def test_logged_once(self) -> None:
        """A failing disk is logged once per recording: the first failure
        stops the recording, and the packets after it log nothing more."""
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        recording = self.make_recording(fail_at=1)
        for sequence in range(30):
            self.feed(recording, sequence)
        failures = [e for e in events if e.get("failed") == "write error"]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["recordingId"], "42")


class SyncTests(RecordingTestsMixin, SynchronousTestCase):
    def test_every_store_durable(self) -> None:
        """With sync_files (the default) every hand-over is also made
        durable: the writer is synced with durable=True each time, not
        every other time."""
        durable = spy_syncs(self)
        recording = self.make_recording()
        for sequence in range(5):
            self.feed(recording, sequence, bytes([sequence]) * 160)
        self.assertEqual(durable, [True] * 4)  # the first packet waits for the second
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.memory.data_bytes, 5 * 160)

    def test_never_durable_without_sync_files(self) -> None:
        """With sync_files off (the service syncs the whole filesystem) the
        audio still reaches the file at every hand-over, but the writer is
        never asked to make it durable."""
        durable = spy_syncs(self)
        recording = self.make_recording(sync_files=False)
        for sequence in range(5):
            self.feed(recording, sequence, bytes([sequence]) * 160)
        self.assertEqual(durable, [False] * 4)
        self.assertEqual(self.memory.data_bytes, 5 * 160)
        self.successResultOf(recording.stop("hangup", BY_PHONE))
        self.assertEqual(self.memory.contents()[-800:], b"".join(bytes([s]) * 160 for s in range(5)))

    def test_sync_returns_hand_over(self) -> None:
        """sync() returns the hand-over it starts, which fires once the
        audio is in the file; while it is under way, another sync returns
        that same one; with nothing under way and nothing new, None."""
        runner = ManualRunner()
        recording = self.make_recording(runner=runner)
        recording.begin()
        runner.run_pending()
        self.assertIsNone(recording.sync())  # nothing recorded yet
        for sequence in range(3):
            self.clock.advance(0.02)
            recording.packet_received(packet(sequence), ("127.0.0.1", 5004))
        stored = recording.sync()
        self.assertIsNotNone(stored)
        self.assertNoResult(stored)
        self.assertEqual(self.memory.data_bytes, 0)
        self.assertIs(recording.sync(), stored)
        runner.run_pending()
        self.successResultOf(stored)
        self.assertGreater(self.memory.data_bytes, 0)
        self.assertIsNone(recording.sync())

    def test_failed_hand_over_fires(self) -> None:
        """A hand-over that fails is the recording's own business (it stops
        with the write error): the Deferred sync() returned still fires
        without a failure, so whoever waits for the round is not failed."""
        runner = ManualRunner()
        recording = self.make_recording(runner=runner, fail_at=1)
        recording.begin()
        runner.run_pending()
        for sequence in range(3):
            self.clock.advance(0.02)
            recording.packet_received(packet(sequence), ("127.0.0.1", 5004))
        stored = recording.sync()
        runner.run_pending()
        self.assertIsNone(self.successResultOf(stored))
        self.assertEqual(recording.state, STOPPED)
        self.assertEqual(len(self.link.stop_requests), 1)
