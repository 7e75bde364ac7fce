"""The control protocol's connections over StringTransport to a recorder
on a Clock, defended as the server runs it."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from recsvc.admission import Connections
from recsvc.control.protocol import ControlFactory
from recsvc.metrics import Metrics
from recsvc.session import Limits
from recsvc.testing import FakePortPool, ManualRunner, memory_recorder


class ControlConnections:
    """Connections made by ``self.factory`` (a ControlFactory) over
    StringTransport, as from a phone at 127.0.0.1 to the server at 127.0.0.9."""

    def connect(self):
        protocol = self.factory.buildProtocol(None)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.9", 10000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40404),
        )
        protocol.makeConnection(transport)
        return protocol, transport

    def sent(self, transport: StringTransport) -> bytes:
        value = transport.value()
        transport.clear()
        return value


class DefendedServerMixin(ControlConnections):
    """The control tests' connections to a recorder on a Clock, with
    metrics, room for many recordings and an idle timeout."""

    def setUp(self) -> None:
        self.build()

    def build(self, max_message_bytes: int = 4096, connections: Connections | None = None,
              runner: Any = None) -> ControlFactory:
        self.clock = Clock()
        self.runner = ManualRunner() if runner is None else runner
        # (No RTP comes in these tests: it must not stop their recordings.)
        self.recorder = memory_recorder(self.mktemp(), clock=self.clock, run_blocking=self.runner,
                                        ports=FakePortPool(high=41099),
                                        limits=Limits(first_packet_timeout=7200, timeout=7200))
        self.recorder.metrics = Metrics()
        self.recorder.startService()
        self.factory = ControlFactory(self.recorder, max_message_bytes, connections,
                                      idle_timeout=300, clock=self.clock)
        return self.factory
