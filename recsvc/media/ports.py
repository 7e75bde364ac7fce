"""How a recording gets its own UDP port: the interfaces.

`recsvc.media.sockets.RtpSockets` is the pool the service uses (ports picked at random
from a range, all read together); `recsvc.testing.FakePortPool` the fake.
Kept behind `RtpPortPool` and `RtpPort` so the way sockets are opened and
read can change without touching the RTP protocol or the recording.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.protocol import DatagramProtocol


class NoFreePort(Exception):
    """Every port of the range is taken."""


class RtpPort(Protocol):
    """A recording's open UDP port."""

    def getHost(self) -> Any:
        """The bound address (``.port`` is the number)."""

    def read_waiting(self) -> None:
        """Deliver the datagrams already waiting in the socket, now."""

    def stopListening(self) -> Any:
        """Close the port; may return a Deferred."""


class RtpPortPool(Protocol):
    def listen(self, protocol: DatagramProtocol, local_host: str | None = None) -> RtpPort:
        """Bind ``protocol`` to a free port of the range; ``local_host``:
        the local address the phone sends to, if known. Raises `NoFreePort`."""
