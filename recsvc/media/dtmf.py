"""DTMF as telephone-events (RFC 4733): which digits were pressed, and when."""

from __future__ import annotations

import struct

import attrs

EVENT_NAMES = "0123456789*#ABCD"
# More key presses than anyone types in a call: a sender that makes every
# packet a new event must not grow the sidecar without bound.
MAX_DIGITS = 1000


class DtmfError(ValueError):
    """A payload that is not a telephone-event."""


@attrs.frozen
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int  # in RTP timestamp units


def parse_event(payload: bytes) -> TelephoneEvent:
    """The first event of a telephone-event payload. Raises `DtmfError`."""
    if len(payload) < 4:
        raise DtmfError(f"telephone-event of {len(payload)} bytes")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def build_event(event: TelephoneEvent) -> bytes:
    return struct.pack(
        "!BBH", event.event, (0x80 if event.end else 0) | event.volume, event.duration
    )


def event_name(event: int) -> str:
    if event < len(EVENT_NAMES):
        return EVENT_NAMES[event]
    return "flash" if event == 16 else f"event {event}"


@attrs.frozen
class Digit:
    """A key pressed: where it starts in the recording and how long it lasted."""

    digit: str
    offset_ticks: int
    duration_ticks: int


@attrs.define(eq=False)
class DtmfLog:
    """Collects the digits of a call. One key press is several packets with
    the same timestamp (the start of the event); it is listed once, with the
    longest duration reported."""

    _digits: list[Digit] = attrs.field(factory=list)
    _by_start: dict[tuple[int, int], int] = attrs.field(factory=dict)  # (ssrc, timestamp) -> index
    overflow: int = 0  # key presses beyond MAX_DIGITS, counted, not listed

    def event(self, ssrc: int, timestamp: int, offset_ticks: int, event: TelephoneEvent) -> bool:
        """Record an event packet; True when it begins a new key press."""
        key = (ssrc, timestamp)
        index = self._by_start.get(key)
        if index is None and len(self._digits) >= MAX_DIGITS:
            self.overflow += 1
            return False
        if index is None:
            self._by_start[key] = len(self._digits)
            self._digits.append(Digit(event_name(event.event), offset_ticks, event.duration))
            if len(self._by_start) > 64:
                self._by_start.pop(next(iter(self._by_start)))
            return True
        digit = self._digits[index]
        if event.duration > digit.duration_ticks:
            self._digits[index] = attrs.evolve(digit, duration_ticks=event.duration)
        return False

    @property
    def digits(self) -> list[Digit]:
        return list(self._digits)
