"""Who may use the HTTP side: basic-auth users with hashed passwords (the
index database's users, with their roles and scopes, recsvc.access; and
http.auth's, admins), or http.auth's bearer token. With none of them, the
HTTP side is open (the loopback default: see `GuardedResource`). Password
hashes are recsvc.passwords' (PBKDF2-SHA256); checking one takes tens of
milliseconds, so it runs in a thread and a password once checked is
remembered for the process (keyed by a keyed hash, never the password
itself)."""

from __future__ import annotations

import base64
import binascii
import collections
import hmac
import math
import os
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import Request
from twisted.web.util import DeferredResource

from recsvc.access.scopes import EVERYTHING, NOTHING, Group, Reach, user_reach
from recsvc.access.sessions import token_hash
from recsvc.access.users import User
from recsvc.admission import RefusalLog, source_of
from recsvc.logs import Logger
from recsvc.summary import iso_utc
from recsvc.web.sessions import (
    SESSION_COOKIE, LoginPage, clear_session_cookies, csrf_ok, session_token,
    set_session_cookies)
from recsvc.passwords import ITERATIONS, check_password_hash, decoy_hash, verify_password

# At most this many checked passwords are remembered (then it starts over).
REMEMBERED = 1024
# At most this many password checks wait or run at once; beyond them a
# request is answered "busy" at once (a flood of guesses costs the CPU only
# this much, and never the recordings' threads: see recsvc.tap).
MAX_CHECKING = 8
# Of those, at most this many for one address (or IPv6 /64): guessers from
# one machine leave room for the users' first sign-ins.
MAX_CHECKING_PER_ADDRESS = 2
# Wrong credentials one address may send in this many seconds (http.auth.
# max_failures_per_minute); then it is refused (429) until the oldest is
# this old.
FAILURE_WINDOW = 60.0
# Addresses whose failures are remembered at once (a flood from more is
# limited per address among the most recent).
MAX_ADDRESSES = 10_000

# At most this much of a user name sent with a wrong password is kept.
MAX_NAME_SHOWN = 64

_log = Logger()


def _iterations(users: dict[str, str]) -> int:
    """The iterations of the users' hashes (the decoy's costs as much)."""
    for hashed in users.values():
        return check_password_hash(hashed)[0]
    return ITERATIONS


def basic_credentials(header: bytes | None) -> tuple[str, str] | None:
    """The user and password of an ``Authorization: Basic`` header, or None."""
    if not header or not header[:6].lower() == b"basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon else None


def bearer_token(header: bytes | None) -> bytes | None:
    if not header or not header[:7].lower() == b"bearer ":
        return None
    return header[7:].strip()


# How long the index database's users, once read, are taken as they were
# (a user added, changed or removed counts that long after at most).
DIRECTORY_REFRESH = 5.0
# The users last read are used at most this long when they cannot be read
# again (then requests wait for a read, and get 503 while it fails).
DIRECTORY_STALE_AT_MOST = 60.0


@attrs.frozen
class Identity:
    """Who the gate let in: a user (of the index database, or of
    http.auth.users: an admin), the bearer token (an admin's rights), or
    anyone where no credentials are asked for (the open default); with
    their role and the recordings they reach."""

    user: str  # the user's name; "-" for the token or the open default
    scheme: str  # "basic", "token", or "-" (none asked for)
    role: str = "admin"
    reach: Reach = EVERYTHING


TOKEN_HOLDER = Identity("-", "token")
# A request no guard saw (a route outside it): no rights, no recording.
NOBODY = Identity("-", "-", "nobody", NOTHING)
# Anyone, where no user and no token is set (the loopback-only default).
OPEN = Identity("-", "-")


class Directory:
    """The users of the index database (IUsers), as last read: read again
    when asked for more than ``refresh`` seconds after (one read at a time,
    the requests waiting for it); if that read fails, the users read
    before are used, but not once they are ``stale_at_most`` seconds old:
    then requests fail (503) until a read works, so that a database that
    cannot be read never leaves the door as it was for long (open, or a
    user removed still let in). Failures are logged once until a read
    works."""

    def __init__(self, run_index: Callable[..., Deferred[Any]], now: Callable[[], float],
                 groups: dict[str, Group] | None = None,
                 refresh: float = DIRECTORY_REFRESH,
                 stale_at_most: float = DIRECTORY_STALE_AT_MOST) -> None:
        self._run_index, self.now, self.refresh = run_index, now, refresh
        self.stale_at_most = stale_at_most
        self.groups = groups or {}
        self.users: dict[str, User] | None = None
        self._read_at = -math.inf
        self._waiting: list[Deferred[dict[str, User]]] | None = None
        self._failing = False

    def current(self) -> Deferred[dict[str, User]]:
        age = self.now() - self._read_at
        if self.users is not None and age < self.refresh:
            return succeed(self.users)
        last = self.users

        def failed(failure: Failure) -> Any:
            if last is not None and self.now() - self._read_at < self.stale_at_most:
                return last  # (the users read before, a while)
            return failure
        return self._read_again().addErrback(failed)

    def _read_again(self) -> Deferred[dict[str, User]]:
        """The users as a read gives them (the one under way, or a new one)."""
        mine: Deferred[dict[str, User]] = Deferred()
        if self._waiting is not None:
            self._waiting.append(mine)
            return mine
        self._waiting = [mine]
        maybeDeferred(self._run_index, users_by_name).addBoth(self._read)
        return mine

    def _read(self, result: dict[str, User] | Failure) -> None:
        waiting, self._waiting = self._waiting or [], None
        if isinstance(result, Failure):
            if not self._failing:
                _log.warn("The users cannot be read from the index: {reason}",
                          reason=result.getErrorMessage())
            self._failing = True
            for each in waiting:
                each.errback(result)
            return
        self._failing = False
        self.users, self._read_at = result, self.now()
        for each in waiting:
            each.callback(result)

    def identity(self, user: User) -> Identity:
        return Identity(user.name, "basic", user.role,
                        user_reach(user.role, user.scopes, self.groups))


def _user_of_token(token: bytes, users: dict[str, User]) -> User | None:
    """The user whose API token this is (its hash compared in constant
    time with each user's), or None."""
    hashed = token_hash(token.decode("ascii", "replace")).encode("ascii")
    found = None
    for user in users.values():
        if user.token_hash and hmac.compare_digest(user.token_hash.encode("ascii"), hashed):
            found = user
    return found


def users_by_name(found_in: Any) -> dict[str, User]:
    """The index's users (IUsers), by name: what a Directory reads. A row
    that is no user this recsvc knows (a role of a later version, a row
    changed by hand) is left out, and said, rather than failing them all."""
    users = {}
    for name, user in found_in.user_rows():
        if isinstance(user, User):
            users[name] = user
        else:
            _log.warn("The user {name} is left out: {reason}", name=ascii(name)[1:-1],
                      reason=user)
    return users


class Busy(Exception):
    """Too many password checks under way: try again shortly."""


class TooManyFailures(Exception):
    """The address sent too many wrong credentials of late, or has too
    many checks under way: it may try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


@attrs.define(eq=False)
class FailedSignIns:
    """Wrong credentials per address over the last FAILURE_WINDOW seconds,
    and the password checks under way from each; says when an address must
    wait (`retry_after`)."""

    limit: int
    _failures: dict[str, collections.deque[float]] = attrs.field(factory=dict)
    _checking: collections.Counter[str] = attrs.field(factory=collections.Counter)

    def retry_after(self, source: str, now: float) -> int | None:
        """Seconds ``source`` must wait before a new check; None: none."""
        failures = self._recent(source, now)
        if len(failures) >= self.limit:
            return max(1, math.ceil(failures[0] + FAILURE_WINDOW - now))
        if (self._checking[source] >= MAX_CHECKING_PER_ADDRESS
                or len(failures) + self._checking[source] >= self.limit):
            return 1  # (until a check under way is done)
        return None

    def started(self, source: str) -> None:
        self._checking[source] += 1

    def ended(self, source: str, failed: bool, now: float) -> None:
        self._checking[source] -= 1
        if not self._checking[source]:
            del self._checking[source]
        if failed:
            self.failed(source, now)

    def failed(self, source: str, now: float) -> None:
        if source not in self._failures and len(self._failures) >= MAX_ADDRESSES:
            for old in [old for old in self._failures if not self._recent(old, now)]:
                del self._failures[old]
            if len(self._failures) >= MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]
        self._failures.setdefault(source, collections.deque()).append(now)

    def _recent(self, source: str, now: float) -> collections.deque[float]:
        failures = self._failures.get(source)
        if failures is None:
            return collections.deque()
        while failures and failures[0] <= now - FAILURE_WINDOW:
            failures.popleft()
        if not failures:
            del self._failures[source]
        return failures


class Gate:
    """Checks a request's credentials against http.auth: a password once
    checked, and the token, at once; a new password in a thread, at most
    MAX_CHECKING at once (MAX_CHECKING_PER_ADDRESS from one address), the
    same one asked for at once checked once; an address that sent
    ``max_failures_per_minute`` wrong ones in a minute is refused without
    a check until the oldest is a minute old."""

    def __init__(self, users: dict[str, str], token: str | None,
                 run_blocking: Callable[..., Deferred[Any]], now: Callable[[], float],
                 max_failures_per_minute: int = 10, directory: Directory | None = None) -> None:
        # http.auth.users (admins), by name: their password hashes; they
        # come before the index database's users of the same name.
        self._users = users
        self.directory = directory
        # Told of each password checked (its user's name as sent, the
        # address, whether it matched): the audit trail's sign-ins.
        self.on_checked: Callable[[str, str, bool], None] | None = None
        self._token = None if token is None else token.encode("ascii")
        self._run_blocking = run_blocking
        self.now = now
        self._key = os.urandom(32)
        self._remembered: set[bytes] = set()
        self._checking = 0
        self._failures = FailedSignIns(max_failures_per_minute)
        # The checks under way, by what their password is remembered by:
        # each waiting request's Deferred.
        self._pending: dict[bytes, list[Deferred[bool]]] = {}
        # Refusals, logged once a minute per address and reason.
        self.refusals = RefusalLog(interval=FAILURE_WINDOW)
        # Unknown users are checked against this, so that the time taken
        # does not tell which user names exist.
        self._decoy = decoy_hash(_iterations(users))
        self._decoys = {_iterations(users): self._decoy}

    def users_now(self) -> Deferred[dict[str, User]]:
        """The index database's users (none without a directory)."""
        return succeed({}) if self.directory is None else self.directory.current()

    def requires_credentials(self, users: dict[str, User]) -> bool:
        """Whether a request needs credentials, with ``users`` in the index
        database: once any user or the token is set."""
        return bool(self._users) or self._token is not None or bool(users)

    def session_identity(self, name: str, users: dict[str, User]) -> Identity | None:
        """A session's user as they are now (None: no longer a user)."""
        if name in self._users:
            return Identity(name, "session")
        user = users.get(name)
        if user is None or self.directory is None:
            return None
        return attrs.evolve(self.directory.identity(user), scheme="session")

    def by_config(self, request: Request) -> bool:
        """Whether the request's credentials are http.auth's: its token, or
        one of its users (who come before the index's of the same name)."""
        header = request.getHeader(b"authorization")
        token = bearer_token(header)
        if token is not None:
            return self._token_matches(token)
        credentials = basic_credentials(header)
        return credentials is not None and credentials[0] in self._users

    def open_now(self) -> bool:
        """Whether no credentials are needed, as last known (False while
        the index database's users are not known yet)."""
        if self.directory is None:
            return not self.requires_credentials({})
        known = self.directory.users
        return known is not None and not self.requires_credentials(known)

    def _hashes(self, users: dict[str, User]) -> dict[str, str]:
        return {**{name: user.password_hash for name, user in users.items()}, **self._users}

    def _identity(self, name: str, users: dict[str, User]) -> Identity:
        if name in self._users or self.directory is None:
            return Identity(name, "basic")
        return self.directory.identity(users[name])

    @property
    def challenge(self) -> bytes:
        schemes = []
        if self._users or (self.directory is not None and self.directory.users):
            schemes.append(b'Basic realm="recsvc", charset="UTF-8"')
        if self._token is not None:
            schemes.append(b'Bearer realm="recsvc"')
        return b", ".join(schemes)

    def admits(self, request: Request) -> Deferred[Identity | None]:
        """Who the request's valid credentials are, or None; fails with
        TooManyFailures when its address must wait, Busy when too many
        passwords are being checked."""
        return self.users_now().addCallback(lambda users: self.admits_among(users, request))

    def admits_among(self, users: dict[str, User],
                     request: Request) -> Deferred[Identity | None]:
        """`admits`, with ``users`` the index database's."""
        hashes = self._hashes(users)
        header = request.getHeader(b"authorization")  # (bytes for a bytes name)
        source = source_of(getattr(request.getClientAddress(), "host", None) or "-")
        token = bearer_token(header)
        if token is not None and self._token_matches(token):
            return succeed(TOKEN_HOLDER)
        if token is not None and self.directory is not None:
            user = _user_of_token(token, users)
            if user is not None:
                return succeed(attrs.evolve(self.directory.identity(user), scheme="bearer"))
        credentials = basic_credentials(header) if token is None else None
        if token is None and (credentials is None or not hashes):
            return succeed(None)  # (no credentials: a browser's first request)
        if credentials is not None and self._seen(*credentials, hashes) in self._remembered:
            return succeed(self._identity(credentials[0], users))
        wait = self._failures.retry_after(source, self.now())
        if wait is not None:
            return fail(TooManyFailures(wait))
        if credentials is None:  # a wrong token
            self._failures.failed(source, self.now())
            return succeed(None)
        name, password = credentials
        return self._check(name, password, source, hashes).addCallback(
            lambda matches: self._identity(name, users) if matches else None)

    def _check(self, name: str, password: str, source: str,
               hashes: dict[str, str]) -> Deferred[bool]:
        """Whether ``password`` is ``name``'s (False for an unknown name,
        checked against the decoy all the same), in a thread; a check of
        the same under way is shared. Fails with Busy."""
        seen = self._seen(name, password, hashes)
        waiting = self._pending.get(seen)
        mine: Deferred[bool] = Deferred()
        if waiting is not None:
            waiting.append(mine)
            return mine
        if self._checking >= MAX_CHECKING:
            return fail(Busy())
        self._checking += 1
        self._failures.started(source)
        waiting = self._pending[seen] = [mine]
        known = name in hashes

        def checked(result: bool | Failure) -> None:
            self._checking -= 1
            del self._pending[seen]
            matches = result is True and known
            self._failures.ended(source, not matches, self.now())
            if self.on_checked is not None and not isinstance(result, Failure):
                self.on_checked(name[:MAX_NAME_SHOWN], source, matches)
            if matches:
                if len(self._remembered) >= REMEMBERED:
                    self._remembered.clear()
                self._remembered.add(seen)
            for each in waiting:
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(matches)
        self._run_blocking(verify_password, password,
                           hashes.get(name) or self._decoy_for(hashes)).addBoth(checked)
        return mine

    def note_refusal(self, peer: str, reason: str) -> tuple[str, int] | None:
        """Whether a refusal is logged now (once a minute per address and
        reason): the peer to name and how many it stands for, or None."""
        return self.refusals.note(source_of(peer), reason, self.now())


    def admits_at_once(self, request: Request) -> bool:
        """Whether the request's credentials are good without a password
        check: the token, or a password checked before."""
        header = request.getHeader(b"authorization")
        token = bearer_token(header)
        if token is not None:
            return self._token_matches(token)
        credentials = basic_credentials(header)
        users = {} if self.directory is None else self.directory.users or {}
        return (credentials is not None
                and self._seen(*credentials, self._hashes(users)) in self._remembered)

    def _token_matches(self, token: bytes) -> bool:
        return self._token is not None and hmac.compare_digest(token, self._token)

    def _decoy_for(self, hashes: dict[str, str]) -> str:
        """A decoy as costly as the users' hashes (an unknown name is
        checked as long as a known one)."""
        iterations = _iterations(hashes)
        if iterations not in self._decoys:
            self._decoys[iterations] = decoy_hash(iterations)
        return self._decoys[iterations]

    def _seen(self, name: str, password: str, hashes: dict[str, str]) -> bytes:
        """What a password checked is remembered by (a keyed hash of it with
        the user's hash: a new password forgets the old)."""
        hashed = hashes.get(name, self._decoy)
        return hmac.digest(self._key, f"{name}\0{password}\0{hashed}".encode("utf-8"), "sha256")


class GuardedResource(Resource):
    """``inner``, for requests the gate admits (their ``identity`` set to
    who they are: for the access log, the rights and the scope); others
    get ``refusal(401, message)`` (a resource that answers with that
    status). Paths in ``open_paths`` (first segments, such as b"healthz")
    need no credentials. Where the gate asks for none (no user, no token:
    the default), every request is let in as OPEN whose Host
    ``host_answered`` (else 421: see recsvc.web.site.host_allowed)."""

    def __init__(self, inner: IResource, gate: Gate, open_paths: frozenset[bytes],
                 refusal: Callable[[int, str], IResource],
                 host_answered: Callable[[Request], bool] = lambda request: True,
                 sessions: Any = None, answer: Callable[[int, Any], IResource] | None = None
                 ) -> None:
        super().__init__()
        self._inner, self._gate, self._open = inner, gate, open_paths
        self._refusal = refusal
        self._host_answered = host_answered
        # The page's sign-in sessions (recsvc.web.sessions.SessionKeeper),
        # and how a JSON answer is made; None: basic authentication only.
        self._sessions = sessions
        self._answer = answer

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        request.prepath.pop()
        request.postpath.insert(0, path)
        if path in self._open:
            return _Traversed(self._inner)
        if self._sessions is not None and path in (b"login", b"logout"):
            return self._signing(path, request)
        token = None if self._sessions is None else session_token(request)
        if token is not None and request.getHeader(b"authorization") is None:
            return DeferredResource(self._sessions.find(token).addCallback(
                self._in_session, token, request).addErrback(self._users_unknown, request))
        if self._gate.by_config(request):
            # (The token, or an http.auth user: the index's users not needed.)
            return DeferredResource(self._gate.admits_among({}, request).addCallbacks(
                self._admitted, self._busy, (request,), errbackArgs=(request,)))
        return DeferredResource(self._gate.users_now().addCallbacks(
            self._enter, self._users_unknown, (request,), errbackArgs=(request,)))

    def _in_session(self, session: Any, token: str, request: Request) -> Any:
        """A request with a session's cookie: its user's identity, if the
        session and the user are still there; a state-changing request
        must also carry the session's CSRF token."""
        def entered(users: dict[str, User]) -> Any:
            if session is None or not self._gate.requires_credentials(users):
                return self._enter(users, request)
            identity = self._gate.session_identity(session.user, users)
            if identity is None:
                return self._enter(users, request)  # (the user was removed)
            if request.method not in (b"GET", b"HEAD") and not csrf_ok(request, token):
                return self._refusal(403, "this request needs the session's X-CSRF-Token "
                                          "(the recsvc_csrf cookie's value)")
            request.identity = identity
            return _Traversed(self._inner)
        return self._gate.users_now().addCallback(entered)

    def _signing(self, path: bytes, request: Request) -> IResource:
        """/login (GET: the page; POST: sign in) and /logout (POST)."""
        if path == b"login" and request.method != b"POST":
            return LoginPage()
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            return self._refusal(405, f"/{path.decode()} takes POST")
        if path == b"login":
            return DeferredResource(self._gate.users_now().addCallbacks(
                self._sign_in, self._users_unknown, (request,), errbackArgs=(request,)))
        return DeferredResource(self._sign_out(request))

    def _sign_in(self, users: dict[str, User], request: Request) -> Any:
        if not self._gate.requires_credentials(users):
            return self._refusal(400, "no user is set: the page needs no sign-in")

        def admitted(identity: Identity | None) -> Any:
            if identity is None:
                if request.getHeader(b"authorization") is not None:
                    self._logged(request, "wrong credentials")
                return self._refusal(401, "wrong user name or password")
            if identity.scheme != "basic":
                return self._refusal(400, "the token begins no session: send it with each "
                                          "request")
            source = getattr(request.getClientAddress(), "host", None) or "-"
            return self._sessions.begin(identity.user, source).addCallback(began, identity)

        def began(made: tuple[str, Any], identity: Identity) -> Any:
            token, session = made
            set_session_cookies(request, token, self._sessions.lifetime)
            request.identity = identity
            return self._answer(200, {"user": identity.user, "role": identity.role,
                                      "ends": iso_utc(session.ends)})
        return self._gate.admits_among(users, request).addCallbacks(
            admitted, self._busy, errbackArgs=(request,))

    def _sign_out(self, request: Request) -> Deferred[Any]:
        token = session_token(request)
        if token is None:
            return succeed(self._refusal(401, "no session to end"))

        def found(session: Any) -> Any:
            if session is None:
                clear_session_cookies(request)
                return self._answer(200, {"signed_out": True})
            if not csrf_ok(request, token):
                return self._refusal(403, "this request needs the session's X-CSRF-Token "
                                          "(the recsvc_csrf cookie's value)")
            clear_session_cookies(request)
            source = getattr(request.getClientAddress(), "host", None) or "-"
            request.identity = Identity(session.user, "session")
            return self._sessions.end(token, session.user, source).addCallback(
                lambda _: self._answer(200, {"signed_out": True}))
        return self._sessions.find(token).addCallback(found)

    def _enter(self, users: dict[str, User], request: Request) -> Any:
        if not self._gate.requires_credentials(users):
            if not self._host_answered(request):
                return self._refusal(421, "this server does not answer for that host name "
                                          "(see http.allowed_hosts)")
            request.identity = OPEN
            return _Traversed(self._inner)
        return self._gate.admits_among(users, request).addCallbacks(
            self._admitted, self._busy, (request,), errbackArgs=(request,))

    def _users_unknown(self, failure: Failure, request: Request) -> IResource:
        request.setHeader(b"retry-after", b"5")
        return self._refusal(503, "the users cannot be read from the index: try again shortly")

    def _admitted(self, identity: Identity | None, request: Request) -> IResource:
        if identity is not None:
            request.identity = identity
            return _Traversed(self._inner)
        if request.getHeader(b"authorization") is not None:
            # (A browser's first request carries none: not worth a line.)
            self._logged(request, "wrong credentials")
        elif (self._sessions is not None and request.postpath[:1] == [b""]
              and request.method in (b"GET", b"HEAD")):
            return _SignInFirst()  # (the page: its sign-in page, not a browser's prompt)
        if self._sessions is None or request.getCookie(SESSION_COOKIE) is None:
            # (A page whose session ended signs in on its own page again: a
            # browser's prompt would keep its answer past a sign-out.)
            request.setHeader(b"www-authenticate", self._gate.challenge)
        return self._refusal(401, "authentication required")

    def _busy(self, failure: Failure, request: Request) -> IResource:
        if failure.check(TooManyFailures):
            self._logged(request, "too many failures")
            request.setHeader(b"retry-after", str(failure.value.retry_after).encode("ascii"))
            return self._refusal(429, "too many failed sign-ins from this address: "
                                      "try again after Retry-After seconds")
        failure.trap(Busy)
        request.setHeader(b"retry-after", b"1")
        return self._refusal(503, "too many sign-ins at once: try again shortly")

    def _logged(self, request: Request, reason: str) -> None:
        """A line for a refused sign-in, once a minute per address and reason."""
        peer = getattr(request.getClientAddress(), "host", None) or "-"
        said = self._gate.note_refusal(peer, reason)
        if said is not None:
            _log.warn("HTTP sign-ins from {peer} refused: {reason} "
                      "({count} since the last such line)",
                      peer=said[0], reason=reason, count=said[1])

    def render(self, request: Request) -> bytes:  # pragma: no cover - never a leaf
        raise AssertionError("GuardedResource is only traversed")


class _SignInFirst(Resource):
    """The page asked for without a session: to the sign-in page."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"location", b"/login")
        request.setHeader(b"cache-control", b"no-store")
        return b""


class _Traversed(Resource):
    """Resolves the request's remaining path against ``inner`` (its first
    segment was put back on postpath)."""

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self._inner = inner

    def render(self, request: Request) -> Any:
        return getChildForRequest(self._inner, request).render(request)

