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
"""

from __future__ import annotations

import fcntl
import os
import resource

PER_RECORDING = 3
SPARE = 64  # listeners, logs, the reactor's own


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


def reserve(ports: int) -> tuple[int, int]:
    """Room for ``ports`` recordings: (the soft limit, the table size)."""
    count = wanted(ports)
    limit = raise_limit(count)
    return limit, grow_table(min(count, limit))
