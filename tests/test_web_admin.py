"""What an admin does on the page, over the API (issue 19): users added,
changed and removed (each with its audit row, a new password ending the
user's sessions), refused to anyone else and for bad fields, naming them;
and erasure by number, leaving its disposal record, refusing held calls."""

from __future__ import annotations

import os

from twisted.internet.defer import inlineCallbacks

from recsvc.access.holds import Hold
from recsvc.config import BasicUser, HttpAuthConfig
from recsvc.access.sessions import Session
from recsvc.access.users import User
from recsvc.index import store as index
from recsvc.passwords import hash_password, verify_password
from recsvc.web import auth as httpauth
from tests.test_web_notes import MarksCase
from tests.test_web_users import basic


class AdminCase(MarksCase):
    auth = HttpAuthConfig(users=(BasicUser("root", hash_password("root's password", 1000)),))


class UserAdminTests(AdminCase):
    @inlineCallbacks
    def test_add_change_remove(self) -> None:
        """An admin adds a supervisor of a team (201, no hash shown), who
        then signs in with that password; changes her scope and password
        (her sessions end); removes her; each is audited as the admin."""
        answer = yield self.post("/api/users", {"name": "sue", "role": "supervisor",
                                                "scopes": ["group:sales"],
                                                "password": "sue's password"}, 201, "root")
        self.assertEqual(answer["user"], {"name": "sue", "role": "supervisor",
                                          "scopes": ["group:sales"], "created_at":
                                          answer["user"]["created_at"], "changed_at":
                                          answer["user"]["changed_at"], "api_token": False})
        self.assertTrue(verify_password("sue's password",
                                       self.connection.user("sue").password_hash))
        listed = yield self.get_json("/api/users", **self.as_user("root"))
        self.assertEqual([user["name"] for user in listed["users"]],
                         ["audrey", "lena", "sam", "sue"])
        self.assertNotIn("password_hash", listed["users"][0])
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        self.assertEqual((yield self.ids("sue")), ["8", "7"])
        self.connection.add_session(Session("0" * 64, "sue", 0.0, 1e12), 0.0)
        yield self.post("/api/users/sue", {"scopes": ["group:support"],
                                           "password": "a new password"}, 200, "root")
        self.assertIsNone(self.connection.session("0" * 64))
        self.assertEqual([str(scope) for scope in self.connection.user("sue").scopes],
                         ["group:support"])
        yield self.post("/api/users/sue/remove", {}, 200, "root")
        self.assertIsNone(self.connection.user("sue"))
        self.assertEqual([entry for entry in self.audited() if entry[1].startswith("user_")],
                         [("root", "user_add", "sue"), ("root", "user_change", "sue"),
                          ("root", "user_remove", "sue")])

    @inlineCallbacks
    def test_own_password_and_what_the_trail_says(self) -> None:
        """An admin changes their own password (their role as it is), the
        row saying the password changed; a body too deep for JSON or a
        password that is no text is a 400, not a 500."""
        self.connection.add_user(User("ada", "admin", (), hash_password("ada's password", 1000),
                                      "t", "t"))
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        ada = basic("ada", "ada's password")
        yield self.post("/api/users/ada", {"role": "admin", "scopes": [],
                                           "password": "a newer password"}, 200,
                        authorization=ada)
        row = [row.event for row in self.connection.audit_rows()][-1]
        self.assertEqual((row.action, row.detail["password"]),
                         ("user_password", "changed (the user's sessions ended)"))
        yield self.post("/api/users", b"[" * 4000, 400, "root")
        error = yield self.post("/api/users", b'{"name": "x", "role": "admin", '
                                b'"password": "\\ud800abcdefgh"}', 400, "root")
        self.assertIn("password:", error["error"])

    @inlineCallbacks
    def test_refusals(self) -> None:
        """A supervisor may not (403); a role, scope, group, name or
        password that is not one is a 400 naming it; a user twice, a
        user not there (409, 404); an admin does not remove themselves."""
        yield self.post("/api/users", {"name": "x", "role": "admin", "password": "12345678"},
                        403, "sam")
        yield self.get_json("/api/users", 403, **self.as_user("sam"))
        for body, said in (
                ({"name": "x", "role": "boss", "password": "12345678"}, "not a role"),
                ({"name": "x", "role": "listener", "password": "12345678"}, "needs a scope"),
                ({"name": "x", "role": "listener", "scopes": ["group:nope"],
                  "password": "12345678"}, "scopes: no group 'nope'"),
                ({"name": "x", "role": "listener", "scopes": "all", "password": "12345678"},
                 "scopes: not a list"),
                ({"name": "a b", "role": "admin", "password": "12345678"}, "name"),
                ({"name": "x", "role": "admin", "password": "short"}, "password: at least 8"),
                ({"name": "x", "role": "admin", "password": "12345678", "extra": 1},
                 "extra: not a field")):
            error = yield self.post("/api/users", body, 400, "root")
            self.assertIn(said, error["error"])
        yield self.post("/api/users", {"name": "lena", "role": "admin",
                                       "password": "12345678"}, 409, "root")
        yield self.post("/api/users/nobody", {"role": "admin"}, 404, "root")
        yield self.post("/api/users/nobody/remove", {}, 404, "root")
        yield self.post("/api/users/lena", {}, 400, "root")
        self.connection.add_user(User("ada", "admin", (), hash_password("ada's password", 1000),
                                      "t", "t"))
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        error = yield self.post("/api/users/ada/remove", {}, 409,
                                authorization=basic("ada", "ada's password"))
        self.assertIn("themselves", error["error"])


class EraseApiTests(AdminCase):
    @inlineCallbacks
    def test_erase_by_number_keeps_held_calls(self) -> None:
        """An admin erases a number's calls: gone from the disk and the
        index, the held one kept and named, the disposal record written
        as the admin's; a supervisor may not (403)."""
        files = {row["id"]: os.path.join(self.root, row["path"])
                 for row in self.connection.search_all(index.Search())}
        self.connection.hold_files([Hold("", row["path"], "7", "dispute", "t", "t")
                                    for row in self.connection.search_all(
                                        index.Search(recording_id="7"))])
        yield self.post("/api/erase", {"number": "13800138000", "reason": "GDPR 7"}, 403,
                        "sam")
        answer = yield self.post("/api/erase", {"number": "13800138000", "reason": "GDPR 7"},
                                 200, "root")
        self.assertIn("erased 1 recordings", answer["said"][0])
        self.assertIn("not erased, held: 7 (dispute)", answer["said"])
        self.assertEqual(sorted({row["id"] for row in self.connection.search_all(
            index.Search())}), ["7", "8"])  # (8: another number)
        self.assertEqual({name: os.path.exists(path) for name, path in files.items()},
                         {"7": True, "8": True, "9": False})
        record = [row.event for row in self.connection.audit_rows()
                  if row.event.action == "erase"][0]
        self.assertEqual((record.actor, record.detail["reason"]), ("root", "GDPR 7"))
        self.assertEqual([entry["id"] for entry in record.detail["erased"]], ["9"])
        error = yield self.post("/api/erase", {"number": "", "reason": "x"}, 400, "root")
        self.assertIn("number:", error["error"])
