"""Free space under the storage root, watched so a full disk is foreseen.

statvfs can block (a stalled network mount), so it runs in a thread, every
second; Starts and recordings read the last value.
"""

from __future__ import annotations

import os
from typing import Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from recsvc.logs import Logger

CHECK_EVERY_S = 1.0


def free_bytes(path: str) -> int:
    """Bytes available to this (unprivileged) process under ``path``. Blocking."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


@attrs.define(eq=False)
class DiskSpace:
    """The storage's free space, refreshed in a thread.

    ``low`` is true below ``min_free``: new recordings are refused. ``critical``
    is true below half of it: recordings in progress must stop, keeping what
    they have, before the disk actually fills.
    """

    log = Logger()

    root: str
    min_free: int  # bytes
    clock: IReactorTime
    run_blocking: Callable[..., Deferred]
    measure: Callable[[str], int] = free_bytes
    free: int | None = None  # None until measured
    on_critical: Callable[[], None] = lambda: None
    _loop: LoopingCall | None = None
    _measuring: bool = False

    @property
    def low(self) -> bool:
        return self.free is not None and self.free < self.min_free

    @property
    def critical(self) -> bool:
        return self.free is not None and self.free < self.min_free // 2

    def start(self) -> None:
        if self.min_free <= 0 or (self._loop is not None and self._loop.running):
            return
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = self.clock
        self._loop.start(CHECK_EVERY_S, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def refresh(self) -> None:
        if self._measuring:
            return  # the last statvfs has not come back: do not pile up threads
        self._measuring = True
        self.run_blocking(self.measure, self.root).addCallbacks(self._measured, self._failed)

    def _measured(self, free: int) -> None:
        self._measuring = False
        was_low = self.low
        self.free = free
        if self.low and not was_low:
            self.log.warn(
                "Storage {root} has {free} MB free, under storage.min_free_mb: refusing new recordings",
                root=self.root, free=free // 1_000_000, reason="disk full",
            )
        if self.critical:
            self.on_critical()

    def _failed(self, failure: Failure) -> None:
        self._measuring = False
        self.log.warn("Cannot read the free space of {root}: {reason}",
                      root=self.root, reason=failure.getErrorMessage())
