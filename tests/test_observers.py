"""Tests for recsvc.observers (IRecordingObserver, the check makeService
makes, the fan-out) and for the recorder telling its observers of each
recording, on fakes (task.Clock, in-memory writers)."""

from __future__ import annotations

import errno
import json
import os
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from recsvc.media.codec import CODECS
from recsvc.observers import IRecordingObserver, RecordingObservers, checked_observers
from recsvc.control.commands import CallParties, StopRequest
from recsvc.storage.syncing import SYNC_TURNS
from recsvc.session import Limits
from recsvc.storage.folder import sidecar_path
from recsvc.summary import MediaStats, RecordingInfo, RecordingSummary
from recsvc.testing import (
    FailingWriter,
    FakePhoneLink,
    FakePortPool,
    ManualRunner,
    MemoryWriters,
    memory_recorder,
    run_now,
)
from tests.support.builders import rtp, start_request

PARTIES = CallParties("2001", "Desk", "13800138000", "Bob")


@implementer(IRecordingObserver)
@attrs.define
class NotingObserver:
    """Notes each call it gets, as (method, arguments)."""

    calls: list[tuple[Any, ...]] = attrs.field(factory=list)

    def recording_started(self, info: RecordingInfo) -> None:
        self.calls.append(("started", info))

    def recording_finished(self, sidecar: dict[str, Any], wav_path: str) -> None:
        self.calls.append(("finished", sidecar, wav_path))

    def recording_failed(self, info: RecordingInfo, reason: str) -> None:
        self.calls.append(("failed", info, reason))


@implementer(IRecordingObserver)
class RaisingObserver:
    """Raises from every method, as a buggy host application's observer would."""

    def recording_started(self, info: RecordingInfo) -> None:
        raise ZeroDivisionError("started")

    def recording_finished(self, sidecar: dict[str, Any], wav_path: str) -> None:
        raise ZeroDivisionError("finished")

    def recording_failed(self, info: RecordingInfo, reason: str) -> None:
        raise ZeroDivisionError("failed")


def info(recording_id: str = "7") -> RecordingInfo:
    return RecordingInfo(recording_id, "00a859000001", CODECS["PCMA"], "out", PARTIES, "127.0.0.1")


def summary(recording_id: str = "7") -> RecordingSummary:
    return RecordingSummary(
        info=info(recording_id), audio_format="g711", file=f"x_{recording_id}.wav",
        started_at=1.0, stopped_at=2.0, stop_reason="hangup", stopped_by="phone",
        data_bytes=8000, frames=8000, sample_rate=8000, stats=MediaStats(), rtp_port=41000,
    )


class CheckedObserversTests(SynchronousTestCase):
    """makeService checks each observer against IRecordingObserver before it
    builds anything, naming the one that is wrong."""

    def test_providers_pass(self) -> None:
        """Objects that declare and implement IRecordingObserver come back as
        a tuple, in order."""
        first, second = NotingObserver(), NotingObserver()
        self.assertEqual(checked_observers([first, second]), (first, second))
        self.assertEqual(checked_observers(iter([first])), (first,))

    def test_undeclared(self) -> None:
        """An object with the methods but no @implementer is refused with a
        TypeError naming its position and what to declare."""

        class Undeclared:
            def recording_started(self, info): ...
            def recording_finished(self, sidecar, wav_path): ...
            def recording_failed(self, info, reason): ...

        error = self.assertRaises(TypeError, checked_observers, [NotingObserver(), Undeclared()])
        self.assertTrue(str(error).startswith("observers[1] ("), str(error))
        self.assertIn("@implementer(recsvc.IRecordingObserver)", str(error))

    def test_missing_method(self) -> None:
        """A declared observer without one of the methods is refused, naming
        the method."""

        @implementer(IRecordingObserver)
        class Partial:
            def recording_started(self, info): ...
            def recording_finished(self, sidecar, wav_path): ...

        error = self.assertRaises(TypeError, checked_observers, [Partial()])
        self.assertIn("observers[0]", str(error))
        self.assertIn("recording_failed", str(error))

    def test_wrong_arguments(self) -> None:
        """A method that cannot take the arguments it will be given is
        refused, naming the method."""

        @implementer(IRecordingObserver)
        class Wrong:
            def recording_started(self, info): ...
            def recording_finished(self, sidecar): ...
            def recording_failed(self, info, reason): ...

        error = self.assertRaises(TypeError, checked_observers, [Wrong()])
        self.assertIn("recording_finished", str(error))


class RecordingObserversTests(SynchronousTestCase):
    """The fan-out: every observer told in turn, on the caller's (reactor)
    thread; one observer's failure is logged and goes no further."""

    def test_each_told_in_order(self) -> None:
        """started, finished and failed reach every observer, in the order given."""
        order: list[str] = []

        @implementer(IRecordingObserver)
        @attrs.define
        class Named:
            name: str

            def recording_started(self, info):
                order.append(f"{self.name} started {info.recording_id}")

            def recording_finished(self, sidecar, wav_path):
                order.append(f"{self.name} finished {sidecar['id']}")

            def recording_failed(self, info, reason):
                order.append(f"{self.name} failed {info.recording_id}: {reason}")

        observers = RecordingObservers((Named("a"), Named("b")))
        observers.started(info("1"))
        observers.finished(summary("1"), "/r/x_1.wav")
        observers.failed(info("2"), "disk gone")
        self.assertEqual(order, [
            "a started 1", "b started 1", "a finished 1", "b finished 1",
            "a failed 2: disk gone", "b failed 2: disk gone",
        ])

    def test_finished_gives_sidecar_and_full_path(self) -> None:
        """finished gives the sidecar's JSON and the WAV's absolute path (a
        relative storage.root made absolute); each observer gets its own
        dict, so one that changes it does not change what the next sees."""

        @implementer(IRecordingObserver)
        class Scribbler(NotingObserver):
            def recording_finished(self, sidecar, wav_path):
                sidecar["id"] = "scribbled"
                sidecar["dtmf"].append("x")

        scribbler, noting = Scribbler(), NotingObserver()
        RecordingObservers((scribbler, noting)).finished(summary(), "var/recordings/x_7.wav")
        [(_, sidecar, path)] = noting.calls
        self.assertEqual(sidecar, summary().to_json())
        self.assertEqual(path, os.path.join(os.getcwd(), "var", "recordings", "x_7.wav"))

    def test_exception_logged_next_observer_told(self) -> None:
        """An observer that raises is logged (log.failure, with the
        recording, the observer and the method) and the next one is still
        told; nothing reaches the caller."""
        noting = NotingObserver()
        observers = RecordingObservers((RaisingObserver(), noting))
        with capturedLogs() as events:
            observers.started(info())
            observers.finished(summary(), "/r/x_7.wav")
            observers.failed(info(), "disk gone")
        self.assertEqual([call[0] for call in noting.calls], ["started", "finished", "failed"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 3)
        failures = [e for e in events if e["log_level"] == LogLevel.critical]
        self.assertEqual([(e["recordingId"], e["method"]) for e in failures], [
            ("7", "recording_started"), ("7", "recording_finished"), ("7", "recording_failed"),
        ])
        self.assertIn("RaisingObserver", failures[0]["observer"])

    def test_failing_deferred_logged(self) -> None:
        """A Deferred an observer returns is not waited for; when it fails,
        the failure is logged."""
        later: Deferred[None] = Deferred()

        @implementer(IRecordingObserver)
        class Deferring(NotingObserver):
            def recording_started(self, info):
                return later

            def recording_failed(self, info, reason):
                return fail(ValueError("at once"))

        observers = RecordingObservers((Deferring(),))
        observers.started(info())  # returns at once
        observers.failed(info(), "disk gone")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        later.errback(KeyError("later"))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_coroutine_observer(self) -> None:
        """An observer written with async def is run; its exception is logged."""
        ran: list[str] = []

        @implementer(IRecordingObserver)
        class Async(NotingObserver):
            async def recording_started(self, info):
                ran.append(info.recording_id)

            async def recording_failed(self, info, reason):
                raise ValueError(reason)

        observers = RecordingObservers((Async(),))
        observers.started(info())
        observers.failed(info(), "disk gone")
        self.assertEqual(ran, ["7"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class RecorderObserversTests(SynchronousTestCase):
    """The recorder tells its observers of its recordings: started once the
    file exists, each file finished, a recording it could not keep."""

    def make_service(self, *observers: Any, runner: Any = run_now,
                     writers: MemoryWriters | None = None, **kwargs: Any) -> Any:
        self.runner = runner
        self.writers = MemoryWriters() if writers is None else writers
        self.ports = FakePortPool()
        self.service = memory_recorder(self.mktemp(), writers=self.writers, ports=self.ports,
                                       run_blocking=runner, **kwargs)
        self.service.observers = RecordingObservers(observers)
        self.service.startService()
        self.link = FakePhoneLink()
        self.service.link_connected(self.link)
        return self.service

    def start(self, recording_id: str = "7") -> Any:
        return self.service.start_recording(start_request(recording_id), self.link,
                                            "127.0.0.1", "127.0.0.9")

    def test_started_once_the_file_exists(self) -> None:
        """A Start is answered before its file exists; the observers are told
        once it does, with the call's values."""
        noting = NotingObserver()
        runner = ManualRunner()
        self.make_service(noting, runner=runner)
        self.assertEqual(self.successResultOf(self.start()).result, "success")
        self.assertEqual(noting.calls, [])
        runner.run_pending()
        [(method, told)] = noting.calls
        self.assertEqual(method, "started")
        self.assertEqual(told, RecordingInfo("7", "00a859000001", CODECS["PCMA"], "out",
                                             PARTIES, "127.0.0.1"))
        self.assertEqual(len(self.writers.writers), 1)

    def test_finished_with_sidecar_and_path(self) -> None:
        """A Stop finishes the file; the observers get the sidecar that is
        on disk and the WAV's absolute path, after the started call."""
        noting = NotingObserver()
        self.make_service(noting)
        port = self.successResultOf(self.start()).port
        for sequence in range(3):
            self.ports.deliver(port, rtp(sequence, bytes([sequence]) * 160))
        self.successResultOf(self.service.stop_recording(StopRequest("7", "hangup")))
        [path] = self.writers.writers
        with open(sidecar_path(path), encoding="utf-8") as handle:
            on_disk = json.load(handle)
        self.assertEqual([call[0] for call in noting.calls], ["started", "finished"])
        _, sidecar, wav_path = noting.calls[1]
        self.assertEqual(sidecar, on_disk)
        self.assertEqual((sidecar["stop_reason"], sidecar["packets_received"]), ("hangup", 3))
        self.assertEqual(wav_path, os.path.abspath(path))
        self.assertTrue(os.path.isabs(wav_path))

    def test_no_audio_no_path(self) -> None:
        """A recording that received no audio keeps no WAV: the observers
        get its sidecar (``file`` null) and None for the path."""
        noting = NotingObserver()
        self.make_service(noting)
        self.successResultOf(self.start())
        self.successResultOf(self.service.stop_recording(StopRequest("7", "hangup")))
        [(_, sidecar, wav_path)] = [call for call in noting.calls if call[0] == "finished"]
        self.assertEqual((sidecar["file"], sidecar["bytes"], wav_path), (None, 0, None))

    def test_each_part_finished(self) -> None:
        """A recording longer than max_duration: one finished call per file,
        in order; the last one's sidecar has no next."""
        noting = NotingObserver()
        self.make_service(noting, limits=Limits(max_duration=1.0))
        port = self.successResultOf(self.start()).port
        for sequence in range(60):
            self.ports.deliver(port, rtp(sequence, bytes([sequence]) * 160))
        self.successResultOf(self.service.stop_recording(StopRequest("7")))
        first, second = sorted(self.writers.writers)
        finished = [call[1:] for call in noting.calls if call[0] == "finished"]
        self.assertEqual([path for _, path in finished], [first, second])
        self.assertEqual([(s["part"], s["next"]) for s, _ in finished],
                         [(1, os.path.basename(second)), (2, None)])
        self.assertEqual([call[0] for call in noting.calls], ["started", "finished", "finished"])

    def test_shutdown_finishes_and_tells(self) -> None:
        """A recording stopped by the shutdown is reported finished too."""
        noting = NotingObserver()
        self.make_service(noting)
        self.successResultOf(self.start())
        self.successResultOf(self.service.stopService())
        [(_, sidecar, _)] = [call for call in noting.calls if call[0] == "finished"]
        self.assertEqual((sidecar["stop_reason"], sidecar["stopped_by"]), ("shutdown", "server"))

    def test_refused_start_not_told(self) -> None:
        """A refused Start (here: no free port) is nothing the observers hear of."""
        noting = NotingObserver()
        self.make_service(noting)
        self.ports.high = self.ports.low
        self.successResultOf(self.start("1"))
        self.assertEqual(self.successResultOf(self.start("2")).reason, "no free port")
        self.assertEqual([(call[0], call[1].recording_id) for call in noting.calls],
                         [("started", "1")])

    def test_file_not_created_fails(self) -> None:
        """A file that cannot be created after the Start was answered: the
        observers are told it failed, with the reason, and never that it
        started."""
        noting = NotingObserver()

        def refuse(path, fmt):
            raise PermissionError(errno.EACCES, "Permission denied")

        runner = ManualRunner()
        self.make_service(noting, runner=runner)
        self.service.storage = attrs.evolve(self.service.storage, open_writer=refuse)
        self.assertEqual(self.successResultOf(self.start()).result, "success")
        runner.run_pending()
        [(method, told, reason)] = noting.calls
        self.assertEqual((method, told.recording_id), ("failed", "7"))
        self.assertEqual(reason, "part 1 of the recording could not be created: Permission denied")
        self.assertEqual(self.link.stop_requests, [("7", "storage not writable: Permission denied")])
        self.flushLoggedErrors()

    def test_file_not_finished_fails(self) -> None:
        """A file that cannot be closed at the Stop: the observers are told
        the recording failed, naming the file and the error, and not that
        it finished."""
        noting = NotingObserver()
        writers = MemoryWriters()

        def closing_fails(path, fmt):
            return FailingWriter(writers(path, fmt), close_error=OSError(errno.EIO, "I/O error"))

        self.make_service(noting, writers=writers)
        self.service.storage = attrs.evolve(self.service.storage, open_writer=closing_fails)
        self.successResultOf(self.start())
        self.failureResultOf(self.service.stop_recording(StopRequest("7", "hangup")))
        self.assertEqual([call[0] for call in noting.calls], ["started", "failed"])
        [wav] = writers.writers
        self.assertEqual(noting.calls[1][2], f"could not finish {os.path.basename(wav)}: I/O error")
        self.flushLoggedErrors()

    def test_raising_observer_spares_recording_and_next_observer(self) -> None:
        """An observer that raises at every call neither keeps the recording
        from being recorded and finished (the Stop gets its summary, the
        file its audio) nor the next observer from being told."""
        noting = NotingObserver()
        self.make_service(RaisingObserver(), noting)
        port = self.successResultOf(self.start()).port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        self.service.syncing.sync_turns(SYNC_TURNS)
        result = self.successResultOf(self.service.stop_recording(StopRequest("7", "hangup")))
        self.assertEqual((result.stop_reason, result.stats.received), ("hangup", 1))
        self.assertTrue(self.writers.only().contents().endswith(b"a" * 160))
        self.assertEqual([call[0] for call in noting.calls], ["started", "finished"])
        self.assertIsNone(self.service.registry.get("7"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
