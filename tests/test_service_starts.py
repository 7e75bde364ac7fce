"""Tests for RecorderService's Starts: the answer, the port and the file, and
the file's creation off the reactor (on fakes: clock, ports, writers)."""

from __future__ import annotations

import os

import attrs

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from recsvc.control.commands import StopRequest
from recsvc.session import IRecordingEvents
from recsvc.testing import (
    FakePhoneLink,
    FakePortPool,
    ManualRunner,
    MemoryWriters,
)
from tests.support.builders import rtp, start_request
from tests.support.service import ServiceTestsMixin


class StartTests(ServiceTestsMixin, SynchronousTestCase):
    def test_the_sidecar_names_the_node(self) -> None:
        """Every sidecar names the node the call was recorded on, from the
        Start's provisional one to the finished one (the index and the
        other nodes read it there)."""
        self.make_service()
        self.service.node = "rec-a"
        self.start()
        self.assertEqual(self.sidecar_of("7")["node"], "rec-a")
        self.successResultOf(self.service.stop_recording(StopRequest("7", "hangup")))
        self.assertEqual((self.sidecar_of("7")["node"], self.sidecar_of("7")["status"]),
                         ("rec-a", "finished"))

    def test_a_recording_reports_through_its_events(self) -> None:
        """The service answers for each recording through an object that
        declares IRecordingEvents and has every method of it; the recording
        is the service's until it has stopped."""
        self.make_service()
        self.start()
        recording = self.service.registry.get("7")
        self.assertTrue(verifyObject(IRecordingEvents, recording._events))
        self.successResultOf(self.service.stop_recording(StopRequest("7", "hangup")))
        self.assertIsNone(self.service.registry.get("7"))
        self.assertFalse(self.service.carries_recordings(self.link))

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
        self.assertFalse(os.path.exists(writer.path))
        self.assertEqual(self.service._active_paths, set())
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_begin_bug_after_waiting_for_the_file(self) -> None:
        """After a Start's file could not be created the next Start waits
        for its file before it begins; if beginning then fails (a bug), that
        file is removed too and left to recovery and retention again."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.service._creating_fails = True

        def broken(*args):
            raise ZeroDivisionError("a bug")

        self.service._begin = broken
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.assertNoResult(answer)
        runner.run_pending()  # the file is made; beginning fails; it is removed
        refused = self.successResultOf(answer)
        self.assertEqual((refused.result, refused.reason), ("failed", "internal error"))
        runner.run_pending()
        [writer] = self.writers.writers.values()
        self.assertTrue(writer.closed)
        self.assertFalse(os.path.exists(writer.path))
        self.assertEqual(self.service._active_paths, set())
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
        self.service.upkeep.recover()
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
        self.service.clock.advance(self.service.syncing.interval)
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
        self.service.upkeep.recover()
        answer = self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.assertEqual(len(runner.pending), 1)  # only recovery
        waiter, recover, args = runner.pending.pop(0)
        waiter.callback(recover(*args))
        self.assertEqual(len(runner.pending), 1)  # now the file
        runner.run_pending()
        self.assertEqual(self.successResultOf(answer).result, "success")
