"""``recsvc audit verify|export``: the audit trail the index database keeps
(recsvc.access.audit), read in batches; and what the other commands
append to it (`cli_event`)."""

from __future__ import annotations

import getpass
import json
from typing import Any, Iterator, TextIO

from recsvc.access.audit import AuditEvent, AuditRow, audit_event, verify
from recsvc.summary import iso_utc

# Rows read at a time.
BATCH = 10_000


def rows_of(trail: Any, after: int = 0) -> Iterator[AuditRow]:
    """Every row after place ``after``, in order, a batch at a time."""
    while True:
        batch = trail.audit_rows(after=after, limit=BATCH)
        yield from batch
        if len(batch) < BATCH:
            return
        after = batch[-1].seq


def verify_trail(trail: Any) -> tuple[bool, str]:
    """Whether the trail is intact, and what to say of it."""
    found = verify(rows_of(trail))
    if found.intact:
        if not found.rows:
            return True, "the audit trail is empty"
        return True, (f"the audit trail is intact: {found.rows} rows, the last {found.last_seq} "
                      f"(hash {found.last_hash})")
    return False, (f"the audit trail is broken at row {found.broken_at}: {found.why} "
                   f"({found.rows} rows read)")


def export(trail: Any, out: TextIO, after: int = 0) -> int:
    """The rows after ``after`` as JSON lines on ``out``; how many."""
    count = 0
    for row in rows_of(trail, after):
        out.write(json.dumps(row.as_json(), sort_keys=True) + "\n")
        count += 1
    return count


def cli_event(action: str, target: str, detail: dict[str, Any], now: float) -> AuditEvent:
    """An event of a command run here: its actor the system's user who ran
    it, its source "cli"."""
    try:
        actor = getpass.getuser()
    except (KeyError, OSError):
        actor = "-"
    if not actor.isprintable():
        actor = "-"
    return audit_event(iso_utc(now), actor, "cli", action, target, detail)
