"""Where a recording's files go: names built from client fields, made safe.

Every value the phone sends that reaches a path passes through
`safe_component`, so no id, device or number can leave the storage root.
"""

from __future__ import annotations

import re
import time

_UNSAFE = re.compile(r"[^A-Za-z0-9+_.-]+")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?:[:\-.]?[0-9A-Fa-f]{2}){5}")
MAX_COMPONENT = 48


def safe_component(value: str, fallback: str = "unknown", max_length: int = MAX_COMPONENT) -> str:
    """``value`` reduced to letters, digits and ``+_.-``: never empty, never
    ``.``/``..`` or hidden, at most ``max_length`` characters."""
    cleaned = _UNSAFE.sub("_", value)[:max_length].strip("._")
    return cleaned or fallback


def device_folder(device: str) -> str:
    """A MAC address in any common spelling becomes 12 lower-case hex digits,
    so one phone always files into one folder."""
    if _MAC.fullmatch(device.strip()):
        return re.sub(r"[^0-9a-f]", "", device.lower())
    return safe_component(device)


def recording_stem(
    started_at: float, device: str, direction: str, remote_number: str, recording_id: str
) -> tuple[str, ...]:
    """Relative path parts of a recording, without extension:
    ``device/YYYY/MM/DD/YYYYmmddTHHMMSSZ_dir_remote_id`` (UTC)."""
    moment = time.gmtime(started_at)
    name = "_".join((
        time.strftime("%Y%m%dT%H%M%SZ", moment),
        safe_component(direction),
        safe_component(remote_number, fallback="none"),
        safe_component(recording_id),
    ))
    return (
        device_folder(device),
        time.strftime("%Y", moment),
        time.strftime("%m", moment),
        time.strftime("%d", moment),
        name,
    )
