"""Which packets may enter a recording: source checking against RTP injection.

Pure policy, no I/O. The first valid packet locks the source (address, port,
SSRC). Another source takes over only after several consecutive in-sequence
packets from it while the locked one is silent (like Asterisk's strict-RTP
probation); its probation packets are then kept, not lost.
"""

from __future__ import annotations

import ipaddress
import operator
from collections import deque
from typing import Sequence, Union

import attrs

from recsvc.admission import in_networks
from recsvc.media.rtp import RtpPacket

PEER = "peer"  # only the IP of the phone's control connection
STRICT = "strict"  # that IP, and the first source locked for good
ANY = "any"  # any address (NAT, SBC); the lock and probation still apply

Networks = tuple[Union[ipaddress.IPv4Network, ipaddress.IPv6Network], ...]
SourcePolicy = Union[str, Networks]

PROBATION_PACKETS = 4
# How far a candidate's sequence numbers may skip or step back (loss,
# reordering) and still be one run.
SEQUENCE_TOLERANCE = 16
# "Silent" is judged by the locked source's own cadence: no packet from it
# for twice its longest recent interval (at most this long). A flood that
# squeezes its probation packets between two of its packets never takes over.
MAX_SILENCE_WAIT = 0.5

Address = tuple[str, int]


def normalize_ip(host: str) -> str:
    """An IPv4-mapped IPv6 address as plain IPv4; anything else as given."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address)


@attrs.define(eq=False)
class SourceGuard:
    """Decides, packet by packet, whether RTP comes from the recording's
    source; counts what it rejects by reason."""

    policy: SourcePolicy
    peer_ip: str
    probation: int = PROBATION_PACKETS
    rejected: dict[str, int] = attrs.field(factory=dict)  # by reason
    switches: int = 0
    _locked: tuple[str, int, int] | None = None
    _candidate: tuple[str, int, int] | None = None
    _waiting: list[tuple[RtpPacket, float | None]] = attrs.field(factory=list)
    _sequences: set[int] = attrs.field(factory=set)  # distinct numbers the candidate sent
    _locked_last: float | None = None  # arrival of the locked source's last packet
    _intervals: deque[float] = attrs.field(factory=lambda: deque(maxlen=8))
    _locked_highest: int = 0  # the locked source's newest sequence number
    # host as the socket gives it -> (normalized IP, allowed): parsing an
    # address for every packet would cost more than the rest of the check.
    _hosts: dict[str, tuple[str, bool]] = attrs.field(factory=dict)

    def admit(
        self, packet: RtpPacket, source: Address, arrival: float | None = None
    ) -> Sequence[RtpPacket]:
        """The packets to record now: none, this one, or (when a new source
        is confirmed) its probation packets. Without arrival times only
        sequence numbers tell whether the locked source is silent."""
        return [admitted for admitted, _ in self.admit_timed(packet, source, arrival)]

    def admit_timed(
        self, packet: RtpPacket, source: Address, arrival: float | None = None
    ) -> Sequence[tuple[RtpPacket, float | None]]:
        """Like `admit`, with each packet's own arrival time: probation
        packets come out late but must be placed by when they came."""
        known = self._hosts.get(source[0])
        if known is None:
            ip = normalize_ip(source[0])
            known = (ip, self._address_allowed(ip))
            if len(self._hosts) < 16:
                self._hosts[source[0]] = known
        ip, allowed = known
        if not allowed:
            self._reject("foreign address")
            return ()
        key = (ip, source[1], packet.ssrc)
        if self._locked is None:
            self._locked, self._locked_highest = key, packet.sequence
        if key == self._locked:
            delta = (packet.sequence - self._locked_highest) & 0xFFFF
            if 0 < delta < 0x8000:
                # A fresh packet: the locked source is alive, so a candidate
                # is an intruder. A straggler or a duplicate proves nothing.
                self._locked_highest = packet.sequence
                self._drop_candidate()
                self._heard(arrival)
            elif not self._locked_heard:
                self._heard(arrival)
            return ((packet, arrival),)
        if self.policy == STRICT:
            self._reject("strict source")
            return ()
        if key != self._candidate or not self._follows(packet):
            self._drop_candidate()
            self._candidate = key
        self._waiting.append((packet, arrival))
        self._sequences.add(packet.sequence)
        if len(self._sequences) < self.probation or not self._locked_silent(arrival):
            return ()
        self._locked, self._candidate = key, None
        self.switches += 1
        confirmed, self._waiting = self._waiting, []
        self._locked_highest = max(
            self._sequences, key=lambda n: (n - confirmed[0][0].sequence) & 0xFFFF
        )
        self._sequences = set()
        self._locked_last = None
        self._intervals.clear()
        for _, when in confirmed:
            self._heard(when)
        return confirmed

    def locked_source(self, ssrc: int, sequence: int) -> Address | None:
        """The address from which a packet of ``ssrc`` with ``sequence``
        would simply pass (locked, fresh, no candidate on probation); None
        when the packet would need the full check."""
        locked = self._locked
        if locked is None or locked[2] != ssrc or self._candidate is not None:
            return None
        if not 0 < (sequence - self._locked_highest) & 0xFFFF < 0x8000:
            return None
        return locked[0], locked[1]

    def continued(self, last_sequence: int, arrivals: Sequence[float]) -> None:
        """Fresh packets of the locked source passed (see `locked_source`),
        the last numbered ``last_sequence``; ``arrivals``: when each came."""
        self._locked_highest = last_sequence
        if not arrivals:
            return
        # Their cadence, as the silence check reads it packet by packet
        # (`_heard`), in one go: only the newest intervals stay (older ones
        # would be pushed out).
        keep = self._intervals.maxlen or 0
        recent = arrivals[-keep - 1:]
        if len(recent) <= keep and self._locked_last is not None:
            recent = [self._locked_last, *recent]
        self._intervals.extend(
            gap if gap > 0.0 else 0.0 for gap in map(operator.sub, recent[1:], recent)
        )
        self._locked_last = recent[-1]

    def finish(self) -> None:
        """The recording ends: a candidate still on probation is rejected."""
        self._drop_candidate()

    def _address_allowed(self, ip: str) -> bool:
        if self.policy in (PEER, STRICT):
            return ip == normalize_ip(self.peer_ip)
        if self.policy == ANY:
            return True
        return in_networks(ip, self.policy)

    def _follows(self, packet: RtpPacket) -> bool:
        """Whether a candidate's packet is in sequence with what it sent:
        a little loss, reordering or a repeat do not break the run (nor
        count twice: distinct numbers count), a jump does."""
        if not self._waiting:
            return False
        newest = max(self._sequences, key=lambda n: (n - self._waiting[0][0].sequence) & 0xFFFF)
        delta = (packet.sequence - newest) & 0xFFFF
        return delta <= SEQUENCE_TOLERANCE or delta >= 0x10000 - SEQUENCE_TOLERANCE

    @property
    def _locked_heard(self) -> bool:
        return self._locked_last is not None

    def _heard(self, arrival: float | None) -> None:
        if arrival is None:
            return
        if self._locked_last is not None:
            self._intervals.append(max(0.0, arrival - self._locked_last))
        self._locked_last = arrival

    def _locked_silent(self, arrival: float | None) -> bool:
        if arrival is None or self._locked_last is None:
            return True
        # Until its cadence is known, assume the longest usual packet time.
        wait = min(2 * max(self._intervals, default=0.06), MAX_SILENCE_WAIT)
        return arrival - self._locked_last > wait

    def _drop_candidate(self) -> None:
        if self._waiting:
            self._reject("unconfirmed source", len(self._waiting))
        self._candidate, self._waiting = None, []
        self._sequences = set()

    def _reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + count
