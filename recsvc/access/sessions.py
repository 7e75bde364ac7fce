"""Sign-in sessions of the page: a random token in a cookie (HttpOnly,
SameSite=Strict), kept in the index database only as its hash (so that
every node knows it, and a copy of the database signs no one in), with
the user and when it ends; and the token against cross-site requests
(CSRF) that goes with it, derived from it. Pure: the backends keep the
sessions (ISessions), the web side sets the cookies."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import attrs
from zope.interface import Interface

# How long a session lasts from its sign-in (then the user signs in again).
SESSION_SECONDS = 8 * 3600


@attrs.frozen
class Session:
    """A session as kept: its token's hash, its user, when it began and
    when it ends (seconds since the epoch)."""

    token_hash: str
    user: str
    began: float
    ends: float


def new_token() -> str:
    """A session's token: 32 random bytes, hex."""
    return os.urandom(32).hex()


def token_hash(token: str) -> str:
    """What the database keeps of a token (SHA-256, hex)."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def csrf_of(token: str) -> str:
    """The CSRF token that goes with a session's token: a state-changing
    request must carry it in X-CSRF-Token (a page elsewhere cannot read it)."""
    return hmac.new(token.encode("ascii", "replace"), b"recsvc csrf", "sha256").hexdigest()


def csrf_matches(token: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(csrf_of(token), sent)


def looks_like_token(text: str) -> bool:
    return len(text) == 64 and all(character in "0123456789abcdef" for character in text)


class ISessions(Interface):
    """The sessions an index database keeps. Every method blocks."""

    def add_session(session: Session, now: float, audit: Any = None) -> None:
        """Keep a new session (the ended ones are forgotten), with ``audit``'s
        row in the same transaction."""

    def session(token_hash: str) -> Session | None:
        """The session of that token's hash, or None."""

    def remove_session(token_hash: str, audit: Any = None) -> None:
        """End a session (nothing if there is none), with ``audit``'s row."""

    def end_sessions_of(user: str) -> int:
        """End every session of ``user``'s (a new password, the user
        removed); how many there were."""
