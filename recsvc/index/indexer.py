"""The service's side of the index (recsvc.index.store): one connection,
used only by a thread of its own (so the index's work is done in order and
never on the reactor thread), fed as files are finished and removed. The
index is a convenience over the sidecars: a failure here is logged and never
touches a recording.

The web's searches of a shared (PostgreSQL) index run on SEARCH_THREADS
threads of their own, each borrowing a connection from one pool: several
searches at once wait neither for each other nor for the index's thread
(a start-up catch-up can take minutes). SQLite's searches go through the
index's thread: one file, one connection, and its searches are quick.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from recsvc.index import store as index
from recsvc.index.backends import (
    CannotOpenIndex, index_errors, is_postgresql, open_index, shown, without_password)
from recsvc.logs import Logger
from recsvc.storage.folder import sidecar_path
from recsvc.application.threads import background_pool, start_until_shutdown


# Searches of a shared index at once (PostgreSQL does the work, in
# processes of its own; a search mostly waits for it).
SEARCH_THREADS = 4
# Seconds a search waits for a connection of its pool: a database that
# cannot be reached is said to the user soon (the index's thread waits
# longer, see postgres.POOL_TIMEOUT: its work is not waited for).
SEARCH_WAIT = 5.0
# Seconds before finished files the index's database failed to take (an
# outage) are indexed again; twice as long after each failure, up to the last.
RETRY_AFTER = 5.0
RETRY_AT_MOST = 300.0


@attrs.define(eq=False)
class Indexer:
    """Keeps ``database`` in step with the finished recordings under ``root``."""

    log = Logger()

    database: str
    root: str
    reactor: Any
    # This recorder node's name: what it indexes is its own (see open_index).
    node: str = ""
    _pool: ThreadPool | None = None
    # Opened, and used, only in the pool's one thread.
    _connection: Any = None  # an IIndex
    # A shared index's searches: their threads, and the index (its pool of
    # connections) they share, opened by the first search.
    _search_pool: ThreadPool | None = None
    _searching: Any = None
    _opening: threading.Lock = attrs.field(factory=threading.Lock)
    # Finished files (WAV paths) the index's database failed to take, and
    # when they are tried again (an IDelayedCall of the reactor), after how long.
    _unindexed: set[str] = attrs.field(factory=set)
    _retry: Any = None
    _retry_after: float = RETRY_AFTER

    def start(self) -> None:
        """Start the index's thread (it opens the index with its first job)
        and, for a shared index, the searches' threads, until the reactor
        shuts down."""
        if self._pool is None:
            self._pool = background_pool("recsvc-index", maxthreads=1, minthreads=1)
        start_until_shutdown(self.reactor, self._pool)
        if is_postgresql(self.database):
            if self._search_pool is None:
                self._search_pool = background_pool("recsvc-search", maxthreads=SEARCH_THREADS)
            start_until_shutdown(self.reactor, self._search_pool)
        # Once the threads have stopped (their work done): the connections.
        self.reactor.addSystemEventTrigger("after", "shutdown", self._close)

    def run(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """``f(connection, *args)`` on the index's connection, in its thread."""
        if self._pool is None:
            return fail(RuntimeError("the index is not started"))
        return deferToThreadPool(self.reactor, self._pool, self._call, f, args)

    def _call(self, f: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if self._connection is None:
            self._connection = open_index(self.database, node=self.node)
        return f(self._connection, *args)

    def run_search(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """``f(index, *args)``, a search (or the users read, an audit entry
        written: small writes beside the searches): for a shared
        index in a search thread, on a connection of the searches' pool;
        otherwise as `run`, in the index's thread."""
        if not is_postgresql(self.database):
            return self.run(f, *args)
        if self._search_pool is None:
            return fail(RuntimeError("the index is not started"))
        return deferToThreadPool(self.reactor, self._search_pool, self._search, f, args)

    def _search(self, f: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with self._opening:
            if self._searching is None:
                # Not read-only: opening waits for (or makes) the schema, as
                # the index's thread may be migrating it at this moment.
                self._searching = open_index(self.database, node=self.node,
                                             connections=SEARCH_THREADS, wait=SEARCH_WAIT)
        return f(self._searching, *args)

    def _close(self) -> None:
        with self._opening:
            searching, self._searching = self._searching, None
        connection, self._connection = self._connection, None
        for opened in (searching, connection):
            if opened is not None:
                opened.close()

    def file_finished(self, wav_path: str) -> Deferred[None]:
        """Index a file whose final sidecar has just been written; if the
        index's database fails it (an outage), again later, until it
        takes it (or the next start-up's catch-up does)."""
        sidecar = sidecar_path(wav_path)
        return self.run(index.add_sidecar, self.root, sidecar).addCallbacks(
            lambda entry: None, self._not_indexed, errbackArgs=(wav_path,))

    def _not_indexed(self, failure: Failure, wav_path: str) -> None:
        self._failed(failure, "indexing " + sidecar_path(wav_path))
        if failure.check(CannotOpenIndex, *index_errors()):
            self._unindexed.add(wav_path)
            self._retry_later()

    def _retry_later(self) -> None:
        if self._retry is None or not self._retry.active():
            self._retry = self.reactor.callLater(self._retry_after, self._index_again)

    def _index_again(self) -> Deferred[None]:
        """Index the files the database failed to take (in one job of the
        index's thread); if it fails again, all of them later."""
        self._retry = None
        waiting, self._unindexed = sorted(self._unindexed), set()
        return self.run(_add_each, self.root, waiting).addCallbacks(
            self._indexed_again, self._still_not_indexed, errbackArgs=(waiting,))

    def _indexed_again(self, skipped: list[tuple[str, str]]) -> None:
        self._retry_after = RETRY_AFTER
        self.log.info("Index: the files it failed to take are indexed")
        for sidecar, reason in skipped:
            self.log.warn("Index: {sidecar} not indexed: {reason}", sidecar=sidecar,
                          reason=reason)

    def _still_not_indexed(self, failure: Failure, waiting: list[str]) -> None:
        self._unindexed.update(waiting)
        self._retry_after = min(self._retry_after * 2, RETRY_AT_MOST)
        self.log.error("Index ({database}): {count} finished files not indexed yet, tried "
                       "again in {seconds:.0f} s: {reason}", database=shown(self.database),
                       count=len(self._unindexed), seconds=self._retry_after,
                       reason=without_password(failure.getErrorMessage(), self.database))
        self._retry_later()

    def forget(self, wav_paths: list[str]) -> Deferred[None]:
        """Drop removed files from the index."""
        relative = [os.path.relpath(path, self.root) for path in wav_paths]
        return self.run(index.remove, relative).addErrback(self._failed, "forgetting removed files")

    def held_paths(self) -> Deferred[frozenset[str]]:
        """The paths (relative to the root) of this node's files on legal
        hold, which retention must leave."""
        return self.run(_held_paths, self.node)

    def catch_up(self) -> Deferred[index.CaughtUp | None]:
        """Index the sidecars the index missed, forget the files that are
        gone (at start-up, after recovery)."""
        return self.run(index.catch_up, self.root).addCallbacks(
            self._caught_up, self._failed, errbackArgs=("catching up with the sidecars",))

    def _caught_up(self, result: index.CaughtUp) -> index.CaughtUp:
        self.log.info("Index: {added} files added, {removed} forgotten, {unchanged} as they were",
                      added=result.added, removed=result.removed, unchanged=result.unchanged)
        for path, reason in result.skipped:
            self.log.warn("Index: {sidecar} not indexed: {reason}", sidecar=path, reason=reason)
        if result.kept is not None:
            self.log.error("Index: files not forgotten: {reason}", reason=result.kept)
        return result

    def _failed(self, failure: Failure, doing: str) -> None:
        self.log.error("Index ({database}): {doing} failed: {reason}",
                       database=shown(self.database), doing=doing,
                       reason=without_password(failure.getErrorMessage(), self.database))


def _held_paths(found_in: Any, node: str) -> frozenset[str]:
    return found_in.held_paths(node)


def _add_each(found_in: Any, root: str, wav_paths: list[str]) -> list[tuple[str, str]]:
    """Index the finished files ``wav_paths``: the sidecars that cannot
    be (gone, not indexable), with why. Raises what the index raises."""
    skipped = []
    for wav_path in wav_paths:
        sidecar = sidecar_path(wav_path)
        try:
            index.add_sidecar(found_in, root, sidecar)
        except (index.NotIndexable, OSError) as error:
            skipped.append((sidecar, str(error)))
    return skipped


class NoIndex:
    """The index of a server without one: told what Indexer is of the
    finished and removed files, and keeps nothing (so the service never
    asks whether it has one)."""

    def file_finished(self, wav_path: str) -> Deferred[None]:
        return succeed(None)

    def forget(self, wav_paths: list[str]) -> Deferred[None]:
        return succeed(None)

    def catch_up(self) -> Deferred[index.CaughtUp | None]:
        return succeed(None)

    def held_paths(self) -> Deferred[frozenset[str]]:
        return succeed(frozenset())  # (no index: no holds)
