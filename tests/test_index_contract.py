"""The index contract: what every index (IIndex) does, whatever keeps it.
Each mixin runs once per backend (tests/support/indexes.py): SQLite and
PostgreSQL. What one backend alone does is tested beside it
(tests/test_index.py for SQLite, tests/test_index_postgres.py)."""

from __future__ import annotations

import json
import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from recsvc.devices import device_key
from recsvc.index import store as index
from recsvc.index.numberplan import NumberPlan
from recsvc.storage import folder
from tests.support.builders import sidecar
from tests.support.indexes import OnPostgres, OnSqlite
from tests.support.sidecars import SidecarRoot, sidecar_name


class IndexTestsMixin:
    def setUp(self) -> None:
        self.root = SidecarRoot(self.mktemp())
        os.makedirs(self.root.root)
        self.connection = self.open_test_index()

    def add(self, data: dict) -> None:
        index.add(self.connection, index.entry_from_sidecar(data, sidecar_name(data), 0))

    def ids(self, **kwargs) -> list[str]:
        return [row["id"] for row in index.search(self.connection, index.Search(**kwargs))]


class InterfaceTests:
    def test_provides_the_interface(self) -> None:
        """The backend's index provides IIndex, every method of it; a new
        one is at its backend's schema version, and empty."""
        found_in = self.open_test_index()
        self.assertTrue(verifyObject(index.IIndex, found_in))
        self.assertGreater(found_in.schema_version(), 0)
        self.assertEqual(found_in.indexed(), {})
        self.assertEqual(found_in.total(index.Search(), 10), index.Total(0, True))

    def test_totals_exact_to_the_bound(self) -> None:
        """A total is exact up to its bound; beyond it, exact or (not
        exact) an estimate beyond the bound."""
        found_in = self.open_test_index()
        for number in range(12):
            data = sidecar(str(number), remote_number="555" if number % 2 else "777")
            index.add(found_in, index.entry_from_sidecar(data, sidecar_name(data), 0))
        self.assertEqual(found_in.total(index.Search(), 12), index.Total(12, True))
        self.assertEqual(found_in.total(index.Search(number="555"), 10), index.Total(6, True))
        beyond = found_in.total(index.Search(), 5)
        self.assertTrue(beyond == index.Total(12, True)
                        or (not beyond.exact and beyond.count > 5), beyond)

    def test_search_all_is_read_as_used(self) -> None:
        """search_all gives every recording found, one state of the index,
        read as it is used; abandoned part way, it lets the index go on."""
        found_in = self.open_test_index()
        for number in range(5):
            data = sidecar(str(number), started_at=f"2026-11-24T10:00:0{number}.000Z")
            index.add(found_in, index.entry_from_sidecar(data, sidecar_name(data), 0))
        reading = index.search_all(found_in, index.Search())
        self.assertEqual(next(iter(reading))["id"], "4")
        del reading
        self.assertEqual([row["id"] for row in index.search_all(found_in, index.Search())],
                         ["4", "3", "2", "1", "0"])


class SearchTests(IndexTestsMixin):
    def setUp(self) -> None:
        super().setUp()
        self.add(sidecar("a", started_at="2026-11-23T23:59:59.999Z", remote_number="+86 138-0013-8000"))
        self.add(sidecar("b", started_at="2026-11-24T08:00:00.000Z", duration_s=5.0,
                         remote_name="Alice 100%", direction="in", stop_reason="connection lost"))
        self.add(sidecar("c", started_at="2026-11-25T00:00:00.000Z", local_number="2002",
                         remote_number="555", device="00-A8-59-00-00-02"))

    def test_newest_first(self) -> None:
        """A search without filters finds every recording, newest first."""
        self.assertEqual(self.ids(), ["c", "b", "a"])

    def test_within_devices_or_local_numbers(self) -> None:
        """A search within some devices or local numbers (a user's scope)
        finds only their recordings, with any other filter, by id, in its
        total and on every page; within nothing, nothing."""
        self.add(sidecar("d", started_at="2026-11-26T00:00:00.000Z", local_number="+49 2003",
                         device="00:a8:59:00:00:09"))
        within = dict(devices_within=frozenset({"00a859000002"}),
                      numbers_within=frozenset({"492003"}))
        self.assertEqual(self.ids(**within), ["d", "c"])
        self.assertEqual(self.ids(devices_within=frozenset({"00a859000001"})), ["b", "a"])
        self.assertEqual(self.ids(numbers_within=frozenset({"2001"})), ["b", "a"])
        self.assertEqual(self.ids(number="555", **within), ["c"])
        self.assertEqual(self.ids(number="138", **within), ["d"])
        self.assertEqual(self.ids(number="8613800", **within), [])
        self.assertEqual(self.ids(device="0009", **within), ["d"])
        self.assertEqual(self.ids(recording_id="a", **within), [])
        self.assertEqual(self.ids(recording_id="c", **within), ["c"])
        self.assertEqual(self.ids(page_size=1, page=2, **within), ["c"])
        self.assertEqual(self.ids(devices_within=frozenset(), numbers_within=frozenset()), [])
        self.assertEqual(self.ids(order="longest", **within), ["d", "c"])
        for query, count in ((index.Search(**within), 2), (index.Search(number="555", **within), 1),
                             (index.Search(devices_within=frozenset()), 0)):
            self.assertEqual(self.connection.total(query, 10), index.Total(count, True))
        # Beyond the bound, a scoped total says what it counted (at least the
        # bound), never an estimate from every recording's figures.
        self.patch(index, "WALK_FIRST", 1)
        for number in range(40):
            self.add(sidecar(f"other-{number}", started_at=f"2026-11-27T00:00:{number:02d}.000Z",
                             device="00:a8:59:00:00:77"))
        self.add(sidecar("e", started_at="2026-11-28T00:00:00.000Z", local_number="2003",
                         device="00:a8:59:00:00:02"))
        total = self.connection.total(index.Search(**within), 2)
        self.assertEqual(total, index.Total(3, False))
        self.patch(index, "WALK_FIRST", 0)  # (the text looked up, not walked)
        self.assertEqual(self.ids(number="555", **within), ["c"])
        self.assertEqual(self.ids(name="Desk", **within), ["e", "d", "c"])

    def test_number_digits_anywhere_either_side(self) -> None:
        """A number is searched by its digits, anywhere in the local or the
        remote number, whatever their spelling."""
        self.assertEqual(self.ids(number="138 0013 8000"), ["b", "a"])
        self.assertEqual(self.ids(number="8613800"), ["a"])
        self.assertEqual(self.ids(number="2002"), ["c"])
        self.assertEqual(self.ids(number="55"), ["c"])
        self.assertEqual(self.ids(number="999"), [])

    def test_number_in_either_form_with_a_plan(self) -> None:
        """With a numbering plan a national number finds its international
        form and the other way round; without one, only the digits typed."""
        self.add(sidecar("d", started_at="2026-11-26T00:00:00.000Z", remote_number="030 1234567"))
        self.add(sidecar("e", started_at="2026-11-27T00:00:00.000Z",
                         remote_number="+49 30 1234567"))
        self.add(sidecar("f", started_at="2026-11-28T00:00:00.000Z",
                         remote_number="0049301234567"))
        germany = NumberPlan("49", "0", "00")
        for typed in ("030 123", "+49 30 123", "0049 30 123"):
            self.assertEqual(self.ids(number=typed, plan=germany), ["f", "e", "d"], typed)
        self.assertEqual(self.ids(number="030 123"), ["d"])
        self.assertEqual(self.ids(number="+49 30 123"), ["f", "e"])
        # The other form is one more way to match, within the other filters.
        self.assertEqual(self.ids(number="030 123", plan=germany, since="2026-11-27"),
                         ["f", "e"])
        self.assertEqual(self.ids(number="+86 138", plan=germany), ["a"])

    def test_name_case_and_wildcards(self) -> None:
        """A name is found in any case, as part of the local or the remote
        name; "%" and "_" are literal characters, not wildcards."""
        self.assertEqual(self.ids(name="alice"), ["b"])
        self.assertEqual(self.ids(name="100%"), ["b"])
        self.assertEqual(self.ids(name="0%"), ["b"])
        self.assertEqual(self.ids(name="%"), ["b"])  # a literal percent sign
        self.assertEqual(self.ids(name="_"), [])
        self.assertEqual(self.ids(name="desk"), ["c", "b", "a"])

    def test_search_all_ignores_the_page(self) -> None:
        """search_all reads every match, newest first, beyond any page size."""
        for number in range(index.MAX_PAGE_SIZE + 10):
            self.add(sidecar(f"x{number}", started_at=f"2026-11-20T00:{number // 60:02}:"
                                                      f"{number % 60:02}.000Z"))
        found = [row["id"] for row in index.search_all(self.connection, index.Search())]
        self.assertEqual(len(found), index.MAX_PAGE_SIZE + 13)
        self.assertEqual(found[:3], ["c", "b", "a"])
        self.assertEqual(found[3], f"x{index.MAX_PAGE_SIZE + 9}")

    def test_device_not_a_mac_kept(self) -> None:
        """A device field that is no MAC is indexed as written (lower-cased),
        not cut down to its hex letters, and found by its text."""
        self.add(sidecar("d", device="SEP-Desk-7"))
        self.assertEqual(self.ids(device="desk-7"), ["d"])
        self.assertEqual(self.ids(device="SEP"), ["d"])
        self.assertEqual(self.ids(device="00a859"), ["c", "b", "a"])  # not "d"

    def test_device_any_separators(self) -> None:
        """A device is found by its MAC in any case and with any separators."""
        self.assertEqual(self.ids(device="00:a8:59:00:00:02"), ["c"])
        self.assertEqual(self.ids(device="00A859000001"), ["b", "a"])

    def test_date_range_takes_whole_days(self) -> None:
        """since and until as dates take in whole UTC days; as times with
        offsets, they compare in UTC."""
        self.assertEqual(self.ids(since="2026-11-24", until="2026-11-24"), ["b"])
        self.assertEqual(self.ids(until="2026-11-23"), ["a"])
        self.assertEqual(self.ids(since="2026-11-24T08:00:00Z"), ["c", "b"])
        self.assertEqual(self.ids(since="2026-11-24T09:00:00+01:00"), ["c", "b"])

    def test_days_of_another_zone(self) -> None:
        """A day in UTC+14 (as the page sends it: its start and the next
        day's start, with their offset) takes in what started from 10:00 UTC
        the day before, and not what started at its own UTC midnight."""
        self.assertEqual(self.ids(since="2026-11-24T00:00:00+14:00",
                                  until="2026-11-25T00:00:00+14:00"), ["b", "a"])
        self.assertEqual(self.ids(since="2026-11-25T00:00:00+14:00",
                                  until="2026-11-26T00:00:00+14:00"), ["c"])

    def test_other_fields(self) -> None:
        """Minimum duration, direction, stop reason and id filter the
        search, and filters combine."""
        self.assertEqual(self.ids(min_duration_s=10), ["c", "a"])
        self.assertEqual(self.ids(direction="in"), ["b"])
        self.assertEqual(self.ids(stop_reason="connection lost"), ["b"])
        self.assertEqual(self.ids(recording_id="a"), ["a"])
        self.assertEqual(self.ids(number="138", direction="out"), ["a"])

    def test_column_orders(self) -> None:
        """A search sorted by a column (the page's headings): by its value,
        reversed with "-", the newest first among equals, in pages with
        their exact total; beyond COLUMN_ORDER_AT_MOST, refused naming
        the order; no cursor (pages by number)."""
        def page(**kwargs) -> tuple[list[str], int, str | None]:
            found = index.page_of(self.connection, index.Search(**kwargs))
            return [row["id"] for row in found.rows], found.total.count, found.next
        # (By the digits, as text: 13800138000, 555, 8613800138000.)
        self.assertEqual(page(order="remote"), (["b", "c", "a"], 3, None))
        self.assertEqual(page(order="-remote"), (["a", "c", "b"], 3, None))
        self.assertEqual(page(order="local"), (["b", "a", "c"], 3, None))  # 2001, 2001, 2002
        self.assertEqual(page(order="-local"), (["c", "b", "a"], 3, None))
        self.assertEqual(page(order="direction", page_size=2, page=2), (["a"], 3, None))
        self.assertEqual(page(order="stop_reason", direction="out"), (["c", "a"], 2, None))
        self.assertEqual(page(order="device"), (["b", "a", "c"], 3, None))
        with self.assertRaises(ValueError) as raised:
            index.Search(order="path")
        self.assertIn("order:", str(raised.exception))
        with self.assertRaises(ValueError) as raised:
            index.Search(order="remote", after="x")
        self.assertIn("after:", str(raised.exception))
        self.patch(index, "COLUMN_ORDER_AT_MOST", 2)
        with self.assertRaises(index.TooManyToSort) as raised:
            index.page_of(self.connection, index.Search(order="remote"))
        self.assertIn("order: remote sorts a search of at most 2", str(raised.exception))

    def test_pages(self) -> None:
        """Results come in pages of page_size; a page past the last is
        empty."""
        self.assertEqual(self.ids(page_size=2), ["c", "b"])
        self.assertEqual(self.ids(page_size=2, page=2), ["a"])
        self.assertEqual(self.ids(page_size=2, page=3), [])

    def test_rows_are_the_sidecars_with_their_path(self) -> None:
        """A found row is the sidecar's fields with the WAV's path relative
        to the root."""
        [row] = index.search(self.connection, index.Search(recording_id="b"))
        self.assertEqual(row.pop("path"), "d/" + sidecar("b")["file"])
        self.assertEqual(row["remote_name"], "Alice 100%")

    def test_a_rows_node_is_the_sidecars_or_the_indexing_nodes(self) -> None:
        """A row's node is its sidecar's; a sidecar that names none (from
        before nodes had names) is given the node that indexed it (the one
        this index was opened for), in a page as in search_all."""
        self.add(sidecar("old"))  # (the builder's sidecars name no node)
        self.add(sidecar("named", node="rec-z"))
        for search in (index.search, index.search_all):
            nodes = {row["id"]: row.get("node")
                     for row in search(self.connection, index.Search())}
            self.assertEqual((nodes["old"], nodes["named"]), ("node-a", "rec-z"))

    def test_indexed_again_replaces(self) -> None:
        """A recording indexed again replaces its row rather than adding a
        second one."""
        self.add(sidecar("b", duration_s=99.0))
        [row] = index.search(self.connection, index.Search(recording_id="b"))
        self.assertEqual(row["duration_s"], 99.0)
        self.assertEqual(len(index.search(self.connection, index.Search())), 3)


class CatchUpTests(IndexTestsMixin):
    def test_adds_new_forgets_gone_keeps_unchanged(self) -> None:
        """Catching up adds new sidecars, forgets those gone from disk and
        leaves the unchanged ones, counting each."""
        first = self.root.write(sidecar("1"))
        self.root.write(sidecar("2"), folder="00a859000002/2026/11/24")
        done = index.catch_up(self.connection, self.root.root)
        self.assertEqual((done.added, done.removed, done.unchanged, done.skipped), (2, 0, 0, ()))
        self.assertEqual(sorted(self.ids()), ["1", "2"])
        os.unlink(first)
        self.root.write(sidecar("3"))
        done = index.catch_up(self.connection, self.root.root)
        self.assertEqual((done.added, done.removed, done.unchanged), (1, 1, 1))
        self.assertEqual(sorted(self.ids()), ["2", "3"])

    def test_changed_sidecar_read_again(self) -> None:
        """A sidecar whose modification time changed is read again and its
        row updated."""
        path = self.root.write(sidecar("1", duration_s=1.0))
        index.catch_up(self.connection, self.root.root)
        self.root.write(sidecar("1", duration_s=2.0))
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        done = index.catch_up(self.connection, self.root.root)
        self.assertEqual(done.added, 1)
        [row] = index.search(self.connection, index.Search())
        self.assertEqual(row["duration_s"], 2.0)

    def test_full_reads_every_sidecar(self) -> None:
        """A full catch-up reads every sidecar again, unchanged ones
        included."""
        self.root.write(sidecar("1"))
        index.catch_up(self.connection, self.root.root)
        done = index.catch_up(self.connection, self.root.root, full=True)
        self.assertEqual((done.added, done.unchanged), (1, 0))

    def test_a_root_that_cannot_be_listed_forgets_nothing(self) -> None:
        """A storage root that cannot be listed (gone, or one this user may
        not read) raises its OSError, and nothing is forgotten."""
        self.root.write(sidecar("1"))
        index.catch_up(self.connection, self.root.root)
        real = os.path.abspath(self.root.root)
        scandir = os.scandir

        def refused(path: str):
            if os.path.abspath(path) == real:
                raise PermissionError(13, "Permission denied", path)
            return scandir(path)

        os.rename(real, real + ".moved")
        self.assertRaises(FileNotFoundError, index.catch_up, self.connection, self.root.root,
                          full=True)
        self.assertEqual(self.ids(), ["1"])
        os.rename(real + ".moved", real)
        self.patch(folder.os, "scandir", refused)
        self.assertRaises(PermissionError, index.catch_up, self.connection, self.root.root)
        self.assertEqual(self.ids(), ["1"])

    def test_no_sidecar_at_all_forgets_nothing(self) -> None:
        """A root without a sidecar that can be indexed (a disk not
        mounted: the service made an empty root; sidecars this user may
        not read), while the index holds the node's recordings, forgets
        none of them and says why; once one is there again, those gone
        are forgotten."""
        self.root.write(sidecar("1"))
        self.root.write(sidecar("2"), folder="00a859000002/2026/11/24")
        index.catch_up(self.connection, self.root.root)
        real = os.path.abspath(self.root.root)
        os.rename(real, real + ".unmounted")
        os.makedirs(real)
        for full in (False, True):
            done = index.catch_up(self.connection, self.root.root, full=full)
            self.assertEqual((done.added, done.removed), (0, 0))
            self.assertIn("kept", done.kept)
            self.assertEqual(sorted(self.ids()), ["1", "2"])
        with open(os.path.join(real, "unreadable.json"), "w") as handle:
            handle.write("{")
        done = index.catch_up(self.connection, self.root.root)
        self.assertEqual((done.removed, len(done.skipped)), (0, 1))
        self.assertIsNotNone(done.kept)
        os.unlink(os.path.join(real, "unreadable.json"))
        self.root.write(sidecar("3"))
        done = index.catch_up(self.connection, self.root.root)
        self.assertEqual((done.added, done.removed, done.kept), (1, 2, None))
        self.assertEqual(self.ids(), ["3"])

    def test_unreadable_skipped_with_reason_unfinished_left_alone(self) -> None:
        """Sidecars that are not JSON or not indexable are skipped and named
        with the reason; unfinished ones are left alone, not reported."""
        self.root.write(sidecar("1"))
        self.root.write(sidecar("2", status="recording"))
        bad = os.path.join(self.root.root, "00a859000001", "broken.json")
        with open(bad, "w") as handle:
            handle.write("{not json")
        with open(os.path.join(self.root.root, "00a859000001", "escape.json"), "w") as handle:
            json.dump(sidecar("3", file="../../escape.wav"), handle)
        done = index.catch_up(self.connection, self.root.root)
        self.assertEqual(self.ids(), ["1"])
        reasons = dict(done.skipped)
        self.assertEqual(sorted(reasons), ["00a859000001/broken.json", "00a859000001/escape.json"])
        self.assertIn("not JSON", reasons["00a859000001/broken.json"])
        self.assertIn("file:", reasons["00a859000001/escape.json"])


class SymbolicLinkTests(IndexTestsMixin):
    """The index never follows a symbolic link below the storage root: a
    sidecar that is a link (to a JSON file outside, which the API would then
    show) gets no row, and is named among the skipped."""

    def outside(self, data: dict) -> str:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "elsewhere.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        return path

    def test_linked_sidecar_not_indexed(self) -> None:
        """catch_up, as at start-up and in `recsvc reindex`."""
        self.root.write(sidecar("1"))
        link = os.path.join(self.root.root, sidecar_name(sidecar("2")))
        os.makedirs(os.path.dirname(link))
        os.symlink(self.outside(sidecar("2")), link)
        for full in (False, True):
            done = index.catch_up(self.connection, self.root.root, full=full)
            self.assertEqual(self.ids(), ["1"])
            [(path, reason)] = done.skipped
            self.assertEqual(path, sidecar_name(sidecar("2")))
            self.assertIn("symbolic link", reason)

    def test_linked_folder_not_walked(self) -> None:
        """A folder that is a link is not walked into."""
        target = self.outside(sidecar("2"))
        os.rename(target, os.path.join(os.path.dirname(target), sidecar("2")["file"][:-4] + ".json"))
        os.symlink(os.path.dirname(target), os.path.join(self.root.root, "d"))
        done = index.catch_up(self.connection, self.root.root)
        self.assertEqual(self.ids(), [])
        self.assertEqual([path for path, _ in done.skipped], ["d"])

    def test_linked_sidecar_finished_not_added(self) -> None:
        """add_sidecar, as when a file is finished, refuses a link."""
        link = os.path.join(self.root.root, sidecar_name(sidecar("2")))
        os.makedirs(os.path.dirname(link))
        os.symlink(self.outside(sidecar("2")), link)
        self.assertRaises(OSError, index.add_sidecar, self.connection, self.root.root, link)
        self.assertEqual(self.ids(), [])


# (The hypothesis tests below run in one test case per backend, each the
# same derandomized examples: hypothesis's check that a test runs in one
# "executor" is suppressed for them.)
# (Upper-case letters beyond ASCII too: found as written, never by their
# lower case, whatever the backend's text index folds.)
_NAME_LETTERS = "abcAB C%_\"'-.:09üÜéÉ"


class TextIndexTests:
    """Numbers, names and devices are found through the backend's trigram
    index exactly as a scan of every row finds them, in every page."""

    def setUp(self) -> None:
        self.connection = self.open_test_index()

    def empty(self) -> None:
        """No recordings (hypothesis runs a test many times on one index)."""
        self.connection.remove(list(self.connection.indexed()))

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.differing_executors])
    @given(rows=st.lists(st.tuples(
               st.text("0123456789", max_size=12), st.text(_NAME_LETTERS, max_size=10),
               st.text(_NAME_LETTERS, max_size=10),
               st.text("0123456789abcdefABCDEF:-.", max_size=17)), max_size=12),
           number=st.text("0123456789", min_size=1, max_size=6),
           name=st.text(_NAME_LETTERS, min_size=1, max_size=5),
           device=st.text("0123456789abcdef:-", min_size=1, max_size=8),
           walk=st.sampled_from([0, 3, index.WALK_FIRST]))
    def test_found_as_a_scan_finds(self, rows, number, name, device, walk) -> None:
        """Whatever the rows hold and the search asks (quotes, % and _,
        separators, text of any length), the index finds the rows a scan
        of every row finds, and no other (ASCII letters in any case; a
        letter beyond ASCII as it is written); on SQLite, compared as the
        walk reads them, or looked up (none walked, or a few)."""
        self.patch(index, "WALK_FIRST", walk)
        self.empty()
        for number_of_row, (remote, local_name, remote_name, mac) in enumerate(rows):
            data = sidecar(str(number_of_row), remote_number=remote, local_name=local_name,
                           remote_name=remote_name, device=mac)
            index.add(self.connection, index.entry_from_sidecar(
                data, sidecar_name(data), 0))

        def ascii_lower(text: str) -> str:
            return "".join(c.lower() if c.isascii() else c for c in text)

        def found(**search) -> list[str]:
            if "device" in search and not re.search("[0-9a-f]", search["device"]):
                return []
            try:
                query = index.Search(page_size=index.MAX_PAGE_SIZE, **search)
            except ValueError:
                return []
            return sorted(row["id"] for row in index.search(self.connection, query))

        def scanned(test) -> list[str]:
            return sorted(str(i) for i, row in enumerate(rows) if test(*row))

        self.assertEqual(found(number=number), scanned(
            lambda remote, *_: number in "2001 " + remote))
        self.assertEqual(found(name=name), scanned(
            lambda _, local, remote, __: any(
                ascii_lower(name) in ascii_lower(text) for text in (local, remote))))
        key = index.device_search_key(device)
        # (A device without a hex digit is no search: Search refuses it.)
        self.assertEqual(found(device=device), scanned(
            lambda *row: re.search("[0-9a-f]", key) is not None
            and key in re.sub("[:.-]", "", device_key(row[3]).lower())))

    def test_letters_beyond_ascii_as_written(self) -> None:
        """A letter beyond ASCII is found as it is written, never by another
        case of it (as ASCII letters are), whether the rows are compared as
        read or looked up in the text index: "émile" does not find
        "Émile Zola", "ÉMILE" and "ZOLA" do."""
        data = sidecar("x1", remote_name="Émile Zola")
        index.add(self.connection, index.entry_from_sidecar(data, sidecar_name(data), 0))
        for walk in (0, index.WALK_FIRST):
            self.patch(index, "WALK_FIRST", walk)
            for name, expected in (("émile", []), ("éMILE", []), ("ÉMILE", ["x1"]),
                                   ("ZOLA", ["x1"]), ("mile z", ["x1"])):
                found = [row["id"] for row in index.search(self.connection,
                                                           index.Search(name=name))]
                self.assertEqual(found, expected, (name, walk))

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.differing_executors])
    @given(rows=st.lists(st.tuples(
               st.sampled_from(["13800138000", "13900000000", "555"]),
               st.sampled_from(["2026-11-24T10:00:00.000Z", "2026-11-24T11:00:00.000Z",
                                "2026-11-25T09:00:00.000Z"])), max_size=14),
           number=st.sampled_from(["138", "139", "555", "000"]),
           newest=st.integers(0, 6), page_size=st.integers(1, 4),
           until=st.sampled_from([None, "2026-11-24T10:30:00Z", "2026-11-24"]))
    def test_pages_whether_the_newest_rows_hold_them_or_not(
            self, rows, number, newest, page_size, until) -> None:
        """Every page is the one the order gives, whether the newest rows
        (of the time asked for) read first hold it, ties of start time at
        their edge included, or the text index is asked."""
        self.patch(index, "WALK_FIRST", newest)
        self.empty()
        for number_of_row, (remote, started_at) in enumerate(rows):
            data = sidecar(str(number_of_row), remote_number=remote, started_at=started_at)
            index.add(self.connection, index.entry_from_sidecar(data, sidecar_name(data), 0))
        ordered = sorted(
            ((started_at, "d/" + sidecar(str(i))["file"], str(i))
             for i, (remote, started_at) in enumerate(rows) if number in "2001 " + remote
             and (until is None or started_at < index.parse_time(until, end_of_day=True))),
            key=lambda row: (_reversed(row[0]), row[1]))
        expected = [row[2] for row in ordered]
        for page in range(1, len(expected) // page_size + 2):
            found = index.search(self.connection, index.Search(
                number=number, page=page, page_size=page_size, until=until))
            self.assertEqual([row["id"] for row in found],
                             expected[(page - 1) * page_size:page * page_size])


def _reversed(text: str) -> tuple[int, ...]:
    """A key that sorts ``text`` (an ISO time) newest first."""
    return tuple(-ord(character) for character in text)



# Each part of the contract once per backend.
class InterfaceOnSqlite(InterfaceTests, OnSqlite, SynchronousTestCase):
    pass


class InterfaceOnPostgres(InterfaceTests, OnPostgres, SynchronousTestCase):
    pass


class SearchOnSqlite(SearchTests, OnSqlite, SynchronousTestCase):
    pass


class SearchOnPostgres(SearchTests, OnPostgres, SynchronousTestCase):
    pass


class CatchUpOnSqlite(CatchUpTests, OnSqlite, SynchronousTestCase):
    pass


class CatchUpOnPostgres(CatchUpTests, OnPostgres, SynchronousTestCase):
    pass


class SymbolicLinkOnSqlite(SymbolicLinkTests, OnSqlite, SynchronousTestCase):
    pass


class SymbolicLinkOnPostgres(SymbolicLinkTests, OnPostgres, SynchronousTestCase):
    pass


class TextIndexOnSqlite(TextIndexTests, OnSqlite, SynchronousTestCase):
    pass


class TextIndexOnPostgres(TextIndexTests, OnPostgres, SynchronousTestCase):
    pass
