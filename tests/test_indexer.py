"""Tests for recsvc.index.indexer: the service's index, kept in its own
thread; one contract run against it (over a SQLite file) and against
`recsvc.testing.FakeIndexer`, so the fake cannot drift."""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from recsvc.index import store as index
from recsvc.index.indexer import Indexer, NoIndex
from recsvc.index.sqlite import SqliteIndex
from recsvc.testing import FakeIndexer

FOLDER = "00a859000001/2026/11/24"


def write_sidecar(root: str, recording_id: str, **fields: Any) -> str:
    """A finished recording's sidecar (and its empty WAV) under ``root``;
    returns the WAV's path."""
    wav = os.path.join(root, FOLDER, f"20261124T10000{recording_id}Z_out_{recording_id}.wav")
    data = {
        "id": recording_id, "device": "00:a8:59:00:00:01", "direction": "out",
        "local_number": "2001", "local_name": "Desk", "remote_number": "13800138000",
        "remote_name": "Bob", "status": "finished", "duration_s": 60.0,
        "started_at": f"2026-11-24T10:00:0{recording_id}.000Z", "stop_reason": "hangup",
        "file": os.path.basename(wav),
    }
    data.update(fields)
    os.makedirs(os.path.dirname(wav), exist_ok=True)
    with open(wav[:-4] + ".json", "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    open(wav, "wb").close()
    return wav


class IndexerContract:
    """What the service (and the web's searches, through ``run_search``) rely on
    from the index. The contract runs on the real reactor: the real
    indexer's work is done in a thread."""

    def make_indexer(self, root: str) -> Indexer:
        raise NotImplementedError

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.errors: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") is not None and event["log_level"].name == "error":
                self.errors.append(event["reason"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def started(self) -> Indexer:
        indexer = self.make_indexer(self.root)
        indexer.start()
        return indexer

    async def ids(self, indexer: Indexer, **search: Any) -> list[str]:
        """The ids of the recordings a search finds, newest first."""
        found = await indexer.run_search(index.search, index.Search(**search))
        return [entry["id"] for entry in found]

    async def test_contract_finished_file_found(self) -> None:
        """
        A finished file is found by number, device, time and id, with its
        path under the root; a forgotten one is found no more.
        """
        indexer = self.started()
        first = write_sidecar(self.root, "1")
        second = write_sidecar(self.root, "2", remote_number="4930123", device="00:a8:59:00:00:02")
        self.assertIsNone(await indexer.file_finished(first))
        self.assertIsNone(await indexer.file_finished(second))
        self.assertEqual(await self.ids(indexer), ["2", "1"])
        self.assertEqual(await self.ids(indexer, number="138"), ["1"])
        self.assertEqual(await self.ids(indexer, device="00a859000002"), ["2"])
        self.assertEqual(await self.ids(indexer, since="2026-11-24T10:00:02Z"), ["2"])
        [found] = await indexer.run(index.search, index.Search(recording_id="1"))
        self.assertEqual(found["path"], os.path.relpath(first, self.root))
        self.assertIsNone(await indexer.forget([first]))
        self.assertEqual(await self.ids(indexer), ["2"])

    async def test_contract_catch_up(self) -> None:
        """
        Catching up adds the sidecars on disk, says which it could not
        read and why, keeps what did not change and forgets what is gone.
        """
        indexer = self.started()
        first = write_sidecar(self.root, "1")
        write_sidecar(self.root, "2")
        bad = write_sidecar(self.root, "3", duration_s="long")
        result = await indexer.catch_up()
        bad_sidecar = os.path.relpath(bad[:-4] + ".json", self.root)
        self.assertEqual(
            result,
            index.CaughtUp(2, 0, 0, ((bad_sidecar, "duration_s: expected seconds, got 'long'"),)),
        )
        self.assertEqual(await self.ids(indexer), ["2", "1"])
        os.remove(first[:-4] + ".json")
        again = await indexer.catch_up()
        self.assertEqual((again.added, again.removed, again.unchanged), (0, 1, 1))
        self.assertEqual(await self.ids(indexer), ["2"])

    async def test_contract_a_root_unmounted_or_unreadable_forgets_nothing(self) -> None:
        """
        A catch-up over a root without any sidecar (the service started
        before its disk was mounted) keeps the recordings and logs why; over
        a root it cannot list, it fails, logged, and keeps them too.
        """
        indexer = self.started()
        write_sidecar(self.root, "1")
        write_sidecar(self.root, "2")
        await indexer.catch_up()
        os.rename(self.root, self.root + ".unmounted")
        os.makedirs(self.root)
        result = await indexer.catch_up()
        self.assertEqual((result.removed, len(self.errors)), (0, 1))
        self.assertIn("they are kept", self.errors[0])
        self.assertEqual(await self.ids(indexer), ["2", "1"])
        os.rmdir(self.root)
        self.assertIsNone(await indexer.catch_up())
        self.assertEqual(len(self.errors), 2)
        self.assertIn("No such file or directory", self.errors[1])
        self.assertEqual(await self.ids(indexer), ["2", "1"])

    async def test_contract_bad_sidecar_logged(self) -> None:
        """
        A finished file whose sidecar cannot be indexed is logged, never
        raised, and not found.
        """
        indexer = self.started()
        wav = write_sidecar(self.root, "1", started_at="yesterday")
        self.assertIsNone(await indexer.file_finished(wav))
        self.assertEqual(self.errors, ["started_at: 'yesterday' is not a time"])
        self.assertEqual(await self.ids(indexer), [])

    async def test_contract_nothing_before_start(self) -> None:
        """
        Before it is started the index does nothing: each request is
        logged as failed, and work asked of it fails.
        """
        indexer = self.make_indexer(self.root)
        self.assertIsNone(await indexer.file_finished(write_sidecar(self.root, "1")))
        self.assertIsNone(await indexer.catch_up())
        self.assertEqual(self.errors, ["the index is not started"] * 2)
        with self.assertRaises(RuntimeError):
            await indexer.run(index.search, index.Search())
        with self.assertRaises(RuntimeError):
            await indexer.run_search(index.search, index.Search())


@attrs.define
class ThreadResults:
    """The reactor an Indexer under test is given: results come back from
    its thread through the real reactor; the stop of its thread at
    shutdown is kept, for the test's clean-up."""

    at_shutdown: list[tuple[Any, tuple[Any, ...]]] = attrs.field(factory=list)

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        reactor.callFromThread(f, *args, **kwargs)

    def addSystemEventTrigger(self, phase: str, event: str, f: Any, *args: Any) -> None:
        self.at_shutdown.append((f, args))

    def shut_down(self) -> None:
        while self.at_shutdown:
            f, args = self.at_shutdown.pop()
            f(*args)


class IndexerContractTests(IndexerContract, TestCase):
    def make_indexer(self, root: str) -> Indexer:
        results = ThreadResults()
        self.addCleanup(results.shut_down)
        return Indexer(os.path.join(self.mktemp(), "index.sqlite"), root, results)


class PostgresIndexerContractTests(IndexerContract, TestCase):
    """The real indexer on a shared index: its searches in threads of
    their own."""

    def make_indexer(self, root: str) -> Indexer:
        from tests.support.postgres import cluster

        results = ThreadResults()
        self.addCleanup(results.shut_down)
        return Indexer(cluster().database(), root, results, node="node-a")

    async def test_searches_at_once(self) -> None:
        """
        Several searches at once each run on a search thread of their
        own, beside the index's thread, and each finds what it asks.
        """
        indexer = self.started()
        for number in "1234":
            self.assertIsNone(await indexer.file_finished(write_sidecar(self.root, number)))
        found = await gatherResults([
            indexer.run_search(index.search, index.Search(recording_id=number))
            for number in "1234"])
        self.assertEqual([[row["id"] for row in rows] for rows in found],
                         [["1"], ["2"], ["3"], ["4"]])


class FakeIndexerContractTests(IndexerContract, TestCase):
    def make_indexer(self, root: str) -> Indexer:
        return FakeIndexer(root=root)


@attrs.define
class ThreadResultsAndClock(ThreadResults):
    """ThreadResults whose delayed calls wait for ``clock``."""

    clock: Clock = attrs.field(factory=Clock)

    def callLater(self, delay: float, f: Any, *args: Any) -> Any:
        return self.clock.callLater(delay, f, *args)


@attrs.define
class FlakyIndex:
    """An index whose ``put`` fails (as a database that cannot be
    reached) the next ``failures`` times, then works."""

    found_in: Any
    failures: int

    def put(self, entries: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("the database cannot be reached")
        self.found_in.put(entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.found_in, name)


class RetryTests(TestCase):
    """A finished file the index's database failed to take (an outage) is
    indexed again later, without a restart: after RETRY_AFTER seconds,
    then twice as long each time it fails again."""

    async def test_indexed_once_the_database_is_back(self) -> None:
        """The file is tried again after 5 s, then 10 s; once the database
        takes it, it is found. A sidecar that is not indexable is not
        tried again."""
        root = self.mktemp()
        os.makedirs(root)
        results = ThreadResultsAndClock()
        self.addCleanup(results.shut_down)
        real = SqliteIndex.open(os.path.join(self.mktemp(), "index.sqlite"))
        flaky = FlakyIndex(real, failures=2)
        indexer = Indexer("unused.sqlite", root, results, connection=flaky)
        indexer.start()
        errors: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") is not None and event["log_level"].name == "error":
                errors.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.assertIsNone(await indexer.file_finished(write_sidecar(root, "1")))
        self.assertIsNone(await indexer.file_finished(write_sidecar(root, "2", started_at="x")))
        self.assertEqual(len(errors), 2)
        self.assertEqual(index.search(real, index.Search()), [])
        [waiting] = results.clock.getDelayedCalls()
        self.assertEqual(waiting.getTime(), 5.0)
        results.clock.advance(5)
        await indexer.run(lambda found_in: None)  # (the retry's job is done)
        self.assertIn("1 finished files not indexed yet, tried again in 10 s", errors[-1])
        [waiting] = results.clock.getDelayedCalls()
        self.assertEqual(waiting.getTime(), 15.0)
        results.clock.advance(10)
        await indexer.run(lambda found_in: None)
        self.assertEqual([row["id"] for row in index.search(real, index.Search())], ["1"])
        self.assertEqual(results.clock.getDelayedCalls(), [])
        self.assertEqual(len(errors), 3)


class NoIndexTests(SynchronousTestCase):
    """NoIndex, a server's index when it keeps none, is told what the
    service tells Indexer, and keeps nothing."""

    def test_told_what_the_indexer_is(self) -> None:
        """NoIndex has the Indexer methods the service calls, with the same
        parameters, each fired at once with None."""
        for name in ("file_finished", "forget", "catch_up"):
            self.assertEqual(
                list(inspect.signature(getattr(NoIndex, name)).parameters),
                list(inspect.signature(getattr(Indexer, name)).parameters), name)
        empty = NoIndex()
        self.assertIsNone(self.successResultOf(empty.file_finished("/r/a.wav")))
        self.assertIsNone(self.successResultOf(empty.forget(["/r/a.wav"])))
        self.assertIsNone(self.successResultOf(empty.catch_up()))
