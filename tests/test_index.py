"""Tests for recsvc.index.store (the entries sidecars make, times, what a
search may ask), for what the SQLite index alone does (its file, its
schema's migrations, its plans) and for the ``recsvc`` commands that use
it. What every index does is tests/test_index_contract.py's."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from recsvc.index import sqlite as sqlite_index
from recsvc.index import store as index
from recsvc.index.sqlite import SqliteIndex
from recsvc.cli.commands import main
from recsvc.storage import folder
from tests.support.builders import sidecar
from tests.support.sidecars import SidecarRoot, sidecar_name



class EntryTests(SynchronousTestCase):
    def test_entry_from_finished_sidecar(self) -> None:
        """A finished sidecar becomes an entry with its WAV's path beside
        it, its device, id, duration and mtime, and the sidecar kept whole."""
        entry = index.entry_from_sidecar(sidecar(), sidecar_name(sidecar(), "dev/2026"), 5)
        self.assertEqual(entry.path, "dev/2026/20261124T100000Z_out_13800138000_7.wav")
        self.assertEqual(entry.device, "00a859000001")
        self.assertEqual((entry.recording_id, entry.duration_s, entry.sidecar_mtime_ns),
                         ("7", 60.0, 5))
        self.assertEqual(json.loads(entry.sidecar), sidecar())

    def test_sidecar_without_audio_indexed(self) -> None:
        """The sidecar of a recording that received no RTP names no file:
        it is indexed under the name its WAV would have had, its row saying
        no file and why."""
        data = sidecar(file=None, stop_reason="no RTP received", duration_s=0.0)
        relpath = "dev/2026/20261124T100000Z_out_13800138000_7.json"
        entry = index.entry_from_sidecar(data, relpath, 5)
        self.assertEqual((entry.path, entry.stop_reason),
                         ("dev/2026/20261124T100000Z_out_13800138000_7.wav", "no RTP received"))
        self.assertIsNone(json.loads(entry.sidecar)["file"])
        with self.assertRaises(index.NotIndexable):
            index.entry_from_sidecar({k: v for k, v in data.items() if k != "file"}, relpath, 5)

    def test_start_time_kept_in_utc(self) -> None:
        """A start time with an offset is kept as UTC, as searches compare it."""
        entry = index.entry_from_sidecar(sidecar(started_at="2026-11-24T10:00:00+01:00"),
                                         sidecar_name(sidecar()), 0)
        self.assertEqual(entry.started_at, "2026-11-24T09:00:00.000Z")

    def test_unfinished_sidecar(self) -> None:
        """A sidecar still recording is not indexed: NotFinished."""
        with self.assertRaises(index.NotFinished):
            index.entry_from_sidecar(sidecar(status="recording"), "x.json", 0)

    def test_bad_sidecars_say_which_field(self) -> None:
        """A sidecar with a bad field (a file outside its folder or not its
        own WAV, a bad time, duration, id or number) is refused naming that
        field; a sidecar that is not an object is refused too."""
        for data, field in [
            (sidecar(file="../../etc/passwd.wav"), "file"),
            (sidecar(file="x.mp3"), "file"),
            (sidecar(file=".hidden.wav"), "file"),
            (sidecar(file="20261124T100000Z_out_13800138000_8.wav"), "file"),  # a neighbour's
            (sidecar(started_at="yesterday"), "started_at"),
            (sidecar(duration_s="long"), "duration_s"),
            (sidecar(duration_s=-1), "duration_s"),
            (sidecar(id=""), "id"),
            (sidecar(remote_number=138), "remote_number"),
        ]:
            with self.assertRaises(index.NotIndexable) as caught:
                index.entry_from_sidecar(data, sidecar_name(sidecar()), 0)
            self.assertTrue(str(caught.exception).startswith(field + ":"), str(caught.exception))
        with self.assertRaises(index.NotIndexable):
            index.entry_from_sidecar([], "x.json", 0)


class NodeEntryTests(SynchronousTestCase):
    def test_the_entry_keeps_the_node(self) -> None:
        """The entry keeps the node its sidecar names; a sidecar without
        one (an earlier recsvc's) has none; one that is not text is refused."""
        entry = index.entry_from_sidecar(sidecar("a", node="rec-a"), sidecar_name(sidecar("a")), 0)
        self.assertEqual(entry.node, "rec-a")
        self.assertEqual(index.entry_from_sidecar(sidecar("a"), sidecar_name(sidecar("a")), 0).node, "")
        with self.assertRaises(index.NotIndexable) as caught:
            index.entry_from_sidecar(sidecar("a", node=5), sidecar_name(sidecar("a")), 0)
        self.assertIn("node", str(caught.exception))


class TimeTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """A date, a date and time, and a time in UTC or with an offset are
        each read as UTC; a date taken to its end of day is the next
        midnight, across a year's end."""
        self.assertEqual(index.parse_time("2026-11-24"), "2026-11-24T00:00:00.000Z")
        self.assertEqual(index.parse_time("2026-11-24", end_of_day=True), "2026-11-25T00:00:00.000Z")
        self.assertEqual(index.parse_time("2026-11-24T10:30"), "2026-11-24T10:30:00.000Z")
        self.assertEqual(index.parse_time("2026-11-24T10:30:05Z"), "2026-11-24T10:30:05.000Z")
        self.assertEqual(index.parse_time("2026-11-24T10:30:05+01:00"), "2026-11-24T09:30:05.000Z")
        self.assertEqual(index.parse_time("2026-12-31", end_of_day=True), "2027-01-01T00:00:00.000Z")

    def test_times_with_offsets(self) -> None:
        """Full ISO 8601 times with offsets, as the page sends the start and
        end of a day in its time zone, are compared in UTC; a date alone is
        a UTC day in any of its ISO spellings; an offset whose "+" a URL
        query turned into a space is still read as one."""
        self.assertEqual(index.parse_time("2026-12-07T00:00:00+14:00"), "2026-12-06T10:00:00.000Z")
        self.assertEqual(index.parse_time("2026-12-07T00:00:00.000-05:30"),
                         "2026-12-07T05:30:00.000Z")
        self.assertEqual(index.parse_time("2026-12-08T00:00:00+14:00", end_of_day=True),
                         "2026-12-07T10:00:00.000Z")
        self.assertEqual(index.parse_time("2026-12-07T00:00:00 14:00"), "2026-12-06T10:00:00.000Z")
        self.assertEqual(index.parse_time("2026-12-07T00:00 1400"), "2026-12-06T10:00:00.000Z")
        self.assertEqual(index.parse_time("20261207", end_of_day=True), "2026-12-08T00:00:00.000Z")
        self.assertEqual(index.parse_time("2026-12-07 14:00"), "2026-12-07T14:00:00.000Z")

    def test_not_times(self) -> None:
        """Empty text, impossible dates and times, other date orders, words
        and trailing junk are ValueErrors."""
        for text in ("", "2026-13-01", "24.11.2026", "last tuesday", "2026-11-24T25:00",
                     "2026-12-07T00:00 99:00", "2026-12-07 14:00x"):
            self.assertRaises(ValueError, index.parse_time, text)

    def test_beyond_the_calendar_is_a_value_error(self) -> None:
        """A day or time that only overflows once taken to UTC or to the end
        of its day (the day after 9999-12-31, year 1 at +14:00) is a
        ValueError saying so, as a bad date is, not an OverflowError (a 500
        from the API, a traceback from the CLI)."""
        for text, end_of_day in [("9999-12-31", True), ("0001-01-01T00:00+14:00", False),
                                 ("9999-12-31T23:00-05:00", False)]:
            with self.assertRaises(ValueError) as caught:
                index.parse_time(text, end_of_day=end_of_day)
            self.assertIn("outside the years 0001 to 9999", str(caught.exception))
            self.assertEqual("to the end of its day" in str(caught.exception), end_of_day)
        self.assertEqual(index.parse_time("9999-12-31"), "9999-12-31T00:00:00.000Z")

    def test_years_before_1000_keep_four_digits(self) -> None:
        """The index compares these strings: year 999 is "0999", before
        "2026", not "999" (which sorts after it)."""
        self.assertEqual(index.parse_time("0999-01-01"), "0999-01-01T00:00:00.000Z")
        self.assertEqual(index.parse_time("0001-01-01T10:00+09:00"), "0001-01-01T01:00:00.000Z")
        self.assertLess(index.parse_time("0999-01-01"), index.parse_time("2026-01-01"))


class SearchValidationTests(SynchronousTestCase):
    def test_bad_searches_name_the_field(self) -> None:
        """A search with a bad number, device, direction, time, duration,
        page or page size is refused naming that field."""
        for kwargs, field in [
            ({"number": "abc"}, "number"), ({"device": "xyz"}, "device"),
            ({"direction": "sideways"}, "direction"), ({"since": "soon"}, "since"),
            ({"until": "2026-02-30"}, "until"), ({"until": "9999-12-31"}, "until"),
            ({"min_duration_s": -1.0}, "min_duration_s"),
            ({"min_duration_s": float("nan")}, "min_duration_s"),
            ({"page": 0}, "page"), ({"page_size": 501}, "page_size"),
        ]:
            with self.assertRaises(ValueError) as caught:
                index.Search(**kwargs)
            self.assertTrue(str(caught.exception).startswith(field + ":"), str(caught.exception))


class SqliteIndexTests(SynchronousTestCase):
    """What the SQLite index alone does with its file."""

    def setUp(self) -> None:
        self.database = os.path.join(self.mktemp(), "sub", "index.sqlite3")
        self.connection = SqliteIndex.open(self.database)
        self.addCleanup(self.connection.close)

    def test_wal_mode_in_a_new_folder(self) -> None:
        """A new index, in a folder that did not exist, is made in WAL mode."""
        mode = self.connection.sqlite.execute("PRAGMA journal_mode").fetchone()[0]
        self.assertEqual(mode, "wal")

    def test_device_not_a_mac_kept(self) -> None:
        """A device field that is no MAC is stored as written, lower-cased,
        not cut down to its hex letters."""
        data = sidecar("d", device="SEP-Desk-7")
        index.add(self.connection, index.entry_from_sidecar(data, sidecar_name(data), 0))
        [(stored,)] = self.connection.sqlite.execute(
            "SELECT device FROM recordings WHERE recording_id = 'd'").fetchall()
        self.assertEqual(stored, "sep-desk-7")

    def test_opened_without_a_node_an_old_sidecar_names_none(self) -> None:
        """Opened without a node's name, the index gives a sidecar that
        names no node as it is (without one); opened read-only for a node,
        as that node's."""
        data = sidecar("old")
        index.add(self.connection, index.entry_from_sidecar(data, sidecar_name(data), 0))
        [row] = index.search(self.connection, index.Search())
        self.assertNotIn("node", row)
        reading = SqliteIndex.open(self.database, read_only=True, node="rec-a")
        self.addCleanup(reading.close)
        [row] = index.search(reading, index.Search())
        self.assertEqual(row["node"], "rec-a")

    def test_schema_of_a_newer_version_refused(self) -> None:
        """An index of a newer schema version (a later recsvc's) is refused,
        opened to write or to read, with an error that says what to do."""
        self.connection.sqlite.execute("UPDATE schema_version SET version = 99")
        self.connection.sqlite.commit()
        for read_only in (False, True):
            with self.assertRaises(sqlite3.DatabaseError) as caught:
                SqliteIndex.open(self.database, read_only=read_only)
            self.assertIn("version 99, newer", str(caught.exception))
            self.assertIn("reindex", str(caught.exception))


# The schema of version 1, as recsvc made it before the node column: an
# index it left must be migrated in place, keeping its rows.
_VERSION_1 = """
CREATE TABLE recordings (
    path TEXT PRIMARY KEY, recording_id TEXT NOT NULL, device TEXT NOT NULL,
    direction TEXT NOT NULL, local_number TEXT NOT NULL, local_name TEXT NOT NULL,
    remote_number TEXT NOT NULL, remote_name TEXT NOT NULL, numbers TEXT NOT NULL,
    started_at TEXT NOT NULL, duration_s REAL NOT NULL, stop_reason TEXT NOT NULL,
    sidecar TEXT NOT NULL, sidecar_mtime_ns INTEGER NOT NULL
);
CREATE INDEX recordings_by_start ON recordings (started_at DESC, path);
CREATE INDEX recordings_by_id ON recordings (recording_id);
PRAGMA user_version=1;
"""


class MigrationTests(SynchronousTestCase):
    """An index made by an earlier recsvc is brought to this schema in place."""

    def setUp(self) -> None:
        self.database = os.path.join(self.mktemp(), "index.sqlite3")
        os.makedirs(os.path.dirname(self.database))

    def version_1_index(self) -> None:
        """An index as version 1 left it: a recording with a node in its
        sidecar (as a later recsvc writes them) and one without."""
        old = sqlite3.connect(self.database)
        old.executescript(_VERSION_1)
        for data, mtime in ((sidecar("a", node="rec-a"), 11), (sidecar("b"), 12)):
            old.execute("INSERT INTO recordings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (sidecar_name(data)[:-5] + ".wav", data["id"], "00a859000001", "out",
                         "2001", "Desk", "13800138000", "Bob", "2001 13800138000",
                         data["started_at"], 60.0, "hangup", json.dumps(data), mtime))
        old.commit()
        old.close()

    def test_a_new_index_is_made_at_this_version(self) -> None:
        """A new index has this recsvc's schema, its version in the
        schema_version table."""
        connection = SqliteIndex.open(self.database)
        self.addCleanup(connection.close)
        self.assertEqual(connection.schema_version(), sqlite_index.SCHEMA_VERSION)
        self.assertEqual(connection.sqlite.execute("SELECT version FROM schema_version").fetchall(),
                         [(sqlite_index.SCHEMA_VERSION,)])

    def test_version_1_migrated_in_place(self) -> None:
        """Opening a version 1 index migrates it: its rows stay (nothing to
        reindex: catching up finds them unchanged), each gets the node its
        sidecar names, or none, and is found through the text index."""
        self.version_1_index()
        connection = SqliteIndex.open(self.database)
        self.addCleanup(connection.close)
        self.assertEqual(connection.schema_version(), sqlite_index.SCHEMA_VERSION)
        rows = connection.sqlite.execute(
            "SELECT recording_id, node, sidecar_mtime_ns FROM recordings ORDER BY recording_id")
        self.assertEqual(rows.fetchall(), [("a", "rec-a", 11), ("b", "", 12)])
        found = index.search(connection, index.Search(number="138"))
        self.assertEqual(sorted(row["id"] for row in found), ["a", "b"])
        # Version 4's tables, filled from the rows: the devices seen, the
        # recordings of each day.
        self.assertEqual(connection.sqlite.execute("SELECT device FROM devices").fetchall(),
                         [("00a859000001",)])
        self.assertEqual(connection.sqlite.execute(
            "SELECT day, count FROM recordings_per_day").fetchall(), [("2026-11-24", 2)])
        found = index.search(connection, index.Search(device="a859000001", order="longest"))
        self.assertEqual(len(found), 2)
        # Opened again: already migrated, left as it is.
        SqliteIndex.open(self.database).close()
        self.assertEqual(connection.schema_version(), sqlite_index.SCHEMA_VERSION)

    def test_read_only_open_of_an_older_index_says_how(self) -> None:
        """A read-only connection (recsvc search) cannot migrate: it says
        that the service or recsvc reindex will."""
        self.version_1_index()
        with self.assertRaises(sqlite3.DatabaseError) as caught:
            SqliteIndex.open(self.database, read_only=True)
        self.assertIn("migrated in place", str(caught.exception))

    def test_a_failed_migration_changes_nothing(self) -> None:
        """A migration that fails part way leaves the index as it was (one
        transaction), to be tried again at the next opening."""
        self.version_1_index()
        last = sqlite_index.SCHEMA_VERSION  # the earlier steps have run when it fails
        self.patch(sqlite_index, "_MIGRATIONS", {
            **sqlite_index._MIGRATIONS, last: sqlite_index._MIGRATIONS[last] + ("NOT SQL",)})
        self.assertRaises(sqlite3.OperationalError, SqliteIndex.open, self.database)
        old = sqlite3.connect(self.database)
        self.addCleanup(old.close)
        self.assertEqual(sqlite_index.schema_version(old), 1)
        columns = [row[1] for row in old.execute("PRAGMA table_info(recordings)")]
        self.assertNotIn("node", columns)


class CommandTests(SynchronousTestCase):
    """The ``recsvc`` commands, on a config file naming a root and an index."""

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        self.root = SidecarRoot(os.path.join(base, "recordings"))
        os.makedirs(self.root.root)
        self.database = os.path.join(base, "var", "index.sqlite3")
        self.config = os.path.join(base, "recsvc.yaml")
        with open(self.config, "w") as handle:
            handle.write(f"storage:\n  root: {self.root.root}\nindex:\n  database: {self.database}\n")

    def run_command(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["--config", self.config, *argv])
        return status, out.getvalue(), err.getvalue()

    def test_search_without_index_says_so(self) -> None:
        """`recsvc search` without an index fails saying there is none, and
        makes none."""
        status, _, err = self.run_command("search", "--number", "138")
        self.assertEqual(status, 1)
        self.assertIn("no index at", err)
        self.assertFalse(os.path.exists(self.database))

    def test_reindex_then_find(self) -> None:
        """`recsvc reindex` indexes the sidecars under the root; `search`
        then finds them (as text naming the node and ending in the file, or
        as JSON with full paths) and `show` shows one by id."""
        self.root.write(sidecar("1", remote_number="13800138000", node="rec-b"))
        self.root.write(sidecar("2", remote_number="555", direction="in"))
        status, out, _ = self.run_command("reindex")
        self.assertEqual(status, 0)
        self.assertIn("2 recordings indexed", out)
        status, out, _ = self.run_command("search", "--number", "138 0013 8000")
        self.assertEqual(status, 0)
        [line] = out.splitlines()
        self.assertIn("13800138000", line)
        self.assertIn("  rec-b  ", line)  # the node that recorded it
        self.assertTrue(line.endswith(sidecar("1")["file"]), line)
        status, out, _ = self.run_command("search", "--direction", "in", "--json")
        [row] = json.loads(out)["recordings"]
        self.assertEqual(row["id"], "2")
        self.assertTrue(os.path.exists(row["path"]))  # the full path, as the text shows
        status, out, _ = self.run_command("show", "1")
        [shown] = json.loads(out)
        self.assertEqual(shown["id"], "1")
        self.assertTrue(os.path.exists(shown["path"]))

    def test_recording_without_audio_shown_without_path(self) -> None:
        """A recording that received no RTP (a sidecar naming no file) is
        found, with no path: ``-`` in the text, null in JSON, an empty
        cell in the export."""
        data = sidecar("1", stop_reason="no RTP received", duration_s=0.0)
        self.root.write(data)
        wav = os.path.join(self.root.root, "00a859000001/2026/11/24", data["file"])
        os.unlink(wav)
        with open(os.path.splitext(wav)[0] + ".json", "w", encoding="utf-8") as handle:
            json.dump(dict(data, file=None), handle)
        self.assertEqual(self.run_command("reindex")[0], 0)
        status, out, _ = self.run_command("search", "--number", "138")
        self.assertEqual((status, out.split()[-2:]), (0, ["1", "-"]))
        [shown] = json.loads(self.run_command("show", "1")[1])
        self.assertEqual((shown["file"], shown["path"]), (None, None))
        [columns, cells] = list(csv.reader(io.StringIO(self.run_command("export")[1])))
        self.assertEqual(cells[columns.index("path")], "")

    def test_search_and_export_by_either_form(self) -> None:
        """With numbers.country_code and numbers.trunk_prefix in the config,
        search and export find the international form by the national one
        and the other way round."""
        self.root.write(sidecar("1", remote_number="+4930123456"))
        self.root.write(sidecar("2", remote_number="030 123456", direction="in"))
        self.run_command("reindex")
        status, out, _ = self.run_command("search", "--number", "030 123", "--json")
        self.assertEqual([row["id"] for row in json.loads(out)["recordings"]], ["2"])
        with open(self.config, "a") as handle:
            handle.write("numbers:\n  country_code: 49\n  trunk_prefix: \"0\"\n")
        for typed in ("030 123", "+49 30 123"):
            status, out, err = self.run_command("search", "--number", typed, "--json")
            self.assertEqual(
                (status, sorted(row["id"] for row in json.loads(out)["recordings"])),
                (0, ["1", "2"]), err)
        status, out, _ = self.run_command("export", "--csv", "--number", "+49 30 123456")
        self.assertEqual(sorted(line[0] for line in list(csv.reader(io.StringIO(out)))[1:]),
                         ["1", "2"])

    def test_show_unknown_id(self) -> None:
        """`recsvc show` of an id with no finished recording fails naming
        the id."""
        self.run_command("reindex")
        status, _, err = self.run_command("show", "nope")
        self.assertEqual(status, 1)
        self.assertIn("no finished recording with id 'nope'", err)

    def test_export_csv(self) -> None:
        """`recsvc export --csv` writes a header and one row per match,
        commas in names quoted, the node that recorded it last."""
        for number in range(3):
            self.root.write(sidecar(str(number), remote_name=f"Name, {number}", node="rec-a"))
        self.run_command("reindex")
        status, out, _ = self.run_command("export", "--csv", "--name", "name")
        self.assertEqual(status, 0)
        lines = list(csv.reader(io.StringIO(out)))
        self.assertEqual((lines[0][:2], lines[0][-1]), (["id", "started_at"], "node"))
        self.assertEqual(sorted(line[0] for line in lines[1:]), ["0", "1", "2"])
        self.assertIn("Name, 1", [line[8] for line in lines[1:]])
        self.assertEqual({line[-1] for line in lines[1:]}, {"rec-a"})

    def test_bad_search_names_the_option(self) -> None:
        """A search option that does not parse is a usage error (status 2)
        naming the option."""
        self.run_command("reindex")
        status, _, err = self.run_command("search", "--since", "2026-13-01")
        self.assertEqual(status, 2)
        self.assertIn("argument --since:", err)

    def test_reindex_reports_unreadable_sidecars(self) -> None:
        """`recsvc reindex` indexes what it can, names each unreadable
        sidecar and why, and exits 1."""
        self.root.write(sidecar("1"))
        with open(os.path.join(self.root.root, "broken.json"), "w") as handle:
            handle.write("[")
        status, out, err = self.run_command("reindex")
        self.assertEqual(status, 1)
        self.assertIn("1 recordings indexed", out)
        self.assertIn("broken.json: not indexed: not JSON", err)

    def test_reindex_of_a_root_without_sidecars_forgets_nothing(self) -> None:
        """`recsvc reindex` over a root that has no sidecar (a disk not
        mounted) while the index has recordings keeps them, says why and
        exits 1; over a root it cannot list, it says so and exits 1, the
        index as it was (never a traceback)."""
        self.root.write(sidecar("1"))
        self.assertEqual(self.run_command("reindex")[0], 0)
        real = os.path.abspath(self.root.root)
        os.rename(real, real + ".unmounted")
        os.makedirs(real)
        status, out, err = self.run_command("reindex")
        self.assertEqual(status, 1)
        self.assertIn("0 gone from the index", out)
        self.assertIn("they are kept", err)
        scandir = os.scandir

        def refused(path: str):
            if os.path.abspath(path) == real:
                raise PermissionError(13, "Permission denied", path)
            return scandir(path)

        self.patch(folder.os, "scandir", refused)
        status, out, err = self.run_command("reindex")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("cannot read the recordings folder", err)
        self.assertIn("Permission denied; the index is left as it was", err)
        self.patch(folder.os, "scandir", scandir)
        status, out, _ = self.run_command("search", "--json")
        self.assertEqual([row["id"] for row in json.loads(out)["recordings"]], ["1"])

    def test_check_config(self) -> None:
        """`recsvc check-config` says OK for a good config, and fails naming
        the key for an index it cannot open and for an unknown key."""
        status, out, _ = self.run_command("check-config", self.config)
        self.assertEqual(status, 0)
        self.assertIn("OK", out)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.database + suffix):
                os.unlink(self.database + suffix)
        os.makedirs(self.database)  # a folder where the index should be
        status, _, err = self.run_command("check-config", self.config)
        self.assertEqual(status, 1)
        self.assertIn("index.database: cannot open", err)
        with open(self.config, "a") as handle:
            handle.write("  colour: blue\n")
        status, _, err = self.run_command("check-config", self.config)
        self.assertEqual(status, 1)
        self.assertIn("index.colour: unknown key", err)


class TextIndexTests(SynchronousTestCase):
    """How SQLite finds text: numbers and names of three characters or
    more through the trigram index, devices among the devices seen (that
    each finds what a scan finds is the contract suite's)."""

    def setUp(self) -> None:
        self.connection = SqliteIndex.open(os.path.join(self.mktemp(), "index.sqlite3"))
        self.addCleanup(self.connection.close)

    def plan_of(self, search: index.Search) -> str:
        sql, params = sqlite_index._select(search, sqlite_index._Finding.LOOKED_UP)
        return " ".join(row[-1] for row in self.connection.sqlite.execute(
            "EXPLAIN QUERY PLAN " + sql, params))

    def test_long_text_through_the_index_short_text_by_scan(self) -> None:
        """A number or name of three characters or more is looked up in the
        text index, a shorter one compared row by row; a device of any
        length is looked up among the devices seen, then by its index."""
        for long in (index.Search(number="138"), index.Search(name="Ali")):
            self.assertIn("recordings_text", self.plan_of(long))
        for short in (index.Search(number="13"), index.Search(name="Al")):
            self.assertNotIn("recordings_text", self.plan_of(short))
        for device in ("a8:59", "a8", "00:a8:59:00:00:02"):
            plan = self.plan_of(index.Search(device=device))
            self.assertIn("recordings_by_device", plan)
            self.assertIn("SCAN devices", plan)
