"""Issue 19's scenario, end to end in headless Chromium over loopback: a
listener of one team signs in on the page and sees only that team's calls
(another team's call is a 404 by its URL and by the API, and a download is
refused); a supervisor adds a note and finds the call by it; an auditor
sees those actions in the audit trail's view; `recsvc audit verify`
passes, then fails once a row is changed in the database by hand. With
RECSVC_SCREENSHOTS set to a folder, the page is photographed there at
each step (docs/ keeps those pictures)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from contextlib import closing

import yaml
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import readBody

from recsvc.access.audit import audit_event
from recsvc.access.scopes import parse_scopes
from recsvc.access.users import User
from recsvc.control.commands import CallParties
from recsvc.index.sqlite import SqliteIndex
from recsvc.media.codec import WAVE_FORMAT_ALAW
from recsvc.passwords import hash_password
from recsvc.storage.folder import sidecar_path
from recsvc.storage.wav import WavFileWriter, WavFormat
from tests import browser
from tests.support.builders import audio, sidecar
from tests.support.loopback import WebLoopbackMixin

SALES = CallParties("2001", "Sales desk", "13800138000", "Customer A")
SUPPORT = CallParties("3001", "Support desk", "13900139000", "Customer B")
PASSWORD = "a long enough password"
ADDED_AT = "2026-12-07T08:00:00.000Z"
USERS = (("lena", "listener", ("group:sales",)), ("sam", "supervisor", ("group:sales",)),
         ("audrey", "auditor", ()), ("ada", "admin", ()))


class AccessInTheBrowserTests(WebLoopbackMixin, TestCase):
    timeout = 120

    def more_config(self) -> dict:
        database = os.path.join(self.root + "-index", "recsvc.sqlite3")
        os.makedirs(os.path.dirname(database), exist_ok=True)
        with closing(SqliteIndex.open(database)) as found_in:
            for name, role, scopes in USERS:
                found_in.add_user(User(name, role, parse_scopes(scopes),
                                       hash_password(PASSWORD, 1000), ADDED_AT, ADDED_AT),
                                  audit=audit_event(ADDED_AT, "root", "cli",
                                                    "user_add", name, {"role": role}))
        self.recorded_before("dtmf-1")
        return {"groups": {"sales": {"numbers": ["2001"]}, "support": {"numbers": ["3001"]}}}

    def recorded_before(self, recording_id: str) -> None:
        """A support call recorded before the service starts (it indexes
        it as it starts), with keys pressed and a jittery network."""
        data = sidecar(recording_id, local_number="3001", device="00:a8:59:00:00:77",
                       started_at="2026-12-06T09:00:00.000Z", jitter_ms=12.5,
                       dtmf=[{"digit": "4", "offset_s": 1.0, "duration_ms": 160.0},
                             {"digit": "#", "offset_s": 61.0, "duration_ms": 160.0}],
                       file=f"{recording_id}.wav")
        wav = os.path.join(self.root, "00a859000077", "2026", "12", "06", data["file"])
        os.makedirs(os.path.dirname(wav), exist_ok=True)
        writer = WavFileWriter(wav, WavFormat(WAVE_FORMAT_ALAW, 8000, 8))
        writer.write(b"\xd5" * 16000)
        writer.close()
        with open(sidecar_path(wav), "w", encoding="utf-8") as handle:
            json.dump(data, handle)

    @inlineCallbacks
    def indexed(self, recording_id: str):
        """Wait until the index has the call (asked as an admin would: sqlite)."""
        database = self.config["index"]["database"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with closing(sqlite3.connect(database)) as connection:
                if connection.execute("SELECT 1 FROM recordings WHERE recording_id = ?",
                                      (recording_id,)).fetchone():
                    return
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail(f"{recording_id} was not indexed")

    @inlineCallbacks
    def test_a_team_a_note_and_the_trail(self):
        """The issue's Done-when, in Chromium, then `recsvc audit verify`."""
        why = browser.unavailable()
        if why is not None:
            raise SkipTest(why)
        yield deferToThread(self.call, "bare", "sales-1", audio(2, seed=21), parties=SALES)
        yield deferToThread(self.call, "bare", "support-1", audio(2, seed=22), parties=SUPPORT)
        for recording_id in ("sales-1", "support-1", "dtmf-1"):
            yield self.indexed(recording_id)
        # Without a session, the API asks for credentials and the page signs in.
        response = yield self.agent.request(b"GET", (self.base + "/api/recordings").encode())
        yield readBody(response)
        self.assertEqual(response.code, 401)

        page = yield deferToThread(browser.Browser)
        self.addCleanup(deferToThread, page.close)
        seen = yield deferToThread(self.use_page, page)

        # The listener: her team's call only; another team's is a 404 by
        # the page's URL and by the API; no download.
        self.assertEqual(seen["listener_rows"], ["sales-1"])
        self.assertEqual(seen["listener_count"], "Recordings 1–1 of 1, newest first · page 1")
        self.assertEqual(seen["listener_who"], "lena · listener")
        self.assertIn("no finished recording with id 'support-1'", seen["listener_linked_error"])
        self.assertEqual(seen["listener_api"], {"recording": 404, "audio": 404, "notes": 403,
                                                "search": [], "download": 403})
        self.assertTrue(seen["listener_download_hidden"])
        self.assertTrue(seen["listener_note_form_hidden"])
        self.assertTrue(seen["signed_out_at"].startswith(self.base + "/login"))
        # The supervisor: a note, shown, and found by its text and its tag.
        self.assertEqual(seen["supervisor_notes"], [["sam", "Asked for a refund", "dispute"]])
        self.assertEqual(seen["supervisor_by_note"], ["sales-1"])
        self.assertEqual(seen["supervisor_by_tag"], ["sales-1"])
        self.assertTrue(seen["waveform_drawn"])
        self.assertEqual(seen["keys"], {"k": True, "l": 2.0, "j": 0.0})
        self.assertEqual(seen["sorted"], [
            "?order=-remote&page_size=25", "descending",
            "Recordings 1–1 of 1, by remote number, reversed · page 1",
            "/api/export?order=-remote"])
        # The auditor: the trail's view, those actions in it.
        self.assertEqual(seen["auditor_view"], {"audit": True, "recordings": False})
        actions = [tuple(row) for row in seen["auditor_rows"]]
        for expected in (("lena", "login", ""), ("lena", "search", ""),
                         ("lena", "refused", "/api/recordings/support-1"),
                         ("lena", "refused", "/api/recordings/support-1/audio"),
                         ("lena", "refused", "/api/recordings/sales-1/audio"),
                         ("lena", "logout", ""), ("sam", "login", ""),
                         ("sam", "note", "sales-1"), ("audrey", "login", "")):
            self.assertIn(expected, actions)
        self.assertEqual(seen["auditor_filtered"], [["sam", "note", "sales-1"]])
        # The admin: a user added, a number's calls erased (the disposal record in the trail).
        self.assertIn(["lee", "listener", "group:support"], seen["admin_users"])
        self.assertEqual(seen["admin_erased"][0], "erased 1 recordings (2 files) of 13900139000; "
                                                  "the disposal record is in the audit trail")
        self.assertEqual((seen["details"]["DTMF"], seen["details"]["Jitter"]),
                         ("4 at 0:01, # at 1:01", "12.5 ms"))
        # At 400 px: no sideways scrolling, the least needed columns gone.
        self.assertEqual(seen["narrow"], [True, ["date", "local", "remote", "duration"]])

        # `recsvc audit verify` passes; a row changed by hand breaks it.
        status, out, err = yield deferToThread(self.audit_verify)
        self.assertEqual(status, 0, err)
        self.assertIn("the audit trail is intact", out)
        with closing(sqlite3.connect(self.config["index"]["database"])) as connection, \
                connection:
            connection.execute("DROP TRIGGER audit_not_changed")
            connection.execute("UPDATE audit SET actor = 'nobody' WHERE action = 'note'")
        status, out, err = yield deferToThread(self.audit_verify)
        self.assertEqual(status, 1)
        self.assertIn("the audit trail is broken at row", err)

    def audit_verify(self) -> tuple[int, str, str]:
        config = self.mktemp() + ".yaml"
        with open(config, "w", encoding="utf-8") as handle:
            yaml.safe_dump({key: self.config[key] for key in ("storage", "index")}, handle)
        done = subprocess.run([sys.executable, "-m", "recsvc.cli.commands", "-c", config,
                               "audit", "verify"], capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout, done.stderr

    def use_page(self, page: browser.Browser) -> dict:
        """What the three users do, in a thread (the reactor serves the page)."""
        seen: dict = {}
        shots = os.environ.get("RECSVC_SCREENSHOTS")

        def photograph(name: str) -> None:
            if shots:
                page.run("window.scrollTo(0, 0)")
                with open(os.path.join(shots, f"{name}.png"), "wb") as handle:
                    handle.write(page.screenshot())

        def sign_in(name: str) -> None:
            page.go(self.base + "/")  # (no session: to the sign-in page)
            settled(page, AT_LOGIN_FORM)
            page.type(page.find("#user"), name)
            page.type(page.find("#password"), PASSWORD)
            page.click(page.find('#login button[type="submit"]'))
            settled(page, AT_PAGE)

        # The listener of sales.
        sign_in("lena")
        seen["listener_rows"] = page.run_async(WAIT_FOR_SEARCH)
        seen["listener_count"] = page.run("return document.getElementById('count').textContent")
        seen["listener_who"] = page.run(
            "return document.getElementById('who-name').textContent")
        page.go(self.base + "/?play=support-1")  # (an id changed in a linked view)
        seen["listener_linked_error"] = page.run_async(WAIT_FOR_ERROR)
        seen["listener_api"] = page.run_async(LISTENER_API)
        page.go(self.base + "/?play=sales-1")
        page.run_async(WAIT_FOR_SEARCH)
        page.run_async(WAIT_FOR_NOTES)
        seen["listener_download_hidden"] = page.run(
            "return document.getElementById('download').hidden")
        seen["listener_note_form_hidden"] = page.run(
            "return document.getElementById('note-form').hidden")
        photograph("page-listener")
        page.click(page.find("#logout"))
        seen["signed_out_at"] = settled(page, AT_LOGIN_FORM)

        # The supervisor of sales: a note on the call, then found by it.
        sign_in("sam")
        page.run_async(WAIT_FOR_SEARCH)
        page.click(page.find('#results tbody tr[data-id="sales-1"]'))
        page.run_async(WAIT_FOR_NOTES)
        page.type(page.find("#note-text"), "Asked for a refund")
        page.type(page.find("#note-tags"), "Dispute")
        page.click(page.find('#note-form button[type="submit"]'))
        seen["supervisor_notes"] = page.run_async(WAIT_FOR_A_NOTE)
        seen["waveform_drawn"] = page.run_async(WAIT_FOR_WAVEFORM)
        seen["keys"] = page.run_async(KEYS)
        photograph("page-supervisor-note")
        # A column heading sorts (again: reversed), the page size and the
        # export follow the search.
        page.click(page.find('#results th[data-order="remote"] button'))
        page.run_async(WAIT_FOR_SEARCH)
        page.click(page.find('#results th[data-order="remote"] button'))
        page.run_async(WAIT_FOR_SEARCH)
        page.run("document.getElementById('f-page-size').value = '25'")
        page.click(page.find('#search button[type="submit"]'))
        page.run_async(WAIT_FOR_SEARCH)
        seen["sorted"] = page.run(
            "return [location.search, document.querySelector('#results th[data-order=\"remote\"]')"
            ".getAttribute('aria-sort'), document.getElementById('count').textContent, "
            "document.getElementById('export').getAttribute('href')]")
        page.go(self.base + "/?" + urllib.parse.urlencode({"note": "refund"}))
        seen["supervisor_by_note"] = page.run_async(WAIT_FOR_SEARCH)
        page.click(page.find('#results tbody tr[data-id="sales-1"]'))
        page.run_async(WAIT_FOR_NOTES)
        page.click(page.find("#notes-list .tag"))  # (a tag links to its search)
        seen["supervisor_by_tag"] = page.run_async(WAIT_FOR_SEARCH_OF_TAG)
        page.set_window(400, 860)
        page.go(self.base + "/?play=sales-1")
        page.run_async(WAIT_FOR_SEARCH)
        page.run_async(WAIT_FOR_NOTES)
        seen["narrow"] = page.run(
            "return [document.documentElement.scrollWidth <= window.innerWidth, "
            "[...document.querySelectorAll('#results thead th')]"
            ".filter(th => th.offsetParent !== null).map(th => th.dataset.order)]")
        photograph("page-400px")
        page.set_window(1280, 800)
        page.click(page.find("#logout"))
        settled(page, AT_LOGIN_FORM)

        # The auditor: the trail, with its filters.
        sign_in("audrey")
        seen["auditor_view"] = page.run_async(WAIT_FOR_AUDIT)
        seen["auditor_rows"] = page.run(AUDIT_ROWS)
        photograph("page-auditor")
        page.run("document.getElementById('a-action').value = 'note'")
        page.click(page.find('#audit-search button[type="submit"]'))
        page.run_async(WAIT_FOR_AUDIT)
        seen["auditor_filtered"] = page.run(AUDIT_ROWS)
        page.click(page.find("#logout"))
        settled(page, AT_LOGIN_FORM)

        # The admin: a user added on the page, a number's calls erased.
        sign_in("ada")
        page.go(self.base + "/?view=admin")
        page.run_async(WAIT_FOR_USERS)
        page.type(page.find("#u-name"), "lee")
        page.run("document.getElementById('u-role').value = 'listener'")
        page.type(page.find("#u-scopes"), "group:support")
        page.type(page.find("#u-password"), PASSWORD)
        page.click(page.find("#u-add"))
        seen["admin_users"] = page.run_async(WAIT_FOR_USER_LEE)
        page.run("window.confirm = () => true")
        page.type(page.find("#e-number"), "139 0013 9000")
        page.type(page.find("#e-reason"), "GDPR request 12")
        page.click(page.find('#erase-form button[type="submit"]'))
        seen["admin_erased"] = page.run_async(WAIT_FOR_ERASED)
        photograph("page-admin")
        # A call's keys pressed and its network on its detail panel.
        page.go(self.base + "/?play=dtmf-1")
        page.run_async(WAIT_FOR_NOTES)
        seen["details"] = page.run(
            "return Object.fromEntries([...document.querySelectorAll('#details dt')]"
            ".map(dt => [dt.textContent, dt.nextElementSibling.textContent]))")
        return seen


# Scripts run in the page; each resolves (calls its last argument) when
# what it waits for has happened, or after 15 s with what there is.
_WAIT = """
const done = arguments[arguments.length - 1], until = Date.now() + 15000;
(function wait() {
  const found = (() => { CHECK })();
  if (found !== undefined || Date.now() > until) done(found === undefined ? null : found);
  else setTimeout(wait, 50);
})();
"""


def waiting(check: str) -> str:
    """A script that resolves with ``check``'s value once it is not undefined."""
    return _WAIT.replace("CHECK", check)


def settled(page: browser.Browser, check: str, seconds: float = 15.0):
    """``check``'s value (a script body) once it is not null, asked again
    and again while the browser goes from page to page (a script waiting
    in a page ends with it)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = page.run(check)
        except browser.WebDriverError:
            found = None  # (between two pages)
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


AT_LOGIN_FORM = ('return location.pathname === "/login" && document.getElementById("login") '
                 "? location.href : null")
AT_PAGE = ('return location.pathname === "/" && (document.body.dataset.searchState || '
           "document.body.dataset.auditState) ? true : null")
WAIT_FOR_SEARCH = browser.wait_for_search("tr.dataset.id")
WAIT_FOR_SEARCH_OF_TAG = waiting(
    'if (location.search.includes("tag=") && document.body.dataset.searchState === "done") '
    'return [...document.querySelectorAll("#results tbody tr")].map(tr => tr.dataset.id);')
WAIT_FOR_ERROR = waiting('const banner = document.getElementById("error"); '
                         "if (!banner.hidden) return banner.textContent;")
WAIT_FOR_NOTES = waiting('if (document.getElementById("notes").dataset.loaded) return true;')
WAIT_FOR_A_NOTE = waiting(
    'const notes = [...document.querySelectorAll("#notes-list li")]; '
    "if (notes.length) return notes.map(li => [li.querySelector('.note-author').textContent, "
    "li.querySelector('.note-text').textContent, "
    "[...li.querySelectorAll('.tag')].map(tag => tag.textContent).join(' ')]);")
WAIT_FOR_WAVEFORM = waiting('if (document.getElementById("waveform").dataset.drawn === "yes") '
                            "return true;")
WAIT_FOR_AUDIT = waiting(
    'if (document.body.dataset.auditState === "done") return {'
    'audit: !document.getElementById("audit-view").hidden, '
    'recordings: !document.getElementById("recordings-view").hidden};')
WAIT_FOR_USERS = waiting('if (document.body.dataset.usersState === "done") return true;')
WAIT_FOR_USER_LEE = waiting(
    'const rows = [...document.querySelectorAll("#users-table tbody tr")]; '
    'if (rows.some(tr => tr.dataset.name === "lee")) return rows.map(tr => '
    '[...tr.children].slice(0, 3).map(td => td.textContent));')
WAIT_FOR_ERASED = waiting('const said = document.querySelectorAll("#erase-said li"); '
                          "if (said.length) return [...said].map(li => li.textContent);")
AUDIT_ROWS = ("return [...document.querySelectorAll('#audit-table tbody tr')].map(tr => "
              "[...tr.children].slice(2, 6).filter((_, i) => i !== 1).map(td => td.textContent))")
KEYS = """
const done = arguments[arguments.length - 1];
const audio = document.getElementById("audio");
const press = (key) => document.body.dispatchEvent(new KeyboardEvent("keydown", {key, bubbles: true}));
const settle = () => new Promise((resolve) => setTimeout(resolve, 300));
(async () => {
  audio.pause();
  audio.currentTime = 0;
  await settle();
  press("k");
  await settle();
  const played = !audio.paused;
  audio.pause();
  audio.currentTime = 0;
  press("l");
  await settle();
  const on = audio.currentTime;
  press("j");
  await settle();
  done({k: played, l: Math.round(on), j: Math.round(audio.currentTime)});
})();
"""
LISTENER_API = """
const done = arguments[arguments.length - 1];
const status = (url) => fetch(url, {cache: "no-store"}).then(r => r.status);
Promise.all([
  status("/api/recordings/support-1"), status("/api/recordings/support-1/audio"),
  fetch("/api/recordings/sales-1/notes", {method: "POST", body: '{"text": "mine"}',
        headers: {"Content-Type": "application/json", "X-CSRF-Token": decodeURIComponent(
          document.cookie.split("; ").find(c => c.startsWith("recsvc_csrf=")).slice(12))}})
    .then(r => r.status),
  fetch("/api/recordings?number=3001").then(r => r.json()).then(b => b.recordings.map(r => r.id)),
  status("/api/recordings/sales-1/audio?format=original"),
]).then(([recording, audio, notes, search, download]) =>
  done({recording, audio, notes, search, download}));
"""
