"""Tests for recsvc.web.connections: the web port's request deadline and
connection limits, on a task.Clock and StringTransports; and end to end,
over loopback, a slow request closed at its deadline and connections
beyond the limits refused while a phone records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from recsvc.admission import TOO_FEW_DESCRIPTORS, TOO_MANY, TOO_MANY_FROM_IP, ConnectionLimits
from recsvc.metrics import Metrics
from recsvc.phonesim.phone import SimulatedPhone, rtp_packets, send_rtp
from recsvc.web.connections import TOO_SLOW, WebConnections
from tests.support.builders import audio
from tests.support.loopback import LoopbackServiceMixin, is_refused

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def site() -> Site:
    root = Resource()
    root.putChild(b"healthz", Data(b'{"status": "ok"}', "application/json"))
    served = Site(root)
    served.timeOut = 300  # (as recsvc's own Site: the quiet between requests)
    return served


class Fixture:
    def __init__(self, limits: ConnectionLimits = ConnectionLimits(8, 4),
                 room: object = None) -> None:
        self.clock = Clock()
        self.metrics = Metrics()
        self.factory = WebConnections(site(), limits, 10.0, self.clock, room, self.metrics)

    def connect(self, host: str = "10.0.0.1"):
        channel = self.factory.admit(host)
        if channel is None:
            return None, None
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        channel.makeConnection(transport)
        return channel, transport

    def count(self, name: str, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"reason": reason})
        return value or 0.0


class DeadlineTests(SynchronousTestCase):
    def test_trickling_request_closed_at_deadline(self) -> None:
        """A request whose bytes come one every 2 s is answered 408 and its
        connection closed 10 s after the connection opened: its bytes do
        not put the deadline off (they do put off the idle timeout)."""
        web = Fixture()
        channel, transport = web.connect()
        for byte in REQUEST[:5]:
            self.assertFalse(transport.disconnecting)
            channel.dataReceived(bytes([byte]))
            web.clock.advance(1.99)
        self.assertFalse(transport.disconnecting)
        web.clock.advance(0.06)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n"),
                        transport.value())
        self.assertIn(b"http.request_timeout", transport.value())
        self.assertEqual(web.count("recsvc_http_connections_closed_total", TOO_SLOW), 1)

    def test_silent_connection_closed_at_deadline(self) -> None:
        """A connection that sends nothing is closed at the deadline (the
        idle timeout, 300 s, is far longer)."""
        web = Fixture()
        _, transport = web.connect()
        web.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        web.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_client_not_taking_the_answer_is_reset(self) -> None:
        """A closed slow connection whose client does not take the 408 is
        reset 15 s later."""
        web = Fixture()
        _, transport = web.connect()
        web.clock.advance(10)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        web.clock.advance(15)
        self.assertTrue(transport.disconnected)

    def test_complete_request_answered_and_kept(self) -> None:
        """A request complete within the deadline is answered, and the
        keep-alive connection stays open past the deadline."""
        web = Fixture()
        channel, transport = web.connect()
        web.clock.advance(9)
        channel.dataReceived(REQUEST)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        web.clock.advance(100)
        self.assertFalse(transport.disconnecting)
        self.assertNotIn(b"408", transport.value())

    def test_next_request_deadline_from_its_first_byte(self) -> None:
        """After a request, the quiet before the next is the idle
        timeout's; the next request has 10 s from its first byte."""
        web = Fixture()
        channel, transport = web.connect()
        channel.dataReceived(REQUEST)
        web.clock.advance(200)
        self.assertFalse(transport.disconnecting)
        transport.clear()
        channel.dataReceived(REQUEST[:10])
        web.clock.advance(9)
        channel.dataReceived(REQUEST[10:20])
        self.assertFalse(transport.disconnecting)
        web.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408"))

    def test_pipelined_requests(self) -> None:
        """Two requests in one write are both answered; the second's bytes,
        kept while the first was answered, do not leave a deadline behind."""
        web = Fixture()
        channel, transport = web.connect()
        channel.dataReceived(REQUEST + REQUEST)
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 2)
        web.clock.advance(60)
        self.assertFalse(transport.disconnecting)

    def test_closings_logged_once_a_minute(self) -> None:
        """Slow requests closed are logged once a minute per address, the
        rest summed up when the minute is over."""
        web = Fixture()
        with capturedLogs() as events:
            for _ in range(3):
                web.connect()
                web.clock.advance(10)
            web.clock.advance(60)
        counts = [event["count"] for event in events if event.get("reason") == TOO_SLOW]
        self.assertEqual(counts, [1, 2])
        self.assertEqual({event["peer"] for event in events if "reason" in event},
                         {"10.0.0.1"})


class LimitTests(SynchronousTestCase):
    def test_per_address_and_overall(self) -> None:
        """Beyond http.max_connections_per_ip from one address, and beyond
        http.max_connections in all, connections are refused and counted;
        a closed connection gives back its place."""
        web = Fixture(ConnectionLimits(3, 2))
        first, _ = web.connect("10.0.0.1")
        self.assertIsNotNone(web.connect("10.0.0.1")[0])
        self.assertIsNone(web.connect("10.0.0.1")[0])
        self.assertIsNotNone(web.connect("10.0.0.2")[0])
        self.assertIsNone(web.connect("10.0.0.3")[0])
        self.assertEqual(web.count("recsvc_http_connections_refused_total",
                                   TOO_MANY_FROM_IP), 1)
        self.assertEqual(web.count("recsvc_http_connections_refused_total", TOO_MANY), 1)
        first.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(web.connect("10.0.0.1")[0])
        self.assertEqual(web.factory.connections.total, 3)

    def test_refusals_logged_once_a_minute(self) -> None:
        """Refusals are logged once a minute per address and reason, with
        how many the line stands for."""
        web = Fixture(ConnectionLimits(10, 1))
        web.connect("10.0.0.1")
        with capturedLogs() as events:
            for _ in range(5):
                web.connect("10.0.0.1")
            web.clock.advance(60)
        said = [(event["peer"], event["count"]) for event in events
                if event.get("reason") == TOO_MANY_FROM_IP]
        self.assertEqual(said, [("10.0.0.1", 1), ("10.0.0.1", 4)])

    def test_descriptors_held_back(self) -> None:
        """While the room for the control port's descriptors says no, a
        connection is refused (its place given back), counted and logged."""
        room = [False]
        web = Fixture(room=lambda: room[0])
        with capturedLogs() as events:
            self.assertIsNone(web.connect()[0])
        self.assertEqual(web.factory.connections.total, 0)
        self.assertEqual(web.count("recsvc_http_connections_refused_total",
                                   TOO_FEW_DESCRIPTORS), 1)
        self.assertEqual([event["peer"] for event in events
                          if event.get("reason") == TOO_FEW_DESCRIPTORS], ["many addresses"])
        room[0] = True
        self.assertIsNotNone(web.connect()[0])

    def test_refused_behind_tls_closed_when_made(self) -> None:
        """A connection refused through buildProtocol (behind TLS, where the
        listener cannot screen it) is aborted as soon as it is made."""
        web = Fixture(ConnectionLimits(1, 1))
        web.connect()
        protocol = web.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.disconnecting)


def trickle(port: int, seconds: float) -> tuple[bytes, bool]:
    """A request sent a byte every 0.2 s for up to ``seconds`` (blocking):
    what the server answered, and whether it closed the connection first."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sock.settimeout(0.2)
        answer = b""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                sock.sendall(b"x")
                data = sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:  # (reset, or a broken pipe)
                return answer, True
            if not data:
                return answer, True
            answer += data
        return answer, False


def half_sent(port: int, source: str) -> socket.socket:
    """A connection from ``source`` (an address of 127.0.0.0/8) that has
    begun a request and goes no further."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5,
                                    source_address=(source, 0))
    sock.sendall(b"GET /api/active HTTP/1.1\r\n")
    return sock


class WebPortDeadlineEndToEndTests(LoopbackServiceMixin, TestCase):
    """The service on loopback with http.request_timeout at 1 s."""

    def more_config(self) -> dict:
        return {"http": {"listen": "tcp:0:interface=127.0.0.1", "request_timeout": 1}}

    @inlineCallbacks
    def test_slow_request_closed_at_deadline(self):
        """A request whose bytes trickle in is answered 408 and closed
        (within the 8 s it would go on for), and counted."""
        http = yield self.tree.getServiceNamed("http").whenListening()
        answer, closed = yield deferToThread(trickle, http.getHost().port, 8)
        self.assertTrue(closed, "the slow request's connection was kept open")
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer)
        metrics = yield deferToThread(
            lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{http.getHost().port}/metrics", timeout=5).read())
        self.assertIn(b'recsvc_http_connections_closed_total{reason="request too slow"} 1.0',
                      metrics)


class WebPortLimitsEndToEndTests(LoopbackServiceMixin, TestCase):
    """The service on loopback with http.max_connections 4, 2 per address."""

    def more_config(self) -> dict:
        return {"http": {"listen": "tcp:0:interface=127.0.0.1", "max_connections": 4,
                         "max_connections_per_ip": 2, "request_timeout": 60}}

    @inlineCallbacks
    def test_refused_beyond_limits_while_a_phone_records(self):
        """Beyond two half-sent requests from one address, and four in all,
        HTTP connections are reset at once and counted; a phone on the
        control port still starts, records and stops its call."""
        http = yield self.tree.getServiceNamed("http").whenListening()
        port = http.getHost().port
        web = self.tree.getServiceNamed("http")._factory
        held: list[socket.socket] = []

        @inlineCallbacks
        def connect(source: str, taken: bool):
            sock = yield deferToThread(half_sent, port, source)
            self.addCleanup(sock.close)
            if taken:
                held.append(sock)
                yield self.wait_for(lambda: web.connections.total == len(held))
            else:
                refused = yield deferToThread(is_refused, sock)
                self.assertTrue(refused, f"a connection from {source} was taken")

        for source, taken in [("127.0.0.1", True), ("127.0.0.1", True), ("127.0.0.2", True),
                              ("127.0.0.1", False), ("127.0.0.3", True), ("127.0.0.4", False)]:
            yield connect(source, taken)
        self.assertEqual(web.connections.total, 4)

        sound = audio(1, seed=16)
        started, stopped = yield deferToThread(self.call, "bare", "web-full", sound)
        self.assertEqual((started.result, stopped.result), ("success", "success"))

        for sock in held:
            sock.close()
        yield self.wait_for(lambda: web.connections.total == 0)
        metrics = yield deferToThread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read())
        for reason in (b"too many connections from this address", b"too many connections"):
            self.assertIn(b'recsvc_http_connections_refused_total{reason="%s"} 1.0' % reason,
                          metrics)


# The service in a process of its own whose descriptor limit is 400 (the
# soft and the hard one): it prints its ports, then runs until killed.
SERVE_WITH_LIMIT = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), int(sys.argv[2])))
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from recsvc import makeService
tree = makeService(json.loads(sys.argv[1]))
tree.startService()
listening = [tree.getServiceNamed(name).whenListening() for name in ("control", "http")]
gatherResults(listening).addCallback(
    lambda ports: print(json.dumps([p.getHost().port for p in ports]), flush=True))
reactor.run()
"""


class DescriptorReserveEndToEndTests(SynchronousTestCase):
    """The service in a process of its own with a low descriptor limit: the
    issue's case (400, and 400 half-sent HTTP requests; HTTP's own limits
    set far above that), and a limit below what every RTP port needs."""

    timeout = 60

    def serve(self, limit: int = 400, port_range: tuple[int, int] = (43000, 43049),
              ) -> tuple[int, int]:
        root = os.path.abspath(self.mktemp())
        config = {
            "control": {"listen": "tcp:0:interface=127.0.0.1"},
            "http": {"listen": "tcp:0:interface=127.0.0.1", "max_connections": 1000,
                     "max_connections_per_ip": 1000, "request_timeout": 300},
            "rtp": {"interface": "127.0.0.1", "port_range": list(port_range)},
            "storage": {"root": root, "min_free_mb": 1},
            "index": {"database": root + ".sqlite3"},
        }
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE_WITH_LIMIT, json.dumps(config), str(limit)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.addCleanup(server.wait)
        self.addCleanup(server.kill)
        line = server.stdout.readline()
        self.assertTrue(line, "the service did not start")
        control, http = json.loads(line)
        return control, http

    def start_recording(self, control: int, recording_id: str, seconds: float,
                        ) -> SimulatedPhone:
        """A phone connected to ``control`` that has started a recording and
        sent it ``seconds`` of audio."""
        phone = SimulatedPhone("127.0.0.1", control)
        self.addCleanup(phone.close)
        phone.connect()
        started = phone.start(recording_id)
        self.assertEqual(started.result, "success", started)
        send_rtp(rtp_packets(audio(seconds, seed=4)), started.server, started.port)
        return phone

    def test_a_limit_below_what_every_port_needs(self):
        """A hard limit of 1,024 and 1,000 RTP ports (3 descriptors a
        recording would need 3,000): the service still answers /healthz, and
        takes a phone's second connection, idle or bringing its Stop."""
        control, http = self.serve(limit=1024, port_range=(44000, 44999))
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=10) as answer:
            self.assertEqual(answer.status, 200)
        self.start_recording(control, "low-limit-1", 0.2)
        idle = socket.create_connection(("127.0.0.1", control), timeout=5)
        self.addCleanup(idle.close)
        again = SimulatedPhone("127.0.0.1", control)
        self.addCleanup(again.close)
        again.connect()
        self.assertEqual(again.stop("low-limit-1").result, "success")
        idle.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            idle.recv(1)  # (still open: neither reset nor closed)

    def test_phone_records_while_http_is_flooded(self):
        """Of 400 half-sent HTTP requests, those that would take the
        descriptors held back for the phones are refused; a phone then
        connects, starts, records and stops its call."""
        control, http = self.serve()
        flood = []
        refused = 0
        for _ in range(400):
            sock = half_sent(http, "127.0.0.1")
            flood.append(sock)
            self.addCleanup(sock.close)
        time.sleep(0.5)  # (the server accepts them in its own time)
        for sock in flood:
            sock.setblocking(False)
            try:
                refused += sock.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                refused += 1
        self.assertTrue(100 < refused < 400, refused)
        phone = self.start_recording(control, "flooded-1", 1)
        self.assertEqual(phone.stop("flooded-1").result, "success")
