"""The recordings' index: every finished recording's sidecar, searchable, in
SQLite.

The sidecars stay the source of truth: `catch_up` adds to the index what it
missed and drops what is gone (at start-up), `catch_up(full=True)` reads
every sidecar again (`recsvc reindex`). The functions taking a connection
block; the service runs them on one connection, in a thread of its own
(recsvc.index.indexer). Pure: the entry a sidecar makes, the query a search makes.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sqlite3
from typing import Any, Iterator
from urllib.parse import quote

import attrs

from recsvc.devices import device_key
from recsvc.index.numberplan import NumberPlan, digits_of
from recsvc.storage.folder import no_follow, walk_files

SCHEMA_VERSION = 3

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

# The schema of a new index, at SCHEMA_VERSION. An existing index is brought
# to it in place by _MIGRATIONS, never by a reindex. Its version is kept in
# the schema_version table (an index of version 1 has none: its
# PRAGMA user_version says 1).
_SCHEMA: tuple[str, ...] = (
    _RECORDINGS.format(name="recordings"), *_ORDER_INDEXES, *_TEXT_INDEX)

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
}
_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
# Trigrams find a text of three characters or more; a shorter one is looked
# for row by row (it is in most rows anyway: the first page comes at once).
_SHORTEST_INDEXED = 3

DIRECTIONS = ("in", "out")
MAX_PAGE_SIZE = 500
MAX_PAGE = 1_000_000  # far beyond any archive; keeps the offset a 64-bit integer
_MAC_SEPARATORS = re.compile(r"[\s:.\-]")
_HEX_DIGIT = re.compile(r"[0-9a-f]")
# A time, a space, then what can only be an offset whose "+" a URL's
# query turned into a space: 2026-12-07T00:00:00 14:00.
_OFFSET_AFTER_SPACE = re.compile(r"^(.*\d:\d\d(?::\d\d(?:[.,]\d+)?)?) (\d\d(?::?\d\d)?)$")


class NotIndexable(ValueError):
    """A sidecar the index cannot take (the message says why)."""


class NotFinished(NotIndexable):
    """The sidecar of a recording still going on (or that a crash cut
    short, until start-up recovery finishes it)."""


@attrs.frozen
class IndexEntry:
    """What the index keeps of one finished recording's file."""

    path: str  # the WAV file, relative to the storage root
    recording_id: str
    device: str
    direction: str
    local_number: str
    local_name: str
    remote_number: str
    remote_name: str
    started_at: str  # as parse_time gives it: UTC, to the millisecond
    duration_s: float
    stop_reason: str
    sidecar: str  # the sidecar's JSON
    sidecar_mtime_ns: int
    node: str = ""  # the recorder node it was recorded on ("": not said)


def entry_from_sidecar(data: Any, sidecar_relpath: str, mtime_ns: int) -> IndexEntry:
    """The entry of a finished recording's sidecar (``sidecar_relpath``:
    where it is under the storage root). Raises NotIndexable."""
    if not isinstance(data, dict):
        raise NotIndexable("not a JSON object")
    if data.get("status") != "finished":
        raise NotFinished(f"status is {data.get('status')!r}, not 'finished'")

    def text(key: str, required: bool = False) -> str:
        value = data.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str) or (required and not value):
            raise NotIndexable(f"{key}: expected text, got {value!r}")
        return value

    # Written by recsvc, but read from disk: it must name the WAV file the
    # sidecar belongs to (the same name beside it), nothing else; or, for
    # a recording that received no audio, null: no WAV was kept, and the
    # entry is keyed by the name it would have had.
    own = os.path.splitext(os.path.basename(sidecar_relpath))[0] + ".wav"
    wav = own if "file" in data and data["file"] is None else text("file", required=True)
    if wav != own:
        raise NotIndexable(f"file: {wav!r} is not this sidecar's WAV file ({own})")
    try:
        started_at = parse_time(text("started_at", required=True))
    except ValueError:
        raise NotIndexable(f"started_at: {data.get('started_at')!r} is not a time") from None
    duration = data.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
        raise NotIndexable(f"duration_s: expected seconds, got {duration!r}")
    return IndexEntry(
        path=os.path.join(os.path.dirname(sidecar_relpath), wav),
        recording_id=text("id", required=True),
        device=device_key(text("device")),
        direction=text("direction"),
        local_number=text("local_number"),
        local_name=text("local_name"),
        remote_number=text("remote_number"),
        remote_name=text("remote_name"),
        started_at=started_at,
        duration_s=float(duration),
        stop_reason=text("stop_reason"),
        sidecar=json.dumps(data, ensure_ascii=False),
        sidecar_mtime_ns=mtime_ns,
        node=text("node"),
    )


def device_search_key(device: str) -> str:
    """What a device search looks for: the text lower-cased, without the
    separators a MAC may be written with (so any part of a MAC, in any
    spelling, is found in the indexed device_key)."""
    return _MAC_SEPARATORS.sub("", device.lower())


def parse_time(text: str, end_of_day: bool = False) -> str:
    """A date or time (ISO 8601; UTC unless it says otherwise) as the index
    compares times. A date alone is its midnight in UTC, or with
    ``end_of_day`` the next midnight (so that "until 2026-11-24" takes in
    all of that day). A time's offset may come after a space instead of "+"
    (an unescaped "+" in a URL's query reads as a space). Raises ValueError."""
    value = _OFFSET_AFTER_SPACE.sub(r"\1+\2", text.strip())
    try:
        if not any(mark in value for mark in "T :"):
            day = datetime.date.fromisoformat(value)
            if end_of_day:
                day += datetime.timedelta(days=1)
            moment = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc)
        else:
            moment = datetime.datetime.fromisoformat(value.replace("z", "Z"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
        utc = moment.astimezone(datetime.timezone.utc)
    except OverflowError:
        # The day after 9999-12-31, or an offset that moves a time out of
        # years 1 to 9999 in UTC.
        end = ", to the end of its day" if end_of_day else ""
        raise ValueError(f"{text!r} is outside the years 0001 to 9999 (in UTC{end})") from None
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or time "
                         "(YYYY-MM-DDTHH:MM[:SS][Z or +HH:MM])") from None
    # Four digits of year always (strftime's %Y gives "999"): the index
    # compares these strings.
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z")


@attrs.frozen
class Search:
    """What to look for; every field given must match. Newest first, paged."""

    number: str | None = None  # digits found in the local or the remote number
    name: str | None = None  # text found in the local or the remote name
    device: str | None = None  # hex digits found in the MAC address
    direction: str | None = None
    since: str | None = None  # started at or after (see parse_time)
    until: str | None = None  # started before
    min_duration_s: float | None = None
    stop_reason: str | None = None
    recording_id: str | None = None
    page: int = 1
    page_size: int = 50
    # How the number's national and international forms relate (numbers.*):
    # either form finds the other. The default: digits as typed.
    plan: NumberPlan = NumberPlan()

    def __attrs_post_init__(self) -> None:
        if self.number is not None and not digits_of(self.number):
            raise ValueError(f"number: {self.number!r} has no digits")
        if self.device is not None and not _HEX_DIGIT.search(device_search_key(self.device)):
            raise ValueError(f"device: {self.device!r} has no hex digits")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"direction: {self.direction!r} is not one of {', '.join(DIRECTIONS)}")
        for key in ("since", "until"):
            value = getattr(self, key)
            if value is not None:
                try:
                    parse_time(value, end_of_day=key == "until")  # as search_sql reads it
                except ValueError as error:
                    raise ValueError(f"{key}: {error}") from None
        if self.min_duration_s is not None and not self.min_duration_s >= 0:
            raise ValueError(f"min_duration_s: {self.min_duration_s!r} is not a duration")
        if not 1 <= self.page <= MAX_PAGE:
            raise ValueError(f"page: {self.page} is outside 1..{MAX_PAGE}")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size: {self.page_size} is outside 1..{MAX_PAGE_SIZE}")


def search_sql(search: Search, paged: bool = True,
               scanned_since: str | None = None) -> tuple[str, list[Any]]:
    """The query (and its parameters) of a search: the matching rows'
    sidecars and paths, newest first, one page (or, not ``paged``, all).
    Text of three characters or more is found through the trigrams; with
    ``scanned_since``, among the rows started since then only, each
    compared as it is read, newest first (see `search`)."""
    where: list[str] = []
    params: list[Any] = []
    matches: list[str] = []  # for the text index, all in one query of it
    indexed = scanned_since is None
    if search.number is not None:
        forms = search.plan.forms(search.number)
        if indexed and min(len(form) for form in forms) >= _SHORTEST_INDEXED:
            matches.append("numbers : (" + " OR ".join(_phrase(form) for form in forms) + ")")
        else:
            where.append("(" + " OR ".join(["numbers LIKE ? ESCAPE '\\'"] * len(forms)) + ")")
            params += [_containing(form) for form in forms]
    if search.name is not None:
        if indexed and len(search.name) >= _SHORTEST_INDEXED:
            matches.append("{local_name remote_name} : " + _phrase(search.name))
        else:
            where.append("(local_name LIKE ? ESCAPE '\\' OR remote_name LIKE ? ESCAPE '\\')")
            params += [_containing(search.name)] * 2
    if search.device is not None:
        key = device_search_key(search.device)
        if indexed and len(key) >= _SHORTEST_INDEXED:
            matches.append("device : " + _phrase(key))
        else:
            where.append(f"{_WITHOUT_SEPARATORS.format('device')} LIKE ? ESCAPE '\\'")
            params.append(_containing(key))
    if matches:
        where.append("id IN (SELECT rowid FROM recordings_text WHERE recordings_text MATCH ?)")
        params.append(" AND ".join(matches))
    for column, value in (("direction", search.direction), ("stop_reason", search.stop_reason),
                          ("recording_id", search.recording_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    times, times_params = _time_range(search)
    where += times
    params += times_params
    if search.min_duration_s is not None:
        where.append("duration_s >= ?")
        params.append(search.min_duration_s)
    if scanned_since is not None:
        where.append("started_at >= ?")
        params.append(scanned_since)
    sql = "SELECT path, sidecar FROM recordings"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, path"
    if paged:
        sql += " LIMIT ? OFFSET ?"
        params += [search.page_size, (search.page - 1) * search.page_size]
    return sql, params


# How many of the newest rows a search reads first, at most (see `search`).
SCAN_NEWEST = 10_000


def _phrase(text: str) -> str:
    """``text`` as one phrase of the text index's query language: found as
    it is, whatever it holds (quotes doubled)."""
    return '"' + text.replace('"', '""') + '"'


def _containing(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Blocking: on the index's connection.

# How long (seconds) a write waits for another's (a reindex beside the
# service): catch_up commits every COMMIT_EVERY entries, so waits are short.
BUSY_TIMEOUT = 30.0
COMMIT_EVERY = 200
# Why catch_up skips a symbolic link below the storage root.
LINK_SKIPPED = "a symbolic link, not followed"


def connect(database: str, read_only: bool = False) -> sqlite3.Connection:
    """Open (creating it and its folder if need be) the index at
    ``database``, in WAL mode; ``read_only``: open it as it is, for
    searching, without writing to it. Raises sqlite3.Error, OSError."""
    if read_only:
        connection = sqlite3.connect(f"file:{quote(os.path.abspath(database))}?mode=ro",
                                     uri=True, timeout=BUSY_TIMEOUT)
        try:
            _check_version(connection)
        except BaseException:
            connection.close()
            raise
        return connection
    folder = os.path.dirname(database)
    if folder:
        os.makedirs(folder, exist_ok=True)
    connection = sqlite3.connect(database, check_same_thread=False, timeout=BUSY_TIMEOUT)
    try:
        prepare(connection)
    except BaseException:
        connection.close()
        raise
    return connection


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
        raise sqlite3.DatabaseError(
            f"the index has schema version {version}, newer than this recsvc's "
            f"{SCHEMA_VERSION}: run the recsvc that made it, or move it aside and run "
            "recsvc reindex")


def _check_version(connection: sqlite3.Connection) -> None:
    """For a read-only connection, which cannot migrate: the version must be
    this recsvc's (or the index empty)."""
    version = schema_version(connection)
    _refuse_newer(version)
    if version not in (0, SCHEMA_VERSION):
        raise sqlite3.DatabaseError(
            f"the index has schema version {version}, this recsvc knows {SCHEMA_VERSION}: "
            "it is migrated in place when the service, or recsvc reindex, next opens it")


def add(connection: sqlite3.Connection, entry: IndexEntry) -> None:
    """Index (or index again) one file."""
    _insert(connection, entry)
    connection.commit()


_UPDATED = ("recording_id", "device", "direction", "local_number", "local_name", "remote_number",
            "remote_name", "numbers", "started_at", "duration_s", "stop_reason", "sidecar",
            "sidecar_mtime_ns", "node")


def _insert(connection: sqlite3.Connection, entry: IndexEntry) -> None:
    connection.execute(
        # An upsert, not INSERT OR REPLACE: the row keeps its id, and the
        # text index's triggers see the change (a REPLACE's delete fires none).
        "INSERT INTO recordings (path, recording_id, device, direction, "
        "local_number, local_name, remote_number, remote_name, numbers, started_at, "
        "duration_s, stop_reason, sidecar, sidecar_mtime_ns, node) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (path) DO UPDATE SET "
        + ", ".join(f"{column} = excluded.{column}" for column in _UPDATED),
        (entry.path, entry.recording_id, entry.device, entry.direction, entry.local_number,
         entry.local_name, entry.remote_number, entry.remote_name,
         digits_of(entry.local_number) + " " + digits_of(entry.remote_number),
         entry.started_at, entry.duration_s, entry.stop_reason, entry.sidecar,
         entry.sidecar_mtime_ns, entry.node),
    )


def add_sidecar(connection: sqlite3.Connection, root: str, sidecar: str) -> IndexEntry:
    """Index the finished recording whose sidecar is at ``sidecar`` (under
    ``root``). Raises NotIndexable, OSError."""
    entry = _read_entry(root, os.path.relpath(sidecar, root))
    add(connection, entry)
    return entry


def remove(connection: sqlite3.Connection, paths: list[str]) -> None:
    """Forget files (paths relative to the storage root)."""
    connection.executemany("DELETE FROM recordings WHERE path = ?", [(path,) for path in paths])
    connection.commit()


def search(connection: sqlite3.Connection, query: Search) -> list[dict[str, Any]]:
    """The sidecars of the recordings found (one page), each with its ``path``.

    A text that many recordings hold is found at once among the newest
    rows, read in order until the page is full; one that few hold is looked
    up in the trigram index (which, for a common text, would hand over
    every match to be sorted). The newest SCAN_NEWEST rows are read first:
    if the page is full there, it is the page (they come first in the
    order); if not, the index is asked."""
    sql, params = search_sql(query)
    if "recordings_text" in sql:
        # The newest rows (of the time the search asks for) are those
        # started since the SCAN_NEWEST-th newest; all of them, when there
        # are fewer: then the scan is the answer.
        times, times_params = _time_range(query)
        within = "WHERE " + " AND ".join(times) if times else ""
        boundary = connection.execute(
            f"SELECT started_at FROM recordings {within} ORDER BY started_at DESC "
            "LIMIT 1 OFFSET ?", (*times_params, SCAN_NEWEST)).fetchone()
        page = list(_found(connection, *search_sql(
            query, scanned_since="" if boundary is None else boundary[0])))
        if boundary is None or len(page) == query.page_size:
            return page
    return list(_found(connection, sql, params))


def _time_range(search: Search) -> tuple[list[str], list[str]]:
    """The conditions (and their parameters) of a search's since and until."""
    where, params = [], []
    if search.since is not None:
        where.append("started_at >= ?")
        params.append(parse_time(search.since))
    if search.until is not None:
        where.append("started_at < ?")
        params.append(parse_time(search.until, end_of_day=True))
    return where, params


def search_all(connection: sqlite3.Connection, query: Search) -> Iterator[dict[str, Any]]:
    """All the recordings a search finds (its page ignored), read as they
    are used: one statement, so one state of the index however long the
    reading takes."""
    return _found(connection, *search_sql(query, paged=False))


def _found(connection: sqlite3.Connection, sql: str,
           params: list[Any]) -> Iterator[dict[str, Any]]:
    for path, sidecar in connection.execute(sql, params):
        yield dict(json.loads(sidecar), path=path)


@attrs.frozen
class CaughtUp:
    """What `catch_up` did."""

    added: int
    removed: int
    unchanged: int
    # Sidecars that could not be indexed: (path under the root, why).
    skipped: tuple[tuple[str, str], ...]


def catch_up(connection: sqlite3.Connection, root: str, full: bool = False) -> CaughtUp:
    """Make the index match the finished recordings' sidecars under
    ``root``: index those it lacks (or that changed since), forget the
    files that are gone. ``full``: read every sidecar again."""
    indexed = dict(connection.execute("SELECT path, sidecar_mtime_ns FROM recordings"))
    found: set[str] = set()
    added = unchanged = 0
    skipped: list[tuple[str, str]] = []
    for relpath, mtime_ns in _sidecars(root, skipped):
        wav = os.path.splitext(relpath)[0] + ".wav"
        if not full and indexed.get(wav) == mtime_ns:
            found.add(wav)
            unchanged += 1
            continue
        try:
            entry = _read_entry(root, relpath)
        except NotFinished:
            continue  # indexed when it is finished
        except (NotIndexable, OSError) as error:
            skipped.append((relpath, str(error)))
            continue
        found.add(entry.path)
        _insert(connection, entry)
        added += 1
        if added % COMMIT_EVERY == 0:
            connection.commit()  # others (the service's writes) wait only briefly
    gone = [path for path in indexed if path not in found]
    remove(connection, gone)  # commits the additions too
    return CaughtUp(added, len(gone), unchanged, tuple(skipped))


def _read_entry(root: str, relpath: str) -> IndexEntry:
    path = os.path.join(root, relpath)
    with open(path, "rb", opener=no_follow) as handle:
        mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
        raw = handle.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise NotIndexable(f"not JSON: {error}") from None
    return entry_from_sidecar(data, relpath, mtime_ns)


def _sidecars(root: str, skipped: list[tuple[str, str]]) -> Iterator[tuple[str, int]]:
    """Every sidecar under ``root``: (its path under root, its mtime in ns).
    A symbolic link below root is not followed (it could show a file from
    anywhere as a recording): it goes to ``skipped``."""
    def found_link(path: str) -> None:
        skipped.append((os.path.relpath(path, root), LINK_SKIPPED))

    for folder, files in walk_files(root, found_link):
        for name in sorted(files):
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                mtime_ns = files[name].stat(follow_symlinks=False).st_mtime_ns
            except OSError:
                continue  # removed meanwhile
            yield os.path.relpath(os.path.join(folder, name), root), mtime_ns
