"""The index in SQLite (the embedded default): one file, WAL mode, a schema
migrated in place, and searches that read an index of what they compare,
never every row.

How a search is answered (`SqliteIndex.search`). Text (numbers, names,
devices) that many recordings hold is found at once by walking the order's
index from its start (the newest first, say) and comparing each row, until
the page is full; text that few hold would take that walk through every
row, so after WALK_FIRST rows without a full page the rows holding it are
looked up instead (numbers and names in an FTS5 trigram index, devices in
the table of the devices seen) and sorted. A page far down the order (by
its number) widens the walk as far as the matches seen so far say it
needs, up to WALK_AT_MOST rows (further for text many rows hold:
`recsvc.index.store.walk_then_look_up`, which PostgreSQL's searches share);
a page reached from the one before it (``Search.after``) walks from where
that one ended.
"""

from __future__ import annotations

import math
import os
import sqlite3
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import quote

import attrs
from zope.interface import implementer

from recsvc.access.audit import (
    COLUMNS as AUDIT_COLUMNS, AuditEvent, AuditQuery, AuditRow, IAuditTrail, columns_of,
    next_row,
    row_of_columns)
from recsvc.access.holds import COLUMNS as HOLD_COLUMNS, Hold, IHolds, hold_of
from recsvc.access.holds import row_of as hold_row
from recsvc.access.notes import COLUMNS as NOTE_COLUMNS, INotes, Note, note_of_row
from recsvc.access.notes import row_of as note_row
from recsvc.access.sessions import ISessions, Session
from recsvc.access.users import (
    COLUMNS as USER_COLUMNS, IUsers, NoSuchUser, User, UserExists, row_of, user_of,
    users_or_reasons)
from recsvc.index.numberplan import digits_of
from recsvc.index import store
from recsvc.index.store import (
    IIndex, IndexEntry, Search, Total, after_condition, device_search_key, field_conditions,
    found_row, like_containing, order_key_of, scoped, time_bounds, time_conditions,
    walk_then_look_up)

SCHEMA_VERSION = 6

_RECORDINGS = """CREATE TABLE {name} (
    id INTEGER PRIMARY KEY,         -- stable (VACUUM keeps it): the text index's rowid
    path TEXT NOT NULL UNIQUE,      -- the WAV file, relative to the storage root
    recording_id TEXT NOT NULL,
    device TEXT NOT NULL,           -- the MAC address, 12 lower-case hex digits
    direction TEXT NOT NULL,
    local_number TEXT NOT NULL,
    local_name TEXT NOT NULL,
    remote_number TEXT NOT NULL,
    remote_name TEXT NOT NULL,
    numbers TEXT NOT NULL,          -- both numbers' digits, for substring search
    started_at TEXT NOT NULL,       -- ISO 8601 UTC, as in the sidecar: sorts as time
    duration_s REAL NOT NULL,
    stop_reason TEXT NOT NULL,
    sidecar TEXT NOT NULL,          -- the sidecar's JSON
    sidecar_mtime_ns INTEGER NOT NULL,
    node TEXT NOT NULL DEFAULT ''   -- the recorder node it was recorded on
)"""
# What a search finds text in: numbers (digits anywhere), names and devices,
# through trigrams (any substring of three characters or more, found without
# reading every row). Kept in step with the table by its triggers.
_TEXT_COLUMNS = "numbers, local_name, remote_name, device"
# A column with the MAC separators taken out, as device_search_key takes them out.
_WITHOUT_SEPARATORS = "REPLACE(REPLACE(REPLACE({}, ':', ''), '-', ''), '.', '')"
# A row's local number's digits: the first word of its numbers.
_LOCAL_DIGITS = "substr(numbers, 1, instr(numbers, ' ') - 1)"
# What the text index holds of a row (its device without those separators,
# as device_search_key looks for it).
_TEXT_OF = ("{row}.numbers, {row}.local_name, {row}.remote_name, "
            + _WITHOUT_SEPARATORS.format("{row}.device"))
_TEXT_INDEX = (
    f"CREATE VIRTUAL TABLE recordings_text USING fts5({_TEXT_COLUMNS}, content='recordings', "
    "content_rowid='id', tokenize='trigram')",
    f"CREATE TRIGGER recordings_text_added AFTER INSERT ON recordings BEGIN "
    f"INSERT INTO recordings_text (rowid, {_TEXT_COLUMNS}) VALUES "
    f"(new.id, {_TEXT_OF.format(row='new')}); END",
    f"CREATE TRIGGER recordings_text_removed AFTER DELETE ON recordings BEGIN "
    f"INSERT INTO recordings_text (recordings_text, rowid, {_TEXT_COLUMNS}) VALUES "
    f"('delete', old.id, {_TEXT_OF.format(row='old')}); END",
    f"CREATE TRIGGER recordings_text_changed AFTER UPDATE ON recordings BEGIN "
    f"INSERT INTO recordings_text (recordings_text, rowid, {_TEXT_COLUMNS}) VALUES "
    f"('delete', old.id, {_TEXT_OF.format(row='old')}); "
    f"INSERT INTO recordings_text (rowid, {_TEXT_COLUMNS}) VALUES "
    f"(new.id, {_TEXT_OF.format(row='new')}); END",
)
_ORDER_INDEXES = (
    # Newest first, with what a search compares: the newest rows are read
    # from it alone, without the rows' sidecars (see `search`).
    "CREATE INDEX recordings_by_start ON recordings (started_at DESC, path, numbers, "
    "local_name, remote_name, device, direction, duration_s, stop_reason, recording_id)",
    "CREATE INDEX recordings_by_id ON recordings (recording_id)",
)
# Version 4: a device's recordings in order; the longest first; the devices
# seen (a device search compares these, a few thousand, not every row);
# how many recordings each day has (a total's estimate).
# (Not an upsert, nor INSERT OR IGNORE: inside a trigger, the conflict
# handling of the statement that fired it would apply.)
_DEVICE_SEEN = ("INSERT INTO devices SELECT new.device WHERE NOT EXISTS "
                "(SELECT 1 FROM devices WHERE device = new.device);")
_DAY_GAINED = ("UPDATE recordings_per_day SET count = count + 1 "
               "WHERE day = substr(new.started_at, 1, 10); "
               "INSERT INTO recordings_per_day SELECT substr(new.started_at, 1, 10), 1 "
               "WHERE changes() = 0;")
_DAY_LOST = ("UPDATE recordings_per_day SET count = count - 1 "
             "WHERE day = substr(old.started_at, 1, 10);")
_DEVICE_AND_DURATION = (
    "CREATE INDEX recordings_by_device ON recordings (device, started_at DESC, path)",
    # (With what a search compares, as recordings_by_start: the walk of
    # the longest reads no row.)
    "CREATE INDEX recordings_by_duration ON recordings (duration_s DESC, started_at DESC, path, "
    "numbers, local_name, remote_name, device, direction, stop_reason, recording_id)",
    "CREATE TABLE devices (device TEXT PRIMARY KEY) WITHOUT ROWID",
    f"CREATE TRIGGER devices_added AFTER INSERT ON recordings BEGIN {_DEVICE_SEEN} END",
    f"CREATE TRIGGER devices_changed AFTER UPDATE OF device ON recordings BEGIN {_DEVICE_SEEN} "
    "END",
    "CREATE TABLE recordings_per_day (day TEXT PRIMARY KEY, count INTEGER NOT NULL) "
    "WITHOUT ROWID",
    f"CREATE TRIGGER per_day_added AFTER INSERT ON recordings BEGIN {_DAY_GAINED} END",
    f"CREATE TRIGGER per_day_removed AFTER DELETE ON recordings BEGIN {_DAY_LOST} END",
    "CREATE TRIGGER per_day_changed AFTER UPDATE OF started_at ON recordings BEGIN "
    f"{_DAY_LOST} {_DAY_GAINED} END",
)

# The users (recsvc.access.users), in the database of the recordings they
# may hear, and the audit trail of what they do.
_USERS = (
    "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, scopes TEXT NOT NULL, "
    "password_hash TEXT NOT NULL, created_at TEXT NOT NULL, changed_at TEXT NOT NULL, "
    "token_hash TEXT NOT NULL DEFAULT '') "
    "WITHOUT ROWID",
    # The audit trail (recsvc.access.audit): rows are added, never changed
    # (the triggers refuse it; the hashes' chain finds it if done anyway).
    "CREATE TABLE audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, "
    "source TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL, "
    "previous_hash TEXT NOT NULL, row_hash TEXT NOT NULL)",
    "CREATE TRIGGER audit_not_changed BEFORE UPDATE ON audit BEGIN "
    "SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
    "CREATE TRIGGER audit_not_deleted BEFORE DELETE ON audit BEGIN "
    "SELECT RAISE(ABORT, 'the audit trail is append-only'); END",
    # (INSERT OR REPLACE deletes without the delete trigger: a row goes
    # after the last, or not at all.)
    "CREATE TRIGGER audit_in_order BEFORE INSERT ON audit "
    "WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM audit) BEGIN "
    "SELECT RAISE(ABORT, 'the audit trail is append-only: a row goes after the last'); END",
    # Legal holds (recsvc.access.holds).
    "CREATE TABLE holds (node TEXT NOT NULL, path TEXT NOT NULL, recording_id TEXT NOT NULL, "
    "reason TEXT NOT NULL, held_by TEXT NOT NULL, held_at TEXT NOT NULL, "
    "PRIMARY KEY (node, path)) WITHOUT ROWID",
    # The page's sign-in sessions (recsvc.access.sessions): tokens' hashes.
    "CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, user TEXT NOT NULL, "
    "began REAL NOT NULL, ends REAL NOT NULL) WITHOUT ROWID",
)

# Notes and tags on recordings (recsvc.access.notes).
_NOTES = (
    "CREATE TABLE notes (seq INTEGER PRIMARY KEY, recording_id TEXT NOT NULL, "
    "path TEXT NOT NULL, written_at TEXT NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL, "
    "tags TEXT NOT NULL)",
    "CREATE INDEX notes_by_path ON notes (path)",
)

# The schema of a new index, at SCHEMA_VERSION. An existing index is brought
# to it in place by _MIGRATIONS, never by a reindex. Its version is kept in
# the schema_version table (an index of version 1 has none: its
# PRAGMA user_version says 1).
_SCHEMA: tuple[str, ...] = (
    _RECORDINGS.format(name="recordings"), *_ORDER_INDEXES, *_TEXT_INDEX, *_DEVICE_AND_DURATION,
    *_USERS, *_NOTES)

# The statements that take an index from the version before to each
# version, run in order, all in one transaction.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # The node a recording was recorded on.
    2: (
        "ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT ''",
        "UPDATE recordings SET node = json_extract(sidecar, '$.node') "
        "WHERE json_valid(sidecar) AND json_type(sidecar, '$.node') = 'text'",
    ),
    # Substring search through trigrams: the rows get a stable id for them.
    3: (
        _RECORDINGS.format(name="recordings_3"),
        "INSERT INTO recordings_3 (path, recording_id, device, direction, local_number, "
        "local_name, remote_number, remote_name, numbers, started_at, duration_s, stop_reason, "
        "sidecar, sidecar_mtime_ns, node) SELECT path, recording_id, device, direction, "
        "local_number, local_name, remote_number, remote_name, numbers, started_at, duration_s, "
        "stop_reason, sidecar, sidecar_mtime_ns, node FROM recordings",
        "DROP TABLE recordings",  # (its indexes with it)
        "ALTER TABLE recordings_3 RENAME TO recordings",
        *_ORDER_INDEXES,
        *_TEXT_INDEX,
        f"INSERT INTO recordings_text (rowid, {_TEXT_COLUMNS}) "
        f"SELECT id, {_TEXT_OF.format(row='recordings')} FROM recordings",
    ),
    # Devices, durations and totals through indexes of their own.
    4: (
        *_DEVICE_AND_DURATION,
        "INSERT INTO devices SELECT DISTINCT device FROM recordings",
        "INSERT INTO recordings_per_day SELECT substr(started_at, 1, 10), count(*) "
        "FROM recordings GROUP BY 1",
    ),
    # Users.
    5: _USERS,
    # Notes.
    6: _NOTES,
}
_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
# Trigrams find a text of three characters or more; a shorter one is
# compared row by row (it is in most rows anyway: the walk finds a page).
_SHORTEST_INDEXED = 3

# Each order: the columns it sorts by, each ascending (False) or descending
# (True); the last, the path, makes it total. The reverse orders are the
# exact reverses, so one index serves both. With the index each is read from.
# (The orders of any index end with the node after the path: here the path
# is unique, one node's file, so no two rows tie there and the node is left
# out, of the ORDER BY as of a cursor's condition: the walks read the
# order's index alone, which has no node.)
_ORDER_BY: dict[str, tuple[tuple[tuple[str, bool], ...], str]] = {
    "newest": ((("started_at", True), ("path", False)), "recordings_by_start"),
    "oldest": ((("started_at", False), ("path", True)), "recordings_by_start"),
    "longest": ((("duration_s", True), ("started_at", True), ("path", False)),
                "recordings_by_duration"),
    "shortest": ((("duration_s", False), ("started_at", False), ("path", True)),
                 "recordings_by_duration"),
}


# How long (seconds) a write waits for another's (a reindex beside the
# service): catch_up commits every COMMIT_EVERY entries, so waits are short.
BUSY_TIMEOUT = 30.0


class IndexVersionError(sqlite3.DatabaseError):
    """The index's schema is one this recsvc cannot use as it is."""


@implementer(IIndex, IUsers, IAuditTrail, IHolds, ISessions, INotes)
@attrs.define(eq=False)
class SqliteIndex:
    """The index in the SQLite database ``sqlite`` (its connection), the
    recorder node ``node``'s own ("": not said)."""

    sqlite: sqlite3.Connection
    node: str = ""

    @classmethod
    def open(cls, database: str, read_only: bool = False, node: str = "") -> "SqliteIndex":
        """Open (creating it and its folder if need be) the index at
        ``database``, in WAL mode, migrated to this schema; ``read_only``:
        open it as it is, for searching, without writing to it. An SQLite
        index is one node's own: every row is ``node``'s (what a search
        gives as the node of a sidecar that names none). Raises
        sqlite3.Error, OSError."""
        if read_only:
            connection = sqlite3.connect(f"file:{quote(os.path.abspath(database))}?mode=ro",
                                         uri=True, timeout=BUSY_TIMEOUT, check_same_thread=False)
            try:
                _check_version(connection)
            except BaseException:
                connection.close()
                raise
            return cls(connection, node)
        folder = os.path.dirname(database)
        if folder:
            os.makedirs(folder, exist_ok=True)
        connection = sqlite3.connect(database, check_same_thread=False, timeout=BUSY_TIMEOUT)
        try:
            prepare(connection)
        except BaseException:
            connection.close()
            raise
        return cls(connection, node)

    def close(self) -> None:
        self.sqlite.close()

    def append_audit(self, event: AuditEvent) -> AuditRow:
        return self._audited(lambda: None, event)

    def _audited(self, change: Callable[[], Any], event: AuditEvent | None) -> Any:
        """``change()`` and ``event``'s row after the last, in one
        transaction (another process appending meanwhile waits for it)."""
        self.sqlite.execute("BEGIN IMMEDIATE")
        try:
            result = change()
            if event is not None:
                last = self.sqlite.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit "
                                           f"ORDER BY seq DESC LIMIT 1").fetchone()
                result = next_row(None if last is None else row_of_columns(last), event)
                self.sqlite.execute(f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES "
                                    f"({', '.join('?' * len(AUDIT_COLUMNS))})",
                                    columns_of(result))
            self.sqlite.commit()
        except BaseException:
            self.sqlite.rollback()
            raise
        return result

    def audit_page(self, query: AuditQuery) -> list[AuditRow]:
        where, params = query.conditions("?")
        return [row_of_columns(columns) for columns in self.sqlite.execute(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit{where} ORDER BY seq DESC LIMIT ?",
            (*params, query.limit))]

    def audit_rows(self, after: int = 0, limit: int | None = None) -> list[AuditRow]:
        return [row_of_columns(columns) for columns in self.sqlite.execute(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, -1 if limit is None else limit))]

    def add_session(self, session: Session, now: float,
                    audit: AuditEvent | None = None) -> None:
        def add() -> None:
            self.sqlite.execute("DELETE FROM sessions WHERE ends <= ?", (now,))
            self.sqlite.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                                attrs.astuple(session))
        self._audited(add, audit)

    def session(self, token_hash: str) -> Session | None:
        row = self.sqlite.execute("SELECT token_hash, user, began, ends FROM sessions "
                                  "WHERE token_hash = ?", (token_hash,)).fetchone()
        return None if row is None else Session(*row)

    def end_sessions_of(self, user: str) -> int:
        with self.sqlite:
            return self.sqlite.execute("DELETE FROM sessions WHERE user = ?", (user,)).rowcount

    def remove_session(self, token_hash: str, audit: AuditEvent | None = None) -> None:
        self._audited(lambda: self.sqlite.execute(
            "DELETE FROM sessions WHERE token_hash = ?", (token_hash,)), audit)

    def hold_files(self, holds: Sequence[Hold], audit: AuditEvent | None = None) -> None:
        self._audited(lambda: self.sqlite.executemany(
            f"INSERT OR IGNORE INTO holds ({', '.join(HOLD_COLUMNS)}) VALUES "
            f"(?, ?, ?, ?, ?, ?)", [hold_row(hold) for hold in holds]), audit)

    def release_files(self, keys: Sequence[tuple[str, str]],
                      audit: AuditEvent | None = None) -> int:
        released = [0]

        def release() -> None:
            for node, path in keys:
                released[0] += self.sqlite.execute(
                    "DELETE FROM holds WHERE node = ? AND path = ?", (node, path)).rowcount
        self._audited(release, audit)
        return released[0]

    def holds(self) -> list[Hold]:
        return [hold_of(row) for row in self.sqlite.execute(
            f"SELECT {', '.join(HOLD_COLUMNS)} FROM holds ORDER BY recording_id, node, path")]

    def holds_on(self, paths: Sequence[str]) -> list[Hold]:
        held = []
        for path in dict.fromkeys(paths):
            held += self.sqlite.execute(
                f"SELECT {', '.join(HOLD_COLUMNS)} FROM holds WHERE path = ?", (path,))
        return [hold_of(row) for row in sorted(held)]

    def held_paths(self, node: str) -> frozenset[str]:
        return frozenset(row[0] for row in self.sqlite.execute(
            "SELECT path FROM holds UNION SELECT path FROM recordings WHERE recording_id IN "
            "(SELECT recording_id FROM holds)"))

    def add_note(self, note: Note, audit: AuditEvent | None = None) -> None:
        self._audited(lambda: self.sqlite.execute(
            f"INSERT INTO notes ({', '.join(NOTE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            note_row(note)), audit)

    def notes_of(self, paths: Sequence[str]) -> list[Note]:
        notes = []
        for path in dict.fromkeys(paths):
            notes += self.sqlite.execute(
                f"SELECT seq, {', '.join(NOTE_COLUMNS)} FROM notes WHERE path = ?", (path,))
        return [note_of_row(row[1:]) for row in sorted(notes)]

    def forget_notes(self, paths: Sequence[str]) -> int:
        with self.sqlite:
            return sum(self.sqlite.execute("DELETE FROM notes WHERE path = ?", (path,)).rowcount
                       for path in paths)

    def users(self) -> list[User]:
        return [user_of(row) for row in self.sqlite.execute(
            f"SELECT {', '.join(USER_COLUMNS)} FROM users ORDER BY name")]

    def user_rows(self) -> list[tuple[str, User | str]]:
        return users_or_reasons(self.sqlite.execute(
            f"SELECT {', '.join(USER_COLUMNS)} FROM users ORDER BY name").fetchall())

    def user(self, name: str) -> User | None:
        row = self.sqlite.execute(f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE name = ?",
                                  (name,)).fetchone()
        return None if row is None else user_of(row)

    def add_user(self, user: User, audit: AuditEvent | None = None) -> None:
        def add() -> None:
            try:
                self.sqlite.execute(f"INSERT INTO users ({', '.join(USER_COLUMNS)}) "
                                    f"VALUES ({', '.join('?' * len(USER_COLUMNS))})",
                                    row_of(user))
            except sqlite3.IntegrityError:
                raise UserExists(user.name) from None
        self._audited(add, audit)

    def replace_user(self, user: User, audit: AuditEvent | None = None) -> None:
        def replace() -> None:
            stored = self.sqlite.execute("SELECT password_hash FROM users WHERE name = ?",
                                         (user.name,)).fetchone()
            if stored is None:
                raise NoSuchUser(user.name)
            self.sqlite.execute(
                "UPDATE users SET role = ?, scopes = ?, password_hash = ?, created_at = ?, "
                "changed_at = ?, token_hash = ? WHERE name = ?", (*row_of(user)[1:], user.name))
            if stored[0] != user.password_hash:
                self.sqlite.execute("DELETE FROM sessions WHERE user = ?", (user.name,))
        self._audited(replace, audit)

    def remove_user(self, name: str, audit: AuditEvent | None = None) -> None:
        def remove() -> None:
            if not self.sqlite.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount:
                raise NoSuchUser(name)
            self.sqlite.execute("DELETE FROM sessions WHERE user = ?", (name,))
        self._audited(remove, audit)

    def schema_version(self) -> int:
        return schema_version(self.sqlite)

    def indexed(self) -> dict[str, int]:
        return dict(self.sqlite.execute("SELECT path, sidecar_mtime_ns FROM recordings"))

    def put(self, entries: Sequence[IndexEntry]) -> None:
        try:
            self.sqlite.executemany(_UPSERT, [_row_of(entry) for entry in entries])
            self.sqlite.commit()
        except BaseException:
            self.sqlite.rollback()
            raise

    def remove(self, paths: Sequence[str]) -> None:
        try:
            self.sqlite.executemany("DELETE FROM recordings WHERE path = ?",
                                    [(path,) for path in paths])
            self.sqlite.commit()
        except BaseException:
            self.sqlite.rollback()
            raise

    def search(self, query: Search) -> list[dict[str, Any]]:
        """One page of the recordings found (see the module's docstring)."""
        if not _has_text(query):
            return self._found(_select(query, _Finding.ALL))
        return walk_then_look_up(
            query,
            walk=lambda rows: self._found(_select(query, _Finding.WALK, walk=rows)),
            walked=lambda rows: self.sqlite.execute(*_walked(query, rows)).fetchone(),
            look_up=lambda: self._found(_select(query, _Finding.LOOKED_UP)))

    def search_all(self, query: Search) -> Iterator[dict[str, Any]]:
        # One statement, so one state of the index however long the reading
        # takes; the rows as a lookup finds them (every one is read anyway).
        finding = _Finding.LOOKED_UP if _has_text(query) else _Finding.ALL
        return self._rows(_select(query, finding, paged=False))

    def total(self, query: Search, bound: int) -> Total:
        """Exact up to ``bound``. Beyond, an estimate: the share of the
        first WALK_FIRST rows of its time (the newest) that match, times
        the recordings of its days. The rows are counted one by one only
        when that estimate is within the bound."""
        query = attrs.evolve(query, page=1, after=None)
        matched, walked = self.sqlite.execute(*_sample(query)).fetchone()
        if walked < store.WALK_FIRST:
            return Total(matched, True)  # every row of its time was compared
        rows = self._rows_of_days(query)
        estimate = math.ceil(matched / walked * rows)
        if estimate > bound and not scoped(query):
            # (Counting them would read them all: for a common text, every
            # match in the trigram index. A scoped search is counted: an
            # estimate from every recording's days would tell how many
            # recordings there are beyond the user's scope.)
            return Total(estimate, False)
        if rows <= store.WALK_AT_MOST:
            # Few days: every row of them compared, from the index by start,
            # costs less than the trigram index's matches of every day.
            matched, walked = self.sqlite.execute(
                *_sample(query, store.WALK_AT_MOST)).fetchone()
            if walked < store.WALK_AT_MOST:
                return Total(matched, True) if matched <= bound else Total(matched, False)
        finding = _Finding.LOOKED_UP if _has_text(query) else _Finding.ALL
        counted = self.sqlite.execute(*_count(query, finding, up_to=bound + 1)).fetchone()[0]
        if counted <= bound:
            return Total(counted, True)
        return Total(counted if scoped(query) else max(estimate, counted), False)

    def _rows_of_days(self, query: Search) -> int:
        """How many recordings the days of the search's since and until have."""
        since, until = time_bounds(query)
        where, params = [], []
        if since is not None:
            where.append("day >= ?")
            params.append(since[:10])
        if until is not None:
            # until is exclusive: a midnight (a date's end) takes in none of its day.
            where.append("day < ?" if until.endswith("T00:00:00.000Z") else "day <= ?")
            params.append(until[:10])
        sql = "SELECT coalesce(sum(count), 0) FROM recordings_per_day"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return int(self.sqlite.execute(sql, params).fetchone()[0])

    def _found(self, statement: tuple[str, list[Any]]) -> list[dict[str, Any]]:
        return list(self._rows(statement))

    def _rows(self, statement: tuple[str, list[Any]]) -> Iterator[dict[str, Any]]:
        for path, sidecar in self.sqlite.execute(*statement):
            yield found_row(path, sidecar, self.node)


class _Finding:
    """How a statement finds the rows: every condition compared as the
    order's index is read (ALL: no text to look up), within the first rows
    of the order (WALK), or the text looked up in its index (LOOKED_UP)."""

    ALL = "all"
    WALK = "walk"
    LOOKED_UP = "looked up"


def _has_text(query: Search) -> bool:
    """Whether ``query`` looks for text its text indexes could look up."""
    return any(value is not None for value in (query.number, query.name, query.device))


def _select(query: Search, finding: str, paged: bool = True, walk: int = 0,
            only_walk: bool = False) -> tuple[str, list[Any]]:
    """The statement of ``query``'s page (or, not ``paged``, of every row
    found): paths and sidecars, in its order."""
    columns, index = _ORDER_BY[query.order]
    order = ", ".join(f"{column} {'DESC' if down else 'ASC'}" for column, down in columns)
    plain, plain_params = _plain_conditions(query)
    text, text_params = _text_conditions(query, finding)
    if finding == _Finding.WALK:
        # The first ``walk`` rows of the order (within the plain
        # conditions), from its index alone; then the text compared.
        where = " WHERE " + " AND ".join(plain) if plain else ""
        walked = (f"SELECT id, {_ORDER_COLUMNS} FROM recordings INDEXED BY {index}{where} "
                  f"ORDER BY {order} LIMIT ?")
        if only_walk:
            return walked, [*plain_params, walk]
        matched = f"SELECT id, {_KEY_COLUMNS} FROM ({walked})"
        if text:
            matched += " WHERE " + " AND ".join(text)
        params = [*plain_params, walk, *text_params]
        sql = f"SELECT id FROM ({matched}) ORDER BY {order}"
    else:
        conditions = plain + text
        where = " WHERE " + " AND ".join(conditions) if conditions else ""
        params = [*plain_params, *text_params]
        # A device alone is looked up in its index (the planner, knowing
        # nothing of how few rows a device has, would read the order's).
        source = "recordings"
        if finding == _Finding.LOOKED_UP and query.number is None and query.name is None:
            source += " INDEXED BY recordings_by_device"
        if not paged:
            return (f"SELECT path, sidecar FROM {source}{where} ORDER BY {order}", params)
        sql = f"SELECT id FROM {source}{where} ORDER BY {order}"
    if paged:
        sql += " LIMIT ? OFFSET ?"
        params += [query.page_size, (query.page - 1) * query.page_size]
    # The sidecars of the page's rows only.
    return (f"SELECT recordings.path, recordings.sidecar FROM ({sql}) AS found "
            "JOIN recordings ON recordings.id = found.id ORDER BY " + ", ".join(
                f"recordings.{column} {'DESC' if down else 'ASC'}" for column, down in columns),
            params)


# What the walk reads of each row from the order's index: the order's
# columns and what the text conditions compare.
_KEY_COLUMNS = "started_at, path, duration_s"
_ORDER_COLUMNS = (f"{_KEY_COLUMNS}, numbers, local_name, remote_name, device")


def _walked(query: Search, rows: int) -> tuple[str, list[Any]]:
    """A statement of how many rows the walk of the first ``rows`` of
    ``query``'s order reads, and how many of them it finds."""
    walked, walked_params = _select(query, _Finding.WALK, walk=rows, only_walk=True)
    text, text_params = _text_conditions(query, _Finding.WALK)
    matching = " AND ".join(text) if text else "1"
    # (The select list's parameters come first, as its marks do.)
    return (f"SELECT count(*), coalesce(sum({matching}), 0) FROM ({walked})",
            [*text_params, *walked_params])


def _count(query: Search, finding: str, up_to: int | None = None) -> tuple[str, list[Any]]:
    """A statement counting the rows ``query`` finds (at most ``up_to``),
    every one compared (ALL) or its text looked up (LOOKED_UP)."""
    sql, params = _select(attrs.evolve(query, page=1), finding, paged=False)
    if up_to is not None:
        sql, params = sql + " LIMIT ?", [*params, up_to]
    return f"SELECT count(*) FROM ({sql})", params


def _sample(query: Search, rows: int | None = None) -> tuple[str, list[Any]]:
    """A statement of how many of the first ``rows`` (WALK_FIRST unless
    given) of ``query``'s time (newest first) it finds, and how many rows
    that was."""
    times = time_conditions(query)
    where = " WHERE " + " AND ".join(times[0]) if times[0] else ""
    walked = (f"SELECT {_ORDER_COLUMNS}, direction, stop_reason, recording_id FROM recordings "
              f"INDEXED BY recordings_by_start{where} ORDER BY started_at DESC LIMIT ?")
    plain, plain_params = _plain_conditions(attrs.evolve(query, since=None, until=None))
    text, text_params = _text_conditions(query, _Finding.WALK)
    conditions = plain + text
    matching = " AND ".join(conditions) if conditions else "1"
    return (f"SELECT coalesce(sum({matching}), 0), count(*) FROM ({walked})",
            [*plain_params, *text_params, *times[1],
             store.WALK_FIRST if rows is None else rows])


def _plain_conditions(query: Search) -> tuple[list[str], list[Any]]:
    """The conditions that are not text: compared as rows are read."""
    where, params = field_conditions(query, local_digits=_LOCAL_DIGITS)
    if query.after is not None:
        condition, after_params = _after(query)
        where.append(condition)
        params += after_params
    return where, params


def _after(query: Search) -> tuple[str, list[Any]]:
    """The condition of the rows after ``query.after`` in its order."""
    columns, _ = _ORDER_BY[query.order]
    *key, _node = order_key_of(query.after, query.order)  # (see _ORDER_BY)
    return after_condition(columns, key)


def _text_conditions(query: Search, finding: str) -> tuple[list[str], list[Any]]:
    """The conditions on numbers, names and devices: compared row by row,
    or (LOOKED_UP) through the trigram index and the devices' table."""
    where: list[str] = []
    params: list[Any] = []
    matches: list[str] = []  # for the text index, all in one query of it
    looked_up = finding == _Finding.LOOKED_UP
    if query.number is not None:
        forms = query.plan.forms(query.number)
        if looked_up and min(len(form) for form in forms) >= _SHORTEST_INDEXED:
            matches.append("numbers : (" + " OR ".join(_phrase(form) for form in forms) + ")")
        else:
            where.append("(" + " OR ".join(["numbers LIKE ? ESCAPE '\\'"] * len(forms)) + ")")
            params += [like_containing(form) for form in forms]
    if query.name is not None:
        if looked_up and len(query.name) >= _SHORTEST_INDEXED:
            # The trigrams narrow, LIKE decides: they fold the case of
            # letters beyond ASCII too (É, é), LIKE (as PostgreSQL's ILIKE
            # under "C") of ASCII letters only.
            matches.append("{local_name remote_name} : " + _phrase(query.name))
        where.append("(local_name LIKE ? ESCAPE '\\' OR remote_name LIKE ? ESCAPE '\\')")
        params += [like_containing(query.name)] * 2
    if query.device is not None:
        key = like_containing(device_search_key(query.device))
        if looked_up:
            where.append("device IN (SELECT device FROM devices WHERE "
                         f"{_WITHOUT_SEPARATORS.format('device')} LIKE ? ESCAPE '\\')")
        else:
            where.append(f"{_WITHOUT_SEPARATORS.format('device')} LIKE ? ESCAPE '\\'")
        params.append(key)
    if matches:
        where.append("id IN (SELECT rowid FROM recordings_text WHERE recordings_text MATCH ?)")
        params.append(" AND ".join(matches))
    return where, params


def _phrase(text: str) -> str:
    """``text`` as one phrase of the text index's query language: found as
    it is, whatever it holds (quotes doubled)."""
    return '"' + text.replace('"', '""') + '"'


_UPDATED = ("recording_id", "device", "direction", "local_number", "local_name", "remote_number",
            "remote_name", "numbers", "started_at", "duration_s", "stop_reason", "sidecar",
            "sidecar_mtime_ns", "node")
# An upsert, not INSERT OR REPLACE: the row keeps its id, and the text
# index's triggers see the change (a REPLACE's delete fires none).
_UPSERT = (
    "INSERT INTO recordings (path, recording_id, device, direction, "
    "local_number, local_name, remote_number, remote_name, numbers, started_at, "
    "duration_s, stop_reason, sidecar, sidecar_mtime_ns, node) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (path) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _UPDATED))


def _row_of(entry: IndexEntry) -> tuple[Any, ...]:
    return (entry.path, entry.recording_id, entry.device, entry.direction, entry.local_number,
            entry.local_name, entry.remote_number, entry.remote_name,
            digits_of(entry.local_number) + " " + digits_of(entry.remote_number),
            entry.started_at, entry.duration_s, entry.stop_reason, entry.sidecar,
            entry.sidecar_mtime_ns, entry.node)


def prepare(connection: sqlite3.Connection) -> None:
    """WAL mode and the schema, on a fresh connection: a new index made at
    SCHEMA_VERSION, an older one migrated in place (one transaction, which
    a second process opening it meanwhile waits for), a newer one refused."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; the sidecars are the truth
    connection.commit()
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(connection)
        _refuse_newer(version)
        if version == 0:
            statements = list(_SCHEMA)  # made at SCHEMA_VERSION
        else:
            statements = [statement for step in range(version + 1, SCHEMA_VERSION + 1)
                          for statement in _MIGRATIONS[step]]
        for statement in statements:
            connection.execute(statement)
        if version != SCHEMA_VERSION:
            connection.execute(_VERSION_TABLE)
            connection.execute("DELETE FROM schema_version")
            connection.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def schema_version(connection: sqlite3.Connection) -> int:
    """The index's schema version: 0 for a new, empty database."""
    has_table = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if has_table:
        row = connection.execute("SELECT version FROM schema_version").fetchone()
        if row is not None:
            return int(row[0])
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise IndexVersionError(
            f"the index has schema version {version}, newer than this recsvc's "
            f"{SCHEMA_VERSION}: run the recsvc that made it, or move it aside and run "
            "recsvc reindex")


def _check_version(connection: sqlite3.Connection) -> None:
    """For a read-only connection, which cannot migrate: the version must be
    this recsvc's (or the index empty)."""
    version = schema_version(connection)
    _refuse_newer(version)
    if version not in (0, SCHEMA_VERSION):
        raise IndexVersionError(
            f"the index has schema version {version}, this recsvc knows {SCHEMA_VERSION}: "
            "it is migrated in place when the service, or recsvc reindex, next opens it")
