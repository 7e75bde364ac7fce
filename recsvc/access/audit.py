"""The audit trail: who did what, when, from where, to what; kept in the
index database as rows whose hashes chain (each row's hash covers the
one before it), so that a row altered, removed or slipped in is found by
`verify`. Pure: the backends keep the rows (IAuditTrail)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable, Mapping

import attrs
from zope.interface import Interface

# What is audited (the list): a search with its query, a play with
# the byte ranges fetched, a download, an export, a note, a hold and its
# release, an erasure, a login and a failed one, a change to a user; and
# what a user was refused (a right their role lacks, a recording outside
# their scope: an id changed in a URL is seen).
ACTIONS = ("search", "play", "download", "export", "note", "hold", "release", "erase",
           "login", "login_failed", "logout", "user_add", "user_change", "user_password",
           "user_remove", "refused")
# The hash before the first row.
GENESIS = "0" * 64
_HASH = re.compile(r"[0-9a-f]{64}")


@attrs.frozen
class AuditEvent:
    """What happened: when (ISO UTC), who (a user's name; "-" for none,
    such as a failed login's unknown name), from where (an address, or
    "cli"), the action, what it was done to (a recording's id, a user's
    name, ""), and its details (JSON: a query, byte ranges, a reason).
    Made to be written by `audit_event`, which checks it; read back as it
    is."""

    at: str
    actor: str
    source: str
    action: str
    target: str = ""
    detail: dict[str, Any] = attrs.field(factory=dict)


def audit_event(at: str, actor: str, source: str, action: str, target: str = "",
                detail: Mapping[str, Any] | None = None) -> AuditEvent:
    """An event to write: a known action, every text field printable (a
    line shows it as it is), details that are JSON. Raises ValueError."""
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is not an audited action ({', '.join(ACTIONS)})")
    for name, value in (("at", at), ("actor", actor), ("source", source), ("target", target)):
        if not isinstance(value, str) or not value.isprintable():
            raise ValueError(f"{name}: {value!r} is not printable text")
    detail = dict(detail or {})
    try:
        canonical(detail)
    except (TypeError, ValueError) as error:
        raise ValueError(f"detail: {error}") from None
    return AuditEvent(at, actor, source, action, target, detail)


@attrs.frozen
class AuditRow:
    """An event as kept: its place in the trail (1, 2, ...), the hash of
    the row before and its own."""

    seq: int
    event: AuditEvent
    previous_hash: str
    row_hash: str

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, **attrs.asdict(self.event), "previous_hash": self.previous_hash,
                "hash": self.row_hash}


def canonical(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same bytes for the same value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def row_hash(seq: int, previous_hash: str, event: AuditEvent) -> str:
    """SHA-256 (hex) of the row's place, the hash before it and the event."""
    fields = [seq, previous_hash, event.at, event.actor, event.source, event.action,
              event.target, event.detail]
    return hashlib.sha256(canonical(fields).encode("ascii")).hexdigest()


def next_row(last: AuditRow | None, event: AuditEvent) -> AuditRow:
    """The row that follows ``last`` (None: the first) with ``event``."""
    seq = 1 if last is None else last.seq + 1
    previous = GENESIS if last is None else last.row_hash
    return AuditRow(seq, event, previous, row_hash(seq, previous, event))


@attrs.frozen
class Verified:
    """What `verify` found: the rows read, and the first that breaks the
    chain (None: none) with why."""

    rows: int
    last_seq: int
    last_hash: str
    broken_at: int | None = None
    why: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def verify(rows: Iterable[AuditRow]) -> Verified:
    """Walk the rows in their order: each must be the next place, carry
    the hash of the one before, and hash to its own."""
    count, last_seq, last_hash = 0, 0, GENESIS
    for row in rows:
        count += 1
        if row.seq != last_seq + 1:
            return Verified(count, last_seq, last_hash, last_seq + 1,
                            f"row {last_seq + 1} is missing (the next is {row.seq})")
        if row.previous_hash != last_hash:
            return Verified(count, last_seq, last_hash, row.seq,
                            f"row {row.seq} does not follow row {last_seq} (a row before it "
                            f"was changed, or it was)")
        if not _HASH.fullmatch(row.row_hash) or row_hash(
                row.seq, row.previous_hash, row.event) != row.row_hash:
            return Verified(count, last_seq, last_hash, row.seq,
                            f"row {row.seq} was changed after it was written (its hash "
                            f"does not match what it says)")
        last_seq, last_hash = row.seq, row.row_hash
    return Verified(count, last_seq, last_hash)


# The columns a backend keeps a row in, in this order (`audit_row_of`, `audit_row`).
COLUMNS = ("seq", "at", "actor", "source", "action", "target", "detail", "previous_hash",
           "row_hash")


def columns_of(row: AuditRow) -> tuple[Any, ...]:
    event = row.event
    return (row.seq, event.at, event.actor, event.source, event.action, event.target,
            canonical(event.detail), row.previous_hash, row.row_hash)


def row_of_columns(columns: Any) -> AuditRow:
    """A row as a backend gives it back, as it is (one altered by hand
    included: `verify` finds it wanting)."""
    seq, at, actor, source, action, target, detail, previous_hash, hashed = columns
    try:
        parsed = json.loads(detail)
    except ValueError:
        parsed = {"unreadable": detail}
    return AuditRow(int(seq), AuditEvent(at, actor, source, action, target, parsed),
                    previous_hash, hashed)


@attrs.frozen
class AuditQuery:
    """Which rows an auditor asks for: those before place ``before`` (None:
    the newest), at most ``limit``, newest first, each filter given
    matching (``since`` and ``until``: ISO times, compared as written)."""

    before: int | None = None
    limit: int = 100
    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: str | None = None
    until: str | None = None

    def conditions(self, mark: str) -> tuple[str, list[Any]]:
        """The WHERE clause (or "") and its parameters, ``mark`` the
        backend's placeholder."""
        where: list[str] = []
        params: list[Any] = []
        for condition, value in (("seq < {}", self.before), ("actor = {}", self.actor),
                                 ("action = {}", self.action), ("target = {}", self.target),
                                 ("at >= {}", self.since), ("at < {}", self.until)):
            if value is not None:
                where.append(condition.format(mark))
                params.append(value)
        return (" WHERE " + " AND ".join(where) if where else ""), params


class IAuditTrail(Interface):
    """The audit trail an index database keeps. Every method blocks."""

    def append_audit(event: AuditEvent) -> AuditRow:
        """Add ``event`` after the last row (rows are never changed)."""

    def audit_rows(after: int = 0, limit: int | None = None) -> list[AuditRow]:
        """The rows after place ``after``, in order (at most ``limit``)."""

    def audit_page(query: AuditQuery) -> list[AuditRow]:
        """The rows ``query`` asks for, newest first."""
