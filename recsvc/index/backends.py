"""Which index ``index.database`` names: a PostgreSQL URL (shared by
several recorder nodes) or the path of an SQLite file (the embedded
default)."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")
# What a URL's password is shown as, in messages and logs.
HIDDEN = "***"


def is_postgresql(database: str) -> bool:
    """Whether ``database`` names a PostgreSQL database, not an SQLite file."""
    return database.startswith(POSTGRESQL_SCHEMES)


def shown(database: str) -> str:
    """``database`` as a message or a log line may show it: a URL without
    its password (in its user part or its ``password=`` parameter)."""
    if not is_postgresql(database):
        return database
    try:
        parts = urlsplit(database)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":" + HIDDEN
            netloc = f"{user}@{host}"
        query = urlencode([(key, HIDDEN if key == "password" else value)
                           for key, value in parse_qsl(parts.query, keep_blank_values=True)],
                          safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not a URL urlsplit reads: none of it is shown
        return database.split("://", 1)[0] + "://" + HIDDEN


class CannotOpenIndex(Exception):
    """The index could not be opened (the message says why)."""


def open_index(database: str, read_only: bool = False, node: str = "",
               connections: int = 2) -> Any:
    """The index (an IIndex) at ``database``, opened (and, unless
    ``read_only``, created or migrated) for the recorder node ``node``:
    what it indexes, and what `catch_up` sees and forgets, is that node's
    own (a shared PostgreSQL index holds every node's; an SQLite file is
    one node's). A PostgreSQL index keeps a pool of up to ``connections``
    connections, for as many threads at once (an SQLite index is used by
    one thread at a time). Raises CannotOpenIndex."""
    if is_postgresql(database):
        try:
            from recsvc.index.postgres import PostgresIndex
        except ImportError as error:
            raise CannotOpenIndex(
                f"{shown(database)}: a PostgreSQL index needs psycopg 3 and psycopg_pool "
                f"(pip install 'recsvc[postgresql]'): {error}") from None
        return PostgresIndex.open(database, read_only=read_only, node=node,
                                  connections=connections)
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
