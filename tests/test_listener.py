"""Tests for recsvc.application.listener: the Listener service (listens on
start, fails start-up if it cannot, stops the port on stop) and the tuning
of its port."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from recsvc.application.listener import ACCEPTS_PER_TURN, Listener


class FakePort:
    """An IListeningPort that remembers being stopped."""

    def __init__(self) -> None:
        self.stopped = 0
        self.stopping: Deferred[None] = Deferred()

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 10000)

    def stopListening(self) -> Deferred[None]:
        self.stopped += 1
        return self.stopping


class FakeEndpoint:
    """An IStreamServerEndpoint whose listen returns the Deferred it is given."""

    def __init__(self, result: Deferred[Any]) -> None:
        self.result = result
        self.factories: list[Factory] = []

    def listen(self, factory: Factory) -> Deferred[Any]:
        self.factories.append(factory)
        return self.result


class AcceptingPort(FakePort):
    """A TCP port's accepting: numberAccepts, grown by 20 while saturated."""

    numberAccepts = 100

    def __init__(self) -> None:
        super().__init__()
        self.tries: list[int] = []

    def doRead(self) -> None:
        self.tries.append(self.numberAccepts)
        self.numberAccepts += 20  # (always saturated)


class ControlListenerTests(SynchronousTestCase):
    """Listener listens on start, fails start-up if it cannot, stops the port on stop."""

    def test_accepts_at_most_a_few_a_turn(self) -> None:
        """
        Under a flood of connections a TCP port would accept more each turn
        without bound (and hold up every other socket); the listener caps
        it at ACCEPTS_PER_TURN. Ports that do not accept that way are left
        as they are.
        """
        port = AcceptingPort()
        listener = Listener(FakeEndpoint(succeed(port)), Factory())
        listener.startService()
        for _ in range(5):
            port.doRead()
        self.assertEqual(port.tries, [ACCEPTS_PER_TURN] * 5)
        plain = FakePort()
        Listener(FakeEndpoint(succeed(plain)), Factory()).startService()
        self.assertFalse(hasattr(plain, "doRead"))

    def test_listens_on_start(self) -> None:
        """On a MemoryReactor the listener listens with its factory and whenListening has the port."""
        reactor = MemoryReactorClock()
        factory = Factory()
        listener = Listener(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), factory)
        listener.startService()
        self.assertTrue(listener.running)
        [(port, usedFactory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        self.assertIs(usedFactory, factory)
        listening = self.successResultOf(listener.whenListening())
        self.assertIsInstance(listening.getHost(), IPv4Address)

    def test_not_listening_before_start(self) -> None:
        """Building the listener does not listen yet."""
        endpoint = FakeEndpoint(succeed(FakePort()))
        Listener(endpoint, Factory())
        self.assertEqual(endpoint.factories, [])

    def test_when_listening_waits(self) -> None:
        """whenListening has no result until the endpoint listens, then the port."""
        pending: Deferred[FakePort] = Deferred()
        listener = Listener(FakeEndpoint(pending), Factory())
        listener.startService()
        first = listener.whenListening()
        self.assertNoResult(first)
        port = FakePort()
        pending.callback(port)
        self.assertIs(self.successResultOf(first), port)

    def test_when_listening_every_caller(self) -> None:
        """Every whenListening call gets its own Deferred, each firing with the port."""
        port = FakePort()
        listener = Listener(FakeEndpoint(succeed(port)), Factory())
        listener.startService()
        first = listener.whenListening()
        second = listener.whenListening()
        self.assertIsNot(first, second)
        self.assertIs(self.successResultOf(first), port)
        self.assertIs(self.successResultOf(second), port)
        # A caller adding callbacks to its Deferred does not change what the next one sees.
        first.addCallback(lambda _: None)
        self.assertIs(self.successResultOf(listener.whenListening()), port)

    def test_listen_failure_fails_start(self) -> None:
        """An endpoint whose listen has already failed makes startService raise that error."""
        error = CannotListenError("127.0.0.1", 10000, OSError("in use"))
        listener = Listener(FakeEndpoint(fail(error)), Factory())
        raised = self.assertRaises(CannotListenError, listener.startService)
        self.assertIs(raised, error)

    def test_reactor_listen_failure_fails_start(self) -> None:
        """A reactor that cannot listen (the real endpoint path) makes startService raise."""
        reactor = RaisingMemoryReactor(listenException=CannotListenError("", 10000, OSError("in use")))
        listener = Listener(TCP4ServerEndpoint(reactor, 10000), Factory())
        self.assertRaises(CannotListenError, listener.startService)

    def test_later_listen_failure_fails_when_listening(self) -> None:
        """
        An endpoint that fails after startService returned fails whenListening
        with that error rather than firing it with None as if it were a port.
        """
        pending: Deferred[FakePort] = Deferred()
        listener = Listener(FakeEndpoint(pending), Factory())
        listener.startService()
        waiting = listener.whenListening()
        pending.errback(CannotListenError("127.0.0.1", 10000, OSError("in use")))
        self.failureResultOf(waiting, CannotListenError)

    def test_stop_stops_port(self) -> None:
        """stopService stops the listening port and returns its stopListening Deferred."""
        port = FakePort()
        listener = Listener(FakeEndpoint(succeed(port)), Factory())
        listener.startService()
        stopping = listener.stopService()
        self.assertEqual(port.stopped, 1)
        self.assertFalse(listener.running)
        self.assertNoResult(stopping)
        port.stopping.callback(None)
        self.assertIsNone(self.successResultOf(stopping))

    def test_stop_twice(self) -> None:
        """A second stopService does not stop the port again."""
        port = FakePort()
        listener = Listener(FakeEndpoint(succeed(port)), Factory())
        listener.startService()
        listener.stopService()
        listener.stopService()
        self.assertEqual(port.stopped, 1)
