"""All recordings' RTP sockets, read together at a short fixed tick.

A recorder is not a phone: it may take its packets a few milliseconds late.
So instead of one reactor wake-up per packet, every ``tick`` seconds one
reactor call asks a level-triggered epoll which sockets have data, reads one
datagram from each (into one preallocated buffer), and asks again until
none has. A packet that only continues its recording's stream is appended
by that recording's fast lane (recsvc.lane); any other goes to the
recording's RtpReceiver as bytes, for the full path. Packets wait in the
kernel meanwhile: each socket gets a roomy receive buffer.

This is the thin edge that does socket I/O; `RtpDrain` is the port pool
the service opens recordings' ports from.
"""

from __future__ import annotations

import errno
import random
import select
import socket
from typing import Any, Callable

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from recsvc.ports import NoFreePort
from recsvc.protocol.rtp import RtpReceiver

# Reading rounds per tick at most (one datagram per ready socket a round):
# a flood on some ports must not keep the reactor from everything else.
MAX_ROUNDS = 64
_BUFFER_SIZE = 65536  # the largest UDP datagram
# Datagrams read from one socket at a Stop, at most.
MAX_WAITING = 8192


@attrs.define(eq=False)
class DrainPort:
    """One recording's UDP socket in the drain."""

    drain_set: RtpDrain
    sock: socket.socket
    receiver: RtpReceiver
    open: bool = True
    _host: IPv4Address | IPv6Address | None = None

    def getHost(self) -> IPv4Address | IPv6Address:
        if self._host is None:
            host, port = self.sock.getsockname()[:2]
            address = IPv6Address if self.sock.family == socket.AF_INET6 else IPv4Address
            self._host = address("UDP", host, port)
        return self._host

    def drain(self) -> None:
        """Deliver the datagrams already waiting in the socket, now."""
        if self.open:
            self.drain_set.read_all(self)

    def stopListening(self) -> None:
        if self.open:
            self.open = False
            self.drain_set.forget(self)


@attrs.define(eq=False)
class RtpDrain:
    """Opens each recording's port from a range (starting at a random point,
    so a port cannot be guessed from the last) and reads them all, every
    ``tick`` seconds while any is open."""

    log = Logger()

    reactor: IReactorTime
    interface: str
    low: int
    high: int
    tick: float = 0.005
    receive_buffer: int = 512 * 1024  # bytes, per socket (the kernel may cap it)
    # Arrival times of the packets read in a tick: the clock the recordings
    # read theirs from (monotonic in production); None: the reactor's, as
    # for a service built without one.
    now: Callable[[], float] | None = None
    random: random.Random = attrs.field(factory=random.SystemRandom)
    _epoll: Any = attrs.field(init=False, factory=select.epoll)
    _ports: dict[int, DrainPort] = attrs.field(init=False, factory=dict)
    # fd -> what reading a datagram needs, bound once: (receive, the fast
    # lane's offer, the receiver's datagramReceived).
    _reading: dict[int, tuple[Any, Any, Any]] = attrs.field(init=False, factory=dict)
    _loop: LoopingCall | None = attrs.field(init=False, default=None)
    _buffer: bytearray = attrs.field(init=False, factory=lambda: bytearray(_BUFFER_SIZE))
    _view: memoryview = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._view = memoryview(self._buffer)
        if self.now is None:
            self.now = self.reactor.seconds

    def listen(self, receiver: RtpReceiver) -> DrainPort:
        """Bind a free port of the range for ``receiver``. Raises `NoFreePort`."""
        count = self.high - self.low + 1
        first = self.random.randrange(count)
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        for step in range(count):
            number = self.low + (first + step) % count
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((self.interface, number))
            except OSError as error:
                sock.close()
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
                self._epoll.register(sock.fileno(), select.EPOLLIN)
            except BaseException:
                sock.close()
                raise
            port = DrainPort(self, sock, receiver)
            self._ports[sock.fileno()] = port
            self._reading[sock.fileno()] = (
                sock.recvfrom_into, receiver.lane.offer, receiver.datagramReceived
            )
            if self._loop is None:
                self._start_reading()
            return port
        raise NoFreePort(f"all {count} ports of {self.low}-{self.high} are in use")

    def read_ready(self) -> None:
        """One tick: read every socket that has data, one datagram per
        socket a round, until none has (or MAX_ROUNDS)."""
        now = self.now()
        poll, reading = self._epoll.poll, self._reading.get
        buffer, view = self._buffer, self._view
        for _ in range(MAX_ROUNDS):
            ready = poll(0)
            if not ready:
                return
            for fd, _ in ready:
                entry = reading(fd)
                if entry is None:
                    continue
                receive, offer, deliver = entry
                try:
                    size, source = receive(buffer)
                except OSError:
                    continue  # nothing after all, or an ICMP error: no datagram
                if not offer(view, size, source, now):
                    deliver(view[:size].tobytes(), source)

    def read_all(self, port: DrainPort) -> None:
        """What is waiting in one port's socket, now (at most what a full
        receive buffer holds: a flood must not keep the reactor here)."""
        now, buffer, view = self.now(), self._buffer, self._view
        receive, offer, deliver = self._reading[port.sock.fileno()]
        for _ in range(MAX_WAITING):
            if not port.open:
                return
            try:
                size, source = receive(buffer)
            except OSError:
                return
            if not offer(view, size, source, now):
                deliver(view[:size].tobytes(), source)

    def forget(self, port: DrainPort) -> None:
        """Close a port; the tick stops with the last one."""
        fd = port.sock.fileno()
        if self._ports.get(fd) is port:
            del self._ports[fd]
            del self._reading[fd]
            self._epoll.unregister(fd)
        port.sock.close()
        if not self._ports and self._loop is not None:
            loop, self._loop = self._loop, None
            if loop.running:
                loop.stop()

    def _loop_failed(self, failure: Any) -> None:
        self.log.failure("Reading RTP failed; reading goes on", failure)
        self._loop = None
        if self._ports:
            self._start_reading()

    def _start_reading(self) -> None:
        self._loop = LoopingCall(self.read_ready)
        self._loop.clock = self.reactor
        self._loop.start(self.tick, now=False).addErrback(self._loop_failed)
