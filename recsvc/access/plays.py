"""Plays summarised for the audit trail: the byte ranges a user fetched of
one recording's file, merged, as one row once they stop (no request for
IDLE seconds), rather than a row for each of a player's many requests.
Pure: the caller says the time and writes what ends."""

from __future__ import annotations

from typing import Any

import attrs

# A play ends after this long without a request of its file.
IDLE = 60.0
# A play's ranges kept apart at most (a player seeking all over a long
# recording would otherwise grow its row without bound).
MAX_RANGES = 100


@attrs.define
class _Play:
    actor: str
    source: str
    recording_id: str
    file: str
    first: float
    last: float
    ranges: list[list[int]] = attrs.field(factory=list)
    requests: int = 0

    def add(self, start: int, end: int) -> None:
        """Merge bytes start..end (inclusive) into the ranges (at most
        MAX_RANGES kept apart: beyond, the closest two are joined)."""
        merged = []
        for low, high in sorted([*self.ranges, [start, end]]):
            if merged and low <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        while len(merged) > MAX_RANGES:
            gap = min(range(len(merged) - 1),
                      key=lambda i: merged[i + 1][0] - merged[i][1])
            merged[gap:gap + 2] = [[merged[gap][0], merged[gap + 1][1]]]
        self.ranges = merged
        self.requests += 1


@attrs.frozen
class EndedPlay:
    """A play as the audit trail says it."""

    actor: str
    source: str
    recording_id: str
    first: float
    detail: dict[str, Any]


@attrs.define
class Plays:
    """The plays under way, by who, from where, and which file."""

    idle: float = IDLE
    _plays: dict[tuple[str, str, str, str], _Play] = attrs.field(factory=dict)

    def heard(self, actor: str, source: str, recording_id: str, file: str, start: int,
              end: int, now: float) -> list[EndedPlay]:
        """Bytes start..end of a file fetched now; the plays that ended."""
        ended = self.ended(now)
        key = (actor, source, recording_id, file)
        play = self._plays.get(key)
        if play is None:
            play = self._plays[key] = _Play(actor, source, recording_id, file, now, now)
        play.last = now
        play.add(start, end)
        return ended

    def ended(self, now: float | None = None) -> list[EndedPlay]:
        """The plays idle since ``idle`` seconds (None: every play), taken out."""
        done = [key for key, play in self._plays.items()
                if now is None or now - play.last >= self.idle]
        return [_ended(self._plays.pop(key)) for key in done]

    def __len__(self) -> int:
        return len(self._plays)


def _ended(play: _Play) -> EndedPlay:
    return EndedPlay(play.actor, play.source, play.recording_id, play.first, {
        "file": play.file, "ranges": play.ranges,
        "bytes": sum(high - low + 1 for low, high in play.ranges),
        "requests": play.requests, "seconds": round(play.last - play.first, 1)})
