"""Who may use the HTTP side (http.auth): basic-auth users with hashed
passwords, or a bearer token. Password hashes are PBKDF2-SHA256 made by
`recsvc hash-password`; checking one takes tens of milliseconds, so it runs
in a thread and a password once checked is remembered for the process
(keyed by a keyed hash, never the password itself)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import Request
from twisted.web.util import DeferredResource

SCHEME = "pbkdf2_sha256"
ITERATIONS = 200_000
# At most this many checked passwords are remembered (then it starts over).
REMEMBERED = 1024
# At most this many password checks wait or run at once; beyond them a
# request is answered "busy" at once (a flood of guesses costs the CPU only
# this much, and never the recordings' threads: see recsvc.tap).
MAX_CHECKING = 8

_log = Logger()


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (base64), as http.auth.users wants."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join((SCHEME, str(iterations), _b64(salt), _b64(digest)))


def check_password_hash(hashed: str) -> tuple[int, bytes, bytes]:
    """The iterations, salt and digest of a hash. Raises ValueError."""
    parts = hashed.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise ValueError(f"not a {SCHEME}$... hash (make one with `recsvc hash-password`)")
    try:
        iterations = int(parts[1])
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(
            parts[3], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("the hash is damaged (make one with `recsvc hash-password`)") from None
    if not 1_000 <= iterations <= 10_000_000 or len(salt) < 8 or len(digest) != 32:
        raise ValueError("the hash is damaged (make one with `recsvc hash-password`)")
    return iterations, salt, digest


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed``. Blocking (tens of ms)."""
    iterations, salt, digest = check_password_hash(hashed)
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(candidate, digest)


def _iterations(users: dict[str, str]) -> int:
    """The iterations of the users' hashes (the decoy's costs as much)."""
    for hashed in users.values():
        return check_password_hash(hashed)[0]
    return ITERATIONS


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


@attrs.frozen
class Identity:
    """Who the gate let in: a user of http.auth.users, or the bearer token."""

    user: str  # the user's name; "-" for the token
    scheme: str  # "basic" or "token"


TOKEN_HOLDER = Identity("-", "token")


class Busy(Exception):
    """Too many password checks under way: try again shortly."""


class Gate:
    """Checks a request's credentials against http.auth."""

    def __init__(self, users: dict[str, str], token: str | None,
                 run_blocking: Callable[..., Deferred[Any]]) -> None:
        self._users = users
        self._token = None if token is None else token.encode("ascii")
        self._run_blocking = run_blocking
        self._key = os.urandom(32)
        self._remembered: set[bytes] = set()
        self._checking = 0
        # Unknown users are checked against this, so that the time taken
        # does not tell which user names exist.
        self._decoy = hash_password(os.urandom(16).hex(), _iterations(users))

    @property
    def challenge(self) -> bytes:
        schemes = []
        if self._users:
            schemes.append(b'Basic realm="recsvc", charset="UTF-8"')
        if self._token is not None:
            schemes.append(b'Bearer realm="recsvc"')
        return b", ".join(schemes)

    def admits(self, request: Request) -> Deferred[Identity | None]:
        """Who the request's valid credentials are, or None; fails with
        Busy when too many are being checked."""
        header = request.getHeader(b"authorization")  # (bytes for a bytes name)
        token = bearer_token(header)
        if token is not None:
            return succeed(TOKEN_HOLDER if self._token_matches(token) else None)
        credentials = basic_credentials(header)
        if credentials is None or not self._users:
            return succeed(None)
        name, password = credentials
        known = name in self._users
        hashed = self._users[name] if known else self._decoy
        seen = self._seen(name, password)
        if seen in self._remembered:
            return succeed(Identity(name, "basic"))
        if self._checking >= MAX_CHECKING:
            return fail(Busy())
        self._checking += 1

        def checked(matches: bool) -> Identity | None:
            self._checking -= 1
            if not (matches and known):
                return None
            if len(self._remembered) >= REMEMBERED:
                self._remembered.clear()
            self._remembered.add(seen)
            return Identity(name, "basic")

        def failed(failure: Failure) -> Failure:
            self._checking -= 1
            return failure
        return self._run_blocking(verify_password, password, hashed).addCallbacks(checked, failed)


    def admits_at_once(self, request: Request) -> bool:
        """Whether the request's credentials are good without a password
        check: the token, or a password checked before."""
        header = request.getHeader(b"authorization")
        token = bearer_token(header)
        if token is not None:
            return self._token_matches(token)
        credentials = basic_credentials(header)
        return credentials is not None and self._seen(*credentials) in self._remembered

    def _token_matches(self, token: bytes) -> bool:
        return self._token is not None and hmac.compare_digest(token, self._token)

    def _seen(self, name: str, password: str) -> bytes:
        """What a password checked is remembered by (a keyed hash)."""
        hashed = self._users.get(name, self._decoy)
        return hmac.digest(self._key, f"{name}\0{password}\0{hashed}".encode("utf-8"), "sha256")


class GuardedResource(Resource):
    """``inner``, for requests the gate admits (their ``identity`` set to
    who they are, for the access log); others get ``refusal(401,
    message)`` (a resource that answers with that status). Paths in
    ``open_paths`` (first segments, such as b"healthz") need no credentials."""

    def __init__(self, inner: IResource, gate: Gate, open_paths: frozenset[bytes],
                 refusal: Callable[[int, str], IResource]) -> None:
        super().__init__()
        self._inner, self._gate, self._open = inner, gate, open_paths
        self._refusal = refusal

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        request.prepath.pop()
        request.postpath.insert(0, path)
        if path in self._open:
            return _Traversed(self._inner)
        admitted = self._gate.admits(request)
        return DeferredResource(admitted.addCallbacks(
            self._admitted, self._busy, (request,), errbackArgs=(request,)))

    def _admitted(self, identity: Identity | None, request: Request) -> IResource:
        if identity is not None:
            request.identity = identity
            return _Traversed(self._inner)
        if request.getHeader(b"authorization") is not None:
            # (A browser's first request carries none: not worth a line.)
            peer = request.getClientAddress()
            _log.warn("HTTP {method} {uri} from {peer} refused: {reason}",
                      method=request.method.decode("ascii", "replace"),
                      uri=request.uri.decode("ascii", "replace")[:200],
                      peer=getattr(peer, "host", "?"), reason="wrong credentials")
        request.setHeader(b"www-authenticate", self._gate.challenge)
        return self._refusal(401, "authentication required")

    def _busy(self, failure: Failure, request: Request) -> IResource:
        failure.trap(Busy)
        request.setHeader(b"retry-after", b"1")
        return self._refusal(503, "too many sign-ins at once: try again shortly")

    def render(self, request: Request) -> bytes:  # pragma: no cover - never a leaf
        raise AssertionError("GuardedResource is only traversed")


class _Traversed(Resource):
    """Resolves the request's remaining path against ``inner`` (its first
    segment was put back on postpath)."""

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self._inner = inner

    def render(self, request: Request) -> Any:
        return getChildForRequest(self._inner, request).render(request)

