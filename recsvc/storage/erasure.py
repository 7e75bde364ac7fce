"""Erasure on request (GDPR): every recording of a number deleted, this
node's copies (the WAV and sidecar here, their objects in the archive,
their index rows, their notes), never a held one's, leaving a disposal
record in the audit trail: what was erased, with its files' sizes and
SHA-256, not the audio. Blocking: run where the index is used (the CLI,
or the service's index thread)."""

from __future__ import annotations

import os
from typing import Any, Callable

import attrs

from recsvc.archive import journal
from recsvc.archive.layout import node_of
from recsvc.archive.store import StoreFailure, read_local
from recsvc.index import store as index
from recsvc.index.numberplan import NumberPlan, digits_of


class ErasureFailed(Exception):
    """What went wrong, said to whoever erases."""


@attrs.frozen
class ErasurePlace:
    """Where this node's recordings are: its storage root, how numbers'
    forms relate, its name, the archive's location and store (None: no
    archive)."""

    root: str
    plan: NumberPlan
    node: str
    location: Any = None
    store: Any = None


def erase(found_in: Any, place: ErasurePlace, number: str, reason: str,
          event_of: Callable[[str, dict[str, Any]], Any]) -> str:
    """Erase every recording whose local or remote number is ``number``
    (the same whole number, in any spelling the numbering plan relates:
    NumberPlan.whole), but held ones (a file of it held, or its id, on any
    node); this node's copies only (another node's are listed: erase
    there). ``store``: the archive's (IObjectStore), for archive.url. The
    disposal record is written whatever happens: a failure partway says
    what was erased before it."""
    plan = place.plan
    wanted = plan.whole(number)
    try:
        search = index.Search(number=number, plan=plan)
    except ValueError as error:
        raise ErasureFailed(f"number: {error}") from None
    rows = [row for row in found_in.search_all(search)
            if wanted in (plan.whole(row.get("local_number") or ""),
                          plan.whole(row.get("remote_number") or ""))]
    holds = found_in.holds()
    held_paths = {each.path: each for each in holds}
    held_recordings = _held_recordings(found_in, holds)
    # A recording: its node, id and phone (two phones' calls may share an id).
    recordings: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        recordings.setdefault((row.get("node") or "", row["id"], row.get("device") or ""),
                              []).append(row)
    erased: list[dict[str, Any]] = []
    refused, elsewhere, failure = [], [], None
    for (node, recording_id, device), files in sorted(recordings.items()):
        hold = (held_recordings.get((recording_id, device))
                or held_recordings.get((recording_id, None)) or next(
                    (held_paths[row["path"]] for row in files if row["path"] in held_paths),
                    None))
        if hold is not None:
            refused.append({"id": recording_id, "node": node, "reason": hold.reason})
        elif node not in ("", place.node):
            elsewhere.append({"id": recording_id, "node": node})
        elif failure is None:
            gone: list[dict[str, Any]] = []
            notes = 0
            try:
                _erase_files(found_in, place, files, gone)
                notes = found_in.forget_notes([row["path"] for row in files])
            except ErasureFailed as error:
                failure = str(error)
            erased.append({"id": recording_id, "node": node,
                           "started_at": files[0].get("started_at"), "files": gone,
                           "notes": notes, **({"failed": failure} if failure else {})})
    record = event_of(wanted, {
        "number": wanted, "asked": digits_of(number), "reason": reason, "erased": erased,
        "held, not erased": refused, "on other nodes, not erased": elsewhere,
        **({"failed": failure} if failure else {})})
    found_in.append_audit(record)
    if failure is not None:
        raise ErasureFailed(f"{failure}; what was erased before is in the disposal record "
                               f"(the audit trail): run the erasure again for the rest")
    lines = [f"erased {len(erased)} recordings ({sum(len(e['files']) for e in erased)} files) "
             f"of {wanted}; the disposal record is in the audit trail"]
    lines += [f"not erased, held: {each['id']} ({each['reason']})" for each in refused]
    lines += [f"not erased, on node {each['node']}: {each['id']} (erase it there)"
              for each in elsewhere]
    return "\n".join(lines)


def _held_recordings(found_in: Any, holds: list[Any]) -> dict[tuple[str, str | None], Any]:
    """The held recordings by their id and phone: a part finished after
    the hold is held too. A held file no longer indexed holds every
    recording of its id (device None: the safe side)."""
    held: dict[tuple[str, str | None], Any] = {}
    for each in holds:
        devices = [row.get("device") or "" for row in found_in.search_all(
            index.Search(recording_id=each.recording_id)) if row["path"] == each.path]
        for device in devices or [None]:
            held.setdefault((each.recording_id, device), each)
    return held


def _erase_files(found_in: Any, place: ErasurePlace, files: list[dict[str, Any]],
                 gone: list[dict[str, Any]]) -> None:
    """Delete a recording's files in the archive, here and in the index,
    each noted in ``gone`` as it goes (name, size, SHA-256 read first).
    Raises ErasureFailed at the first that cannot be."""
    root = os.path.realpath(place.root)
    entries = []
    for row in files:
        for relative in (row["path"], os.path.splitext(row["path"])[0] + ".json"):
            path = _inside(root, relative)
            entry: dict[str, Any] = {"name": relative}
            try:
                local = read_local(path)
                entry.update(size=local.size, sha256=local.sha256)
            except FileNotFoundError:
                entry["here"] = False  # (only in the archive, or gone)
            entries.append((row, relative, path, entry))
    for row, relative, path, entry in entries:
        if place.store is not None:  # (the archive's copy first: the local one is the last)
            key = place.location.key(node_of(row.get("node"), place.node), relative)
            try:
                place.store.delete(key)
            except StoreFailure as failure:
                raise ErasureFailed(f"the archive's copy {key} could not be deleted "
                                       f"({failure.cause})") from None
            entry["archive"] = key
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        gone.append(entry)
    if place.store is not None:
        journal.forget(place.root, [relative for _, relative, _, _ in entries])
    found_in.remove([row["path"] for row in files])


def _inside(root: str, relative: str) -> str:
    folder, name = os.path.split(os.path.join(root, relative))
    path = os.path.join(os.path.realpath(folder), name)
    if not path.startswith(root + os.sep) or name in ("", ".", ".."):
        raise ErasureFailed(f"{relative!r} is outside the recordings folder: not erased")
    return path
