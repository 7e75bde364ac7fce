"""Refusals and closings in the log: a line per peer and reason a minute,
with how many it stands for; what a quiet minute hid is said when the
minute is over, and what is left at shutdown then (see admission.RefusalLog)."""

from __future__ import annotations

from typing import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from recsvc.admission import RefusalLog


@attrs.define(eq=False)
class RefusalLines:
    """Decides which refusals (or closings) are logged, and says the rest
    in summaries: `note` tells the caller when to log one itself (with how
    many it stands for); ``summarise(peer, reason, count)`` logs those the
    silence hid, once their interval is over and at `flush`."""

    clock: IReactorTime
    summarise: Callable[[str, str, int], None]
    counts: RefusalLog = attrs.field(factory=RefusalLog)
    _due: IDelayedCall | None = None

    def note(self, peer: str, reason: str) -> tuple[str, int] | None:
        """As RefusalLog.note; a refusal kept silent is summed up later,
        when its own silence is over (the timer is brought forward for it)."""
        logged = self.counts.note(peer, reason, self.clock.seconds())
        if logged is None:
            # (The timer is always set for the first silence owed a line.)
            due = self.counts.due(peer, reason)
            if due is not None and (self._due is None or due < self._due.getTime()):
                if self._due is not None:
                    self._due.cancel()
                self._due = self.clock.callLater(max(0.0, due - self.clock.seconds()),
                                                 self._say_overdue)
        return logged

    def _schedule(self) -> None:
        due = self.counts.next_due()
        if due is not None:
            self._due = self.clock.callLater(max(0.0, due - self.clock.seconds()),
                                             self._say_overdue)

    def _say_overdue(self) -> None:
        self._due = None
        for peer, reason, count in self.counts.overdue(self.clock.seconds()):
            self.summarise(peer, reason, count)
        self._schedule()

    def flush(self) -> None:
        """Says every refusal not said yet (at shutdown)."""
        if self._due is not None and self._due.active():
            self._due.cancel()
        self._due = None
        for peer, reason, count in self.counts.unsaid():
            self.summarise(peer, reason, count)
