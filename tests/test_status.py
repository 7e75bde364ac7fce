"""Tests for ``recsvc status`` (recsvc.cli.status): where it asks, what it
shows, and, over loopback, the running service's answer to it (with and
without http.auth)."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from recsvc.config import parse_config
from recsvc.phonesim.phone import rtp_packets, send_rtp
from recsvc.cli.status import Status, StatusError, api_url, format_status, parse_metrics
from tests.support.builders import audio
from tests.support.loopback import LoopbackServiceMixin

METRICS = """\
# HELP recsvc_active_recordings Recordings in progress (stopping included)
# TYPE recsvc_active_recordings gauge
recsvc_active_recordings 2.0
# HELP recsvc_recordings_started_total Recordings begun
# TYPE recsvc_recordings_started_total counter
recsvc_recordings_started_total 1234.0
recsvc_recordings_started_created 1.7e+09
# HELP recsvc_starts_refused_total Starts answered with result=failed, by reason
# TYPE recsvc_starts_refused_total counter
recsvc_starts_refused_total{reason="server busy"} 3.0
recsvc_starts_refused_total{reason="device not allowed"} 7.0
# HELP recsvc_recording_duration_seconds How long the finished recordings lasted
# TYPE recsvc_recording_duration_seconds histogram
recsvc_recording_duration_seconds_bucket{le="+Inf"} 5.0
recsvc_recording_duration_seconds_count 5.0
recsvc_recording_duration_seconds_sum 50.0
"""


def url_of(http: dict) -> str:
    return api_url(parse_config({"http": http}))


class UrlTests(SynchronousTestCase):
    def test_from_http_listen(self) -> None:
        """The URL is http.listen's, as this machine reaches it: a wildcard
        interface is asked on loopback."""
        self.assertEqual(url_of({}), "http://127.0.0.1:8080")
        self.assertEqual(url_of({"listen": "tcp:9090"}), "http://127.0.0.1:9090")
        self.assertEqual(url_of({"listen": "tcp:9090:interface=192.0.2.1"}),
                         "http://192.0.2.1:9090")
        self.assertEqual(url_of({"listen": r"tcp6:9090:interface=\:\:1"}), "http://[::1]:9090")
        self.assertEqual(url_of({"listen": r"tcp6:9090:interface=\:\:"}), "http://[::1]:9090")

    def test_ssl_is_https(self) -> None:
        """An ssl: listener is asked over https; its key is not read (the
        user asking need not be able to)."""
        self.assertEqual(url_of({"listen": "ssl:8443:privateKey=/nonexistent/key.pem"
                                           ":interface=127.0.0.1"}),
                         "https://127.0.0.1:8443")
        self.assertEqual(url_of({"listen": "ssl:port=8443:privateKey=k.pem"}),
                         "https://127.0.0.1:8443")

    def test_off_or_not_tcp(self) -> None:
        """With HTTP off or on a Unix socket, the error says to give --url."""
        for listen in ("off", "unix:/tmp/recsvc-http.sock"):
            error = self.assertRaises(StatusError, url_of, {"listen": listen})
            self.assertIn("--url", str(error))


class FormatTests(SynchronousTestCase):
    def test_metrics_read(self) -> None:
        """Counters lose their _total; _created samples and buckets are left out."""
        figures = parse_metrics(METRICS)
        self.assertEqual(figures["recsvc_recordings_started"], {(): 1234.0})
        self.assertEqual(figures["recsvc_starts_refused"],
                         {(("reason", "server busy"),): 3.0,
                          (("reason", "device not allowed"),): 7.0})
        self.assertNotIn("recsvc_recording_duration_seconds_bucket", figures)
        self.assertNotIn("recsvc_recordings_started_created", figures)

    def test_shown(self) -> None:
        """The text names each recording in progress and each figure, the
        labelled ones with their total and then by label, largest first."""
        active = [{"id": "call-7", "device": "00:a8:59:00:00:01", "direction": "out",
                   "local_number": "2001", "remote_number": "13800138000", "codec": "PCMA",
                   "seconds": 61.4, "packets_received": 3070, "packets_lost": 2,
                   "started_at": "2026-11-26T10:00:00.000Z"}]
        text = format_status(Status("http://127.0.0.1:8080", active, parse_metrics(METRICS)))
        self.assertEqual(text.splitlines(), [
            "recsvc at http://127.0.0.1:8080",
            "1 recording(s) in progress",
            "  call-7  00:a8:59:00:00:01  out  2001 -> 13800138000  PCMA  61 s  3070 packets "
            "(2 lost)  since 2026-11-26T10:00:00.000Z",
            "recordings in progress: 2",
            "recordings started: 1,234",
            "starts refused: 10",
            "  7  reason=device not allowed",
            "  3  reason=server busy",
        ])


class NamesTests(SynchronousTestCase):
    def test_every_figure_shown_is_one_the_service_exports(self) -> None:
        """The names status shows are the ones recsvc's /metrics has (a
        renamed metric would otherwise vanish from status unnoticed)."""
        from prometheus_client import generate_latest

        from recsvc.metrics import LiveFigures, Metrics
        from recsvc.cli.status import BY_LABEL, COUNTERS, GAUGES
        from recsvc.summary import MediaStats

        metrics = Metrics()
        metrics.watch(lambda: LiveFigures(1, 0, 1, 5, 0, 0, {"foreign address": 2}, 800, 10**9))
        metrics.recording_started()
        metrics.start_refused("server busy")
        metrics.connection_refused("address not allowed")
        metrics.connection_closed("idle")
        metrics.recording_finished("hangup", "phone", 1.0, MediaStats())
        exported = parse_metrics(generate_latest(metrics.registry).decode())
        for name, _ in GAUGES + COUNTERS + BY_LABEL:
            self.assertIn(name, exported)


class StatusEndToEndTests(LoopbackServiceMixin, TestCase):
    """``recsvc status`` against the service running over loopback, with
    http.auth's token: the config's token is used; without it, a clear
    refusal."""

    timeout = 60
    TOKEN = "s3cret-token-for-the-test"

    def more_config(self) -> dict:
        return {"http": {"listen": "tcp:0:interface=127.0.0.1", "auth": {"token": self.TOKEN}}}

    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        http = yield self.tree.getServiceNamed("http").whenListening()
        self.url = f"http://127.0.0.1:{http.getHost().port}"

    def status(self, *arguments: str, config: dict | None = None,
               url: str | None = None) -> subprocess.CompletedProcess:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(self.config if config is None else config, handle)
        return subprocess.run(
            [sys.executable, "-m", "recsvc.cli.commands", "-c", path, "status", "--url", url or self.url,
             *arguments], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    @inlineCallbacks
    def test_shows_the_call_in_progress(self):
        """A call being recorded is shown with its id and packets (--json:
        the API's rows and the metrics), and as a line with its direction
        and parties as search prints them."""
        phone = self.phone()
        yield deferToThread(phone.connect)
        started = yield deferToThread(phone.start, "in-progress-1")
        yield deferToThread(send_rtp, rtp_packets(audio(1, seed=3)), started.server, started.port)
        yield self.wait_for(lambda: next(iter(self.recorder.registry)).progress().received >= 50)
        shown = yield deferToThread(self.status, "--json")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        status = json.loads(shown.stdout)
        [row] = status["active"]
        self.assertEqual((row["id"], row["packets_received"]), ("in-progress-1", 50))
        self.assertEqual(status["metrics"]["recsvc_recordings_started"], [
            {"labels": {}, "value": 1.0}])
        text = yield deferToThread(self.status)
        self.assertIn("1 recording(s) in progress", text.stdout)
        self.assertIn("in-progress-1  00:a8:59:12:34:56  out  2001 Desk -> 13800138000 Customer",
                      text.stdout)
        yield deferToThread(phone.stop, "in-progress-1")

    @inlineCallbacks
    def test_without_the_token(self):
        """A service with http.auth asked without its token: exit status 1,
        saying that http.auth is on and what to give."""
        config = {**self.config, "http": {"listen": "tcp:0:interface=127.0.0.1"}}
        shown = yield deferToThread(self.status, config=config)
        self.assertEqual(shown.returncode, 1)
        self.assertIn("401, http.auth is on", shown.stderr)

    @inlineCallbacks
    def test_not_recsvc_http(self):
        """Asking something that is not recsvc's HTTP side (its control
        port): said so, exit status 1, no traceback."""
        shown = yield deferToThread(self.status, "--timeout", "1",
                                    url=f"http://127.0.0.1:{self.port}")
        self.assertEqual(shown.returncode, 1)
        self.assertIn(f"recsvc status: http://127.0.0.1:{self.port}/api/active: ", shown.stderr)
        self.assertNotIn("Traceback", shown.stderr)

    @inlineCallbacks
    def test_not_running(self):
        """Nothing listening: said so, exit status 1."""
        yield self.tree.stopService()
        shown = yield deferToThread(self.status)
        self.assertEqual(shown.returncode, 1)
        self.assertIn(f"recsvc is not running or not reachable at {self.url}", shown.stderr)
