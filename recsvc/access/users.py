"""Users as the index database keeps them (IUsers: SQLite's and
PostgreSQL's backends), and what makes one valid."""

from __future__ import annotations

import re
from typing import Any, Sequence

import attrs
from zope.interface import Interface

from recsvc.access.roles import UNSCOPED, check_role
from recsvc.access.scopes import ALL, Scope, parse_scopes
from recsvc.passwords import check_password_hash

# The shortest password a user may be given (the CLI's and the page's).
SHORTEST_PASSWORD = 8
# A user's name: what basic authentication and the login page carry (no
# colon, no space), and what the audit trail shows.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a user name (letters, digits, '.', '_', '@', '-'; "
                         f"at most 64; a letter or digit first)")
    return name


def check_scopes(role: str, scopes: Sequence[Scope]) -> tuple[Scope, ...]:
    """The scopes a user of ``role`` may have: none for an admin or an
    auditor (an admin reaches every recording, an auditor none); at least
    one for the others (``all`` for every recording)."""
    if role in UNSCOPED:
        if scopes:
            raise ValueError(f"an {role} has no scope (an admin reaches every recording, "
                             f"an auditor none)")
        return ()
    if not scopes:
        raise ValueError(f"a {role} needs a scope: group:NAME, device:MAC, number:DIGITS or "
                         f"all")
    if ALL in scopes and len(scopes) > 1:
        raise ValueError("the scope all reaches every recording: it goes alone")
    return tuple(scopes)


def _password_hash(value: str) -> str:
    check_password_hash(value)
    return value


@attrs.frozen
class User:
    """A user: ``role`` (recsvc.access.roles), the scopes that say which
    recordings they reach, their password's hash (recsvc.passwords), when
    they were added and last changed (ISO times, UTC), and their API
    token's hash."""

    name: str = attrs.field(converter=check_user_name)
    role: str = attrs.field(converter=check_role)
    scopes: tuple[Scope, ...] = attrs.field(converter=tuple)
    password_hash: str = attrs.field(repr=False, converter=_password_hash)
    created_at: str
    changed_at: str
    # The SHA-256 (hex) of the user's API token ("": none): a script sends
    # the token as a bearer token, with the user's rights and scope.
    token_hash: str = attrs.field(default="", repr=False)

    @scopes.validator
    def _fit_the_role(self, _: object, scopes: tuple[Scope, ...]) -> None:
        check_scopes(self.role, scopes)


def scopes_text(scopes: Sequence[Scope]) -> str:
    """Scopes as a backend keeps them: written, space-separated."""
    return " ".join(str(scope) for scope in scopes)


def scopes_of_text(text: str) -> tuple[Scope, ...]:
    return parse_scopes(text.split())


# The columns a backend keeps a user in, in this order (`row_of`, `user_of`).
COLUMNS = ("name", "role", "scopes", "password_hash", "created_at", "changed_at",
           "token_hash")


def row_of(user: User) -> tuple[str, ...]:
    return (user.name, user.role, scopes_text(user.scopes), user.password_hash,
            user.created_at, user.changed_at, user.token_hash)


def user_of(row: Sequence[str]) -> User:
    name, role, scopes, password_hash, created_at, changed_at, hashed = row
    return User(name, role, scopes_of_text(scopes), password_hash, created_at, changed_at,
                hashed)


def users_or_reasons(rows: Sequence[Sequence[str]]) -> list[tuple[str, User | str]]:
    """Each row's name with its user, or with why it is none (a role of a
    later version, a row changed by hand)."""
    found: list[tuple[str, User | str]] = []
    for row in rows:
        try:
            found.append((row[0], user_of(row)))
        except (ValueError, TypeError) as error:
            found.append((str(row[0]), str(error)))
    return found


class UserExists(Exception):
    """A user of that name is there already."""


class NoSuchUser(Exception):
    """No user of that name."""


class IUsers(Interface):
    """The users an index database keeps. Every method blocks (the index's
    thread runs them)."""

    def users() -> list[User]:
        """Every user, by name."""

    def user_rows() -> list[tuple[str, User | str]]:
        """Every row, by name: its user, or why it is none (users_or_reasons)."""

    def user(name: str) -> User | None:
        """The user of that name, or None."""

    def add_user(user: User, audit: Any = None) -> None:
        """Keep a new user; UserExists if the name is taken. ``audit`` (an
        AuditEvent): its row in the audit trail, in the same transaction
        (the change is made with it, or neither)."""

    def replace_user(user: User, audit: Any = None) -> None:
        """Keep ``user`` in place of the user of its name (its role, scopes,
        password or times changed), with ``audit`` as add_user; a new
        password ends the user's sessions (recsvc.access.sessions) in the
        same transaction; NoSuchUser if there is none."""

    def remove_user(name: str, audit: Any = None) -> None:
        """Forget a user and end their sessions, with ``audit`` as
        add_user; NoSuchUser if there is none."""
