"""The HTTP side's access log: one log event a request (method, path,
status, bytes, user, duration, peer) rather than Twisted's combined-log
text, and the status polls (the web page asks for /api/active every 2 s)
counted and summed up now and then instead of logged one line each.

    HTTP 127.0.0.1 ann "GET /api/recordings?number=138" 200 5120 B 4 ms
"""

from __future__ import annotations

from typing import Callable

import attrs
from twisted.web.server import Request

from recsvc.web.auth import Identity
from recsvc.logs import Logger

# Polls: cheap reads of the service's state that the web page (every 2 s),
# `watch recsvc status`, load balancers and monitors repeat all day. By
# method and path, whoever asks: a header saying "poll" could be sent by
# anyone too, and would leave the monitors' polls filling the log.
POLL_METHODS = frozenset({b"GET", b"HEAD"})
POLL_PATHS = frozenset({b"/api/active", b"/healthz"})
# Polls are summed up in a line at most this often (seconds), when the next
# request (or the end of the listener) comes after it.
POLL_SUMMARY_INTERVAL = 300.0
# A longer request target is cut to this many characters in the log.
MAX_SHOWN_TARGET = 2000
MAX_SHOWN_METHOD = 16

_ANSWERED = 'HTTP {peer} {user} "{method} {path}" {status} {bytes} B {duration_ms} ms'
_CUT_SHORT = _ANSWERED + " (the connection was lost before the end)"


def shown(raw: bytes, limit: int) -> str:
    """Client-sent bytes as the log shows them: printable ASCII as it is,
    any other byte (control characters, spaces, non-ASCII) and the double
    quote percent-escaped as a URL has it, at most ``limit`` characters: no
    client can break a line of the text log or forge one, nor end the
    quoted request in it early."""
    text = "".join(chr(byte) if 0x21 <= byte <= 0x7E and byte != 0x22 else f"%{byte:02X}"
                   for byte in raw[:limit])
    if len(text) > limit or len(raw) > limit:
        return text[:limit] + "..."
    return text


def is_poll(method: bytes, target: bytes) -> bool:
    """Whether a request is a status poll (see POLL_PATHS): its path
    whatever the query."""
    return method in POLL_METHODS and target.split(b"?", 1)[0] in POLL_PATHS


@attrs.frozen
class Access:
    """One request, as the access log gives it."""

    method: str
    path: str  # the request target (with its query), escaped by `shown`
    status: int
    bytes: int  # of the body sent
    user: str  # the http.auth user, or "-"
    auth: str  # "basic", "token", or "-" (none)
    duration_ms: float
    peer: str
    finished: bool  # False: the connection was lost before the answer's end


def access_of(request: Request, began: float, now: float, finished: bool = True) -> Access:
    """What the log says of ``request``, which began at ``began``."""
    identity: Identity | None = getattr(request, "identity", None)
    peer = getattr(request.getClientAddress(), "host", None)
    return Access(
        method=shown(request.method, MAX_SHOWN_METHOD),
        path=shown(request.uri, MAX_SHOWN_TARGET),
        status=int(request.code),
        bytes=int(request.sentLength),
        user=identity.user if identity is not None else "-",
        auth=identity.scheme if identity is not None else "-",
        duration_ms=round(max(0.0, now - began) * 1000, 1),
        peer=peer if isinstance(peer, str) else "-",
        finished=finished,
    )


@attrs.frozen
class PollSummary:
    """The polls counted over a while: how many of each method, path and status."""

    counts: tuple[tuple[str, int], ...]  # ("GET /api/active 200", 150), most first
    since: float
    until: float

    @property
    def total(self) -> int:
        return sum(count for _, count in self.counts)


@attrs.define(eq=False)
class PollTally:
    """Counts polls; `due` gives their summary once ``interval`` seconds
    have passed since the first of them."""

    interval: float
    _since: float | None = None
    _until: float = 0.0
    _counts: dict[str, int] = attrs.Factory(dict)

    def count(self, what: str, now: float) -> None:
        if self._since is None:
            self._since = now
        self._until = now
        self._counts[what] = self._counts.get(what, 0) + 1

    def due(self, now: float) -> PollSummary | None:
        """The summary, if the interval is over (counting starts afresh)."""
        if self._since is None or now - self._since < self.interval:
            return None
        return self.take()

    def take(self) -> PollSummary | None:
        """The summary of what was counted, if anything (counting starts afresh)."""
        if self._since is None:
            return None
        counts = tuple(sorted(self._counts.items(), key=lambda item: (-item[1], item[0])))
        summary = PollSummary(counts, self._since, self._until)
        self._since, self._counts = None, {}
        return summary


# A namespace of its own (not the class's, as a Logger on the class would
# have), for log shippers to route the access log by.
_log = Logger(namespace="recsvc.access")


class AccessLog:
    """Logs each request that ends, polls as a summary now and then."""

    def __init__(self, now: Callable[[], float],
                 interval: float = POLL_SUMMARY_INTERVAL) -> None:
        self._now = now
        self._polls = PollTally(interval)

    def ended(self, request: Request, began: float, finished: bool = True) -> None:
        """``request`` (which began at ``began``) is answered, or
        (``finished`` False) its connection was lost first."""
        now = self._now()
        self._summarise(self._polls.due(now))
        access = access_of(request, began, now, finished)
        if is_poll(request.method, request.uri):
            self._polls.count(f"{access.method} {access.path.split('?', 1)[0]} {access.status}",
                              now)
        else:
            _log.info(_ANSWERED if finished else _CUT_SHORT, **attrs.asdict(access))

    def flush(self) -> None:
        """Sum up the polls counted so far (the listener stops)."""
        self._summarise(self._polls.take())

    def _summarise(self, summary: PollSummary | None) -> None:
        if summary is None:
            return
        _log.info("HTTP polls not logged one by one, {polls} in {seconds} s: {shown}",
                      polls=summary.total, seconds=round(summary.until - summary.since),
                      shown=", ".join(f"{count} x {what}" for what, count in summary.counts),
                      counts=dict(summary.counts))

