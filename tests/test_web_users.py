"""The API as the index database's users see it (issue 19): each role's
rights, each user's scope on every route (a recording outside it is the
404 of one that does not exist), and credentials asked for as soon as a
user exists; end to end over loopback, with a real SQLite index."""

from __future__ import annotations

import base64
import json

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from recsvc.access.scopes import Group, parse_scopes
from recsvc.access.users import User
from recsvc.config import BasicUser, HttpAuthConfig
from recsvc.index import store as index
from recsvc.passwords import hash_password
from recsvc.web import auth as httpauth
from tests.test_webapi import HttpTestsMixin

SALES = Group("sales", frozenset({"00a859000001"}))
SUPPORT = Group("support", numbers=frozenset({"2100"}))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class UsersCase(HttpTestsMixin, TestCase):
    """Recordings 7 and 8 of a sales phone, 9 of support's line 2100 on
    another phone; the recording in progress is a sales phone's."""

    groups = {"sales": SALES, "support": SUPPORT}

    def setUp(self) -> None:
        super().setUp()
        self.finished_recording("9", b"\xd5" * 800, "2026-11-24T12:00:00.000Z",
                                device="00:a8:59:00:00:02", local_number="2100")
        index.catch_up(self.connection, self.root)
        self.add_user("lena", "listener", "group:sales")
        self.add_user("sam", "supervisor", "group:support")
        self.add_user("audrey", "auditor")
        self.clock.advance(httpauth.DIRECTORY_REFRESH)  # (the users read again)

    def add_user(self, name: str, role: str, *scopes: str) -> None:
        self.connection.add_user(User(name, role, parse_scopes(scopes),
                                      hash_password(f"{name}'s password", 1000), "t", "t"))

    def as_user(self, name: str) -> dict[str, str]:
        return {"authorization": basic(name, f"{name}'s password")}

    @inlineCallbacks
    def ids(self, name: str, query: str = "") -> list[str]:
        found = yield self.get_json(f"/api/recordings{query}", **self.as_user(name))
        return [row["id"] for row in found["recordings"]]


class ScopeTests(UsersCase):
    @inlineCallbacks
    def test_each_sees_their_teams_calls(self) -> None:
        """A listener of sales finds sales' calls only (with their total),
        a supervisor of support support's; a search for another team's
        number finds nothing."""
        self.assertEqual((yield self.ids("lena")), ["8", "7"])
        self.assertEqual((yield self.ids("sam")), ["9"])
        found = yield self.get_json("/api/recordings", **self.as_user("lena"))
        self.assertEqual((found["total"], found["total_exact"]), (2, True))
        self.assertEqual((yield self.ids("sam", "?number=2100")), ["9"])
        self.assertEqual((yield self.ids("lena", "?number=2100")), [])

    @inlineCallbacks
    def test_another_teams_call_is_a_404_on_every_route(self) -> None:
        """By id, its audio decoded or original: the same 404 as for an id
        that does not exist."""
        for path in ("/api/recordings/9", "/api/recordings/9/audio",
                     "/api/recordings/nothing", "/api/recordings/nothing/audio"):
            error = yield self.get_json(path, 404, **self.as_user("lena"))
            self.assertIn("no finished recording with id", error["error"], path)
        for path in ("/api/recordings/7", "/api/recordings/7/audio",
                     "/api/recordings/7/audio?format=original"):
            error = yield self.get_json(path, 404, **self.as_user("sam"))
            self.assertEqual(error["error"], "no finished recording with id '7'", path)
        response, body = yield self.get("/api/recordings/9/audio?format=original",
                                        **self.as_user("sam"))
        self.assertEqual(response.code, 200)
        self.assertTrue(body.startswith(b"RIFF"))

    @inlineCallbacks
    def test_calls_in_progress_within_scope(self) -> None:
        """The calls in progress of the user's scope only."""
        active = yield self.get_json("/api/active", **self.as_user("lena"))
        self.assertEqual([call["id"] for call in active["active"]], ["live-1"])
        active = yield self.get_json("/api/active", **self.as_user("sam"))
        self.assertEqual(active["active"], [])


class RightsTests(UsersCase):
    @inlineCallbacks
    def test_a_listener_plays_but_does_not_download(self) -> None:
        """A listener hears a call of their scope; its original file is a
        403 naming what the role may not do."""
        response, _ = yield self.get("/api/recordings/7/audio", **self.as_user("lena"))
        self.assertEqual(response.code, 200)
        error = yield self.get_json("/api/recordings/7/audio?format=original", 403,
                                    **self.as_user("lena"))
        self.assertEqual(error["error"], "a user of role listener may not download recordings "
                                         "(format=original)")
        # (Refused before the scope is looked at: another team's call too.)
        yield self.get_json("/api/recordings/9/audio?format=original", 403,
                            **self.as_user("lena"))

    @inlineCallbacks
    def test_an_auditor_sees_no_recording(self) -> None:
        """An auditor is refused (403) every recording's route and the metrics."""
        for path in ("/api/recordings", "/api/recordings/7", "/api/recordings/7/audio",
                     "/api/active", "/metrics"):
            response, _ = yield self.get(path, **self.as_user("audrey"))
            self.assertEqual(response.code, 403, path)

    @inlineCallbacks
    def test_metrics_for_admins_only(self) -> None:
        """The metrics are an admin's (or the token's), not a listener's or
        a supervisor's."""
        for name in ("lena", "sam"):
            error = yield self.get_json("/metrics", 403, **self.as_user(name))
            self.assertIn("an admin, or the token, may", error["error"])


class BootstrapAdminTests(UsersCase):
    auth = HttpAuthConfig(users=(BasicUser("root", hash_password("root's password", 1000)),))

    @inlineCallbacks
    def test_http_auth_users_are_admins(self) -> None:
        """http.auth's users keep working beside the database's, as admins
        (every recording, the metrics)."""
        self.assertEqual((yield self.ids("root")), ["9", "8", "7"])
        response, _ = yield self.get("/metrics", **self.as_user("root"))
        self.assertEqual(response.code, 200)
        self.assertEqual((yield self.ids("lena")), ["8", "7"])


class DatabaseAdminTests(UsersCase):
    @inlineCallbacks
    def test_an_admin_of_the_database_reaches_every_recording(self) -> None:
        """An admin kept in the index database (no scope, as the role has
        none) finds and opens every recording, as http.auth's admins do."""
        self.add_user("ada", "admin")
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        self.assertEqual((yield self.ids("ada")), ["9", "8", "7"])
        yield self.get_json("/api/recordings/9", **self.as_user("ada"))


class FirstUserTests(HttpTestsMixin, TestCase):
    """No user, no http.auth: open, as before; the first user added closes
    it (within the users' refresh), a user removed or given a new password
    is refused with the old."""

    @inlineCallbacks
    def test_the_first_user_closes_the_door(self) -> None:
        """Open; a user added: credentials asked for (any Host then), the
        old password refused once changed; the last user removed: open."""
        yield self.get_json("/api/recordings")
        self.connection.add_user(User("ann", "admin", (), hash_password("first one", 1000),
                                      "t", "t"))
        yield self.get_json("/api/recordings")  # (the users as read before)
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        error = yield self.get_json("/api/recordings", 401)
        self.assertEqual(error["error"], "authentication required")
        yield self.get_json("/api/recordings", authorization=basic("ann", "first one"))
        # Any Host now (credentials are asked for); /healthz still open.
        yield self.get_json("/api/active", host="recordings.example",
                            authorization=basic("ann", "first one"))
        yield self.get_json("/healthz")
        self.connection.replace_user(User("ann", "admin", (), hash_password("second one", 1000),
                                          "t", "t"))
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        yield self.get_json("/api/recordings", 401, authorization=basic("ann", "first one"))
        yield self.get_json("/api/recordings", authorization=basic("ann", "second one"))
        self.connection.remove_user("ann")
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        yield self.get_json("/api/recordings")  # (open again: no user left)

    @inlineCallbacks
    def test_users_unreadable_is_a_503(self) -> None:
        """An index whose users cannot be read (never read before): 503,
        saying so, with Retry-After."""
        self.connection.sqlite.execute("DROP TABLE users")
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        self.site.gate.directory.users = None
        response, body = yield self.get("/api/recordings")
        self.assertEqual(response.code, 503)
        self.assertIn(b"the users cannot be read", body)


class AuditTests(UsersCase):
    """What signed-in users do is in the audit trail, whose chain holds."""

    def trail(self) -> list:
        self.site.auditor.flush()
        return self.connection.audit_rows()

    @inlineCallbacks
    def test_sign_ins_searches_downloads_and_plays(self) -> None:
        """A failed sign-in; a search with its query; a download; a play as
        one row of the ranges fetched (basic authentication's requests
        carry their user; a session's sign-in is a row of its own)."""
        from recsvc.access.audit import verify

        yield self.get_json("/api/recordings?number=138&page_size=5", **self.as_user("lena"))
        yield self.get_json("/api/recordings", 401, authorization=basic("lena", "guess"))
        yield self.get("/api/recordings/9/audio?format=original", **self.as_user("sam"))
        for wanted in ("bytes=0-99", "bytes=100-199", "bytes=50-149"):
            response, _ = yield self.get("/api/recordings/7/audio", range=wanted,
                                         **self.as_user("lena"))
            self.assertEqual(response.code, 206)
        rows = self.trail()
        said = [(row.event.actor, row.event.action, row.event.target) for row in rows]
        self.assertEqual(said, [("lena", "search", ""), ("lena", "login_failed", ""),
                                ("sam", "download", "9"), ("lena", "play", "7")])
        self.assertEqual(rows[0].event.detail, {"query": {"number": "138", "page_size": "5"}})
        self.assertEqual(rows[2].event.detail["file"], "20261124T100000Z_out_13800138000_9.wav")
        play = rows[3].event.detail
        self.assertEqual((play["ranges"], play["bytes"], play["requests"]), ([[0, 199]], 200, 3))
        self.assertEqual({row.event.source for row in rows}, {"127.0.0.1"})
        self.assertTrue(verify(rows).intact)

    @inlineCallbacks
    def test_refused_when_the_trail_cannot_be_written(self) -> None:
        """A search or a download that cannot be audited is refused (503)."""
        yield self.get_json("/api/recordings", **self.as_user("sam"))  # (signed in)
        self.connection.sqlite.execute("ALTER TABLE audit RENAME TO audit_elsewhere")
        for path in ("/api/recordings", "/api/recordings/9/audio?format=original"):
            error = yield self.get_json(path, 503, **self.as_user("sam"))
            self.assertIn("the audit trail cannot be written", error["error"])
        self.flushLoggedErrors()


class RefusedAuditTests(UsersCase):
    @inlineCallbacks
    def test_refusals_are_in_the_trail(self) -> None:
        """A right the role lacks (403) and another team's call by its id
        (404) are written as "refused": who, what they asked for, why."""
        yield self.get_json("/api/recordings/7/audio?format=original", 403,
                            **self.as_user("lena"))
        yield self.get_json("/api/recordings/9", 404, **self.as_user("lena"))
        refused = [row.event for row in self.connection.audit_rows()
                   if row.event.action == "refused"]
        self.assertEqual([(event.actor, event.target, event.detail["status"])
                          for event in refused],
                         [("lena", "/api/recordings/7/audio", 403),
                          ("lena", "/api/recordings/9", 404)])
        self.assertEqual(refused[1].detail["reason"], "no finished recording with id '9'")
        # The same refusal again within a minute is counted, then said once.
        for _ in range(3):
            yield self.get_json("/api/recordings/9", 404, **self.as_user("lena"))
        self.clock.advance(61)
        yield self.get_json("/api/recordings/9", 404, **self.as_user("lena"))
        refused = [row.event for row in self.connection.audit_rows()
                   if row.event.action == "refused"]
        self.assertEqual([event.detail.get("repeated") for event in refused], [None, None, 3])


class OpenAuditTests(HttpTestsMixin, TestCase):
    @inlineCallbacks
    def test_nothing_written_where_no_one_signs_in(self) -> None:
        """The open default names no one: nothing is written."""
        yield self.get_json("/api/recordings?number=138")
        response, _ = yield self.get("/api/recordings/7/audio?format=original")
        self.assertEqual(response.code, 200)
        self.site.auditor.flush()
        self.assertEqual(self.connection.audit_rows(), [])


class DirectoryFailureTests(HttpTestsMixin, TestCase):
    """The users that cannot be read never leave the door as it was for
    long; a row no user is left out; http.auth's token never waits."""

    @inlineCallbacks
    def test_unreadable_users_close_the_open_door_within_a_minute(self) -> None:
        """Open, then the users cannot be read: the last ones (none) a minute
        at most, then 503 until they can."""
        yield self.get_json("/api/recordings")  # (open: no user)
        self.connection.sqlite.execute("ALTER TABLE users RENAME TO users_elsewhere")
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        yield self.get_json("/api/recordings")  # (the last users, a while)
        self.clock.advance(httpauth.DIRECTORY_STALE_AT_MOST)
        error = yield self.get_json("/api/recordings", 503)
        self.assertIn("the users cannot be read", error["error"])
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_a_row_that_is_no_user_is_left_out(self) -> None:
        """A role of a later version (on a shared index): that row is left
        out, logged; the others sign in, and the door stays closed."""
        self.connection.add_user(User("ann", "admin", (), hash_password("ann's one", 1000),
                                      "t", "t"))
        with self.connection.sqlite:
            self.connection.sqlite.execute(
                "INSERT INTO users VALUES ('olga', 'operator', '', ?, 't', 't', '')",
                (hash_password("olga's one", 1000),))
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        yield self.get_json("/api/recordings", 401)
        yield self.get_json("/api/recordings", authorization=basic("ann", "ann's one"))
        yield self.get_json("/api/recordings", 401, authorization=basic("olga", "olga's one"))


class TokenNeverWaitsTests(HttpTestsMixin, TestCase):
    auth = HttpAuthConfig(token="a-long-bearer-token-0123456789")

    @inlineCallbacks
    def test_the_token_does_not_wait_for_the_users(self) -> None:
        """With the index's users not read (its thread busy with a long
        catch-up), the token's requests are answered all the same."""
        from twisted.internet.defer import Deferred

        directory = self.site.gate.directory
        directory.users = None
        self.patch(directory, "_run_index", lambda f, *args: Deferred())
        response, _ = yield self.get("/metrics",
                                     authorization="Bearer a-long-bearer-token-0123456789")
        self.assertEqual(response.code, 200)


class AuditApiTests(UsersCase):
    @inlineCallbacks
    def test_auditors_read_the_trail(self) -> None:
        """An auditor (and an admin) reads the trail, newest first, by
        filters and pages; the others may not (403); a bad filter is a 400
        naming it."""
        yield self.get_json("/api/recordings?number=138", **self.as_user("lena"))
        yield self.get("/api/recordings/9/audio?format=original", **self.as_user("sam"))
        trail = yield self.get_json("/api/audit", **self.as_user("audrey"))
        self.assertEqual([(row["actor"], row["action"]) for row in trail["rows"]],
                         [("sam", "download"), ("lena", "search")])
        self.assertIsNone(trail["next"])
        found = yield self.get_json("/api/audit?actor=sam&action=download",
                                    **self.as_user("audrey"))
        self.assertEqual([row["target"] for row in found["rows"]], ["9"])
        first = yield self.get_json("/api/audit?limit=1", **self.as_user("audrey"))
        rest = yield self.get_json(f"/api/audit?limit=10&before={first['next']}",
                                   **self.as_user("audrey"))
        self.assertEqual([row["seq"] for row in first["rows"] + rest["rows"]],
                         [row["seq"] for row in trail["rows"]])
        later = yield self.get_json("/api/audit?since=2100-01-01", **self.as_user("audrey"))
        self.assertEqual(later["rows"], [])
        for name in ("lena", "sam"):
            yield self.get_json("/api/audit", 403, **self.as_user(name))
        for query, said in (("action=dance", "action:"), ("limit=0", "limit:"),
                            ("before=x", "before:"), ("since=yesterday", "since:")):
            error = yield self.get_json(f"/api/audit?{query}", 400, **self.as_user("audrey"))
            self.assertIn(said, error["error"])


class SessionTests(UsersCase):
    """The page's sign-in: POST /login with the user's name and password
    begins a session (HttpOnly, SameSite=Strict cookie; its CSRF token in
    a cookie the page reads); the API takes the cookie; POST /logout, with
    the CSRF token, ends it; the session ends by itself after its time."""

    @inlineCallbacks
    def sign_in(self, name: str):
        response, body = yield self.get("/login", method=b"POST", **self.as_user(name))
        self.assertEqual(response.code, 200, body)
        cookies = {}
        for header in response.headers.getRawHeaders(b"set-cookie"):
            name_value, *attributes = header.decode().split("; ")
            key, _, value = name_value.partition("=")
            cookies[key] = (value, {attribute.lower() for attribute in attributes})
        return json.loads(body), cookies

    @inlineCallbacks
    def test_sign_in_use_sign_out(self) -> None:
        """Signed in: the cookies as said; the API and the page by the
        cookie, within the user's scope; signed out with the CSRF token
        only; an ended session or one past its time is refused; each
        sign-in and sign-out audited."""
        from recsvc.access.sessions import SESSION_SECONDS

        answer, cookies = yield self.sign_in("lena")
        self.assertEqual((answer["user"], answer["role"]), ("lena", "listener"))
        token, attributes = cookies["recsvc_session"]
        self.assertTrue({"httponly", "samesite=strict", "path=/"} <= attributes)
        self.assertNotIn("secure", attributes)  # (plain HTTP here; Secure over TLS)
        csrf, csrf_attributes = cookies["recsvc_csrf"]
        self.assertNotIn("httponly", csrf_attributes)
        cookie = f"recsvc_session={token}"
        found = yield self.get_json("/api/recordings", cookie=cookie)
        self.assertEqual([row["id"] for row in found["recordings"]], ["8", "7"])  # (her scope)
        response, _ = yield self.get("/", cookie=cookie)
        self.assertEqual(response.code, 200)
        error = yield self.get_json("/logout", 403, method=b"POST", cookie=cookie)
        self.assertIn("X-CSRF-Token", error["error"])
        yield self.get_json("/logout", method=b"POST", cookie=cookie, x_csrf_token=csrf)
        self.clock.advance(5)  # (what another node read of it, refreshed)
        yield self.get_json("/api/recordings", 401, cookie=cookie)
        _, cookies = yield self.sign_in("sam")
        cookie = f"recsvc_session={cookies['recsvc_session'][0]}"
        self.clock.advance(SESSION_SECONDS)
        yield self.get_json("/api/recordings", 401, cookie=cookie)
        self.site.auditor.flush()
        said = [(row.event.actor, row.event.action) for row in self.connection.audit_rows()]
        self.assertEqual(said, [("lena", "login"), ("lena", "search"), ("lena", "logout"),
                                ("sam", "login")])

    @inlineCallbacks
    def test_refusals(self) -> None:
        """A wrong password (401, no browser prompt), a made-up or ended
        cookie (401), the token (no session), GET /logout (405), a
        removed user's session (401)."""
        response, body = yield self.get("/login", method=b"POST",
                                        authorization=basic("lena", "guess"))
        self.assertEqual((response.code, json.loads(body)["error"]),
                         (401, "wrong user name or password"))
        self.assertIsNone(response.headers.getRawHeaders(b"www-authenticate"))
        response, _ = yield self.get("/api/recordings", cookie="recsvc_session=" + "0" * 64)
        self.assertEqual(response.code, 401)
        # (No browser prompt for a page whose session ended: its answer
        # would outlive a sign-out.)
        self.assertIsNone(response.headers.getRawHeaders(b"www-authenticate"))
        yield self.get_json("/logout", 405)
        _, cookies = yield self.sign_in("lena")
        cookie = f"recsvc_session={cookies['recsvc_session'][0]}"
        self.connection.remove_user("lena")
        self.clock.advance(5)
        yield self.get_json("/api/recordings", 401, cookie=cookie)
        # A new password ends the sessions begun with the old one.
        _, cookies = yield self.sign_in("sam")
        cookie = f"recsvc_session={cookies['recsvc_session'][0]}"
        yield self.get_json("/api/recordings", cookie=cookie)
        self.assertEqual(self.connection.end_sessions_of("sam"), 1)
        self.clock.advance(5)
        yield self.get_json("/api/recordings", 401, cookie=cookie)
        yield self.get_json("/api/recordings", 405, method=b"POST")


class SessionTokenTests(UsersCase):
    auth = HttpAuthConfig(token="a-long-bearer-token-0123456789")

    @inlineCallbacks
    def test_the_token_begins_no_session(self) -> None:
        """The bearer token is for scripts: it begins no session."""
        error = yield self.get_json("/login", 400, method=b"POST",
                                    authorization="Bearer a-long-bearer-token-0123456789")
        self.assertIn("begins no session", error["error"])


class UserTokenTests(UsersCase):
    @inlineCallbacks
    def test_a_users_token_has_their_rights_and_scope(self) -> None:
        """``recsvc user token`` gives a user a bearer token of their own,
        with their rights and scope, audited as them; a revoked or made-up
        one is refused."""
        import attrs

        from recsvc.access.sessions import token_hash

        lena = self.connection.user("lena")
        self.connection.replace_user(attrs.evolve(lena, token_hash=token_hash("rst_lenas")))
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        found = yield self.get_json("/api/recordings", authorization="Bearer rst_lenas")
        self.assertEqual([row["id"] for row in found["recordings"]], ["8", "7"])
        yield self.get_json("/api/recordings/7/audio?format=original", 403,
                            authorization="Bearer rst_lenas")
        yield self.get_json("/api/recordings", 401, authorization="Bearer rst_made_up")
        self.site.auditor.flush()
        self.assertEqual([(row.event.actor, row.event.action)
                          for row in self.connection.audit_rows()],
                         [("lena", "search"), ("lena", "refused")])
        self.connection.replace_user(lena)
        self.clock.advance(httpauth.DIRECTORY_REFRESH)
        yield self.get_json("/api/recordings", 401, authorization="Bearer rst_lenas")
