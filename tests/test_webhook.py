"""Tests for recsvc.webhook: the completion webhook (hooks.on_finish)."""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from recsvc.urls import check_url
from recsvc.webhook import Webhook, retry_delay
from tests.support.webhook import RecordingResource

URL = "http://hooks.example/recorded"
SIDECAR = {"id": "rec-1", "device": "fanvil-7", "file": "2024/05/01/rec-1.wav",
           "stop_reason": "stop", "caller": "Zoë"}


class BodyCollector:
    """An IConsumer that keeps what a body producer writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


@attrs.define(eq=False)
class FakeResponse:
    """Just enough of an IResponse for readBody; ``finished=False`` is a body
    that never ends (a server that stalls after the status line)."""

    code: int
    phrase: bytes = b"OK"
    body: bytes = b""
    finished: bool = True
    headers: Headers = attrs.field(factory=Headers)
    length: int = 0
    read: bool = False

    def deliverBody(self, protocol: Any) -> None:
        self.read = True
        protocol.dataReceived(self.body)
        if self.finished:
            protocol.connectionLost(Failure(ResponseDone()))


@attrs.define(eq=False)
class FakeRequest:
    method: bytes
    uri: bytes
    headers: Headers
    body: bytes
    deferred: Deferred = attrs.field(init=False)
    cancelled: bool = False

    def __attrs_post_init__(self) -> None:
        self.deferred = Deferred(lambda d: setattr(self, "cancelled", True))

    def answer(self, code: int, phrase: bytes = b"OK") -> None:
        self.deferred.callback(FakeResponse(code, phrase))

    def refuse(self) -> None:
        self.deferred.errback(ConnectionRefusedError("111: Connection refused"))


class FakeAgent:
    """An IAgent whose requests are answered by the test."""

    def __init__(self) -> None:
        self.requests: list[FakeRequest] = []

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: Any = None) -> Deferred:
        consumer = BodyCollector()
        bodyProducer.startProducing(consumer)
        request = FakeRequest(method, uri, headers, b"".join(consumer.written))
        self.requests.append(request)
        return request.deferred

    @property
    def outstanding(self) -> list[FakeRequest]:
        return [request for request in self.requests if not request.deferred.called]


def webhook_events(events: Any, level: LogLevel) -> list[dict]:
    return [event for event in events
            if event.get("log_namespace") == "recsvc.webhook.Webhook"
            and event["log_level"] == level]


class WebhookTests(SynchronousTestCase):
    def make(self, **options: Any) -> Webhook:
        self.clock = Clock()
        self.agent = FakeAgent()
        return Webhook(URL, reactor=None, agent=self.agent, clock=self.clock, **options)

    def test_posts_sidecar_as_json(self) -> None:
        """A sidecar is POSTed once to the URL as UTF-8 JSON, and a 2xx
        ends the delivery: nothing is left pending or scheduled."""
        webhook = self.make()
        webhook.deliver(SIDECAR)
        [request] = self.agent.requests
        self.assertEqual((request.method, request.uri), (b"POST", URL.encode()))
        self.assertEqual(request.headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(request.body, json.dumps(SIDECAR).encode("utf-8"))
        self.assertEqual(webhook.pending, 1)
        request.answer(204, b"No Content")
        self.assertEqual((webhook.delivered, webhook.given_up, webhook.pending), (1, 0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_error_status_retried_after_a_second(self) -> None:
        """A 500 is logged as a warning with the stable keys and the POST is
        made again one second later."""
        webhook = self.make()
        with capturedLogs() as events:
            webhook.deliver(SIDECAR)
            self.agent.requests[0].answer(500, b"Internal Server Error")
        [warning] = webhook_events(events, LogLevel.warn)
        self.assertEqual(
            {key: warning[key] for key in ("recordingId", "url", "attempt", "reason")},
            {"recordingId": "rec-1", "url": URL, "attempt": 1,
             "reason": "HTTP 500 Internal Server Error"},
        )
        self.clock.advance(0.999)
        self.assertEqual(len(self.agent.requests), 1)
        self.clock.advance(0.001)
        self.assertEqual(len(self.agent.requests), 2)
        self.assertEqual(self.agent.requests[1].body, self.agent.requests[0].body)
        self.agent.requests[1].answer(200)
        self.assertEqual((webhook.delivered, webhook.given_up, webhook.pending), (1, 0, 0))

    def test_delays_double_and_are_capped(self) -> None:
        """The pauses between tries are 1, 2, 4, ... seconds, never more
        than max_delay."""
        webhook = self.make(attempts=7, max_delay=10.0)
        webhook.deliver(SIDECAR)
        delays = []
        for _ in range(6):
            self.agent.outstanding[0].answer(503, b"Service Unavailable")
            [call] = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [1.0, 2.0, 4.0, 8.0, 10.0, 10.0])
        self.assertEqual(len(self.agent.requests), 7)

    def test_connection_error_retried(self) -> None:
        """A refused connection is a failure like any other: logged with its
        reason, then retried."""
        webhook = self.make()
        with capturedLogs() as events:
            webhook.deliver(SIDECAR)
            self.agent.requests[0].refuse()
        [warning] = webhook_events(events, LogLevel.warn)
        self.assertIn("Connection refused", warning["reason"])
        self.clock.advance(1)
        self.agent.requests[1].answer(200)
        self.assertEqual(webhook.delivered, 1)

    def test_gives_up_after_attempts(self) -> None:
        """After ``attempts`` failed tries the delivery is given up with an
        error naming the recording; nothing is retried after that."""
        webhook = self.make(attempts=3)
        with capturedLogs() as events:
            webhook.deliver(SIDECAR)
            for _ in range(3):
                self.agent.outstanding[0].refuse()
                self.clock.advance(300)
        self.assertEqual(len(self.agent.requests), 3)
        self.assertEqual((webhook.delivered, webhook.given_up, webhook.pending), (0, 1, 0))
        self.assertEqual([event["attempt"] for event in webhook_events(events, LogLevel.warn)],
                         [1, 2, 3])
        [error] = webhook_events(events, LogLevel.error)
        self.assertEqual((error["recordingId"], error["url"], error["attempts"]), ("rec-1", URL, 3))
        self.assertIn("Connection refused", error["reason"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout_cancels_hanging_request(self) -> None:
        """A request with no answer within the timeout is cancelled, logged
        and retried."""
        webhook = self.make(timeout=10.0)
        with capturedLogs() as events:
            webhook.deliver(SIDECAR)
            self.clock.advance(9.9)
            self.assertFalse(self.agent.requests[0].cancelled)
            self.clock.advance(0.1)
        self.assertTrue(self.agent.requests[0].cancelled)
        [warning] = webhook_events(events, LogLevel.warn)
        self.assertEqual(warning["reason"], "no answer within 10 s")
        self.clock.advance(1)
        self.agent.requests[1].answer(200)
        self.assertEqual(webhook.delivered, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout_covers_a_stalled_body(self) -> None:
        """A server that sends its status and then stalls is timed out too:
        the body is part of the POST."""
        webhook = self.make(timeout=5.0)
        webhook.deliver(SIDECAR)
        self.agent.requests[0].deferred.callback(FakeResponse(200, finished=False))
        self.assertEqual(webhook.delivered, 0)
        self.clock.advance(5)
        self.clock.advance(1)
        self.assertEqual(len(self.agent.requests), 2)

    def test_error_body_is_read(self) -> None:
        """A non-2xx answer's body is read (and dropped) like any other."""
        webhook = self.make()
        webhook.deliver(SIDECAR)
        response = FakeResponse(404, b"Not Found", b"no such hook")
        self.agent.requests[0].deferred.callback(response)
        self.assertTrue(response.read)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_in_flight_limit(self) -> None:
        """No more than max_in_flight POSTs are outstanding; the others wait
        their turn, in order."""
        webhook = self.make(max_in_flight=2)
        for number in range(5):
            webhook.deliver({"id": number})
        self.assertEqual(len(self.agent.outstanding), 2)
        self.assertEqual(webhook.pending, 5)
        while self.agent.outstanding:
            self.agent.outstanding[0].answer(200)
            self.assertLessEqual(len(self.agent.outstanding), 2)
        self.assertEqual([json.loads(request.body)["id"] for request in self.agent.requests],
                         [0, 1, 2, 3, 4])
        self.assertEqual((webhook.delivered, webhook.pending), (5, 0))

    def test_retry_wait_keeps_its_place(self) -> None:
        """A delivery waiting to retry still counts as in flight, so a server
        that is down is not sent the whole queue."""
        webhook = self.make(max_in_flight=1)
        webhook.deliver({"id": "a"})
        webhook.deliver({"id": "b"})
        self.agent.requests[0].answer(502, b"Bad Gateway")
        self.assertEqual(len(self.agent.requests), 1)
        self.clock.advance(1)
        self.agent.requests[1].answer(200)
        self.assertEqual([json.loads(request.body)["id"] for request in self.agent.requests],
                         ["a", "a", "b"])

    def test_queue_bound_drops_newest(self) -> None:
        """Beyond max_pending the newest delivery is dropped with an error
        naming its recording; the ones already queued are kept."""
        webhook = self.make(max_pending=3, max_in_flight=1)
        with capturedLogs() as events:
            for name in "abcd":
                webhook.deliver({"id": name})
        [error] = webhook_events(events, LogLevel.error)
        self.assertEqual(error["recordingId"], "d")
        self.assertEqual(webhook.pending, 3)
        while self.agent.outstanding:
            self.agent.outstanding[0].answer(200)
        self.assertEqual([json.loads(request.body)["id"] for request in self.agent.requests],
                         ["a", "b", "c"])

    def test_not_json_is_dropped(self) -> None:
        """A sidecar that cannot be JSON is logged as an error, not raised."""
        webhook = self.make()
        with capturedLogs() as events:
            webhook.deliver({"id": "rec-2", "started": object()})
        [error] = webhook_events(events, LogLevel.error)
        self.assertEqual(error["recordingId"], "rec-2")
        self.assertEqual((self.agent.requests, webhook.pending), ([], 0))

    def test_settled_once_delivered(self) -> None:
        """At shutdown the last sidecars are given time: settled fires once
        nothing is queued or under way."""
        webhook = self.make()
        self.successResultOf(webhook.settled(5))  # nothing to wait for
        webhook.deliver(SIDECAR)
        webhook.deliver(SIDECAR)
        settled = webhook.settled(5)
        self.agent.requests[0].answer(200)
        self.assertNoResult(settled)
        self.agent.requests[1].answer(200)
        self.successResultOf(settled)
        self.assertEqual(self.clock.getDelayedCalls(), [])  # its timeout was cancelled

    def test_settled_gives_up_waiting(self) -> None:
        """settled stops waiting after its timeout while a delivery is still
        under way, and that delivery, answered later, still counts without
        error."""
        webhook = self.make()
        webhook.deliver(SIDECAR)
        settled = webhook.settled(5)
        self.clock.advance(4.9)
        self.assertNoResult(settled)
        self.clock.advance(0.1)
        self.successResultOf(settled)
        self.agent.requests[0].answer(200)  # delivered late: no error
        self.assertEqual(webhook.delivered, 1)

    def test_stop_cancels_retry(self) -> None:
        """stop() cancels a waiting retry: no POST is made however long the
        clock runs, and deliver() afterwards does nothing."""
        webhook = self.make()
        webhook.deliver(SIDECAR)
        self.agent.requests[0].answer(500)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertIsNone(self.successResultOf(webhook.stop()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1000)
        webhook.deliver(SIDECAR)
        self.assertEqual((len(self.agent.requests), webhook.pending), (1, 0))
        self.assertEqual((webhook.delivered, webhook.given_up), (0, 0))

    def test_stop_cancels_requests_and_queue(self) -> None:
        """stop() cancels the POSTs under way and drops the deliveries not
        started, without logging a failure; both are logged as not
        announced, by id."""
        webhook = self.make(max_in_flight=1)
        with capturedLogs() as events:
            webhook.deliver({"id": "a"})
            webhook.deliver({"id": "b"})
            self.successResultOf(webhook.stop())
        self.assertTrue(self.agent.requests[0].cancelled)
        self.assertEqual((len(self.agent.requests), webhook.pending), (1, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        [warning] = webhook_events(events, LogLevel.warn)
        self.assertEqual((warning["count"], warning["recordingIds"]), (2, "a, b"))
        self.assertEqual(webhook_events(events, LogLevel.critical), [])

    def test_log_hides_url_secrets(self) -> None:
        """Logs show the URL without its query, which may carry a token."""
        self.clock = Clock()
        self.agent = FakeAgent()
        webhook = Webhook(URL + "?token=s3cret", None, agent=self.agent, clock=self.clock)
        with capturedLogs() as events:
            webhook.deliver(SIDECAR)
            self.agent.requests[0].answer(500)
        self.assertEqual(self.agent.requests[0].uri, (URL + "?token=s3cret").encode())
        [warning] = webhook_events(events, LogLevel.warn)
        self.assertEqual(warning["url"], URL)

    def test_default_agent(self) -> None:
        """Without an agent one is made on a persistent pool of a few
        connections, which stop() closes."""
        webhook = Webhook(URL, MemoryReactorClock())
        self.assertIsInstance(webhook.agent, Agent)
        self.assertIs(webhook.clock, webhook.reactor)
        self.assertTrue(webhook._pool.persistent)
        self.assertEqual(webhook._pool.maxPersistentPerHost, 4)
        self.assertIsNone(self.successResultOf(webhook.stop()))

    def test_bad_settings(self) -> None:
        """A bad URL or a limit below one is refused when the webhook is made."""
        self.assertRaises(ValueError, Webhook, "ftp://x", None)
        for option in ("attempts", "max_pending", "max_in_flight"):
            self.assertRaises(ValueError, Webhook, URL, None, agent=FakeAgent(), **{option: 0})
        self.assertRaises(ValueError, Webhook, URL, None, agent=FakeAgent(), timeout=0)


class CheckUrlTests(SynchronousTestCase):
    def test_accepts_http_and_https(self) -> None:
        """http:// and https:// URLs with a host pass, stripped of blanks."""
        for url in ("http://example.com", "https://example.com:8443/hook?token=x",
                    "HTTP://10.0.0.1/hook", "http://[::1]:8080/"):
            self.assertEqual(check_url(f"  {url}\n"), url)

    def test_rejects_other_schemes(self) -> None:
        """Other schemes, and URLs without a host, are refused with a
        message quoting the value."""
        for url in ("ftp://x", "example.com/hook", "http://", "http:///hook", "", "http://[::1"):
            error = self.assertRaises(ValueError, check_url, url)
            self.assertEqual(str(error), f"expected an http:// or https:// URL, got {url!r}")

    def test_rejects_what_the_client_cannot_send(self) -> None:
        """Credentials, a bad port, spaces or non-ASCII text are refused
        with a message saying so (and never echoing a password)."""
        error = self.assertRaises(ValueError, check_url, "http://user:pw@host/hook")
        self.assertIn("credentials", str(error))
        self.assertNotIn("pw", str(error))
        self.assertIn("port", str(self.assertRaises(ValueError, check_url, "http://host:99999/")))
        self.assertIn("spaces", str(self.assertRaises(ValueError, check_url, "http://host/a b")))
        self.assertIn("non-ASCII", str(self.assertRaises(ValueError, check_url, "http://hôte/")))


class RetryDelayTests(SynchronousTestCase):
    def test_values(self) -> None:
        """1, 2, 4, ... seconds after attempts 1, 2, 3, ..., capped."""
        self.assertEqual([retry_delay(attempt, 300.0) for attempt in range(1, 11)],
                         [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0])
        self.assertEqual(retry_delay(3, 2.5), 2.5)
        self.assertEqual(retry_delay(10_000, 300.0), 300.0)


class ClosingSite(Site):
    """A Site that can wait for its connections to close, so the test
    leaves a clean reactor."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.closed: list[Deferred] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        closed: Deferred = Deferred()
        self.closed.append(closed)
        lost = protocol.connectionLost

        def connectionLost(reason: Failure) -> None:
            lost(reason)
            closed.callback(None)

        protocol.connectionLost = connectionLost
        return protocol


class LoopbackTests(TestCase):
    @inlineCallbacks
    def test_posts_to_a_real_server(self):
        """Over a real loopback socket the server receives the sidecar as
        JSON and the delivery counts as done."""
        resource = RecordingResource()
        site = ClosingSite(resource)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        webhook = Webhook(f"http://127.0.0.1:{port.getHost().port}/hook", reactor, timeout=5.0)

        @inlineCallbacks
        def close():
            yield webhook.stop()
            for closed in site.closed:
                yield closed

        self.addCleanup(close)
        webhook.deliver(SIDECAR)
        content_type, body = yield resource.received.get()
        self.assertEqual(content_type, b"application/json")
        self.assertEqual(json.loads(body.decode("utf-8")), SIDECAR)
        yield webhook.settled(5)
        self.assertEqual((webhook.delivered, webhook.pending), (1, 0))
