"""Tests for recsvc.service.RecorderService on fakes (clock, ports, writers)."""

from __future__ import annotations

import json
from typing import Any
import os

import attrs

from twisted.internet.defer import maybeDeferred
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import StopRequest
from recsvc.storage.diskspace import DiskSpace
from recsvc.control.interfaces import StopRefused, UnknownRecording
from recsvc.service import HAND_OVERS_AT_ONCE, SYNC_TURNS
from recsvc.session import RECORDING, Limits, Recording
from recsvc.storage.folder import sidecar_path
from recsvc.testing import (
    FakeIndexer,
    FakePhoneLink,
    FakePortPool,
    ManualRunner,
    MemoryWriters,
    run_now,
)
from recsvc.admission import StartRate, policy_of
from tests.support.builders import rtp, start_request
from tests.support.service import ServiceTestsMixin
from tests.support.syncs import spy_syncs


class StartTests(ServiceTestsMixin, SynchronousTestCase):
    def test_accepted_start_logs_no_refusal(self) -> None:
        """A Start that succeeds logs that it started, and nothing about a
        refusal."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.make_service()
        self.assertEqual(self.start().result, "success")
        formats = [e.get("log_format", "") for e in events]
        self.assertTrue(any("started from" in f for f in formats))
        self.assertFalse(any("refused" in f for f in formats), formats)

    def test_begin_bug_refuses_and_cleans_up(self) -> None:
        """A Start that fails to begin (a bug) is refused as an internal
        error: its port is closed and its file, once made, removed."""
        runner = ManualRunner()
        self.make_service(runner=runner)

        def broken(*args):
            raise ZeroDivisionError("a bug")

        self.service._begin = broken
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        refused = self.successResultOf(answer)
        self.assertEqual((refused.result, refused.reason), ("failed", "internal error"))
        self.assertFalse(any(port.listening for port in self.ports.open.values()))
        runner.run_pending()  # the file is made, then removed
        [writer] = self.writers.writers.values()
        self.assertTrue(writer.closed)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_start_logs_its_time(self) -> None:
        """The started line says how long the Start took, from its arrival
        to its answer (here held by start-up recovery): the benchmarks read
        it. Once the file exists a line names it and how long after the
        Start that was."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.make_service(runner=ManualRunner())
        self.service.recover()
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.service.clock.advance(0.0125)
        waiter, recover, args = self.runner.pending.pop(0)
        waiter.callback(recover(*args))
        self.assertEqual(self.successResultOf(answer).result, "success")
        [started] = [e for e in events if "started from" in e.get("log_format", "")]
        self.assertEqual(started["startMs"], 12.5)
        self.assertTrue(started["log_format"].endswith(" in {startMs} ms"))
        self.service.clock.advance(0.5)
        self.runner.run_pending()
        [created] = [e for e in events if "records to" in e.get("log_format", "")]
        self.assertEqual((created["createMs"], created["file"]),
                         (512.5, os.path.basename(next(iter(self.writers.writers)))))

    def test_start_opens_port_and_file(self) -> None:
        """A Start gets success with the control connection's local address
        and a port of its own; the recording is registered and its file open."""
        self.make_service()
        response = self.start()
        self.assertEqual(
            (response.recording_id, response.result, response.reason, response.server),
            ("7", "success", "", "127.0.0.9"),
        )
        self.assertIn(response.port, self.ports.open)
        self.assertTrue(self.ports.open[response.port].listening)
        self.assertIsNotNone(self.service.registry.get("7"))
        [path] = self.writers.writers
        self.assertTrue(path.startswith(os.path.abspath(self.root)))
        self.assertIn("00a859000001", path)

    def test_each_recording_own_port(self) -> None:
        """Two recordings get two different ports."""
        self.make_service()
        first = self.start(start_request("1"))
        second = self.start(start_request("2"))
        self.assertNotEqual(first.port, second.port)

    def test_advertise_fixed(self) -> None:
        """A configured advertise address is used instead of the local one."""
        self.make_service(advertise="192.0.2.5")
        self.assertEqual(self.start().server, "192.0.2.5")

    def test_repeated_start_same_device(self) -> None:
        """A retried Start (same id, same device) gets the same answer and
        re-attaches the recording to the newer connection."""
        self.make_service()
        first = self.start()
        newer = FakePhoneLink()
        again = self.start(link=newer)
        self.assertEqual(again, first)
        self.assertEqual(len(self.writers.writers), 1)
        self.successResultOf(self.service.stopService())
        self.assertEqual(newer.stop_requests, [("7", "shutdown")])
        self.assertEqual(self.link.stop_requests, [])

    def test_same_id_other_device_refused(self) -> None:
        """A Start for an id recording from another device is refused."""
        self.make_service()
        self.start()
        response = self.start(start_request(device="00a859000002"))
        self.assertEqual((response.result, response.reason), ("failed", "id already recording"))
        self.assertIsNone(response.port)

    def test_retry_while_stopping(self) -> None:
        """A retried Start for an id whose files are still being finished is
        refused with its own reason."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.start()
        runner.run_pending()
        self.service.stop_recording(StopRequest("7"))
        response = self.start()
        self.assertEqual((response.result, response.reason), ("failed", "id still stopping"))
        runner.run_pending()

    def test_file_created_off_the_reactor(self) -> None:
        """The Start is answered at once, its port open; the file is created
        behind it by the blocking runner. A retry meanwhile gets the same
        answer, and a Stop right behind it finishes the file once it exists."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        first = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        retry = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        answer = self.successResultOf(first)
        self.assertEqual((answer.result, self.successResultOf(retry)), ("success", answer))
        self.assertIn(answer.port, self.ports.open)
        self.assertEqual(self.writers.writers, {})
        stop = self.service.stop_recording(StopRequest("7", "hangup"))
        self.assertNoResult(stop)
        runner.run_pending()  # the file, its sidecars
        self.assertEqual(self.successResultOf(stop).stop_reason, "hangup")
        self.assertEqual(len(self.writers.writers), 1)

    def test_audio_kept_while_creating(self) -> None:
        """RTP that arrives before the file exists waits for it and is
        written to it."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        answer = self.successResultOf(self.service.start_recording(
            start_request(), self.link, "127.0.0.1", "127.0.0.9"))
        for sequence in range(5):
            self.ports.deliver(answer.port, rtp(sequence, bytes([sequence]) * 160))
        self.service.clock.advance(self.service.sync_interval)
        stop = self.service.stop_recording(StopRequest("7", "hangup"))
        runner.run_pending()
        self.assertEqual(self.successResultOf(stop).duration_s, 0.1)
        [writer] = self.writers.writers.values()
        self.assertTrue(writer.contents().endswith(b"".join(bytes([n]) * 160 for n in range(5))))

    def test_shutdown_while_creating(self) -> None:
        """A recording whose file is still being created when the service
        stops is stopped like any other (its phone told); the shutdown
        waits for the file and finishes it."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.assertEqual(self.successResultOf(answer).result, "success")
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(self.link.stop_requests, [("7", "shutdown")])
        runner.run_pending()
        self.successResultOf(stopped)
        self.assertEqual(self.sidecar_of("7")["stop_reason"], "shutdown")
        self.assertEqual([p.listening for p in self.ports.open.values()], [False])
        self.assertIsNone(self.service.registry.get("7"))

    def test_ipv4_mapped_local_address(self) -> None:
        """An IPv4 phone on an IPv6 listener is told its IPv4 address."""
        self.make_service()
        response = self.successResultOf(self.service.start_recording(
            start_request(), self.link, "::ffff:127.0.0.1", "::ffff:127.0.0.9"
        ))
        self.assertEqual(response.server, "127.0.0.9")

    def test_unsupported_codec(self) -> None:
        """An unsupported codec is refused by name and nothing is opened."""
        self.make_service()
        response = self.start(start_request(codec="G729"))
        self.assertEqual((response.result, response.reason), ("failed", "unsupported codec G729 (use PCMA, PCMU, G722)"))
        self.assertEqual(self.ports.open, {})
        self.assertEqual(self.writers.writers, {})

    def test_no_free_port(self) -> None:
        """With every port taken the Start is refused and no file is left."""
        self.make_service(ports=FakePortPool(41000, 41000))
        self.start(start_request("1"))
        response = self.start(start_request("2"))
        self.assertEqual((response.result, response.reason), ("failed", "no free port"))
        self.assertEqual(len(self.writers.writers), 1)

    def test_storage_not_writable(self) -> None:
        """A file that cannot be created refuses the Start and closes the port."""

        def refuse(path, fmt):
            raise PermissionError(13, "Permission denied")

        self.make_service(writers=MemoryWriters())
        self.service.storage = attrs.evolve(self.service.storage, open_writer=refuse)
        response = self.start()
        self.assertEqual((response.result, response.reason), ("failed", "storage not writable"))
        self.assertEqual([p.listening for p in self.ports.open.values()], [False])
        self.assertIsNone(self.service.registry.get("7"))
        self.flushLoggedErrors()


class CarryingTests(ServiceTestsMixin, SynchronousTestCase):
    """Each connection is told when it begins and ends carrying recordings
    (the per-address limit counts only the connections that do not)."""

    def test_told_when_carrying_begins_and_ends(self) -> None:
        """
        A connection carries from its Start (while the file is created)
        until its last recording has been removed; a refused Start never
        makes it carry.
        """
        self.make_service(runner=ManualRunner())
        answer = self.service.start_recording(start_request("1"), self.link, "127.0.0.1",
                                              "127.0.0.9")
        self.assertTrue(self.link.carrying)  # the file is being created
        self.runner.run_pending()
        self.assertEqual(self.successResultOf(answer).result, "success")
        self.start(start_request("2", device="00a859000002"))
        self.assertTrue(self.service.carries_recordings(self.link))
        stopping = self.service.stop_recording(StopRequest("1"))
        self.runner.run_pending()
        self.successResultOf(stopping)
        self.assertTrue(self.link.carrying)  # recording 2 goes on
        stopping = self.service.stop_recording(StopRequest("2"))
        self.runner.run_pending()
        self.successResultOf(stopping)
        self.assertFalse(self.link.carrying)
        other = FakePhoneLink()
        self.assertEqual(self.start(start_request("3", codec="G729"), link=other).result,
                         "failed")
        self.assertFalse(other.carrying)
        self.assertFalse(self.service.carries_recordings(other))

    def test_a_retry_on_a_new_connection_moves_the_recording(self) -> None:
        """A phone that repeats its Start on a new connection: the new one
        carries the recording, the old one no longer does."""
        self.make_service()
        self.start(start_request("1"))
        newer = FakePhoneLink()
        self.service.link_connected(newer)
        self.start(start_request("1"), link=newer)
        self.assertEqual((self.link.carrying, newer.carrying), (False, True))
        self.service.link_lost(self.link)  # the old connection breaks: nothing ends
        self.assertEqual(len(self.service.registry), 1)
        self.service.link_lost(newer)
        self.assertFalse(self.service.carries_recordings(newer))

    def test_a_retry_after_the_connection_broke_records_on_the_new_one(self) -> None:
        """
        A phone whose connection broke while its Start waited (for start-up
        recovery, or for its file after a disk error), and which repeats the
        Start on a new connection, records:
        the recording answers to the new connection and is not stopped for
        the old one's loss (the phone was answered success).
        """
        self.make_service(runner=ManualRunner())
        self.service.recover()  # (Starts wait for start-up recovery: held here)
        self.service.start_recording(start_request("1"), self.link, "127.0.0.1", "127.0.0.9")
        self.assertTrue(self.link.carrying)
        self.service.link_lost(self.link)
        newer = FakePhoneLink()
        self.service.link_connected(newer)
        again = self.service.start_recording(start_request("1"), newer, "127.0.0.1",
                                             "127.0.0.9")
        self.runner.run_pending()
        self.assertEqual(self.successResultOf(again).result, "success")
        recording = self.service.registry.get("1")
        self.assertEqual((recording.state, recording.link), (RECORDING, newer))
        self.assertEqual((self.link.carrying, newer.carrying), (False, True))


class OpeningTests(ServiceTestsMixin, SynchronousTestCase):
    def test_file_created_through_run_opening(self) -> None:
        """With run_opening set, a Start's file is created through it, not
        through run_blocking (which the writing keeps to itself)."""
        runner, opener = ManualRunner(), ManualRunner()
        self.make_service(runner=runner)
        self.service.run_opening = opener
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.assertEqual(self.successResultOf(answer).result, "success")
        self.assertEqual((len(opener.pending), runner.pending), (1, []))
        opener.run_pending()
        self.assertEqual(len(self.writers.writers), 1)
        self.assertEqual(opener.pending, [])

    def test_files_finished_through_run_finishing(self) -> None:
        """With run_finishing set, a stopped recording's files are finished
        through it (a Stop's answer does not wait behind the hand-overs),
        and the Stop is answered once that is done."""
        runner, finisher = ManualRunner(), ManualRunner()
        self.make_service(runner=runner)
        self.service.run_finishing = finisher
        self.start(start_request("1"))
        stopping = self.service.stop_recording(StopRequest("1"))
        runner.run_pending()  # (the last hand-over, if any)
        self.assertNoResult(stopping)
        self.assertEqual(len(finisher.pending), 1)
        finisher.run_pending()
        runner.run_pending()
        self.assertEqual(self.successResultOf(stopping).stop_reason, "stopped by phone")
        self.assertEqual(finisher.pending, [])

    def test_file_created_through_run_blocking(self) -> None:
        """Without run_opening, a Start's file is created through run_blocking."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.assertIsNone(self.service.run_opening)
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.assertEqual(self.successResultOf(answer).result, "success")
        self.assertEqual(len(runner.pending), 1)
        self.assertEqual(self.writers.writers, {})
        runner.run_pending()
        self.assertEqual(len(self.writers.writers), 1)

    def test_creation_bug_stops(self) -> None:
        """A file creation that fails with something other than a disk error
        (a bug) stops the recording as an internal error: the phone is told,
        its audio does not pile up with nowhere to go."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        answer = self.service.start_recording(start_request("1"), self.link, "127.0.0.1", "127.0.0.9")
        self.assertEqual(self.successResultOf(answer).result, "success")
        waiter, _, _ = runner.pending.pop(0)
        waiter.errback(ValueError("a bug"))
        runner.run_pending()
        self.assertEqual(self.link.stop_requests, [("1", "internal error")])
        self.assertIsNone(self.service.registry.get("1"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.flushLoggedErrors()

    def test_creation_failure_stops_then_refuses(self) -> None:
        """A file that cannot be created after the Start was answered stops
        the recording (the phone is told why). The Starts after it wait for
        their files and are refused if they fail too; once a file can be
        created again, Starts are answered at once again."""
        failing = [PermissionError(13, "Permission denied")] * 2
        opened = MemoryWriters()

        def create(path, fmt):
            if failing:
                raise failing.pop()
            return opened(path, fmt)

        runner = ManualRunner()
        self.make_service(runner=runner, writers=opened)
        self.service.storage = attrs.evolve(self.service.storage, open_writer=create)
        first = self.service.start_recording(start_request("1"), self.link, "127.0.0.1", "127.0.0.9")
        self.assertEqual(self.successResultOf(first).result, "success")
        runner.run_pending()
        self.assertEqual(self.link.stop_requests, [("1", "storage not writable: Permission denied")])
        self.assertIsNone(self.service.registry.get("1"))
        second = self.service.start_recording(start_request("2"), self.link, "127.0.0.1", "127.0.0.9")
        self.assertNoResult(second)
        runner.run_pending()
        refused = self.successResultOf(second)
        self.assertEqual((refused.result, refused.reason), ("failed", "storage not writable"))
        self.assertFalse(any(port.listening for port in self.ports.open.values()))
        third = self.service.start_recording(start_request("3"), self.link, "127.0.0.1", "127.0.0.9")
        self.assertNoResult(third)
        runner.run_pending()
        self.assertEqual(self.successResultOf(third).result, "success")
        fourth = self.service.start_recording(start_request("4"), self.link, "127.0.0.1", "127.0.0.9")
        self.assertEqual(self.successResultOf(fourth).result, "success")
        self.flushLoggedErrors()


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
        self.service.sync_turns(SYNC_TURNS)
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
        self.service.sync_turns(SYNC_TURNS)  # the first write: both packets
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
            self.service.sync_turns(SYNC_TURNS)
        self.assertIsNone(self.service.registry.get("1"))
        self.assertEqual(len(self.link.stop_requests), 1)
        self.assertEqual(self.link.stop_requests[0][0], "1")
        self.assertIsNotNone(self.service.registry.get("2"))
        self.ports.deliver(second, rtp(1, b"c" * 160))
        self.assertEqual(self.service.registry.get("2").state, "recording")
        summary = self.successResultOf(self.service.stop_recording(StopRequest("2")))
        self.assertEqual((summary.stats.received, summary.data_bytes), (1, 160))


class IndexHookTests(ServiceTestsMixin, SynchronousTestCase):
    """The service tells the index (recsvc.index.indexer) what it needs to know."""

    def test_each_finished_file_indexed(self) -> None:
        """A file is indexed once finished, its sidecar written: not before."""
        self.make_service()
        self.service.index = indexer = FakeIndexer(root=self.root)
        indexer.start()
        port = self.start().port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        self.assertEqual(indexer.calls, [])
        self.successResultOf(self.service.stop_recording(StopRequest("7")))
        [path] = self.writers.writers
        self.assertEqual(indexer.calls, [("file_finished", path)])
        self.assertTrue(os.path.exists(sidecar_path(path)))

    def test_each_part_indexed(self) -> None:
        """A recording that goes on in a second file has each file indexed
        as it is finished, the first before the second."""
        self.make_service(limits=Limits(max_duration=1.0))
        self.service.index = indexer = FakeIndexer(root=self.root)
        indexer.start()
        port = self.start().port
        for sequence in range(60):
            self.ports.deliver(port, rtp(sequence, bytes([sequence]) * 160))
        self.successResultOf(self.service.stop_recording(StopRequest("7")))
        first, second = sorted(self.writers.writers)
        self.assertTrue(second.endswith("_7_part2.wav"), second)
        self.assertEqual(indexer.calls, [("file_finished", first), ("file_finished", second)])

    def test_index_failure_spares_the_recording(self) -> None:
        """An index that fails when told of a finished file is logged; the
        recording is finished all the same."""
        self.make_service()

        class BrokenIndexer(FakeIndexer):
            def file_finished(self, wav_path: str) -> None:
                raise RuntimeError("index broken")

        self.service.index = broken = BrokenIndexer(root=self.root)
        broken.start()
        port = self.start().port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        summary = self.successResultOf(self.service.stop_recording(StopRequest("7")))
        self.assertEqual(summary.stats.received, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_index_caught_up_after_recovery(self) -> None:
        """Once the reactor runs, the index catches up with the sidecars
        after recovery has finished what a crash left."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.service.index = indexer = FakeIndexer(root=self.root)
        indexer.start()
        self.service.reactor_running()
        self.assertEqual(indexer.calls, [])  # recovery is held
        runner.run_pending()
        self.assertEqual(indexer.calls, [("catch_up", None)])


class DiskFullTests(ServiceTestsMixin, SynchronousTestCase):
    def make_disk(self, readings: list[int]) -> None:
        self.make_service()
        self.service.disk = DiskSpace(
            "unused", 1000, self.service.clock, run_now, measure=lambda root: readings.pop(0)
        )
        self.service.reactor_running()

    def test_low_space_refuses_start(self) -> None:
        """Below storage.min_free_mb a Start is refused with reason "disk
        full" and nothing is opened."""
        self.make_disk([900])
        response = self.start()
        self.assertEqual((response.result, response.reason), ("failed", "disk full"))
        self.assertEqual((self.ports.open, self.writers.writers), ({}, {}))

    def test_critical_space_stops_recordings(self) -> None:
        """Below half of it, recordings in progress are stopped by the server
        with reason "disk full" (the phone is told) keeping what they have."""
        self.make_disk([5000, 400])
        port = self.start().port
        for sequence in range(3):
            self.ports.deliver(port, rtp(sequence, bytes([sequence]) * 160))
        self.service.clock.advance(1)
        self.assertEqual(self.link.stop_requests, [("7", "disk full")])
        self.assertIsNone(self.service.registry.get("7"))
        self.assertEqual(self.writers.only().data_bytes, 480)
        self.assertEqual(self.sidecar_of("7")["stop_reason"], "disk full")


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


class CreationRaceTests(ServiceTestsMixin, SynchronousTestCase):
    def test_connection_lost_while_creating(self) -> None:
        """A phone whose connection breaks while its file is being created:
        once the file exists the recording is stopped as a lost connection,
        not left to run until the RTP timeout."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.service.link_lost(self.link)
        runner.run_pending()
        runner.run_pending()
        runner.run_pending()
        self.assertEqual(self.successResultOf(answer).result, "success")
        self.assertIsNone(self.service.registry.get("7"))
        self.assertEqual(self.sidecar_of("7")["stopped_by"], "connection")

    def test_failing_abandon_does_not_hang_shutdown(self) -> None:
        """If removing the file of a Start refused at shutdown fails (a
        Start that waited for its file, the one before having failed), the
        Start is still answered and the shutdown completes."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.service._creating_fails = True
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        stopped = self.service.stopService()
        waiter, create, args = runner.pending.pop(0)
        waiter.callback(create(*args))  # the file is created
        [(waiter, remove, args)] = runner.pending  # removing it fails
        runner.pending.clear()
        waiter.errback(OSError(5, "Input/output error"))
        self.assertEqual(self.successResultOf(answer).reason, "server shutting down")
        self.successResultOf(stopped)

    def test_files_wait_for_recovery(self) -> None:
        """While start-up recovery runs, a Start's file is not created (so
        recovery never sees a file being made); it is once recovery is done."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.service.recover()
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.assertEqual(len(runner.pending), 1)  # only recovery
        waiter, recover, args = runner.pending.pop(0)
        waiter.callback(recover(*args))
        self.assertEqual(len(runner.pending), 1)  # now the file
        runner.run_pending()
        self.assertEqual(self.successResultOf(answer).result, "success")


class SyncTests(ServiceTestsMixin, SynchronousTestCase):
    """Every sync_interval the recordings hand their audio to their files, in
    turns; with sync_filesystem set, a filesystem sync after each turn makes
    it durable. (Advancing the clock a whole interval at once makes every
    turn come together, as after a held-up reactor.)"""

    def make_syncing(self, filesystem: bool = True, error: OSError | None = None) -> ManualRunner:
        """A service whose blocking work is held (see `run_held`), with a
        filesystem sync that counts its calls (or fails with ``error``)."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.filesystem_syncs = 0
        self.durable = spy_syncs(self)
        self.sequences: dict[int, int] = {}

        def sync_filesystem() -> None:
            self.filesystem_syncs += 1
            if error is not None:
                raise error

        if filesystem:
            self.service.sync_filesystem = sync_filesystem
        return runner

    def talk(self, port: int, packets: int = 3) -> None:
        """The phone on ``port`` sends the next few packets."""
        first = self.sequences.get(port, 0)
        for sequence in range(first, first + packets):
            self.ports.deliver(port, rtp(sequence, bytes([sequence % 251]) * 160))
        self.sequences[port] = first + packets

    def held_filesystem_syncs(self) -> int:
        return sum(1 for _, f, _ in self.runner.pending if f is self.service.sync_filesystem)

    def run_held(self, filesystem: bool = False, count: int | None = None) -> None:
        """Run the held hand-overs (or, with ``filesystem``, the held
        filesystem syncs), ``count`` of them or all."""
        for entry in list(self.runner.pending):
            if count == 0:
                return
            if (entry[1] is self.service.sync_filesystem) is filesystem:
                self.runner.pending.remove(entry)
                waiter, f, args = entry
                maybeDeferred(f, *args).chainDeferred(waiter)
                if count is not None:
                    count -= 1

    def stop_held(self, request: StopRequest):
        """Stop a recording, running the blocking work it holds."""
        stopped = self.service.stop_recording(request)
        self.runner.run_pending()
        return stopped

    def test_once_per_sync_interval(self) -> None:
        """Recordings hand their audio over once per storage.sync_interval
        (not every half of it)."""
        self.make_syncing(filesystem=False)
        self.service.sync_interval = 2.0
        port = self.start().port
        self.talk(port)
        self.service.clock.advance(1.0)
        self.assertEqual(self.runner.pending, [])
        self.service.clock.advance(1.0)
        self.assertEqual(len(self.runner.pending), 1)
        self.run_held()
        self.talk(port)
        self.service.clock.advance(1.9)
        self.assertEqual(self.runner.pending, [])
        self.service.clock.advance(0.1)
        self.assertEqual(len(self.runner.pending), 1)

    def handing_over(self) -> list[str]:
        """The recordings (by id) whose hand-overs are held, in order."""
        return [args[0].path.rsplit("_", 1)[1].removesuffix(".wav")
                for _, f, args in self.runner.pending if f is not self.service.sync_filesystem]

    def test_hand_overs_take_turns(self) -> None:
        """The recordings hand their audio over in turns spread over the
        sync interval, each once an interval: a recording's turn is the
        one that has just been when it starts."""
        self.make_syncing(filesystem=False)
        ports = {}
        for recording_id in "123":
            ports[recording_id] = self.start(start_request(recording_id)).port
            self.service.clock.advance(0.25)
        handed_over = []
        for _ in range(8):
            for port in ports.values():
                self.talk(port)
            self.service.clock.advance(0.25)
            handed_over.append(self.handing_over())
            self.run_held()
        # Started at 0, 0.25 and 0.5: handed over at 1, 1.25 and 1.5 (the
        # turns from 1 to 2.75 s), and a second later, never together.
        self.assertEqual(handed_over, [["1"], ["2"], ["3"], [], ["1"], ["2"], ["3"], []])

    def test_a_big_turn_hands_over_a_few_at_once(self) -> None:
        """
        A turn with more than HAND_OVERS_AT_ONCE recordings hands over that
        many in one round of the reactor and the rest in the next rounds (a
        Start or Stop waits behind one round only); the turn's filesystem
        sync waits for all of its hand-overs.
        """
        self.make_syncing()
        self.ports.high = self.ports.low + 999
        count = HAND_OVERS_AT_ONCE + 3
        ports = [self.start(start_request(str(number), device=f"00a8590{number:05x}")).port
                 for number in range(count)]
        self.run_held()  # (their Start sidecars)
        for port in ports:
            self.talk(port)
        self.service.sync_turns(SYNC_TURNS)  # (as the loop does, without the clock's rounds)
        self.assertEqual(len(self.handing_over()), HAND_OVERS_AT_ONCE)
        self.run_held()
        self.assertEqual(self.held_filesystem_syncs(), 0)
        self.service.clock.advance(0)
        self.assertEqual(len(self.handing_over()), 3)
        self.run_held()
        self.assertEqual(self.held_filesystem_syncs(), 1)

    def test_turns_missed_by_a_held_reactor_are_made_up(self) -> None:
        """If the reactor was held up past several turns, the recordings of
        all of them hand over at once, when it runs again."""
        self.make_syncing(filesystem=False)
        ports = []
        for recording_id in "12345":
            ports.append(self.start(start_request(recording_id)).port)
            self.service.clock.advance(0.25)
        for port in ports:
            self.talk(port)
        # Started at 0 to 1 s, a quarter apart: their turns come at 1 to 2 s.
        self.service.clock.advance(0.6)  # 1.25 to 1.85: the turns at 1.5 and 1.75
        self.assertEqual(sorted(self.handing_over()), ["3", "4"])
        self.run_held()
        self.service.clock.advance(0.15)  # the turn after them, at 2 s
        self.assertEqual(sorted(self.handing_over()), ["1", "5"])
        self.run_held()
        for port in ports:
            self.talk(port)
        self.service.clock.advance(5.0)  # every turn, each recording once
        self.assertEqual(sorted(self.handing_over()), ["1", "2", "3", "4", "5"])

    def test_turn_after_the_loop_restarts(self) -> None:
        """When the last recording has ended the loop stops; a recording
        started later still has its first hand-over a whole interval on."""
        self.make_syncing(filesystem=False)
        self.start(start_request("1"))
        self.service.clock.advance(0.5)
        self.stop_held(StopRequest("1"))
        self.service.clock.advance(0.3)  # the turn at 0.75 finds none: the loop stops
        self.service.clock.advance(10.0)
        port = self.start(start_request("2")).port
        self.talk(port)
        self.service.clock.advance(0.75)
        self.assertEqual(self.handing_over(), [])
        self.service.clock.advance(0.25)
        self.assertEqual(self.handing_over(), ["2"])

    def test_filesystem_synced_only_in_turns_with_recordings(self) -> None:
        """A turn without recordings syncs no filesystem: one recording
        costs one filesystem sync an interval."""
        self.make_syncing()
        self.start()
        self.run_held()  # the Start's sidecar
        for _ in range(8):
            self.service.clock.advance(0.25)
            self.run_held()
            self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 2)

    def test_filesystem_synced_after_every_hand_over(self) -> None:
        """With sync_filesystem set, the filesystem is synced once a turn,
        in a thread, only after every recording's hand-over of that turn
        has completed; the files themselves are never made durable one by one."""
        self.make_syncing()
        ports = [self.start(start_request(str(n))).port for n in (1, 2)]
        for port in ports:
            self.talk(port)
        self.service.clock.advance(1.0)
        self.assertEqual((len(self.runner.pending), self.held_filesystem_syncs()), (2, 0))
        self.run_held(count=1)
        self.assertEqual(self.held_filesystem_syncs(), 0)
        self.run_held(count=1)
        self.assertEqual(self.held_filesystem_syncs(), 1)
        self.assertEqual(self.filesystem_syncs, 0)  # in the thread pool, not yet run
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 1)
        self.assertEqual(self.durable, [False, False])
        self.assertEqual(self.runner.pending, [])

    def test_no_audio_still_synced(self) -> None:
        """A turn in which no recording had audio to hand over still syncs
        the filesystem (the recordings' Start sidecars are on it), once."""
        self.make_syncing()
        self.start()
        self.run_held()  # the Start's sidecar
        self.service.clock.advance(1.0)
        self.assertEqual(self.held_filesystem_syncs(), 1)
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 1)
        self.assertEqual(self.runner.pending, [])

    def test_hand_over_during_filesystem_sync_made_durable_later(self) -> None:
        """A hand-over made while a filesystem sync runs is covered by the
        next one, even when the turns after it have no new audio."""
        self.make_syncing()
        port = self.start().port
        self.talk(port)
        self.service.clock.advance(1.0)
        self.run_held()                      # H1 done; S1 held
        self.talk(port)
        self.service.clock.advance(1.0)      # H2 queued while S1 runs
        self.run_held(filesystem=True)       # S1 done before H2 is written
        self.run_held()                      # H2 written
        self.assertEqual(self.filesystem_syncs, 1)
        self.service.clock.advance(1.0)      # a quiet interval
        self.run_held()
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 2)

    def test_one_filesystem_sync_at_a_time(self) -> None:
        """While a filesystem sync is still running, a later turn's
        hand-overs start no second one; once it is done, the next turn's do."""
        self.make_syncing()
        port = self.start().port

        def interval_handed_over() -> None:
            """The phone talks, a sync interval passes, its hand-over is done."""
            self.talk(port)
            self.service.clock.advance(1.0)
            self.run_held()
            self.assertEqual(self.held_filesystem_syncs(), 1)

        interval_handed_over()
        interval_handed_over()
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 1)
        interval_handed_over()
        self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 2)

    def test_failing_filesystem_sync_falls_back_to_files(self) -> None:
        """A filesystem sync that fails is logged as an error naming the
        cause; the recordings go on, and from then on each hand-over syncs
        its own file (whose fdatasync pins a write error on the recordings
        it hit), with no more filesystem syncs."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        durable = spy_syncs(self)
        self.make_syncing(error=OSError(5, "Input/output error"))
        port = self.start().port
        for _ in range(2):
            self.talk(port)
            self.service.clock.advance(1.0)
            self.run_held()
            self.run_held(filesystem=True)
        self.assertEqual(self.filesystem_syncs, 1)
        self.assertEqual(durable, [False, True])
        failed = [e for e in events if "filesystem failed" in e.get("log_format", "")]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["log_level"].name, "error")
        self.assertIn("Input/output error", failed[0]["reason"])
        self.assertEqual(self.service.registry.get("7").state, "recording")
        self.assertEqual(self.flushLoggedErrors(), [])
        summary = self.successResultOf(self.stop_held(StopRequest("7")))
        self.assertEqual(summary.stats.received, 6)

    def test_one_recording_failing_to_sync_spares_the_others(self) -> None:
        """A recording whose sync raises (a bug) is logged; the others are
        still handed to disk, and the next turn syncs again."""
        durable = spy_syncs(self)
        self.make_syncing()
        first = self.start(start_request("1")).port
        second = self.start(start_request("2")).port
        self.run_held()  # the Start sidecars
        original = Recording.sync

        def sync(recording: Recording) -> Any:
            if recording.recording_id == "1":
                raise ZeroDivisionError("a bug")
            return original(recording)

        self.patch(Recording, "sync", sync)
        self.talk(first)
        self.talk(second)
        self.service.clock.advance(1.0)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.run_held()
        self.assertEqual(durable, [False])  # the second recording's hand-over
        self.talk(second)
        self.service.clock.advance(1.0)  # the loop goes on
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.run_held()
        self.assertEqual(durable, [False, False])

    def test_files_synced_one_by_one_without_it(self) -> None:
        """With sync_filesystem None (storage.sync_each_file), every
        hand-over makes its own file durable and nothing else is run."""
        self.make_syncing(filesystem=False)
        self.assertIsNone(self.service.sync_filesystem)
        ports = [self.start(start_request(str(n))).port for n in (1, 2)]
        for _ in range(2):
            for port in ports:
                self.talk(port)
            self.service.clock.advance(1.0)
            self.assertEqual(len(self.runner.pending), 2)
            self.run_held()
            self.assertEqual(self.runner.pending, [])
        self.assertEqual(self.durable, [True] * 4)


class SyncRunnerTests(ServiceTestsMixin, SynchronousTestCase):
    def test_filesystem_synced_with_synchronous_runner(self) -> None:
        """A run_blocking that completes at once (run_now) still has each
        turn's hand-overs followed by a filesystem sync."""
        self.make_service(runner=run_now)
        syncs = []
        self.service.sync_filesystem = lambda: syncs.append(None)
        port = self.start().port
        for sequence in range(3):
            self.ports.deliver(port, rtp(sequence, b"x" * 160))
        self.service.clock.advance(1.0)
        self.assertEqual(len(syncs), 1)


class LimitTests(ServiceTestsMixin, SynchronousTestCase):
    """devices.allow and the recording limits: each refusal says why."""

    def refusal(self, request) -> str:
        answer = self.start(request)
        self.assertEqual(answer.result, "failed")
        return answer.reason

    def test_device_not_allowed(self) -> None:
        self.make_service()
        self.service.access = policy_of([], ["00:A8:59:00:00:01"])
        self.assertEqual(self.start(start_request("1", device="00-a8-59-00-00-01")).result,
                         "success")
        self.assertEqual(self.refusal(start_request("2", device="00a859000002")),
                         "device not allowed")
        self.assertFalse(self.ports.open.get(41001))  # no port was opened for it

    def test_server_busy(self) -> None:
        self.make_service()
        self.service.max_active = 2
        self.start(start_request("1", device="00a859000001"))
        self.start(start_request("2", device="00a859000002"))
        self.assertEqual(self.refusal(start_request("3", device="00a859000003")), "server busy")
        self.successResultOf(self.service.stop_recording(StopRequest("1")))
        self.assertEqual(self.start(start_request("3", device="00a859000003")).result, "success")

    def test_per_device_cap(self) -> None:
        self.make_service()
        self.service.max_per_device = 2
        self.start(start_request("1"))
        self.start(start_request("2"))
        self.assertEqual(self.refusal(start_request("3")), "too many recordings for this device")
        self.assertEqual(self.start(start_request("4", device="00a859000009")).result, "success")

    def test_start_rate(self) -> None:
        self.make_service()
        self.service.start_rate = StartRate(per_minute=2)
        for recording_id in "12":
            self.start(start_request(recording_id))
            self.successResultOf(self.service.stop_recording(StopRequest(recording_id)))
        self.assertEqual(self.refusal(start_request("3")), "too many starts from this device")
        self.service.clock.advance(60)
        self.assertEqual(self.start(start_request("3")).result, "success")

    def test_start_rate_spent_only_on_starts_taken(self) -> None:
        """
        The start rate is checked after every other check and given back
        when no port is free: Starts refused as busy, for their codec or for
        want of a port do not use up the phone's minute.
        """
        self.make_service(ports=FakePortPool(41000, 41000))
        self.service.start_rate = StartRate(per_minute=2)
        self.assertIn("unsupported codec", self.refusal(start_request("3", codec="G729")))
        self.start(start_request("1"))
        self.service.max_active = 1
        self.assertEqual(self.refusal(start_request("2")), "server busy")
        self.service.max_active = 0
        self.assertEqual(self.refusal(start_request("4")), "no free port")
        self.successResultOf(self.service.stop_recording(StopRequest("1")))
        self.assertEqual(self.start(start_request("5")).result, "success")  # the 2nd of 2
        self.successResultOf(self.service.stop_recording(StopRequest("5")))
        self.assertEqual(self.refusal(start_request("6")), "too many starts from this device")

    def test_limits_count_starts_whose_files_are_being_made(self) -> None:
        """
        A burst of Starts, answered while their files are still being
        created in a thread, counts against max_active and max_per_device.
        """
        self.make_service(runner=ManualRunner())
        self.service.max_active = 3
        self.service.max_per_device = 1

        def start(recording_id: str, device: str):
            return self.service.start_recording(start_request(recording_id, device=device),
                                                self.link, "127.0.0.1", "127.0.0.9")
        held = [start("1", "00a859000001"), start("2", "00a859000002")]
        self.assertEqual(self.successResultOf(start("3", "00a859000001")).reason,
                         "too many recordings for this device")
        held.append(start("4", "00a859000004"))
        self.assertEqual(self.successResultOf(start("5", "00a859000005")).reason, "server busy")
        self.runner.run_pending()
        self.assertEqual([self.successResultOf(d).result for d in held], ["success"] * 3)

    def test_retry_of_a_running_recording_is_not_a_new_start(self) -> None:
        """A phone repeating its Start gets the same answer, whatever the limits."""
        self.make_service()
        self.service.max_active = 1
        first = self.start(start_request("1"))
        self.assertEqual(self.start(start_request("1")).port, first.port)

    def test_refusals_logged_once_a_minute_per_device(self) -> None:
        """A phone retrying against a limit is named once a minute (with the
        count), not on every attempt; the refusals a minute's silence hid
        are summed up when it is over, and those left at shutdown then:
        every refusal is in some line's count."""
        self.make_service()
        self.service.access = policy_of([], ["00a859000001"])
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for number in range(5):
            self.start(start_request(str(number), device="00a859000002"))
        self.service.clock.advance(60)
        self.start(start_request("9", device="00a859000002"))
        self.successResultOf(self.service.stopService())
        refusals = [(event["count"], event["device"]) for event in events
                    if "refused" in event.get("log_format", "")]
        self.assertEqual(refusals, [(1, "00a859000002"), (4, "00a859000002"),
                                    (1, "00a859000002")])


class PhoneBindingTests(ServiceTestsMixin, SynchronousTestCase):
    """A recording answers to its phone: the connection that carries it,
    or another one from the same address (the phone reconnected)."""

    def foreign_stop(self, peer: str = "127.0.0.66", recording_id: str = "7"):
        stranger = FakePhoneLink()
        self.service.link_connected(stranger)
        return self.service.stop_recording(
            StopRequest(recording_id, "tampered",
                        (("remote_number", "=666"), ("remote_name", "Evil"))),
            stranger, peer)

    def test_stop_from_another_address_refused(self) -> None:
        """A Stop (with party fields) from a connection of another address
        is refused with its reason and changes nothing: the recording goes
        on, and its phone's own Stop finishes it with the Start's parties."""
        self.make_service()
        self.start()
        failure = self.failureResultOf(self.foreign_stop(), StopRefused)
        self.assertEqual(failure.value.reason, "not this phone's recording")
        self.assertEqual(self.service.registry.get("7").state, RECORDING)
        summary = self.successResultOf(self.service.stop_recording(
            StopRequest("7", "hangup"), self.link, "127.0.0.1"))
        self.assertEqual((summary.stop_reason, summary.stopped_by), ("hangup", "phone"))
        sidecar = self.sidecar_of("7")
        self.assertEqual((sidecar["remote_number"], sidecar["remote_name"]),
                         ("13800138000", "Bob"))

    def test_stop_while_file_created_refused(self) -> None:
        """A foreign Stop right behind the Start (its file still being
        created) is refused too, before it waits for anything."""
        self.make_service(runner=ManualRunner())
        self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.failureResultOf(self.foreign_stop(), StopRefused)
        self.runner.run_pending()
        self.assertEqual(self.service.registry.get("7").state, RECORDING)

    def test_stop_from_the_phone_reconnected(self) -> None:
        """A Stop from another connection of the recording's address (the
        phone reconnected) is the phone's."""
        self.make_service()
        self.start()
        summary = self.successResultOf(self.foreign_stop(peer="::ffff:127.0.0.1"))
        self.assertEqual(summary.stop_reason, "tampered")

    def test_start_from_another_address_cannot_take_the_recording(self) -> None:
        """A Start of the same id and device from another address is
        refused; the recording keeps its connection (told at shutdown)."""
        self.make_service()
        self.start()
        stranger = FakePhoneLink()
        answer = self.successResultOf(self.service.start_recording(
            start_request(), stranger, "127.0.0.66", "127.0.0.9"))
        self.assertEqual((answer.result, answer.reason),
                         ("failed", "not this phone's recording"))
        self.successResultOf(self.service.stopService())
        self.assertEqual((self.link.stop_requests, stranger.stop_requests),
                         ([("7", "shutdown")], []))

    def test_foreign_stops_counted_and_logged_once_a_minute(self) -> None:
        """Refused Stops are counted by reason in the metrics and logged
        once a minute per address, the rest summed up at shutdown."""
        from recsvc.metrics import Metrics
        self.make_service()
        self.service.metrics = metrics = Metrics()
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.start()
        for _ in range(3):
            self.failureResultOf(self.foreign_stop(), StopRefused)
        self.successResultOf(self.service.stopService())
        self.assertEqual(metrics.registry.get_sample_value(
            "recsvc_stops_refused_total", {"reason": "not this phone's recording"}), 3)
        lines = [(event["count"], event["peer"]) for event in events
                 if event.get("reason") == "not this phone's recording"]
        self.assertEqual(lines, [(1, "127.0.0.66"), (2, "127.0.0.66")])


class DeviceSpellingTests(ServiceTestsMixin, SynchronousTestCase):
    def test_retry_in_another_spelling_is_the_same_device(self) -> None:
        """A Start repeated with the device's MAC spelt another way is the
        same phone's retry, while the file is made and after."""
        self.make_service(runner=ManualRunner())
        first = self.service.start_recording(start_request(device="00:a8:59:00:02:01"),
                                             self.link, "127.0.0.1", "127.0.0.9")
        retry = self.service.start_recording(start_request(device="00a859000201"),
                                             self.link, "127.0.0.1", "127.0.0.9")
        self.runner.run_pending()
        answer = self.successResultOf(first)
        self.assertEqual((answer.result, self.successResultOf(retry)), ("success", answer))
        self.assertEqual(self.start(start_request(device="00-A8-59-00-02-01")), answer)


class PendingRtpTests(ServiceTestsMixin, SynchronousTestCase):
    """recordings.max_pending_per_address: Starts whose phone sends no RTP
    cannot take every port, however many devices a client makes up."""

    def start_from(self, recording_id: str, peer: str = "127.0.0.1"):
        device = "02%010x" % int(recording_id)
        return self.successResultOf(self.service.start_recording(
            start_request(recording_id, device=device), self.link, peer, "127.0.0.9"))

    def test_starts_without_rtp_bounded_per_address(self) -> None:
        """Beyond the bound an address's Starts are refused naming the
        limit, whatever the device; another address is not held back, and
        a recording's first packet gives its place back."""
        self.make_service()
        self.service.max_pending_per_address = 3
        answers = [self.start_from(str(number)) for number in range(3)]
        self.assertEqual([answer.result for answer in answers], ["success"] * 3)
        refused = self.start_from("3")
        self.assertEqual((refused.result, refused.reason),
                         ("failed", "too many recordings without RTP from this address"))
        self.assertEqual(self.start_from("4", peer="127.0.0.2").result, "success")
        self.ports.deliver(answers[0].port, rtp(0, b"\xd5" * 160))
        self.assertEqual(self.start_from("5").result, "success")
        self.assertEqual(self.start_from("6").reason,
                         "too many recordings without RTP from this address")

    def test_stray_datagrams_keep_the_place(self) -> None:
        """Only a packet of the call gives the place back: a datagram from
        another address, of another payload type or too long for a packet
        (all rejected, never written) leaves the recording waiting for
        RTP, so a client cannot free its places with junk."""
        self.make_service()
        self.service.max_pending_per_address = 1
        first = self.start_from("1")
        self.ports.deliver(first.port, rtp(0, b"\xd5" * 160), ("10.9.9.9", 4000))
        self.ports.deliver(first.port, rtp(1, b"\xd5" * 160, payload_type=99))
        self.ports.deliver(first.port, rtp(2, b"\xd5" * 1601))
        self.assertEqual(self.start_from("2").reason,
                         "too many recordings without RTP from this address")
        self.ports.deliver(first.port, rtp(3, b"\xd5" * 160))
        self.assertEqual(self.start_from("3").result, "success")

    def test_place_given_back_when_it_ends(self) -> None:
        """A recording that ends without RTP (stopped, or timed out) gives
        its place back, once."""
        self.make_service()
        self.service.max_pending_per_address = 1
        self.start_from("1")
        self.successResultOf(self.service.stop_recording(StopRequest("1")))
        self.start_from("2")
        self.service.clock.advance(Limits().first_packet_timeout)
        self.assertEqual(self.start_from("3").result, "success")
        self.assertEqual(self.start_from("4").result, "failed")

    def test_five_hundred_phones_behind_one_address(self) -> None:
        """With the defaults, 500 phones behind one NAT address each
        starting a call within a second all record."""
        self.make_service(ports=FakePortPool(41000, 41999))
        self.service.start_rate = StartRate(60)
        results = []
        for number in range(500):
            self.service.clock.advance(0.002)
            results.append(self.start_from(str(number)).result)
        self.assertEqual(results, ["success"] * 500)

    def test_refusal_lines_bounded_over_made_up_devices(self) -> None:
        """2,000 refused Starts with 2,000 made-up MACs make a bounded
        number of lines, and every refusal is counted in one of them."""
        self.make_service()
        self.service.access = policy_of([], ["00a859000001"])
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for number in range(2000):
            self.start_from(str(number))
        self.successResultOf(self.service.stopService())
        counts = [event["count"] for event in events if "refused" in event.get("log_format", "")]
        # 100 devices named, the rest in a line when they begin and a summary.
        self.assertLessEqual(len(counts), 102)
        self.assertEqual(sum(counts), 2000)


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
