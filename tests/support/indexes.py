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

    def open_test_index(self: Any) -> Any:
        found_in = SqliteIndex.open(os.path.join(self.mktemp(), "index.sqlite3"))
        self.addCleanup(found_in.close)
        return found_in
