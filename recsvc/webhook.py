"""The completion webhook (``hooks.on_finish``): each finished recording's
sidecar is POSTed as JSON to a URL, retried with backoff, and never allowed to
touch the recording itself.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer
from zope.interface import implementer

import recsvc
from recsvc.logs import Logger
from recsvc.urls import check_url, without_secrets


def retry_delay(attempt: int, max_delay: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (from 1):
    1, 2, 4, 8, ... never more than ``max_delay``."""
    if attempt >= 64:  # 2.0 ** 1024 overflows; far beyond any cap anyway
        return float(max_delay)
    return float(min(2.0 ** (attempt - 1), max_delay))


def _describe(exception: BaseException) -> str:
    """A one-line reason for a failed POST."""
    # The HTTP client wraps the real causes (ConnectionRefused,
    # ConnectionLost, ...) in a list of Failures.
    reasons = getattr(exception, "reasons", None)
    if reasons:
        return "; ".join(
            reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
            for reason in reasons
        )
    return str(exception) or type(exception).__name__


@implementer(IBodyProducer)
@attrs.frozen
class BytesBody:
    """A request body already in memory, written in one go."""

    body: bytes

    @property
    def length(self) -> int:
        return len(self.body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@attrs.frozen
class Delivery:
    """One sidecar to announce."""

    recording_id: Any
    body: bytes


class _Refused(Exception):
    """The server answered, but not with a 2xx."""

    def __init__(self, code: int, phrase: str) -> None:
        super().__init__(f"HTTP {code} {phrase}".rstrip())


_positive = attrs.validators.gt(0)
_at_least_one = attrs.validators.ge(1)


@attrs.define(eq=False)
class Webhook:
    """POSTs sidecars to ``url``: at most ``max_in_flight`` deliveries at a
    time, each tried up to ``attempts`` times with a growing pause between
    tries, up to ``max_pending`` waiting (beyond that, new ones are dropped).

    A delivery keeps its place among the ``max_in_flight`` while it waits to
    retry, so a server that is down is not hammered with the whole queue.
    """

    log = Logger()

    url: str = attrs.field(converter=check_url)
    reactor: Any
    agent: IAgent | None = attrs.field(default=None, kw_only=True)
    clock: IReactorTime | None = attrs.field(default=None, kw_only=True)
    attempts: int = attrs.field(default=8, kw_only=True, validator=_at_least_one)
    timeout: float = attrs.field(default=10.0, kw_only=True, validator=_positive)  # s, per POST
    max_delay: float = attrs.field(default=300.0, kw_only=True, validator=_positive)  # s
    max_pending: int = attrs.field(default=10_000, kw_only=True, validator=_at_least_one)
    max_in_flight: int = attrs.field(default=4, kw_only=True, validator=_at_least_one)
    delivered: int = attrs.field(default=0, init=False)
    given_up: int = attrs.field(default=0, init=False)
    _pool: HTTPConnectionPool | None = attrs.field(default=None, init=False)
    _queue: deque[Delivery] = attrs.field(factory=deque, init=False)
    _in_flight: dict[Deferred[None], Delivery] = attrs.field(factory=dict, init=False)
    _pumping: bool = attrs.field(default=False, init=False)
    _stopped: bool = attrs.field(default=False, init=False)
    _settle_waiters: list[Deferred[None]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        if self.clock is None:
            self.clock = self.reactor
        if self.agent is None:
            self._pool = HTTPConnectionPool(self.reactor, persistent=True)
            self._pool.maxPersistentPerHost = self.max_in_flight
            self.agent = Agent(self.reactor, connectTimeout=self.timeout, pool=self._pool)

    @property
    def pending(self) -> int:
        """Deliveries queued or under way (including those waiting to retry)."""
        return len(self._queue) + len(self._in_flight)

    @property
    def _logged_url(self) -> str:
        return without_secrets(self.url)

    def deliver(self, sidecar: dict[str, Any]) -> None:
        """Announce a finished recording; returns at once and never raises."""
        if self._stopped:
            return
        recording_id = sidecar.get("id") if isinstance(sidecar, dict) else None
        try:
            body = json.dumps(sidecar).encode("utf-8")
        except (TypeError, ValueError) as error:
            self.log.error(
                "Webhook {url}: recording {recordingId} not announced: {reason}",
                url=self._logged_url, recordingId=recording_id,
                reason=f"sidecar is not JSON: {error}",
            )
            return
        if self.pending >= self.max_pending:
            self.log.error(
                "Webhook {url}: recording {recordingId} not announced: {reason}",
                url=self._logged_url, recordingId=recording_id,
                reason=f"the queue is full ({self.pending} waiting): is the webhook server down or slow?",
            )
            return
        self._queue.append(Delivery(recording_id, body))
        self._pump()

    def settled(self, timeout: float) -> Deferred[None]:
        """Fires once nothing is queued or under way (retries included), or
        after ``timeout`` seconds, whichever comes first."""
        if not self.pending:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._settle_waiters.append(waiter)
        return waiter.addTimeout(timeout, self.clock).addErrback(
            lambda failure: failure.trap(TimeoutError) and None)

    def stop(self) -> Deferred[None]:
        """Drop what is queued, cancel what is under way (retries included)
        and close the idle connections; deliver() does nothing afterwards.
        What was not announced is logged, with the recordings' ids."""
        self._stopped = True
        unannounced = [delivery.recording_id
                       for delivery in (*self._in_flight.values(), *self._queue)]
        if unannounced:
            self.log.warn(
                "Webhook {url}: {count} recordings not announced: {reason} ({recordingIds})",
                url=self._logged_url, count=len(unannounced), reason="shutting down",
                recordingIds=", ".join(str(recording_id) for recording_id in unannounced),
            )
        self._queue.clear()
        for running in list(self._in_flight):
            running.cancel()
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections().addCallback(lambda _: None)

    def _pump(self) -> None:
        # A delivery that finishes at once (a fake agent, a refused
        # connection) calls back in here: the outer loop carries on instead.
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue and len(self._in_flight) < self.max_in_flight and not self._stopped:
                delivery = self._queue.popleft()
                running = Deferred.fromCoroutine(self._deliver(delivery))
                self._in_flight[running] = delivery
                running.addErrback(self._stopped_or_bug, delivery)
                running.addBoth(self._finished, running)
        finally:
            self._pumping = False

    def _finished(self, result: None, running: Deferred[None]) -> None:
        self._in_flight.pop(running, None)
        self._pump()
        if not self.pending:
            waiting, self._settle_waiters = self._settle_waiters, []
            for waiter in waiting:
                if not waiter.called:  # else timed out
                    waiter.callback(None)

    def _stopped_or_bug(self, failure: Failure, delivery: Delivery) -> None:
        if failure.check(CancelledError) and self._stopped:
            return
        self.log.failure("Webhook {url}: delivering recording {recordingId} failed",
                         failure, url=self._logged_url, recordingId=delivery.recording_id)

    async def _deliver(self, delivery: Delivery) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                await self._post(delivery.body)
            except CancelledError:
                raise  # stop(): not a failure of the server's
            except TimeoutError:
                reason = f"no answer within {self.timeout:g} s"
            except Exception as error:
                reason = _describe(error)
            else:
                self.delivered += 1
                return
            self.log.warn(
                "Webhook {url}: recording {recordingId} not announced"
                " (attempt {attempt} of {attempts}): {reason}",
                url=self._logged_url, recordingId=delivery.recording_id,
                attempt=attempt, attempts=self.attempts, reason=reason,
            )
            if attempt < self.attempts:
                await deferLater(self.clock, retry_delay(attempt, self.max_delay))
        self.given_up += 1
        self.log.error(
            "Webhook {url}: gave up announcing recording {recordingId}"
            " after {attempts} attempts: {reason}",
            url=self._logged_url, recordingId=delivery.recording_id,
            attempts=self.attempts, reason=reason,
        )

    def _post(self, body: bytes) -> Deferred[None]:
        """One POST, abandoned (TimeoutError) if it is not over, body read
        included, within the timeout."""
        return Deferred.fromCoroutine(self._post_and_read(body)).addTimeout(
            self.timeout, self.clock)

    async def _post_and_read(self, body: bytes) -> None:
        headers = Headers({
            b"content-type": [b"application/json"],
            b"user-agent": [f"recsvc/{recsvc.__version__}".encode("ascii")],
        })
        response = await self.agent.request(
            b"POST", self.url.encode("ascii"), headers, BytesBody(body))
        # Read to the end, so the connection goes back to the pool. A body
        # cut short does not undo the status: the server has the sidecar.
        try:
            await readBody(response)
        except CancelledError:
            raise
        except Exception:
            pass
        if not 200 <= response.code < 300:
            phrase = response.phrase
            if isinstance(phrase, bytes):
                phrase = phrase.decode("latin-1")
            raise _Refused(response.code, phrase)
