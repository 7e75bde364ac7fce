"""Which index ``index.database`` names: a PostgreSQL URL (shared by
several recorder nodes) or the path of an SQLite file (the embedded
default)."""

from __future__ import annotations

import sqlite3
from typing import Any

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def is_postgresql(database: str) -> bool:
    """Whether ``database`` names a PostgreSQL database, not an SQLite file."""
    return database.startswith(POSTGRESQL_SCHEMES)


class CannotOpenIndex(Exception):
    """The index could not be opened (the message says why)."""


def open_index(database: str, read_only: bool = False) -> Any:
    """The index (an IIndex) at ``database``, opened (and, unless
    ``read_only``, created or migrated). Raises CannotOpenIndex."""
    if is_postgresql(database):
        from recsvc.index.postgres import PostgresIndex

        return PostgresIndex.open(database, read_only=read_only)
    from recsvc.index.sqlite import SqliteIndex

    try:
        return SqliteIndex.open(database, read_only=read_only)
    except (OSError, sqlite3.Error) as error:
        raise CannotOpenIndex(str(error)) from error


def index_errors() -> tuple[type[BaseException], ...]:
    """What an index's methods raise when its database fails them."""
    errors: list[type[BaseException]] = [sqlite3.Error]
    try:
        import psycopg
    except ImportError:
        pass
    else:
        errors.append(psycopg.Error)
    return tuple(errors)
