"""``recsvc hold``, ``recsvc release``, ``recsvc holds`` and ``recsvc
erase``: legal holds (recsvc.access.holds) and erasure on request
(recsvc.storage.erasure), each with its row in the audit trail."""

from __future__ import annotations

import functools
from typing import Any

from recsvc.access.holds import Hold, check_reason
from recsvc.cli.audit import cli_event
from recsvc.config import Config
from recsvc.index import store as index
from recsvc.storage import erasure
from recsvc.storage.erasure import ErasurePlace
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
    """``recsvc erase``: recsvc.storage.erasure's, by the user who runs it."""
    place = ErasurePlace(config.storage.root, config.numbers.plan, config.node,
                         config.archive.location, store)
    try:
        return erasure.erase(found_in, place, number, _reason(reason),
                             lambda target, detail: cli_event("erase", target, detail, now))
    except erasure.ErasureFailed as error:
        raise HoldCommandError(str(error)) from None


def archive_store(config: Config) -> Any:
    """The archive's store of archive.url, or None."""
    location = config.archive.location
    if location is None:
        return None
    from recsvc.archive.s3 import S3Store, client_for

    settings = config.archive
    return S3Store(location, make_client=functools.partial(
        client_for, settings.endpoint_url, settings.region, 1))
