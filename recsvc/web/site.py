"""The HTTP side (twisted.web, in the service's process): the JSON API over
the index and the recordings in progress, the recordings' audio, the health
check, the metrics and the web page. Thin: searching is recsvc.index.store's,
decoding recsvc.web.playback's; blocking work runs in threads.

    GET /api/recordings?number=&name=&device=&direction=&since=&until=
                        &min_duration=&stop_reason=&order=&page=&page_size=&after=
    GET /api/recordings/{id}                the files of a recording, its notes, its hold
    POST /api/recordings/{id}/notes         {"text": .., "tags": [..]}: a note
    POST /api/recordings/{id}/hold          {"reason": ..}: a legal hold
    POST /api/recordings/{id}/release       {"reason": ..}: the hold ended
    GET /api/export?(a search's parameters) the search as CSV
    GET /api/me                             who is signed in: role, rights, scopes
    GET /api/recordings/{id}/audio          16-bit PCM WAV (Range works);
        ?format=original                    the stored bytes; ?file=NAME one file
    GET /api/active                         the recordings in progress
    GET /api/audit?actor=&action=&target=&since=&until=&before=&limit=
                                            the audit trail, newest first
    GET /healthz
    GET /metrics                            Prometheus
    GET /                                   the web page
"""

from __future__ import annotations

import csv
import errno
import io
import ipaddress
import os
import re
import time
from typing import Any, Callable
from urllib.parse import quote

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from prometheus_client.exposition import CONTENT_TYPE_LATEST, choose_encoder, generate_latest
from twisted.web import server, static
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from recsvc.archive.layout import node_of
from recsvc.archive.store import StoreFailure
from recsvc.index import store as index

from recsvc.storage.erasure import ErasurePlace
from recsvc.web import playback
from recsvc.web.admin import EraseResource, UsersResource
from recsvc.web.answers import (
    ApiError, AsyncAnswer, ErrorResource, JsonAnswer, PostedAnswer, argument, header_text,
    identity_of, json_body, require, send_json, still_there, within_reach)
from recsvc.web.accesslog import AccessLog
from recsvc.config import HttpAuthConfig
from recsvc.web.audit import Auditor, actor_of
from recsvc.web.auth import (
    OPEN, Directory, Gate, GuardedResource, Identity, basic_credentials, bearer_token)
from recsvc.web.sessions import SessionKeeper, session_token
from recsvc.access import roles
from recsvc.access.audit import ACTIONS, AuditQuery
from recsvc.access.holds import Hold, check_reason
from recsvc.access.notes import Note, note_of
from recsvc.index.spreadsheet import EXPORT_COLUMNS, csv_cells
from recsvc.access.scopes import Group
from recsvc.logs import Logger
from recsvc.metrics import Metrics
from recsvc.index.numberplan import NumberPlan
from recsvc.session import RECORDING
from recsvc.summary import iso_utc
from recsvc.storage.wav import NotAWav

PAGE = os.path.dirname(os.path.abspath(__file__))
# Output bytes read and decoded in one thread job while sending audio.
AUDIO_CHUNK = 256 * 1024

# The largest request body (a note's JSON): a larger one is refused (413) unread.
MAX_BODY_BYTES = 8192
# The methods answered everywhere (any other: 405, naming these).
READ_METHODS = frozenset({b"GET", b"HEAD"})
# Where a POST is taken: the page's sign-in and sign-out (no body), a
# recording's notes and holds (a JSON body).
POST_PATHS = re.compile(rb"^/(login|logout|api/recordings/[^/?]+/(notes|hold|release)|"
                        rb"api/users(/[^/?]+(/remove)?)?|api/erase)$")
# The most rows a CSV export of the API writes (`recsvc export` has no bound).
EXPORT_AT_MOST = 100_000

_log = Logger()
_SEARCH_PARAMETERS = {
    "number": "number", "name": "name", "device": "device", "direction": "direction",
    "since": "since", "until": "until", "min_duration": "min_duration_s",
    "stop_reason": "stop_reason", "page": "page", "page_size": "page_size",
    "order": "order", "after": "after", "note": "note", "tag": "tag",
}
_NUMBERS = {"min_duration_s": float, "page": int, "page_size": int}


def search_of(request: Request, plan: NumberPlan = NumberPlan()) -> index.Search:
    """The search a request's query asks for (a number in either form, as
    ``plan`` relates them). Raises ApiError (400)."""
    fields: dict[str, Any] = {"plan": plan}
    for parameter, field in _SEARCH_PARAMETERS.items():
        value = argument(request, parameter)
        if value is None or value == "":
            continue
        if field in _NUMBERS:
            try:
                fields[field] = _NUMBERS[field](value)
            except ValueError:
                raise ApiError(400, f"{parameter}: {value!r} is not a number") from None
        else:
            fields[field] = value
    try:
        return index.Search(**fields)
    except ValueError as error:
        raise ApiError(400, str(error).replace("min_duration_s:", "min_duration:")) from None


class _OutageLog:
    """The searches the index failed, in the log: a line per cause a
    minute, with how many searches it stands for (an outage fails every
    search until it ends)."""

    EVERY = 60.0

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._said: dict[str, tuple[float, int]] = {}  # cause: when said, how many since

    def note(self, reason: str, uri: bytes) -> None:
        now = self.now()
        said, since = self._said.get(reason, (None, 0))
        if said is not None and now - said < self.EVERY:
            self._said[reason] = (said, since + 1)
            return
        self._said = {cause: seen for cause, seen in self._said.items()
                      if now - seen[0] < self.EVERY}
        self._said[reason] = (now, 0)
        _log.error("HTTP {uri}: the index cannot be reached: {reason}{more}", uri=uri,
                   reason=reason, more=f" ({since} more requests failed so in the minute "
                                         "before)" if since else "")


class Api:
    """What the resources share: the index, the recorder, the files."""

    def __init__(self, run_index: Callable[..., Deferred[Any]], recorder: Any, root: str,
                 run_blocking: Callable[..., Deferred[Any]],
                 numbers: NumberPlan = NumberPlan(), node: str = "",
                 archive: Any = None,
                 run_playback: Callable[..., Deferred[Any]] | None = None,
                 index_database: str = "") -> None:
        self.run_index = run_index
        self.recorder = recorder
        self.root = root
        self.run_blocking = run_blocking
        # Reading audio for players, from the disk or the archive (a pool
        # of its own, so that a slow store holds up no other work).
        self.run_playback = run_playback or run_blocking
        self.numbers = numbers
        # This node's name, and its archive (an Archive: its store and
        # location), which the recordings of other nodes and those whose
        # local copy is gone play from; None: none.
        self.node = node
        self.archive = archive
        # index.database: its password is never said in an answer or a log line.
        self.index_database = index_database
        self.outages = _OutageLog()
        # The config's teams (groups:), which users' scopes name.
        self.groups: dict[str, Group] = {}
        # What users do, in the audit trail (make_site gives one that
        # writes; this one writes nothing).
        self.auditor = Auditor(lambda f, *args: succeed(None), time.time)

    def find(self, search: index.Search) -> Deferred[list[dict[str, Any]]]:
        return self.run_index(index.search, search)

    def find_page(self, search: index.Search) -> Deferred[index.Page]:
        """A page of ``search`` with its total and the next page's cursor."""
        return self.run_index(index.page_of, search)

    def files_of(self, recording_id: str,
                 identity: Identity = OPEN) -> Deferred[list[dict[str, Any]]]:
        """A recording's files, if ``identity`` reaches it (else the same
        404 as for none: an id outside a scope tells nothing)."""
        def found(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not rows:
                raise ApiError(404, f"no finished recording with id {recording_id!r}")
            return rows
        search = index.Search(recording_id=recording_id, page_size=index.MAX_PAGE_SIZE)
        return self.find(within_reach(search, identity)).addCallback(found)

    def playable_of(self, row: dict[str, Any]) -> playback.Playable:
        """The audio of an index row's file: from this node's disk when it
        recorded it and still has it, else from the archive. Blocking.
        Raises ApiError, NotAWav, OSError, StoreFailure."""
        node = row.get("node") or ""
        if node in ("", self.node):  # ("": a sidecar from before nodes had names)
            try:
                return playback.open_playable(playback.FileBytes(self.path_of(row)))
            except FileNotFoundError:
                if self.archive is None:
                    raise
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise ApiError(404, "the recording's file is a symbolic link, not followed")
                raise
        elif self.archive is None:
            raise ApiError(404, f"the recording is on node {node!r}; this node has no "
                                "archive (archive.url) to play it from")
        key = self.archive.location.key(node_of(row.get("node"), self.node), row["path"])
        stored = self.archive.store.head(key)
        if stored is None:
            where = "gone from this node's disk" if node in ("", self.node) else \
                f"on node {node!r}"
            raise ApiError(404, f"the recording is {where} and not in the archive (yet)")
        return playback.open_playable(playback.ArchivedBytes(self.archive.store, key, stored.size))

    def path_of(self, row: dict[str, Any]) -> str:
        """The WAV file of an index row, which must be under the root: its
        folder resolved, its own name not (it is opened with O_NOFOLLOW, so
        a link in its place is refused even if it points inside the root).
        Blocking."""
        root = os.path.realpath(self.root)
        folder, name = os.path.split(os.path.join(root, row["path"]))
        path = os.path.join(os.path.realpath(folder), name)
        if not path.startswith(root + os.sep) or name in ("", ".", ".."):
            raise ApiError(404, "the recording's file is outside the recordings folder")
        return path


def public(row: dict[str, Any]) -> dict[str, Any]:
    """An index row as the API shows it: the sidecar, and where its audio is."""
    shown = dict(row)
    shown.pop("path", None)
    # None: a recording that received no audio (its WAV was not kept).
    shown["audio_url"] = None if row.get("file") is None else (
        f"/api/recordings/{quote(row['id'], safe='')}/audio"
        f"?file={quote(row['file'], safe='')}")
    return shown


class RecordingsResource(AsyncAnswer):
    isLeaf = False

    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api

    def getChild(self, path: bytes, request: Request) -> Resource:
        try:
            recording_id = path.decode("utf-8")
        except UnicodeDecodeError:
            return ErrorResource(404, "not a recording id")
        if request.postpath == [b"audio"]:
            request.postpath.pop()
            return AudioResource(self.api, recording_id)
        if request.postpath == [b"notes"]:
            request.postpath.pop()
            return NotesResource(self.api, recording_id)
        if request.postpath in ([b"hold"], [b"release"]):
            return HoldResource(self.api, recording_id, request.postpath.pop() == b"hold")
        if request.postpath in ([], [b""]):
            return RecordingResource(self.api, recording_id)
        return ErrorResource(404, "no such resource")

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.SEARCH)
        search = within_reach(search_of(request, self.api.numbers), identity)
        asked = {name: value for name in _SEARCH_PARAMETERS
                 if (value := argument(request, name)) is not None}
        return self.api.auditor.record(identity, request, "search", "", {"query": asked}
                                       ).addCallback(lambda _: self.api.find_page(search)).addCallback(lambda found: send_json(request, {
            "recordings": [public(row) for row in found.rows],
            "page": search.page, "page_size": search.page_size, "order": search.order,
            # How many the search finds in all: exact, or beyond the bound
            # the index counts to, an estimate ("total_exact": false).
            "total": found.total.count, "total_exact": found.total.exact,
            # The page after this one, as ``after`` takes it (null: none).
            "next": found.next,
        }))


class RecordingResource(AsyncAnswer):
    """A recording: its files, its notes, and its hold (null: none)."""

    def __init__(self, api: Api, recording_id: str) -> None:
        super().__init__()
        self.api, self.recording_id = api, recording_id

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.SEARCH)

        def found(rows: list[dict[str, Any]]) -> Deferred[Any]:
            return self.api.run_index(_notes_and_hold, rows).addCallback(
                lambda marks: send_json(request, {
                    "id": self.recording_id, "files": [public(row) for row in rows],
                    "notes": [note.to_json() for note in marks[0]],
                    "held": None if marks[1] is None else {
                        "reason": marks[1].reason, "held_by": marks[1].held_by,
                        "held_at": marks[1].held_at}}))
        return self.api.files_of(self.recording_id, identity).addCallback(found)


def _notes_and_hold(found_in: Any, rows: list[dict[str, Any]]
                    ) -> tuple[list[Note], Hold | None]:
    """The notes and the first hold (None: none) of a recording's files
    that the user reaches (``rows``: by their paths, never by the id alone,
    which another phone's call may share)."""
    held = _holds_of(found_in, rows)
    return found_in.notes_of([row["path"] for row in rows]), (held[0] if held else None)


def _holds_of(found_in: Any, rows: list[dict[str, Any]]) -> list[Hold]:
    """The holds on the files of ``rows``."""
    return found_in.holds_on([row["path"] for row in rows])


class NotesResource(PostedAnswer):
    """POST a note on a recording (the right to write notes, within scope):
    ``{"text": "...", "tags": ["dispute"]}``; 201 with the note."""

    def __init__(self, api: Api, recording_id: str) -> None:
        super().__init__()
        self.api, self.recording_id = api, recording_id

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.NOTE)
        body = json_body(request, ("text", "tags"))
        try:  # (checked before the recording is looked up)
            written = note_of(self.recording_id, "", iso_utc(self.api.auditor.now()),
                              actor_of(identity), body.get("text", ""), body.get("tags"))
        except ValueError as error:
            raise ApiError(400, str(error)) from None

        def found(rows: list[dict[str, Any]]) -> Deferred[Any]:
            # On the recording's first file the user reaches.
            first = min(rows, key=lambda row: (row.get("part") or 1, row["path"]))
            note = attrs.evolve(written, path=first["path"])
            event = self.api.auditor.event_of(identity, request, "note", self.recording_id, {
                "file": first.get("file") or "", "text": note.text, "tags": list(note.tags)})
            return self.api.run_index(_add_note, note, event).addCallback(
                lambda _: send_json(request, {"note": note.to_json()}, 201))
        return self.api.files_of(self.recording_id, identity).addCallback(found)


def _add_note(found_in: Any, note: Note, event: Any) -> None:
    found_in.add_note(note, audit=event)


class HoldResource(PostedAnswer):
    """POST ``{"reason": "..."}`` to put a recording (every file of it) on
    legal hold, or to release it (the right to hold, within scope)."""

    def __init__(self, api: Api, recording_id: str, holding: bool) -> None:
        super().__init__()
        self.api, self.recording_id, self.holding = api, recording_id, holding

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.HOLD)
        body = json_body(request, ("reason",))
        try:
            reason = check_reason(body.get("reason") if isinstance(body.get("reason"), str)
                                  else "")
        except ValueError as error:
            raise ApiError(400, f"reason: {error}") from None
        now = iso_utc(self.api.auditor.now())

        def found(rows: list[dict[str, Any]]) -> Deferred[Any]:
            if self.holding:
                files = [{"node": row.get("node") or "", "path": row["path"]} for row in rows]
                event = self.api.auditor.event_of(identity, request, "hold", self.recording_id,
                                                  {"reason": reason, "files": files})
                holds = [Hold(each["node"], each["path"], self.recording_id, reason,
                              actor_of(identity), now) for each in files]
                return self.api.run_index(_hold, rows, holds, event).addCallback(
                    lambda _: send_json(request, {"held": {"reason": reason,
                                                           "held_by": actor_of(identity),
                                                           "held_at": now}}))
            return self.api.run_index(_release, rows, self.recording_id, reason, identity,
                                      request, self.api.auditor).addCallback(
                lambda released: send_json(request, {"released": released}))
        return self.api.files_of(self.recording_id, identity).addCallback(found)


def _hold(found_in: Any, rows: list[dict[str, Any]], holds: list[Hold], event: Any) -> None:
    """Hold the files (blocking). Raises ApiError (409) if one is held
    already: a hold keeps its first reason, and says so."""
    held = _holds_of(found_in, rows)
    if held:
        raise ApiError(409, f"recording {holds[0].recording_id!r} is held already, since "
                            f"{held[0].held_at} by {held[0].held_by}: {held[0].reason}")
    found_in.hold_files(holds, audit=event)


def _release(found_in: Any, rows: list[dict[str, Any]], recording_id: str, reason: str,
             identity: Identity, request: Request, auditor: Auditor) -> int:
    """Release the holds on a recording's files that the user reaches
    (blocking, on the index's thread); how many files were held. Raises
    ApiError (409) if none is."""
    held = _holds_of(found_in, rows)
    if not held:
        raise ApiError(409, f"recording {recording_id!r} is not held")
    event = auditor.event_of(identity, request, "release", recording_id,
                             {"reason": reason, "held_for": held[0].reason})
    return found_in.release_files([(each.node, each.path) for each in held], audit=event)


class ExportResource(AsyncAnswer):
    """GET /api/export?(a search): the recordings it finds as CSV (every
    cell safe in a spreadsheet: recsvc.index.spreadsheet), at most
    EXPORT_AT_MOST; the right to export, within scope; audited."""

    COLUMNS = tuple(column for column in EXPORT_COLUMNS if column != "path")

    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.EXPORT)
        search = within_reach(search_of(request, self.api.numbers), identity)
        if search.after is not None or search.page != 1:
            raise ApiError(400, "an export is the whole search: no page or after")
        asked = {name: value for name in _SEARCH_PARAMETERS
                 if (value := argument(request, name)) is not None}

        def written(body: bytes) -> bytes:
            request.setResponseCode(200)
            request.setHeader(b"content-type", b"text/csv; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            request.setHeader(b"content-disposition",
                              b'attachment; filename="recordings.csv"')
            return body
        return self.api.auditor.record(identity, request, "export", "", {"query": asked}
                                       ).addCallback(lambda _: self.api.run_index(
                                           _csv_of, search, self.COLUMNS)).addCallback(written)


def _csv_of(found_in: Any, search: index.Search, columns: tuple[str, ...]) -> bytes:
    """The CSV of every recording ``search`` finds (blocking). Raises
    ApiError (400) beyond EXPORT_AT_MOST."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    rows: Any = (index.search_all(found_in, search) if search.order in index.ORDERS
                 else index.rows_by_column(found_in, search))  # (as the page sorts it)
    for count, row in enumerate(rows, 1):
        if count > EXPORT_AT_MOST:
            raise ApiError(400, f"the search finds more than {EXPORT_AT_MOST} recordings: "
                                "narrow it, or use `recsvc export` on the server")
        writer.writerow(csv_cells(row, columns))
    return out.getvalue().encode("utf-8")


class MeResource(Resource):
    """Who the request is from: name, role, rights, and whether their
    scope is every recording (the page shows what they may do)."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        identity = identity_of(request)
        return send_json(request, {
            "user": identity.user, "role": identity.role,
            "rights": [right for right in roles.RIGHTS if roles.may(identity.role, right)],
            "every_recording": identity.reach.everything,
            "signed_in": identity.scheme == "session"})


class AudioResource(AsyncAnswer):
    """A recording's audio: decoded to 16-bit PCM (byte ranges served), or
    with ``format=original`` the stored file."""

    def __init__(self, api: Api, recording_id: str) -> None:
        super().__init__()
        self.api, self.recording_id = api, recording_id

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.PLAY)
        audio_format = argument(request, "format") or "pcm16"
        if audio_format not in ("pcm16", "original"):
            raise ApiError(400, f"format: {audio_format!r} is not pcm16 or original")
        if audio_format == "original":
            require(request, roles.DOWNLOAD)
        wanted = argument(request, "file")
        return self.api.files_of(self.recording_id, identity).addCallback(
            self._chosen, request, wanted, audio_format, identity)

    def _chosen(self, rows: list[dict[str, Any]], request: Request, wanted: str | None,
                audio_format: str, identity: Identity) -> Deferred[Any]:
        if wanted:
            rows = [row for row in rows if row.get("file") == wanted]
            if not rows:
                raise ApiError(404, f"recording {self.recording_id!r} has no file {wanted!r}")
        # Without ?file=, a recording of several files plays from its first.
        row = min(rows, key=lambda row: row.get("part") or 1)
        if row.get("file") is None:
            raise ApiError(404, f"recording {self.recording_id!r} has no audio: "
                                f"{row.get('stop_reason') or 'none was received'}")
        audited = succeed(None)
        if audio_format == "original":
            audited = self.api.auditor.record(identity, request, "download", self.recording_id,
                                              {"file": row["file"]})
        return audited.addCallback(
            lambda _: self.api.run_playback(self.api.playable_of, row)).addCallbacks(
            self._send, self._unreadable, (request, audio_format, row, identity))

    def _unreadable(self, failure: Failure) -> None:
        if failure.check(FileNotFoundError):
            raise ApiError(404, "the recording's file is gone")
        if failure.check(StoreFailure):
            raise ApiError(503, f"the archive cannot be read: {failure.value.cause}")
        if failure.check(NotAWav, OSError):
            raise ApiError(500, f"the recording's file cannot be read: {failure.getErrorMessage()}")
        failure.raiseException()

    def _send(self, playable: playback.Playable, request: Request, audio_format: str,
              row: dict[str, Any], identity: Identity) -> None:
        if not still_there(request):
            return None
        name = os.path.splitext(row.get("file") or "recording.wav")[0]
        if audio_format == "original" or not playable.decoded:
            size, read, shown = playable.file_size, playback.read_stored, f"{name}.wav"
        else:
            size, read, shown = playable.size, playback.read_decoded, f"{name}.pcm16.wav"
        request.setHeader(b"accept-ranges", b"bytes")
        # Private recordings stay out of the browser's disk cache.
        request.setHeader(b"cache-control", b"no-store")
        try:
            wanted = playback.byte_range(header_text(request, b"range"), size)
        except playback.Unsatisfiable:
            request.setHeader(b"content-range", f"bytes */{size}".encode("ascii"))
            request.write(send_json(request, {"error": f"range: beyond the {size} bytes"}, 416))
            request.finish()
            return None
        request.setHeader(b"content-type", b"audio/wav")
        request.setHeader(b"content-disposition",
                          f'inline; filename="{quote(shown)}"'.encode("ascii"))
        if wanted is None:
            start, end = 0, size - 1
        else:
            start, end = wanted
            request.setResponseCode(206)
            request.setHeader(b"content-range", f"bytes {start}-{end}/{size}".encode("ascii"))
        request.setHeader(b"content-length", str(end - start + 1).encode("ascii"))
        if request.method == b"HEAD" or end < start:
            request.finish()
            return None
        if audio_format != "original":
            self.api.auditor.heard(identity, request, self.recording_id, row["file"], start, end)
        _RangeSender(request, playable, read, start, end, self.api.run_playback).begin()
        return None


@implementer(IPushProducer)
class _RangeSender:
    """Sends bytes ``start`` to ``end`` of a recording as ``read`` gives
    them, a chunk at a time, each read (and decoded) in a thread; the next
    chunk is read once the last is written, unless the connection asked to
    pause."""

    def __init__(self, request: Request, playable: playback.Playable,
                 read: Callable[[playback.Playable, int, int], bytes], start: int, end: int,
                 run_blocking: Callable[..., Deferred[Any]]) -> None:
        self.request, self.playable, self.read = request, playable, read
        self.next, self.end = start, end
        self.run_blocking = run_blocking
        self.busy = self.paused = self.stopped = False

    def begin(self) -> None:
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self.request.registerProducer(self, True)
        self._read_next()

    def _read_next(self) -> None:
        if self.busy or self.paused or self.stopped:
            return
        self.busy = True
        last = min(self.next + AUDIO_CHUNK - 1, self.end)
        self.run_blocking(self.read, self.playable, self.next, last).addCallbacks(
            self._got, self._failed, (last,)).addErrback(
            lambda failure: _log.failure("Sending {path} failed", failure,
                                         path=str(self.playable.source)))

    def _got(self, data: bytes, last: int) -> None:
        self.busy = False
        if self.stopped:
            return
        if len(data) != last - self.next + 1:
            # The file shrank or went while it was sent (retention): the
            # promised length cannot be kept, so the connection is closed.
            self._abandon(f"the file ended early ({len(data)} of {last - self.next + 1} bytes)")
            return
        self.next = last + 1
        self.request.write(data)
        if self.next > self.end:
            self.stopped = True
            self.request.unregisterProducer()
            self.request.finish()
        else:
            self._read_next()

    def _failed(self, failure: Failure) -> None:
        self.busy = False
        if not self.stopped:
            self._abandon(failure.getErrorMessage())

    def _abandon(self, reason: str) -> None:
        _log.warn("Sending {path} stopped: {reason}", path=str(self.playable.source),
                  reason=reason)
        self.stopped = True
        self.request.unregisterProducer()
        self.request.loseConnection()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._read_next()

    def stopProducing(self) -> None:
        self.stopped = True


class AuditResource(AsyncAnswer):
    """GET /api/audit: the audit trail, newest first, for those with the
    right to read it (admins, auditors): ``actor``, ``action``, ``target``,
    ``since``, ``until`` filter; ``before`` (a row's seq: the ``next`` of
    the page before) and ``limit`` page."""

    def __init__(self, api: Api) -> None:
        super().__init__()
        self.api = api

    def answer(self, request: Request) -> Deferred[Any]:
        require(request, roles.AUDIT)
        query = audit_query_of(request)
        return self.api.run_index(_audit_page, query).addCallback(lambda rows: send_json(
            request, {"rows": [row.as_json() for row in rows],
                      "next": rows[-1].seq if len(rows) == query.limit and rows[-1].seq > 1
                      else None}))


def _audit_page(found_in: Any, query: AuditQuery) -> list[Any]:
    return found_in.audit_page(query)


def audit_query_of(request: Request) -> AuditQuery:
    """The audit trail's query of a request's parameters; ApiError 400
    naming a bad one."""
    numbers = {}
    for name, low, high, default in (("before", 1, 2**62, None), ("limit", 1, 500, 100)):
        text = argument(request, name)
        if text is None:
            numbers[name] = default
            continue
        try:
            numbers[name] = int(text)
        except ValueError:
            raise ApiError(400, f"{name}: {text!r} is not a whole number") from None
        if not low <= numbers[name] <= high:
            raise ApiError(400, f"{name}: {numbers[name]} is outside {low}..{high}")
    action = argument(request, "action")
    if action is not None and action not in ACTIONS:
        raise ApiError(400, f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    times = {}
    for name in ("since", "until"):
        text = argument(request, name)
        try:
            times[name] = None if text is None else index.parse_time(
                text, end_of_day=name == "until")
        except ValueError as error:
            raise ApiError(400, f"{name}: {error}") from None
    return AuditQuery(numbers["before"], numbers["limit"], argument(request, "actor"), action,
                      argument(request, "target"), times["since"], times["until"])


class ActiveResource(Resource):
    """The recordings in progress."""

    isLeaf = True

    def __init__(self, api: Api, now: Callable[[], float]) -> None:
        super().__init__()
        self.api, self.now = api, now

    def render_GET(self, request: Request) -> bytes:
        try:
            reach = require(request, roles.SEARCH).reach
        except ApiError as error:
            return send_json(request, {"error": str(error)}, error.status)
        now = self.now()
        active = []
        for recording in self.api.recorder.registry:
            if recording.state != RECORDING:
                continue
            info, stats = recording.info, recording.progress()
            if not reach.includes({"device": info.device,
                                   "local_number": info.parties.local_number}):
                continue
            active.append({
                "id": info.recording_id, "device": info.device, "direction": info.direction,
                "local_number": info.parties.local_number, "local_name": info.parties.local_name,
                "remote_number": info.parties.remote_number,
                "remote_name": info.parties.remote_name, "codec": info.codec.name,
                "started_at": iso_utc(recording.started_at),
                "seconds": round(max(0.0, now - recording.started_at), 1),
                "packets_received": stats.received, "packets_lost": stats.lost,
                "rtp_port": recording.rtp_port,
            })
        active.sort(key=lambda row: row["started_at"], reverse=True)
        return send_json(request, {"active": active})


class HealthResource(Resource):
    isLeaf = True

    def __init__(self, recorder: Any) -> None:
        super().__init__()
        self.recorder = recorder

    def render_GET(self, request: Request) -> bytes:
        recorder = self.recorder
        problems = []
        if not recorder.running or not recorder.accepting:
            problems.append("shutting down")
        if recorder.disk is not None and recorder.disk.low:
            problems.append("disk full")
        body: dict[str, Any] = {"status": "ok" if not problems else ", ".join(problems),
                                "active": len(recorder.registry)}
        # How far behind the archive is: the service records all the same
        # (the recordings wait on the disk), so it stays "ok" (200).
        archive = getattr(recorder, "archive", None)
        status = None if archive is None else archive.status()
        if status is not None:
            body["archive"] = status.to_json()
        return send_json(request, body, 200 if not problems else 503)


class ApiRoot(Resource):
    def __init__(self, api: Api, now: Callable[[], float]) -> None:
        super().__init__()
        self.putChild(b"recordings", RecordingsResource(api))
        self.putChild(b"active", ActiveResource(api, now))
        self.putChild(b"audit", AuditResource(api))
        self.putChild(b"export", ExportResource(api))
        self.putChild(b"me", MeResource())
        self.putChild(b"users", UsersResource(api, api.run_blocking, api.groups))
        archive = api.archive
        self.putChild(b"erase", EraseResource(api, ErasurePlace(
            api.root, api.numbers, api.node, None if archive is None else archive.location,
            None if archive is None else archive.store)))

    def getChild(self, path: bytes, request: Request) -> Resource:
        return ErrorResource(404, "no such resource")


class MetricsResource(Resource):
    """/metrics, rendered on the reactor thread (they read the recordings;
    the free space is the recorder's disk watch's last reading)."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        role = identity_of(request).role
        if role != "admin":
            return send_json(request, {"error": f"a user of role {role} may not read the "
                                                "metrics (an admin, or the token, may)"}, 403)
        try:
            encoder, content_type = choose_encoder(
                (header_text(request, b"accept") or "").encode("latin-1").decode("ascii", "replace"))
        except (TypeError, ValueError):  # an Accept the client library cannot read
            encoder, content_type = generate_latest, CONTENT_TYPE_LATEST
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return encoder(self.metrics.registry)


class WebRoot(Resource):
    """/: the page; /static/: its files; /api/, /healthz, /metrics."""

    def __init__(self, api: Api, now: Callable[[], float], metrics: Resource | None) -> None:
        super().__init__()
        self.putChild(b"api", ApiRoot(api, now))
        self.putChild(b"healthz", HealthResource(api.recorder))
        if metrics is not None:
            self.putChild(b"metrics", metrics)
        self.putChild(b"static", PageFiles(os.path.join(PAGE, "static")))
        self.page = PageFiles(os.path.join(PAGE, "index.html"), defaultType="text/html")

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self.page
        return ErrorResource(404, "no such page")


class PageFiles(static.File):
    """The page (/) and its files (/static/): a name that is not a plain file name
    (letters, digits, ``.``, ``-``, ``_``) is not found, before Twisted
    would look for it (a NUL in it made os.stat raise: a 500); no listing
    of the folder; served whole, whatever a Range says (they are small, and
    Twisted's Range parsing logs a traceback for non-ASCII bytes)."""

    _NAME = re.compile(rb"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.childNotFound = ErrorResource(404, "no such file")

    def getChild(self, path: bytes, request: Request) -> Resource:
        if not self._NAME.match(path):
            return self.childNotFound
        return super().getChild(path, request)

    def directoryListing(self) -> Resource:
        return self.childNotFound

    def render_GET(self, request: Request) -> Any:
        request.requestHeaders.removeHeader(b"range")
        # Asked again each time (a browser's cache may keep it, not use it
        # unasked): the page behind a sign-in is never shown from the cache
        # once its session ended.
        request.setHeader(b"cache-control", b"no-cache")
        return super().render_GET(request)


class _Request(server.Request):
    """A request that knows, for the access log, when it began and who
    http.auth let in (set by GuardedResource); whose body is read only if
    the site says so when its headers are in (`_Site.reads_body`), and
    otherwise answered without it, on a connection then closed."""

    began: float | None = None
    identity: Identity | None = None
    # Why the request's body is refused (413), if it is.
    body_refused: str | None = None

    def gotLength(self, length: int | None) -> None:
        if self.channel.site.reads_body(self, length):
            super().gotLength(length)
            return
        self.content = io.BytesIO()
        # The channel takes the request as complete with its headers: the
        # body is never read, and the connection, whose next bytes are that
        # body, ends with the answer (and no "100 Continue" asks for it).
        self.channel.length = 0
        self.channel.persistent = False
        self.requestHeaders.removeHeader(b"expect")
        self.setHeader(b"connection", b"close")


class _Site(server.Site):
    # Recordings are listened to in full: the default 12 hours would keep
    # idle keep-alive connections around for nothing.
    timeOut = 300
    noisy = False
    # Where no credentials are asked for, the Host names answered besides
    # IP addresses and localhost (see `host_allowed`).
    allowed_hosts: frozenset[str] = frozenset()
    # Who may send a (small) request body (see `reads_body`).
    gate: Gate | None = None
    auditor: Auditor | None = None

    def __init__(self, resource: Resource, now: Callable[[], float]) -> None:
        super().__init__(resource, requestFactory=_Request)
        self.now = now
        self.access = AccessLog(now)

    def log(self, request: Request) -> None:
        """One access event a request answered (Twisted's combined-log
        line is not written)."""
        self.access.ended(request, self._began(request))

    def _lost(self, reason: Failure, request: Request) -> None:
        self.access.ended(request, self._began(request), finished=False)

    def _began(self, request: Request) -> float:
        began = getattr(request, "began", None)
        return self.now() if began is None else began

    def startFactory(self) -> None:
        super().startFactory()
        if self.gate is not None:
            # The users read as it starts listening (a failure is logged;
            # asked again by the requests).
            self.gate.users_now().addErrback(lambda failure: None)

    def stopFactory(self) -> None:
        self.access.flush()
        if self.auditor is not None:
            self.auditor.flush()  # (the plays under way)
        super().stopFactory()

    def reads_body(self, request: _Request, length: int | None) -> bool:
        """Whether a request's body of ``length`` bytes (None: chunked, a
        length not known) is read, decided when its headers are in: only a
        small one (a change's JSON), from a client whose Host is answered
        where no credentials are asked for, else whose credentials are good
        without a password check, or that POSTs a change with credentials
        of the right form (checked before the body is used). A larger one
        is refused (413)."""
        if length == 0:
            return True
        if length is None or length > MAX_BODY_BYTES:
            request.body_refused = (f"a request body is at most {MAX_BODY_BYTES} bytes, "
                                    f"with a Content-Length")
            return False
        if self.gate is None or self.gate.open_now():
            return host_allowed(request.getHeader(b"host"), self.allowed_hosts)
        if self.gate.admits_at_once(request):
            return True
        # A change's JSON (a note, a hold) from a client with credentials
        # (a password, a token, a session's cookie), checked before the body
        # is used. (The method and path, still the channel's: the request
        # gets them once its body is in.)
        command = getattr(request.channel, "_command", b"")
        path = getattr(request.channel, "_path", b"").split(b"?", 1)[0]
        header = request.getHeader(b"authorization")
        return (command == b"POST" and POST_PATHS.match(path) is not None
                and (basic_credentials(header) is not None or bearer_token(header) is not None
                     or session_token(request) is not None))

    def getResourceFor(self, request: Request) -> Resource:
        request.began = self.now()
        request.notifyFinish().addErrback(self._lost, request)
        request.setHeader(b"x-content-type-options", b"nosniff")
        if request.body_refused is not None:
            return ErrorResource(413, request.body_refused)
        if request.method not in READ_METHODS and not (
                request.method == b"POST" and POST_PATHS.match(request.path)):
            request.setHeader(b"allow", b"GET, HEAD")
            return ErrorResource(405, "GET and HEAD only here (POST: /login, /logout, a "
                                      "recording's notes, hold and release, users, erase)")
        return super().getResourceFor(request)


def host_allowed(host: bytes | str | None, names: frozenset[str]) -> bool:
    """Whether a Host header names this server as a page on this machine
    may: an IP address, localhost, or one of ``names``. Without http.auth,
    this is what keeps a web page elsewhere from reading the recordings
    through a browser here (a name of its own turned to 127.0.0.1, "DNS
    rebinding"). No Host at all (HTTP/1.0) is let through."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("latin-1")
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        name = host[1:host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    if name == "localhost" or name in names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def make_site(recorder: Any, run_index: Callable[..., Deferred[Any]], root: str,
              run_blocking: Callable[..., Deferred[Any]], metrics: Metrics,
              auth: HttpAuthConfig, now: Callable[[], float],
              allowed_hosts: tuple[str, ...] = (),
              numbers: NumberPlan = NumberPlan(), node: str = "",
              archive: Any = None,
              run_playback: Callable[..., Deferred[Any]] | None = None,
              index_database: str = "",
              groups: dict[str, Group] | None = None,
              call_later: Callable[..., Any] | None = None) -> server.Site:
    """The HTTP side as a Site: guarded once a user of the index database
    or of http.auth, or http.auth's token, is set (/healthz stays open,
    for load balancers and monitors), each user with their role's rights
    over the recordings their scopes reach (``groups``: the config's);
    without any, open to requests whose Host ``allowed_hosts`` allows;
    searches by
    number find either form as ``numbers`` relates them; the recordings
    of other nodes than ``node``, and those whose file is gone, play from
    ``archive`` (an Archive, or None); audio is read by ``run_playback``
    (``run_blocking`` unless given); ``index_database``'s password is
    hidden from what the index's errors say."""
    api = Api(run_index, recorder, root, run_blocking, numbers, node, archive, run_playback,
              index_database)
    api.outages = _OutageLog(now)
    api.groups = dict(groups or {})
    gate = Gate({user.name: user.password_hash for user in auth.users}, auth.token,
                run_blocking, now, auth.max_failures_per_minute,
                Directory(run_index, now, groups))
    api.auditor = Auditor(run_index, now, call_later)
    gate.on_checked = api.auditor.signed_in
    hosts = frozenset(allowed_hosts)  # (as config normalised them)
    site = _Site(GuardedResource(WebRoot(api, now, MetricsResource(metrics)), gate,
                                 frozenset({b"healthz", b"static"}), ErrorResource,
                                 lambda request: host_allowed(request.getHeader(b"host"), hosts),
                                 SessionKeeper(run_index, now), JsonAnswer),
                 now)
    site.gate, site.allowed_hosts, site.auditor = gate, hosts, api.auditor
    site.displayTracebacks = False
    return site

