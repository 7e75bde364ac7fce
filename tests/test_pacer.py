"""Tests for recsvc.phonesim.pacer: the phone simulator's RTP, sent on time.

The pacer is driven with made-up times (binary fractions, so that sums are
exact) and fake sockets that note when each datagram went out; one test
pair of real loopback sockets checks `udp_socket`.
"""

from __future__ import annotations

import socket
from typing import Sequence

from twisted.trial.unittest import SynchronousTestCase

from recsvc.phonesim.pacer import LeanStream, Pacer, Send, udp_socket
from recsvc.media.rtp import parse_rtp
from recsvc.phonesim.simulator import call_audio


class Wire:
    """Where fake sockets send: (time, socket name, datagram), in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[tuple[float, str, bytes]] = []

    def socket(self, name: str, refuse: Sequence[bytes] = ()) -> FakeSocket:
        return FakeSocket(self, name, set(refuse))

    def datagrams(self, name: str | None = None) -> list[bytes]:
        return [datagram for _, sender, datagram in self.sent if name in (None, sender)]


class FakeSocket:
    """A connected UDP socket's send(); the datagrams in ``refuse`` fail
    as when nobody listens (ICMP port unreachable)."""

    def __init__(self, wire: Wire, name: str, refuse: set[bytes]) -> None:
        self.wire = wire
        self.name = name
        self.refuse = refuse

    def send(self, datagram: bytes) -> int:
        if datagram in self.refuse:
            raise ConnectionRefusedError()
        self.wire.sent.append((self.wire.now, self.name, datagram))
        return len(datagram)


class Slots:
    """A stream of given slots (each what to send in it), then the end."""

    def __init__(self, *slots: Sequence[Send]) -> None:
        self.slots = list(slots)
        self.served = 0

    def next_slot(self) -> Sequence[Send] | None:
        if self.served == len(self.slots):
            return None
        self.served += 1
        return self.slots[self.served - 1]


def plain(name: str, count: int) -> Slots:
    """``count`` slots of one datagram each: name0, name1, ..."""
    return Slots(*(((0.0, f"{name}{n}".encode()),) for n in range(count)))


def run_until(pacer: Pacer, wire: Wire, end: float, step: float = 1 / 16) -> None:
    """Wake the pacer every ``step`` seconds up to ``end``."""
    while wire.now <= end:
        pacer.run_due(wire.now)
        wire.now += step


class LeanStreamTests(SynchronousTestCase):
    def packets(self, stream: LeanStream):
        """Every slot's datagram, parsed, until the end."""
        packets = []
        while (slot := stream.next_slot()) is not None:
            [(delay, datagram)] = slot
            self.assertEqual(delay, 0.0)
            self.assertEqual(datagram[0], 0x80)  # version 2, no padding, extension, CSRCs
            packets.append(parse_rtp(datagram))
        return packets

    def test_headers(self) -> None:
        """
        Each slot sends one packet of ``step`` bytes of the audio, in order,
        with the payload type and SSRC; only the first is marked.
        """
        audio = bytes(range(256)) * 3
        packets = self.packets(LeanStream(audio, 8, 0xCAFE, 100, 5000, step=128))
        self.assertEqual(len(packets), 6)
        self.assertEqual(b"".join(p.payload for p in packets), audio)
        self.assertEqual({(p.payload_type, p.ssrc) for p in packets}, {(8, 0xCAFE)})
        self.assertEqual([p.marker for p in packets], [True] + [False] * 5)
        self.assertEqual([p.sequence for p in packets], list(range(100, 106)))
        self.assertEqual([p.timestamp for p in packets], list(range(5000, 5000 + 6 * 128, 128)))

    def test_wrap(self) -> None:
        """
        Sequence numbers wrap modulo 2**16 and timestamps modulo 2**32.
        """
        packets = self.packets(LeanStream(b"\x55" * 640, 0, 1, 0xFFFE, 2**32 - 200, step=160))
        self.assertEqual([p.sequence for p in packets], [0xFFFE, 0xFFFF, 0, 1])
        self.assertEqual([p.timestamp for p in packets], [2**32 - 200, 2**32 - 40, 120, 280])

    def test_last_packet_short(self) -> None:
        """
        Audio that is not a whole number of packets ends with a short one,
        whose timestamp follows from the full ones; then the stream ends,
        and stays ended.
        """
        audio = memoryview(bytes(range(200)) * 2)
        stream = LeanStream(audio, 8, 1, 0, 0)
        packets = self.packets(stream)
        self.assertEqual([len(p.payload) for p in packets], [160, 160, 80])
        self.assertEqual([p.timestamp for p in packets], [0, 160, 320])
        self.assertEqual(b"".join(p.payload for p in packets), bytes(audio))
        self.assertIsNone(stream.next_slot())

    def test_whole_packets(self) -> None:
        """
        Audio of whole packets ends without an empty packet; no audio, no
        packet.
        """
        self.assertEqual(len(self.packets(LeanStream(b"\x55" * 320, 8, 1, 0, 0))), 2)
        self.assertEqual(self.packets(LeanStream(b"", 8, 1, 0, 0)), [])

    def test_datagrams_kept(self) -> None:
        """
        A datagram handed out stays as it was while the next are written
        (the stream reuses its own buffer).
        """
        stream = LeanStream(bytes(range(160)) * 3, 8, 1, 0, 0)
        first = stream.next_slot()[0][1]
        copy = bytes(first)
        stream.next_slot()
        stream.next_slot()
        self.assertEqual(first, copy)


class PacerTests(SynchronousTestCase):
    def test_slots_interval_apart(self) -> None:
        """
        Each stream's slots are served ``interval`` apart from its own
        start, the streams' in the order they fall due.
        """
        wire, pacer = Wire(), Pacer(interval=0.25)
        pacer.add(plain("a", 3), wire.socket("a"), start=1.0)
        pacer.add(plain("b", 3), wire.socket("b"), start=1.125)
        run_until(pacer, wire, 3.0)
        self.assertEqual(wire.sent, [
            (1.0, "a", b"a0"), (1.125, "b", b"b0"),
            (1.25, "a", b"a1"), (1.375, "b", b"b1"),
            (1.5, "a", b"a2"), (1.625, "b", b"b2"),
        ])
        self.assertEqual(pacer.late_max, 0.0)
        self.assertEqual(pacer.sent, 6)

    def test_same_due_in_order_added(self) -> None:
        """
        Slots due at the same time are served in the order the streams were
        added.
        """
        wire, pacer = Wire(), Pacer(interval=0.25)
        for name in "cab":
            pacer.add(plain(name, 2), wire.socket(name), start=0.5)
        run_until(pacer, wire, 2.0)
        self.assertEqual(wire.datagrams(), [b"c0", b"a0", b"b0", b"c1", b"a1", b"b1"])

    def test_run_due_sends_only_what_is_due(self) -> None:
        """
        run_due sends what is due by ``now`` and nothing later; a late
        wake-up sends everything overdue at once, in order, and late_max
        says how late the latest slot was served.
        """
        wire, pacer = Wire(), Pacer(interval=0.25)
        pacer.add(plain("a", 8), wire.socket("a"), start=1.0)
        pacer.add(plain("b", 8), wire.socket("b"), start=1.125)
        self.assertEqual(pacer.next_due(), 1.0)
        pacer.run_due(0.875)
        self.assertEqual(wire.sent, [])
        pacer.run_due(1.0)
        self.assertEqual(wire.datagrams(), [b"a0"])
        self.assertEqual(pacer.next_due(), 1.125)
        pacer.run_due(1.0625)
        self.assertEqual(wire.datagrams(), [b"a0"])
        pacer.run_due(1.75)
        self.assertEqual(wire.datagrams(), [b"a0", b"b0", b"a1", b"b1", b"a2", b"b2", b"a3"])
        self.assertEqual(pacer.late_max, 0.625)
        self.assertEqual(pacer.next_due(), 1.875)

    def test_delayed_datagrams(self) -> None:
        """
        A datagram with a delay goes out that long after its slot: after
        the next slot's if the delay is longer than the interval.
        """
        wire, pacer = Wire(), Pacer(interval=0.25)
        stream = Slots(
            [(0.0, b"on time"), (0.125, b"late")],
            [(0.375, b"later than the next")],
            [(0.0, b"third")],
        )
        pacer.add(stream, wire.socket("a"), start=1.0)
        run_until(pacer, wire, 3.0)
        self.assertEqual(wire.sent, [
            (1.0, "a", b"on time"),
            (1.125, "a", b"late"),
            (1.5, "a", b"third"),
            (1.625, "a", b"later than the next"),
        ])

    def test_done_with_count(self) -> None:
        """
        When a stream ends, ``done`` is called once with the datagrams it
        sent (lost slots send none, duplicates count twice); the pacer has
        nothing left to do.
        """
        wire, pacer = Wire(), Pacer(interval=0.25)
        calls: list[tuple[float, int]] = []
        stream = Slots([(0.0, b"1")], [], [(0.0, b"3"), (0.0, b"3")], [(0.0, b"4")])
        pacer.add(stream, wire.socket("a"), start=0.0,
                  done=lambda sent: calls.append((wire.now, sent)))
        run_until(pacer, wire, 0.9375)
        self.assertEqual(calls, [])
        self.assertEqual(pacer.active, 1)
        run_until(pacer, wire, 3.0)
        self.assertEqual(calls, [(1.0, 4)])
        self.assertEqual(pacer.active, 0)
        self.assertIsNone(pacer.next_due())

    def test_done_counts_delayed(self) -> None:
        """
        Datagrams still delayed when the stream ends are counted in what
        ``done`` is told; the pacer stays active until they are sent.
        """
        wire, pacer = Wire(), Pacer(interval=0.25)
        calls: list[int] = []
        pacer.add(Slots([(0.5, b"late")]), wire.socket("a"), start=0.0, done=calls.append)
        pacer.run_due(0.25)
        self.assertEqual((calls, wire.sent, pacer.active), ([1], [], 1))
        pacer.run_due(0.5)
        self.assertEqual((wire.datagrams(), pacer.active), ([b"late"], 0))

    def test_refused_datagram_lost(self) -> None:
        """
        A datagram the socket refuses (nobody listening) is lost, as on a
        network: not counted, and the stream goes on.
        """
        wire, pacer = Wire(), Pacer(interval=0.25)
        calls: list[int] = []
        pacer.add(plain("a", 3), wire.socket("a", refuse=[b"a1"]), start=0.0, done=calls.append)
        run_until(pacer, wire, 1.0)
        self.assertEqual(wire.datagrams(), [b"a0", b"a2"])
        self.assertEqual((pacer.sent, calls), (2, [2]))

    def test_run(self) -> None:
        """
        run() sends everything on time, sleeping at most a millisecond at a
        time, and returns when every stream has ended.
        """
        wire, pacer = Wire(), Pacer(interval=0.25)
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            wire.now += seconds

        pacer.add(plain("a", 3), wire.socket("a"), start=0.0078125)
        pacer.add(plain("b", 2), wire.socket("b"), start=0.125)
        pacer.run(sleep=sleep, clock=lambda: wire.now)
        self.assertEqual(wire.datagrams(), [b"a0", b"b0", b"a1", b"b1", b"a2"])
        dues = [0.0078125, 0.125, 0.2578125, 0.375, 0.5078125]
        for (when, _, _), due in zip(wire.sent, dues):
            self.assertTrue(due <= when < due + 0.001, (when, due))
        self.assertLessEqual(max(sleeps), 0.001)
        self.assertEqual(pacer.active, 0)


class UdpSocketTests(SynchronousTestCase):
    def test_loopback_pair(self) -> None:
        """
        udp_socket gives a non-blocking UDP socket bound on loopback and
        connected to the address: what it sends arrives there, from it.
        """
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(("127.0.0.1", 0))
        sock = udp_socket("127.0.0.1", receiver.getsockname()[1])
        self.addCleanup(sock.close)
        self.assertEqual((sock.family, sock.type), (socket.AF_INET, socket.SOCK_DGRAM))
        self.assertEqual(sock.getpeername(), receiver.getsockname())
        self.assertEqual(sock.getsockname()[0], "127.0.0.1")
        self.assertEqual(sock.gettimeout(), 0.0)
        self.assertRaises(BlockingIOError, sock.recv, 1)
        sock.send(b"hello")
        self.assertEqual(receiver.recvfrom(100), (b"hello", sock.getsockname()))

    def test_source_address(self) -> None:
        """
        udp_socket with a source sends from that address (a phone of a
        fleet, each from its own address).
        """
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(("127.0.0.1", 0))
        sock = udp_socket("127.0.0.1", receiver.getsockname()[1], source="127.0.0.7")
        self.addCleanup(sock.close)
        sock.send(b"hello")
        self.assertEqual(receiver.recvfrom(100), (b"hello", ("127.0.0.7", sock.getsockname()[1])))

    def test_paced_lean_stream(self) -> None:
        """
        A LeanStream paced over a real socket arrives whole and in order.
        """
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(1.0)
        sock = udp_socket("127.0.0.1", receiver.getsockname()[1])
        self.addCleanup(sock.close)
        audio = bytes(call_audio(1, 0.1)(0))
        now = [0.0]

        def sleep(seconds: float) -> None:
            now[0] += seconds

        pacer = Pacer()
        pacer.add(LeanStream(audio, 8, 7, 1, 2), sock, start=0.0)
        pacer.run(sleep=sleep, clock=lambda: now[0])
        packets = [parse_rtp(receiver.recv(2048)) for _ in range(5)]
        self.assertEqual([p.sequence for p in packets], [1, 2, 3, 4, 5])
        self.assertEqual(b"".join(p.payload for p in packets), audio)
        self.assertEqual(pacer.sent, 5)
