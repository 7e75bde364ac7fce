"""``recsvc hold``, ``recsvc release``, ``recsvc holds`` and ``recsvc
erase``: legal holds (recsvc.access.holds) and erasure on request, each
with its row in the audit trail. An erasure deletes this node's copies
(the WAV and sidecar here, their objects in the archive, their index
rows), never a held recording's, and leaves a disposal record: what was
erased, with its files' sizes and SHA-256, not the audio."""

from __future__ import annotations

import functools
import os
from typing import Any

from recsvc.access.holds import Hold, check_reason
from recsvc.archive import journal
from recsvc.archive.layout import node_of
from recsvc.archive.store import StoreFailure, read_local
from recsvc.cli.audit import cli_event
from recsvc.config import Config
from recsvc.index import store as index
from recsvc.index.numberplan import digits_of
from recsvc.summary import iso_utc


class HoldCommandError(Exception):
    """What went wrong, for the command's user."""


def _reason(text: str) -> str:
    try:
        return check_reason(text)
    except ValueError as error:
        raise HoldCommandError(f"--reason: {error}") from None


def _files_of(found_in: Any, recording_id: str) -> list[dict[str, Any]]:
    rows = list(found_in.search_all(index.Search(recording_id=recording_id)))
    if not rows:
        raise HoldCommandError(f"no finished recording with id {recording_id!r} in the index")
    return rows


def hold(found_in: Any, recording_id: str, reason: str, now: float) -> str:
    reason = _reason(reason)
    rows = _files_of(found_in, recording_id)
    event = cli_event("hold", recording_id, {"reason": reason, "files": [
        {"node": row.get("node") or "", "path": row["path"]} for row in rows]}, now)
    found_in.hold_files([Hold(row.get("node") or "", row["path"], recording_id, reason,
                              event.actor, iso_utc(now)) for row in rows], audit=event)
    return f"held {recording_id} ({len(rows)} files): {reason}"


def hold_found(found_in: Any, search: index.Search, reason: str, now: float) -> str:
    """Hold every file of every recording ``search`` finds (a dispute's
    calls: a number, a day), in one transaction with one audit row that
    names the search and the recordings."""
    reason = _reason(reason)
    rows = list(found_in.search_all(search))
    if not rows:
        raise HoldCommandError("the search finds no recording: nothing held")
    ids = sorted({row["id"] for row in rows})
    query = {name: value for name, value in (
        ("number", search.number), ("name", search.name), ("device", search.device),
        ("direction", search.direction), ("since", search.since), ("until", search.until),
        ("min_duration_s", search.min_duration_s), ("stop_reason", search.stop_reason),
        ("note", search.note), ("tag", search.tag)) if value is not None}
    event = cli_event("hold", "search", {"reason": reason, "query": query, "recordings": ids},
                      now)
    found_in.hold_files([Hold(row.get("node") or "", row["path"], row["id"], reason,
                              event.actor, iso_utc(now)) for row in rows], audit=event)
    return f"held {len(ids)} recordings ({len(rows)} files): {reason}"


def release(found_in: Any, recording_id: str, reason: str, now: float) -> str:
    reason = _reason(reason)
    held = [each for each in found_in.holds() if each.recording_id == recording_id]
    if not held:
        raise HoldCommandError(f"recording {recording_id!r} is not held")
    event = cli_event("release", recording_id, {"reason": reason, "held_for": held[0].reason},
                      now)
    found_in.release_files([(each.node, each.path) for each in held], audit=event)
    return f"released {recording_id} ({len(held)} files)"


def listing(found_in: Any) -> str:
    held = found_in.holds()
    if not held:
        return "no recording is held"
    lines = []
    for each in held:
        lines.append(f"{each.recording_id}  {each.node or '-'}  {each.path}  held {each.held_at} "
                     f"by {each.held_by}: {each.reason}")
    return "\n".join(lines)


def erase(found_in: Any, config: Config, number: str, reason: str, now: float,
          store: Any = None) -> str:
    """Erase every recording whose local or remote number is ``number``
    (the same whole number, in any spelling the numbering plan relates:
    NumberPlan.whole), but held ones (a file of it held, or its id, on any
    node); this node's copies only (another node's are listed: erase
    there). ``store``: the archive's (IObjectStore), for archive.url. The
    disposal record is written whatever happens: a failure partway says
    what was erased before it."""
    reason = _reason(reason)
    plan = config.numbers.plan
    wanted = plan.whole(number)
    try:
        search = index.Search(number=number, plan=plan)
    except ValueError as error:
        raise HoldCommandError(f"--number: {error}") from None
    rows = [row for row in found_in.search_all(search)
            if wanted in (plan.whole(row.get("local_number") or ""),
                          plan.whole(row.get("remote_number") or ""))]
    holds = found_in.holds()
    held_paths = {each.path: each for each in holds}
    held_ids = {each.recording_id: each for each in holds}
    recordings: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        recordings.setdefault((row.get("node") or "", row["id"]), []).append(row)
    erased: list[dict[str, Any]] = []
    refused, elsewhere, failure = [], [], None
    for (node, recording_id), files in sorted(recordings.items()):
        hold = held_ids.get(recording_id) or next(
            (held_paths[row["path"]] for row in files if row["path"] in held_paths), None)
        if hold is not None:
            refused.append({"id": recording_id, "node": node, "reason": hold.reason})
        elif node not in ("", config.node):
            elsewhere.append({"id": recording_id, "node": node})
        elif failure is None:
            gone: list[dict[str, Any]] = []
            notes = 0
            try:
                _erase_files(found_in, config, files, store, gone)
                if not list(found_in.search_all(index.Search(recording_id=recording_id))):
                    # (Gone from the index, on every node: its notes with it.)
                    notes = found_in.forget_notes([recording_id])
            except HoldCommandError as error:
                failure = str(error)
            erased.append({"id": recording_id, "node": node,
                           "started_at": files[0].get("started_at"), "files": gone,
                           "notes": notes, **({"failed": failure} if failure else {})})
    record = cli_event("erase", wanted, {
        "number": wanted, "asked": digits_of(number), "reason": reason, "erased": erased,
        "held, not erased": refused, "on other nodes, not erased": elsewhere,
        **({"failed": failure} if failure else {})}, now)
    found_in.append_audit(record)
    if failure is not None:
        raise HoldCommandError(f"{failure}; what was erased before is in the disposal record "
                               f"(the audit trail): run the erasure again for the rest")
    lines = [f"erased {len(erased)} recordings ({sum(len(e['files']) for e in erased)} files) "
             f"of {wanted}; the disposal record is in the audit trail"]
    lines += [f"not erased, held: {each['id']} ({each['reason']})" for each in refused]
    lines += [f"not erased, on node {each['node']}: {each['id']} (erase it there)"
              for each in elsewhere]
    return "\n".join(lines)


def _erase_files(found_in: Any, config: Config, files: list[dict[str, Any]], store: Any,
                 gone: list[dict[str, Any]]) -> None:
    """Delete a recording's files in the archive, here and in the index,
    each noted in ``gone`` as it goes (name, size, SHA-256 read first).
    Raises HoldCommandError at the first that cannot be."""
    root = os.path.realpath(config.storage.root)
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
        if store is not None:  # (the archive's copy first: the local one is the last)
            key = config.archive.location.key(node_of(row.get("node"), config.node), relative)
            try:
                store.delete(key)
            except StoreFailure as failure:
                raise HoldCommandError(f"the archive's copy {key} could not be deleted "
                                       f"({failure.cause})") from None
            entry["archive"] = key
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        gone.append(entry)
    if store is not None:
        journal.forget(config.storage.root, [relative for _, relative, _, _ in entries])
    found_in.remove([row["path"] for row in files])


def _inside(root: str, relative: str) -> str:
    folder, name = os.path.split(os.path.join(root, relative))
    path = os.path.join(os.path.realpath(folder), name)
    if not path.startswith(root + os.sep) or name in ("", ".", ".."):
        raise HoldCommandError(f"{relative!r} is outside the recordings folder: not erased")
    return path


def archive_store(config: Config) -> Any:
    """The archive's store of archive.url, or None."""
    location = config.archive.location
    if location is None:
        return None
    from recsvc.archive.s3 import S3Store, client_for

    settings = config.archive
    return S3Store(location, make_client=functools.partial(
        client_for, settings.endpoint_url, settings.region, 1))
