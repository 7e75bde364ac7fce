"""The web port's connections: how many at once (in all and from one
address), the descriptors they may take, and how long a request may take
to arrive (bytes trickling in do not keep a slow client's connection open)."""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from recsvc.admission import (TOO_FEW_DESCRIPTORS, ConnectionLimits, Connections, Place,
                              refused_peer, shown_peer)
from recsvc.logs import Logger
from recsvc.refusals import RefusalLines

# Why a web connection was closed (its counter's label, the log's reason).
TOO_SLOW = "request too slow"


class DeadlineChannel(HTTPChannel):
    """An HTTP connection each of whose requests must have arrived in full
    within ``deadline`` seconds: the first from the connection's opening,
    each later one from its first byte. Bytes trickling in do not put it
    off (they do put off the idle timeout, which is for the quiet between
    requests). A request too slow is answered 408 and the connection
    closed (reset if the client does not take the answer within
    ``abortTimeout``); ``expired(channel)`` is told first."""

    def __init__(self, deadline: float, clock: IReactorTime,
                 expired: Callable[[DeadlineChannel], None]) -> None:
        super().__init__()
        self._deadline_s = deadline
        self._clock = clock
        self._expired = expired
        self._due: IDelayedCall | None = None
        # Its place in the web port's connection limits (None: not limited).
        self.place: Place | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def dataReceived(self, data: bytes) -> None:
        # (Also the pipelined bytes kept back while a request was answered:
        # they are handed on again once it is done.)
        if data and self._due is None and not self._handlingRequest:
            self._arm()
        super().dataReceived(data)

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def connectionLost(self, reason: Failure) -> None:
        self._disarm()
        if self.place is not None:
            self.place.release()
            self.place = None
        super().connectionLost(reason)

    def _arm(self) -> None:
        self._due = self._clock.callLater(self._deadline_s, self._too_slow)

    def _disarm(self) -> None:
        if self._due is not None:
            if self._due.active():
                self._due.cancel()
            self._due = None

    def _too_slow(self) -> None:
        self._due = None
        self.setTimeout(None)  # (closing: the idle timeout has nothing left to do)
        self._expired(self)
        body = json.dumps({"error": f"request not complete within {self._deadline_s:g} s "
                                    "(see http.request_timeout)"}).encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\n"
                             b"Content-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (len(body), body))
        if self.abortTimeout is not None:  # (as Twisted's own idle timeout does)
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


class WebConnections(Factory):
    """The web port's factory around ``site``: takes a connection while
    ``limits`` (all, and from one address or IPv6 /64) allow it and
    ``room()`` says the descriptors the control port needs are not touched
    (see recsvc.application.descriptors.DescriptorRoom); a refused one is closed at
    once, counted and logged once per peer, reason and minute (the rest in
    summaries). Its connections are DeadlineChannels with ``deadline``."""

    log = Logger()
    noisy = False

    def __init__(self, site: Site, limits: ConnectionLimits, deadline: float,
                 clock: IReactorTime, room: Callable[[], bool] | None = None,
                 metrics: Any = None) -> None:
        self.site = site
        self.connections = Connections(limits)
        self.deadline = deadline
        self.clock = clock
        self.room = room
        self.metrics = metrics
        self.refusals = RefusalLines(clock, self._summarise_refusals)
        self.closings = RefusalLines(clock, self._summarise_closings)
        # (The Site builds each channel, and sets what it needs on it.)
        site.protocol = self._new_channel

    def _new_channel(self) -> DeadlineChannel:
        return DeadlineChannel(self.deadline, self.clock, self._too_slow)

    def startFactory(self) -> None:
        self.site.doStart()

    def stopFactory(self) -> None:
        self.refusals.flush()
        self.closings.flush()
        self.site.doStop()

    def buildProtocol(self, addr: Any) -> Protocol:
        channel = self.admit(getattr(addr, "host", "?"))
        return _Refused() if channel is None else channel

    def admit(self, host: str, first: bytes | None = None) -> DeadlineChannel | None:
        """The channel for a new connection from ``host``, or None if it is
        refused (counted and logged; the caller closes it)."""
        place = self.connections.admit(host)
        if isinstance(place, str):
            self._refused(host, place)
            return None
        if self.room is not None and not self.room():
            place.release()
            self._refused(host, TOO_FEW_DESCRIPTORS)
            return None
        channel = self.site.buildProtocol(None)
        channel.callLater = self.clock.callLater  # (the Site's reactor otherwise)
        channel.place = place
        return channel

    def _refused(self, host: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.web_connection_refused(reason)
        # The overall limits are nobody's in particular: one line for all.
        logged = self.refusals.note(refused_peer(host, reason), reason)
        if logged is not None:
            self._summarise_refusals(logged[0], reason, logged[1])

    def _too_slow(self, channel: DeadlineChannel) -> None:
        if self.metrics is not None:
            self.metrics.web_connection_closed(TOO_SLOW)
        peer = channel.transport.getPeer()
        logged = self.closings.note(getattr(peer, "host", "?"), TOO_SLOW)
        if logged is not None:
            self._summarise_closings(logged[0], TOO_SLOW, logged[1])

    def _summarise_refusals(self, peer: str, reason: str, count: int) -> None:
        self.log.warn("Refused HTTP connections from {peer}: {reason} "
                      "({count} since the last line)",
                      peer=shown_peer(peer),
                      reason=reason, count=count)

    def _summarise_closings(self, peer: str, reason: str, count: int) -> None:
        self.log.info("Closed HTTP connections from {peer}: {reason}: not complete within "
                      "{seconds:g} s ({count} since the last line)",
                      peer=shown_peer(peer),
                      reason=reason, seconds=self.deadline, count=count)


class _Refused(Protocol):
    """A refused connection (behind TLS, where the listener cannot refuse
    it before it is built): closed as soon as it is made."""

    def connectionMade(self) -> None:
        self.transport.abortConnection()
