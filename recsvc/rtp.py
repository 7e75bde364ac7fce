"""RTP (RFC 3550) packets: header parsing and sequence ordering, with no I/O."""

from __future__ import annotations

import struct
from collections import deque

import attrs

_FIXED_HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet."""


@attrs.frozen
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile, data)


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse a datagram. Raises `RtpError`, and nothing else."""
    if len(data) < _FIXED_HEADER.size:
        raise RtpError(f"datagram of {len(data)} bytes is shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
    version = first >> 6
    if version != 2:
        raise RtpError(f"RTP version {version}")
    offset = _FIXED_HEADER.size
    csrc_count = first & 0x0F
    end_of_csrcs = offset + 4 * csrc_count
    if len(data) < end_of_csrcs:
        raise RtpError("truncated CSRC list")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, offset)
    offset = end_of_csrcs
    extension = None
    if first & 0x10:
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        profile, words = struct.unpack_from("!HH", data, offset)
        offset += 4
        if len(data) < offset + 4 * words:
            raise RtpError("truncated header extension")
        extension = (profile, data[offset:offset + 4 * words])
        offset += 4 * words
    end = len(data)
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > end:
            raise RtpError(f"bad padding length {padding}")
        end -= padding
    return RtpPacket(
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrcs=csrcs,
        extension=extension,
        payload=data[offset:end],
    )


def build_rtp(packet: RtpPacket) -> bytes:
    """The wire form of a packet (no padding). Used by the phone simulator and tests."""
    first = 0x80 | len(packet.csrcs) | (0x10 if packet.extension is not None else 0)
    header = _FIXED_HEADER.pack(
        first,
        (0x80 if packet.marker else 0) | packet.payload_type,
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
    )
    header += struct.pack(f"!{len(packet.csrcs)}I", *packet.csrcs)
    if packet.extension is not None:
        profile, data = packet.extension
        if len(data) % 4:
            raise ValueError("extension data must be a whole number of 32-bit words")
        header += struct.pack("!HH", profile, len(data) // 4) + data
    return header + packet.payload


# A sequence number this far from the expected one is not reordering but a
# restarted stream (RFC 3550 A.1's MAX_DROPOUT and MAX_MISORDER).
MAX_DROPOUT = 3000
MAX_MISORDER = 100


@attrs.define(eq=False)
class ReorderWindow:
    """Puts packets back in sequence-number order within a small window.

    ``push`` returns the packets that are now in order. A packet that would
    have to go before what was already released is dropped (``late``, or
    ``duplicates`` if it was already released); a hole the window cannot wait
    for any more is skipped and counted in ``lost``. Sequence numbers wrap at
    2**16 without a glitch. A jump far from the expected number, confirmed
    by the next packet following it, is a restarted stream: the window
    releases what it holds and goes on from the new numbers.
    """

    size: int = 16
    lost: int = 0
    late: int = 0
    duplicates: int = 0
    _next: int | None = None  # extended sequence number expected next
    _pending: dict[int, RtpPacket] = attrs.field(factory=dict)
    _released: deque[int] = attrs.field(factory=lambda: deque(maxlen=64))
    _restart: RtpPacket | None = None  # a jumped packet, waiting for its follower

    def push(self, packet: RtpPacket) -> list[RtpPacket]:
        if self._next is None:
            self._next = packet.sequence
        extended = self._extend(packet.sequence)
        if not self._next - MAX_MISORDER <= extended <= self._next + MAX_DROPOUT:
            return self._jumped(packet)
        if self._restart is not None:
            self._restart = None
            self.late += 1
        if extended < self._next:
            if extended in self._released:
                self.duplicates += 1
            else:
                self.late += 1
            return []
        if extended in self._pending:
            self.duplicates += 1
            return []
        self._pending[extended] = packet
        ready = self._release_in_order()
        if len(self._pending) >= self.size:
            ready += self._skip_to_oldest_pending()
        return ready

    def _jumped(self, packet: RtpPacket) -> list[RtpPacket]:
        candidate = self._restart
        if candidate is None or (candidate.sequence + 1) & 0xFFFF != packet.sequence:
            if candidate is not None:
                self.late += 1
            self._restart = packet
            return []
        self._restart = None
        ready = self.flush()
        self._next = candidate.sequence
        self._released.clear()
        return ready + self.push(candidate) + self.push(packet)

    def flush(self) -> list[RtpPacket]:
        """Everything still waiting, in order (the recording is ending)."""
        if self._restart is not None:
            # A jump nothing followed: no place in the timeline for it.
            self._restart = None
            self.late += 1
        ready: list[RtpPacket] = []
        while self._pending:
            ready += self._skip_to_oldest_pending()
        return ready

    def _extend(self, sequence: int) -> int:
        assert self._next is not None
        delta = (sequence - self._next + 0x8000) % 0x10000 - 0x8000
        return self._next + delta

    def _release_in_order(self) -> list[RtpPacket]:
        ready = []
        while self._next in self._pending:
            ready.append(self._pending.pop(self._next))
            self._released.append(self._next)
            self._next += 1
        return ready

    def _skip_to_oldest_pending(self) -> list[RtpPacket]:
        oldest = min(self._pending)
        self.lost += oldest - self._next
        self._next = oldest
        return self._release_in_order()
