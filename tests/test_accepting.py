"""The control port's screening accept loop (recsvc.protocol.accepting),
over real loopback sockets: phones behind one address record more calls at
once than control.max_connections_per_ip, and a connection that is no
phone is refused before anything is built for it."""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from recsvc.admission import NOT_CONTROL, TOO_MANY_FROM_IP
from recsvc.phone import rtp_packets, send_rtp
from recsvc.protocol.accepting import screen_accepts
from recsvc.protocol.commands import StartResponse, StopResponse, decode_message, parse_command
from recsvc.protocol.framing import MessageFramer
from recsvc.simulator import finished_recordings
from recsvc.tap import accept_with_data
from tests.test_endtoend import LoopbackServiceMixin, audio
from tests.test_metrics import samples

PER_ADDRESS = 2
PHONES = 12


def start(number: int) -> bytes:
    return (b"cmd=RecordStartRequest&id=nat-%d&device=00a8590000%02x&codec=PCMA\n"
            % (number, number))


def read_command(sock: socket.socket, framer: MessageFramer) -> object:
    """The next command the server sends on ``sock`` (blocking)."""
    while True:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("closed by the server")
        messages = framer.feed(data)
        if messages:
            return parse_command(decode_message(messages[0]))


def is_refused(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` without a word (a reset)."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


class BehindOneAddressEndToEndTests(LoopbackServiceMixin, TestCase):
    """A site whose phones all reach the server from 127.0.0.1."""

    def more_config(self) -> dict:
        return {"control": {"listen": "tcp:0:interface=127.0.0.1",
                            "max_connections_per_ip": PER_ADDRESS}}

    @inlineCallbacks
    def test_more_recordings_than_the_per_address_limit(self):
        """
        PHONES phones behind one address (more than six times
        control.max_connections_per_ip) connect and send their Starts all
        at once: every one records, and its audio is kept byte for byte.
        Idle connections from that address are still held to the limit.
        """
        sound = audio(0.2, seed=7)

        def calls() -> tuple[list[str], list[bool]]:
            socks = [socket.create_connection(("127.0.0.1", self.port), timeout=10)
                     for _ in range(PHONES)]
            try:
                for number, sock in enumerate(socks):
                    sock.sendall(start(number))
                framers = [MessageFramer() for _ in socks]
                started = [read_command(sock, framer) for sock, framer in zip(socks, framers)]
                assert all(isinstance(s, StartResponse) for s in started), started
                idle = [socket.create_connection(("127.0.0.1", self.port), timeout=10)
                        for _ in range(PER_ADDRESS + 1)]
                for sock in idle:
                    sock.sendall(b"\n")  # a blank message: taken, and idle
                    sock.settimeout(0.5)
                idle_refused = []
                for sock in idle:
                    try:
                        idle_refused.append(is_refused(sock))
                    except socket.timeout:
                        idle_refused.append(False)  # open, as it should be
                    sock.close()
                results = [s.result for s in started]
                for number, (sock, response) in enumerate(zip(socks, started)):
                    if response.result == "success":
                        send_rtp(rtp_packets(sound), response.server, response.port)
                    sock.sendall(b"cmd=RecordStopRequest&id=nat-%d\n" % number)
                    stopped = read_command(sock, framers[number])
                    assert isinstance(stopped, StopResponse), stopped
                return results, idle_refused
            finally:
                for sock in socks:
                    sock.close()

        results, idle_refused = yield deferToThread(calls)
        self.assertEqual(results, ["success"] * PHONES)
        self.assertEqual(idle_refused, [False] * PER_ADDRESS + [True])
        found = finished_recordings(self.root)
        self.assertEqual(sorted(found), sorted(f"nat-{number}" for number in range(PHONES)))
        self.assertEqual(samples(self.recorder.metrics)[
            ("recsvc_connections_refused_total", (("reason", TOO_MANY_FROM_IP),))], 1)

    @inlineCallbacks
    def test_not_a_phone_refused_before_anything_is_built(self):
        """
        A connection whose first bytes are no control message (here an
        HTTP request) is reset by the listener itself: the recorder never
        sees a connection, and the refusal is counted by its reason.
        """
        def request() -> bool:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                            source_address=("127.0.0.2", 0))
            with sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                return is_refused(sock)

        self.assertTrue((yield deferToThread(request)))
        yield self.wait_for(lambda: samples(self.recorder.metrics).get(
            ("recsvc_connections_refused_total", (("reason", NOT_CONTROL),))) == 1)
        self.assertEqual(self.recorder.connection_count, 0)


class _Hello(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(b"hello")


class ScreenedPortTests(TestCase):
    """screen_accepts on a bare Twisted TCP port."""

    @inlineCallbacks
    def test_screens_what_it_is_given_and_outlives_a_bug(self):
        """
        ``admit`` sees each connection's host and first bytes (without
        taking them): None resets the connection, a protocol serves it,
        and an exception (a bug) is logged and costs that connection only.
        """
        seen: list[tuple[str, bytes | None]] = []

        def admit(host: str, first: bytes | None) -> Protocol | None:
            seen.append((host, first))
            if first == b"bug":
                raise RuntimeError("a bug")
            return _Hello() if first == b"cmd=Hello" else None

        port = reactor.listenTCP(0, Factory.forProtocol(_Hello), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        accept_with_data(port, 5)  # (as the service's listeners do: the first bytes are there)
        screen_accepts(port, admit)

        def connect(first: bytes) -> bytes | None:
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5) as sock:
                sock.sendall(first)
                try:
                    return sock.recv(100)
                except ConnectionResetError:
                    return None

        answers = []
        for first in (b"GET /", b"bug", b"cmd=Hello"):
            answers.append((yield deferToThread(connect, first)))
        self.assertEqual(answers, [None, None, b"hello"])
        self.assertEqual(seen, [("127.0.0.1", b"GET /"), ("127.0.0.1", b"bug"),
                                ("127.0.0.1", b"cmd=Hello")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
