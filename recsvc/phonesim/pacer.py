"""Sending many phones' RTP in real time from one process.

Each call's stream sends from its own UDP socket; one `Pacer` sends every
packet when it is due, however many calls run. Kept light on purpose: it is
the load generator of the benchmarks, which must send 100,000 packets a
second from one core and still be on time.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import struct
import time
from typing import Callable, Protocol, Sequence

import attrs


_HEADER = struct.Struct("!BBHII")

# A datagram to send, and how much later than its packet's slot.
Send = tuple[float, bytes]


class Stream(Protocol):
    """One call's packets, slot after slot (one slot per packet time)."""

    def next_slot(self) -> Sequence[Send] | None:
        """What to send in the next slot (nothing: a lost packet), or None
        when the stream has ended."""


@attrs.define(eq=False)
class LeanStream:
    """Clean RTP (no faults): ``audio`` in packets of ``step`` bytes, the
    header written in place, the first packet marked."""

    audio: bytes | memoryview
    payload_type: int
    ssrc: int
    sequence: int
    timestamp: int
    step: int = 160
    _offset: int = 0
    _packet: bytearray = attrs.field(init=False)
    _view: memoryview = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._packet = bytearray(12 + self.step)
        self._view = memoryview(self.audio)

    def next_slot(self) -> Sequence[Send] | None:
        offset = self._offset
        payload = self._view[offset:offset + self.step]
        if not payload:
            return None
        packet = self._packet
        if len(payload) != self.step:
            packet = bytearray(12 + len(payload))
        _HEADER.pack_into(
            packet, 0, 0x80, self.payload_type | (0x80 if offset == 0 else 0),
            self.sequence, self.timestamp, self.ssrc,
        )
        packet[12:] = payload
        self._offset = offset + len(payload)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
        return ((0.0, bytes(packet)),)


@attrs.define(eq=False)
class _Entry:
    stream: Stream | None  # None: a single delayed datagram
    sock: socket.socket
    done: Callable[[int], None]  # called with the datagrams sent, at the end
    sent: int = 0


@attrs.define(eq=False)
class Pacer:
    """Sends each stream's slots every ``interval`` seconds from its start.

    `run_due` sends what is due by ``now``; a caller wakes it often (every
    millisecond or so). A late wake-up sends the overdue packets at once,
    as a phone's network would deliver them.
    """

    interval: float = 0.02
    _heap: list[tuple[float, int, _Entry, bytes]] = attrs.field(factory=list)
    _order: itertools.count = attrs.field(factory=itertools.count)
    sent: int = 0
    late_max: float = 0.0  # the latest a slot was served, seconds

    def add(self, stream: Stream, sock: socket.socket, start: float,
            done: Callable[[int], None] = lambda sent: None) -> None:
        """Send ``stream`` from the connected ``sock``, its first slot at ``start``."""
        heapq.heappush(self._heap, (start, next(self._order), _Entry(stream, sock, done), b""))

    @property
    def active(self) -> int:
        return len(self._heap)

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, entry, datagram = heap[0]
            self.late_max = max(self.late_max, now - due)
            if entry.stream is None:  # a delayed datagram
                heapq.heappop(heap)
                self._send(entry, datagram)
                continue
            slot = entry.stream.next_slot()
            if slot is None:
                heapq.heappop(heap)
                entry.done(entry.sent)
                continue
            heapq.heapreplace(heap, (due + self.interval, next(self._order), entry, b""))
            for delay, data in slot:
                if delay > 0:
                    heapq.heappush(heap, (due + delay, next(self._order),
                                          _Entry(None, entry.sock, entry.done), data))
                    entry.sent += 1
                else:
                    self._send(entry, data)

    def _send(self, entry: _Entry, datagram: bytes) -> None:
        try:
            entry.sock.send(datagram)
        except OSError:
            return  # nobody listening (ICMP refused): the packet is lost, as on a network
        self.sent += 1
        if entry.stream is not None:
            entry.sent += 1

    def run(self, sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic) -> None:
        """Send everything, blocking, until every stream has ended."""
        while (due := self.next_due()) is not None:
            now = clock()
            if due > now:
                sleep(min(due - now, 0.001))
                now = clock()
            self.run_due(now)


def udp_socket(host: str, port: int, rcvbuf: int | None = None,
               source: str | None = None) -> socket.socket:
    """A non-blocking UDP socket connected to ``host:port`` (a phone's RTP
    socket), sending from ``source`` if given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if source is None:
        source = "127.0.0.1" if host.startswith("127.") else "0.0.0.0"
    sock.bind((source, 0))
    sock.connect((host, port))
    sock.setblocking(False)
    return sock
