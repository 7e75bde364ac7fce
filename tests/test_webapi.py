"""Tests for recsvc.web.site and recsvc.web.auth: the HTTP side over a real
loopback socket (the JSON API, audio with byte ranges, the recordings in
progress, /healthz, /metrics, the page, and http.auth)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import sqlite3
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.protocol import ClientCreator, Protocol
from twisted.internet.task import Clock
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from recsvc.media import g711

from recsvc.web import auth as httpauth

from recsvc.index import store as index
from recsvc.index.backends import CannotOpenIndex
from recsvc.index.sqlite import SqliteIndex

from recsvc.web import playback

from recsvc.web import site as webapi
from recsvc.media.codec import WAVE_FORMAT_ALAW
from recsvc.config import BasicUser, ConfigError, HttpAuthConfig, parse_config
from recsvc.web.auth import (
    MAX_CHECKING,
    MAX_CHECKING_PER_ADDRESS,
    Busy,
    Gate,
    GuardedResource,
    Identity,
    TooManyFailures,
    basic_credentials,
    bearer_token,
)
from recsvc.passwords import check_password_hash, hash_password, verify_password
from recsvc.cli.commands import main
from recsvc.metrics import Metrics, live_figures
from recsvc.index.numberplan import NumberPlan
from recsvc.storage.folder import sidecar_path
from recsvc.application.startup import http_endpoint_for, open_http_warning
from recsvc.storage.diskspace import DiskSpace
from recsvc.archive.layout import ArchiveLocation
from recsvc.archive.store import read_local
from recsvc.archive.uploader import Archive
from recsvc.testing import FakePhoneLink, FakePortPool, MemoryStore, memory_recorder, run_now
from tests.support.recordings import read_wav
from recsvc.storage.wav import WavFileWriter, WavFormat
from recsvc.web.site import make_site
from tests.support.builders import sidecar
from tests.support.builders import rtp, start_request

FOLDER = "00a859000001/2026/11/24"
TOKEN = "a-long-bearer-token-0123456789"


class HttpTestsMixin:
    """A site on 127.0.0.1 over an index with two finished recordings (one
    with real A-law audio) and a recorder with one recording in progress."""

    auth = HttpAuthConfig()
    allowed_hosts: tuple[str, ...] = ()
    numbers = NumberPlan()
    node = ""
    index_database = ""
    groups: dict | None = None

    def make_archive(self):
        """The archive the site plays from (None: none)."""
        return None

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.audio = bytes(random.Random(6).randrange(256) for _ in range(8000))
        self.wav = self.finished_recording("7", self.audio, "2026-11-24T10:00:00.000Z")
        self.finished_recording("8", b"\xd5" * 800, "2026-11-24T11:00:00.000Z",
                                remote_number="2002", direction="in")
        self.connection = SqliteIndex.open(os.path.join(self.mktemp(), "index.sqlite3"))
        self.addCleanup(self.connection.close)
        index.catch_up(self.connection, self.root)

        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.ports = FakePortPool()
        self.recorder = memory_recorder(os.path.join(self.root, "live"), clock=self.clock,
                                        ports=self.ports)
        # The disk watch's last reading is what /metrics shows.
        self.recorder.disk = DiskSpace(self.root, 1, self.clock, run_now,
                                       measure=lambda root: 123_456_789)
        self.recorder.startService()
        self.recorder.disk.refresh()
        self.recorder.link_connected(FakePhoneLink())
        answer = self.successResultOf(self.recorder.start_recording(
            start_request("live-1"), FakePhoneLink(), "127.0.0.1", "127.0.0.9"))
        for sequence in range(5):
            self.ports.deliver(answer.port, rtp(sequence, b"\xd5" * 160))
        self.clock.advance(3)
        self.metrics = Metrics()
        self.metrics.watch(lambda: live_figures(self.recorder))

        def run_index(f, *args):
            return maybeDeferred(f, self.connection, *args)

        self.blocking_calls: list[str] = []

        def run_blocking(f, *args):
            self.blocking_calls.append(getattr(f, "__name__", repr(f)))
            return deferToThread(f, *args)

        self.playback_calls: list[str] = []

        def run_playback(f, *args):
            self.playback_calls.append(getattr(f, "__name__", repr(f)))
            return deferToThread(f, *args)

        self.site = make_site(self.recorder, run_index, self.root, run_blocking, self.metrics,
                              self.auth, now=self.clock.seconds,
                              allowed_hosts=self.allowed_hosts, numbers=self.numbers,
                              node=self.node, archive=self.make_archive(),
                              run_playback=run_playback, index_database=self.index_database,
                              groups=self.groups)
        self.listening = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.listening.stopListening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=pool)

    def finished_recording(self, recording_id: str, audio: bytes, started_at: str,
                           **fields) -> str:
        data = sidecar(recording_id, started_at=started_at, **fields)
        wav = os.path.join(self.root, FOLDER, data["file"])
        os.makedirs(os.path.dirname(wav), exist_ok=True)
        writer = WavFileWriter(wav, WavFormat(WAVE_FORMAT_ALAW, 8000, 8))
        writer.write(audio)
        writer.close()
        with open(sidecar_path(wav), "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        return wav

    @inlineCallbacks
    def get(self, path: str, method: bytes = b"GET", body: bytes | None = None, **headers: str):
        url = f"http://127.0.0.1:{self.listening.getHost().port}{path}"
        response = yield self.agent.request(
            method, url.encode("ascii"),
            Headers({name.replace("_", "-"): [value] for name, value in headers.items()}),
            None if body is None else FileBodyProducer(io.BytesIO(body)))
        body = yield readBody(response)
        return response, body

    def assert_served_decoded(self, body: bytes) -> None:
        """``body`` is a whole 16-bit PCM WAV of recording 7's A-law audio
        (read by the end-to-end tests' own WAV reader, not the server's)."""
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(body)
        fmt, data, _ = read_wav(path)
        self.assertEqual(fmt, {"tag": 1, "channels": 1, "rate": 8000, "bits": 16})
        self.assertEqual(data, g711.decode_alaw(self.audio))

    @inlineCallbacks
    def get_json(self, path: str, status: int = 200, **headers: str):
        response, body = yield self.get(path, **headers)
        self.assertEqual(response.code, status, body)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"application/json; charset=utf-8"])
        return json.loads(body)

    def raw(self, request: bytes) -> Deferred[bytes]:
        """All the server answers to ``request`` (raw bytes, sent as they
        are) until it closes the connection."""
        answered: Deferred[bytes] = Deferred()
        received: list[bytes] = []

        class Client(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(request)

            def dataReceived(self, data: bytes) -> None:
                received.append(data)

            def connectionLost(self, reason) -> None:
                answered.callback(b"".join(received))
        ClientCreator(reactor, Client).connectTCP("127.0.0.1", self.listening.getHost().port)
        return answered


class IndexOutageTests(HttpTestsMixin, TestCase):
    """An index that cannot be reached (its database down) is a 503 saying
    so, logged a line per cause a minute, never as a bug."""

    @inlineCallbacks
    def test_a_503_logged_once_a_minute(self) -> None:
        """Searches and a recording's files are answered 503 with the
        cause; the log has one error line per cause a minute (the next
        saying how many it stood for), and no failure (traceback)."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        causes = [sqlite3.OperationalError("database is locked"),
                  CannotOpenIndex("postgresql://rec@db/x: connection refused")]

        def unreachable(*args: Any) -> None:
            raise causes[0]

        self.patch(SqliteIndex, "search", unreachable)
        for path in ("/api/recordings?number=138", "/api/recordings/7",
                     "/api/recordings/7/audio"):
            error = yield self.get_json(path, 503)
            self.assertEqual(error, {"error": "the index cannot be reached: database is locked"})
        self.clock.advance(61)
        yield self.get_json("/api/recordings", 503)
        causes.pop(0)
        error = yield self.get_json("/api/recordings", 503)
        self.assertIn("connection refused", error["error"])
        said = [formatEvent(event) for event in events
                if event.get("log_level") is not None and event["log_level"].name == "error"]
        self.assertEqual(len(said), 3, said)
        self.assertIn("the index cannot be reached: database is locked", said[0])
        self.assertNotIn("more requests", said[0])
        self.assertIn("(2 more requests failed so in the minute before)", said[1])
        self.assertIn("connection refused", said[2])
        self.assertEqual([event for event in events if "log_failure" in event], [])


class IndexOutagePasswordTests(HttpTestsMixin, TestCase):
    """The 503 of an unreachable index never says its URL's password."""

    index_database = "postgresql://rec:hunter%20%202@db/x"

    @inlineCallbacks
    def test_the_password_hidden(self) -> None:
        """Should the database's error quote the password (two spaces in
        it, as libpq reads it), the answer and the log hide it."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def unreachable(*args: Any) -> None:
            raise sqlite3.OperationalError("no answer (password 'hunter  2')")
        self.patch(SqliteIndex, "search", unreachable)
        error = yield self.get_json("/api/recordings?number=138", 503)
        self.assertNotIn("hunter", error["error"])
        self.assertIn("the index cannot be reached: no answer (password '", error["error"])
        self.assertNotIn("hunter", " ".join(formatEvent(event) for event in events))


class ApiTests(HttpTestsMixin, TestCase):
    @inlineCallbacks
    def test_search_by_number(self) -> None:
        """Digits anywhere in a number, whatever the separators; each row is
        the sidecar with where its audio is, and no server path."""
        found = yield self.get_json("/api/recordings?number=138%200013%208000")
        [row] = found["recordings"]
        self.assertEqual((row["id"], row["remote_number"]), ("7", "13800138000"))
        self.assertEqual(row["audio_url"],
                         "/api/recordings/7/audio?file=20261124T100000Z_out_13800138000_7.wav")
        self.assertNotIn("path", row)
        self.assertEqual((found["page"], found["page_size"]), (1, 50))

    @inlineCallbacks
    def test_search_filters_and_order(self) -> None:
        """The search lists recordings newest first and filters them by
        direction, days, device, number, minimum duration and stop reason, a
        page at a time."""
        everything = yield self.get_json("/api/recordings")
        self.assertEqual([row["id"] for row in everything["recordings"]], ["8", "7"])
        incoming = yield self.get_json("/api/recordings?direction=in&since=2026-11-24"
                                       "&until=2026-11-24&device=00-A8-59-00-00-01")
        self.assertEqual([row["id"] for row in incoming["recordings"]], ["8"])
        for query in ("since=2026-11-25", "until=2026-11-23", "device=00a859000002",
                      "number=2002&direction=out", "min_duration=61", "stop_reason=shutdown"):
            found = yield self.get_json(f"/api/recordings?{query}")
            self.assertEqual(found["recordings"], [], query)
        paged = yield self.get_json("/api/recordings?page=2&page_size=1")
        self.assertEqual([row["id"] for row in paged["recordings"]], ["7"])

    @inlineCallbacks
    def test_order_total_and_next(self) -> None:
        """A search says how many it finds in all and gives the next page's
        cursor, which ``after`` takes; ``order`` sorts by duration too."""
        first = yield self.get_json("/api/recordings?page_size=1")
        self.assertEqual((first["total"], first["total_exact"], first["order"]),
                         (2, True, "newest"))
        self.assertIsNotNone(first["next"])
        second = yield self.get_json(f"/api/recordings?page_size=1&after={first['next']}")
        self.assertEqual([row["id"] for row in first["recordings"] + second["recordings"]],
                         ["8", "7"])
        self.assertIsNone(second["next"])  # the total says this was the last
        longest = yield self.get_json("/api/recordings?order=shortest")
        self.assertEqual([row["id"] for row in longest["recordings"]], ["7", "8"])
        hostile = [f"order={order}&after={cursor}"
                   for order in ("longest", "newest") for cursor in HOSTILE_CURSORS]
        for query, parameter in (("order=loudest", "order"), ("after=x", "after"),
                                 *((query, "after") for query in hostile)):
            response, body = yield self.get(f"/api/recordings?{query}")
            self.assertEqual(response.code, 400, query)
            self.assertIn(parameter, json.loads(body)["error"])

    @inlineCallbacks
    def test_days_as_iso_times_with_offsets(self) -> None:
        """since and until take full ISO times with offsets (the page sends
        the start of its From day and of the day after its To day in its
        own zone), "+" escaped or not: recordings at 10:00 and 11:00 UTC on
        Nov 24 are on Nov 25 in UTC+14."""
        for plus in ("%2B", "+"):
            day = f"since=2026-11-25T00:00:00{plus}14:00&until=2026-11-26T00:00:00{plus}14:00"
            found = yield self.get_json(f"/api/recordings?{day}")
            self.assertEqual([row["id"] for row in found["recordings"]], ["8", "7"], plus)
            day = f"since=2026-11-24T00:00:00{plus}14:00&until=2026-11-25T00:00:00{plus}14:00"
            found = yield self.get_json(f"/api/recordings?{day}")
            self.assertEqual(found["recordings"], [], plus)

    @inlineCallbacks
    def test_bad_searches_are_400_naming_the_parameter(self) -> None:
        """A search parameter that does not parse or is out of range is a
        400 whose error starts with the parameter's name."""
        for query, starts in [("since=tuesday", "since:"), ("page=abc", "page:"),
                              ("min_duration=-3", "min_duration:"), ("number=abc", "number:"),
                              ("page_size=100000", "page_size:"),
                              (f"page={10 ** 30}", "page:"), ("until=9999-12-31", "until:"),
                              ("since=0001-01-01T00:00%2B14:00", "since:")]:
            error = yield self.get_json(f"/api/recordings?{query}", 400)
            self.assertTrue(error["error"].startswith(starts), error)

    @inlineCallbacks
    def test_one_recording(self) -> None:
        """/api/recordings/ID shows the recording with its files; an unknown
        id or path under it is a 404 with an error."""
        found = yield self.get_json("/api/recordings/7")
        self.assertEqual(found["id"], "7")
        self.assertEqual([row["file"] for row in found["files"]],
                         ["20261124T100000Z_out_13800138000_7.wav"])
        missing = yield self.get_json("/api/recordings/nope", 404)
        self.assertIn("nope", missing["error"])
        nothing = yield self.get_json("/api/recordings/7/other", 404)
        self.assertIn("error", nothing)

    @inlineCallbacks
    def test_audio_decoded_to_pcm16(self) -> None:
        """The default: a 16-bit PCM WAV of the stored A-law, the whole of
        it or any byte range (so the player can seek)."""
        response, body = yield self.get("/api/recordings/7/audio")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"audio/wav"])
        self.assertEqual(response.headers.getRawHeaders(b"accept-ranges"), [b"bytes"])
        self.assert_served_decoded(body)
        playable = playback.open_playable(playback.FileBytes(self.wav))
        response, part = yield self.get("/api/recordings/7/audio", range="bytes=1000-1999")
        self.assertEqual(response.code, 206)
        self.assertEqual(response.headers.getRawHeaders(b"content-range"),
                         [f"bytes 1000-1999/{playable.size}".encode("ascii")])
        self.assertEqual(part, body[1000:2000])
        response, body = yield self.get("/api/recordings/7/audio",
                                        range=f"bytes={playable.size}-")
        self.assertEqual(response.code, 416)
        self.assertEqual(response.headers.getRawHeaders(b"content-range"),
                         [f"bytes */{playable.size}".encode("ascii")])
        self.assertIsNone(response.headers.getRawHeaders(b"content-disposition"))
        self.assertIn("range", json.loads(body)["error"])

    @inlineCallbacks
    def test_audio_original(self) -> None:
        """?format=original serves the stored file byte for byte; another
        format is a 400 and a file not the recording's a 404, each naming
        what was wrong."""
        response, body = yield self.get("/api/recordings/7/audio?format=original")
        self.assertEqual(response.code, 200)
        with open(self.wav, "rb") as handle:
            self.assertEqual(body, handle.read())
        error = yield self.get_json("/api/recordings/7/audio?format=mp3", 400)
        self.assertIn("format", error["error"])
        error = yield self.get_json("/api/recordings/7/audio?file=other.wav", 404)
        self.assertIn("other.wav", error["error"])

    @inlineCallbacks
    def test_audio_first_part_by_default(self) -> None:
        """A recording of several files plays from its first unless ?file= says."""
        second = self.finished_recording(
            "7", b"\xd5" * 80, "2026-11-24T14:00:00.000Z", part=2,
            file="20261124T140000Z_out_13800138000_7_part2.wav")
        index.catch_up(self.connection, self.root)
        _, body = yield self.get("/api/recordings/7/audio?format=original")
        with open(self.wav, "rb") as handle:
            self.assertEqual(body, handle.read())
        _, body = yield self.get(
            "/api/recordings/7/audio?format=original&file=" + os.path.basename(second))
        with open(second, "rb") as handle:
            self.assertEqual(body, handle.read())

    @inlineCallbacks
    def test_audio_file_gone(self) -> None:
        """A recording whose file has gone from disk is a 404 saying so."""
        os.remove(self.wav)
        error = yield self.get_json("/api/recordings/7/audio", 404)
        self.assertIn("gone", error["error"])

    @inlineCallbacks
    def test_recording_without_audio(self) -> None:
        """A recording that received no RTP (its sidecar alone, naming no
        file) is listed without an audio URL, and asking for its audio is
        a 404 saying why, not an error."""
        data = sidecar("9", started_at="2026-11-24T12:00:00.000Z", file=None,
                       stop_reason="no RTP received")
        name = "20261124T120000Z_out_13800138000_9.json"
        with open(os.path.join(self.root, FOLDER, name), "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        index.catch_up(self.connection, self.root)
        found = yield self.get_json("/api/recordings/9")
        [row] = found["files"]
        self.assertEqual((row["file"], row["audio_url"]), (None, None))
        error = yield self.get_json("/api/recordings/9/audio", 404)
        self.assertEqual(error["error"], "recording '9' has no audio: no RTP received")

    @inlineCallbacks
    def test_active(self) -> None:
        """/api/active lists the recordings in progress with their numbers,
        packets received and seconds so far."""
        found = yield self.get_json("/api/active")
        [row] = found["active"]
        self.assertEqual((row["id"], row["remote_number"], row["packets_received"],
                          row["seconds"]), ("live-1", "13800138000", 5, 3.0))

    @inlineCallbacks
    def test_healthz(self) -> None:
        """/healthz is 200 "ok" with the active count, and 503 naming the
        cause when the disk is below its minimum and when shutting down."""
        health = yield self.get_json("/healthz")
        self.assertEqual(health, {"status": "ok", "active": 1})
        self.recorder.disk.min_free = 10**12  # (more than was measured free)
        health = yield self.get_json("/healthz", 503)
        self.assertEqual(health["status"], "disk full")
        yield self.recorder.stopService()
        health = yield self.get_json("/healthz", 503)
        self.assertEqual(health["status"], "shutting down, disk full")

    @inlineCallbacks
    def test_metrics_whatever_the_accept_header(self) -> None:
        """/metrics is served whatever the Accept header asks for,
        OpenMetrics versions unknown or malformed included."""
        for accept in ("text/plain; version=x.y", "application/openmetrics-text; version=junk",
                       "application/openmetrics-text; version=1.0.0"):
            response, body = yield self.get("/metrics", accept=accept)
            self.assertEqual(response.code, 200, accept)
            self.assertIn(b"recsvc_active_recordings", body)

    @inlineCallbacks
    def test_metrics(self) -> None:
        """/metrics serves the Prometheus text format with the live figures."""
        response, body = yield self.get("/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(
            b"text/plain"))
        text = body.decode("utf-8")
        self.assertIn("recsvc_active_recordings 1.0", text)
        self.assertIn("recsvc_rtp_packets_received_total 5.0", text)
        self.assertIn("recsvc_storage_free_bytes 1.23456789e+08", text)

    @inlineCallbacks
    def test_page_and_its_files(self) -> None:
        """/ serves the page, /static/ its script and style sheet; unknown
        files, folders and paths are JSON 404s."""
        response, body = yield self.get("/")
        self.assertEqual(response.code, 200)
        self.assertIn(b'id="results"', body)
        self.assertIn(b"/static/app.js", body)
        for name in ("app.js", "app.css"):
            response, _ = yield self.get(f"/static/{name}")
            self.assertEqual(response.code, 200, name)
        yield self.get_json("/static/nothing.js", 404)
        yield self.get_json("/static/", 404)
        yield self.get_json("/nothing", 404)
        yield self.get_json("/api/nothing", 404)


class AudioStreamTests(HttpTestsMixin, TestCase):
    """Audio longer than a chunk: read and decoded a chunk at a time, each
    in a thread, the next once the last is written."""

    def setUp(self) -> None:
        self.patch(webapi, "AUDIO_CHUNK", 3999)  # (odd: a chunk ends mid-sample)
        super().setUp()

    @inlineCallbacks
    def test_chunks(self) -> None:
        """Audio longer than a chunk is decoded and served a chunk at a
        time, one blocking read per chunk on the playback's threads (none
        on the HTTP side's, which check passwords), whole or by range,
        decoded or original."""
        response, body = yield self.get("/api/recordings/7/audio")
        self.assert_served_decoded(body)
        self.assertEqual(self.playback_calls.count("read_decoded"), -(-len(body) // 3999))
        self.assertEqual(self.playback_calls.count("playable_of"), 1)
        self.assertEqual(self.blocking_calls, [])
        response, part = yield self.get("/api/recordings/7/audio", range="bytes=3990-12009")
        self.assertEqual(part, body[3990:12010])
        response, original = yield self.get("/api/recordings/7/audio?format=original",
                                            range="bytes=-100")
        self.assertEqual(response.code, 206)
        with open(self.wav, "rb") as handle:
            self.assertEqual(original, handle.read()[-100:])

    @inlineCallbacks
    def test_head(self) -> None:
        """A HEAD for the audio gives its decoded size and no body, without
        decoding anything."""
        response, body = yield self.get("/api/recordings/7/audio", method=b"HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"")
        size = playback.open_playable(playback.FileBytes(self.wav)).size
        self.assertEqual(response.headers.getRawHeaders(b"content-length"), [str(size).encode()])
        self.assertNotIn("read_decoded", self.playback_calls)

    @inlineCallbacks
    def test_file_outside_the_root(self) -> None:
        """An index row whose file leads out of the recordings folder (a
        symbolic link) is not served."""
        outside = os.path.abspath(self.mktemp())
        os.rename(self.wav, outside)
        os.symlink(outside, self.wav)
        error = yield self.get_json("/api/recordings/7/audio", 404)
        self.assertIn("symbolic link", error["error"])

    @inlineCallbacks
    def test_link_within_the_root(self) -> None:
        """A recording's file swapped for a link to another file inside the
        recordings folder is not served either."""
        other = os.path.join(os.path.dirname(self.wav), "other.wav")
        os.rename(self.wav, other)
        os.symlink(other, self.wav)
        error = yield self.get_json("/api/recordings/7/audio", 404)
        self.assertIn("symbolic link", error["error"])


class ArchivedAudioTests(HttpTestsMixin, TestCase):
    """Recordings whose file is not on this node's disk (another node's,
    or this node's once its local copy went) play from the archive, with
    byte ranges, decoded as from disk."""

    node = "rec-b"

    def make_archive(self):
        self.store = MemoryStore()
        return Archive(reactor, self.root, ArchiveLocation("recordings", "calls/"), self.store)

    def archive_recording_7(self, node: str = "rec-b") -> bytes:
        """Put recording 7's WAV in the archive, as its node uploaded it (in
        that node's folder), and take it off this disk; its bytes."""
        with open(self.wav, "rb") as handle:
            stored = handle.read()
        self.store.put(f"calls/{node}/" + os.path.relpath(self.wav, self.root), self.wav,
                       "audio/wav", {}, read_local(self.wav).sha256)
        os.remove(self.wav)
        return stored

    @inlineCallbacks
    def test_gone_from_disk_plays_from_the_archive(self) -> None:
        """This node's recording whose WAV went (keep_local_days) plays from
        the archive: decoded whole, any byte range, and the original."""
        stored = self.archive_recording_7()
        response, body = yield self.get("/api/recordings/7/audio")
        self.assertEqual(response.code, 200)
        self.assert_served_decoded(body)
        response, part = yield self.get("/api/recordings/7/audio", range="bytes=1001-5000")
        self.assertEqual(response.code, 206)
        self.assertEqual(part, body[1001:5001])
        response, original = yield self.get("/api/recordings/7/audio?format=original")
        self.assertEqual(original, stored)

    @inlineCallbacks
    def test_another_nodes_recording(self) -> None:
        """Another node's recording plays from the archive (never from a
        file of the same path on this disk, nor this node's object of that
        path); not archived yet, it is a 404 naming the node that has it;
        the archive down, a 503 saying why."""
        self.rename_node("7", "rec-a")
        error = yield self.get_json("/api/recordings/7/audio", 404)
        self.assertIn("on node 'rec-a'", error["error"])
        self.assertIn("not in the archive", error["error"])
        # (In this node's folder of the archive: not rec-a's recording.)
        self.store.put("calls/rec-b/" + os.path.relpath(self.wav, self.root), self.wav,
                       "audio/wav", {}, read_local(self.wav).sha256)
        error = yield self.get_json("/api/recordings/7/audio", 404)
        self.assertIn("not in the archive", error["error"])
        self.archive_recording_7("rec-a")
        response, body = yield self.get("/api/recordings/7/audio")
        self.assertEqual(response.code, 200)
        self.assert_served_decoded(body)
        self.store.down = "cannot connect to the endpoint"
        error = yield self.get_json("/api/recordings/7/audio", 503)
        self.assertIn("cannot connect to the endpoint", error["error"])

    def rename_node(self, recording_id: str, node: str) -> None:
        """Index recording ``recording_id`` as recorded on ``node``."""
        path = sidecar_path(self.wav)
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        data["node"] = node
        index.add(self.connection, index.entry_from_sidecar(
            data, os.path.relpath(path, self.root), 0))


class NoArchiveTests(HttpTestsMixin, TestCase):
    node = "rec-b"

    @inlineCallbacks
    def test_another_nodes_recording_without_an_archive(self) -> None:
        """Without an archive, another node's recording is a 404 that says
        which node has it and that this one has no archive."""
        with open(sidecar_path(self.wav), encoding="utf-8") as handle:
            data = json.load(handle)
        data["node"] = "rec-a"
        index.add(self.connection, index.entry_from_sidecar(
            data, os.path.relpath(sidecar_path(self.wav), self.root), 0))
        error = yield self.get_json("/api/recordings/7/audio", 404)
        self.assertIn("on node 'rec-a'", error["error"])
        self.assertIn("archive.url", error["error"])


class HostTests(HttpTestsMixin, TestCase):
    """Without http.auth, only requests for an IP address, localhost or an
    allowed name are answered (DNS rebinding)."""

    allowed_hosts = ("recordings.example",)

    @inlineCallbacks
    def test_hosts(self) -> None:
        """Without auth, requests for an IP address, localhost or an allowed
        name are answered; any other Host gets 421 naming
        http.allowed_hosts, with nosniff."""
        for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "LOCALHOST",
                     "recordings.example", "recordings.example.:80"):
            yield self.get_json("/api/active", host=host)
        error = yield self.get_json("/api/active", 421, host="evil.example:8080")
        self.assertIn("http.allowed_hosts", error["error"])
        response, _ = yield self.get("/", host="127.0.0.1.evil.example")
        self.assertEqual(response.code, 421)
        self.assertEqual(response.headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])


ROUTES = ("/", "/static/app.js", "/api/recordings", "/api/recordings/7",
          "/api/recordings/7/audio", "/api/recordings/live-1", "/api/active", "/healthz",
          "/metrics", "/api/nothing")
NASTY_SEGMENTS = ("%00", "%00.css", ".css%00", "%ff", "%c0%ae%c0%ae", "%2e%2e/%2e%2e/etc/passwd",
                  "%2F", "/", "//x", "%5C", "%0d%0aX:%20y", "x" * 5000, "%25", "%", "%zz")
def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


# Cursors no search gave, whose duration no float holds or is none.
# (With the node, and without it as an earlier recsvc's cursors.)
HOSTILE_CURSORS = tuple(_cursor(f'["2026-11-24T10:00:00.000Z",{duration},"p"{node}]')
                        for duration in ("1" + "0" * 400, "NaN", "Infinity", "-Infinity")
                        for node in (',"n"', ""))
NASTY_VALUES = HOSTILE_CURSORS + ("", "%00", "%ff", "9" * 5000, "-1", "0", "1e999", "-1e999", "nan", "inf",
                "99999999999999999999", "-99999999999999999999", "2026-13-45", "2026-02-30",
                "9999-12-31T23:59:59+23:59", "%27%3B--", "%0d%0a", "x" * 5000, "1_000",
                "%EF%BC%91")  # (a full-width 1)
NASTY_METHODS = ("HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "BREW", "get")
NASTY_PARAMETERS = ("number", "name", "device", "direction", "since", "until", "min_duration",
                    "stop_reason", "page", "page_size", "format", "file", "order", "after")
NASTY_HEADERS = (("Range", "bytes=" + "9" * 5000 + "-"), ("Range", "bytes=-" + "9" * 5000),
                 ("Range", "bytes=0-" + "9" * 5000), ("Range", "bytes=99999999999999999999-"),
                 ("Range", "bytes=\xb2-"), ("Range", "bytes=1-0,5-"), ("Range", "bytes=-0"),
                 ("Range", "items=0-1"), ("Accept", "\xff\xfe;q=x, */*;q=nan"),
                 ("Host", "[::1"), ("Host", "\xff:99999999999999999999"),
                 ("Authorization", "Basic " + "=" * 3), ("Authorization", "Basic \xff\xfe"),
                 ("Authorization", "Bearer " + "x" * 5000),
                 ("If-Modified-Since", "Mon, 99 Foo 99999 99:99:99 GMT"),
                 ("If-Modified-Since", "9" * 5000), ("If-Range", "9" * 5000),
                 ("Cookie", "a=\xff; =; ;"), ("Content-Type", "application/x-www-form-urlencoded"))


def nasty_requests() -> list[bytes]:
    """Request heads that try every route with bad paths, query values and
    headers."""
    targets = [route + suffix for route in ROUTES
               for suffix in [""] + ["/" + segment for segment in NASTY_SEGMENTS]]
    targets += ["/static/" + segment for segment in NASTY_SEGMENTS]
    targets += [f"{route}?{name}={value}" for route in ("/api/recordings", "/api/recordings/7/audio")
                for name in NASTY_PARAMETERS for value in NASTY_VALUES]
    targets += [f"{route}?%ff=1&&=&number&number=1&number=%00" for route in ROUTES]
    heads = [f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode("latin-1")
             for target in targets]
    heads += [f"GET {route} HTTP/1.1\r\nHost: 127.0.0.1\r\n{name}: {value}\r\n".encode("latin-1")
              for route in ROUTES for name, value in NASTY_HEADERS]
    heads += [f"{method} {route} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode("latin-1")
              for route in ROUTES for method in NASTY_METHODS]
    return [head + b"Connection: close\r\n\r\n" for head in heads]


class NastyInputTests(HttpTestsMixin, TestCase):
    """No request input makes the server fail: every route, with bad paths,
    query values and headers, is answered below 500 and logs no traceback."""

    timeout = 120

    @inlineCallbacks
    def test_no_request_input_gets_a_5xx(self) -> None:
        """Every route, with bad paths, query values, headers and methods,
        is answered below 500 and logs no failure."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        failed = []
        for request in nasty_requests():
            answer = yield self.raw(request)
            status = answer[9:12]
            if not answer.startswith(b"HTTP/1.1 ") or status.startswith(b"5"):
                failed.append((request[:120], answer[:160]))
        self.assertEqual(failed, [])
        self.assertEqual([event for event in events if "log_failure" in event], [])

    @inlineCallbacks
    def test_a_range_of_thousands_of_digits(self) -> None:
        """A Range whose numbers are longer than any file size is a 416 (a
        first byte beyond the file) or the whole file, never a 500."""
        error = yield self.get_json("/api/recordings/7/audio", 416,
                                    range="bytes=" + "9" * 5000 + "-")
        self.assertIn("range", error["error"])
        response, body = yield self.get("/api/recordings/7/audio", range="bytes=-" + "9" * 5000)
        self.assertEqual(response.code, 206)
        self.assert_served_decoded(body)

    @inlineCallbacks
    def test_a_nul_in_a_static_file_name(self) -> None:
        """/static/app.js%00.css is a 404 in JSON, not a 500 page."""
        error = yield self.get_json("/static/app.js%00.css", 404)
        self.assertIn("no such file", error["error"])


class BodyTestsMixin(HttpTestsMixin):
    """The API takes no request bodies: one over a small limit is refused
    (413) before it is read, and a small one is read only from a client
    whose Host is answered and who is known without a password check."""

    def connect(self) -> tuple[Any, StringTransport]:
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        channel = self.site.buildProtocol(peer)
        channel.callLater = self.clock.callLater
        transport = StringTransport(peerAddress=peer)
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, ConnectionDone())
        return channel, transport

    def head(self, method: str, path: str, *headers: str) -> bytes:
        return "".join([f"{method} {path} HTTP/1.1\r\n"] + [f"{line}\r\n" for line in headers]
                       + ["\r\n"]).encode("latin-1")

    def assert_answered_unread(self, transport: StringTransport, status: int) -> dict:
        """The answer is there (before the body was sent) and the connection
        is closing: the body is never read."""
        answer = transport.value()
        self.assertTrue(answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200])
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        self.assertTrue(transport.disconnecting)
        return json.loads(answer.split(b"\r\n\r\n", 1)[1])


class BodyTests(BodyTestsMixin, TestCase):
    def test_a_large_body_is_refused_before_it_is_read(self) -> None:
        """Content-Length: 10000000000 from anyone (a Host not answered
        here, no credentials) is a 413 as soon as the headers are in, and
        the connection is closed: no byte of the body is read."""
        channel, transport = self.connect()
        channel.dataReceived(self.head("POST", "/api/recordings", "Host: evil.com",
                                       "Content-Length: 10000000000",
                                       "Expect: 100-continue"))
        error = self.assert_answered_unread(transport, 413)
        self.assertIn(f"at most {webapi.MAX_BODY_BYTES} bytes", error["error"])
        self.assertNotIn(b"100 Continue", transport.value())

    def test_a_chunked_body_is_refused_before_it_is_read(self) -> None:
        """A body without a Content-Length (chunked) is refused the same
        way: its size is not known before it is read."""
        channel, transport = self.connect()
        channel.dataReceived(self.head("GET", "/api/active", "Host: 127.0.0.1",
                                       "Transfer-Encoding: chunked"))
        error = self.assert_answered_unread(transport, 413)
        self.assertIn("Content-Length", error["error"])

    def test_a_small_body_for_another_host_is_not_read(self) -> None:
        """A Host this server does not answer for is refused (421) before
        the body is read, small as it may be."""
        channel, transport = self.connect()
        channel.dataReceived(self.head("GET", "/api/active", "Host: evil.com",
                                       "Content-Length: 10"))
        self.assertIn("http.allowed_hosts", self.assert_answered_unread(transport, 421)["error"])

    def test_a_small_body_is_read_and_ignored(self) -> None:
        """A body within the limit, from a client allowed in, is read and
        ignored; the connection stays open for the next request."""
        channel, transport = self.connect()
        channel.dataReceived(self.head("GET", "/api/active", "Host: 127.0.0.1",
                                       "Content-Length: 5") + b"hello")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertFalse(transport.disconnecting)
        transport.clear()
        channel.dataReceived(self.head("GET", "/healthz", "Host: 127.0.0.1"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))

    @inlineCallbacks
    def test_other_methods_are_405(self) -> None:
        """The API only reads: a POST is a JSON 405 that names the methods."""
        response, body = yield self.get("/api/recordings", method=b"POST")
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders(b"allow"), [b"GET, HEAD"])
        self.assertIn("GET and HEAD", json.loads(body)["error"])


class BodyAuthTests(BodyTestsMixin, TestCase):
    auth = HttpAuthConfig(users=(BasicUser("ann", hash_password("s3cret", iterations=1000)),),
                          token=TOKEN)

    def test_a_small_body_before_authentication_is_not_read(self) -> None:
        """Without credentials known at once, a body is not read: the
        request is answered (401 here) and the connection closed."""
        channel, transport = self.connect()
        channel.dataReceived(self.head("GET", "/api/active", "Host: 127.0.0.1",
                                       "Content-Length: 10"))
        self.assertIn("authentication", self.assert_answered_unread(transport, 401)["error"])

    def test_a_change_with_junk_credentials_is_not_read(self) -> None:
        """A POST to a change route is read only with credentials of the
        right form: an Authorization that is no Basic or Bearer one, or a
        cookie that is no session token, is answered unread and closed."""
        for junk in ("Authorization: junk", "Cookie: recsvc_session=junk"):
            channel, transport = self.connect()
            channel.dataReceived(self.head("POST", "/api/recordings/7/notes", "Host: 127.0.0.1",
                                           junk, "Content-Length: 10"))
            self.assert_answered_unread(transport, 401)

    def test_a_small_body_with_the_token_is_read(self) -> None:
        """With the bearer token, a body within the limit is read and ignored."""
        channel, transport = self.connect()
        channel.dataReceived(self.head("GET", "/api/active", "Host: 127.0.0.1",
                                       f"Authorization: Bearer {TOKEN}", "Content-Length: 5")
                             + b"hello")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertFalse(transport.disconnecting)


class NumberPlanTests(HttpTestsMixin, TestCase):
    """With numbers.country_code and numbers.trunk_prefix, the API finds a
    number by its national and its international form alike."""

    numbers = NumberPlan("49", "0", "00")

    @inlineCallbacks
    def test_either_form_finds_the_other(self) -> None:
        """030 123 finds +49 30 123..., +49 30 765 and 0049 30 765 find
        030 765...; a fragment without a prefix finds both."""
        self.finished_recording("9", b"\xd5" * 80, "2026-11-24T12:00:00.000Z",
                                remote_number="+49 30 1234567")
        self.finished_recording("10", b"\xd5" * 80, "2026-11-24T13:00:00.000Z",
                                remote_number="030 7654321")
        index.catch_up(self.connection, self.root)
        for typed, ids in [("030 123", ["9"]), ("030%201234567", ["9"]), ("%2B4930765", ["10"]),
                           ("0049 30 765", ["10"]), ("30", ["10", "9"])]:
            found = yield self.get_json(f"/api/recordings?number={typed.replace(' ', '+')}")
            self.assertEqual([row["id"] for row in found["recordings"]], ids, typed)


class AuthTests(HttpTestsMixin, TestCase):
    """With http.auth: basic users or a bearer token; /healthz stays open."""

    auth = HttpAuthConfig(users=(BasicUser("ann", hash_password("s3cret", iterations=1000)),),
                          token=TOKEN)

    def basic(self, user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    @inlineCallbacks
    def test_refused_without_credentials(self) -> None:
        """With http.auth, the API, the audio and the metrics are 401
        without credentials, offering Basic; the page sends a browser to
        its sign-in page; the sign-in page and the static files are open."""
        for path in ("/api/recordings", "/api/recordings/7/audio", "/metrics"):
            response, body = yield self.get(path)
            self.assertEqual(response.code, 401, path)
            self.assertIn(b'Basic realm="recsvc"',
                          response.headers.getRawHeaders(b"www-authenticate")[0])
            self.assertEqual(json.loads(body), {"error": "authentication required"})
        response, _ = yield self.get("/")
        self.assertEqual((response.code, response.headers.getRawHeaders(b"location")),
                         (303, [b"/login"]))
        for path in ("/login", "/static/app.js"):
            response, _ = yield self.get(path)
            self.assertEqual(response.code, 200, path)

    @inlineCallbacks
    def test_busy_checking_passwords(self) -> None:
        """With as many password checks under way as allowed, a new one is
        answered 503 with Retry-After, not queued behind them."""
        self.patch(httpauth, "MAX_CHECKING", 0)
        response, body = yield self.get("/api/recordings",
                                        authorization=self.basic("ann", "s3cret"))
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"1"])
        self.assertIn("try again", json.loads(body)["error"])
        self.assertNotIn("verify_password", self.blocking_calls)

    @inlineCallbacks
    def test_basic_user(self) -> None:
        """A basic user's right password is let in and remembered after one
        check; wrong passwords, unknown users and bad headers are 401, and
        an unknown user's password is checked too."""
        found = yield self.get_json("/api/recordings?number=13800138000",
                                    authorization=self.basic("ann", "s3cret"))
        self.assertEqual(len(found["recordings"]), 1)
        # Checked once (in a thread), remembered: the same again from memory.
        yield self.get_json("/api/recordings/7", authorization=self.basic("ann", "s3cret"))
        self.assertEqual(self.blocking_calls.count("verify_password"), 1)
        for wrong in (self.basic("ann", "guess"), self.basic("bob", "s3cret"),
                      "Basic !!!", "Digest x"):
            yield self.get_json("/api/recordings", 401, authorization=wrong)
        # An unknown user's password is checked too (against a decoy), so
        # the time taken does not tell which user names exist.
        self.assertEqual(self.blocking_calls.count("verify_password"), 3)

    @inlineCallbacks
    def test_any_host_with_auth(self) -> None:
        """With http.auth any Host header is answered."""
        yield self.get_json("/api/active", host="recordings.example",
                            authorization=f"Bearer {TOKEN}")

    @inlineCallbacks
    def test_bearer_token(self) -> None:
        """The bearer token lets a request in; any other token is 401."""
        response, _ = yield self.get("/api/recordings/7/audio", authorization=f"Bearer {TOKEN}")
        self.assertEqual(response.code, 200)
        yield self.get_json("/api/active", 401, authorization=f"Bearer {TOKEN}x")

    @inlineCallbacks
    def test_healthz_open(self) -> None:
        """/healthz answers without credentials."""
        health = yield self.get_json("/healthz")
        self.assertEqual(health["status"], "ok")


class SignInLimitEndToEndTests(HttpTestsMixin, TestCase):
    auth = HttpAuthConfig(users=(BasicUser("ann", hash_password("s3cret", iterations=1000)),),
                          max_failures_per_minute=2)
    basic = AuthTests.basic

    @inlineCallbacks
    def test_too_many_failures_from_an_address(self) -> None:
        """Past http.auth.max_failures_per_minute wrong passwords from an
        address, it gets 429 with Retry-After, its passwords unchecked."""
        for guess in ("a", "b"):
            yield self.get_json("/api/recordings", 401, authorization=self.basic("ann", guess))
        response, body = yield self.get("/api/recordings",
                                        authorization=self.basic("ann", "s3cret"))
        self.assertEqual(response.code, 429)
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"60"])
        self.assertIn("too many failed sign-ins", json.loads(body)["error"])
        self.assertEqual(self.blocking_calls.count("verify_password"), 2)


class GateTests(SynchronousTestCase):
    def test_busy_beyond_the_checks_allowed(self) -> None:
        """At most MAX_CHECKING password checks wait or run at once; beyond
        them the answer is "busy" at once (503), not a queue."""
        held: list = []

        def hold(f, *args):
            held.append(Deferred())
            return held[-1]
        hashed = hash_password("s3cret", iterations=1000)
        gate = Gate({"ann": hashed}, None, hold, now=Clock().seconds)

        def request(n: int) -> DummyRequest:
            request = DummyRequest([b"api"])
            request.client = IPv4Address("TCP", f"10.0.0.{n}", 50000)
            request.requestHeaders.setRawHeaders(
                b"authorization", [b"Basic " + base64.b64encode(f"ann:guess{n}".encode())])
            return request
        waiting = [gate.admits(request(n)) for n in range(MAX_CHECKING)]
        self.failureResultOf(gate.admits(request(MAX_CHECKING)), Busy)
        held[0].callback(False)
        self.assertFalse(self.successResultOf(waiting[0]))
        self.assertNoResult(gate.admits(request(MAX_CHECKING + 1)))  # room for one more


class SignInLimitTests(SynchronousTestCase):
    """Guessers cannot lock out the users: one address holds at most
    MAX_CHECKING_PER_ADDRESS password checks at once and gets
    max_failures_per_minute wrong ones a minute (then 429); a password
    checked before, and the token, never wait behind them."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.held: list[tuple[Deferred, str]] = []
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

        def hold(f, password, hashed):
            self.held.append((Deferred(), password))
            return self.held[-1][0]
        self.gate = Gate({"ann": hash_password("s3cret", iterations=1000)}, TOKEN, hold,
                         now=self.clock.seconds, max_failures_per_minute=3)

    def request(self, address: str, credentials: str) -> DummyRequest:
        request = DummyRequest([b"api"])
        request.client = IPv4Address("TCP", address, 50000)
        request.requestHeaders.setRawHeaders(b"authorization", [credentials.encode()])
        return request

    def basic(self, user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    def answer_all(self) -> None:
        while self.held:
            waiting, password = self.held.pop(0)
            waiting.callback(password == "s3cret")

    def test_failures_are_limited_per_address(self) -> None:
        """After max_failures_per_minute wrong passwords (or tokens) in a
        minute, an address is refused without a check until the oldest is
        a minute old, with the seconds to wait; other addresses are not."""
        for guess in ("a", "b"):
            answer = self.gate.admits(self.request("10.0.0.1", self.basic("ann", guess)))
            self.answer_all()
            self.assertIsNone(self.successResultOf(answer))
            self.clock.advance(10)
        self.assertIsNone(self.successResultOf(self.gate.admits(
            self.request("10.0.0.1", f"Bearer {TOKEN}x"))))
        refused = self.failureResultOf(self.gate.admits(
            self.request("10.0.0.1", self.basic("ann", "s3cret"))), TooManyFailures)
        self.assertEqual(refused.value.retry_after, 40)
        self.assertEqual(self.held, [])  # not checked
        other = self.gate.admits(self.request("10.0.0.2", self.basic("ann", "s3cret")))
        self.answer_all()
        self.assertEqual(self.successResultOf(other), Identity("ann", "basic"))
        self.clock.advance(40)
        again = self.gate.admits(self.request("10.0.0.1", self.basic("ann", "c")))
        self.assertEqual(len(self.held), 1)
        self.answer_all()
        self.assertIsNone(self.successResultOf(again))

    def test_guessers_leave_room_for_a_first_login(self) -> None:
        """Sixteen guesses at once from one address take two checks (the
        rest are 429 at once): a first login from elsewhere is checked, not
        answered "busy"."""
        guesses = [self.gate.admits(self.request("10.0.0.1", self.basic("ann", f"g{n}")))
                   for n in range(16)]
        self.assertEqual(len(self.held), MAX_CHECKING_PER_ADDRESS)
        for refused in guesses[MAX_CHECKING_PER_ADDRESS:]:
            self.assertEqual(self.failureResultOf(refused, TooManyFailures).value.retry_after, 1)
        first = self.gate.admits(self.request("10.0.0.2", self.basic("ann", "s3cret")))
        self.answer_all()
        self.assertEqual(self.successResultOf(first), Identity("ann", "basic"))

    def test_known_credentials_never_wait(self) -> None:
        """With every check taken by guessers (from many addresses), and
        from an address refused for its failures, a password checked
        before and the token are admitted at once."""
        self.successResultOf(self.login("10.0.0.9"))
        for guess in "abc":
            self.gate.admits(self.request("10.0.0.1", self.basic("ann", guess)))
            self.answer_all()
        for n in range(MAX_CHECKING):
            self.gate.admits(self.request(f"10.0.1.{n}", self.basic("ann", f"g{n}")))
        self.failureResultOf(self.gate.admits(self.request("10.0.2.1", self.basic("ann", "x"))),
                             Busy)
        for address in ("10.0.0.1", "10.0.0.9"):
            self.assertEqual(self.successResultOf(self.gate.admits(
                self.request(address, self.basic("ann", "s3cret")))), Identity("ann", "basic"))
            self.assertEqual(self.successResultOf(self.gate.admits(
                self.request(address, f"Bearer {TOKEN}"))), httpauth.TOKEN_HOLDER)
        self.answer_all()

    def login(self, address: str) -> Deferred:
        answer = self.gate.admits(self.request(address, self.basic("ann", "s3cret")))
        self.answer_all()
        return answer

    def test_the_same_credentials_are_checked_once(self) -> None:
        """A browser's requests at once with the same new password share
        one check (they do not count against the address twice)."""
        answers = [self.gate.admits(self.request("10.0.0.1", self.basic("ann", "s3cret")))
                   for _ in range(5)]
        self.assertEqual(len(self.held), 1)
        self.answer_all()
        for answer in answers:
            self.assertEqual(self.successResultOf(answer), Identity("ann", "basic"))

    def test_refusals_logged_once_a_minute(self) -> None:
        """An address refused over and over is one line a minute, with how
        many refusals it stands for."""
        resource = GuardedResource(Resource(), self.gate, frozenset(), webapi.ErrorResource)

        def refused(request: DummyRequest) -> None:
            request.prepath = [b"api"]
            resource.getChildWithDefault(b"api", request).render(request)
        for guess in "abc":
            self.gate.admits(self.request("10.0.0.1", self.basic("ann", guess)))
            self.answer_all()
            self.clock.advance(1)
        for _ in range(20):
            request = self.request("10.0.0.1", self.basic("ann", "d"))
            refused(request)
            self.assertEqual(request.responseCode, 429)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"retry-after"), [b"57"])
        lines = [event for event in self.events if event.get("reason") == "too many failures"]
        self.assertEqual([(event["peer"], event["count"]) for event in lines], [("10.0.0.1", 1)])
        # A minute on, still guessing (a new guess as each old one is a
        # minute old): the next line says the 19 refusals kept silent too.
        self.clock.advance(56.5)
        for guess in "egh":
            self.clock.advance(1)
            self.gate.admits(self.request("10.0.0.1", self.basic("ann", guess)))
            self.answer_all()
        self.clock.advance(0.5)
        refused(self.request("10.0.0.1", self.basic("ann", "f")))
        lines = [event for event in self.events if event.get("reason") == "too many failures"]
        self.assertEqual([event["count"] for event in lines], [1, 20])


class PasswordTests(SynchronousTestCase):
    def test_hash_and_verify(self) -> None:
        """A hashed password names its method and iterations, verifies the
        right password only, and is salted."""
        hashed = hash_password("pässword", iterations=1000)
        self.assertTrue(hashed.startswith("pbkdf2_sha256$1000$"))
        self.assertTrue(verify_password("pässword", hashed))
        self.assertFalse(verify_password("password", hashed))
        self.assertNotEqual(hashed, hash_password("pässword", iterations=1000))  # salted

    def test_damaged_hashes(self) -> None:
        """Text that is not a whole hash in the known form is a ValueError."""
        for text in ("", "secret", "pbkdf2_sha256$x$AAAA$AAAA", "md5$1$2$3",
                     hash_password("x", iterations=1000)[:-4]):
            self.assertRaises(ValueError, check_password_hash, text)

    def test_headers(self) -> None:
        """Basic credentials split at the first colon and none without one
        or without a header; a bearer token is read in any case, and not
        from another scheme."""
        self.assertEqual(basic_credentials(b"Basic " + base64.b64encode(b"a:b:c")), ("a", "b:c"))
        self.assertIsNone(basic_credentials(b"Basic " + base64.b64encode(b"nocolon")))
        self.assertIsNone(basic_credentials(None))
        self.assertEqual(bearer_token(b"bearer abc "), b"abc")
        self.assertIsNone(bearer_token(b"Basic abc"))


class HttpConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Without an http section the API listens on localhost port 8080,
        without auth or a hook."""
        config = parse_config(None)
        self.assertEqual(config.http.listen, "tcp:8080:interface=127.0.0.1")
        self.assertFalse(config.http.auth.enabled)
        self.assertIsNone(config.hooks.on_finish)

    def test_auth(self) -> None:
        """http.auth takes hashed users and a token, which turn auth on;
        max_failures_per_minute is 10 unless set."""
        hashed = hash_password("pw", iterations=1000)
        config = parse_config({"http": {"auth": {"users": {"ann": hashed}, "token": TOKEN}}})
        self.assertEqual(config.http.auth.users, (BasicUser("ann", hashed),))
        self.assertEqual(config.http.auth.token, TOKEN)
        self.assertTrue(config.http.auth.enabled)
        self.assertEqual(config.http.auth.max_failures_per_minute, 10)
        config = parse_config({"http": {"auth": {"token": TOKEN, "max_failures_per_minute": 3}}})
        self.assertEqual(config.http.auth.max_failures_per_minute, 3)

    def test_errors_name_the_key(self) -> None:
        """A bad http or hooks setting is a ConfigError naming its key."""
        for data, key in [
            ({"http": {"auth": {"users": {"ann": "plain-text"}}}}, "http.auth.users"),
            ({"http": {"auth": {"users": ["ann"]}}}, "http.auth.users"),
            ({"http": {"auth": {"token": "short"}}}, "http.auth.token"),
            ({"http": {"auth": {"passwd": "x"}}}, "http.auth.passwd"),
            ({"http": {"auth": {"max_failures_per_minute": 0}}},
             "http.auth.max_failures_per_minute"),
            ({"http": {"auth": {"max_failures_per_minute": "10"}}},
             "http.auth.max_failures_per_minute"),
            ({"http": {"listen": ""}}, "http.listen"),
            ({"hooks": {"on_finish": "ftp://example.com/"}}, "hooks.on_finish"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                parse_config(data)
            self.assertEqual(caught.exception.key, key, str(caught.exception))


class CommandTests(SynchronousTestCase):
    def run_main(self, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdin", io.StringIO(stdin))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
        return status, out.getvalue(), err.getvalue()

    def test_hash_password(self) -> None:
        """The hash of the password on standard input, as http.auth.users takes it."""
        status, out, _ = self.run_main(["hash-password"], "correct horse\n")
        self.assertEqual(status, 0)
        self.assertTrue(verify_password("correct horse", out.strip()))
        parse_config({"http": {"auth": {"users": {"ann": out.strip()}}}})
        status, _, err = self.run_main(["hash-password"], "short\n")
        self.assertEqual(status, 1)
        self.assertIn("at least 8 characters", err)

    def test_check_config_warns_of_open_http(self) -> None:
        """`recsvc check-config` of HTTP reachable from other machines
        without auth passes but warns, naming http.listen."""
        root = os.path.abspath(self.mktemp())
        config = os.path.abspath(self.mktemp() + ".yaml")
        with open(config, "w", encoding="utf-8") as handle:
            json.dump({"storage": {"root": root},
                       "index": {"database": os.path.join(root, "index.sqlite3")},
                       "http": {"listen": "tcp:8080"}}, handle)
        status, out, err = self.run_main(["check-config", config])
        self.assertEqual(status, 0, err)
        self.assertIn("HTTP on tcp:8080", out)
        self.assertIn("WARNING: http.listen 'tcp:8080' is reachable from other machines", err)


class OpenHttpWarningTests(SynchronousTestCase):
    def warning(self, listen: str, **auth) -> str | None:
        config = parse_config({"http": {"listen": listen, "auth": auth or None}})
        return open_http_warning(config, http_endpoint_for(config, MemoryReactor()))

    def test_only_beyond_this_host_without_auth(self) -> None:
        """The open-HTTP warning is given for listening beyond this host
        without auth, and not on loopback, a Unix socket, with auth or with
        HTTP off."""
        self.assertIsNotNone(self.warning("tcp:8080"))
        self.assertIsNotNone(self.warning("tcp:8080:interface=192.168.1.5"))
        self.assertIsNotNone(self.warning("tcp6:8080:interface=\\:\\:"))
        self.assertIsNone(self.warning("tcp:8080:interface=127.0.0.1"))
        self.assertIsNone(self.warning("tcp6:8080:interface=\\:\\:1"))
        self.assertIsNone(self.warning("unix:/run/recsvc.sock"))
        self.assertIsNone(self.warning("tcp:8080", token=TOKEN))
        self.assertIsNone(self.warning("off"))
