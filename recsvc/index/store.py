"""The recordings' index: every finished recording's sidecar, searchable.

What any index is (`IIndex`, kept by SQLite in recsvc.index.sqlite and by
PostgreSQL in recsvc.index.postgres; recsvc.index.backends opens the one
``index.database`` names), and what they share: the entry a sidecar makes,
what a search asks (`Search`), and catching up with the sidecars.

The sidecars stay the source of truth: `catch_up` adds to the index what it
missed and drops what is gone (at start-up), `catch_up(full=True)` reads
every sidecar again (`recsvc reindex`). An index's methods block; the
service calls them in a thread of its own (recsvc.index.indexer).
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import os
import re
from typing import Any, Callable, Iterator, Sequence, TypeVar

import attrs
from zope.interface import Interface

from recsvc.devices import device_key
from recsvc.access.notes import check_tag
from recsvc.index.numberplan import NumberPlan, digits_of
from recsvc.storage.folder import no_follow, walk_files

DIRECTIONS = ("in", "out")
# The orders a search's results come in, and what each sorts by; ties in
# the last places by the file's path and the node that indexed it (two
# nodes may file recordings under one path), so that pages never overlap.
ORDERS = ("newest", "oldest", "longest", "shortest")
# The orders by another column (the page's column headings), each also
# reversed with a leading "-": the newest first among equals. The index
# keeps no order of these: a search sorted by one finds at most
# COLUMN_ORDER_AT_MOST recordings (see `page_of`), which are sorted as read.
COLUMN_ORDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "direction": lambda row: str(row.get("direction") or ""),
    "local": lambda row: (digits_of(str(row.get("local_number") or "")),
                          str(row.get("local_name") or "").casefold()),
    "remote": lambda row: (digits_of(str(row.get("remote_number") or "")),
                           str(row.get("remote_name") or "").casefold()),
    "device": lambda row: device_search_key(str(row.get("device") or "")),
    "stop_reason": lambda row: str(row.get("stop_reason") or ""),
}
COLUMN_ORDER_AT_MOST = 10_000
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
    """What to look for; every field given must match. In ``order``
    (newest first unless it says), paged."""

    number: str | None = None  # digits found in the local or the remote number
    name: str | None = None  # text found in the local or the remote name
    device: str | None = None  # hex digits found in the MAC address
    direction: str | None = None
    since: str | None = None  # started at or after (see parse_time)
    until: str | None = None  # started before
    min_duration_s: float | None = None
    stop_reason: str | None = None
    recording_id: str | None = None
    # Text found in a note on the recording or its tags (any case); a tag
    # the recording's notes carry (recsvc.access.notes).
    note: str | None = None
    tag: str | None = None
    page: int = 1
    page_size: int = 50
    order: str = "newest"
    # The pages after the row this cursor was made of (`cursor_of`, the
    # last row of the page before): its page 1 is the page that follows.
    after: str | None = None
    # How the number's national and international forms relate (numbers.*):
    # either form finds the other. The default: digits as typed.
    plan: NumberPlan = NumberPlan()
    # Only the recordings of these devices (device keys) or local numbers
    # (digits): a user's scope (recsvc.access.scopes.Reach). None: any.
    devices_within: frozenset[str] | None = None
    numbers_within: frozenset[str] | None = None

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
                    parse_time(value, end_of_day=key == "until")  # as the index reads it
                except ValueError as error:
                    raise ValueError(f"{key}: {error}") from None
        if self.note is not None and not self.note.strip():
            raise ValueError("note: no text to look for")
        if self.tag is not None:
            check_tag(self.tag)  # raises ValueError naming "tag"
        if self.min_duration_s is not None and not self.min_duration_s >= 0:
            raise ValueError(f"min_duration_s: {self.min_duration_s!r} is not a duration")
        if self.order not in ORDERS and self.order.removeprefix("-") not in COLUMN_ORDERS:
            raise ValueError(f"order: {self.order!r} is not one of {', '.join(ORDERS)}, or a "
                             f"column ({', '.join(COLUMN_ORDERS)}; reversed with a leading -)")
        if self.after is not None:
            if self.order not in ORDERS:
                raise ValueError(f"after: not with order {self.order} (its pages go by number)")
            order_key_of(self.after, self.order)  # raises ValueError naming "after"
        if not 1 <= self.page <= MAX_PAGE:
            raise ValueError(f"page: {self.page} is outside 1..{MAX_PAGE}")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size: {self.page_size} is outside 1..{MAX_PAGE_SIZE}")


def cursor_of(row: dict[str, Any]) -> str:
    """Where a found row (a sidecar with its ``path``, as a search gives
    it) is in any order, as the text a search's ``after`` takes: its
    start, duration, path and node (the one that indexed it, as
    IIndex.search gives it)."""
    key = [parse_time(row["started_at"]), float(row["duration_s"]), row["path"],
           row.get("node") or ""]
    return base64.urlsafe_b64encode(
        json.dumps(key, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).decode("ascii").rstrip("=")


def order_key_of(cursor: str, order: str) -> tuple[Any, ...]:
    """The values ``order`` sorts by of the row a cursor was made of
    (`cursor_of`), in its order's columns (the node last). Raises
    ValueError naming "after" (a cursor of an earlier recsvc, without the
    node, among the refused)."""
    try:
        started_at, duration_s, path, node = json.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
        if not (isinstance(started_at, str) and parse_time(started_at) == started_at
                and isinstance(duration_s, (int, float)) and not isinstance(duration_s, bool)
                and isinstance(path, str) and isinstance(node, str)):
            raise ValueError
        # (json.loads takes NaN and Infinity, and an integer of any size.)
        duration = float(duration_s)
        if not math.isfinite(duration):
            raise ValueError
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
        raise ValueError(f"after: {cursor[:40]!r} is not a cursor a search gave") from None
    if order in ("newest", "oldest"):
        return (started_at, path, node)
    return (duration, started_at, path, node)


# What the SQL of any index shares: how a search's text, times and cursor
# become conditions (the backends differ in their placeholder: "?", "%s").

def like_containing(text: str) -> str:
    """A LIKE pattern (escaped with a backslash) that finds ``text`` as it
    is anywhere in a value: ``%`` and ``_`` are literal characters."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def time_bounds(query: Search) -> tuple[str | None, str | None]:
    """The search's since and until as the index compares times (until a
    date: to the end of its day)."""
    since = None if query.since is None else parse_time(query.since)
    until = None if query.until is None else parse_time(query.until, end_of_day=True)
    return since, until


def time_conditions(query: Search, mark: str = "?") -> tuple[list[str], list[Any]]:
    """The conditions of the search's since and until."""
    where: list[str] = []
    params: list[Any] = []
    since, until = time_bounds(query)
    if since is not None:
        where.append(f"started_at >= {mark}")
        params.append(since)
    if until is not None:
        where.append(f"started_at < {mark}")
        params.append(until)
    return where, params


def scoped(query: Search) -> bool:
    """Whether ``query`` is within some devices or local numbers (a user's
    scope): its total is then counted, never estimated from every
    recording's figures."""
    return query.devices_within is not None or query.numbers_within is not None


def field_conditions(query: Search, mark: str = "?", local_digits: str = "",
                     like_any_case: str = "LIKE") -> tuple[list[str], list[Any]]:
    """The conditions on the fields a search compares as they are: the
    direction, stop reason and id, since and until, the least duration, and
    the devices or local numbers it is within (``local_digits``: the
    backend's expression of a row's local number's digits), and its note
    and tag (``like_any_case``: the backend's LIKE that ignores case)."""
    where: list[str] = []
    params: list[Any] = []
    if query.devices_within is not None or query.numbers_within is not None:
        devices = sorted(query.devices_within or ())
        numbers = sorted(query.numbers_within or ())
        either = []
        if devices:
            either.append(f"device IN ({', '.join([mark] * len(devices))})")
        if numbers:
            either.append(f"{local_digits} IN ({', '.join([mark] * len(numbers))})")
        where.append("(" + " OR ".join(either) + ")" if either else "1 = 0")
        params += devices + numbers
    for column, value in (("direction", query.direction), ("stop_reason", query.stop_reason),
                          ("recording_id", query.recording_id)):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    times, times_params = time_conditions(query, mark)
    where += times
    params += times_params
    if query.min_duration_s is not None:
        where.append(f"duration_s >= {mark}")
        params.append(query.min_duration_s)
    notes, notes_params = note_conditions(query, mark, like_any_case)
    return where + notes, params + notes_params


def note_conditions(query: Search, mark: str = "?",
                    like_any_case: str = "LIKE") -> tuple[list[str], list[Any]]:
    """The conditions of the search's note text and tag: the file has a
    note (recsvc.access.notes) with that text in it or its tags, the case
    of ASCII letters ignored (``like_any_case``: SQLite's LIKE, PostgreSQL's
    ILIKE over bytewise text), or with that tag."""
    where: list[str] = []
    params: list[Any] = []
    if query.note is not None:
        where.append(f"path IN (SELECT path FROM notes WHERE text {like_any_case} {mark} "
                     f"ESCAPE '\\' OR tags {like_any_case} {mark} ESCAPE '\\')")
        params += [like_containing(query.note.strip())] * 2
    if query.tag is not None:
        where.append(f"path IN (SELECT path FROM notes WHERE tags LIKE {mark} ESCAPE '\\')")
        params.append(like_containing(f" {check_tag(query.tag)} "))
    return where, params


def after_condition(columns: Sequence[tuple[str, bool]], values: Sequence[Any],
                    mark: str = "?") -> tuple[str, list[Any]]:
    """The condition of the rows after the row whose order ``values`` are
    (`order_key_of`) in an order by ``columns`` (each a column and whether
    it sorts descending), with ``mark`` as the placeholder."""
    # (a, b, c) after (x, y, z): a beyond x, or a = x and (b, c) after (y, z).
    parts: list[str] = []
    params: list[Any] = []
    for position in range(len(columns) - 1, -1, -1):
        column, down = columns[position]
        beyond = f"{column} {'<' if down else '>'} {mark}"
        equal = [f"{name} = {mark}" for name, _ in columns[:position]]
        parts.insert(0, "(" + " AND ".join([*equal, beyond]) + ")")
        params[0:0] = [*values[:position], values[position]]
    # The first column's bound also as a range an index can start at.
    first, down = columns[0]
    return (f"{first} {'<=' if down else '>='} {mark} AND (" + " OR ".join(parts) + ")",
            [values[0], *params])


@attrs.frozen
class Total:
    """How many recordings a search finds: ``count`` itself when ``exact``;
    otherwise more than the index counts one by one, and ``count`` is its
    estimate (at least the bound it counted to)."""

    count: int
    exact: bool


# How a search for text finds its page (both backends): the first
# WALK_FIRST rows of the order are read from its index and compared, and
# the walk widened as far as the matches seen say the page needs (to
# WALK_AT_MOST rows; for text COMMON_SHARE of the rows or more hold, which
# a lookup would gather by the hundred thousand, to WALK_FURTHEST); else
# the text is looked up.
WALK_FIRST = 10_000
WALK_AT_MOST = 200_000
WALK_FURTHEST = 2_000_000
COMMON_SHARE = 0.05

Row = TypeVar("Row")


def walk_then_look_up(
    query: Search,
    walk: Callable[[int], list[Row]],
    walked: Callable[[int], tuple[int, int]],
    look_up: Callable[[], list[Row]],
) -> list[Row]:
    """``query``'s page: as ``walk(rows)`` finds it in the first ``rows``
    of the order, if it is there or those were every row; else widened by
    how many matches the walk saw (``walked(rows)``: how many rows it read,
    at most ``rows``, and how many of them matched); else as
    ``look_up()`` finds it."""
    wanted = query.page * query.page_size
    rows = WALK_FIRST
    while True:
        page = walk(rows)
        if len(page) == query.page_size:
            return page
        read, seen = walked(rows)
        if read < rows:
            return page  # every row of the order was read
        if not seen:
            break
        further = math.ceil(wanted * rows / seen * 1.25)
        if further > WALK_AT_MOST and (rows >= WALK_AT_MOST or further > WALK_FURTHEST
                                       or seen / rows < COMMON_SHARE):
            break
        rows = max(further, rows * 2)
    return look_up()


# A search's total is counted exactly up to this many; beyond, estimated.
COUNT_EXACTLY_TO = 10_000


class IIndex(Interface):
    """An index of the finished recordings. Its methods block; one index
    (one connection) is used by one thread at a time."""

    def schema_version() -> int:
        """The schema version the index is at (0: a new, empty one)."""

    def indexed() -> dict[str, int]:
        """Every indexed file: its path (relative to the storage root) and
        its sidecar's mtime (ns) when it was indexed."""

    def put(entries: Sequence[IndexEntry]) -> None:
        """Index (or index again, replacing the row) files, in one transaction."""

    def remove(paths: Sequence[str]) -> None:
        """Forget files (paths relative to the storage root), in one transaction."""

    def search(query: Search) -> list[dict[str, Any]]:
        """The sidecars of one page of the recordings found, each with its
        ``path`` (under the storage root of the node that indexed it) and
        each row's ``node``: the sidecar's, or the node that indexed it
        when the sidecar names none (one from before nodes had names):
        PostgreSQL's row key; an SQLite index is one node's own, the node
        it was opened for (open_index's ``node``; opened without one, such
        a sidecar is given as it is, without a node)."""

    def search_all(query: Search) -> Iterator[dict[str, Any]]:
        """All the recordings found (the page ignored), read as they are
        used, from one state of the index; rows as `search` gives them."""

    def total(query: Search, bound: int) -> Total:
        """How many recordings ``query`` finds: exact up to ``bound``."""

    def close() -> None:
        """Let the connection go."""


def found_row(path: str, sidecar: str, node: str) -> dict[str, Any]:
    """A row as a search gives it (see IIndex.search): the sidecar's JSON
    with the file's ``path``, and ``node``, the node that indexed it, when
    the sidecar names none."""
    data = json.loads(sidecar)
    row = dict(data, path=path)
    if node and not data.get("node"):
        row["node"] = node
    return row


def add(found_in: Any, entry: IndexEntry) -> None:
    """Index (or index again) one file."""
    found_in.put([entry])


def remove(found_in: Any, paths: list[str]) -> None:
    """Forget files (paths relative to the storage root)."""
    found_in.remove(paths)


def search(found_in: Any, query: Search) -> list[dict[str, Any]]:
    """The sidecars of the recordings found (one page), each with its ``path``."""
    return found_in.search(query)


def search_all(found_in: Any, query: Search) -> Iterator[dict[str, Any]]:
    """All the recordings a search finds (its page ignored), read as they
    are used: one state of the index however long the reading takes."""
    return found_in.search_all(query)


def total(found_in: Any, query: Search, bound: int = COUNT_EXACTLY_TO) -> Total:
    """How many recordings ``query`` finds (exact up to ``bound``)."""
    return found_in.total(query, bound)


@attrs.frozen
class Page:
    """One page of a search's recordings, how many it finds in all, and the
    cursor of the page after (None: this is the last)."""

    rows: list[dict[str, Any]]
    total: Total
    next: str | None


def page_of(found_in: Any, query: Search, bound: int = COUNT_EXACTLY_TO) -> Page:
    """A page of ``query`` with its total (exact up to ``bound``): a page
    that ends the rows found (short, and the first or not empty) says it,
    without asking the index again (for rare text, a second lookup)."""
    if query.order not in ORDERS:
        return _page_by_column(found_in, query)
    rows = found_in.search(query)
    if query.after is None and len(rows) < query.page_size and (rows or query.page == 1):
        found = Total((query.page - 1) * query.page_size + len(rows), True)
    else:
        found = found_in.total(query, bound)
    following = None
    if len(rows) == query.page_size:
        cursor = cursor_of(rows[-1])
        if query.after is None and found.exact:
            more = (query.page - 1) * query.page_size + len(rows) < found.count
        else:  # (where the page is in all is not known: is a row after it?)
            more = bool(found_in.search(attrs.evolve(query, after=cursor, page=1, page_size=1)))
        following = cursor if more else None
    return Page(rows, found, following)


class TooManyToSort(ValueError):
    """A search sorted by a column that finds more than COLUMN_ORDER_AT_MOST."""


def _page_by_column(found_in: Any, query: Search) -> Page:
    """A page of ``query`` in a column's order (see `rows_by_column`)."""
    rows = rows_by_column(found_in, query)
    start = (query.page - 1) * query.page_size
    return Page(rows[start:start + query.page_size], Total(len(rows), True), None)


def rows_by_column(found_in: Any, query: Search) -> list[dict[str, Any]]:
    """Every recording ``query`` finds in its column's order
    (COLUMN_ORDERS), read newest first, then sorted. Raises TooManyToSort
    (naming "order") for more than COLUMN_ORDER_AT_MOST."""
    newest = attrs.evolve(query, order="newest", page=1, after=None)
    found = found_in.total(newest, COLUMN_ORDER_AT_MOST)
    if not found.exact or found.count > COLUMN_ORDER_AT_MOST:
        raise TooManyToSort(
            f"order: {query.order} sorts a search of at most {COLUMN_ORDER_AT_MOST} recordings"
            "; this one finds more: narrow it, or sort by date or duration")
    # (Stable, reversed too: the newest first among equals.)
    return sorted(found_in.search_all(newest), key=COLUMN_ORDERS[query.order.removeprefix("-")],
                  reverse=query.order.startswith("-"))


def add_sidecar(found_in: Any, root: str, sidecar: str) -> IndexEntry:
    """Index the finished recording whose sidecar is at ``sidecar`` (under
    ``root``). Raises NotIndexable, OSError."""
    entry = _read_entry(root, os.path.relpath(sidecar, root))
    add(found_in, entry)
    return entry


# Reading the sidecars.

# catch_up writes this many entries a transaction, so that others (the
# service's writes, beside a reindex) wait only briefly.
COMMIT_EVERY = 200
# Why catch_up skips a symbolic link below the storage root.
LINK_SKIPPED = "a symbolic link, not followed"


@attrs.frozen
class CaughtUp:
    """What `catch_up` did."""

    added: int
    removed: int
    unchanged: int
    # Sidecars that could not be indexed: (path under the root, why).
    skipped: tuple[tuple[str, str], ...]
    # Why the files not found were kept in the index, not forgotten (None:
    # those gone were forgotten).
    kept: str | None = None


def catch_up(found_in: Any, root: str, full: bool = False) -> CaughtUp:
    """Make the index match the finished recordings' sidecars under
    ``root``: index those it lacks (or that changed since), forget the
    files that are gone. ``full``: read every sidecar again.

    A root that cannot be listed raises its OSError, and nothing is
    forgotten; nor when no sidecar at all is found there while the index
    holds this node's recordings: a disk not mounted (the service makes
    an empty root), or a root this user may not read, looks so, and
    forgetting them would take every recording out of a shared index
    (``kept`` says why)."""
    indexed = found_in.indexed()
    found: set[str] = set()
    unchanged = 0
    waiting: list[IndexEntry] = []
    added = 0
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
        waiting.append(entry)
        added += 1
        if len(waiting) == COMMIT_EVERY:
            found_in.put(waiting)
            waiting = []
    if waiting:
        found_in.put(waiting)
    gone = [path for path in indexed if path not in found]
    if gone and not found:
        return CaughtUp(added, 0, unchanged, tuple(skipped), kept=(
            f"no sidecar could be indexed under {root}, where the index has {len(gone)} "
            "recordings of this node: they are kept, as a disk not mounted or a folder this "
            "user cannot read looks so (if they are all gone indeed, forget them by indexing "
            "anew: an SQLite index moved aside, a PostgreSQL index's rows of this node "
            "deleted)"))
    if gone:
        found_in.remove(gone)
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

    for folder, files in walk_files(root, found_link, root_listed=True):
        for name in sorted(files):
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                mtime_ns = files[name].stat(follow_symlinks=False).st_mtime_ns
            except OSError:
                continue  # removed meanwhile
            yield os.path.relpath(os.path.join(folder, name), root), mtime_ns
