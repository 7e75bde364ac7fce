"""The index backends the contract suites run against: a test case mixes
in one of these, which gives it ``open_test_index()``, a new, empty index
of its own (closed at the test's end)."""

from __future__ import annotations

import os
from typing import Any

from recsvc.index.sqlite import SqliteIndex


class OnSqlite:
    """The embedded default: an SQLite file in the test's folder."""

    backend = "sqlite"

    def open_test_index(self: Any, node: str = "node-a") -> Any:
        found_in = SqliteIndex.open(os.path.join(self.mktemp(), "index.sqlite3"), node=node)
        self.addCleanup(found_in.close)
        return found_in


class OnPostgres:
    """A shared index: a database of its own on this test process's
    PostgreSQL server (tests/support/postgres.py; skipped, saying why,
    where there is none)."""

    backend = "postgresql"

    def new_database(self: Any) -> str:
        """The URL of a new, empty database of this test's own."""
        from tests.support.postgres import cluster

        return cluster().database()

    def open_test_index(self: Any, node: str = "node-a", database: str | None = None) -> Any:
        """A new index (or, given ``database``, the index there) kept by ``node``."""
        try:
            from recsvc.index.postgres import PostgresIndex
        except ImportError as error:
            from twisted.trial.unittest import SkipTest

            raise SkipTest(f"psycopg is not installed (the test extra has it): {error}")
        found_in = PostgresIndex.open(database or self.new_database(), node=node)
        self.addCleanup(found_in.close)
        return found_in
