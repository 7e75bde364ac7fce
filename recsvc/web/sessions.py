"""The page's sign-in (recsvc.access.sessions on the HTTP side):
``POST /login`` with a user's name and password (basic authentication's
header: the login page sends it, no body) begins a session, a token in
an HttpOnly, SameSite=Strict cookie (Secure over TLS) and its CSRF token
in a cookie the page reads; ``POST /logout`` ends it. Sessions live in
the index database (every node signs in by them), read again at most
every few seconds."""

from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.web.resource import Resource
from twisted.web.server import Request

from recsvc.access.audit import audit_event
from recsvc.access.sessions import (
    SESSION_SECONDS, Session, csrf_matches, csrf_of, looks_like_token, new_token, token_hash)
from recsvc.summary import iso_utc

SESSION_COOKIE = b"recsvc_session"
CSRF_COOKIE = b"recsvc_csrf"
CSRF_HEADER = b"x-csrf-token"
# A session read from the index is taken as it was this long at most (a
# logout on another node counts within it).
SESSION_REFRESH = 5.0
# At most this many sessions are remembered between reads.
REMEMBERED_SESSIONS = 10_000
LOGIN_PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "login.html")


def session_token(request: Request) -> str | None:
    """The request's session token (its cookie), if it looks like one."""
    raw = request.getCookie(SESSION_COOKIE)
    if raw is None:
        return None
    token = raw.decode("ascii", "replace")
    return token if looks_like_token(token) else None


def csrf_sent(request: Request) -> str | None:
    header = request.getHeader(CSRF_HEADER)  # (bytes for a bytes name)
    return None if header is None else header.decode("ascii", "replace")


def csrf_ok(request: Request, token: str) -> bool:
    return csrf_matches(token, csrf_sent(request))


class SessionKeeper:
    """Begins, finds and ends sessions through ``run_index`` (the index
    database's ISessions)."""

    def __init__(self, run_index: Callable[..., Deferred[Any]], now: Callable[[], float],
                 lifetime: float = SESSION_SECONDS) -> None:
        self._run_index, self.now, self.lifetime = run_index, now, lifetime
        self._known: dict[str, tuple[Session | None, float]] = {}

    def find(self, token: str) -> Deferred[Session | None]:
        """The token's session, if it has not ended."""
        hashed = token_hash(token)
        known = self._known.get(hashed)
        if known is not None and self.now() - known[1] < SESSION_REFRESH:
            return succeed(self._alive(known[0]))
        return self._run_index(_session, hashed).addCallback(self._read, hashed)

    def _read(self, session: Session | None, hashed: str) -> Session | None:
        if len(self._known) >= REMEMBERED_SESSIONS:
            self._known.clear()
        self._known[hashed] = (session, self.now())
        return self._alive(session)

    def _alive(self, session: Session | None) -> Session | None:
        return session if session is not None and session.ends > self.now() else None

    def begin(self, user: str, source: str) -> Deferred[tuple[str, Session]]:
        """A new session of ``user``'s (its sign-in audited with it)."""
        token, now = new_token(), self.now()
        session = Session(token_hash(token), user, now, now + self.lifetime)
        event = audit_event(iso_utc(now), user, source, "login", "",
                            {"session": session.token_hash[:12],
                             "ends": iso_utc(session.ends)})
        return self._run_index(_add, session, now, event).addCallback(
            lambda _: (token, session))

    def end(self, token: str, user: str, source: str) -> Deferred[None]:
        hashed = token_hash(token)
        self._known.pop(hashed, None)
        event = audit_event(iso_utc(self.now()), user, source, "logout", "",
                            {"session": hashed[:12]})
        return self._run_index(_remove, hashed, event)


def _session(found_in: Any, hashed: str) -> Session | None:
    return found_in.session(hashed)


def _add(found_in: Any, session: Session, now: float, event: Any) -> None:
    found_in.add_session(session, now, audit=event)


def _remove(found_in: Any, hashed: str, event: Any) -> None:
    found_in.remove_session(hashed, audit=event)


def set_session_cookies(request: Request, token: str, lifetime: float) -> None:
    secure = request.isSecure()
    request.addCookie(SESSION_COOKIE, token.encode("ascii"), path=b"/",
                      max_age=str(int(lifetime)).encode("ascii"), httpOnly=True,
                      secure=secure, sameSite=b"strict")
    request.addCookie(CSRF_COOKIE, csrf_of(token).encode("ascii"), path=b"/",
                      max_age=str(int(lifetime)).encode("ascii"), secure=secure,
                      sameSite=b"strict")


def clear_session_cookies(request: Request) -> None:
    for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        request.addCookie(name, b"", path=b"/", max_age=b"0", httpOnly=http_only,
                          secure=request.isSecure(), sameSite=b"strict")


class LoginPage(Resource):
    """GET /login: the sign-in page (read from its file once, not on the
    reactor's thread at each request)."""

    isLeaf = True
    _page: bytes | None = None

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if LoginPage._page is None:
            with open(LOGIN_PAGE, "rb") as handle:
                LoginPage._page = handle.read()
        return LoginPage._page



