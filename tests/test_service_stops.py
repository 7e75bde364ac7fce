"""Tests for RecorderService's stops: a Stop from the phone, a lost connection,
a write error, shutdown, and what a recording without audio leaves."""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import StopRequest
from recsvc.control.interfaces import UnknownRecording
from recsvc.storage.syncing import SYNC_TURNS
from recsvc.session import Limits
from recsvc.storage.folder import sidecar_path
from recsvc.testing import FakePhoneLink, ManualRunner, MemoryWriters
from tests.support.builders import rtp, start_request
from tests.support.service import ServiceTestsMixin


class StopTests(ServiceTestsMixin, SynchronousTestCase):
    def test_rtp_recorded_and_stopped(self) -> None:
        """RTP on the recording's port lands in its file; the phone's Stop
        finishes it with the Stop's reason and updates."""
        self.make_service()
        port = self.start().port
        for sequence in range(3):
            self.ports.deliver(port, rtp(sequence, bytes([sequence]) * 160))
        self.ports.deliver(port, b"not rtp")
        summary = self.successResultOf(self.service.stop_recording(
            StopRequest("7", "hangup", (("remote_number", "555"),))
        ))
        self.assertEqual(summary.stats.received, 3)
        self.assertEqual(summary.stats.rejected, {"not rtp": 1})
        writer = self.writers.only()
        self.assertEqual(writer.contents()[-480:], b"\0" * 160 + b"\1" * 160 + b"\2" * 160)
        [sidecar] = self.sidecars()
        self.assertEqual(sidecar["remote_number"], "555")
        self.assertEqual(sidecar["stop_reason"], "hangup")
        self.assertFalse(self.ports.open[port].listening)
        self.assertIsNone(self.service.registry.get("7"))

    def test_fast_lane_takes_steady_stream(self) -> None:
        """In the steady state packets go to the recording's fast lane, not
        through the RTP protocol; a sync hands them to the file, and the
        recording is what it would be packet by packet."""
        self.make_service()
        port = self.start().port
        recording = self.service.registry.get("7")
        payloads = [bytes([sequence % 251]) * 160 for sequence in range(200)]
        for sequence, payload in enumerate(payloads):
            self.ports.deliver(port, rtp(sequence, payload))
        # Only the first packets (until the reorder window has let audio
        # through) take the full path.
        self.assertGreater(recording.lane.count, 190)
        self.service.syncing.sync_turns(SYNC_TURNS)
        self.assertEqual(recording.lane.count, 0)
        summary = self.successResultOf(self.service.stop_recording(StopRequest("7", "hangup")))
        self.assertEqual(summary.stats.received, 200)
        self.assertEqual(summary.stats.lost, 0)
        self.assertEqual(self.writers.only().contents()[-len(payloads) * 160:], b"".join(payloads))

    def test_stop_keeps_audio_waiting_in_socket(self) -> None:
        """Datagrams that arrived before the Stop was read, still waiting in
        the socket, are written before the port closes."""
        self.make_service()
        port = self.start().port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        self.ports.queue(port, rtp(2, b"b" * 160))
        self.ports.queue(port, rtp(3, b"c" * 160))
        summary = self.successResultOf(self.service.stop_recording(StopRequest("7")))
        self.assertEqual(summary.stats.received, 3)
        self.assertEqual(self.writers.only().contents()[-480:], b"a" * 160 + b"b" * 160 + b"c" * 160)

    def test_write_error_at_stop(self) -> None:
        """A write error on the last audio, at the phone's Stop, still
        finishes the file with what it has; the Stop gets its answer and the
        sidecar names the error."""
        self.make_service(writers=MemoryWriters(fail_at=2))
        port = self.start().port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        self.ports.deliver(port, rtp(2, b"b" * 160))
        self.service.syncing.sync_turns(SYNC_TURNS)  # the first write: both packets
        self.ports.queue(port, rtp(3, b"c" * 160))
        summary = self.successResultOf(self.service.stop_recording(StopRequest("7", "hangup")))
        self.assertEqual((summary.stopped_by, summary.stop_reason), ("phone", "hangup"))
        self.assertIn("No space left", summary.error)
        self.assertEqual(summary.data_bytes, 320)
        self.assertEqual(self.link.stop_requests, [])

    def test_long_recording_goes_on_in_parts(self) -> None:
        """Past max_duration the recording goes on in NAME_part2.wav; the
        first file is finished with stop_reason "max duration" and names the
        next one."""
        self.make_service(limits=Limits(max_duration=1.0))
        port = self.start().port
        for sequence in range(60):
            self.ports.deliver(port, rtp(sequence, bytes([sequence]) * 160))
        summary = self.successResultOf(self.service.stop_recording(StopRequest("7")))
        first, second = sorted(self.writers.writers)
        self.assertTrue(second.endswith("_7_part2.wav"), second)
        self.assertEqual(self.writers.writers[first].data_bytes, 8000)
        self.assertEqual(self.writers.writers[second].data_bytes, 1600)
        with open(sidecar_path(first), encoding="utf-8") as handle:
            sidecar = json.load(handle)
        self.assertEqual((sidecar["stop_reason"], sidecar["next"]), ("max duration", os.path.basename(second)))
        self.assertEqual((summary.part, summary.previous), (2, os.path.basename(first)))

    def test_stop_unknown(self) -> None:
        """A Stop for an id that is not recording fails with UnknownRecording."""
        self.make_service()
        self.failureResultOf(self.service.stop_recording(StopRequest("nope")), UnknownRecording)

    def test_stop_without_reason(self) -> None:
        """A Stop with no reason is recorded as stopped by phone."""
        self.make_service()
        self.start()
        summary = self.successResultOf(self.service.stop_recording(StopRequest("7")))
        self.assertEqual((summary.stop_reason, summary.stopped_by), ("stopped by phone", "phone"))

    def test_connection_lost_stops_its_recordings(self) -> None:
        """A lost control connection stops the recordings it started (kept as
        finished files, stopped_by connection) and no others."""
        self.make_service()
        other = FakePhoneLink()
        self.start(start_request("1"))
        self.start(start_request("2"), link=other)
        self.service.link_lost(self.link)
        self.assertIsNone(self.service.registry.get("1"))
        self.assertIsNotNone(self.service.registry.get("2"))
        sidecar = self.sidecar_of("1")
        self.assertEqual((sidecar["stop_reason"], sidecar["stopped_by"]), ("connection lost", "connection"))
        self.assertEqual(self.link.stop_requests, [])

    def test_write_error_stops_only_that_recording(self) -> None:
        """A write error stops the recording it hits, tells its phone, and
        leaves the others recording."""
        self.make_service(writers=MemoryWriters(fail_at=2))
        first = self.start(start_request("1")).port
        second = self.start(start_request("2")).port
        for sequence in (1, 2, 3):  # the window opens at the second packet
            self.ports.deliver(first, rtp(sequence, bytes([sequence]) * 160))
            self.service.syncing.sync_turns(SYNC_TURNS)
        self.assertIsNone(self.service.registry.get("1"))
        self.assertEqual(len(self.link.stop_requests), 1)
        self.assertEqual(self.link.stop_requests[0][0], "1")
        self.assertIsNotNone(self.service.registry.get("2"))
        self.ports.deliver(second, rtp(1, b"c" * 160))
        self.assertEqual(self.service.registry.get("2").state, "recording")
        summary = self.successResultOf(self.service.stop_recording(StopRequest("2")))
        self.assertEqual((summary.stats.received, summary.data_bytes), (1, 160))


class ShutdownTests(ServiceTestsMixin, SynchronousTestCase):
    def test_shutdown_drains(self) -> None:
        """stopService stops every recording with reason shutdown, tells each
        phone, fires only once the files are finished, then closes the
        control connections; Starts meanwhile are refused."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.start(start_request("1"))
        self.start(start_request("2"))
        # What waits for the recordings to be finished (the webhook, at shutdown).
        finished = self.service.when_stopped()
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        self.assertNoResult(finished)
        self.assertEqual(sorted(self.link.stop_requests), [("1", "shutdown"), ("2", "shutdown")])
        self.assertFalse(self.link.disconnected)
        refused = self.start(start_request("3"))
        self.assertEqual((refused.result, refused.reason), ("failed", "server shutting down"))
        runner.run_pending()
        self.successResultOf(stopped)
        self.successResultOf(finished)
        self.assertTrue(self.link.disconnected)
        self.assertEqual(len(self.service.registry), 0)
        self.assertEqual({s["stop_reason"] for s in self.sidecars()}, {"shutdown"})

    def test_shutdown_with_nothing_recording(self) -> None:
        """stopService with no recordings fires at once."""
        self.make_service()
        self.successResultOf(self.service.stopService())


class NoAudioTests(ServiceTestsMixin, SynchronousTestCase):
    """A recording that never received RTP keeps no WAV, only its sidecar."""

    def test_no_wav_without_rtp(self) -> None:
        """A recording that times out without a packet leaves its sidecar
        (stop_reason "no RTP received", no file) and no WAV; one that had
        audio keeps its WAV."""
        from recsvc.storage.folder import Storage
        self.make_service()
        self.service.storage = Storage(self.root)
        silent = self.start(start_request("1"))
        heard = self.start(start_request("2", device="00a859000002"))
        self.ports.deliver(heard.port, rtp(0, b"\xd5" * 160))
        self.service.clock.advance(Limits().first_packet_timeout)
        self.successResultOf(self.service.stop_recording(StopRequest("2", "hangup")))
        self.assertEqual(silent.result, "success")
        wavs, sidecars = [], []
        for folder, _, names in os.walk(self.root):
            wavs += [name for name in names if name.endswith(".wav")]
            sidecars += [os.path.join(folder, name) for name in names if name.endswith(".json")]
        self.assertEqual([name.endswith("_2.wav") for name in wavs], [True])
        [sidecar] = [path for path in sidecars if path.endswith("_1.json")]
        with open(sidecar, encoding="utf-8") as handle:
            data = json.load(handle)
        self.assertEqual((data["stop_reason"], data["file"], data["bytes"], data["status"]),
                         ("no RTP received", None, 0, "finished"))
