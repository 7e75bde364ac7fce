"""Which recordings a user reaches: their scopes, each one of

- ``all``: every recording;
- ``group:NAME``: the devices and local numbers of the group NAME
  (``groups:`` in the config);
- ``device:MAC``: one phone's (any spelling of its MAC address);
- ``number:DIGITS``: one local number's (the phone's own line).

A recording is in scope when its device or its local number is one that
a scope names. Pure: the groups are given.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import attrs

from recsvc.access.roles import SEARCH, UNSCOPED, may
from recsvc.devices import device_key, parse_mac
from recsvc.index.numberplan import digits_of

KINDS = ("all", "group", "device", "number")
# A group's name, as the config's key and a scope say it.
_GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A local number as written: digits, a leading "+", spaces and dashes.
_NUMBER = re.compile(r"\+?[0-9][0-9 -]{0,63}")


@attrs.frozen
class Scope:
    """One scope: ``kind`` (one of KINDS) and its value (a group's name,
    a MAC's 12 hex digits, a number's digits; "" for ``all``)."""

    kind: str
    value: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "all" else f"{self.kind}:{self.value}"


ALL = Scope("all")


@attrs.frozen
class Group:
    """A team: the devices (MACs, 12 hex digits) and local numbers (digits)
    whose recordings are its own."""

    name: str
    devices: frozenset[str] = frozenset()
    numbers: frozenset[str] = frozenset()


def check_group_name(name: Any) -> str:
    if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a group name (letters, digits, '.', '_', '-'; "
                         f"at most 64)")
    return name


def parse_scope(text: str) -> Scope:
    """A scope as written (``all``, ``group:sales``, ``device:00:a8:59:..``,
    ``number:2001``). Raises ValueError saying what is wrong."""
    text = text.strip()
    if text == "all":
        return ALL
    kind, colon, value = text.partition(":")
    if not colon or kind not in KINDS[1:]:
        raise ValueError(f"{text!r} is not a scope (all, group:NAME, device:MAC or "
                         f"number:DIGITS)")
    if kind == "group":
        return Scope(kind, check_group_name(value))
    if kind == "device":
        try:
            return Scope(kind, parse_mac(value))
        except ValueError:
            raise ValueError(f"{text!r}: {value!r} is not a MAC address") from None
    if not _NUMBER.fullmatch(value):
        raise ValueError(f"{text!r}: {value!r} is not a number (digits)")
    return Scope(kind, digits_of(value))


def parse_scopes(texts: Iterable[str]) -> tuple[Scope, ...]:
    """Scopes as written, each once, in a stable order (``all`` alone, if
    it is among them: it reaches every recording)."""
    scopes = {parse_scope(text) for text in texts}
    return (ALL,) if ALL in scopes else tuple(sorted(scopes, key=str))


def unknown_groups(scopes: Iterable[Scope], groups: Mapping[str, Group]) -> list[str]:
    """The groups ``scopes`` name that ``groups`` does not have."""
    return sorted({scope.value for scope in scopes
                   if scope.kind == "group" and scope.value not in groups})


@attrs.frozen
class Reach:
    """What scopes reach, flattened: every recording (``everything``), or
    those of these devices or local numbers."""

    everything: bool
    devices: frozenset[str] = frozenset()
    numbers: frozenset[str] = frozenset()

    def includes(self, recording: Mapping[str, Any]) -> bool:
        """Whether a recording (its sidecar: ``device``, ``local_number``)
        is within reach."""
        if self.everything:
            return True
        device = recording.get("device")
        if isinstance(device, str) and device_key(device) in self.devices:
            return True
        number = recording.get("local_number")
        return isinstance(number, str) and digits_of(number) in self.numbers


NOTHING = Reach(False)
EVERYTHING = Reach(True)


def user_reach(role: str, scopes: Iterable[Scope], groups: Mapping[str, Group]) -> Reach:
    """What a user of ``role`` reaches: a role without a scope (an admin,
    an auditor) every recording if it may search them, else none; any
    other, its ``scopes``' (`reach_of`)."""
    if role in UNSCOPED:
        return EVERYTHING if may(role, SEARCH) else NOTHING
    return reach_of(scopes, groups)


def reach_of(scopes: Iterable[Scope], groups: Mapping[str, Group]) -> Reach:
    """What ``scopes`` reach, with ``groups`` as the config has them (a
    group not there reaches nothing)."""
    devices: set[str] = set()
    numbers: set[str] = set()
    for scope in scopes:
        if scope.kind == "all":
            return EVERYTHING
        if scope.kind == "device":
            devices.add(scope.value)
        elif scope.kind == "number":
            numbers.add(scope.value)
        elif scope.value in groups:
            devices |= groups[scope.value].devices
            numbers |= groups[scope.value].numbers
    return Reach(False, frozenset(devices), frozenset(numbers))
