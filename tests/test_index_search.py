"""The index contract, for searches: the four orders, pages after a cursor,
totals; each test case runs against every backend (tests/support/indexes.py)."""

from __future__ import annotations

import base64
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.index import store as index
from tests.support.builders import sidecar
from tests.support.indexes import OnPostgres, OnSqlite


def _add(found_in, data: dict) -> None:
    name = os.path.join("d", os.path.splitext(data["file"])[0] + ".json")
    index.add(found_in, index.entry_from_sidecar(data, name, 0))


# Rows that tie on what the orders sort by first, and numbers that a few,
# many or none of them hold.
_STARTS = ["2026-11-24T10:00:00.000Z", "2026-11-24T11:00:00.000Z", "2026-11-25T09:00:00.000Z"]
_DURATIONS = [0.0, 5.0, 60.0]
_NUMBERS = ["13800138000", "13900000000", "555"]


def _expected(rows: list[tuple[str, float, str]], order: str, number: str | None) -> list[str]:
    """The ids of ``rows`` (start, duration, remote number) that ``number``
    finds, in ``order``, as the orders are defined: ties by path (ids are
    the rows' numbers, and so in their paths)."""
    found = [(start, duration, "d/" + sidecar(str(i))["file"], str(i))
             for i, (start, duration, remote) in enumerate(rows)
             if number is None or number in "2001 " + remote]
    newest = sorted(found, key=lambda row: (_descending(row[0]), row[2]))
    longest = sorted(found, key=lambda row: (-row[1], _descending(row[0]), row[2]))
    ordered = {"newest": newest, "oldest": newest[::-1],
               "longest": longest, "shortest": longest[::-1]}[order]
    return [row[3] for row in ordered]


def _descending(text: str) -> tuple[int, ...]:
    return tuple(-ord(character) for character in text)


class OrderAndCursorTests:
    """Every order gives every row once, page after page, by page number or
    after the cursor of the page before, whatever the index reads first."""

    def fill(self, found_in, rows) -> None:
        for i, (started_at, duration_s, remote) in enumerate(rows):
            _add(found_in, sidecar(str(i), started_at=started_at, duration_s=duration_s,
                                   remote_number=remote))

    @settings(max_examples=50, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.differing_executors])
    @given(rows=st.lists(st.tuples(st.sampled_from(_STARTS), st.sampled_from(_DURATIONS),
                                   st.sampled_from(_NUMBERS)), max_size=12),
           order=st.sampled_from(index.ORDERS),
           number=st.sampled_from([None, "138", "139", "555", "000", "13"]),
           page_size=st.integers(1, 4), walk=st.integers(0, 5),
           at_most=st.integers(0, 8), furthest=st.integers(0, 16))
    def test_pages_in_every_order(self, rows, order, number, page_size, walk, at_most,
                                  furthest) -> None:
        """Page by page (by number, and after each page's last row), the
        rows found come in the order's order, each once, however far the
        walk may go (for rare text, and for common text) before the lookup."""
        self.patch(index, "WALK_FIRST", walk)
        self.patch(index, "WALK_AT_MOST", at_most)
        self.patch(index, "WALK_FURTHEST", furthest)
        found_in = self.open_test_index()
        self.fill(found_in, rows)
        expected = _expected(rows, order, number)
        pages = len(expected) // page_size + 1
        by_number = []
        for page in range(1, pages + 1):
            by_number += [row["id"] for row in index.search(found_in, index.Search(
                number=number, order=order, page=page, page_size=page_size))]
        self.assertEqual(by_number, expected)
        after, by_cursor = None, []
        for _ in range(pages):
            page = index.search(found_in, index.Search(
                number=number, order=order, page_size=page_size, after=after))
            if not page:
                break
            by_cursor += [row["id"] for row in page]
            after = index.cursor_of(page[-1])
        self.assertEqual(by_cursor, expected)
        everything = [row["id"] for row in index.search_all(
            found_in, index.Search(number=number, order=order))]
        self.assertEqual(everything, expected)

    def test_a_cursor_of_another_order_still_pages(self) -> None:
        """A cursor holds the row's start, duration and path: it serves any
        order (the page after that row in the order asked for)."""
        found_in = self.open_test_index()
        self.fill(found_in, [(_STARTS[i % 3], _DURATIONS[i % 3], "555") for i in range(6)])
        [first] = index.search(found_in, index.Search(order="longest", page_size=1))
        rest = index.search(found_in, index.Search(order="longest", after=index.cursor_of(first)))
        self.assertEqual([first["id"]] + [row["id"] for row in rest],
                         _expected([(_STARTS[i % 3], _DURATIONS[i % 3], "555")
                                    for i in range(6)], "longest", None))


class WalkThenLookUpTests(SynchronousTestCase):
    """How a search for text finds its page: the decisions of
    index.walk_then_look_up, on rows that hold the text or not."""

    def setUp(self) -> None:
        self.patch(index, "WALK_FIRST", 100)
        self.patch(index, "WALK_AT_MOST", 200)
        self.patch(index, "WALK_FURTHEST", 2000)

    def find(self, holds: list[bool], page: int, page_size: int = 5) -> tuple[list[int], list]:
        """The page found and how (the walks' lengths, or "look up")."""
        asked: list = []
        matching = [i for i, held in enumerate(holds) if held]
        first = (page - 1) * page_size

        def walk(rows: int) -> list[int]:
            asked.append(rows)
            return [i for i in matching if i < rows][first:first + page_size]

        def walked(rows: int) -> tuple[int, int]:
            return min(rows, len(holds)), sum(holds[:rows])

        def look_up() -> list[int]:
            asked.append("look up")
            return matching[first:first + page_size]
        found = index.walk_then_look_up(index.Search(page=page, page_size=page_size),
                                        walk, walked, look_up)
        self.assertEqual(found, matching[first:first + page_size])
        return found, asked

    def test_common_text_on_the_first_rows(self) -> None:
        """Text one row in four holds: the first rows' walk fills page 1."""
        self.assertEqual(self.find([i % 4 == 0 for i in range(10_000)], 1)[1], [100])

    def test_a_deep_page_of_common_text_walks_on(self) -> None:
        """A deep page of text one row in four holds: the walk goes past
        WALK_AT_MOST as far as the matches say (a lookup would gather them
        all), but not past WALK_FURTHEST."""
        self.assertEqual(self.find([i % 4 == 0 for i in range(10_000)], 60)[1], [100, 1500])
        self.assertEqual(self.find([i % 4 == 0 for i in range(10_000)], 120)[1],
                         [100, "look up"])

    def test_rare_text_is_looked_up(self) -> None:
        """Text one row in fifty holds, a page the first rows do not fill:
        beyond WALK_AT_MOST, looked up."""
        self.assertEqual(self.find([i % 50 == 0 for i in range(10_000)], 1)[1],
                         [100, "look up"])

    def test_absent_text_is_looked_up_at_once(self) -> None:
        """Text no row of the first walk holds: looked up at once."""
        self.assertEqual(self.find([False] * 10_000, 1)[1], [100, "look up"])

    def test_every_row_walked(self) -> None:
        """Fewer rows than the walk: what it found is the page, short or not."""
        self.assertEqual(self.find([i % 50 == 0 for i in range(80)], 1)[1], [100])


class PageOfTests(SynchronousTestCase):
    """index.page_of asks the index for a total only when the page does not say it."""

    def page(self, rows: list[dict], **search) -> tuple[index.Page, list[str]]:
        asked: list[str] = []

        class Index:
            def search(self, query: index.Search) -> list[dict]:
                asked.append("search")
                return rows if query.page_size == search.get("page_size", 2) else []

            def total(self, query: index.Search, bound: int) -> index.Total:
                asked.append("total")
                return index.Total(99, True)
        return index.page_of(Index(), index.Search(page_size=2, **search)), asked

    def test_a_short_page_says_the_total(self) -> None:
        """A short first page, or a short later one with rows, ends the
        rows found: its total is exact without asking."""
        row = {"path": "a.wav", "started_at": "2026-11-24T10:00:00.000Z", "duration_s": 1.0,
               "node": "n"}
        self.assertEqual(self.page([row]), (index.Page([row], index.Total(1, True), None),
                                            ["search"]))
        self.assertEqual(self.page([])[0].total, index.Total(0, True))
        self.assertEqual(self.page([row], page=3)[0].total, index.Total(5, True))

    def test_otherwise_the_index_is_asked(self) -> None:
        """An empty later page, or a page after a cursor, says nothing of
        the total: the index is asked."""
        self.assertEqual(self.page([], page=3), (index.Page([], index.Total(99, True), None),
                                                 ["search", "total"]))
        row = {"path": "a.wav", "started_at": "2026-11-24T10:00:00.000Z", "duration_s": 1.0,
               "node": "n"}
        after = index.cursor_of(row)
        self.assertEqual(self.page([row], after=after)[1], ["search", "total"])


class TotalTests:
    """A search's total: exact up to the bound asked for, and beyond it an
    estimate no smaller than the bound."""

    def setUp(self) -> None:
        # The estimate samples the newest WALK_FIRST rows: fewer than these tests have.
        self.patch(index, "WALK_FIRST", 20)

    def compare_at_most(self, rows: int) -> None:
        self.patch(index, "WALK_AT_MOST", rows)

    def test_exact_up_to_the_bound(self) -> None:
        """Up to the bound, the total is the number of recordings found,
        whatever the page asked for."""
        found_in = self.open_test_index()
        for i in range(7):
            _add(found_in, sidecar(str(i), remote_number="555" if i % 2 else "13800138000"))
        self.assertEqual(index.total(found_in, index.Search(), bound=10), index.Total(7, True))
        self.assertEqual(index.total(found_in, index.Search(number="555"), bound=10),
                         index.Total(3, True))
        self.assertEqual(index.total(found_in, index.Search(number="999"), bound=10),
                         index.Total(0, True))
        # A page or a cursor does not change what the search finds in all.
        self.assertEqual(index.total(found_in, index.Search(number="138", page=3, page_size=1),
                                     bound=10), index.Total(4, True))

    def test_within_the_bound_counted_beyond_the_sample(self) -> None:
        """A search with more rows in its time than the sample, whose
        estimate is within the bound, is counted exactly: by comparing every
        row of a short time, or through the text index."""
        found_in = self.open_test_index()
        for i in range(45):
            _add(found_in, sidecar(str(i), started_at=f"2026-11-{24 + i % 3}T10:{i:02}:00.000Z",
                                   remote_number="555" if i % 5 else "13800138000"))
        for compared_at_most in (None, 10):  # (10: through the text index)
            if compared_at_most is not None:
                self.compare_at_most(compared_at_most)
            for search, truth in ((index.Search(number="138"), 9),
                                  (index.Search(number="555", since="2026-11-24",
                                                until="2026-11-25"), 24),
                                  (index.Search(number="138", since="2026-11-26"), 3)):
                self.assertEqual(index.total(found_in, search, bound=40),
                                 index.Total(truth, True), (search, compared_at_most))

    def test_beyond_the_bound_an_estimate(self) -> None:
        """Past the bound, the total says it is not exact, and is at least
        the bound (close to the truth when the rows are alike)."""
        found_in = self.open_test_index()
        for i in range(40):
            _add(found_in, sidecar(str(i), started_at=f"2026-11-24T10:{i:02}:00.000Z",
                                   remote_number="555" if i % 4 else "13800138000"))
        for search, truth in ((index.Search(), 40), (index.Search(number="555"), 30)):
            total = index.total(found_in, search, bound=5)
            self.assertFalse(total.exact)
            self.assertGreater(total.count, 5)
            self.assertLessEqual(abs(total.count - truth), truth // 2, (search, total))


    def test_a_days_estimate_counts_that_day(self) -> None:
        """Past the bound, a search of one day (until: its end, the next
        midnight, exclusive) estimates from that day's recordings, not the
        next day's too."""
        found_in = self.open_test_index()
        for day in ("24", "25"):
            for i in range(40):
                _add(found_in, sidecar(f"{day}-{i}", started_at=f"2026-11-{day}T10:00:{i:02}.000Z"))
        for search in (index.Search(since="2026-11-24", until="2026-11-24"),
                       index.Search(since="2026-11-24", until="2026-11-25T00:00:00Z")):
            total = index.total(found_in, search, bound=5)
            self.assertFalse(total.exact)
            self.assertLessEqual(abs(total.count - 40), 4, (search, total))
        # An until within a day takes in that day's recordings before it.
        total = index.total(found_in, index.Search(since="2026-11-24",
                                                   until="2026-11-25T10:00:20Z"), bound=5)
        self.assertFalse(total.exact)
        self.assertGreater(total.count, 40)


class SearchValidationTests(SynchronousTestCase):
    def test_order_and_cursor_checked(self) -> None:
        """An order that is none of the four, or a cursor no search gave,
        is refused naming the field."""
        for kwargs, field in (({"order": "loudest"}, "order"), ({"after": "nonsense"}, "after"),
                              ({"after": "WyJ4IiwxLCJwIl0"}, "after")):
            with self.assertRaises(ValueError) as caught:
                index.Search(**kwargs)
            self.assertTrue(str(caught.exception).startswith(field + ":"), caught.exception)

    def test_cursor_round_trip(self) -> None:
        """A cursor gives back the row's start (in UTC), duration, path and
        node, for each order the columns it sorts by."""
        row = dict(sidecar("1", started_at="2026-11-24T11:00:00+01:00", duration_s=3),
                   path="d/é.wav", node="rec-b")
        cursor = index.cursor_of(row)
        self.assertEqual(index.order_key_of(cursor, "newest"),
                         ("2026-11-24T10:00:00.000Z", "d/é.wav", "rec-b"))
        self.assertEqual(index.order_key_of(cursor, "shortest"),
                         (3.0, "2026-11-24T10:00:00.000Z", "d/é.wav", "rec-b"))

    def test_hostile_cursors_refused_naming_after(self) -> None:
        """A cursor no search gave is a ValueError naming "after", whatever
        it holds: a duration too large for a float, NaN or Infinity (which
        JSON as Python reads it takes), a cursor without the node (an
        earlier recsvc's), or a node that is not text."""
        def cursor(text: str) -> str:
            return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

        start = '"2026-11-24T10:00:00.000Z"'
        for text in (f'[{start},1{"0" * 400},"p",""]', f'[{start},NaN,"p",""]',
                     f'[{start},Infinity,"p",""]', f'[{start},-Infinity,"p",""]',
                     f'[{start},1e999,"p",""]', f'[{start},1,"p"]', f'[{start},1,"p",7]',
                     f'[{start},1,"p","",""]'):
            for order in index.ORDERS:
                with self.assertRaises(ValueError) as caught:
                    index.Search(order=order, after=cursor(text))
                self.assertTrue(str(caught.exception).startswith("after: "), text)


class OrderAndCursorOnSqlite(OrderAndCursorTests, OnSqlite, SynchronousTestCase):
    pass


class TotalOnSqlite(TotalTests, OnSqlite, SynchronousTestCase):
    pass


class OrderAndCursorOnPostgres(OrderAndCursorTests, OnPostgres, SynchronousTestCase):
    pass


class TotalOnPostgres(TotalTests, OnPostgres, SynchronousTestCase):
    pass
