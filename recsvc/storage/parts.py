"""A recording's files: the parts it is written in, what waits for the disk, their sidecars."""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred

from recsvc.storage.wav import AudioWriter

OpenPart = Callable[[int], AudioWriter]  # part number -> the writer of that file


@attrs.frozen
class StopCause:
    reason: str
    stopped_by: str
    at: float


@attrs.define(eq=False)
class _Part:
    """One file of the recording."""

    number: int
    writer: AudioWriter | None  # None while the file is being created
    started_at: float
    start_ticks: int  # where in the recording's timeline the file begins
    previous: str | None = None
    ticks: int = 0  # how much of the timeline the file holds
    # Audio not yet handed to the writer (which works in a thread), and the
    # hand-over under way, if any: one at a time, in order.
    pending: bytearray = attrs.field(factory=bytearray)
    storing: Deferred[Any] | None = None
    # The sidecar written when the file began: the final one must come after.
    provisional: Deferred[Any] | None = None
    opening: Deferred[Any] | None = None  # the file being created, off the reactor


def _store(writer: AudioWriter, data: bytes, durable: bool) -> None:
    """Hand audio to the file. Blocking: runs in a thread."""
    writer.write(data)
    writer.sync(durable)
