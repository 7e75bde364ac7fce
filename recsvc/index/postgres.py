"""The index in PostgreSQL, shared by several recorder nodes: each node
writes its own recordings, every node searches them all.

A row is keyed by the node that indexed it and the file's path under that
node's storage root (two nodes may have the same relative path: the same
phone, second and call id, or a ``storage.path`` without ``{device}``);
``indexed``, ``remove`` and so `catch_up` see only the opening node's rows,
so a node's catch-up never forgets another node's recordings. Searches
find every node's.

How a search is answered (`PostgresIndex.search`), as on SQLite
(`recsvc.index.store.walk_then_look_up`): text many recordings hold is
found by walking the order's index (it holds what a search compares: no
row is read) and comparing each row until the page is full; text that few
hold is looked up: numbers of DIGIT_GRAM digits or more by the GIN index of
each number's DIGIT_GRAM-digit pieces (``recsvc_digit_grams``; pg_trgm's
trigrams of digits are too few to tell numbers apart: "99999" is one
trigram, in one row of ten), shorter ones and names by pg_trgm's GIN
indexes, devices in the table of the devices seen, and the rows found
sorted. Statements are never prepared (``prepare_threshold=None``): a plan
made for one pattern must not serve another, whose share of the rows can
be anything.

A total (`PostgresIndex.total`) is estimated as SQLite's is: the share
of the newest WALK_FIRST rows of the search's time that it finds, times the
rows of that time (the planner's estimate of those, a range of the index
by start; counted while the table was never analysed). Within the bound,
the rows are then counted (at most bound + 1), and the total is exact;
beyond it, the estimate is the total. (The planner's own estimate of a search's
rows was tried first: for text anywhere in a value it can be off by ten
times or more.)

The schema is migrated in place (`_MIGRATIONS`, its version in the
``schema_version`` table, each opening for writing in one transaction
that holds an advisory lock, so that nodes starting together migrate once).

Connections come from a psycopg_pool pool (a lost connection, a server
restarted, is replaced); an index's methods may be called from several
threads at once, each borrowing its own connection.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import attrs
import psycopg
from psycopg_pool import ConnectionPool
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
from recsvc.index import store
from recsvc.index.backends import CannotOpenIndex, shown, without_password
from recsvc.index.numberplan import digits_of
from recsvc.index.store import (
    IIndex, IndexEntry, Search, Total, after_condition, device_search_key, field_conditions,
    found_row, like_containing, order_key_of, scoped, time_conditions, walk_then_look_up)

SCHEMA_VERSION = 4

# A number's digits are looked up by their pieces of this many digits.
DIGIT_GRAM = 5

# A device without the separators a MAC may be written with, as
# device_search_key looks for it (also what its trigram index holds).
_DEVICE_KEY = "replace(replace(replace(device, ':', ''), '-', ''), '.', '')"

# The text columns compare and sort bytewise ("C"), as SQLite does and
# whatever the database's locale: paths and times sort the same on both
# backends, and ILIKE folds ASCII letters only.
_RECORDINGS = """CREATE TABLE recordings (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node text COLLATE "C" NOT NULL,           -- the node that indexed it (its storage root)
    path text COLLATE "C" NOT NULL,           -- the WAV file, relative to that root
    recording_id text COLLATE "C" NOT NULL,
    device text COLLATE "C" NOT NULL,         -- the MAC address, 12 lower-case hex digits
    direction text COLLATE "C" NOT NULL,
    local_number text COLLATE "C" NOT NULL,
    local_name text COLLATE "C" NOT NULL,
    remote_number text COLLATE "C" NOT NULL,
    remote_name text COLLATE "C" NOT NULL,
    numbers text COLLATE "C" NOT NULL,        -- both numbers' digits, for substring search
    started_at text COLLATE "C" NOT NULL,     -- ISO 8601 UTC (parse_time): sorts as time
    duration_s double precision NOT NULL,
    stop_reason text COLLATE "C" NOT NULL,
    sidecar text NOT NULL,                    -- the sidecar's JSON
    sidecar_mtime_ns bigint NOT NULL,
    UNIQUE (node, path)
)"""

# What a search compares of a row beside the orders' columns (in the
# orders' indexes: a walk reads no row).
_ALSO_COMPARED = ("numbers, local_name, remote_name, device, direction, stop_reason, "
                  "recording_id")

# The statements that take the schema from the version before to each
# version, run in order, all in one transaction. Version 1 is the first
# (PostgreSQL's schema has a history of its own, apart from SQLite's).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        _RECORDINGS,
        # The orders (each also read backwards: its exact reverse), with
        # the row's id: a page's rows are found from the index alone, and
        # only they are read from the table (see _select). By start, the
        # newest first, with what a search compares too: the common
        # searches walk it without reading the table.
        "CREATE INDEX recordings_by_start ON recordings (started_at DESC, path, node) "
        "INCLUDE (id, numbers, local_name, remote_name, direction, duration_s, "
        "stop_reason, recording_id)",
        "CREATE INDEX recordings_by_duration ON recordings "
        "(duration_s DESC, started_at DESC, path, node) INCLUDE (id)",
        "CREATE INDEX recordings_by_id ON recordings (recording_id)",
        # Text anywhere in a value, through trigrams.
        "CREATE INDEX recordings_numbers ON recordings USING gin (numbers gin_trgm_ops)",
        "CREATE INDEX recordings_local_name ON recordings USING gin (local_name gin_trgm_ops)",
        "CREATE INDEX recordings_remote_name ON recordings USING gin (remote_name gin_trgm_ops)",
        f"CREATE INDEX recordings_device ON recordings USING gin (({_DEVICE_KEY}) gin_trgm_ops)",
    ),
    # Numbers by their pieces; devices through a table of those seen and
    # an index of their own; the orders' indexes hold what a search
    # compares (the walks read no row).
    2: (
        "CREATE FUNCTION recsvc_digit_grams(numbers text) RETURNS text[] "
        "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ "
        f"SELECT coalesce(array_agg(DISTINCT substr(word, i, {DIGIT_GRAM})), '{{}}') "
        "FROM unnest(string_to_array(numbers, ' ')) AS word, "
        f"generate_series(1, length(word) - {DIGIT_GRAM - 1}) AS i $$",
        "SET LOCAL maintenance_work_mem = '256MB'",
        "CREATE INDEX recordings_number_grams ON recordings "
        "USING gin (recsvc_digit_grams(numbers))",
        'CREATE TABLE devices (device text COLLATE "C" PRIMARY KEY)',
        "INSERT INTO devices SELECT DISTINCT device FROM recordings",
        # (A trigger, not the writer: a node still at schema 1 that writes
        # on while another migrates adds its devices too.)
        "CREATE FUNCTION recsvc_device_seen() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN INSERT INTO devices VALUES (NEW.device) ON CONFLICT DO NOTHING; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER devices_seen AFTER INSERT OR UPDATE OF device ON recordings "
        "FOR EACH ROW EXECUTE FUNCTION recsvc_device_seen()",
        "CREATE INDEX recordings_by_device ON recordings (device, started_at DESC, path, node) "
        "INCLUDE (id, duration_s)",
        "DROP INDEX recordings_device",
        "DROP INDEX recordings_by_start",
        f"CREATE INDEX recordings_by_start ON recordings (started_at DESC, path, node) "
        f"INCLUDE (id, duration_s, {_ALSO_COMPARED})",
        "DROP INDEX recordings_by_duration",
        "CREATE INDEX recordings_by_duration ON recordings "
        f"(duration_s DESC, started_at DESC, path, node) INCLUDE (id, {_ALSO_COMPARED})",
    ),
    # Users (recsvc.access.users), shared by every node.
    3: (
        "CREATE TABLE users (name text PRIMARY KEY, role text NOT NULL, scopes text NOT NULL, "
        "password_hash text NOT NULL, created_at text NOT NULL, changed_at text NOT NULL, "
        "token_hash text NOT NULL DEFAULT '')",
        # The audit trail (recsvc.access.audit): rows are added, never
        # changed (the trigger refuses it; the hashes' chain finds it if
        # done anyway).
        "CREATE TABLE audit (seq bigint PRIMARY KEY, at text NOT NULL, actor text NOT NULL, "
        "source text NOT NULL, action text NOT NULL, target text NOT NULL, detail text NOT NULL, "
        "previous_hash text NOT NULL, row_hash text NOT NULL)",
        "CREATE FUNCTION recsvc_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$",
        "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION recsvc_audit_append_only()",
        "CREATE TRIGGER audit_not_truncated BEFORE TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION recsvc_audit_append_only()",
        # Legal holds (recsvc.access.holds).
        "CREATE TABLE holds (node text NOT NULL, path text NOT NULL, "
        "recording_id text NOT NULL, reason text NOT NULL, held_by text NOT NULL, "
        "held_at text NOT NULL, PRIMARY KEY (node, path))",
        # The page's sign-in sessions (recsvc.access.sessions), every node's.
        "CREATE TABLE sessions (token_hash text PRIMARY KEY, \"user\" text NOT NULL, "
        "began double precision NOT NULL, ends double precision NOT NULL)",
    ),
    # Notes and tags on recordings (recsvc.access.notes), every node's.
    4: (
        # (Bytewise, as the recordings' text: ILIKE folds ASCII letters
        # only, as SQLite's LIKE does.)
        "CREATE TABLE notes (seq bigserial PRIMARY KEY, recording_id text NOT NULL, "
        "path text COLLATE \"C\" NOT NULL, written_at text NOT NULL, author text NOT NULL, "
        "text text COLLATE \"C\" NOT NULL, tags text COLLATE \"C\" NOT NULL)",
        "CREATE INDEX notes_by_path ON notes (path)",
    ),
}
_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"
# The advisory lock a migration holds (any number of recsvc's own).
_MIGRATION_LOCK = 0x7265637376630001
# The advisory lock an append to the audit trail holds.
_AUDIT_LOCK = 0x7265637376630002

# Each order: its columns, each descending (True) or not; the path and then
# the node make it total. The reverse orders are the exact reverses.
_ORDER_BY: dict[str, tuple[tuple[str, bool], ...]] = {
    "newest": (("started_at", True), ("path", False), ("node", False)),
    "oldest": (("started_at", False), ("path", True), ("node", True)),
    "longest": (("duration_s", True), ("started_at", True), ("path", False), ("node", False)),
    "shortest": (("duration_s", False), ("started_at", False), ("path", True), ("node", True)),
}

# Seconds to wait for the server when connecting, and for a pooled connection.
CONNECT_TIMEOUT = 10
POOL_TIMEOUT = 30.0
# Rows a search_all reads from the server at a time.
ROWS_AT_A_TIME = 500


@implementer(IIndex, IUsers, IAuditTrail, IHolds, ISessions, INotes)
@attrs.define(eq=False)
class PostgresIndex:
    """The index in the PostgreSQL database whose connections ``pool``
    gives, kept for the recorder node ``node``."""

    pool: ConnectionPool
    node: str

    @classmethod
    def open(cls, database: str, read_only: bool = False, node: str = "",
             connections: int = 2, wait: float = POOL_TIMEOUT) -> "PostgresIndex":
        """Open the index at the URL ``database`` with a pool of at most
        ``connections`` connections, each borrowed within ``wait`` seconds
        or a PoolTimeout (a psycopg.Error): created or migrated to this
        schema unless ``read_only`` (then it must be at this schema
        already). Raises CannotOpenIndex, saying which database and why."""
        if not read_only and not node:
            raise CannotOpenIndex(f"{shown(database)}: writing to a shared index needs the "
                                  "node's name (node in the config)")
        try:
            with psycopg.connect(database, connect_timeout=CONNECT_TIMEOUT) as connection:
                if read_only:
                    _check_version(connection, database)
                else:
                    prepare(connection, database)
        except psycopg.Error as error:
            raise CannotOpenIndex(f"{shown(database)}: {_reason(error, database)}") from None

        def configure(connection: psycopg.Connection[Any]) -> None:
            connection.read_only = read_only

        pool = ConnectionPool(
            database, min_size=1, max_size=max(1, connections), timeout=wait,
            kwargs={"prepare_threshold": None, "connect_timeout": CONNECT_TIMEOUT},
            configure=configure, num_workers=1, name="recsvc-index", open=False)
        try:
            pool.open(wait=True, timeout=POOL_TIMEOUT)
        except psycopg.Error as error:
            pool.close()
            raise CannotOpenIndex(f"{shown(database)}: {_reason(error, database)}") from None
        return cls(pool, node)

    def close(self) -> None:
        self.pool.close()

    def schema_version(self) -> int:
        with self.pool.connection() as connection:
            return schema_version(connection)

    def append_audit(self, event: AuditEvent) -> AuditRow:
        with self.pool.connection() as connection:
            return _append_audit(connection, event)

    def audit_page(self, query: AuditQuery) -> list[AuditRow]:
        where, params = query.conditions("%s")
        with self.pool.connection() as connection:
            return [row_of_columns(columns) for columns in connection.execute(
                f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit{where} ORDER BY seq DESC "
                f"LIMIT %s", (*params, query.limit))]

    def audit_rows(self, after: int = 0, limit: int | None = None) -> list[AuditRow]:
        with self.pool.connection() as connection:
            return [row_of_columns(columns) for columns in connection.execute(
                f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit WHERE seq > %s ORDER BY seq "
                f"LIMIT %s", (after, limit))]

    def add_session(self, session: Session, now: float,
                    audit: AuditEvent | None = None) -> None:
        with self.pool.connection() as connection:
            connection.execute("DELETE FROM sessions WHERE ends <= %s", (now,))
            connection.execute("INSERT INTO sessions VALUES (%s, %s, %s, %s)",
                               attrs.astuple(session))
            _append_audit(connection, audit)

    def session(self, token_hash: str) -> Session | None:
        with self.pool.connection() as connection:
            row = connection.execute('SELECT token_hash, "user", began, ends FROM sessions '
                                     'WHERE token_hash = %s', (token_hash,)).fetchone()
        return None if row is None else Session(*row)

    def end_sessions_of(self, user: str) -> int:
        with self.pool.connection() as connection:
            return connection.execute('DELETE FROM sessions WHERE "user" = %s', (user,)).rowcount

    def remove_session(self, token_hash: str, audit: AuditEvent | None = None) -> None:
        with self.pool.connection() as connection:
            connection.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))
            _append_audit(connection, audit)

    def hold_files(self, holds: Sequence[Hold], audit: AuditEvent | None = None) -> None:
        with self.pool.connection() as connection:
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO holds ({', '.join(HOLD_COLUMNS)}) VALUES "
                    f"(%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [hold_row(hold) for hold in holds])
            _append_audit(connection, audit)

    def release_files(self, keys: Sequence[tuple[str, str]],
                      audit: AuditEvent | None = None) -> int:
        released = 0
        with self.pool.connection() as connection:
            for node, path in keys:
                released += connection.execute(
                    "DELETE FROM holds WHERE node = %s AND path = %s", (node, path)).rowcount
            _append_audit(connection, audit)
        return released

    def holds(self) -> list[Hold]:
        with self.pool.connection() as connection:
            return [hold_of(row) for row in connection.execute(
                f"SELECT {', '.join(HOLD_COLUMNS)} FROM holds "
                f"ORDER BY recording_id, node, path")]

    def holds_on(self, paths: Sequence[str]) -> list[Hold]:
        with self.pool.connection() as connection:
            return [hold_of(row) for row in connection.execute(
                f"SELECT {', '.join(HOLD_COLUMNS)} FROM holds WHERE path = ANY(%s) "
                f"ORDER BY node, path", (list(paths),))]

    def held_paths(self, node: str) -> frozenset[str]:
        with self.pool.connection() as connection:
            return frozenset(row[0] for row in connection.execute(
                "SELECT path FROM holds UNION SELECT path FROM recordings WHERE recording_id IN "
                "(SELECT recording_id FROM holds)"))

    def add_note(self, note: Note, audit: AuditEvent | None = None) -> None:
        with self.pool.connection() as connection:
            connection.execute(f"INSERT INTO notes ({', '.join(NOTE_COLUMNS)}) VALUES "
                               f"(%s, %s, %s, %s, %s, %s)", note_row(note))
            _append_audit(connection, audit)

    def notes_of(self, paths: Sequence[str]) -> list[Note]:
        with self.pool.connection() as connection:
            return [note_of_row(row) for row in connection.execute(
                f"SELECT {', '.join(NOTE_COLUMNS)} FROM notes WHERE path = ANY(%s) "
                f"ORDER BY seq", (list(paths),))]

    def forget_notes(self, paths: Sequence[str]) -> int:
        with self.pool.connection() as connection:
            return connection.execute("DELETE FROM notes WHERE path = ANY(%s)",
                                      (list(paths),)).rowcount

    def users(self) -> list[User]:
        with self.pool.connection() as connection:
            return [user_of(row) for row in connection.execute(
                f"SELECT {', '.join(USER_COLUMNS)} FROM users ORDER BY name")]

    def user_rows(self) -> list[tuple[str, User | str]]:
        with self.pool.connection() as connection:
            return users_or_reasons(connection.execute(
                f"SELECT {', '.join(USER_COLUMNS)} FROM users ORDER BY name").fetchall())

    def user(self, name: str) -> User | None:
        with self.pool.connection() as connection:
            row = connection.execute(
                f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE name = %s",
                (name,)).fetchone()
        return None if row is None else user_of(row)

    def add_user(self, user: User, audit: AuditEvent | None = None) -> None:
        with self.pool.connection() as connection:
            if not connection.execute(
                    f"INSERT INTO users ({', '.join(USER_COLUMNS)}) VALUES "
                    f"({', '.join(['%s'] * len(USER_COLUMNS))}) ON CONFLICT (name) DO NOTHING",
                    row_of(user)).rowcount:
                raise UserExists(user.name)
            _append_audit(connection, audit)

    def replace_user(self, user: User, audit: AuditEvent | None = None) -> None:
        with self.pool.connection() as connection:
            stored = connection.execute("SELECT password_hash FROM users WHERE name = %s "
                                        "FOR UPDATE", (user.name,)).fetchone()
            if stored is None:
                raise NoSuchUser(user.name)
            connection.execute(
                "UPDATE users SET role = %s, scopes = %s, password_hash = %s, "
                "created_at = %s, changed_at = %s, token_hash = %s WHERE name = %s",
                (*row_of(user)[1:], user.name))
            if stored[0] != user.password_hash:
                connection.execute('DELETE FROM sessions WHERE "user" = %s', (user.name,))
            _append_audit(connection, audit)

    def remove_user(self, name: str, audit: AuditEvent | None = None) -> None:
        with self.pool.connection() as connection:
            if not connection.execute("DELETE FROM users WHERE name = %s", (name,)).rowcount:
                raise NoSuchUser(name)
            connection.execute('DELETE FROM sessions WHERE "user" = %s', (name,))
            _append_audit(connection, audit)

    def indexed(self) -> dict[str, int]:
        with self.pool.connection() as connection:
            return dict(connection.execute(
                "SELECT path, sidecar_mtime_ns FROM recordings WHERE node = %s", (self.node,)))

    def put(self, entries: Sequence[IndexEntry]) -> None:
        # In the paths' order: two writers of one node's rows (the service
        # and a reindex) lock them in the same order, never each other's.
        rows = [self._row_of(entry) for entry in sorted(entries, key=lambda entry: entry.path)]
        with self.pool.connection() as connection:
            with connection.cursor() as cursor:
                cursor.executemany(_UPSERT, rows)

    def remove(self, paths: Sequence[str]) -> None:
        with self.pool.connection() as connection:
            connection.execute("DELETE FROM recordings WHERE node = %s AND path = ANY(%s)",
                               (self.node, sorted(paths)))

    def search(self, query: Search) -> list[dict[str, Any]]:
        """One page of the recordings found (see the module's docstring)."""
        with self.pool.connection() as connection:
            def found(statement: tuple[str, list[Any]]) -> list[dict[str, Any]]:
                return [found_row(path, sidecar, node)
                        for path, sidecar, node in connection.execute(*statement)]

            if not _has_text(query):
                return found(_page(query))
            return walk_then_look_up(
                query,
                walk=lambda rows: found(_walk_page(query, rows)),
                walked=lambda rows: connection.execute(*_walked_counts(query, rows)).fetchone(),
                look_up=lambda: found(_looked_up_page(query)))

    def search_all(self, query: Search) -> Iterator[dict[str, Any]]:
        # One statement through a server-side cursor: one state of the
        # index however long the reading takes, a few rows in memory.
        sql, params = _select(query)
        with self.pool.connection() as connection:
            with connection.cursor(name="recsvc_search_all") as cursor:
                cursor.itersize = ROWS_AT_A_TIME
                cursor.execute(sql, params)
                for path, sidecar, node in cursor:
                    yield found_row(path, sidecar, node)

    def total(self, query: Search, bound: int) -> Total:
        """Exact up to ``bound``; beyond, an estimate (see the module's
        docstring)."""
        query = attrs.evolve(query, page=1, after=None)
        where, params = _conditions(query)
        compared, compared_params = _conditions(query, looked_up=False)
        matching = compared.removeprefix(" WHERE ") or "true"
        times, times_params = time_conditions(query, mark="%s")
        within = " WHERE " + " AND ".join(times) if times else ""
        with self.pool.connection() as connection:
            # The newest WALK_FIRST rows of its time (what the conditions
            # compare of them, not their sidecars), and how many it finds
            # there: an estimate beyond the bound is not counted row by row
            # (for a common text, every match of the trigram index).
            sample = (f"SELECT count(*) FILTER (WHERE {matching}), count(*) FROM (SELECT "
                      f"{_COMPARED} FROM recordings{within} ORDER BY started_at DESC LIMIT %s) "
                      "AS recordings")
            matched, sampled = connection.execute(
                sample, [*compared_params, *times_params, store.WALK_FIRST]).fetchone()
            if sampled < store.WALK_FIRST:
                return Total(matched, True)  # every row of its time was compared
            rows = _rows_of_time(connection, within, times_params)
            estimate = math.ceil(matched / sampled * rows)
            if estimate > bound and not scoped(query):
                return Total(estimate, False)
            if rows <= store.WALK_AT_MOST:
                # Few rows in its time: every one compared, read by start,
                # costs less than the trigram index's matches of all time.
                matched, sampled = connection.execute(
                    sample, [*compared_params, *times_params, store.WALK_AT_MOST]).fetchone()
                if sampled < store.WALK_AT_MOST:
                    return Total(matched, matched <= bound)
            counted = connection.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM recordings{where} LIMIT %s) AS found",
                [*params, bound + 1]).fetchone()[0]
        if counted <= bound:
            return Total(counted, True)
        # (A scoped search says only what it counted of its own scope.)
        return Total(counted if scoped(query) else max(estimate, counted), False)

    def _row_of(self, entry: IndexEntry) -> tuple[Any, ...]:
        return (self.node, entry.path, entry.recording_id, entry.device, entry.direction,
                entry.local_number, entry.local_name, entry.remote_number, entry.remote_name,
                digits_of(entry.local_number) + " " + digits_of(entry.remote_number),
                entry.started_at, entry.duration_s, entry.stop_reason, entry.sidecar,
                entry.sidecar_mtime_ns)


# What a search's conditions compare of a row.
_COMPARED = ("started_at, path, duration_s, numbers, local_name, remote_name, device, "
             "direction, stop_reason, recording_id, node")
_COLUMNS = ("node", "path", "recording_id", "device", "direction", "local_number", "local_name",
            "remote_number", "remote_name", "numbers", "started_at", "duration_s",
            "stop_reason", "sidecar", "sidecar_mtime_ns")
_UPSERT = (
    f"INSERT INTO recordings ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_COLUMNS))}) ON CONFLICT (node, path) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS[2:]))


def _order(query: Search, table: str = "") -> str:
    """The ORDER BY of ``query``'s order (its columns in ``table``)."""
    return ", ".join(f"{table}{column} {'DESC' if down else 'ASC'}"
                     for column, down in _ORDER_BY[query.order])


def _rows_of_time(connection: psycopg.Connection[Any], within: str, params: list[Any]) -> int:
    """How many rows the table has in a search's time: the planner's
    estimate, or (a table never analysed, whose estimate means nothing)
    counted."""
    analysed = connection.execute(
        "SELECT reltuples >= 0 FROM pg_class WHERE oid = 'recordings'::regclass").fetchone()[0]
    if not analysed:
        return int(connection.execute(f"SELECT count(*) FROM recordings{within}",
                                      params).fetchone()[0])
    [[plan]] = connection.execute(
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM recordings{within}", params).fetchall()
    return int(plan[0]["Plan"]["Plan Rows"])


def _has_text(query: Search) -> bool:
    """Whether ``query`` looks for text its indexes could look up."""
    return any(value is not None for value in (query.number, query.name, query.device))


def digit_grams(digits: str) -> list[str]:
    """The pieces of DIGIT_GRAM digits of ``digits`` (as recsvc_digit_grams
    makes them of a row's numbers)."""
    return sorted({digits[i:i + DIGIT_GRAM] for i in range(len(digits) - DIGIT_GRAM + 1)})


def _select(query: Search) -> tuple[str, list[Any]]:
    """The statement of every row ``query`` finds (paths, sidecars and
    nodes), in its order."""
    where, params = _conditions(query)
    return (f"SELECT path, sidecar, node FROM recordings{where} ORDER BY {_order(query)}",
            params)


def _columns(query: Search) -> str:
    return ", ".join(column for column, _ in _ORDER_BY[query.order])


def _limit(query: Search) -> list[int]:
    return [query.page_size, (query.page - 1) * query.page_size]


def _rows_of_page(found: str, query: Search) -> str:
    """The statement reading the rows (paths, sidecars, nodes) of a page
    that ``found`` (ids and the order's columns) finds, by id: only the
    page's rows are read from the table."""
    return (f"SELECT recordings.path, recordings.sidecar, recordings.node FROM ({found}) AS page "
            f"JOIN recordings USING (id) ORDER BY {_order(query, 'page.')}")


def _page(query: Search) -> tuple[str, list[Any]]:
    """The statement of the page of a ``query`` without text: its rows
    (and those before it passed over) from an order's index."""
    where, params = _conditions(query)
    found = (f"SELECT id, {_columns(query)} FROM recordings{where} ORDER BY {_order(query)} "
             "LIMIT %s OFFSET %s")
    return _rows_of_page(found, query), [*params, *_limit(query)]


def _walked(query: Search, rows: int) -> tuple[str, list[Any]]:
    """The first ``rows`` rows of ``query``'s order (within the conditions
    that are not text), with what the text conditions compare: from the
    order's index alone."""
    where, params = _plain_conditions(query)
    return (f"SELECT id, {_COMPARED} FROM recordings"
            f"{' WHERE ' + ' AND '.join(where) if where else ''} "
            f"ORDER BY {_order(query)} LIMIT %s", [*params, rows])


def _walk_page(query: Search, rows: int) -> tuple[str, list[Any]]:
    """The statement of ``query``'s page among the first ``rows`` rows of
    its order, each compared as read."""
    walked, params = _walked(query, rows)
    text, text_params = _text_conditions(query, looked_up=False)
    found = (f"SELECT id, {_columns(query)} FROM ({walked}) AS walked "
             f"WHERE {' AND '.join(text)} ORDER BY {_order(query)} LIMIT %s OFFSET %s")
    return _rows_of_page(found, query), [*params, *text_params, *_limit(query)]


def _walked_counts(query: Search, rows: int) -> tuple[str, list[Any]]:
    """The statement of how many rows the walk of the first ``rows`` of
    ``query``'s order reads, and how many of them it finds."""
    walked, params = _walked(query, rows)
    text, text_params = _text_conditions(query, looked_up=False)
    # (The select list's parameters come first, as its marks do.)
    return (f"SELECT count(*), count(*) FILTER (WHERE {' AND '.join(text)}) "
            f"FROM ({walked}) AS walked", [*text_params, *params])


def _looked_up_page(query: Search) -> tuple[str, list[Any]]:
    """The statement of ``query``'s page, its text looked up in its
    indexes: every row found gathered first (MATERIALIZED: the planner may
    not walk the order's index instead), then sorted."""
    where, params = _conditions(query)
    columns = _columns(query)
    found = f"SELECT id, {columns} FROM found ORDER BY {_order(query)} LIMIT %s OFFSET %s"
    return (f"WITH found AS MATERIALIZED (SELECT id, {columns} FROM recordings{where}) "
            + _rows_of_page(found, query), [*params, *_limit(query)])


def _conditions(query: Search, looked_up: bool = True) -> tuple[str, list[Any]]:
    """The WHERE clause of ``query`` (empty when it asks for everything):
    its text looked up in the indexes, or (not ``looked_up``) compared as
    each row is read."""
    where, params = _plain_conditions(query)
    text, text_params = _text_conditions(query, looked_up)
    where += text
    return (" WHERE " + " AND ".join(where) if where else ""), params + text_params


def _plain_conditions(query: Search) -> tuple[list[str], list[Any]]:
    """The conditions that are not text, and the cursor's."""
    where, params = field_conditions(query, mark="%s", local_digits="split_part(numbers, ' ', 1)",
                                     like_any_case="ILIKE")  # (under "C": ASCII letters)
    if query.after is not None:
        condition, after_params = after_condition(
            _ORDER_BY[query.order], order_key_of(query.after, query.order), mark="%s")
        where.append(condition)
        params += after_params
    return where, params


def _text_conditions(query: Search, looked_up: bool) -> tuple[list[str], list[Any]]:
    """The conditions on numbers, names and devices: as the indexes look
    them up (numbers by their pieces, devices in the devices' table), or
    as compared on each row."""
    where: list[str] = []
    params: list[Any] = []
    if query.number is not None:
        forms = []
        for form in query.plan.forms(query.number):
            if looked_up and len(form) >= DIGIT_GRAM and form.isdigit():
                # The pieces narrow, LIKE decides (pieces anywhere in a row
                # need not be one run of digits).
                forms.append("(recsvc_digit_grams(numbers) @> %s::text[] AND numbers LIKE %s)")
                params.append(digit_grams(form))
            else:
                forms.append("numbers LIKE %s")
            params.append(like_containing(form))
        where.append("(" + " OR ".join(forms) + ")")
    if query.name is not None:
        where.append("(local_name ILIKE %s OR remote_name ILIKE %s)")
        params += [like_containing(query.name)] * 2
    if query.device is not None:
        if looked_up:
            where.append(f"device IN (SELECT device FROM devices WHERE {_DEVICE_KEY} LIKE %s)")
        else:
            where.append(f"{_DEVICE_KEY} LIKE %s")
        params.append(like_containing(device_search_key(query.device)))
    return where, params


def prepare(connection: psycopg.Connection[Any], database: str) -> None:
    """The schema, on a fresh connection: made at SCHEMA_VERSION in a new
    database, an older one migrated in place, a newer one refused; in one
    transaction that holds _MIGRATION_LOCK (a second node opening it
    meanwhile waits, then finds it done). Raises CannotOpenIndex,
    psycopg.Error."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        version = schema_version(connection)
        _refuse_newer(version, database)
        if version == SCHEMA_VERSION:
            return
        _trigrams(connection, database)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                connection.execute(statement)
        connection.execute(_VERSION_TABLE)
        connection.execute("DELETE FROM schema_version")
        connection.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))


def _trigrams(connection: psycopg.Connection[Any], database: str) -> None:
    """pg_trgm in the database, created if need be (a trusted extension:
    a user who may create in the database may create it)."""
    if connection.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone():
        return
    try:
        with connection.transaction():  # a savepoint: the error is ours to word
            connection.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except psycopg.Error as error:
        raise CannotOpenIndex(
            f"{shown(database)}: the index needs the pg_trgm extension, which is not in the "
            f"database and could not be created ({_reason(error, database)}): have the "
            "database's owner or a superuser run CREATE EXTENSION pg_trgm in it "
            "(PostgreSQL's contrib package provides it)") from None


def _append_audit(connection: psycopg.Connection[Any], event: AuditEvent | None) -> Any:
    """``event``'s row after the last, in the connection's transaction
    (every node appends to one trail: one at a time, by an advisory lock
    held to its end)."""
    if event is None:
        return None
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))
    last = connection.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit "
                              f"ORDER BY seq DESC LIMIT 1").fetchone()
    row = next_row(None if last is None else row_of_columns(last), event)
    connection.execute(f"INSERT INTO audit ({', '.join(AUDIT_COLUMNS)}) VALUES "
                       f"({', '.join(['%s'] * len(AUDIT_COLUMNS))})", columns_of(row))
    return row


def schema_version(connection: psycopg.Connection[Any]) -> int:
    """The index's schema version: 0 for a database without one."""
    if connection.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def _refuse_newer(version: int, database: str) -> None:
    if version > SCHEMA_VERSION:
        raise CannotOpenIndex(
            f"{shown(database)}: the index has schema version {version}, newer than this "
            f"recsvc's {SCHEMA_VERSION}: run the recsvc that made it (every node sharing the "
            "index must be as new)")


def _check_version(connection: psycopg.Connection[Any], database: str) -> None:
    """For a search, which does not migrate: the index must be at this
    recsvc's version."""
    version = schema_version(connection)
    connection.rollback()
    _refuse_newer(version, database)
    if version == 0:
        raise CannotOpenIndex(
            f"{shown(database)}: no index there yet: the service makes it as it starts, or "
            "recsvc reindex")
    if version != SCHEMA_VERSION:
        raise CannotOpenIndex(
            f"{shown(database)}: the index has schema version {version}, this recsvc knows "
            f"{SCHEMA_VERSION}: it is migrated in place when the service, or recsvc reindex, "
            "next opens it")


def _reason(error: psycopg.Error, database: str) -> str:
    """What a psycopg error says, on one line, without ``database``'s
    password (a URL libpq cannot read is quoted in its message)."""
    # (The password hidden first: it may hold spaces the joining would change.)
    return " ".join(without_password(str(error), database).split()) or type(error).__name__
