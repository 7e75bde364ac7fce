"""The web page's clock, in headless Chromium whose own time zone is UTC+14
(TZ=Pacific/Kiritimati): times are shown in one zone named on the page (the
browser's, or UTC at the switch, remembered), and the From/To days are days
in that zone, sent to the API as ISO times with their offset."""

from __future__ import annotations

import os

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests import browser
from tests.support.sidecars import serve_page, write_sidecar

ZONE = "Pacific/Kiritimati"  # UTC+14 all year
# Recordings and the day each began on, in UTC+14 and in UTC.
CALLS = {
    "before": "2026-12-06T09:30:00.000Z",  # Dec 6, 23:30 in UTC+14; Dec 6 in UTC
    "listed-dec-7": "2026-12-06T11:00:00.000Z",  # Dec 7, 01:00 in UTC+14; Dec 6 in UTC
    "after": "2026-12-07T10:30:00.000Z",  # Dec 8, 00:30 in UTC+14; Dec 7 in UTC
}


class PageClockTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        why = browser.unavailable()
        if why is not None:
            raise SkipTest(why)
        root = os.path.abspath(self.mktemp())
        for recording_id, started_at in CALLS.items():
            write_sidecar(root, recording_id, started_at)
        self.base = serve_page(self, root)

    @inlineCallbacks
    def test_days_in_the_shown_zone(self):
        """In UTC+14 a call at 11:00 UTC on Dec 6 is listed as Dec 7 and
        found by From = To = Dec 7 (the page sends that day's start and end
        with +14:00); switched to UTC (the switch is remembered), the same
        days mean UTC days, and it is listed and found as Dec 6."""
        page = yield deferToThread(browser.Browser, time_zone=ZONE)
        self.addCleanup(deferToThread, page.close)
        seen = yield deferToThread(self.use_page, page)

        local = seen["local"]
        self.assertEqual(local["zone"], ["local", f"{ZONE} (this browser)", ZONE])
        self.assertEqual(local["rows"], [
            ["after", "2026-12-08T00:30:00+14:00"],
            ["listed-dec-7", "2026-12-07T01:00:00+14:00"],
            ["before", "2026-12-06T23:30:00+14:00"]])
        day, clock = local["shown"]
        self.assertIn("Dec 7", day)
        self.assertIn("01:00:00", clock)
        self.assertEqual([row[0] for row in local["dec_7"]], ["listed-dec-7"])
        self.assertEqual(local["query"],
                         "?since=2026-12-07T00%3A00%3A00%2B14%3A00"
                         "&until=2026-12-08T00%3A00%3A00%2B14%3A00")
        self.assertEqual(local["form"], ["2026-12-07", "2026-12-07"])
        # A link with bare days means days in the page's zone too.
        self.assertEqual([row[0] for row in local["linked_dec_7"]], ["listed-dec-7"])

        utc = seen["utc"]
        self.assertEqual(utc["zone"][0], "utc")
        self.assertEqual(utc["zone"][2], "UTC")
        self.assertEqual([row[0] for row in utc["dec_7"]], ["after"])
        self.assertEqual(utc["query"], "?since=2026-12-07T00%3A00%3A00Z"
                                       "&until=2026-12-08T00%3A00%3A00Z")
        self.assertEqual(utc["dec_6"], [["listed-dec-7", "2026-12-06T11:00:00Z"],
                                        ["before", "2026-12-06T09:30:00Z"]])
        day, clock = utc["shown"]
        self.assertIn("Dec 6", day)
        self.assertIn("11:00:00", clock)
        self.assertEqual(seen["reloaded_zone"][0], "utc")
        self.assertEqual([row[0] for row in seen["back_to_local"]], ["listed-dec-7"])

    def use_page(self, page: browser.Browser) -> dict:
        """What a user in UTC+14 does, in a thread (the reactor serves)."""
        seen: dict = {"local": {}, "utc": {}}
        page.go(self.base + "/")
        # Another test of this browser profile may not have left a choice behind.
        page.run("localStorage.clear()")
        page.go(self.base + "/")
        local = seen["local"]
        local["rows"] = page.run_async(WAIT_FOR_SEARCH)
        local["zone"] = page.run(ZONE_SHOWN)
        local["shown"] = page.run(SHOWN)
        local["dec_7"] = search_days(page, "2026-12-07", "2026-12-07")
        local["query"] = page.run("return location.search")
        local["form"] = page.run(FORM_DAYS)
        page.go(self.base + "/?since=2026-12-07&until=2026-12-07")
        local["linked_dec_7"] = page.run_async(WAIT_FOR_SEARCH)

        utc = seen["utc"]
        page.run(STALE)
        page.click(page.find('#zone option[value="utc"]'))
        utc["dec_7"] = page.run_async(WAIT_FOR_SEARCH)  # the form's days, now UTC days
        utc["zone"] = page.run(ZONE_SHOWN)
        utc["query"] = page.run("return location.search")
        utc["dec_6"] = search_days(page, "2026-12-06", "2026-12-06")
        utc["shown"] = page.run(SHOWN)

        page.go(self.base + "/?since=2026-12-07&until=2026-12-07")
        page.run_async(WAIT_FOR_SEARCH)
        seen["reloaded_zone"] = page.run(ZONE_SHOWN)
        page.run(STALE)
        page.click(page.find('#zone option[value="local"]'))
        seen["back_to_local"] = page.run_async(WAIT_FOR_SEARCH)
        return seen


def search_days(page: browser.Browser, since: str, until: str) -> list:
    """Set From and To (a date input's value, as a date picker sets it),
    press Search, and wait for the rows."""
    page.run("document.getElementById('f-since').value = arguments[0];"
             "document.getElementById('f-until').value = arguments[1];", since, until)
    page.run(STALE)
    page.click(page.find('#search button[type="submit"]'))
    return page.run_async(WAIT_FOR_SEARCH)


# So that WAIT_FOR_SEARCH waits for the search that follows, not the last one.
STALE = "document.body.dataset.searchState = 'stale';"
ZONE_SHOWN = """
return [document.getElementById("zone").value,
        document.getElementById("zone").selectedOptions[0].textContent,
        document.querySelector("label[for=f-since] .zone-name").textContent];
"""
# The day and the time of day the list shows for the call at 11:00 UTC.
SHOWN = """
const cell = document.querySelector('#results tr[data-id="listed-dec-7"] td.date');
return [cell.querySelector("time").textContent, cell.querySelector(".pname").textContent];
"""
FORM_DAYS = """
return [document.getElementById("f-since").value, document.getElementById("f-until").value];
"""
# Each row's id and its <time>'s datetime (ISO in the shown zone).
WAIT_FOR_SEARCH = browser.wait_for_search('[tr.dataset.id, tr.querySelector("time").dateTime]')
