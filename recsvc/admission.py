"""Who may connect and record, and how much (control.allow, devices.allow,
the connection and recording limits). Pure: no sockets, no reactor; the
control factory and the recorder ask, and say what they let in or out.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from typing import Iterable

import attrs

from recsvc.devices import device_key, parse_mac

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def parse_network(text: str) -> IpNetwork:
    """A CIDR (or a single address); IPv4-mapped IPv6 ones as the IPv4
    network they are (peers are compared as IPv4). Raises ValueError."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an address or CIDR (such as 10.0.0.0/8)") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def in_networks(host: str, networks: Iterable[IpNetwork]) -> bool:
    """Whether the address ``host`` lies in one of ``networks`` (from
    `parse_network`). An IPv4 address is the same whether a socket shows it
    as a.b.c.d or ::ffff:a.b.c.d: its IPv4 networks hold it, and so do the
    IPv6 ones holding its mapped form (::/0)."""
    address = _address(host)
    if address is None:
        return False
    forms = [address]
    if address.version == 4:
        forms.append(ipaddress.IPv6Address(f"::ffff:{address}"))
    return any(form in network for form in forms for network in networks)


@attrs.frozen
class AccessPolicy:
    """control.allow and devices.allow. Empty means everyone."""

    networks: tuple[IpNetwork, ...] = ()
    devices: frozenset[str] = frozenset()  # device_key()s

    def allows_peer(self, host: str) -> bool:
        return not self.networks or in_networks(host, self.networks)

    def allows_device(self, device: str) -> bool:
        return not self.devices or device_key(device) in self.devices


@attrs.frozen
class ConnectionLimits:
    max_connections: int
    # Connections without a recording from one address (or IPv6 /64).
    max_per_ip: int


# Why a connection was refused (the label of its counter, the log's reason).
NOT_ALLOWED = "address not allowed"
TOO_MANY = "too many connections"
TOO_MANY_FROM_IP = "too many connections from this address"
NOT_CONTROL = "not a control message"
# The descriptors left are held back for the recordings (recsvc.application.descriptors).
TOO_FEW_DESCRIPTORS = "too few free descriptors"


@attrs.define
class Connections:
    """The control connections open: who may open another.

    ``max_connections`` bounds them all. ``max_per_ip`` bounds the *idle*
    ones from one address, those without a recording (or a Start being
    created): a site whose phones all reach the server through one NAT
    address records as many calls at once as it makes, while a client
    holding connections open for nothing is held to a few."""

    limits: ConnectionLimits
    policy: AccessPolicy = AccessPolicy()
    _idle_by_source: dict[str, int] = attrs.field(factory=dict)
    _total: int = 0

    @property
    def total(self) -> int:
        return self._total

    def idle_from(self, host: str) -> int:
        """The idle connections from ``host``'s address (or /64)."""
        return self._idle_by_source.get(source_of(host), 0)

    def admit(self, host: str, starting: bool = False) -> Place | str:
        """Take a connection from ``host``: its Place, or the reason it is
        refused (it is then not counted). ``starting``: its first message,
        already seen, is a Start, which will make it carry a recording;
        such a connection is taken however many idle ones its address has
        (those phones behind one NAT address starting calls together), and
        closed if it turns out not to carry one (see `Place.excess`)."""
        if not self.policy.allows_peer(host):
            return NOT_ALLOWED
        if self._total >= self.limits.max_connections:
            return TOO_MANY
        source = source_of(host)
        idle = self._idle_by_source.get(source, 0)
        if idle >= self.limits.max_per_ip and not starting:
            return TOO_MANY_FROM_IP
        self._idle_by_source[source] = idle + 1
        self._total += 1
        return Place(self, source)

    def _count_idle(self, source: str, change: int) -> None:
        count = self._idle_by_source.get(source, 0) + change
        if count > 0:
            self._idle_by_source[source] = count
        else:
            self._idle_by_source.pop(source, None)

    def _over(self, source: str) -> bool:
        return self._idle_by_source.get(source, 0) > self.limits.max_per_ip

    def _released(self, source: str, idle: bool) -> None:
        self._total -= 1
        if idle:
            self._count_idle(source, -1)


@attrs.define(eq=False)
class Place:
    """An admitted connection's place in `Connections`: idle (counted
    against its address) until it carries a recording, and again once it
    no longer does."""

    _connections: Connections
    source: str
    _carrying: bool = False
    _held: bool = True

    @property
    def carrying(self) -> bool:
        return self._carrying

    def carries(self, carrying: bool) -> None:
        """The connection now carries a recording (or a Start being
        created), or no longer carries any."""
        if self._held and carrying != self._carrying:
            self._carrying = carrying
            self._connections._count_idle(self.source, -1 if carrying else 1)

    @property
    def excess(self) -> bool:
        """Idle while its address has more idle connections than the limit
        (it came with a Start that was refused, or its last recording has
        ended): the connection is to be closed."""
        return self._held and not self._carrying and self._connections._over(self.source)

    def release(self) -> None:
        """The connection has closed (once is enough; more change nothing)."""
        if self._held:
            self._held = False
            self._connections._released(self.source, idle=not self._carrying)


def source_of(host: str) -> str:
    """Who a connection is from, for the per-address limit: the address, or
    for IPv6 its /64 (one host has a whole /64 to pick from)."""
    if ":" not in host:
        return host  # IPv4 (the common case, without parsing it)
    address = _address(host)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host if address is None else str(address)


@attrs.define
class StartRate:
    """At most ``per_minute`` Starts per device in any 60 seconds, for at
    most ``max_devices`` devices starting within a minute (beyond them,
    Starts of further devices are refused until some go quiet: the map
    cannot be grown without bound by made-up device names)."""

    per_minute: int
    max_devices: int = 100_000
    _starts: dict[str, deque[float]] = attrs.field(factory=dict)

    def allow(self, device: str, now: float) -> bool:
        """Count a Start of ``device`` at ``now`` if it is within the rate."""
        starts = self._starts.get(device)
        if starts is None:
            if len(self._starts) >= self.max_devices:
                self._forget_quiet(now)
                if len(self._starts) >= self.max_devices:
                    return False
            starts = self._starts[device] = deque()
        while starts and starts[0] <= now - 60:
            starts.popleft()
        if len(starts) >= self.per_minute:
            return False
        starts.append(now)
        return True

    def refund(self, device: str) -> None:
        """Take back the last Start counted for ``device`` (it never began)."""
        starts = self._starts.get(device)
        if starts:
            starts.pop()

    def _forget_quiet(self, now: float) -> None:
        """Drop devices with no Start in the last minute."""
        for device in [d for d, starts in self._starts.items() if not starts or
                       starts[-1] <= now - 60]:
            del self._starts[device]


# The "peer" of a RefusalLog line that stands for many.
OTHERS = "*"
# Refusals that are nobody's in particular: the overall limits.
OVERALL = frozenset({TOO_MANY, TOO_FEW_DESCRIPTORS})


def refused_peer(host: str, reason: str) -> str:
    """Whom a refusal is counted under in a RefusalLog: its address, or
    OTHERS for the overall limits (one line for all)."""
    return OTHERS if reason in OVERALL else host


def shown_peer(peer: str) -> str:
    """A RefusalLog peer as a log line names it."""
    return "many addresses" if peer == OTHERS else peer
# How often, at most, a full RefusalLog looks through its peers for ones to
# forget (seconds): under a flood from more addresses than it names, a look
# for each refusal would cost far more than the refusal itself.
FORGET_EVERY_S = 1.0


@attrs.define
class RefusalLog:
    """Says when a refusal should be logged: once per ``interval`` seconds
    per peer and reason, with how many refusals the silence hid. Beyond
    ``max_peers`` peers in an interval (a flood from many addresses), the
    rest are counted together under OTHERS, logged once an interval too.
    What a silence hid is owed a line once its interval is over (`overdue`)
    or at the end (`unsaid`), so that every refusal is in some line's count."""

    interval: float = 60.0
    max_peers: int = 10_000
    # (peer, reason) -> (when its last line was said, how many since)
    _last: dict[tuple[str, str], tuple[float, int]] = attrs.field(factory=dict)
    _forgot_at: float = -math.inf  # when `_forget_old` last looked through them

    def note(self, peer: str, reason: str, now: float) -> tuple[str, int] | None:
        """None: stay silent; else log now: the peer to name (or OTHERS)
        and how many refusals it stands for since its last line (this one
        included)."""
        key = (peer, reason)
        if key not in self._last and len(self._last) >= self.max_peers:
            self._forget_old(now)
            if len(self._last) >= self.max_peers:
                key = (OTHERS, reason)
        last = self._last.get(key)
        if last is None or now - last[0] >= self.interval:
            self._last[key] = (now, 0)
            return key[0], 1 + (last[1] if last is not None else 0)
        self._last[key] = (last[0], last[1] + 1)
        return None

    def due(self, peer: str, reason: str) -> float | None:
        """When the silence that hides ``peer``'s refusals for ``reason``
        (or, for a peer `note` did not name, those of OTHERS) is over."""
        last = self._last.get((peer, reason)) or self._last.get((OTHERS, reason))
        return None if last is None else last[0] + self.interval

    def next_due(self) -> float | None:
        """When the first silence that hid refusals is over, if one did."""
        return min((at + self.interval for at, hidden in self._last.values() if hidden),
                   default=None)

    def overdue(self, now: float) -> list[tuple[str, str, int]]:
        """(peer, reason, count) of each silence over by ``now`` that hid
        refusals: to be said now (their interval begins again)."""
        # (As next_due reckons it: now - at may round below the interval.)
        due = [(key, hidden) for key, (at, hidden) in self._last.items()
               if hidden and now >= at + self.interval]
        for key, _ in due:
            self._last[key] = (now, 0)
        return [(peer, reason, hidden) for (peer, reason), hidden in due]

    def unsaid(self) -> list[tuple[str, str, int]]:
        """(peer, reason, count) of every refusal not said yet (at the end)."""
        hidden = [(key, count) for key, (_, count) in self._last.items() if count]
        for key, _ in hidden:
            self._last[key] = (self._last[key][0], 0)
        return [(peer, reason, count) for (peer, reason), count in hidden]

    def _forget_old(self, now: float) -> None:
        # (Not the ones whose count is still owed a line.)
        if self._forgot_at <= now < self._forgot_at + FORGET_EVERY_S:
            return
        self._forgot_at = now
        for key in [key for key, (at, hidden) in self._last.items()
                    if now - at >= self.interval and not hidden and key[0] != OTHERS]:
            del self._last[key]


def policy_of(networks: Iterable[str], devices: Iterable[str]) -> AccessPolicy:
    return AccessPolicy(tuple(parse_network(n) for n in networks),
                        frozenset(parse_mac(d) for d in devices))
