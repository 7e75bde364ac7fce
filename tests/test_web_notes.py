"""Notes, holds, the CSV export and "who am I" over the API (issue 19): each
needs its right and stays within the user's scope (another team's call is
the 404 of one that does not exist), takes a small JSON body (a cookie's
session also its CSRF token), and is written to the audit trail."""

from __future__ import annotations

import csv
import io
import json

from twisted.internet.defer import inlineCallbacks

from recsvc.index import store as index
from recsvc.web import site as webapi
from tests.test_web_users import UsersCase, basic

JSON = "application/json"


class MarksCase(UsersCase):
    @inlineCallbacks
    def post(self, path: str, body: object, status: int, name: str | None = None,
             content_type: str = JSON, **headers: str):
        if name is not None:
            headers.update(self.as_user(name))
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response, answer = yield self.get(path, method=b"POST", body=raw,
                                          content_type=content_type, **headers)
        self.assertEqual(response.code, status, answer)
        return json.loads(answer)

    def notes(self, recording_id: str) -> list:
        """The notes on every file of the recordings of this id."""
        return self.connection.notes_of([row["path"] for row in self.connection.search_all(
            index.Search(recording_id=recording_id))])

    def audited(self) -> list[tuple[str, str, str]]:
        return [(row.event.actor, row.event.action, row.event.target)
                for row in self.connection.audit_rows()]


class NoteTests(MarksCase):
    @inlineCallbacks
    def test_a_supervisor_notes_and_finds_by_note_and_tag(self) -> None:
        """A supervisor's note on a call of their scope is kept (201), shown
        with the recording, found by its text and its tag, and audited."""
        answer = yield self.post("/api/recordings/9/notes",
                                 {"text": "Customer asked for a REFUND", "tags": ["Dispute"]},
                                 201, "sam")
        self.assertEqual((answer["note"]["author"], answer["note"]["tags"]),
                         ("sam", ["dispute"]))
        shown = yield self.get_json("/api/recordings/9", **self.as_user("sam"))
        self.assertEqual([note["text"] for note in shown["notes"]],
                         ["Customer asked for a REFUND"])
        self.assertIsNone(shown["held"])
        self.assertEqual((yield self.ids("sam", "?note=refund")), ["9"])
        self.assertEqual((yield self.ids("sam", "?tag=dispute")), ["9"])
        self.assertEqual((yield self.ids("sam", "?tag=other")), [])
        self.assertIn(("sam", "note", "9"), self.audited())
        note_row = [row for row in self.connection.audit_rows() if row.event.action == "note"]
        self.assertEqual(note_row[0].event.detail,
                         {"text": "Customer asked for a REFUND", "tags": ["dispute"],
                          "file": shown["files"][0]["file"]})

    @inlineCallbacks
    def test_another_phones_call_of_the_same_id_is_apart(self) -> None:
        """Phones choose recording ids: a sales call "9" beside support's
        "9". Support's notes and holds stay with support's file: a sales
        user sees neither, finds neither by a note, and support's release
        leaves a hold on the sales call alone; the erasure's held check
        goes by the phone too."""
        self.finished_recording("9", b"\xd5" * 800, "2026-11-24T09:00:00.000Z",
                                device="00:a8:59:00:00:01", local_number="2001",
                                file="sales-9.wav")
        index.catch_up(self.connection, self.root)
        self.add_user("sue", "supervisor", "group:sales")
        self.clock.advance(5)
        yield self.post("/api/recordings/9/notes", {"text": "support's secret"}, 201, "sam")
        yield self.post("/api/recordings/9/hold", {"reason": "sales dispute"}, 200, "sue")
        shown = yield self.get_json("/api/recordings/9", **self.as_user("lena"))
        self.assertEqual(([row["file"] for row in shown["files"]], shown["notes"]),
                         (["sales-9.wav"], []))
        self.assertEqual(shown["held"]["reason"], "sales dispute")
        self.assertEqual((yield self.ids("lena", "?note=secret")), [])
        shown = yield self.get_json("/api/recordings/9", **self.as_user("sam"))
        self.assertIsNone(shown["held"])
        self.assertEqual([note["text"] for note in shown["notes"]], ["support's secret"])
        yield self.post("/api/recordings/9/release", {"reason": "x"}, 409, "sam")
        self.assertEqual([hold.reason for hold in self.connection.holds()], ["sales dispute"])
        error = yield self.post("/api/recordings/9/hold", {"reason": "again"}, 409, "sue")
        self.assertIn("held already", error["error"])

    @inlineCallbacks
    def test_refusals(self) -> None:
        """No right (a listener: 403), outside the scope (404, nothing
        kept), not JSON (415), unknown field, bad tag, empty note (400
        naming it), GET (405), a body over the limit (413)."""
        error = yield self.post("/api/recordings/7/notes", {"text": "x"}, 403, "lena")
        self.assertIn("may not write notes", error["error"])
        error = yield self.post("/api/recordings/7/notes", {"text": "x"}, 404, "sam")
        self.assertEqual(error["error"], "no finished recording with id '7'")
        self.assertEqual(self.notes("7"), [])
        yield self.post("/api/recordings/9/notes", b"text=x", 415, "sam",
                        content_type="application/x-www-form-urlencoded")
        error = yield self.post("/api/recordings/9/notes", {"txt": "x"}, 400, "sam")
        self.assertIn("txt: not a field here", error["error"])
        error = yield self.post("/api/recordings/9/notes", {"tags": ["=cmd"]}, 400, "sam")
        self.assertIn("tags:", error["error"])
        error = yield self.post("/api/recordings/9/notes", {"text": " "}, 400, "sam")
        self.assertIn("text:", error["error"])
        yield self.post("/api/recordings/9/notes", b"[", 400, "sam")
        yield self.get_json("/api/recordings/9/notes", 405, **self.as_user("sam"))
        big = {"text": "x" * (webapi.MAX_BODY_BYTES + 1)}
        error = yield self.post("/api/recordings/9/notes", big, 413, "sam")
        self.assertIn(f"at most {webapi.MAX_BODY_BYTES} bytes", error["error"])
        yield self.get_json("/api/recordings/9/other", 404, **self.as_user("sam"))
        self.assertEqual(self.notes("9"), [])

    @inlineCallbacks
    def test_a_session_posts_with_its_csrf_token_only(self) -> None:
        """Signed in on the page, a note needs the session's CSRF token in
        X-CSRF-Token: without it 403 and nothing kept."""
        response, _ = yield self.get("/login", method=b"POST", **self.as_user("sam"))
        cookies = dict(header.decode().split("; ")[0].split("=", 1)
                       for header in response.headers.getRawHeaders(b"set-cookie"))
        cookie = f"recsvc_session={cookies['recsvc_session']}"
        error = yield self.post("/api/recordings/9/notes", {"text": "x"}, 403, cookie=cookie)
        self.assertIn("X-CSRF-Token", error["error"])
        self.assertEqual(self.notes("9"), [])
        yield self.post("/api/recordings/9/notes", {"text": "x"}, 201, cookie=cookie,
                        x_csrf_token=cookies["recsvc_csrf"])
        self.assertEqual(len(self.notes("9")), 1)


class HoldTests(MarksCase):
    @inlineCallbacks
    def test_hold_and_release_within_scope(self) -> None:
        """A supervisor holds a call of their scope (every file of it, with
        the reason), sees it held, releases it; a second release is a 409;
        a listener may not (403), another team's call is a 404; audited."""
        answer = yield self.post("/api/recordings/9/hold", {"reason": "dispute 42"}, 200, "sam")
        self.assertEqual(answer["held"]["held_by"], "sam")
        self.assertEqual([hold.recording_id for hold in self.connection.holds()], ["9"])
        shown = yield self.get_json("/api/recordings/9", **self.as_user("sam"))
        self.assertEqual(shown["held"]["reason"], "dispute 42")
        yield self.post("/api/recordings/7/hold", {"reason": "x"}, 403, "lena")
        yield self.post("/api/recordings/7/hold", {"reason": "x"}, 404, "sam")
        error = yield self.post("/api/recordings/9/hold", {"reason": ""}, 400, "sam")
        self.assertIn("reason:", error["error"])
        answer = yield self.post("/api/recordings/9/release", {"reason": "settled"}, 200, "sam")
        self.assertEqual(answer["released"], 1)
        self.assertEqual(self.connection.holds(), [])
        error = yield self.post("/api/recordings/9/release", {"reason": "again"}, 409, "sam")
        self.assertIn("is not held", error["error"])
        self.assertEqual([entry for entry in self.audited() if entry[1] in ("hold", "release")],
                         [("sam", "hold", "9"), ("sam", "release", "9")])


class ExportTests(MarksCase):
    @inlineCallbacks
    def test_the_search_as_csv_within_scope(self) -> None:
        """A supervisor exports their scope's calls as CSV (no paths on the
        server), a cell a spreadsheet would run as a formula made text, a
        number like +4930 left as it is; audited with the query; a
        listener may not (403)."""
        self.finished_recording("10", b"\xd5" * 800, "2026-11-24T13:00:00.000Z",
                                device="00:a8:59:00:00:02", local_number="2100",
                                remote_name="=HYPERLINK(\"http://x\")", remote_number="+4930123")
        index.catch_up(self.connection, self.root)
        response, body = yield self.get("/api/export?direction=out", **self.as_user("sam"))
        self.assertEqual(response.code, 200, body)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/csv; charset=utf-8"])
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        self.assertEqual([row["id"] for row in rows], ["10", "9"])
        self.assertNotIn("path", rows[0])
        self.assertEqual(rows[0]["remote_name"], "'=HYPERLINK(\"http://x\")")
        self.assertEqual(rows[0]["remote_number"], "+4930123")
        response, body = yield self.get("/api/export?order=remote", **self.as_user("sam"))
        self.assertEqual([row["id"] for row in csv.DictReader(io.StringIO(body.decode()))],
                         ["9", "10"])  # (13800138000 before 4930123; newest first: 10, 9)
        error = yield self.get_json("/api/recordings?order=-remote&after=x", 400,
                                    **self.as_user("sam"))
        self.assertIn("after:", error["error"])
        self.patch(index, "COLUMN_ORDER_AT_MOST", 1)
        error = yield self.get_json("/api/recordings?order=remote", 400, **self.as_user("sam"))
        self.assertIn("order: remote sorts a search of at most 1", error["error"])
        response, _ = yield self.get("/api/export", **self.as_user("lena"))
        self.assertEqual(response.code, 403)
        yield self.get_json("/api/export?page=2", 400, **self.as_user("sam"))
        export = [row for row in self.connection.audit_rows() if row.event.action == "export"]
        self.assertEqual(export[0].event.detail, {"query": {"direction": "out"}})


class MeTests(MarksCase):
    @inlineCallbacks
    def test_who_is_asking(self) -> None:
        """/api/me says the user, role and rights, and whether they see
        every recording; the open default is an admin of everything."""
        me = yield self.get_json("/api/me", **self.as_user("lena"))
        self.assertEqual(me, {"user": "lena", "role": "listener", "rights": ["search", "play"],
                              "every_recording": False, "signed_in": False})
        me = yield self.get_json("/api/me", authorization=basic("audrey", "audrey's password"))
        self.assertEqual(me["rights"], ["audit"])
