"""``recsvc audit verify|export``: the audit trail the index database keeps
(recsvc.access.audit), read in batches; and what the other commands
append to it (`cli_event`)."""

from __future__ import annotations

import argparse
import json
import os
import pwd
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


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as `verify` printed them (an argparse type)."""
    seq, colon, hashed = text.partition(":")
    if not colon or not seq.isdigit() or len(hashed) != 64 or not all(
            character in "0123456789abcdef" for character in hashed):
        raise argparse.ArgumentTypeError(f"{text!r} is not SEQ:HASH (a row's place and its "
                                         f"hash, as verify says them)")
    return int(seq), hashed


def verify_trail(trail: Any, anchor: tuple[int, str] | None = None) -> tuple[bool, str]:
    """Whether the trail is intact (and holds ``anchor``'s row, as kept
    from an earlier verify), and what to say of it."""
    seen: dict[int, str] = {}

    def noting(rows: Iterator[AuditRow]) -> Iterator[AuditRow]:
        for row in rows:
            if anchor is not None and row.seq == anchor[0]:
                seen[row.seq] = row.row_hash
            yield row
    found = verify(noting(rows_of(trail)))
    if found.intact and anchor is not None:
        seq, hashed = anchor
        if seq not in seen:
            return False, (f"the audit trail is broken: row {seq} is gone (it has {found.rows} "
                           f"rows; the trail was cut short, or is another)")
        if seen[seq] != hashed:
            return False, (f"the audit trail is broken: row {seq}'s hash is {seen[seq]}, not "
                           f"the {hashed} kept (the rows up to it were written again)")
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
    it (the process's real user, not what $USER says; under sudo, the
    user sudo names too), its source "cli"."""
    actor = system_user()
    invoker = os.environ.get("SUDO_USER")
    if invoker and invoker != actor and invoker.isprintable() and len(invoker) <= 64:
        actor = f"{actor} (sudo from {invoker})"
    return audit_event(iso_utc(now), actor, "cli", action, target, detail)


def system_user() -> str:
    """The name of the process's real user (its uid's, from the system's
    password database), or its number."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"
    return name if name.isprintable() else f"uid {os.getuid()}"
