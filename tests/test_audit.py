"""The audit trail (recsvc.access.audit): the hashes' chain finds a row
altered, removed, slipped in or reordered; every index database keeps
the rows append-only, one chain however many write at once (one
contract, on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import attrs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from recsvc.access.audit import (
    GENESIS, AuditEvent, IAuditTrail, audit_event, next_row, row_hash, verify)
from tests.support.indexes import OnPostgres, OnSqlite


def event(number: int = 1, action: str = "search", **more: object) -> AuditEvent:
    return audit_event(f"2026-12-07T10:00:{number:02d}.000Z", "alice", "127.0.0.1", action,
                       more.pop("target", ""), {"query": {"number": str(number)}, **more})


def chain(count: int) -> list:
    rows, last = [], None
    for number in range(1, count + 1):
        last = next_row(last, event(number))
        rows.append(last)
    return rows


class ChainTests(SynchronousTestCase):
    def test_an_intact_chain(self) -> None:
        """Each row follows the one before, from the genesis hash; verify
        says how many rows and the last hash."""
        rows = chain(4)
        self.assertEqual(rows[0].previous_hash, GENESIS)
        self.assertEqual([row.seq for row in rows], [1, 2, 3, 4])
        found = verify(rows)
        self.assertTrue(found.intact)
        self.assertEqual((found.rows, found.last_seq, found.last_hash), (4, 4, rows[3].row_hash))
        self.assertTrue(verify([]).intact)

    def test_every_field_is_covered(self) -> None:
        """A change to any field of an event breaks its row's hash."""
        rows = chain(3)
        for field, value in (("at", "2026-12-08T00:00:00Z"), ("actor", "mallory"),
                             ("source", "10.0.0.1"), ("action", "play"), ("target", "x"),
                             ("detail", {"query": {"number": "9"}})):
            changed = attrs.evolve(rows[1], event=attrs.evolve(rows[1].event, **{field: value}))
            found = verify([rows[0], changed, rows[2]])
            self.assertEqual(found.broken_at, 2, field)
            self.assertIn("row 2 was changed", found.why)

    def test_a_row_rehashed_breaks_the_next(self) -> None:
        """A row changed and given a hash of its own again is found by the
        row after it, which carries the old hash."""
        rows = chain(3)
        forged_event = attrs.evolve(rows[1].event, actor="mallory")
        forged = attrs.evolve(rows[1], event=forged_event,
                              row_hash=row_hash(2, rows[1].previous_hash, forged_event))
        found = verify([rows[0], forged, rows[2]])
        self.assertEqual(found.broken_at, 3)
        self.assertIn("does not follow row 2", found.why)

    def test_removed_and_reordered_rows(self) -> None:
        """A row taken out, the first missing, two rows swapped: each found."""
        rows = chain(4)
        self.assertEqual(verify([rows[0], rows[2], rows[3]]).broken_at, 2)
        self.assertIn("row 2 is missing", verify([rows[0], rows[2], rows[3]]).why)
        self.assertEqual(verify([rows[1], rows[2]]).broken_at, 1)
        self.assertEqual(verify([rows[0], rows[2], rows[1]]).broken_at, 2)

    def test_events_to_write_are_checked(self) -> None:
        """An action not audited, a field a line cannot show, details that
        are no JSON: refused, saying which."""
        for fields, said in ((("t", "a", "s", "dance"), "not an audited action"),
                             (("t", "a\nb", "s", "search"), "actor:"),
                             (("t", "a", "s", "search", "x\x1b[2J"), "target:")):
            error = self.assertRaises(ValueError, audit_event, *fields)
            self.assertIn(said, str(error))
        error = self.assertRaises(ValueError, audit_event, "t", "a", "s", "search", "",
                                  {"n": float("nan")})
        self.assertIn("detail:", str(error))


class AuditTrailContract:
    """What every index database does with the audit trail."""

    def setUp(self) -> None:
        self.trail = self.open_test_index()

    def test_provides_the_interface(self) -> None:
        """The backend keeps an audit trail (IAuditTrail)."""
        self.assertTrue(verifyObject(IAuditTrail, self.trail))

    def test_appended_rows_read_back_chained(self) -> None:
        """Rows appended come back in order, as written, and verify."""
        written = [self.trail.append_audit(event(number, target=f"rec-{number}"))
                   for number in range(1, 6)]
        read = self.trail.audit_rows()
        self.assertEqual(read, written)
        self.assertTrue(verify(read).intact)
        self.assertEqual(self.trail.audit_rows(after=3), written[3:])
        self.assertEqual(self.trail.audit_rows(after=1, limit=2), written[1:3])

    def test_a_page_newest_first_by_filters(self) -> None:
        """An auditor's page: newest first, before a place, by actor,
        action, target and time."""
        from recsvc.access.audit import AuditQuery

        for number in range(1, 6):
            self.trail.append_audit(event(number, action="play" if number % 2 else "search",
                                          target=f"rec-{number}"))
        seqs = lambda query: [row.seq for row in self.trail.audit_page(query)]  # noqa: E731
        self.assertEqual(seqs(AuditQuery()), [5, 4, 3, 2, 1])
        self.assertEqual(seqs(AuditQuery(before=4, limit=2)), [3, 2])
        self.assertEqual(seqs(AuditQuery(action="play")), [5, 3, 1])
        self.assertEqual(seqs(AuditQuery(target="rec-2", actor="alice")), [2])
        self.assertEqual(seqs(AuditQuery(actor="bob")), [])
        self.assertEqual(seqs(AuditQuery(since="2026-12-07T10:00:02.000Z",
                                         until="2026-12-07T10:00:04.000Z")), [3, 2])

    def test_rows_cannot_be_changed_or_removed(self) -> None:
        """The database refuses to change or delete a row."""
        self.trail.append_audit(event(1))
        for statement in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
            error = self.assertRaises(Exception, self.execute, statement)
            self.assertIn("append-only", str(error))
        self.assertTrue(verify(self.trail.audit_rows()).intact)

    def test_rows_go_after_the_last_only(self) -> None:
        """A row in another place than after the last (a replacement, as
        SQLite's INSERT OR REPLACE would make) is refused."""
        first = self.trail.append_audit(event(1))
        self.trail.append_audit(event(2))
        columns = "seq, at, actor, source, action, target, detail, previous_hash, row_hash"
        for statement in self.replacing(columns):
            self.assertRaises(Exception, self.execute,
                              statement.format(values=f"1, 't', 'mallory', 's', 'search', '', "
                                                      f"'{{}}', '{first.previous_hash}', 'x'"))
        self.assertEqual([row.event.actor for row in self.trail.audit_rows()], ["alice"] * 2)

    def test_a_row_altered_by_hand_is_found(self) -> None:
        """With the guard dropped, a row altered by hand fails verify,
        naming the row."""
        for number in range(1, 4):
            self.trail.append_audit(event(number))
        self.drop_guard()
        self.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        found = verify(self.trail.audit_rows())
        self.assertEqual(found.broken_at, 2)

    def test_writers_at_once_make_one_chain(self) -> None:
        """Two connections (two nodes, or the service and the CLI) that
        append at once make one chain, no place taken twice."""
        other = self.open_again()
        failures: list[BaseException] = []

        def append(trail, first: int) -> None:
            try:
                for number in range(first, first + 15):
                    trail.append_audit(event(number % 60))
            except BaseException as error:  # pragma: no cover - reported below
                failures.append(error)
        threads = [threading.Thread(target=append, args=(trail, first))
                   for trail, first in ((self.trail, 0), (other, 15))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(failures, [])
        found = verify(self.trail.audit_rows())
        self.assertEqual((found.intact, found.rows), (True, 30))


class AuditOnSqlite(AuditTrailContract, OnSqlite, SynchronousTestCase):
    def execute(self, statement: str) -> None:
        with self.trail.sqlite:
            self.trail.sqlite.execute(statement)

    def drop_guard(self) -> None:
        self.execute("DROP TRIGGER audit_not_changed")

    def replacing(self, columns: str) -> list[str]:
        return [f"INSERT OR REPLACE INTO audit ({columns}) VALUES ({{values}})",
                f"INSERT INTO audit ({columns}) VALUES ({{values}})"]

    def open_again(self):
        from recsvc.index.sqlite import SqliteIndex

        [(_, _, path)] = self.trail.sqlite.execute("PRAGMA database_list").fetchall()
        opened = SqliteIndex.open(path)
        self.addCleanup(opened.close)
        return opened


class AuditOnPostgres(AuditTrailContract, OnPostgres, SynchronousTestCase):
    def setUp(self) -> None:
        self.database = self.new_database()
        self.trail = self.open_test_index(database=self.database)

    def execute(self, statement: str) -> None:
        with self.trail.pool.connection() as connection:
            connection.execute(statement)

    def drop_guard(self) -> None:
        self.execute("DROP TRIGGER audit_append_only ON audit")

    def replacing(self, columns: str) -> list[str]:
        return [f"INSERT INTO audit ({columns}) VALUES ({{values}}) ON CONFLICT (seq) DO UPDATE "
                "SET actor = excluded.actor",
                f"INSERT INTO audit ({columns}) VALUES ({{values}})"]

    def open_again(self):
        return self.open_test_index("node-b", self.database)
