"""Which index ``index.database`` names: a PostgreSQL URL (shared by
several recorder nodes) or the path of an SQLite file (the embedded
default)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any
from urllib.parse import unquote

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
# What a URL's password is shown as, in messages and logs.
HIDDEN = "***"


def is_postgresql(database: str) -> bool:
    """Whether ``database`` names a PostgreSQL database, not an SQLite file."""
    return database.startswith(POSTGRESQL_SCHEMES)


def shown(database: str) -> str:
    """``database`` as a message or a log line may show it: a URL without
    its password (in its user part or its ``password=`` parameter).

    libpq reads a password with almost anything in it (``#``, ``?``, a
    space, a ``%`` not followed by two hex digits, ``/`` split elsewhere):
    rather than parse the URL as it may or may not, everything between the
    user's name and the last ``@`` is hidden, as is every ``password=``
    parameter's value (its name percent-decoded, as libpq reads it)."""
    if not is_postgresql(database):
        return database
    scheme, _, rest = database.partition("://")
    rest = _PARAMETER.sub(_hide_password, rest)
    if "@" in rest:
        credentials, _, rest = rest.rpartition("@")
        user, colon, _ = credentials.partition(":")
        rest = f"{user}{colon and ':' + HIDDEN}@{rest}"
    return f"{scheme}://{rest}"


# A URL's parameter: what precedes it, its name, its value.
_PARAMETER = re.compile(r"([?&])([^=&?]*)=([^&]*)")


def _hide_password(parameter: re.Match[str]) -> str:
    if unquote(parameter.group(2)).strip().lower() != "password":
        return parameter.group(0)
    return f"{parameter.group(1)}{parameter.group(2)}={HIDDEN}"


def without_password(text: str, database: str) -> str:
    """``text`` (an error's reason) without ``database``'s password in it,
    as written in the URL or percent-decoded, wherever the URL's parsing
    (libpq's, or none) put it; each is shown as HIDDEN."""
    if not is_postgresql(database):
        return text
    found: set[str] = set()
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        pass
    else:
        try:
            found.add(str(conninfo_to_dict(database).get("password") or ""))
        except Exception:  # (psycopg.ProgrammingError: not a URL it reads)
            pass
    rest = database.partition("://")[2]
    # The user part as libpq reads it (up to an "@" before any "/") and
    # up to the last "@"; and every password= parameter.
    first = rest.split("/", 1)[0]
    for credentials in (first.partition("@")[0] if "@" in first else "",
                        rest.rpartition("@")[0]):
        found.add(credentials.partition(":")[2])
    for parameter in _PARAMETER.finditer(rest):
        if unquote(parameter.group(2)).strip().lower() == "password":
            found.add(parameter.group(3))
    for password in sorted(found | {unquote(password) for password in found},
                           key=len, reverse=True):
        if password:
            text = text.replace(password, HIDDEN)
    return text


class CannotOpenIndex(Exception):
    """The index could not be opened (the message says why)."""


def open_index(database: str, read_only: bool = False, node: str = "",
               connections: int = 2, wait: float | None = None) -> Any:
    """The index (an IIndex) at ``database``, opened (and, unless
    ``read_only``, created or migrated) for the recorder node ``node``:
    what it indexes, and what `catch_up` sees and forgets, is that node's
    own (a shared PostgreSQL index holds every node's; an SQLite file is
    one node's). A PostgreSQL index keeps a pool of up to ``connections``
    connections, for as many threads at once (an SQLite index is used by
    one thread at a time), each waited for ``wait`` seconds at most (None:
    the backend's default). Raises CannotOpenIndex."""
    if is_postgresql(database):
        try:
            from recsvc.index.postgres import PostgresIndex
        except ImportError as error:
            raise CannotOpenIndex(
                f"{shown(database)}: a PostgreSQL index needs psycopg 3 and psycopg_pool "
                f"(pip install 'recsvc[postgresql]'): {error}") from None
        waiting = {} if wait is None else {"wait": wait}
        return PostgresIndex.open(database, read_only=read_only, node=node,
                                  connections=connections, **waiting)
    from recsvc.index.sqlite import SqliteIndex

    try:
        return SqliteIndex.open(database, read_only=read_only, node=node)
    except (OSError, sqlite3.Error) as error:
        raise CannotOpenIndex(str(error)) from error


def index_errors() -> tuple[type[BaseException], ...]:
    """What an index's methods raise when its database fails them."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg  # (psycopg_pool's PoolTimeout is a psycopg.Error)
    except ImportError:
        pass
    else:
        errors.append(psycopg.Error)
    return tuple(errors)
