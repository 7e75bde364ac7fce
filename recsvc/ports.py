"""How a recording gets its own UDP port: picked at random from a range.

Kept behind `RtpPortPool` and `RtpPort` so the way sockets are opened and
read can change (for speed) without touching the RTP protocol or the recording.
"""

from __future__ import annotations

import random
from typing import Any, Protocol

import attrs
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUDP, IReadDescriptor
from twisted.internet.protocol import DatagramProtocol


class NoFreePort(Exception):
    """Every port of the range is taken."""


class RtpPort(Protocol):
    """A recording's open UDP port."""

    def getHost(self) -> Any:
        """The bound address (``.port`` is the number)."""

    def drain(self) -> None:
        """Deliver the datagrams already waiting in the socket, now."""

    def stopListening(self) -> Any:
        """Close the port; may return a Deferred."""


class RtpPortPool(Protocol):
    def listen(self, protocol: DatagramProtocol) -> RtpPort:
        """Bind ``protocol`` to a free port of the range. Raises `NoFreePort`."""


@attrs.define
class ReactorPort:
    """A port from the reactor's ``listenUDP``."""

    port: IListeningPort

    def getHost(self) -> Any:
        return self.port.getHost()

    def drain(self) -> None:
        # The reactor's UDP port reads until the socket would block.
        reader = IReadDescriptor(self.port, None)
        if reader is not None:
            reader.doRead()

    def stopListening(self) -> Any:
        return self.port.stopListening()


@attrs.define
class ReactorPortPool:
    """Binds with the reactor's ``listenUDP``, trying the range from a random
    point so that a recording's port cannot be guessed from the last one."""

    reactor: IReactorUDP
    interface: str
    low: int
    high: int
    random: random.Random = attrs.field(factory=random.SystemRandom)

    def listen(self, protocol: DatagramProtocol) -> RtpPort:
        count = self.high - self.low + 1
        first = self.random.randrange(count)
        for step in range(count):
            port = self.low + (first + step) % count
            try:
                return ReactorPort(self.reactor.listenUDP(port, protocol, interface=self.interface))
            except CannotListenError:
                continue
        raise NoFreePort(f"all {count} ports of {self.low}-{self.high} are in use")
