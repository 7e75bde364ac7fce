"""The process's file descriptors: room for every recording, made at start.

Each recording holds about three descriptors (its RTP socket, its phone's
control connection, its file). Two things go wrong when they run out or
grow:

- the soft limit (RLIMIT_NOFILE, often 1024) refuses the 340th call or so:
  it is raised towards the hard limit, as far as the port range needs;
- the kernel grows a process's descriptor table by doubling it, and in a
  process with threads each growth waits for an RCU grace period: the
  reactor stood still for 15-20 ms at the 100th, 215th and 445th
  recording of a burst of Starts. The table is grown once, at start-up,
  to what the port range can use.

What the control port and the recordings may still need is held back
from the web port and from idle control connections (`Budget`,
`DescriptorRoom`): a flood of HTTP or stray TCP connections cannot take
the descriptors of a phone's connection, its RTP socket and its file.
"""

from __future__ import annotations

import fcntl
import os
import resource
from typing import TYPE_CHECKING, Callable

import attrs

if TYPE_CHECKING:
    from recsvc.config import Config

PER_RECORDING = 3
SPARE = 64  # listeners, logs, the reactor's own
# The index's database, its journal (or WAL and shared memory), one spare.
INDEX = 4
# Held back beyond what the recordings and phones need: a webhook's
# connection, a retention sweep's folder, a thread's pipe, recovery.
MARGIN = 32
# What one web connection may take: itself and a recording it plays.
PER_WEB_CONNECTION = 2
# Web connections always left room for, however low the limit: a few
# people on the page, /healthz and /metrics.
WEB_FLOOR = 8
# How often, at most, the open descriptors are counted again (seconds):
# counting 3,000 of them takes a millisecond or more; in between, what
# is known to have opened or closed since (connections, recordings) is
# added to the last count.
RECOUNT_EVERY_S = 1.0


def wanted(ports: int) -> int:
    """Descriptors for ``ports`` recordings at once, and the rest."""
    return PER_RECORDING * ports + SPARE


def raise_limit(count: int) -> int:
    """Raise the soft descriptor limit to ``count`` (at most the hard
    limit; never lower it). Returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return count  # no limit: as many as asked
    target = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def grow_table(count: int) -> int:
    """Make the kernel's descriptor table hold ``count`` descriptors now
    (by taking the lowest free descriptor at or above ``count - 1`` for a
    moment: no open descriptor is touched). Returns the size reached, 0
    if it could not (the limit is lower)."""
    if count < 1:
        return 0
    # A pipe to duplicate: no file system call (this may run on the reactor).
    probe, other = os.pipe()
    try:
        try:
            high = fcntl.fcntl(probe, fcntl.F_DUPFD_CLOEXEC, count - 1)
        except OSError:
            return 0
        os.close(high)
        return high + 1
    finally:
        os.close(probe)
        os.close(other)


def reserve(ports: int, limit: int = 0) -> tuple[int, int]:
    """Room for ``ports`` recordings, and a soft limit of ``limit`` at least
    (as far as the hard limit allows): (the soft limit, the table size)."""
    count = wanted(ports)
    limit = raise_limit(max(count, limit))
    return limit, grow_table(min(count, limit))


@attrs.frozen
class Budget:
    """Who may hold how many descriptors: the control port's connections,
    the recordings (each its RTP socket and its file; its connection is one
    of the control port's), the index and a margin, then the web port's
    connections, and SPARE for the rest (listeners, logs, the reactor)."""

    control_connections: int
    recordings: int
    web_connections: int = 0

    @property
    def control_side(self) -> int:
        """What the control port and the recordings need at most."""
        return self.control_connections + 2 * self.recordings + INDEX + MARGIN

    @property
    def total(self) -> int:
        """The soft limit all of them need."""
        return self.control_side + PER_WEB_CONNECTION * self.web_connections + SPARE

    def within(self, limit: int) -> Budget:
        """The budget a soft limit of ``limit`` allows. The control port's
        connections are fewer first, as far as it takes (down to one a
        recording); if that is not enough to leave WEB_FLOOR web
        connections and SPARE their room, the recordings held room for are
        fewer too (each with its connection), so that the web port and a
        phone's next connection are never refused for good. The web port
        keeps its limit (what it may use when the control side is idle)."""
        over = self.total - limit
        if over <= 0:
            return self
        fewer = max(min(self.recordings, self.control_connections),
                    self.control_connections - over)
        budget = attrs.evolve(self, control_connections=fewer)
        room = limit - PER_WEB_CONNECTION * min(WEB_FLOOR, self.web_connections) - SPARE
        if budget.control_side <= room:
            return budget
        recordings = max(0, (room - INDEX - MARGIN) // PER_RECORDING)
        return attrs.evolve(self, control_connections=recordings, recordings=recordings)

    def held_back(self, control_open: int, recordings_open: int) -> int:
        """Descriptors the control side may still open: the connections
        and recordings it does not have yet, the index and the margin."""
        return (max(0, self.control_connections - control_open) + self.for_recordings(
            recordings_open))

    def for_recordings(self, recordings_open: int) -> int:
        """Descriptors the recordings not begun yet may still open (their
        RTP sockets and files), the index and the margin."""
        return 2 * max(0, self.recordings - recordings_open) + INDEX + MARGIN


def count_open() -> int | None:
    """How many descriptors the process has open (None where the system
    does not list them)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # (the listing's own)
        except OSError:
            continue
    return None


@attrs.frozen
class InUse:
    """What is open now that the budget knows of."""

    control_connections: int
    recordings: int
    web_connections: int


@attrs.define(eq=False)
class DescriptorRoom:
    """Whether a new connection may take a descriptor: a web connection
    only while the free ones stay above what the control side may still
    need (`Budget.held_back`) by PER_WEB_CONNECTION; an idle control
    connection (one not bringing a Start) only while they stay above what
    the recordings not begun yet need (`Budget.for_recordings`).

    The open descriptors are counted (`count_open`) at most every
    RECOUNT_EVERY_S seconds; in between, the connections and recordings
    opened or closed since (``in_use``) are added to the last count."""

    budget: Budget
    limit: int
    now: Callable[[], float]
    in_use: Callable[[], InUse]
    count: Callable[[], int | None] = count_open
    _counted: int | None = None
    _counted_at: float = float("-inf")
    _counted_with: InUse | None = None

    def free(self) -> int | None:
        """Descriptors free now (None: they cannot be counted here)."""
        return self._free(self.in_use())

    def _free(self, using: InUse) -> int | None:
        now = self.now()
        if self._counted_with is None or now - self._counted_at >= RECOUNT_EVERY_S:
            self._counted, self._counted_at, self._counted_with = self.count(), now, using
        if self._counted is None:
            return None
        before = self._counted_with
        since = (using.control_connections - before.control_connections
                 + 2 * (using.recordings - before.recordings)
                 + using.web_connections - before.web_connections)
        return self.limit - self._counted - since

    def for_web(self) -> bool:
        """Whether a new web connection may be taken."""
        using = self.in_use()
        free = self._free(using)
        if free is None:
            return True
        held = self.budget.held_back(using.control_connections, using.recordings)
        return free - held >= PER_WEB_CONNECTION

    def for_idle_control(self) -> bool:
        """Whether a new control connection without a Start may be taken."""
        using = self.in_use()
        free = self._free(using)
        if free is None:
            return True
        return free - self.budget.for_recordings(using.recordings) >= 1


def descriptor_budget(config: Config) -> Budget:
    """The descriptors the control port, the recordings (as many as the
    ports, or recordings.max_active if fewer) and the web port may hold."""
    low, high = config.rtp.port_range
    recordings = high - low + 1
    if config.recordings.max_active:
        recordings = min(recordings, config.recordings.max_active)
    return Budget(
        config.control.max_connections, recordings,
        0 if config.http.listen == "off" else config.http.max_connections)
