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
from recsvc.index.backends import is_postgresql, open_index, shown, without_password
from recsvc.logs import Logger
from recsvc.storage.folder import sidecar_path
from recsvc.application.threads import background_pool, start_until_shutdown


# Searches of a shared index at once (PostgreSQL does the work, in
# processes of its own; a search mostly waits for it).
SEARCH_THREADS = 4


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
        """``f(index, *args)``, a search (it must not write): for a shared
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
                                             connections=SEARCH_THREADS)
        return f(self._searching, *args)

    def _close(self) -> None:
        with self._opening:
            searching, self._searching = self._searching, None
        connection, self._connection = self._connection, None
        for opened in (searching, connection):
            if opened is not None:
                opened.close()

    def file_finished(self, wav_path: str) -> Deferred[None]:
        """Index a file whose final sidecar has just been written."""
        sidecar = sidecar_path(wav_path)
        return self.run(index.add_sidecar, self.root, sidecar).addCallbacks(
            lambda entry: None, self._failed, errbackArgs=("indexing " + sidecar,))

    def forget(self, wav_paths: list[str]) -> Deferred[None]:
        """Drop removed files from the index."""
        relative = [os.path.relpath(path, self.root) for path in wav_paths]
        return self.run(index.remove, relative).addErrback(self._failed, "forgetting removed files")

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
