"""All recordings' RTP sockets, read together at a short fixed tick.

A recorder is not a phone: it may take its packets a few milliseconds late.
So instead of one reactor wake-up per packet, every ``tick`` seconds one
reactor call asks a level-triggered epoll which sockets have data, reads one
datagram from each (into one preallocated buffer), and asks again until
none has. A packet that only continues its recording's stream is appended
by that recording's fast lane (recsvc.media.lane); any other goes to the
recording's RtpReceiver as bytes, for the full path. Packets wait in the
kernel meanwhile: each socket gets a roomy receive buffer.

Once a recording's lane takes its phone's packets, the socket is connected
to the phone: the kernel then drops other senders' datagrams (which the
source check would reject anyway) and a read needs no source address. When
the phone falls silent for CONNECTED_SILENCE the socket is disconnected, so
that another source can take over as the source check allows.

This is the thin edge that does socket I/O; `RtpSockets` is the port pool
the service opens recordings' ports from.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import select
import socket
from typing import Any, Callable

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from recsvc.logs import Logger
from recsvc.media.ports import NoFreePort
from recsvc.media.receiver import RtpReceiver
from recsvc.media.source import normalize_ip

# Reading rounds per tick at most (one datagram per ready socket a round):
# a flood on some ports must not keep the reactor from everything else.
MAX_ROUNDS = 64
_BUFFER_SIZE = 65536  # the largest UDP datagram
# Datagrams read from one socket at a Stop, at most.
MAX_WAITING = 8192
# A connected socket whose phone sent nothing the lane took for this long
# (seconds) is disconnected; how often the ports are looked at for that,
# and for connecting.
CONNECTED_SILENCE = 0.2
_WILDCARDS = ("0.0.0.0", "::")


@attrs.define(eq=False)
class SocketPort:
    """One recording's UDP socket, read with the others by RtpSockets."""

    sockets: RtpSockets
    sock: socket.socket
    receiver: RtpReceiver
    # Where the phone sends this port's RTP, if known: a socket bound to a
    # wildcard address is connected only if its route to the phone leaves
    # from there (connecting binds it to that route's source address).
    local_host: str | None = None
    open: bool = True
    # The phone's address while the socket is connected to it.
    peer: Any = None
    # False once connecting (or disconnecting) failed: not tried again.
    connectable: bool = True
    disconnectable: bool = True
    _host: IPv4Address | IPv6Address | None = None

    def getHost(self) -> IPv4Address | IPv6Address:
        if self._host is None:
            host, port = self.sock.getsockname()[:2]
            address = IPv6Address if self.sock.family == socket.AF_INET6 else IPv4Address
            self._host = address("UDP", host, port)
        return self._host

    def read_waiting(self) -> None:
        """Deliver the datagrams already waiting in the socket, now."""
        if self.open:
            self.sockets.read_all(self)

    def stopListening(self) -> None:
        if self.open:
            self.open = False
            self.sockets.forget(self)


@attrs.define(eq=False)
class RtpSockets:
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
    _ports: dict[int, SocketPort] = attrs.field(init=False, factory=dict)
    # fd -> what reading a datagram needs, bound once: (receive, the fast
    # lane's offer, the receiver's datagramReceived, the connected peer).
    # Unconnected, receive is recvfrom_into and the peer None; connected,
    # it is recv_into and the datagram's source is the peer.
    _reading: dict[int, tuple[Any, Any, Any, Any]] = attrs.field(init=False, factory=dict)
    _next_sweep: float = attrs.field(init=False, default=0.0)
    # The ports still to be looked at in this round (see `_look_at_some`),
    # and how many a tick.
    _to_look_at: list[SocketPort] = attrs.field(init=False, factory=list)
    _share: int = attrs.field(init=False, default=1)
    _loop: LoopingCall | None = attrs.field(init=False, default=None)
    _buffer: bytearray = attrs.field(init=False, factory=lambda: bytearray(_BUFFER_SIZE))
    _view: memoryview = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._view = memoryview(self._buffer)
        if self.now is None:
            self.now = self.reactor.seconds

    def listen(self, receiver: RtpReceiver, local_host: str | None = None) -> SocketPort:
        """Bind a free port of the range for ``receiver``; ``local_host``:
        where the phone will send to, if known. Raises `NoFreePort`."""
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
            port = SocketPort(self, sock, receiver, local_host)
            self._ports[sock.fileno()] = port
            self._reading[sock.fileno()] = (
                sock.recvfrom_into, receiver.lane.offer, receiver.datagramReceived, None
            )
            if self._loop is None:
                self._start_reading()
            return port
        raise NoFreePort(f"all {count} ports of {self.low}-{self.high} are in use")

    def read_ready(self) -> None:
        """One tick: read every socket that has data, one datagram per
        socket a round, until none has (or MAX_ROUNDS)."""
        now = self.now()
        poll, reading = self._epoll.poll, self._reading
        buffer, view = self._buffer, self._view
        for _ in range(MAX_ROUNDS):
            ready = poll(0)
            if not ready:
                break
            for fd, _ in ready:
                try:
                    receive, offer, deliver, source = reading[fd]
                    if source is None:
                        size, source = receive(buffer)
                    else:
                        size = receive(buffer)
                except KeyError:
                    continue  # closed by a datagram read before it, this round
                except OSError:
                    continue  # nothing after all, or an ICMP error: no datagram
                if not offer(view, size, source, now):
                    deliver(view[:size].tobytes(), source)
        if self._to_look_at or now >= self._next_sweep:
            self._look_at_some(now)

    def _look_at_some(self, now: float) -> None:
        """Every port is looked at once every CONNECTED_SILENCE, a share of
        them each tick: connecting a thousand sockets at once would hold up
        the reactor for many milliseconds."""
        if not self._to_look_at:
            self._next_sweep = now + CONNECTED_SILENCE
            self._to_look_at = list(self._ports.values())
            rounds = max(1, int(CONNECTED_SILENCE / self.tick) - 1)
            self._share = -(-len(self._to_look_at) // rounds)
        share = self._to_look_at[-self._share:]
        del self._to_look_at[-self._share:]
        self.connect_ports(now, share)

    def connect_ports(self, now: float, ports: list[SocketPort] | None = None) -> None:
        """Connect the sockets (of ``ports``, else all) whose lanes take
        their phones' packets; disconnect those whose phones fell silent."""
        for port in list(self._ports.values()) if ports is None else ports:
            if not port.open:
                continue
            lane = port.receiver.lane
            last = lane.last_arrival
            heard = last is not None and now - last <= CONNECTED_SILENCE
            if port.peer is None:
                if heard and port.connectable and lane.peer is not None:
                    self._connect(port, lane.peer)
            elif not heard and port.disconnectable:
                self._disconnect(port)

    def _connect(self, port: SocketPort, peer: Any) -> None:
        sock = port.sock
        if self.interface in _WILDCARDS and not self._routed_from(port, peer):
            port.connectable = False
            return
        try:
            sock.connect(peer)
        except OSError as error:
            port.connectable = False
            self.log.warn("Connecting RTP port {port} to {peer} failed: {reason}",
                          port=port.getHost().port, peer=peer, reason=str(error))
            return
        # What came before the connect may be from anyone: read with sources,
        # all of it (else the rest would pass as the phone's: try again later).
        emptied = self.read_all(port)
        if not port.open:
            return
        if not emptied:
            self._disconnect(port)
            return
        self._read_from(port, peer)

    def _routed_from(self, port: SocketPort, peer: Any) -> bool:
        """Whether the route to ``peer`` leaves from where the phone sends
        (a wildcard-bound socket takes that route's source address)."""
        if port.local_host is None:
            return False
        try:
            probe = socket.socket(port.sock.family, socket.SOCK_DGRAM)
        except OSError:
            return False  # out of descriptors, say: not now
        try:
            probe.connect(peer)
            source = probe.getsockname()[0]
        except OSError:
            return False
        finally:
            probe.close()
        return normalize_ip(source) == normalize_ip(port.local_host)

    def _disconnect(self, port: SocketPort) -> None:
        try:
            disconnect(port.sock)
        except OSError as error:
            # Still connected: it stays on the connected read, for good.
            port.connectable = port.disconnectable = False
            self.log.warn("Disconnecting RTP port {port} failed: {reason}",
                          port=port.getHost().port, reason=str(error))
            return
        self._read_from(port, None)

    def _read_from(self, port: SocketPort, peer: Any) -> None:
        """Read ``port`` as connected to ``peer`` (recv_into, the source
        known) or, with None, as open to anyone (recvfrom_into)."""
        sock = port.sock
        _, offer, deliver, _ = self._reading[sock.fileno()]
        receive = sock.recvfrom_into if peer is None else sock.recv_into
        self._reading[sock.fileno()] = (receive, offer, deliver, peer)
        port.peer = peer

    def read_all(self, port: SocketPort) -> bool:
        """What is waiting in one port's socket, now (at most what a full
        receive buffer holds: a flood must not keep the reactor here).
        True if the socket was emptied (or closed meanwhile)."""
        now, buffer, view = self.now(), self._buffer, self._view
        receive, offer, deliver, peer = self._reading[port.sock.fileno()]
        for _ in range(MAX_WAITING):
            if not port.open:
                return True
            try:
                if peer is None:
                    size, source = receive(buffer)
                else:
                    size, source = receive(buffer), peer
            except OSError:
                return True
            if not offer(view, size, source, now):
                deliver(view[:size].tobytes(), source)
        return False

    def forget(self, port: SocketPort) -> None:
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


_libc = ctypes.CDLL(None, use_errno=True)


def disconnect(sock: socket.socket) -> None:
    """Dissolve a UDP socket's association with its peer (connect to
    AF_UNSPEC, which Python's connect cannot express): it receives from
    anyone again, on the port and address it was bound to."""
    unspecified = (ctypes.c_char * 16)()  # sa_family 0 (AF_UNSPEC), the rest zero
    if _libc.connect(sock.fileno(), unspecified, ctypes.sizeof(unspecified)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
