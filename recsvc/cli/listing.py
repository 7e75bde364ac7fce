"""How the ``recsvc`` command shows a call to people: one way for its
direction and parties, in ``search`` (finished recordings) and ``status``
(recordings in progress) alike; and what a phone sent, fit for a terminal."""

from __future__ import annotations

import json
from typing import Any, Mapping

# The arrow points from the caller to the called: the local party calls
# out, the remote party calls in. A phone that does not say: no arrow head.
ARROWS = {"out": "->", "in": "<-"}


def direction_and_parties(call: Mapping[str, Any]) -> str:
    """``out  2001 Desk -> 13800138000 Bob``: the direction, then the local
    and the remote party (number and name, ``-`` for neither), from a
    sidecar or an /api/active row."""
    direction = call.get("direction") or "-"
    return (f"{direction:3}  {_party(call, 'local')} {ARROWS.get(direction, '--')} "
            f"{_party(call, 'remote')}")


def _party(call: Mapping[str, Any], side: str) -> str:
    number, name = call.get(f"{side}_number") or "", call.get(f"{side}_name") or ""
    return f"{number} {name}".strip() or "-"


def printable(text: str) -> str:
    """``text`` fit for a line of a terminal: each character that is not
    printable as ``?``. A phone's numbers and names are what it sent:
    control characters in them would make escape sequences (colours, a
    cleared screen, a retitled window) or new, forged lines."""
    return "".join(char if char.isprintable() else "?" for char in text)


def json_text(data: Any) -> str:
    """``data`` as indented JSON, non-ASCII letters as they are (names read
    as names) but every character that is not printable escaped: JSON
    escapes only those below 0x20, not the C1 controls (U+009B begins an
    escape sequence too) or the line separators."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    # Outside its strings, indented JSON has only printable characters and
    # new lines: what is left to escape is within strings.
    return "".join(char if char.isprintable() or char == "\n" else _escaped(char)
                   for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a surrogate pair, as JSON writes what lies beyond
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
