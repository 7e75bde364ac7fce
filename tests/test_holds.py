"""Legal holds and erasure (issue 19): the holds every index database
keeps (one contract, on SQLite and PostgreSQL); a held recording survives
a retention sweep that deletes its neighbours and an erasure by its
number, whose disposal record lists what it erased and what it refused."""

from __future__ import annotations

import json
import os
from contextlib import closing

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from recsvc.access.audit import audit_event, verify
from recsvc.access.holds import Hold, IHolds
from recsvc.access.notes import Note
from recsvc.index.backends import open_index
from recsvc.storage.retention import RetentionPolicy, sweep
from recsvc.testing import FakeIndexer, memory_recorder
from tests.support.builders import sidecar
from tests.support.indexes import OnPostgres, OnSqlite
from tests.test_cli import CommandCase

DAY = 86400.0


def held(node: str, path: str, recording_id: str = "7") -> Hold:
    return Hold(node, path, recording_id, "dispute 42", "ann", "2026-12-07T10:00:00.000Z")


class HoldsContract:
    """What every index database keeps of holds."""

    def setUp(self) -> None:
        self.holds = self.open_test_index()

    def test_provides_the_interface(self) -> None:
        """The backend keeps holds (IHolds)."""
        self.assertTrue(verifyObject(IHolds, self.holds))

    def test_hold_list_release(self) -> None:
        """Files held are listed and their paths known (whatever node); a
        file held twice keeps its first hold; released, they go; the audit
        row comes with each."""
        event = audit_event("t", "ann", "cli", "hold", "7")
        self.holds.hold_files([held("rec-a", "d/7.wav"), held("rec-b", "d/7.wav"),
                               held("", "d/8.wav", "8")], audit=event)
        self.holds.hold_files([Hold("rec-a", "d/7.wav", "7", "another", "bob", "t")])
        self.assertEqual([(each.node, each.path, each.reason) for each in self.holds.holds()],
                         [("rec-a", "d/7.wav", "dispute 42"), ("rec-b", "d/7.wav", "dispute 42"),
                          ("", "d/8.wav", "dispute 42")])
        self.assertEqual([(each.node, each.path) for each in self.holds.holds_on(
            ["d/8.wav", "d/7.wav", "none"])],
                         [("", "d/8.wav"), ("rec-a", "d/7.wav"), ("rec-b", "d/7.wav")])
        # (Whatever node: a node renamed keeps its holds.)
        self.assertEqual(self.holds.held_paths("rec-c"), {"d/7.wav", "d/8.wav"})
        self.assertEqual(self.holds.release_files([("rec-a", "d/7.wav"), ("rec-a", "none")],
                                                  audit=audit_event("t", "ann", "cli", "release")),
                         1)
        self.assertEqual(self.holds.held_paths("rec-a"), {"d/7.wav", "d/8.wav"})
        self.holds.release_files([("rec-b", "d/7.wav")])
        self.assertEqual(self.holds.held_paths("rec-a"), {"d/8.wav"})
        # A part of a held recording indexed after the hold is held too.
        from recsvc.index import store as index

        data = sidecar("8", part=2, file="8-part2.wav")
        index.add(self.holds, index.entry_from_sidecar(data, "d/8-part2.json", 0))
        self.assertEqual(self.holds.held_paths("rec-a"), {"d/8.wav", "d/8-part2.wav"})
        self.assertEqual([row.event.action for row in self.holds.audit_rows()],
                         ["hold", "release"])


class HoldsOnSqlite(HoldsContract, OnSqlite, SynchronousTestCase):
    pass


class HoldsOnPostgres(HoldsContract, OnPostgres, SynchronousTestCase):
    pass


class RetentionTests(SynchronousTestCase):
    def test_held_recordings_are_left_whole(self) -> None:
        """Whatever rule would take a held recording (its age, the disk's
        size), it stays; its neighbours go."""
        root = self.mktemp()
        folder = os.path.join(root, "00a859000001", "2026")
        os.makedirs(folder)
        for name, age in (("a", 100), ("b", 100), ("c", 1)):
            for extension in (".wav", ".json"):
                path = os.path.join(folder, name + extension)
                with open(path, "w") as handle:
                    handle.write("{}" if extension == ".json" else "x" * 1000)
                os.utime(path, (1e9 - age * DAY, 1e9 - age * DAY))
        removed = sweep(root, RetentionPolicy(max_age_days=30, max_total_bytes=1),
                        1e9, lambda root: 10**12, held=frozenset({"00a859000001/2026/a.wav"}))
        self.assertEqual(sorted(os.path.basename(each.wav) for each in removed),
                         ["b.wav", "c.wav"])
        self.assertEqual(sorted(os.listdir(folder)), ["a.json", "a.wav"])


class HoldsUnknownTests(SynchronousTestCase):
    def test_no_sweep_without_the_holds(self) -> None:
        """An index whose holds cannot be read: the sweep deletes nothing,
        and says why."""
        from twisted.logger import capturedLogs

        root = self.mktemp()
        os.makedirs(os.path.join(root, "d"))
        wav = os.path.join(root, "d", "old.wav")
        for path in (wav, wav[:-4] + ".json"):
            with open(path, "w") as handle:
                handle.write('{"status": "finished"}')
            os.utime(path, (1000.0, 1000.0))
        clock = Clock()
        clock.advance(1_900_000_000)
        service = memory_recorder(root, clock=clock)
        service.upkeep.index = FakeIndexer(root=root)  # (not started: every call fails)
        service.upkeep.retention = RetentionPolicy(max_age_days=1)
        with capturedLogs() as logged:
            self.assertEqual(self.successResultOf(service.upkeep.sweep()), [])
        self.assertTrue(os.path.exists(wav))
        self.assertIn("the legal holds cannot be read",
                      " ".join(event.get("log_format", "") for event in logged))
        self.assertIsNotNone(service.upkeep.sweep())  # (the next sweep may run)


class EraseCase(CommandCase):
    """Recordings under the config's root, of chosen ages and fields."""

    def setUp(self) -> None:
        super().setUp()
        with open(self.config, "a", encoding="utf-8") as handle:
            handle.write("node: rec-a\n")
        self.clock = Clock()
        self.clock.advance(1_900_000_000)

    def recording(self, recording_id: str, age_days: float, **fields: object) -> str:
        data = sidecar(recording_id, **fields)
        folder = os.path.join(self.root, "00a859000001", "2026", "12", "07")
        os.makedirs(folder, exist_ok=True)
        wav = os.path.join(folder, data["file"])
        with open(wav, "wb") as handle:
            handle.write(b"RIFF" + recording_id.encode() * 100)
        with open(wav[:-4] + ".json", "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        moment = self.clock.seconds() - age_days * DAY
        for path in (wav, wav[:-4] + ".json"):
            os.utime(path, (moment, moment))
        return wav


class HoldThenEraseTests(EraseCase):
    """The issue's scenario, through the commands and the service's sweep."""

    def test_a_held_recording_survives_retention_and_erasure(self) -> None:
        """Held with a reason; a sweep takes its old neighbour, not it; an
        erasure of its number takes the others of that number (exactly that
        number), not it, and its disposal record says which, with their
        files' sizes and SHA-256, and which it refused."""
        held_wav = self.recording("held", 100, remote_number="13800138000")
        neighbour = self.recording("neighbour", 100, remote_number="555")
        newer = [self.recording(name, 1, remote_number="+86 138-0013-8000" if name == "c"
                                else "13800138000") for name in ("c", "d")]
        other = self.recording("other", 1, remote_number="13800138001")
        self.assertEqual(self.recsvc("-c", self.config, "reindex")[0], 0)
        status, out, err = self.recsvc("-c", self.config, "hold", "held", "--reason",
                                       "dispute 42")
        self.assertEqual((status, out, err), (0, "held held (1 files): dispute 42\n", ""))

        # The service's retention sweep: the neighbour goes, the held stays.
        service = memory_recorder(self.root, clock=self.clock)
        service.index = indexer = FakeIndexer(root=self.root, database=self.database,
                                              node="rec-a")
        indexer.start()
        service.upkeep.index = indexer
        service.upkeep.retention = RetentionPolicy(max_age_days=30)
        removed = self.successResultOf(service.upkeep.sweep())
        self.assertEqual([each.wav for each in removed], [neighbour])
        self.assertTrue(os.path.exists(held_wav))
        noted = {"d": os.path.relpath(newer[1], self.root),
                 "held": os.path.relpath(held_wav, self.root)}
        with closing(open_index(self.database, node="rec-a")) as found_in:
            for recording_id, path in noted.items():
                found_in.add_note(Note(recording_id, path, "t", "sue", "asked for a refund"))

        status, out, err = self.recsvc("-c", self.config, "erase", "--number", "13800138000",
                                       "--reason", "GDPR request 7")
        self.assertEqual(status, 0, err)
        self.assertEqual(out.splitlines(), [
            "erased 1 recordings (2 files) of 13800138000; the disposal record is in the "
            "audit trail",
            "not erased, held: held (dispute 42)"])
        self.assertTrue(os.path.exists(held_wav))
        self.assertFalse(os.path.exists(newer[1]))
        self.assertTrue(os.path.exists(newer[0]))  # (+86...: another number's digits)
        self.assertTrue(os.path.exists(other))
        with closing(open_index(self.database, read_only=True)) as found_in:
            rows = found_in.audit_rows()
            indexed = sorted(os.path.basename(path) for path in found_in.indexed())
        self.assertEqual(indexed, sorted(os.path.basename(path) for path in
                                         (held_wav, newer[0], other)))
        self.assertEqual([row.event.action for row in rows], ["hold", "erase"])
        record = rows[1].event.detail
        self.assertEqual((record["number"], record["reason"]), ("13800138000", "GDPR request 7"))
        self.assertEqual([each["id"] for each in record["erased"]], ["d"])
        # (An erased recording's notes go with it; the held one's stay.)
        self.assertEqual(record["erased"][0]["notes"], 1)
        with closing(open_index(self.database, read_only=True)) as found_in:
            self.assertEqual([len(found_in.notes_of([noted[each]])) for each in ("d", "held")],
                             [0, 1])
        self.assertEqual(sorted(entry["name"].rsplit(".", 1)[1]
                                for entry in record["erased"][0]["files"]), ["json", "wav"])
        self.assertTrue(all(len(entry["sha256"]) == 44 and entry["size"] > 0
                            for entry in record["erased"][0]["files"]))
        self.assertEqual(record["held, not erased"],
                         [{"id": "held", "node": "rec-a", "reason": "dispute 42"}])
        self.assertTrue(verify(rows).intact)
        self.assertNotIn("RIFF", json.dumps(record))


class EraseMatchingTests(EraseCase):
    def setUp(self) -> None:
        super().setUp()
        with open(self.config, "a", encoding="utf-8") as handle:
            handle.write("numbers:\n  country_code: \"49\"\n  trunk_prefix: \"0\"\n")

    def test_every_spelling_of_the_number_and_no_other(self) -> None:
        """With a numbering plan, the number in every spelling is erased
        (national, international, "00", "(0)"); a longer or shorter number
        that holds its digits is not; a hold made while the node had
        another name still refuses its recording."""
        spelled = [self.recording(f"s{n}", 1, remote_number=number) for n, number in enumerate(
            ("030 123", "+49 30 123", "0049 30 123", "+49 (0)30 123"))]
        others = [self.recording(f"o{n}", 1, remote_number=number) for n, number in enumerate(
            ("30123", "030 1234", "+49 30 12"))]
        renamed = self.recording("renamed", 1, remote_number="030123", node="rec-old")
        self.assertEqual(self.recsvc("-c", self.config, "reindex")[0], 0)
        self.assertEqual(self.recsvc("-c", self.config, "hold", "renamed", "--reason", "x")[0], 0)
        status, out, err = self.recsvc("-c", self.config, "erase", "--number", "030123",
                                       "--reason", "GDPR request 8")
        self.assertEqual(status, 0, err)
        self.assertIn("erased 4 recordings (8 files) of 4930123", out)
        self.assertIn("not erased, held: renamed (x)", out)
        self.assertEqual([os.path.exists(path) for path in spelled], [False] * 4)
        self.assertEqual([os.path.exists(path) for path in others + [renamed]], [True] * 4)


class HoldFoundTests(EraseCase):
    def test_every_recording_a_search_finds(self) -> None:
        """`recsvc hold --number N --reason R` holds every file of every
        recording the search finds, with one audit row naming the search
        and the recordings; an id and search options both, or neither, is
        refused; a search that finds nothing holds nothing."""
        for name, number in (("a", "13800138000"), ("b", "13800138000"), ("c", "555")):
            self.recording(name, 1, remote_number=number)
        self.assertEqual(self.recsvc("-c", self.config, "reindex")[0], 0)
        status, out, err = self.recsvc("-c", self.config, "hold", "--number", "13800138000",
                                       "--reason", "dispute 42")
        self.assertEqual((status, out, err), (0, "held 2 recordings (2 files): dispute 42\n", ""))
        with closing(open_index(self.database, read_only=True)) as found_in:
            self.assertEqual(sorted(hold.recording_id for hold in found_in.holds()), ["a", "b"])
            rows = found_in.audit_rows()
        self.assertEqual((rows[-1].event.target, rows[-1].event.detail["recordings"],
                          rows[-1].event.detail["query"]),
                         ("search", ["a", "b"], {"number": "13800138000"}))
        for argv in (("hold", "c", "--number", "555"), ("hold",)):
            status, _, err = self.recsvc("-c", self.config, *argv, "--reason", "x")
            self.assertEqual(status, 1, err)
            self.assertIn("not both", err)
        status, _, err = self.recsvc("-c", self.config, "hold", "--number", "999",
                                     "--reason", "x")
        self.assertEqual(status, 1)
        self.assertIn("finds no recording", err)


class SharedIdEraseTests(EraseCase):
    def test_a_hold_holds_its_phones_call_not_another_of_its_id(self) -> None:
        """Two phones' calls share the id "x" (phones choose ids): the hold
        on one keeps it, and the erasure of their number erases the other,
        a later part of the held one staying held."""
        held = self.recording("x", 1, file="x-a.wav", device="00:a8:59:00:00:0a")
        later_part = self.recording("x", 1, file="x-a-part2.wav", device="00:a8:59:00:00:0a",
                                    part=2)
        other = self.recording("x", 1, file="x-b.wav", device="00:a8:59:00:00:0b")
        self.assertEqual(self.recsvc("-c", self.config, "reindex")[0], 0)
        with closing(open_index(self.database, node="rec-a")) as found_in:
            path = os.path.relpath(held, self.root)
            found_in.hold_files([Hold("rec-a", path, "x", "dispute 9", "ann", "t")])
        status, out, err = self.recsvc("-c", self.config, "erase", "--number", "13800138000",
                                       "--reason", "GDPR")
        self.assertEqual(status, 0, err)
        self.assertEqual(out.splitlines()[1:], ["not erased, held: x (dispute 9)"])
        self.assertEqual([os.path.exists(wav) for wav in (held, later_part, other)],
                         [True, True, False])
