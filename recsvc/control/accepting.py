"""The control port's accept loop: each turn it takes what waits in the
accept queue and looks at each connection's first bytes before Twisted
builds anything for it, so that a flood of connections is refused for the
cost of an accept and a close, and never holds up a phone's connection in
the queue behind it."""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from recsvc.logs import Logger

# Enough of a connection's first bytes to tell a Start ("cmd=RecordStartRequest").
FIRST_BYTES = 64
# Connections taken from the queue a turn, at most: a turn of refusals
# stays short (a millisecond or two), so that the phones' messages and the
# recordings' thread jobs are not held up behind it (taking 256 a turn under
# a flood of 20,000 connections a second, a phone's Stop waited for several
# turns of 6 ms).
ACCEPTS_PER_TURN = 64

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with a reset

log = Logger()


def screen_accepts(port: Any, admit: Callable[[str, bytes | None], Protocol | None],
                   per_turn: int = ACCEPTS_PER_TURN) -> None:
    """Replaces the accept loop of a Twisted TCP port (its ``doRead``).

    ``admit(host, first)`` gets each new connection's address and the
    bytes waiting on it (None: none yet) and returns its protocol, or None
    to have it closed at once, with a reset: no transport, no protocol, no
    turn of the reactor. An accept that fails for its one connection is
    passed over; running out of descriptors or memory is left to Twisted's
    own loop, which knows how to free the queue then."""
    listening = port.socket
    twisted_read = port.doRead

    def screened_read() -> Any:
        for _ in range(per_turn):
            try:
                sock, address = listening.accept()
            except BlockingIOError:
                return None
            except (InterruptedError, ConnectionAbortedError, PermissionError):
                # That one connection (aborted while it waited, refused by a
                # firewall): Twisted's loop would take the next ones unscreened.
                continue
            except OSError:
                return twisted_read()
            try:
                protocol, address = _screen(sock, address, admit)
            except Exception:
                # (A bug: the listener must go on whatever one connection does.)
                log.failure("Screening a new control connection failed")
                sock.close()
                continue
            if protocol is None:
                continue
            session = port.sessionno
            port.sessionno = session + 1
            try:
                transport = port.transport(sock, protocol, address, port, session, port.reactor)
            except Exception:
                log.failure("Starting a new control connection failed")
                sock.close()
                protocol.connectionLost(Failure())  # (it gives back its place)
                continue
            try:
                protocol.makeConnection(transport)
            except Exception:
                log.failure("Starting a new control connection failed")
                transport.abortConnection()  # (its connectionLost follows)
        return None

    port.doRead = screened_read


def _screen(sock: socket.socket, address: tuple[Any, ...],
            admit: Callable[[str, bytes | None], Protocol | None],
            ) -> tuple[Protocol | None, tuple[Any, ...]]:
    """The protocol for an accepted socket, or None (it is then closed);
    and its address as Twisted's transport takes it."""
    if len(address) == 4:  # IPv6: the scope id in the host, as Twisted has it
        host, _ = socket.getnameinfo(address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        address = (host, *address[1:])
    try:
        first: bytes | None = sock.recv(FIRST_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        first = None  # nothing sent yet (TCP_DEFER_ACCEPT gave up waiting)
    except OSError:
        sock.close()  # reset before it was taken: nobody to serve
        return None, address
    if first == b"":
        sock.close()  # closed before it was taken
        return None, address
    protocol = admit(address[0], first)
    if protocol is None:
        if first is None:
            # (With bytes left unread, closing resets the connection anyway.)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        sock.close()
    return protocol, address
