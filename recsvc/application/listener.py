"""Listening for connections: a service that listens on an endpoint and
fails start-up when it cannot, and the tuning of its socket (how many
connections it accepts a turn; accepted once their first data has come)."""

from __future__ import annotations

import socket
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from recsvc.application.endpoints import listen_failure
from recsvc.control.accepting import screen_accepts
from recsvc.logs import Logger

_log = Logger()


# Connections a listener accepts in one turn of the reactor. Twisted's port
# takes 20 more each turn while connections keep waiting, without bound:
# under a flood of connections one turn took tens of milliseconds, and the
# phones' messages waited for it. Accepting stays as fast (turns are short
# and follow one another), and other sockets get their turn in between.
ACCEPTS_PER_TURN = 64


def accept_at_most(port: Any, count: int) -> None:
    """Caps the connections a Twisted TCP port accepts a turn (its
    ``numberAccepts``, which it grows itself); other ports are left alone."""
    if not hasattr(port, "numberAccepts"):
        return
    read = port.doRead

    def capped_read() -> Any:
        port.numberAccepts = min(port.numberAccepts, count)
        return read()

    port.doRead = capped_read


# A connection is handed to the listener once its first data has come (or,
# idle, after about this many seconds): a phone sends its Start at once,
# while connections that never send (a connect/drop flood, a scanner) are
# never accepted and never fill the accept queue, where they would hold up
# the phones' connections or have them dropped.
DEFER_ACCEPT_S = 5


def accept_with_data(port: Any, seconds: int) -> None:
    """TCP_DEFER_ACCEPT on a TCP port's socket, where the system has it."""
    option = getattr(socket, "TCP_DEFER_ACCEPT", None)
    listening = getattr(port, "socket", None)
    if option is None or listening is None:
        return
    try:
        listening.setsockopt(socket.IPPROTO_TCP, option, seconds)
    except OSError as error:  # (not a TCP socket)
        _log.info("Connections are accepted before their data: {reason}", reason=str(error))


class Listener(Service):
    """Listens on an endpoint; fails start-up if it cannot (and logs why,
    naming ``key``, its config key).

    With ``screen`` (see recsvc.control.accepting), a plain TCP port
    (not one behind TLS or another wrapper) has each new connection
    screened by it before anything is built for it."""

    log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, factory: Factory,
                 purpose: str = "control connections", key: str = "control.listen",
                 screen: Callable[[str, bytes | None], Any] | None = None) -> None:
        self._endpoint = endpoint
        self._factory = factory
        self.purpose = purpose
        self.key = key
        self._screen = screen
        self._port: IListeningPort | None = None
        self._started = False
        self._outcome: IListeningPort | Failure | None = None
        self._waiting: list[Deferred[IListeningPort]] = []

    def startService(self) -> None:
        Service.startService(self)
        self._started = True
        self._outcome = None
        self._endpoint.listen(self._factory).addBoth(self._settled)
        if isinstance(self._outcome, Failure):
            # Fail start-up synchronously, as twistd needs, before anything else listens.
            self._outcome.raiseException()

    def _settled(self, outcome: IListeningPort | Failure) -> None:
        if isinstance(outcome, Failure):
            reason = (listen_failure(self.key, outcome.value)
                      if outcome.check(CannotListenError) else outcome.getErrorMessage())
            self.log.error("Cannot listen for {purpose}: {reason}",
                           purpose=self.purpose, reason=reason)
        else:
            self._port = outcome
            if (self._screen is not None and getattr(outcome, "factory", None) is self._factory
                    and isinstance(outcome.getHost(), (IPv4Address, IPv6Address))):
                # (Plain TCP only: under TLS or PROXY the bytes are not the
                # phone's yet; a unix socket has no address to limit.)
                screen_accepts(outcome, self._screen)
            else:
                accept_at_most(outcome, ACCEPTS_PER_TURN)
            accept_with_data(outcome, DEFER_ACCEPT_S)
            address = outcome.getHost()
            self.log.info("Listening for {purpose} on {host}:{port}", purpose=self.purpose,
                          host=address.host, port=address.port)
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(outcome)  # a Failure errbacks

    def whenListening(self) -> Deferred[IListeningPort]:
        """The listening port, once there is one; fails if listening failed."""
        assert self._started, "not started"
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        if self._outcome is not None:
            return succeed(self._outcome)
        waiter: Deferred[IListeningPort] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
        return None
