"""End to end, over loopback: a recorded call is found by its number
through the CLI, the JSON API and the web page (played in a real headless
Chromium), counted in /metrics and announced to the completion webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse

import yaml
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import readBody
from twisted.web.server import Site

from recsvc.phonesim.phone import rtp_packets, send_rtp
from tests import browser
from recsvc.control.commands import CallParties
from tests.support.builders import audio
from tests.support.loopback import WebLoopbackMixin
from tests.support.webhook import RecordingResource

NUMBER_AS_TYPED = "138 0013 8000"


class WebEndToEndTests(WebLoopbackMixin, TestCase):
    timeout = 60

    def more_config(self) -> dict:
        self.hook = RecordingResource()
        listening = reactor.listenTCP(0, Site(self.hook), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        url = f"http://127.0.0.1:{listening.getHost().port}/recsvc/finished?source=test"
        return {"hooks": {"on_finish": url}}

    @inlineCallbacks
    def get(self, path: str):
        response = yield self.agent.request(b"GET", (self.base + path).encode("ascii"))
        body = yield readBody(response)
        return response.code, body

    @inlineCallbacks
    def recorded_call(self, recording_id: str, seconds: float):
        """A whole call with 138 0013 8000, after one with another number
        (which no search by that number may find), then its row from the
        API once it is indexed."""
        yield deferToThread(self.call, "bare", "elsewhere", audio(1, seed=10),
                            parties=CallParties("2001", "Desk", "2002", "Colleague"))
        yield deferToThread(self.call, "bare", recording_id, audio(seconds, seed=11))
        query = urllib.parse.urlencode({"number": NUMBER_AS_TYPED})
        deadline = time.monotonic() + 10
        while True:
            code, body = yield self.get(f"/api/recordings?{query}")
            self.assertEqual(code, 200, body)
            rows = [row for row in json.loads(body)["recordings"] if row["id"] == recording_id]
            if rows or time.monotonic() > deadline:
                break
            yield deferLater(reactor, 0.05)
        self.assertEqual(len(rows), 1, "the call was not found through the API")
        return rows[0]

    @inlineCallbacks
    def test_found_counted_and_announced(self):
        """The API and the CLI find the call by its number as typed, /metrics
        counts it, and the webhook receives its sidecar."""
        row = yield self.recorded_call("web-1", 2)
        self.assertEqual((row["remote_number"], row["duration_s"], row["stopped_by"]),
                         ("13800138000", 2.0, "phone"))

        announced = {}
        for _ in range(2):
            content_type, body = yield self.hook.received.get()
            self.assertEqual(content_type, b"application/json")
            sidecar = json.loads(body)
            announced[sidecar["id"]] = sidecar
        self.assertEqual((announced["web-1"]["status"], announced["web-1"]["file"]),
                         ("finished", row["file"]))
        self.assertIn("elsewhere", announced)

        code, body = yield self.get("/metrics")
        self.assertEqual(code, 200)
        metrics = body.decode("utf-8")
        self.assertIn('recsvc_recordings_finished_total{reason="stopped by phone",'
                      'stopped_by="phone"} 2.0', metrics)
        self.assertIn("recsvc_recordings_started_total 2.0", metrics)
        # (Over UDP: as many as the recordings say they received.)
        received = row["packets_received"] + announced["elsewhere"]["packets_received"]
        self.assertIn(f"recsvc_rtp_packets_received_total {received:.1f}", metrics)
        self.assertIn("recsvc_audio_bytes_written_total 24000.0", metrics)

        config = self.mktemp() + ".yaml"
        with open(config, "w", encoding="utf-8") as handle:
            yaml.safe_dump({key: self.config[key] for key in ("storage", "index")}, handle)
        found = yield deferToThread(subprocess.run, [
            sys.executable, "-m", "recsvc.cli.commands", "-c", config, "search", "--number",
            NUMBER_AS_TYPED, "--json"], capture_output=True, text=True, timeout=30)
        self.assertEqual(found.returncode, 0, found.stderr)
        self.assertEqual([entry["id"] for entry in json.loads(found.stdout)["recordings"]],
                         ["web-1"])

    @inlineCallbacks
    def test_page_finds_and_plays(self):
        """In headless Chromium: the number typed into the search form finds
        the call (the count line says how many in all), the order chosen
        on the form sorts the rows, its row plays in the audio player (a
        duration, playing, no media error) and its details name the node that recorded it, and
        the live panel shows a call in progress."""
        why = browser.unavailable()
        if why is not None:
            raise SkipTest(why)
        row = yield self.recorded_call("web-2", 3)
        page = yield deferToThread(browser.Browser)
        self.addCleanup(deferToThread, page.close)
        seen = yield deferToThread(self.use_page, page, row)

        self.assertEqual(seen["all_rows"], [["web-2", "13800138000"], ["elsewhere", "2002"]])
        self.assertEqual(seen["rows"], [["web-2", "13800138000"]])
        # (The recording in the player is in the URL too: the view is linkable.)
        self.assertEqual(seen["url_query"], "?number=138+0013+8000&play=web-2")
        # The search's URL, opened afresh, finds the same.
        self.assertEqual(seen["linked_rows"], seen["rows"])
        self.assertEqual(seen["counted"], "Recordings 1–1 of 1, newest first · page 1")
        # The order chosen on the form: the rows, the count line, the URL.
        self.assertEqual(seen["oldest_rows"], seen["all_rows"][::-1])
        self.assertEqual(seen["oldest_counted"], "Recordings 1–2 of 2, oldest first · page 1")
        self.assertEqual(seen["oldest_query"], "?order=oldest")
        played = seen["played"]
        self.assertIsNone(played["error"], played)
        self.assertAlmostEqual(played["duration"], 3.0, delta=0.05)
        self.assertGreater(played["time"], 0)
        self.assertFalse(played["paused"])
        self.assertTrue(played["src"].startswith(self.base + "/api/recordings/web-2/audio"))
        self.assertEqual(seen["download"], self.base + row["audio_url"] + "&format=original")
        self.assertEqual(seen["live"], {"ids": ["web-live"], "heading": "Recording now: 1"})
        # Its details name the node that recorded it, as the API does.
        self.assertTrue(row["node"])
        self.assertEqual((seen["details"]["ID"], seen["details"]["Node"]), ("web-2", row["node"]))

    def use_page(self, page: browser.Browser, row: dict) -> dict:
        """What a supervisor does, in a thread (the reactor serves the page)."""
        page.go(self.base + "/")
        all_rows = page.run_async(WAIT_FOR_SEARCH)
        page.type(page.find('#search input[name="number"]'), NUMBER_AS_TYPED)
        page.click(page.find('#search button[type="submit"]'))
        rows = page.run_async(WAIT_FOR_SEARCH)
        url = page.run("return location.href")
        page.go(self.base + "/?number=" + urllib.parse.quote_plus("999"))
        page.run_async(WAIT_FOR_SEARCH)
        page.go(url)
        linked_rows = page.run_async(WAIT_FOR_SEARCH)
        counted = page.run("return document.getElementById('count').textContent")
        # Every call, oldest first, through the form's order.
        page.go(self.base + "/")
        page.run_async(WAIT_FOR_SEARCH)
        page.run("document.getElementById('f-order').value = 'oldest'")
        page.click(page.find('#search button[type="submit"]'))
        oldest_rows = page.run_async(WAIT_FOR_SEARCH)
        oldest_counted = page.run("return document.getElementById('count').textContent")
        oldest_query = page.run("return location.search")
        page.go(url)
        page.run_async(WAIT_FOR_SEARCH)
        page.click(page.find(f'#results tbody tr[data-id="{row["id"]}"]'))
        played = page.run_async(WAIT_FOR_PLAYING)
        details = page.run("return Object.fromEntries([...document.querySelectorAll('#details dt')]"
                           ".map(dt => [dt.textContent, dt.nextElementSibling.textContent]))")
        # A call that starts while the page is open appears by itself.
        live_phone = self.phone()
        live_phone.connect()
        started = live_phone.start("web-live")
        assert started.result == "success", started
        send_rtp(rtp_packets(audio(1, seed=12), "PCMA"), started.server, started.port)
        live = page.run_async(WAIT_FOR_LIVE)
        screenshot = os.environ.get("RECSVC_SCREENSHOT")
        if screenshot:
            with open(screenshot, "wb") as handle:
                handle.write(page.screenshot())
        return {
            "all_rows": all_rows, "linked_rows": linked_rows, "counted": counted,
            "oldest_rows": oldest_rows, "oldest_counted": oldest_counted,
            "oldest_query": oldest_query,
            "rows": rows, "played": played, "live": live, "details": details,
            "url_query": page.run("return location.search"),
            "download": page.run("return document.getElementById('download').href"),
        }


# Scripts run in the page; each resolves (calls its last argument) when
# what it waits for has happened, or after 15 s with what there is.
WAIT_FOR_SEARCH = browser.wait_for_search(
    '[tr.dataset.id, tr.querySelectorAll("td")[3].querySelector(".num").textContent]')
WAIT_FOR_PLAYING = """
const done = arguments[arguments.length - 1], until = Date.now() + 15000;
const audio = document.getElementById("audio");
(function wait() {
  if ((audio.currentTime > 0.2 && !audio.paused) || audio.error || Date.now() > until) {
    done({src: audio.currentSrc, duration: audio.duration, time: audio.currentTime,
          paused: audio.paused, error: audio.error && audio.error.code});
  } else setTimeout(wait, 50);
})();
"""
WAIT_FOR_LIVE = """
const done = arguments[arguments.length - 1], until = Date.now() + 15000;
(function wait() {
  const rows = document.querySelectorAll("#live-table tbody tr");
  if (rows.length || Date.now() > until) {
    done({ids: [...rows].map(tr => tr.dataset.id),
          heading: document.getElementById("live-title").textContent.trim()});
  } else setTimeout(wait, 50);
})();
"""

