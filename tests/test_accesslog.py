"""Tests for recsvc.web.accesslog: the HTTP side's access log, one event a
request with its user, and the status polls counted instead of logged one
by one; through a real Site (recsvc.web.site.make_site) over StringTransport."""

from __future__ import annotations

import base64
import io
import json
import os

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel

from recsvc.web.accesslog import (
    POLL_SUMMARY_INTERVAL,
    PollTally,
    access_of,
    is_poll,
    shown,
)
from recsvc.config import BasicUser, HttpAuthConfig
from recsvc.passwords import hash_password
from recsvc.web.auth import Identity
from recsvc.logs import json_lines
from recsvc.index import store as index
from recsvc.metrics import Metrics
from recsvc.testing import memory_recorder
from recsvc.web.auth import users_by_name
from recsvc.web.site import make_site

TOKEN = "a-long-bearer-token-0123456789"
PEER = IPv4Address("TCP", "127.0.0.7", 50123)


class ShownTests(SynchronousTestCase):
    def test_printable_ascii_kept(self) -> None:
        """A request target of printable ASCII is shown as it came."""
        self.assertEqual(shown(b"/api/recordings?number=138%200013&page=2", 100),
                         "/api/recordings?number=138%200013&page=2")

    def test_other_bytes_escaped(self) -> None:
        """Control characters, spaces and non-ASCII bytes are percent-escaped:
        nothing a client sends can end a line or color a terminal."""
        self.assertEqual(shown(b"/a\r\nb c\x1b[2J\xc3\xa4\x00", 100),
                         "/a%0D%0Ab%20c%1B[2J%C3%A4%00")

    def test_double_quote_escaped(self) -> None:
        """A double quote (which Twisted lets through in a request target)
        is escaped too: the text line's quoted request ends where the
        request does, as it did in Twisted's combined log, which escaped it."""
        self.assertEqual(shown(b'/a"%20200%20"b', 100), "/a%22%20200%20%22b")

    def test_cut_to_the_limit(self) -> None:
        """A long target is cut, and says so."""
        self.assertEqual(shown(b"/" + b"x" * 50, 10), "/xxxxxxxxx...")
        self.assertEqual(shown(b"\x01" * 10, 10), "%01%01%01%...")
        self.assertEqual(shown(b"/" + b"x" * 9, 10), "/" + "x" * 9)


class PollTests(SynchronousTestCase):
    def test_what_is_a_poll(self) -> None:
        """GET or HEAD of /api/active or /healthz, whatever the query; not
        other methods, paths below them, or the searches."""
        for method, target in [(b"GET", b"/api/active"), (b"HEAD", b"/healthz"),
                               (b"GET", b"/healthz?from=page")]:
            self.assertTrue(is_poll(method, target), target)
        for method, target in [(b"POST", b"/api/active"), (b"GET", b"/api/active/x"),
                               (b"GET", b"/api/recordings"), (b"GET", b"/"),
                               (b"GET", b"/metrics"), (b"GET", b"/healthzz")]:
            self.assertFalse(is_poll(method, target), target)

    def test_tally(self) -> None:
        """Polls are counted by what they were; the summary is due once the
        interval since the first has passed, and counting starts afresh."""
        tally = PollTally(300)
        self.assertIsNone(tally.take())
        tally.count("GET /healthz 200", 10)
        tally.count("GET /api/active 200", 12)
        tally.count("GET /api/active 200", 14)
        self.assertIsNone(tally.due(309.9))
        summary = tally.due(310)
        self.assertEqual(summary.counts, (("GET /api/active 200", 2), ("GET /healthz 200", 1)))
        self.assertEqual((summary.since, summary.until, summary.total), (10, 14, 3))
        self.assertIsNone(tally.due(1000))
        self.assertIsNone(tally.take())


class AccessOfTests(SynchronousTestCase):
    def test_fields(self) -> None:
        """What the log says of a request: escaped method and target (Twisted
        answers 400 to a request line with such bytes today; the log does
        not count on it), the status, the body's bytes, who http.auth let
        in, the duration in ms and the peer's address."""
        request = Request(DummyChannel())
        request.method = b"GET\x1b"
        request.uri = b"/api/recordings?number=1\n2"
        request.setResponseCode(404)
        request.sentLength = 40
        request.identity = Identity("ann", "basic")
        access = access_of(request, 100.0, 100.0125)
        self.assertEqual((access.method, access.path, access.status, access.bytes),
                         ("GET%1B", "/api/recordings?number=1%0A2", 404, 40))
        self.assertEqual((access.user, access.auth, access.duration_ms, access.peer),
                         ("ann", "basic", 12.5, "192.168.1.1"))
        self.assertTrue(access.finished)
        anonymous = access_of(Request(DummyChannel()), 5.0, 4.0, finished=False)
        self.assertEqual((anonymous.user, anonymous.auth, anonymous.duration_ms,
                          anonymous.finished), ("-", "-", 0.0, False))


class _SiteMixin:
    """A site over StringTransport with a task.Clock, whose searches wait
    (until the test fires them), and the access events it logs."""

    auth = HttpAuthConfig()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.recorder = memory_recorder(self.mktemp(), clock=self.clock)
        self.recorder.startService()
        self.searches: list[Deferred] = []

        def run_index(f, *args):
            if f is users_by_name:
                return succeed({})  # (the users: none)
            self.searches.append(Deferred())
            return self.searches[-1]

        def run_blocking(f, *args):
            return maybeDeferred(f, *args)
        root = os.path.abspath(self.mktemp())
        self.site = make_site(self.recorder, run_index, root, run_blocking, Metrics(),
                              self.auth, now=self.clock.seconds)
        self.site.reactor = self.clock  # the channels' timeouts
        self.events: list[dict] = []
        self.out = io.StringIO()
        self.json_observer = json_lines(self.out)

        def observe(event: dict) -> None:
            if event.get("log_namespace") == "recsvc.access":
                self.events.append(event)
                self.json_observer(event)
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def connect(self) -> tuple[object, StringTransport]:
        channel = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        channel.makeConnection(transport)
        return channel, transport

    def request(self, target: str, **headers: str) -> tuple[object, StringTransport]:
        channel, transport = self.connect()
        lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return channel, transport

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]



class SiteAccessLogTests(_SiteMixin, SynchronousTestCase):
    def test_a_request_is_one_event(self) -> None:
        """An answered request is one event with method, path, status,
        bytes, user, duration and peer: a readable line of text, and a JSON
        object with those keys."""
        self.request("/api/recordings?number=138")
        self.clock.advance(0.25)
        self.searches[0].callback(index.Page([], index.Total(0, True), None))
        [event] = self.events
        self.assertEqual(
            formatEvent(event),
            'HTTP 127.0.0.7 - "GET /api/recordings?number=138" 200 '
            f'{event["bytes"]} B 250.0 ms')
        self.assertGreater(event["bytes"], 0)
        [line] = self.json_lines()
        self.assertEqual({key: line[key] for key in (
            "namespace", "level", "method", "path", "status", "user", "auth", "duration_ms",
            "peer", "finished")}, {
            "namespace": "recsvc.access", "level": "info", "method": "GET",
            "path": "/api/recordings?number=138", "status": 200, "user": "-", "auth": "-",
            "duration_ms": 250.0, "peer": "127.0.0.7", "finished": True})
        self.assertEqual(line["bytes"], event["bytes"])

    def test_no_combined_log_line(self) -> None:
        """Twisted's own combined-log line is no longer written: the event
        is the only trace of a request."""
        legacy: list[dict] = []
        globalLogPublisher.addObserver(legacy.append)
        self.addCleanup(globalLogPublisher.removeObserver, legacy.append)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)
        self.request("/healthz?x=1")
        self.request("/nothing")
        self.assertEqual([event for event in legacy if "log_io" in event], [])
        self.assertEqual([event["path"] for event in self.events], ["/nothing"])

    def test_quote_in_target_stays_inside_the_quotes(self) -> None:
        """A request target with a double quote in it (as a client may send
        it raw) cannot close the line's quoted request early."""
        self.request('/x"y')
        [event] = self.events
        self.assertEqual(event["path"], "/x%22y")
        self.assertTrue(formatEvent(event).startswith('HTTP 127.0.0.7 - "GET /x%22y" 404 '),
                        formatEvent(event))

    def test_polls_counted_not_logged(self) -> None:
        """The page's polls of /api/active and /healthz make no line each;
        once the summary interval has passed, one line says how many of
        each there were. Real requests in between are logged."""
        for _ in range(3):
            self.request("/api/active")
            self.request("/healthz")
            self.clock.advance(2)
        self.request("/nothing")
        self.assertEqual([event["path"] for event in self.events], ["/nothing"])
        self.clock.advance(POLL_SUMMARY_INTERVAL)
        self.request("/api/active")
        [_, summary] = self.events
        self.assertEqual(summary["polls"], 6)
        self.assertEqual(summary["counts"], {"GET /api/active 200": 3, "GET /healthz 200": 3})
        self.assertEqual(
            formatEvent(summary),
            "HTTP polls not logged one by one, 6 in 4 s: 3 x GET /api/active 200, "
            "3 x GET /healthz 200")
        # The poll that came after the interval waits for the next summary,
        # or for the listener's end.
        self.site.stopFactory()
        self.assertEqual(self.events[-1]["counts"], {"GET /api/active 200": 1})

    def test_connection_lost_before_the_answer(self) -> None:
        """A request whose client goes before the answer is complete is
        logged too, as cut short."""
        channel, _ = self.request("/api/recordings")
        self.clock.advance(1)
        channel.connectionLost(Failure(ConnectionError("gone")))
        [event] = self.events
        self.assertFalse(event["finished"])
        self.assertEqual((event["path"], event["duration_ms"]), ("/api/recordings", 1000.0))
        self.assertIn("connection was lost", formatEvent(event))


class AuthenticatedAccessLogTests(_SiteMixin, SynchronousTestCase):
    """The same with http.auth: the user let in, or how."""

    auth = HttpAuthConfig(users=(BasicUser("ann", hash_password("s3cret", iterations=1000)),),
                          token=TOKEN)

    def basic(self, user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    def test_who_asked(self) -> None:
        """The basic-auth user's name, "-" with the token (its auth says
        token), "-" for a refused request."""
        self.request("/metrics", Authorization=self.basic("ann", "s3cret"))
        self.request("/metrics", Authorization=f"Bearer {TOKEN}")
        self.request("/metrics", Authorization=self.basic("ann", "guess"))
        self.assertEqual([(event["user"], event["auth"], event["status"])
                          for event in self.events],
                         [("ann", "basic", 200), ("-", "token", 200), ("-", "-", 401)])
        self.assertIn('HTTP 127.0.0.7 ann "GET /metrics" 200', formatEvent(self.events[0]))

    def test_refused_credentials_line_escapes_the_target(self) -> None:
        """A request target the client chose with a control character in it
        (DEL; Twisted answers 400 to the C0 ones before any of this) and
        wrong credentials: the once-a-minute line about refused sign-ins
        names the address and the reason, not the target, and the access
        event's path is percent-escaped."""
        everything: list[dict] = []
        globalLogPublisher.addObserver(everything.append)
        self.addCleanup(globalLogPublisher.removeObserver, everything.append)
        self.request("/metrics?x=\x7f[2J", Authorization=self.basic("ann", "guess"))
        [refused] = [event for event in everything if event.get("reason") == "wrong credentials"]
        self.assertEqual(formatEvent(refused),
                         "HTTP sign-ins from 127.0.0.7 refused: wrong credentials "
                         "(1 since the last such line)")
        self.assertEqual([event["path"] for event in self.events], ["/metrics?x=%7F[2J"])
