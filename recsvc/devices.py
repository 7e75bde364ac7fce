"""Which phone a recording is from: a MAC address in any spelling, and the
key a device is compared, counted and indexed by.
"""

from __future__ import annotations

import re

_MAC = re.compile(r"[0-9a-f]{2}(?:[:\-.]?[0-9a-f]{2}){5}")  # (lower case)


def parse_mac(text: str) -> str:
    """A MAC address in any common spelling (00:A8:59:.., 00-a8-.., 00a859..,
    00a8.5900.0001) as 12 lower-case hex digits. Raises ValueError."""
    value = text.strip().lower()
    if not _MAC.fullmatch(value):
        raise ValueError(f"{text!r} is not a MAC address")
    return re.sub(r"[^0-9a-f]", "", value)


def device_key(device: str) -> str:
    """What a device is compared and indexed as: its MAC's 12 hex digits,
    or (for a device field that is no MAC) the text itself, lower-cased."""
    try:
        return parse_mac(device)
    except ValueError:
        return device.strip().lower()
