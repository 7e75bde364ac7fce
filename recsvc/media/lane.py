"""A recording's fast lane: the packets that only continue its stream.

In the steady state nearly every packet is exactly the one the media
pipeline expects next (`MediaPipeline.expected`): same source, next sequence
number and timestamp, same length. Such a packet needs no parsing and no
decision, only its payload appended; the lane takes it with one header
unpack and a few comparisons, and the recording hands what gathered to the
pipeline later, in one go (`MediaPipeline.continued`). Any other packet
takes the full path. Pure code: the RTP reader feeds it.
"""

from __future__ import annotations

import struct
from typing import Any

from recsvc.media.pipeline import Continuation

_FIRST_WORDS = struct.Struct("!QI")  # V/P/X/CC, M/PT, sequence, timestamp; SSRC

# At most this many packets are gathered before the full path looks again
# (the recording hands them over at every sync anyway).
MAX_RUN = 1000


class FastLane:
    """The expected packet's header, and the packets taken so far."""

    __slots__ = ("_header", "_ssrc", "_size", "_step", "_left", "_peer", "_last_arrival",
                 "payload", "arrivals")

    def __init__(self) -> None:
        self._header = self._ssrc = self._size = self._step = self._left = 0
        self._peer: Any = None
        self._last_arrival: float | None = None
        self.payload = bytearray()
        # Each taken packet's arrival: the source check reads the stream's
        # cadence from the intervals between them.
        self.arrivals: list[float] = []

    def arm(self, expected: Continuation | None) -> None:
        """Take packets that continue from ``expected`` on; None: take no
        more (what was taken stays, for `take`)."""
        if expected is None:
            self._left = 0
            return
        ticks = expected.ticks
        # No header byte 0 but 0x80 (version 2, no padding, extension or
        # CSRCs: a 12-byte header), no marker.
        self._header = (0x80 << 56 | expected.payload_type << 48
                        | expected.sequence << 32 | expected.timestamp)
        self._ssrc = expected.ssrc
        self._size = 12 + ticks
        self._step = (1 << 32) + ticks  # the next header, short of wrapping
        # Packets until the sequence number or the timestamp wraps.
        self._left = min(MAX_RUN, 1 + min(0xFFFF - expected.sequence,
                                          (0xFFFFFFFF - expected.timestamp) // ticks))
        self._peer = expected.source

    def offer(self, datagram: Any, size: int, source: Any, now: float) -> bool:
        """Take the datagram (its first ``size`` bytes) if it is the expected
        packet; False: it needs the full path."""
        if size != self._size or not self._left:
            return False
        header, ssrc = _FIRST_WORDS.unpack_from(datagram)
        # source[:2]: an IPv6 socket gives (host, port, flowinfo, scope id);
        # for IPv4 it is the very tuple, no copy.
        if header != self._header or ssrc != self._ssrc or source[:2] != self._peer:
            return False
        self._header = header + self._step
        self._left -= 1
        self.payload += datagram[12:size]
        self.arrivals.append(now)
        return True

    @property
    def count(self) -> int:
        """How many packets were taken since the last `take`."""
        return len(self.arrivals)

    @property
    def peer(self) -> Any:
        """The address the expected packet comes from; None while the
        lane takes nothing."""
        return self._peer if self._left else None

    @property
    def last_arrival(self) -> float | None:
        """When the lane last took a packet (None: never)."""
        return self.arrivals[-1] if self.arrivals else self._last_arrival

    def take(self) -> tuple[int, bytearray, list[float]]:
        """What was taken since the last time: (how many packets, their
        payloads, each one's arrival). The lane goes on from the packet
        after them."""
        taken = (len(self.arrivals), self.payload, self.arrivals)
        self._last_arrival = self.last_arrival
        self.payload, self.arrivals = bytearray(), []
        return taken
