"""Tests for recsvc.media.sockets: the recordings' UDP ports, read together each tick.

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

from recsvc.media import sockets as sockets_module
from recsvc.media.sockets import CONNECTED_SILENCE, MAX_ROUNDS, SocketPort, RtpSockets, disconnect
from recsvc.media.lane import FastLane
from recsvc.media.pipeline import Continuation
from recsvc.media.ports import NoFreePort, RtpPort, RtpPortPool
from recsvc.media.receiver import RtpReceiver
from recsvc.media.rtp import RtpPacket, build_rtp
from recsvc.testing import FakePortPool

NOW = 123.25  # the RTP reader's clock, as the lane sees it
# The tests' port range: below Linux's ephemeral ports (32768-60999), so
# that a socket bound to port 0 elsewhere (another test, a process) never
# takes one between a test's closing a port and its taking it again (a
# clean clone's make test once met that at 45999); clear of test_tap's.
LOW, HIGH = 31100, 31999


class Sink:
    """A recording as the RTP receiver sees it: what it was handed."""

    def __init__(self) -> None:
        self.packets: list[tuple[RtpPacket, Any]] = []
        self.invalid = 0
        # Closed at the first packet, as a recording that stops closes its port.
        self.stops: SocketPort | None = None

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
    return free_run(2)


def free_run(count: int) -> int:
    """The first of ``count`` neighbouring loopback UDP ports free right now,
    tried in a random order: `make test` runs two workers, and both taking
    the same first run at once would find it taken when they bind it."""
    firsts = list(range(HIGH - count + 1, LOW, -count))
    random.shuffle(firsts)
    for first in firsts:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
        try:
            for offset, sock in enumerate(socks):
                sock.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return first
    raise RuntimeError(f"no {count} neighbouring ports free in {LOW}-{HIGH}")


def taken_port() -> socket.socket:
    """A UDP socket bound to some free loopback port (the port is taken)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class RtpSocketsTests(SynchronousTestCase):
    def make_sockets(
        self, low: int = LOW, high: int = HIGH, seed: int = 0, **kwargs: Any
    ) -> RtpSockets:
        self.clock = Clock()
        return RtpSockets(self.clock, "127.0.0.1", low, high, random=random.Random(seed),
                        now=lambda: NOW, **kwargs)

    def test_reactor_clock_by_default(self) -> None:
        """Without a clock of its own, arrival times come from the reactor's,
        as they do for a service built without one: the lane's packets and
        the full path's must be timed alike."""
        clock = Clock()
        sockets = RtpSockets(clock, "127.0.0.1", LOW, HIGH)
        clock.advance(12.5)
        self.assertEqual(sockets.now(), 12.5)

    def listen(self, sockets: RtpSockets, receiver: Any = None) -> tuple[SocketPort, Sink]:
        """A port with an RtpReceiver handing packets to a new Sink."""
        sink = Sink()
        if receiver is None:
            receiver = RtpReceiver()
            receiver.sink = sink
        port = sockets.listen(receiver)
        self.addCleanup(port.stopListening)
        return port, sink

    def sender(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self.addCleanup(sock.close)
        return sock

    def send(self, sender: socket.socket, port: SocketPort, *datagrams: bytes) -> None:
        for datagram in datagrams:
            sender.sendto(datagram, ("127.0.0.1", port.getHost().port))

    def test_port_in_range(self) -> None:
        """
        Ports are bound on the interface, within the range, each its own.
        """
        sockets = self.make_sockets(45500, 45599, seed=1)
        first, _ = self.listen(sockets)
        second, _ = self.listen(sockets)
        for port in (first, second):
            host = port.getHost()
            self.assertEqual((host.type, host.host), ("UDP", "127.0.0.1"))
            self.assertTrue(45500 <= host.port <= 45599, host.port)
            self.assertEqual(port.sock.getsockname(), ("127.0.0.1", host.port))
        self.assertNotEqual(first.getHost().port, second.getHost().port)

    def test_random_start(self) -> None:
        """
        The first port tried is random, so ports cannot be guessed in turn.
        """
        chosen = set()
        for seed in range(6):
            port, _ = self.listen(self.make_sockets(seed=seed))
            chosen.add(port.getHost().port)
            port.stopListening()
        self.assertGreater(len(chosen), 3)

    def test_taken_port_skipped_then_none_free(self) -> None:
        """
        A port in use by someone else is skipped; with none left the RTP reader
        raises NoFreePort.
        """
        blocker = taken_port()
        self.addCleanup(blocker.close)
        number = blocker.getsockname()[1]
        sockets = self.make_sockets(number, number)
        self.assertRaises(NoFreePort, sockets.listen, RtpReceiver())
        if number < 65535:
            sockets = self.make_sockets(number, number + 1)
            try:
                port, _ = self.listen(sockets)
            except NoFreePort:
                raise self.skipTest(f"port {number + 1} is taken too")
            self.assertEqual(port.getHost().port, number + 1)

    def test_full_range(self) -> None:
        """
        With every port of the range its own, the sockets raises NoFreePort;
        a port closed can be had again.
        """
        low = free_pair()
        sockets = self.make_sockets(low, low + 1)
        first, _ = self.listen(sockets)
        self.listen(sockets)
        self.assertRaises(NoFreePort, sockets.listen, RtpReceiver())
        number = first.getHost().port
        first.stopListening()
        again, _ = self.listen(sockets)
        self.assertEqual(again.getHost().port, number)

    def test_read_waiting_delivers_waiting_datagrams(self) -> None:
        """
        read_waiting() hands over, at once and in order, the datagrams waiting in
        the socket that no tick has read yet, with the sender's address.
        """
        sockets = self.make_sockets()
        port, sink = self.listen(sockets)
        sender = self.sender()
        self.send(sender, port, *(rtp(n) for n in range(5)))
        self.assertEqual(sink.packets, [])
        port.read_waiting()
        self.assertEqual(sink.sequences, [0, 1, 2, 3, 4])
        self.assertEqual({source for _, source in sink.packets}, {sender.getsockname()})
        port.read_waiting()
        self.assertEqual(len(sink.packets), 5)

    def test_read_ready_delivers_to_each_receiver(self) -> None:
        """
        A tick hands each port's datagrams to its own receiver, in order:
        RTP as packets, anything else as invalid.
        """
        sockets = self.make_sockets()
        first, first_sink = self.listen(sockets)
        second, second_sink = self.listen(sockets)
        sender = self.sender()
        self.send(sender, first, rtp(1), b"not rtp", rtp(2))
        self.send(sender, second, rtp(7))
        sockets.read_ready()
        self.assertEqual((first_sink.sequences, first_sink.invalid), ([1, 2], 1))
        self.assertEqual((second_sink.sequences, second_sink.invalid), ([7], 0))
        sockets.read_ready()
        self.assertEqual(len(first_sink.packets) + len(second_sink.packets), 3)

    def test_lane_first(self) -> None:
        """
        A datagram the receiver's fast lane takes goes to the lane (with the
        reader's time), not to the receiver; the others go to the receiver.
        """
        sockets = self.make_sockets()
        port, sink = self.listen(sockets)
        sender = self.sender()
        port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, sender.getsockname()))
        self.send(sender, port, rtp(10), rtp(11), rtp(12, marker=True), rtp(13), rtp(12, ssrc=1))
        sockets.read_ready()
        count, payload, arrivals = port.receiver.lane.take()
        self.assertEqual((count, bytes(payload), arrivals), (2, b"\x55" * 320, [NOW, NOW]))
        self.assertEqual(sink.sequences, [12, 13, 12])

    def test_lane_first_in_read_waiting(self) -> None:
        """
        read_waiting() offers each datagram to the fast lane first too.
        """
        sockets = self.make_sockets()
        port, sink = self.listen(sockets)
        sender = self.sender()
        port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, sender.getsockname()))
        self.send(sender, port, rtp(10), rtp(12))
        port.read_waiting()
        self.assertEqual(port.receiver.lane.count, 1)
        self.assertEqual(sink.sequences, [12])

    def test_tick(self) -> None:
        """
        While a port is open the RTP reader reads every ``tick`` seconds on its
        reactor, not before.
        """
        sockets = self.make_sockets(tick=0.5)
        port, sink = self.listen(sockets)
        self.send(self.sender(), port, rtp(1))
        self.clock.advance(0.25)
        self.assertEqual(sink.packets, [])
        self.clock.advance(0.25)
        self.assertEqual(sink.sequences, [1])
        self.send(self.sender(), port, rtp(2))
        self.clock.advance(0.5)
        self.assertEqual(sink.sequences, [1, 2])

    def test_stop_listening(self) -> None:
        """
        stopListening closes the socket and takes it out of the sockets:
        datagrams sent to it are never delivered, and reading, read_waiting() or
        stopping again raises nothing.
        """
        sockets = self.make_sockets()
        port, sink = self.listen(sockets)
        sender = self.sender()
        self.send(sender, port, rtp(1))
        number = port.getHost().port
        port.stopListening()
        self.assertEqual(port.sock.fileno(), -1)
        sender.sendto(rtp(2), ("127.0.0.1", number))
        sockets.read_ready()
        port.read_waiting()
        port.stopListening()
        self.assertEqual(sink.packets, [])

    def test_tick_stops_with_last_port(self) -> None:
        """
        The tick runs while any port is open: it stops when the last one
        closes (no reactor call left) and starts again with a new port.
        """
        sockets = self.make_sockets()
        self.assertIsNone(sockets._loop)
        first, _ = self.listen(sockets)
        second, _ = self.listen(sockets)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        first.stopListening()
        self.assertIsNotNone(sockets._loop)
        second.stopListening()
        self.assertIsNone(sockets._loop)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        third, sink = self.listen(sockets)
        self.send(self.sender(), third, rtp(3))
        self.clock.advance(sockets.tick)
        self.assertEqual(sink.sequences, [3])

    def test_receiver_closes_its_port(self) -> None:
        """
        A recording that stops (closing its port) while its datagrams are
        read gets no more of them, and the other ports are read on.
        """
        sockets = self.make_sockets()
        port, sink = self.listen(sockets)
        other, other_sink = self.listen(sockets)
        sink.stops = port
        sender = self.sender()
        self.send(sender, port, rtp(1), rtp(2), rtp(3))
        self.send(sender, other, rtp(4), rtp(5))
        sockets.read_ready()
        self.assertEqual(sink.sequences, [1])
        self.assertEqual(other_sink.sequences, [4, 5])

    def test_receiver_closes_its_port_in_read_waiting(self) -> None:
        """
        read_waiting() stops reading a port closed by the datagram it delivered.
        """
        sockets = self.make_sockets()
        port, sink = self.listen(sockets)
        sink.stops = port
        self.send(self.sender(), port, rtp(1), rtp(2))
        port.read_waiting()
        self.assertEqual(sink.sequences, [1])
        self.assertEqual(port.sock.fileno(), -1)

    def test_flood_bounded_per_tick(self) -> None:
        """
        A tick reads at most MAX_ROUNDS datagrams a port, one a round from
        each port that has any: a flood on one port leaves the rest for the
        next tick and does not hold up another port.
        """
        sockets = self.make_sockets()
        flooded, flooded_sink = self.listen(sockets)
        quiet, quiet_sink = self.listen(sockets)
        sender = self.sender()
        self.send(sender, flooded, *(rtp(n) for n in range(MAX_ROUNDS + 10)))
        self.send(sender, quiet, rtp(1), rtp(2), rtp(3))
        sockets.read_ready()
        self.assertEqual(flooded_sink.sequences, list(range(MAX_ROUNDS)))
        self.assertEqual(quiet_sink.sequences, [1, 2, 3])
        sockets.read_ready()
        self.assertEqual(flooded_sink.sequences, list(range(MAX_ROUNDS + 10)))

    def test_receive_buffer(self) -> None:
        """
        receive_buffer sets each socket's kernel receive buffer.
        """
        small, _ = self.listen(self.make_sockets(receive_buffer=4096))
        large, _ = self.listen(self.make_sockets(receive_buffer=256 * 1024))
        sizes = [
            port.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for port in (small, large)
        ]
        self.assertLess(sizes[0], 65536)
        self.assertLess(sizes[0], sizes[1])

    def test_failed_tick_logged(self) -> None:
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

        sockets = self.make_sockets(tick=0.5)
        receiver = RtpReceiver()
        receiver.lane = BrokenOnce()
        receiver.sink = sink = Sink()
        port, _ = self.listen(sockets, receiver)
        sender = self.sender()
        self.send(sender, port, rtp(1))
        self.clock.advance(0.5)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.send(sender, port, rtp(2))
        self.clock.advance(0.5)
        self.assertEqual(sink.sequences, [2])

    def test_lane_over_ipv6(self) -> None:
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
        sockets = RtpSockets(Clock(), "::1", LOW, HIGH, now=lambda: NOW)
        port, sink = self.listen(sockets)
        source = ("::1", sender.getsockname()[1])
        port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, source))
        sender.sendto(rtp(10), ("::1", port.getHost().port))
        sockets.read_ready()
        self.assertEqual(sink.packets, [])
        self.assertEqual(port.receiver.lane.count, 1)


class ConnectedPortTests(SynchronousTestCase):
    """Once a port's lane takes its phone's packets the socket is connected
    to the phone (the kernel drops other senders' datagrams); when the phone
    falls silent it is disconnected again."""

    def setUp(self) -> None:
        self.time = NOW

    def make_sockets(self, interface: str = "127.0.0.1") -> RtpSockets:
        return RtpSockets(Clock(), interface, LOW, HIGH, random=random.Random(0),
                        now=lambda: self.time)

    def listen(self, sockets: RtpSockets, local_host: str | None = None) -> tuple[SocketPort, Sink]:
        receiver = RtpReceiver()
        receiver.sink = sink = Sink()
        port = sockets.listen(receiver, local_host)
        self.addCleanup(port.stopListening)
        return port, sink

    def sender(self, host: str = "127.0.0.1") -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        self.addCleanup(sock.close)
        return sock

    def send(self, sender: socket.socket, port: SocketPort, *datagrams: bytes) -> None:
        for datagram in datagrams:
            sender.sendto(datagram, ("127.0.0.1", port.getHost().port))

    def connected(self, sockets: RtpSockets, first: int = 10) -> tuple[SocketPort, Sink, socket.socket]:
        """A port connected to its phone after the lane took packet ``first``."""
        port, sink = self.listen(sockets, "127.0.0.1")
        phone = self.sender()
        port.receiver.lane.arm(Continuation(8, 0x5EED, first, first * 160, 160, phone.getsockname()))
        self.send(phone, port, rtp(first))
        sockets.read_ready()
        self.assertEqual(port.peer, phone.getsockname())
        self.assertEqual(port.sock.getpeername(), phone.getsockname())
        return port, sink, phone

    def test_connected_to_the_phone(self) -> None:
        """
        After the lane took the phone's packet the socket is connected to
        the phone: the phone's next packets still arrive (through the lane,
        and the full path with the phone's address), another sender's are
        dropped by the kernel.
        """
        sockets = self.make_sockets()
        port, sink, phone = self.connected(sockets)
        self.send(self.sender("127.0.0.2"), port, rtp(11, ssrc=7))
        self.send(phone, port, rtp(11), rtp(12, marker=True))
        sockets.read_ready()
        self.assertEqual(port.receiver.lane.count, 2)
        self.assertEqual(sink.packets, [(RtpPacket(8, 12, 1920, 0x5EED, b"\x55" * 160, True),
                                         phone.getsockname())])

    def test_waiting_before_connect_keeps_sources(self) -> None:
        """
        Datagrams that were waiting when the socket was connected are read
        with their own senders' addresses, then the connected read goes on.
        """
        sockets = self.make_sockets()
        port, sink = self.listen(sockets, "127.0.0.1")
        phone, other = self.sender(), self.sender("127.0.0.2")
        port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, phone.getsockname()))
        self.send(phone, port, rtp(10))
        port.read_waiting()  # the lane takes it (no tick: not connected yet)
        self.assertIsNone(port.peer)
        self.send(other, port, rtp(50, ssrc=7))
        self.send(phone, port, rtp(11))
        sockets.connect_ports(self.time)
        self.assertEqual(port.peer, phone.getsockname())
        self.assertEqual([(packet.sequence, source) for packet, source in sink.packets],
                         [(50, other.getsockname())])
        self.assertEqual(port.receiver.lane.count, 2)

    def test_disconnected_when_silent(self) -> None:
        """
        A connected port whose lane took nothing for CONNECTED_SILENCE is
        disconnected (checked each CONNECTED_SILENCE): another source is
        heard again, as the source check may let it take over.
        """
        sockets = self.make_sockets()
        port, sink, _ = self.connected(sockets)
        self.time += CONNECTED_SILENCE / 2
        sockets.read_ready()
        sockets.connect_ports(self.time)
        self.assertIsNotNone(port.peer)
        self.time += CONNECTED_SILENCE * 3 / 4
        sockets.read_ready()
        self.assertIsNone(port.peer)
        self.assertRaises(OSError, port.sock.getpeername)
        other = self.sender("127.0.0.2")
        self.send(other, port, rtp(99, ssrc=7))
        sockets.read_ready()
        self.assertEqual(sink.packets[-1][1], other.getsockname())
        self.assertEqual(port.getHost().port, port.sock.getsockname()[1])

    def test_reconnected_when_heard_again(self) -> None:
        """
        A disconnected port is connected again once its lane takes the
        phone's packets again.
        """
        sockets = self.make_sockets()
        port, _, phone = self.connected(sockets)
        self.time += 2 * CONNECTED_SILENCE
        sockets.read_ready()
        self.assertIsNone(port.peer)
        self.send(phone, port, rtp(11))
        self.time += CONNECTED_SILENCE
        sockets.read_ready()
        self.assertEqual(port.peer, phone.getsockname())

    def test_wildcard_connected_only_from_where_the_phone_sends(self) -> None:
        """
        A socket bound to a wildcard address takes the source address of
        its route to the peer when connected; it is connected only when that
        is where the phone sends (the address given at listen), never when
        that is unknown or elsewhere.
        """
        sockets = self.make_sockets("0.0.0.0")
        phone = self.sender()
        ports = {}
        for local_host in ("127.0.0.1", "::ffff:127.0.0.1", "192.0.2.1", None):
            port, _ = self.listen(sockets, local_host)
            port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, phone.getsockname()))
            self.send(phone, port, rtp(10))
            ports[local_host] = port
        sockets.read_ready()
        sockets.connect_ports(self.time)
        self.assertEqual({host: port.peer for host, port in ports.items()}, {
            "127.0.0.1": phone.getsockname(), "::ffff:127.0.0.1": phone.getsockname(),
            "192.0.2.1": None, None: None,
        })
        self.assertFalse(ports["192.0.2.1"].connectable)

    def test_looked_at_in_shares(self) -> None:
        """
        The ports are looked at a share each tick, all of them within
        CONNECTED_SILENCE: connecting many sockets at once would hold up the
        reactor.
        """
        sockets = self.make_sockets()  # a 5 ms tick: 39 ticks a round
        phone = self.sender()
        ports = []
        for _ in range(80):
            port, _ = self.listen(sockets, "127.0.0.1")
            port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, phone.getsockname()))
            self.send(phone, port, rtp(10))
            ports.append(port)
        connected = []
        for _ in range(39):
            sockets.read_ready()
            connected.append(sum(1 for port in ports if port.peer is not None))
        self.assertEqual(connected[:3], [3, 6, 9])
        self.assertEqual(connected[-1], 80)

    def test_not_connected_without_lane(self) -> None:
        """
        A port whose lane takes nothing (packets only on the full path) is
        not connected: the source check sees every sender.
        """
        sockets = self.make_sockets()
        port, sink = self.listen(sockets, "127.0.0.1")
        self.send(self.sender(), port, rtp(1), rtp(2))
        sockets.read_ready()
        self.assertEqual(sink.sequences, [1, 2])
        self.assertIsNone(port.peer)

    def test_stop_reads_connected(self) -> None:
        """
        read_waiting() (at a Stop) reads a connected socket too.
        """
        sockets = self.make_sockets()
        port, sink, phone = self.connected(sockets)
        self.send(phone, port, rtp(11), rtp(13))
        port.read_waiting()
        self.assertEqual(port.receiver.lane.count, 2)
        self.assertEqual(sink.sequences, [13])

    def test_disconnect(self) -> None:
        """
        disconnect() dissolves a UDP socket's association and keeps its
        bound address and port.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", free_pair()))
        bound = sock.getsockname()
        sock.connect(("127.0.0.1", 9))
        disconnect(sock)
        self.assertRaises(OSError, sock.getpeername)
        self.assertEqual(sock.getsockname(), bound)


class ConnectFaultTests(ConnectedPortTests):
    """What connecting does when reading or disconnecting goes wrong."""

    def test_not_connected_with_datagrams_left(self) -> None:
        """
        If more datagrams wait at the connect than a port reads at once,
        the socket is disconnected again (the rest would pass as the
        phone's) and connected at a later round, once they are read.
        """
        self.patch(sockets_module, "MAX_WAITING", 2)
        sockets = self.make_sockets()
        port, sink = self.listen(sockets, "127.0.0.1")
        phone, other = self.sender(), self.sender("127.0.0.2")
        port.receiver.lane.arm(Continuation(8, 0x5EED, 10, 1600, 160, phone.getsockname()))
        self.send(phone, port, rtp(10))
        port.read_waiting()
        self.send(other, port, rtp(50, ssrc=7), rtp(51, ssrc=7), rtp(52, ssrc=7))
        sockets.connect_ports(self.time)
        self.assertIsNone(port.peer)
        self.assertRaises(OSError, port.sock.getpeername)
        self.assertEqual([source for _, source in sink.packets], [other.getsockname()] * 2)
        sockets.connect_ports(self.time)
        self.assertEqual(port.peer, phone.getsockname())
        self.assertEqual([source for _, source in sink.packets], [other.getsockname()] * 3)

    def test_failed_disconnect_not_retried(self) -> None:
        """
        A socket that cannot be disconnected stays on the connected read
        and is not tried again (nor logged again) every round.
        """
        sockets = self.make_sockets()
        port, _, _ = self.connected(sockets)
        tries = []

        def failing(sock):
            tries.append(sock)
            raise OSError(22, "Invalid argument")

        self.patch(sockets_module, "disconnect", failing)
        for _ in range(3):
            self.time += 2 * CONNECTED_SILENCE
            sockets.connect_ports(self.time)
        self.assertEqual(len(tries), 1)
        self.assertIsNotNone(port.peer)


class PortPoolContract:
    """What the service relies on from its RTP port pool, run against
    RtpSockets on loopback sockets and against `recsvc.testing.FakePortPool`,
    so the fake cannot drift. Neither picks its ports in a promised order
    (the sockets starts at a random one, the fake at the lowest)."""

    def make_pool(self, count: int) -> tuple[RtpPortPool, int]:
        """A pool of ``count`` ports, and the first of them."""
        raise NotImplementedError

    def send(self, pool: RtpPortPool, port: RtpPort, datagram: bytes) -> tuple[str, int]:
        """Leave ``datagram`` waiting in ``port``'s socket, not yet read;
        return the source it comes from."""
        raise NotImplementedError

    def listen(self, pool: RtpPortPool) -> tuple[RtpPort, Sink]:
        sink = Sink()
        receiver = RtpReceiver()
        receiver.sink = sink
        port = pool.listen(receiver)
        self.addCleanup(port.stopListening)
        return port, sink

    def test_contract_ports_in_the_range(self) -> None:
        """
        Each port is a UDP port of the range on the interface, its own;
        with the range used up, listen raises NoFreePort saying which.
        """
        pool, low = self.make_pool(2)
        first, _ = self.listen(pool)
        second, _ = self.listen(pool)
        hosts = [port.getHost() for port in (first, second)]
        for host in hosts:
            self.assertEqual((host.type, host.host), ("UDP", "127.0.0.1"))
            self.assertIn(host.port, (low, low + 1))
        self.assertNotEqual(hosts[0].port, hosts[1].port)
        error = self.assertRaises(NoFreePort, pool.listen, RtpReceiver())
        self.assertEqual(str(error), f"all 2 ports of {low}-{low + 1} are in use")

    def test_contract_closed_port_reused(self) -> None:
        """
        A closed port can be had again; closing it twice is harmless.
        """
        pool, low = self.make_pool(1)
        port, _ = self.listen(pool)
        self.assertEqual(port.getHost().port, low)
        port.stopListening()
        port.stopListening()
        again, _ = self.listen(pool)
        self.assertEqual(again.getHost().port, low)

    def test_contract_read_waiting_delivers(self) -> None:
        """
        A datagram waits until the port reads what waits, then reaches the
        receiver once, with its source.
        """
        pool, _ = self.make_pool(1)
        port, sink = self.listen(pool)
        source = self.send(pool, port, rtp(1))
        self.send(pool, port, b"not rtp")
        self.assertEqual((sink.packets, sink.invalid), ([], 0))
        port.read_waiting()
        self.assertEqual(sink.sequences, [1])
        self.assertEqual(sink.packets[0][1], source)
        self.assertEqual(sink.invalid, 1)
        port.read_waiting()
        self.assertEqual(len(sink.packets), 1)

    def test_contract_closed_port_delivers_nothing(self) -> None:
        """
        A closed port hands nothing more to its receiver, even what
        waited; a receiver that closes it is handed no more.
        """
        pool, _ = self.make_pool(2)
        closed, closed_sink = self.listen(pool)
        self.send(pool, closed, rtp(1))
        closed.stopListening()
        closed.read_waiting()
        self.assertEqual(closed_sink.packets, [])
        stopping, stopping_sink = self.listen(pool)
        stopping_sink.stops = stopping
        self.send(pool, stopping, rtp(2))
        self.send(pool, stopping, rtp(3))
        stopping.read_waiting()
        self.assertEqual(stopping_sink.sequences, [2])


class RtpSocketsPortPoolContractTests(PortPoolContract, SynchronousTestCase):
    def make_pool(self, count: int) -> tuple[RtpSockets, int]:
        low = free_run(count)
        return RtpSockets(Clock(), "127.0.0.1", low, low + count - 1, now=lambda: NOW), low

    def send(self, pool: RtpSockets, port: RtpPort, datagram: bytes) -> tuple[str, int]:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.bind(("127.0.0.1", 0))
        sender.sendto(datagram, ("127.0.0.1", port.getHost().port))
        return sender.getsockname()


class FakePortPoolContractTests(PortPoolContract, SynchronousTestCase):
    def make_pool(self, count: int) -> tuple[FakePortPool, int]:
        return FakePortPool(LOW, LOW + count - 1), LOW

    def send(self, pool: FakePortPool, port: RtpPort, datagram: bytes) -> tuple[str, int]:
        source = ("127.0.0.1", 5004)
        pool.queue(port.getHost().port, datagram, source)
        return source
