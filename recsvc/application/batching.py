"""Blocking calls in threads, gathered: the calls made in one reactor turn
run together in a few thread jobs instead of one job each.

Every half sync interval each recording hands its audio to its file; with
thousands of recordings, one thread job per file would cost more than the
writing. `BatchedRunner` is a drop-in ``run_blocking``: it returns a
Deferred per call, as `deferToThreadPool` does, and runs the calls queued
in the same reactor turn in at most ``jobs`` thread jobs, in order within
each job.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

_Call = tuple[Callable[..., Any], tuple[Any, ...]]


@attrs.define(eq=False)
class BatchedRunner:
    reactor: Any  # IReactorTime and IReactorFromThreads
    pool: Callable[[], ThreadPool]  # the pool, when first needed
    jobs: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    _queue: list[tuple[_Call, Deferred[Any]]] = attrs.field(factory=list)

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        waiter: Deferred[Any] = Deferred()
        self._queue.append(((f, args), waiter))
        if len(self._queue) == 1:
            self.reactor.callLater(0, self._flush)
        return waiter

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        size = -(-len(queue) // self.jobs)
        pool = self.pool()
        for start in range(0, len(queue), size):
            batch = queue[start:start + size]
            ran = deferToThreadPool(self.reactor, pool, run_all, [call for call, _ in batch])
            ran.addCallback(_deliver, [waiter for _, waiter in batch])


def run_all(calls: list[_Call]) -> list[tuple[bool, Any]]:
    """Run the calls in turn (in a thread): (True, result) or (False, Failure) each."""
    results: list[tuple[bool, Any]] = []
    for f, args in calls:
        try:
            results.append((True, f(*args)))
        except BaseException:
            results.append((False, Failure()))
    return results


def _deliver(results: list[tuple[bool, Any]], waiters: list[Deferred[Any]]) -> None:
    for (succeeded, value), waiter in zip(results, waiters):
        if succeeded:
            waiter.callback(value)
        else:
            waiter.errback(value)
