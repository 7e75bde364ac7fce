"""Tests for recsvc.ports: per-recording UDP ports from the real reactor."""

from __future__ import annotations

import random
import socket

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from recsvc.ports import NoFreePort, ReactorPortPool


class Collector(DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr) -> None:
        self.received.append(datagram)


def taken_port() -> socket.socket:
    """A UDP socket bound to some free loopback port (the port is taken)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class ReactorPortPoolTests(TestCase):
    def listen(self, pool: ReactorPortPool, protocol: DatagramProtocol):
        port = pool.listen(protocol)
        self.addCleanup(port.stopListening)
        return port

    def test_port_in_range(self) -> None:
        """Ports are bound on the interface, within the range, each its own."""
        pool = ReactorPortPool(reactor, "127.0.0.1", 44000, 44099, random.Random(1))
        first = self.listen(pool, Collector()).getHost()
        second = self.listen(pool, Collector()).getHost()
        self.assertEqual(first.host, "127.0.0.1")
        self.assertTrue(44000 <= first.port <= 44099)
        self.assertTrue(44000 <= second.port <= 44099)
        self.assertNotEqual(first.port, second.port)

    def test_random_start(self) -> None:
        """The first port tried is random, so ports cannot be guessed in turn."""
        chosen = set()
        for seed in range(6):
            pool = ReactorPortPool(reactor, "127.0.0.1", 44100, 44199, random.Random(seed))
            port = pool.listen(Collector())
            chosen.add(port.getHost().port)
            port.stopListening()
        self.assertGreater(len(chosen), 3)

    def test_taken_port_skipped_then_none_free(self) -> None:
        """A port in use by someone else is skipped; with none left the pool
        raises NoFreePort."""
        blocker = taken_port()
        self.addCleanup(blocker.close)
        number = blocker.getsockname()[1]
        pool = ReactorPortPool(reactor, "127.0.0.1", number, number)
        self.assertRaises(NoFreePort, pool.listen, Collector())
        if number < 65535:
            pool = ReactorPortPool(reactor, "127.0.0.1", number, number + 1, random.Random(0))
            try:
                port = self.listen(pool, Collector())
            except NoFreePort:
                self.skipTest(f"port {number + 1} is taken too")
            self.assertEqual(port.getHost().port, number + 1)

    def test_drain_delivers_waiting_datagrams(self) -> None:
        """drain() hands over, at once, the datagrams waiting in the socket
        that the reactor has not read yet."""
        collector = Collector()
        pool = ReactorPortPool(reactor, "127.0.0.1", 44200, 44299)
        port = self.listen(pool, collector)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for n in range(5):
                sender.sendto(b"packet%d" % n, ("127.0.0.1", port.getHost().port))
        self.assertEqual(collector.received, [])
        port.drain()
        self.assertEqual(collector.received, [b"packet%d" % n for n in range(5)])
