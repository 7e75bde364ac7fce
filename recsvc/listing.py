"""How the ``recsvc`` command shows a call to people: one way for its
direction and parties, in ``search`` (finished recordings) and ``status``
(recordings in progress) alike."""

from __future__ import annotations

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
