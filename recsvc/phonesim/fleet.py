"""Who the simulated phones of one `recsvc-phone` run are: each call's
recording id, MAC address, direction, remote number, source address and
key presses, from the command's options (pure: parsing and numbering)."""

from __future__ import annotations

import ipaddress
import random
import string

import attrs

from recsvc.media.dtmf import EVENT_NAMES

DIRECTIONS = ("out", "in", "mixed")
# How long each key of --dtmf is held, in RTP ticks (8 kHz): 160 ms, a
# firm press.
KEY_PRESS_TICKS = 1280
_BASE36 = string.digits + string.ascii_lowercase


class FleetError(ValueError):
    """An option value that does not describe phones; the message says what
    is wrong with it (the caller names the option)."""


def run_prefix(now: float, rng: random.Random) -> str:
    """A short prefix no earlier run used: the second it began (base 36,
    repeating after about 700 days) and three random characters (for two
    runs in the same second). Letters and digits only, so ids built on it
    are valid in the protocol and in file names."""
    seconds = int(now) % 36 ** 5
    time_part = "".join(_BASE36[seconds // 36 ** k % 36] for k in range(4, -1, -1))
    return time_part + "".join(rng.choice(_BASE36) for _ in range(3))


@attrs.frozen
class AddressRange:
    """Consecutive IPv4 addresses: phone i sends from the (i mod count)th."""

    first: ipaddress.IPv4Address
    count: int

    def address(self, index: int) -> str:
        return str(self.first + index % self.count)

    @property
    def last(self) -> str:
        return str(self.first + (self.count - 1))


def parse_source_addresses(text: str) -> AddressRange:
    """``A-B`` (both ends included), a CIDR (its host addresses) or one
    address. Raises FleetError."""
    text = text.strip()
    if "/" in text:
        try:
            network = ipaddress.IPv4Network(text, strict=False)
        except ValueError as error:
            raise FleetError(f"{text!r} is not an IPv4 network ({error})") from None
        if network.prefixlen >= 31:  # no network or broadcast address to leave out
            return AddressRange(network.network_address, network.num_addresses)
        return AddressRange(network.network_address + 1, network.num_addresses - 2)
    low, dash, high = text.partition("-")
    first = _ipv4(low)
    last = _ipv4(high) if dash else first
    if last < first:
        raise FleetError(f"the range {text!r} ends before it begins")
    return AddressRange(first, int(last) - int(first) + 1)


def _ipv4(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise FleetError(f"{text.strip()!r} is not an IPv4 address "
                         "(give A-B, a CIDR such as 127.0.1.0/24, or one address)") from None


@attrs.frozen
class NumberPattern:
    """Remote numbers: the ``#`` of the pattern are replaced, left to
    right, by phone i's index, zero-padded to as many digits
    (``+49301234####``: phone 7 calls +493012340007)."""

    pattern: str

    @property
    def capacity(self) -> int:
        """How many phones get a number of their own."""
        return 10 ** self.pattern.count("#")

    def number(self, index: int) -> str:
        places = self.pattern.count("#")
        if not places:
            return self.pattern
        digits = iter(f"{index % self.capacity:0{places}d}")
        return "".join(next(digits) if char == "#" else char for char in self.pattern)


def parse_number_pattern(text: str) -> NumberPattern:
    """A number pattern: digits, an optional leading ``+``, ``*``, and ``#``
    for the phone's index. Raises FleetError."""
    if not text:
        raise FleetError("an empty pattern")
    body = text[1:] if text.startswith("+") else text
    wrong = sorted({char for char in body if char not in "0123456789*#"})
    if wrong:
        raise FleetError(f"{text!r} has {''.join(wrong)!r}: use digits, a leading +, * and "
                         "# for the phone's number (+49301234####)")
    return NumberPattern(text)


@attrs.frozen
class DevicePrefix:
    """The first hex digits of every phone's MAC address; phone i's is the
    prefix and i in the remaining digits."""

    digits: str  # lower-case hex, at most 11

    @property
    def capacity(self) -> int:
        return 16 ** (12 - len(self.digits))

    def device(self, index: int) -> str:
        mac = self.digits + f"{index % self.capacity:0{12 - len(self.digits)}x}"
        return ":".join(mac[k:k + 2] for k in range(0, 12, 2))


def parse_device_prefix(text: str) -> DevicePrefix:
    """A MAC address prefix in any spelling (``00:a8:59``, ``00-A8-59``,
    ``00a859``). Raises FleetError."""
    digits = "".join(char for char in text if char not in ":-.").lower()
    if any(char not in string.hexdigits for char in digits):
        raise FleetError(f"{text!r} is not hex digits (with : - or . between them)")
    if len(digits) > 11:
        raise FleetError(f"{text!r} has {len(digits)} hex digits: at most 11, so that the "
                         "phones' addresses differ")
    return DevicePrefix(digits)


def parse_digits(text: str) -> str:
    """Keys to press: 0-9, *, #, A-D (none: an empty text). Raises FleetError."""
    keys = text.upper()
    wrong = sorted({char for char in keys if char not in EVENT_NAMES})
    if wrong:
        raise FleetError(f"{text!r}: keys are 0-9, *, # and A-D")
    return keys


def key_presses(keys: str, ticks: int, step: int) -> tuple[tuple[int, int, int], ...]:
    """Where a call of ``ticks`` RTP ticks (8 kHz), in packets of ``step``
    ticks, presses ``keys``: ``(start, event, ticks)`` as `plan_call` takes
    them, spread evenly over the call, each starting on a packet and held
    `KEY_PRESS_TICKS`, with audio before, between and after them. Raises
    FleetError when the call is too short for them."""
    if not keys:
        return ()
    room = ticks // (len(keys) + 1)
    if room < KEY_PRESS_TICKS + 2 * step:
        shortest = (len(keys) + 1) * (KEY_PRESS_TICKS + 2 * step) / 8000
        raise FleetError(f"{len(keys)} key presses of {KEY_PRESS_TICKS // 8} ms need calls of "
                         f"at least {shortest:g} s (--duration)")
    return tuple(
        ((position + 1) * room // step * step, EVENT_NAMES.index(key), KEY_PRESS_TICKS)
        for position, key in enumerate(keys)
    )


@attrs.frozen
class CallSetup:
    """One simulated phone's call: what it says at Start and where it
    sends from (None: wherever the system chooses)."""

    recording_id: str
    device: str
    direction: str
    remote_number: str
    source_address: str | None = None
    keys: str = ""


@attrs.frozen
class Fleet:
    """The phones of one run, numbered from 0."""

    prefix: str
    devices: DevicePrefix = DevicePrefix("00a859")
    numbers: NumberPattern = NumberPattern("138########")
    direction: str = "out"  # or in, or mixed: even phones call out, odd ones are called
    sources: AddressRange | None = None
    keys: str = ""

    def call(self, index: int) -> CallSetup:
        direction = self.direction
        if direction == "mixed":
            direction = "out" if index % 2 == 0 else "in"
        return CallSetup(
            f"{self.prefix}-{index}", self.devices.device(index), direction,
            self.numbers.number(index),
            None if self.sources is None else self.sources.address(index), self.keys,
        )

    def describe(self, calls: int) -> str:
        """The run's ids and phones, for people (two lines)."""
        first, last = self.call(0), self.call(calls - 1)
        sources = ""
        if self.sources is not None:
            farthest = self.call(min(calls, self.sources.count) - 1)
            sources = f", from {first.source_address} .. {farthest.source_address}"
        return (f"run {self.prefix}: recording ids {first.recording_id} .. {last.recording_id}\n"
                f"phones {first.device} .. {last.device}, {self.direction}, "
                f"to {first.remote_number} .. {last.remote_number}{sources}")

    def problems(self, calls: int) -> list[tuple[str, str]]:
        """(option, what is wrong) for a run of ``calls`` phones that would
        share what must be each one's own."""
        found = []
        if calls > self.devices.capacity:
            found.append(("--device-prefix", f"{self.devices.digits!r} leaves room for "
                          f"{self.devices.capacity} phones, not {calls} (--calls)"))
        if calls > self.numbers.capacity and "#" in self.numbers.pattern:
            found.append(("--numbers", f"{self.numbers.pattern!r} has numbers for "
                          f"{self.numbers.capacity} phones, not {calls} (--calls): add #"))
        return found
