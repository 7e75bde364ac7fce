"""Tests for recsvc.webapi and recsvc.httpauth: the HTTP side over a real
loopback socket (the JSON API, audio with byte ranges, the recordings in
progress, /healthz, /metrics, the page, and http.auth)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest

from recsvc import g711, httpauth, index, playback, webapi
from recsvc.codec import WAVE_FORMAT_ALAW
from recsvc.config import BasicUser, ConfigError, HttpAuthConfig, parse_config
from recsvc.httpauth import (
    MAX_CHECKING,
    Busy,
    Gate,
    basic_credentials,
    bearer_token,
    check_password_hash,
    hash_password,
    verify_password,
)
from recsvc.cli import main
from recsvc.metrics import Metrics, live_figures
from recsvc.numberplan import NumberPlan
from recsvc.storage import sidecar_path
from recsvc.tap import http_endpoint_for, open_http_warning
from recsvc.diskspace import DiskSpace
from recsvc.testing import FakePhoneLink, FakePortPool, memory_recorder, run_now
from tests.test_endtoend import read_wav
from recsvc.wav import WavFileWriter, WavFormat
from recsvc.webapi import make_site
from tests.test_index import sidecar
from tests.test_service import rtp, start_request

FOLDER = "00a859000001/2026/11/24"
TOKEN = "a-long-bearer-token-0123456789"


class HttpTestsMixin:
    """A site on 127.0.0.1 over an index with two finished recordings (one
    with real A-law audio) and a recorder with one recording in progress."""

    auth = HttpAuthConfig()
    allowed_hosts: tuple[str, ...] = ()
    numbers = NumberPlan()

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.audio = bytes(random.Random(6).randrange(256) for _ in range(8000))
        self.wav = self.finished_recording("7", self.audio, "2026-11-24T10:00:00.000Z")
        self.finished_recording("8", b"\xd5" * 800, "2026-11-24T11:00:00.000Z",
                                remote_number="2002", direction="in")
        self.connection = index.connect(os.path.join(self.mktemp(), "index.sqlite3"))
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

        site = make_site(self.recorder, run_index, self.root, run_blocking, self.metrics,
                         self.auth, now=self.clock.seconds, allowed_hosts=self.allowed_hosts,
                         numbers=self.numbers)
        self.listening = reactor.listenTCP(0, site, interface="127.0.0.1")
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
    def get(self, path: str, method: bytes = b"GET", **headers: str):
        url = f"http://127.0.0.1:{self.listening.getHost().port}{path}"
        response = yield self.agent.request(
            method, url.encode("ascii"),
            Headers({name.replace("_", "-"): [value] for name, value in headers.items()}))
        body = yield readBody(response)
        return response, body

    def assertServedDecoded(self, body: bytes) -> None:
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
        for query, starts in [("since=tuesday", "since:"), ("page=abc", "page:"),
                              ("min_duration=-3", "min_duration:"), ("number=abc", "number:"),
                              ("page_size=100000", "page_size:"),
                              (f"page={10 ** 30}", "page:"), ("until=9999-12-31", "until:"),
                              ("since=0001-01-01T00:00%2B14:00", "since:")]:
            error = yield self.get_json(f"/api/recordings?{query}", 400)
            self.assertTrue(error["error"].startswith(starts), error)

    @inlineCallbacks
    def test_one_recording(self) -> None:
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
        self.assertServedDecoded(body)
        playable = playback.open_playable(self.wav)
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
        found = yield self.get_json("/api/active")
        [row] = found["active"]
        self.assertEqual((row["id"], row["remote_number"], row["packets_received"],
                          row["seconds"]), ("live-1", "13800138000", 5, 3.0))

    @inlineCallbacks
    def test_healthz(self) -> None:
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
        for accept in ("text/plain; version=x.y", "application/openmetrics-text; version=junk",
                       "application/openmetrics-text; version=1.0.0"):
            response, body = yield self.get("/metrics", accept=accept)
            self.assertEqual(response.code, 200, accept)
            self.assertIn(b"recsvc_active_recordings", body)

    @inlineCallbacks
    def test_metrics(self) -> None:
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
        response, body = yield self.get("/api/recordings/7/audio")
        self.assertServedDecoded(body)
        self.assertEqual(self.blocking_calls.count("read_decoded"), -(-len(body) // 3999))
        response, part = yield self.get("/api/recordings/7/audio", range="bytes=3990-12009")
        self.assertEqual(part, body[3990:12010])
        response, original = yield self.get("/api/recordings/7/audio?format=original",
                                            range="bytes=-100")
        self.assertEqual(response.code, 206)
        with open(self.wav, "rb") as handle:
            self.assertEqual(original, handle.read()[-100:])

    @inlineCallbacks
    def test_head(self) -> None:
        response, body = yield self.get("/api/recordings/7/audio", method=b"HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"")
        size = playback.open_playable(self.wav).size
        self.assertEqual(response.headers.getRawHeaders(b"content-length"), [str(size).encode()])
        self.assertNotIn("read_decoded", self.blocking_calls)

    @inlineCallbacks
    def test_file_outside_the_root(self) -> None:
        """An index row whose file leads out of the recordings folder (a
        symbolic link) is not served."""
        outside = os.path.abspath(self.mktemp())
        os.rename(self.wav, outside)
        os.symlink(outside, self.wav)
        error = yield self.get_json("/api/recordings/7/audio", 404)
        self.assertIn("outside", error["error"])


class HostTests(HttpTestsMixin, TestCase):
    """Without http.auth, only requests for an IP address, localhost or an
    allowed name are answered (DNS rebinding)."""

    allowed_hosts = ("recordings.example",)

    @inlineCallbacks
    def test_hosts(self) -> None:
        for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "LOCALHOST",
                     "recordings.example", "recordings.example.:80"):
            yield self.get_json("/api/active", host=host)
        error = yield self.get_json("/api/active", 421, host="evil.example:8080")
        self.assertIn("http.allowed_hosts", error["error"])
        response, _ = yield self.get("/", host="127.0.0.1.evil.example")
        self.assertEqual(response.code, 421)
        self.assertEqual(response.headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])


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
        for path in ("/", "/api/recordings", "/api/recordings/7/audio", "/metrics",
                     "/static/app.js"):
            response, body = yield self.get(path)
            self.assertEqual(response.code, 401, path)
            self.assertIn(b'Basic realm="recsvc"',
                          response.headers.getRawHeaders(b"www-authenticate")[0])
            self.assertEqual(json.loads(body), {"error": "authentication required"})

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
        yield self.get_json("/api/active", host="recordings.example",
                            authorization=f"Bearer {TOKEN}")

    @inlineCallbacks
    def test_bearer_token(self) -> None:
        response, _ = yield self.get("/api/recordings/7/audio", authorization=f"Bearer {TOKEN}")
        self.assertEqual(response.code, 200)
        yield self.get_json("/api/active", 401, authorization=f"Bearer {TOKEN}x")

    @inlineCallbacks
    def test_healthz_open(self) -> None:
        health = yield self.get_json("/healthz")
        self.assertEqual(health["status"], "ok")


class GateTests(SynchronousTestCase):
    def test_busy_beyond_the_checks_allowed(self) -> None:
        """At most MAX_CHECKING password checks wait or run at once; beyond
        them the answer is "busy" at once (503), not a queue."""
        held: list = []

        def hold(f, *args):
            held.append(Deferred())
            return held[-1]
        hashed = hash_password("s3cret", iterations=1000)
        gate = Gate({"ann": hashed}, None, hold)
        request = DummyRequest([b"api"])
        request.requestHeaders.setRawHeaders(
            b"authorization", [b"Basic " + base64.b64encode(b"ann:guess")])
        waiting = [gate.admits(request) for _ in range(MAX_CHECKING)]
        self.failureResultOf(gate.admits(request), Busy)
        held[0].callback(False)
        self.assertFalse(self.successResultOf(waiting[0]))
        self.assertNoResult(gate.admits(request))  # room for one more


class PasswordTests(SynchronousTestCase):
    def test_hash_and_verify(self) -> None:
        hashed = hash_password("pässword", iterations=1000)
        self.assertTrue(hashed.startswith("pbkdf2_sha256$1000$"))
        self.assertTrue(verify_password("pässword", hashed))
        self.assertFalse(verify_password("password", hashed))
        self.assertNotEqual(hashed, hash_password("pässword", iterations=1000))  # salted

    def test_damaged_hashes(self) -> None:
        for text in ("", "secret", "pbkdf2_sha256$x$AAAA$AAAA", "md5$1$2$3",
                     hash_password("x", iterations=1000)[:-4]):
            self.assertRaises(ValueError, check_password_hash, text)

    def test_headers(self) -> None:
        self.assertEqual(basic_credentials(b"Basic " + base64.b64encode(b"a:b:c")), ("a", "b:c"))
        self.assertIsNone(basic_credentials(b"Basic " + base64.b64encode(b"nocolon")))
        self.assertIsNone(basic_credentials(None))
        self.assertEqual(bearer_token(b"bearer abc "), b"abc")
        self.assertIsNone(bearer_token(b"Basic abc"))


class HttpConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        config = parse_config(None)
        self.assertEqual(config.http.listen, "tcp:8080:interface=127.0.0.1")
        self.assertFalse(config.http.auth.enabled)
        self.assertIsNone(config.hooks.on_finish)

    def test_auth(self) -> None:
        hashed = hash_password("pw", iterations=1000)
        config = parse_config({"http": {"auth": {"users": {"ann": hashed}, "token": TOKEN}}})
        self.assertEqual(config.http.auth.users, (BasicUser("ann", hashed),))
        self.assertEqual(config.http.auth.token, TOKEN)
        self.assertTrue(config.http.auth.enabled)

    def test_errors_name_the_key(self) -> None:
        for data, key in [
            ({"http": {"auth": {"users": {"ann": "plain-text"}}}}, "http.auth.users"),
            ({"http": {"auth": {"users": ["ann"]}}}, "http.auth.users"),
            ({"http": {"auth": {"token": "short"}}}, "http.auth.token"),
            ({"http": {"auth": {"passwd": "x"}}}, "http.auth.passwd"),
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
        self.assertIsNotNone(self.warning("tcp:8080"))
        self.assertIsNotNone(self.warning("tcp:8080:interface=192.168.1.5"))
        self.assertIsNotNone(self.warning("tcp6:8080:interface=\\:\\:"))
        self.assertIsNone(self.warning("tcp:8080:interface=127.0.0.1"))
        self.assertIsNone(self.warning("tcp6:8080:interface=\\:\\:1"))
        self.assertIsNone(self.warning("unix:/run/recsvc.sock"))
        self.assertIsNone(self.warning("tcp:8080", token=TOKEN))
        self.assertIsNone(self.warning("off"))
