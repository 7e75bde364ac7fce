"""Legal holds: recordings kept past retention for a dispute, whatever
deletes recordings (retention, erasure, the archive's retention) leaving
them be; kept in the index database (IHolds), by the files of the
recording held (its node and path), with why, who and when."""

from __future__ import annotations

from typing import Any, Sequence

import attrs
from zope.interface import Interface


@attrs.frozen
class Hold:
    """One held file of a recording: its node and path (as the index keys
    it), the recording's id, why, who held it and when (ISO UTC)."""

    node: str
    path: str
    recording_id: str
    reason: str
    held_by: str
    held_at: str


COLUMNS = ("node", "path", "recording_id", "reason", "held_by", "held_at")


def row_of(hold: Hold) -> tuple[str, ...]:
    return (hold.node, hold.path, hold.recording_id, hold.reason, hold.held_by, hold.held_at)


def hold_of(row: Sequence[str]) -> Hold:
    return Hold(*row)


def check_reason(reason: str) -> str:
    """A hold's (or an erasure's) reason: one printable line, not empty."""
    reason = reason.strip()
    if not reason or not reason.isprintable() or len(reason) > 500:
        raise ValueError("a reason is one printable line of 1 to 500 characters")
    return reason


class IHolds(Interface):
    """The holds an index database keeps. Every method blocks."""

    def hold_files(holds: Sequence[Hold], audit: Any = None) -> None:
        """Hold these files (a file held already keeps its first hold), with
        ``audit``'s row in the same transaction."""

    def release_files(keys: Sequence[tuple[str, str]], audit: Any = None) -> int:
        """Release the files (node, path); how many were held."""

    def holds() -> list[Hold]:
        """Every held file, by recording id."""

    def holds_on(paths: Sequence[str]) -> list[Hold]:
        """The holds on these files (a recording's, that a user reaches)."""

    def held_paths(node: str) -> frozenset[str]:
        """The paths of the held files, whatever node they were held on: a
        node renamed (its name is the host's by default) keeps its holds,
        and a file of the same path on another node is kept too (the
        safe side); and of every indexed file of a held recording's id (a
        part finished after the hold)."""
