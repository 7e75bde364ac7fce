"""The web page's pages, in headless Chromium: a page after one seen
reads on from where that one ended (the API's cursor, as quick on page
1,000 as on page 2); a page opened by its link comes by its number; the
count line says which recordings of how many."""

from __future__ import annotations

import os

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from recsvc.index import store as index
from tests import browser
from tests.support.sidecars import serve_page, write_sidecar

CALLS = 120  # two full pages of 50 and one of 20


class PagePagingTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        why = browser.unavailable()
        if why is not None:
            raise SkipTest(why)
        root = os.path.abspath(self.mktemp())
        for number in range(CALLS):
            write_sidecar(root, f"call-{number}",
                          f"2026-12-06T10:{number // 60:02d}:{number % 60:02d}.000Z")
        self.asked: list[index.Search] = []
        self.base = serve_page(self, root, self.asked)

    @inlineCallbacks
    def test_next_reads_on_after_the_page_before(self):
        """Next twice: each page follows the one before, asked for after its
        last row (not by an offset); the last page has Next off; Previous
        too reads on from the page before it, seen earlier; a link to page
        2, opened afresh, comes by its number, with the same rows."""
        page = yield deferToThread(browser.Browser)
        self.addCleanup(deferToThread, page.close)
        seen = yield deferToThread(self.use_page, page)
        ids = [f"call-{number}" for number in reversed(range(CALLS))]
        self.assertEqual(seen["first"], ids[:50])
        self.assertEqual(seen["second"], ids[50:100])
        self.assertEqual(seen["third"], ids[100:])
        self.assertEqual(seen["counts"], [
            "Recordings 1–50 of 120, newest first · page 1",
            "Recordings 51–100 of 120, newest first · page 2",
            "Recordings 101–120 of 120, newest first · page 3"])
        self.assertEqual(seen["next_disabled"], [False, False, True])
        self.assertEqual(seen["back"], ids[50:100])
        self.assertEqual(seen["linked"], ids[50:100])
        self.assertEqual(seen["query"], "?page=2")
        # (Each answer asks the index for its page, its total and the row after.)
        pages = [(search.page, search.after is not None) for search in self.asked
                 if search.page_size == 50]
        self.assertEqual(pages, [(1, False), (1, True), (1, True), (1, True), (2, False)])

    def use_page(self, page: browser.Browser) -> dict:
        seen: dict = {"counts": [], "next_disabled": []}

        def shown(key: str) -> None:
            seen[key] = page.run_async(WAIT_FOR_SEARCH)
            seen["counts"].append(page.run("return document.getElementById('count').textContent"))
            seen["next_disabled"].append(page.run("return document.getElementById('next').disabled"))

        page.go(self.base + "/")
        shown("first")
        for key in ("second", "third"):
            page.run(STALE)
            page.click(page.find("#next"))
            shown(key)
        page.run(STALE)
        page.click(page.find("#prev"))
        seen["back"] = page.run_async(WAIT_FOR_SEARCH)
        seen["query"] = page.run("return location.search")
        page.go(self.base + "/?page=2")
        seen["linked"] = page.run_async(WAIT_FOR_SEARCH)
        return seen


STALE = "document.body.dataset.searchState = 'stale';"
WAIT_FOR_SEARCH = browser.wait_for_search("tr.dataset.id")
