"""Notes and tags on recordings (issue 19): what a note may hold, and what
every index database keeps of notes (one contract, on SQLite and
PostgreSQL): added with their audit row, listed per recording, found by a
search's note text and tag (within a scope too), forgotten on erasure."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from recsvc.access.audit import audit_event
from recsvc.access.notes import INotes, Note, check_tags, check_text, note_of, tags_column
from recsvc.index import store as index
from tests.support.builders import sidecar
from tests.support.indexes import OnPostgres, OnSqlite


class CheckTests(SynchronousTestCase):
    def test_tags_lower_case_once_from_a_list_or_a_text(self) -> None:
        """Tags are kept in lower case, each once, in the order given; a
        text of words separated by spaces or commas is a list of tags."""
        self.assertEqual(check_tags(["Dispute", "refund", "dispute"]), ("dispute", "refund"))
        self.assertEqual(check_tags("vip, refund  escalated"), ("vip", "refund", "escalated"))
        self.assertEqual(tags_column(("a", "b")), " a b ")
        self.assertEqual(tags_column(()), "")

    def test_bad_tags_and_texts_are_refused_naming_them(self) -> None:
        """A tag with other characters, too long, too many tags, a text
        with control characters or too long: a ValueError naming the field."""
        for bad in (["a b"], ["=cmd"], ["x" * 33], [f"t{n}" for n in range(11)], [1], "%"):
            with self.assertRaises(ValueError) as raised:
                check_tags(bad)
            self.assertIn("tags:", str(raised.exception))
        for bad in ("bell\x07", "x" * 2001, 5):
            with self.assertRaises(ValueError) as raised:
                check_text(bad)
            self.assertIn("text:", str(raised.exception))
        self.assertEqual(check_text("  line one\n\tline two "), "line one\n\tline two")

    def test_a_note_needs_text_or_tags(self) -> None:
        """An empty note is refused; tags alone, or text alone, make one."""
        with self.assertRaises(ValueError):
            note_of("7", "d/7.wav", "t", "ann", "  ", [])
        self.assertEqual(note_of("7", "d/7.wav", "t", "ann", "", ["vip"]).tags, ("vip",))
        self.assertEqual(note_of("7", "d/7.wav", "t", "ann", "hi", None).text, "hi")

    def test_a_search_refuses_an_empty_note_or_a_bad_tag(self) -> None:
        """Search(note=" ") and Search(tag="a b") are ValueErrors naming the field."""
        with self.assertRaises(ValueError) as raised:
            index.Search(note=" ")
        self.assertIn("note:", str(raised.exception))
        with self.assertRaises(ValueError) as raised:
            index.Search(tag="a b")
        self.assertIn("tag:", str(raised.exception))


class NotesContract:
    """What every index database keeps of notes."""

    def setUp(self) -> None:
        self.found_in = self.open_test_index()
        for recording_id, local, device in (("7", "2001", "00:a8:59:00:00:01"),
                                            ("8", "2002", "00:a8:59:00:00:02"),
                                            ("9", "2003", "00:a8:59:00:00:03")):
            data = sidecar(recording_id, local_number=local, device=device,
                           file=f"{recording_id}.wav")
            index.add(self.found_in, index.entry_from_sidecar(data, f"d/{recording_id}.json", 0))

    def found(self, **fields) -> list[str]:
        return sorted(row["id"] for row in index.search(self.found_in, index.Search(**fields)))

    def test_provides_the_interface(self) -> None:
        """The backend keeps notes (INotes)."""
        self.assertTrue(verifyObject(INotes, self.found_in))

    def test_added_listed_in_order_with_their_audit_row(self) -> None:
        """Notes come back as written, the oldest first (over the files
        asked for), each written with its audit row; another file's are
        not listed."""
        first = Note("7", "d/7.wav", "2026-12-07T10:00:00.000Z", "sue", "Asked for a refund",
                     ("refund",))
        other = Note("8", "d/8.wav", "t", "bob", "other", ())
        second = Note("7", "d/7-part2.wav", "2026-12-07T10:05:00.000Z", "sue",
                      "Called back\nall good", ())
        self.found_in.add_note(first, audit=audit_event("t", "sue", "-", "note", "7"))
        self.found_in.add_note(other)
        self.found_in.add_note(second, audit=audit_event("t", "sue", "-", "note", "7"))
        self.assertEqual(self.found_in.notes_of(["d/7-part2.wav", "d/7.wav"]), [first, second])
        self.assertEqual(self.found_in.notes_of(["d/7.wav", "d/7.wav"]), [first])
        self.assertEqual(self.found_in.notes_of(["none"]), [])
        self.assertEqual([row.event.target for row in self.found_in.audit_rows()], ["7", "7"])

    def test_found_by_note_text_and_tag(self) -> None:
        """A search's note finds text in a note (the case of ASCII letters
        ignored) or its tags; its tag finds a tag whole (not a part of
        one); both go with the other fields, a scope among them; LIKE's
        wildcards are plain text; a note finds its own file, not another
        with the same recording id."""
        self.found_in.add_note(Note("7", "d/7.wav", "t", "sue", "Asked for a REFUND, 100% Ärger",
                                    ("dispute",)))
        self.found_in.add_note(Note("8", "d/8.wav", "t", "sue", "fine", ("disputed", "vip")))
        data = sidecar("8", local_number="2003", file="8-other-phone.wav",
                       device="00:a8:59:00:00:03")
        index.add(self.found_in, index.entry_from_sidecar(data, "e/8-other-phone.json", 0))
        self.assertEqual(self.found(note="refund"), ["7"])
        self.assertEqual(self.found(note="dispute"), ["7", "8"])  # (in tags: a part is found)
        self.assertEqual(self.found(note="100%"), ["7"])
        self.assertEqual(self.found(note="Ärger"), ["7"])
        self.assertEqual(self.found(note="_"), [])
        self.assertEqual(self.found(tag="dispute"), ["7"])
        self.assertEqual(self.found(tag="VIP"), ["8"])
        self.assertEqual(self.found(tag="vip", numbers_within=frozenset({"2003"})), [])
        self.assertEqual(self.found(tag="vip", note="fine"), ["8"])
        self.assertEqual(self.found(note="dispute", numbers_within=frozenset({"2002"})), ["8"])
        self.assertEqual(self.found(note="dispute", devices_within=frozenset({"00a859000001"})),
                         ["7"])
        self.assertEqual(self.found_in.total(index.Search(note="dispute"), 100).count, 2)
        self.assertEqual(list(row["id"] for row in index.search_all(
            self.found_in, index.Search(tag="dispute"))), ["7"])

    def test_forgotten_on_erasure(self) -> None:
        """forget_notes deletes the notes on the files given, and says how
        many; others' stay."""
        for recording_id in ("7", "7", "8"):
            self.found_in.add_note(Note(recording_id, f"d/{recording_id}.wav", "t", "sue", "x"))
        self.assertEqual(self.found_in.forget_notes(["d/7.wav", "none"]), 2)
        self.assertEqual(self.found_in.notes_of(["d/7.wav"]), [])
        self.assertEqual(len(self.found_in.notes_of(["d/8.wav"])), 1)


class NotesOnSqlite(NotesContract, OnSqlite, SynchronousTestCase):
    def test_an_index_of_schema_5_gains_notes(self) -> None:
        """An index made before notes (schema 5) gets their table in place,
        its recordings kept and found by a note once it has one."""
        import os
        import sqlite3

        from recsvc.index import sqlite as sqlite_index

        path = os.path.join(self.mktemp(), "index.sqlite3")
        self.patch(sqlite_index, "SCHEMA_VERSION", 5)
        self.patch(sqlite_index, "_SCHEMA", sqlite_index._SCHEMA[:-len(sqlite_index._NOTES)])
        made = sqlite_index.SqliteIndex.open(path)
        index.add(made, index.entry_from_sidecar(sidecar("7", file="7.wav"), "d/7.json", 0))
        made.close()
        with sqlite3.connect(path) as connection:
            self.assertIsNone(connection.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'notes'").fetchone())
        self.patch(sqlite_index, "SCHEMA_VERSION", 6)
        self.patch(sqlite_index, "_SCHEMA", ())
        found_in = sqlite_index.SqliteIndex.open(path)
        self.addCleanup(found_in.close)
        self.assertEqual(found_in.schema_version(), 6)
        found_in.add_note(Note("7", "d/7.wav", "t", "sue", "kept", ()))
        self.assertEqual([row["id"] for row in index.search(found_in, index.Search(note="kept"))],
                         ["7"])


class NotesOnPostgres(NotesContract, OnPostgres, SynchronousTestCase):
    pass
