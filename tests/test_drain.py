"""Tests for recsvc.drain: the recordings' UDP ports, read together each tick.

Real sockets on 127.0.0.1 (loopback delivery is synchronous on Linux: a
datagram sent is waiting at once); the reactor is a task.Clock, so no tick
runs unless a test advances it or calls read_ready itself.
"""

from __future__ import annotations

import random
import socket
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from recsvc.drain import MAX_ROUNDS, DrainPort, RtpDrain
from recsvc.lane import FastLane
from recsvc.pipeline import Continuation
from recsvc.ports import NoFreePort
from recsvc.protocol.rtp import RtpReceiver
from recsvc.rtp import RtpPacket, build_rtp

NOW = 123.25  # the drain's clock, as the lane sees it
# The tests' port range: wide, as other programs' sockets may take some of
# it (it lies among the kernel's ephemeral ports), clear of test_tap's.
LOW, HIGH = 45100, 45999


class Sink:
    """A recording as the RTP receiver sees it: what it was handed."""

    def __init__(self) -> None:
        self.packets: list[tuple[RtpPacket, Any]] = []
        self.invalid = 0
        # Closed at the first packet, as a recording that stops closes its port.
        self.stops: DrainPort | None = None

    def packet_received(self, packet: RtpPacket, source: Any) -> None:
        self.packets.append((packet, source))
        if self.stops is not None:
            self.stops.stopListening()

    def datagram_invalid(self) -> None:
        self.invalid += 1

    @property
    def sequences(self) -> list[int]:
        return [packet.sequence for packet, _ in self.packets]


def rtp(sequence: int, marker: bool = False, ssrc: int = 0x5EED) -> bytes:
    return build_rtp(RtpPacket(8, sequence, sequence * 160, ssrc, b"\x55" * 160, marker))


def free_pair() -> int:
    """The first of two neighbouring loopback UDP ports free right now."""
    for first in range(HIGH - 1, LOW, -2):
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for offset, sock in enumerate(socks):
                sock.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return first
    raise RuntimeError(f"no two neighbouring ports free in {LOW}-{HIGH}")


def taken_port() -> socket.socket:
    """A UDP socket bound to some free loopback port (the port is taken)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class RtpDrainTests(SynchronousTestCase):
    def make_drain(
        self, low: int = LOW, high: int = HIGH, seed: int = 0, **kwargs: Any
    ) -> RtpDrain:
        self.clock = Clock()
        return RtpDrain(self.clock, "127.0.0.1", low, high, random=random.Random(seed),
                        now=lambda: NOW, **kwargs)

    def test_reactor_clock_by_default(self) -> None:
        """Without a clock of its own, arrival times come from the reactor's,
        as they do for a service built without one: the lane's packets and
        the full path's must be timed alike."""
        clock = Clock()
        drain = RtpDrain(clock, "127.0.0.1", LOW, HIGH)
        clock.advance(12.5)
        self.assertEqual(drain.now(), 12.5)

    def listen(self, drain: RtpDrain, receiver: Any = None) -> tuple[DrainPort, Sink]:
        """A port with an RtpReceiver handing packets to a new Sink."""
        sink = Sink()
        if receiver is None:
            receiver = RtpReceiver()
            receiver.sink = sink
        port = drain.listen(receiver)
        self.addCleanup(port.stopListening)
        return port, sink

    def sender(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self.addCleanup(sock.close)
        return sock

    def send(self, sender: socket.socket, port: DrainPort, *datagrams: bytes) -> None:
        for datagram in datagrams:
            sender.sendto(datagram, ("127.0.0.1", port.getHost().port))

    def test_portInRange(self) -> None:
        """
        Ports are bound on the interface, within the range, each its own.
        """
        drain = self.make_drain(45500, 45599, seed=1)
        first, _ = self.listen(drain)
        second, _ = self.listen(drain)
        for port in (first, second):
            host = port.getHost()
            self.assertEqual((host.type, host.host), ("UDP", "127.0.0.1"))
            self.assertTrue(45500 <= host.port <= 45599, host.port)
            self.assertEqual(port.sock.getsockname(), ("127.0.0.1", host.port))
        self.assertNotEqual(first.getHost().port, second.getHost().port)

    def test_randomStart(self) -> None:
        """
        The first port tried is random, so ports cannot be guessed in turn.
        """
        chosen = set()
        for seed in range(6):
            port, _ = self.listen(self.make_drain(seed=seed))
            chosen.add(port.getHost().port)
            port.stopListening()
        self.assertGreater(len(chosen), 3)

    def test_takenPortSkippedThenNoneFree(self) -> None:
        """
        A port in use by someone else is skipped; with none left the drain
        raises NoFreePort.
        """
        blocker = taken_port()
        self.addCleanup(blocker.close)
        number = blocker.getsockname()[1]
        drain = self.make_drain(number, number)
        self.assertRaises(NoFreePort, drain.listen, RtpReceiver())
        if number < 65535:
            drain = self.make_drain(number, number + 1)
            try:
                port, _ = self.listen(drain)
            except NoFreePort:
                raise self.skipTest(f"port {number + 1} is taken too")
            self.assertEqual(port.getHost().port, number + 1)

    def test_fullRange(self) -> None:
        """
        With every port of the range its own, the drain raises NoFreePort;
        a port closed can be had again.
        """
        low = free_pair()
        drain = self.make_drain(low, low + 1)
        first, _ = self.listen(drain)
        self.listen(drain)
        self.assertRaises(NoFreePort, drain.listen, RtpReceiver())
        number = first.getHost().port
        first.stopListening()
        again, _ = self.listen(drain)
        self.assertEqual(again.getHost().port, number)

    def test_drainDeliversWaitingDatagrams(self) -> None:
        """
        drain() hands over, at once and in order, the datagrams waiting in
        the socket that no tick has read yet, with the sender's address.
        """
        drain = self.make_drain()
        port, sink = self.listen(drain)
        sender = self.sender()
        self.send(sender, port, *(rtp(n) for n in range(5)))
        self.assertEqual(sink.packets, [])
        port.drain()
        self.assertEqual(sink.sequences, [0, 1, 2, 3, 4])
        self.assertEqual({source for _, source in sink.packets}, {sender.getsockname()})
        port.drain()
        self.assertEqual(len(sink.packets), 5)

    def test_readReadyDeliversToEachReceiver(self) -> None:
        """
        A tick hands each port's datagrams to its own receiver, in order:
        RTP as packets, anything else as invalid.
        """
        drain = self.make_drain()
        first, first_sink = self.listen(drain)
        second, second_sink = self.listen(drain)
        sender = self.sender()
        self.send(sender, first, rtp(1), b"not rtp", rtp(2))
        self.send(sender, second, rtp(7))
        drain.read_ready()
        self.assertEqual((first_sink.sequences, first_sink.invalid), ([1, 2], 1))
        self.assertEqual((second_sink.sequences, second_sink.invalid), ([7], 0))
        drain.read_ready()
        self.assertEqual(len(first_sink.packets) + len(second_sink.packets), 3)

    def test_laneFirst(self) -> None:
        """
        A datagram the receiver's fast lane takes goes to the lane (with the
        drain's time), not to the receiver; the others go to the receiver.
        """
        drain = self.make_drain()
        port, sink = self.listen(drain)
        sender = self.sender()
        port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, sender.getsockname()))
        self.send(sender, port, rtp(10), rtp(11), rtp(12, marker=True), rtp(13), rtp(12, ssrc=1))
        drain.read_ready()
        count, payload, arrivals = port.receiver.lane.take()
        self.assertEqual((count, bytes(payload), arrivals), (2, b"\x55" * 320, [NOW, NOW]))
        self.assertEqual(sink.sequences, [12, 13, 12])

    def test_laneFirstInDrain(self) -> None:
        """
        drain() offers each datagram to the fast lane first too.
        """
        drain = self.make_drain()
        port, sink = self.listen(drain)
        sender = self.sender()
        port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, sender.getsockname()))
        self.send(sender, port, rtp(10), rtp(12))
        port.drain()
        self.assertEqual(port.receiver.lane.count, 1)
        self.assertEqual(sink.sequences, [12])

    def test_tick(self) -> None:
        """
        While a port is open the drain reads every ``tick`` seconds on its
        reactor, not before.
        """
        drain = self.make_drain(tick=0.5)
        port, sink = self.listen(drain)
        self.send(self.sender(), port, rtp(1))
        self.clock.advance(0.25)
        self.assertEqual(sink.packets, [])
        self.clock.advance(0.25)
        self.assertEqual(sink.sequences, [1])
        self.send(self.sender(), port, rtp(2))
        self.clock.advance(0.5)
        self.assertEqual(sink.sequences, [1, 2])

    def test_stopListening(self) -> None:
        """
        stopListening closes the socket and takes it out of the drain:
        datagrams sent to it are never delivered, and reading, draining or
        stopping again raises nothing.
        """
        drain = self.make_drain()
        port, sink = self.listen(drain)
        sender = self.sender()
        self.send(sender, port, rtp(1))
        number = port.getHost().port
        port.stopListening()
        self.assertEqual(port.sock.fileno(), -1)
        sender.sendto(rtp(2), ("127.0.0.1", number))
        drain.read_ready()
        port.drain()
        port.stopListening()
        self.assertEqual(sink.packets, [])

    def test_tickStopsWithLastPort(self) -> None:
        """
        The tick runs while any port is open: it stops when the last one
        closes (no reactor call left) and starts again with a new port.
        """
        drain = self.make_drain()
        self.assertIsNone(drain._loop)
        first, _ = self.listen(drain)
        second, _ = self.listen(drain)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        first.stopListening()
        self.assertIsNotNone(drain._loop)
        second.stopListening()
        self.assertIsNone(drain._loop)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        third, sink = self.listen(drain)
        self.send(self.sender(), third, rtp(3))
        self.clock.advance(drain.tick)
        self.assertEqual(sink.sequences, [3])

    def test_receiverClosesItsPort(self) -> None:
        """
        A recording that stops (closing its port) while its datagrams are
        read gets no more of them, and the other ports are read on.
        """
        drain = self.make_drain()
        port, sink = self.listen(drain)
        other, other_sink = self.listen(drain)
        sink.stops = port
        sender = self.sender()
        self.send(sender, port, rtp(1), rtp(2), rtp(3))
        self.send(sender, other, rtp(4), rtp(5))
        drain.read_ready()
        self.assertEqual(sink.sequences, [1])
        self.assertEqual(other_sink.sequences, [4, 5])

    def test_receiverClosesItsPortInDrain(self) -> None:
        """
        drain() stops reading a port closed by the datagram it delivered.
        """
        drain = self.make_drain()
        port, sink = self.listen(drain)
        sink.stops = port
        self.send(self.sender(), port, rtp(1), rtp(2))
        port.drain()
        self.assertEqual(sink.sequences, [1])
        self.assertEqual(port.sock.fileno(), -1)

    def test_floodBoundedPerTick(self) -> None:
        """
        A tick reads at most MAX_ROUNDS datagrams a port, one a round from
        each port that has any: a flood on one port leaves the rest for the
        next tick and does not hold up another port.
        """
        drain = self.make_drain()
        flooded, flooded_sink = self.listen(drain)
        quiet, quiet_sink = self.listen(drain)
        sender = self.sender()
        self.send(sender, flooded, *(rtp(n) for n in range(MAX_ROUNDS + 10)))
        self.send(sender, quiet, rtp(1), rtp(2), rtp(3))
        drain.read_ready()
        self.assertEqual(flooded_sink.sequences, list(range(MAX_ROUNDS)))
        self.assertEqual(quiet_sink.sequences, [1, 2, 3])
        drain.read_ready()
        self.assertEqual(flooded_sink.sequences, list(range(MAX_ROUNDS + 10)))

    def test_receiveBuffer(self) -> None:
        """
        receive_buffer sets each socket's kernel receive buffer.
        """
        small, _ = self.listen(self.make_drain(receive_buffer=4096))
        large, _ = self.listen(self.make_drain(receive_buffer=256 * 1024))
        sizes = [
            port.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for port in (small, large)
        ]
        self.assertLess(sizes[0], 65536)
        self.assertLess(sizes[0], sizes[1])

    def test_failedTickLogged(self) -> None:
        """
        A tick that fails (a bug) is logged, and reading goes on.
        """

        class BrokenOnce(FastLane):
            broken = True

            def offer(self, *args: Any) -> bool:
                if self.broken:
                    self.broken = False
                    raise ZeroDivisionError("bug")
                return super().offer(*args)

        drain = self.make_drain(tick=0.5)
        receiver = RtpReceiver()
        receiver.lane = BrokenOnce()
        receiver.sink = sink = Sink()
        port, _ = self.listen(drain, receiver)
        sender = self.sender()
        self.send(sender, port, rtp(1))
        self.clock.advance(0.5)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.send(sender, port, rtp(2))
        self.clock.advance(0.5)
        self.assertEqual(sink.sequences, [2])

    def test_laneOverIpv6(self) -> None:
        """
        On an IPv6 interface the fast lane takes the packets that continue
        the stream too (the socket gives a 4-tuple address).
        """
        try:
            sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sender.bind(("::1", 0))
        except OSError:
            raise self.skipTest("no IPv6 loopback")
        self.addCleanup(sender.close)
        drain = RtpDrain(Clock(), "::1", LOW, HIGH, now=lambda: NOW)
        port, sink = self.listen(drain)
        source = ("::1", sender.getsockname()[1])
        port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, source))
        sender.sendto(rtp(10), ("::1", port.getHost().port))
        drain.read_ready()
        self.assertEqual(sink.packets, [])
        self.assertEqual(port.receiver.lane.count, 1)
