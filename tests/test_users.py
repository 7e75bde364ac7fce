"""Users, roles and scopes (recsvc.access): the pure rules, and the users
every index database keeps (one contract, on SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import sqlite3

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from recsvc.access import roles
from recsvc.access.scopes import (
    ALL, EVERYTHING, NOTHING, Group, Scope, parse_scope, parse_scopes, reach_of, unknown_groups,
    user_reach)
from recsvc.access.users import IUsers, NoSuchUser, User, UserExists
from recsvc.index import sqlite as sqlite_index
from recsvc.passwords import hash_password
from tests.support.indexes import OnPostgres, OnSqlite

HASH = hash_password("a long password", 1000)
SALES = Group("sales", frozenset({"00a859000001", "00a859000002"}), frozenset({"2001"}))


def user(name: str = "alice", role: str = "listener", scopes: tuple[str, ...] = ("group:sales",),
         password_hash: str = HASH, created_at: str = "2026-12-07T10:00:00Z") -> User:
    return User(name, role, parse_scopes(scopes), password_hash, created_at, created_at)


class RoleTests(SynchronousTestCase):
    def test_rights_of_each_role(self) -> None:
        """The rights the issue gives each role, and no more."""
        self.assertEqual(roles.ROLES["admin"], frozenset(roles.RIGHTS))
        self.assertEqual(roles.ROLES["supervisor"], {
            roles.SEARCH, roles.PLAY, roles.DOWNLOAD, roles.EXPORT, roles.NOTE, roles.HOLD})
        self.assertEqual(roles.ROLES["listener"], {roles.SEARCH, roles.PLAY})
        self.assertEqual(roles.ROLES["auditor"], {roles.AUDIT})
        self.assertFalse(roles.may("listener", roles.DOWNLOAD))
        self.assertFalse(roles.may("auditor", roles.SEARCH))
        self.assertFalse(roles.may("nobody", roles.SEARCH))

    def test_unknown_role_names_the_roles(self) -> None:
        """A role that is none says which roles there are."""
        error = self.assertRaises(ValueError, roles.check_role, "boss")
        self.assertIn("admin, supervisor, listener, auditor", str(error))


class ScopeTests(SynchronousTestCase):
    def test_written_forms(self) -> None:
        """Each kind as written; a MAC in any spelling, a number's digits."""
        self.assertEqual(parse_scope("all"), ALL)
        self.assertEqual(parse_scope("group:sales"), Scope("group", "sales"))
        self.assertEqual(parse_scope("device:00:A8:59:00:00:01"), Scope("device", "00a859000001"))
        self.assertEqual(parse_scope("number:+49 30-2001"), Scope("number", "49302001"))
        self.assertEqual(str(parse_scope("device:00a8.5900.0001")), "device:00a859000001")

    def test_bad_scopes_say_why(self) -> None:
        """Each bad scope says what is wrong with it."""
        for text, said in (("everything", "is not a scope"), ("team:sales", "is not a scope"),
                           ("group:", "is not a group name"), ("group:a b", "group name"),
                           ("device:zz", "is not a MAC address"),
                           ("number:12a", "is not a number"), ("number:", "is not a number"),
                           ("group:../x", "group name")):
            error = self.assertRaises(ValueError, parse_scope, text)
            self.assertIn(said, str(error), text)

    def test_all_goes_alone(self) -> None:
        """``all`` among others is all; the others are kept once each, in order."""
        self.assertEqual(parse_scopes(["group:b", "all", "number:1"]), (ALL,))
        self.assertEqual(parse_scopes(["number:1", "group:b", "group:b"]),
                         (Scope("group", "b"), Scope("number", "1")))

    def test_reach(self) -> None:
        """A group's devices and numbers, a device, a number; a group not
        in the config reaches nothing."""
        groups = {"sales": SALES}
        reach = reach_of(parse_scopes(["group:sales", "device:00a8590000ff"]), groups)
        self.assertTrue(reach.includes({"device": "00:a8:59:00:00:02", "local_number": "9"}))
        self.assertTrue(reach.includes({"device": "00a8590000ff", "local_number": "9"}))
        self.assertTrue(reach.includes({"device": "other", "local_number": "2001"}))
        self.assertFalse(reach.includes({"device": "00a859000003", "local_number": "2002"}))
        self.assertFalse(reach.includes({}))
        self.assertFalse(reach_of(parse_scopes(["group:support"]), groups).includes(
            {"device": "00a859000001"}))
        self.assertEqual(reach_of((ALL,), {}), EVERYTHING)
        # A role without a scope: an admin every recording, an auditor none.
        self.assertEqual(user_reach("admin", (), groups), EVERYTHING)
        self.assertEqual(user_reach("auditor", (), groups), NOTHING)
        self.assertEqual(user_reach("listener", parse_scopes(["group:sales"]), groups),
                         reach_of(parse_scopes(["group:sales"]), groups))
        self.assertEqual(unknown_groups(parse_scopes(["group:sales", "group:x"]), groups), ["x"])


class UserTests(SynchronousTestCase):
    def test_a_user(self) -> None:
        """A user's fields; the password's hash is not in its repr (nor a log line)."""
        alice = user()
        self.assertEqual((alice.name, alice.role, alice.scopes),
                         ("alice", "listener", (Scope("group", "sales"),)))
        self.assertNotIn(HASH, repr(alice))

    def test_scopes_fit_the_role(self) -> None:
        """An admin or an auditor has none; the others at least one."""
        self.assertEqual(user(role="admin", scopes=()).scopes, ())
        for role, scopes, said in (("admin", ("all",), "has no scope"),
                                   ("auditor", ("group:sales",), "has no scope"),
                                   ("listener", (), "needs a scope"),
                                   ("supervisor", (), "needs a scope")):
            error = self.assertRaises(ValueError, user, role=role, scopes=scopes)
            self.assertIn(said, str(error))
        self.assertRaises(ValueError, User, "bob", "listener", (ALL, Scope("number", "1")),
                          HASH, "t", "t")

    def test_bad_names_and_hashes(self) -> None:
        """A name basic authentication cannot carry, or that is not plain, and
        a password that is not a hash are refused."""
        for name in ("", "a:b", "a b", "-x", "x" * 65, "é", "a\nb"):
            self.assertRaises(ValueError, user, name=name)
        self.assertRaises(ValueError, user, password_hash="plain text")


class UsersContract:
    """What every index database keeps of users."""

    def setUp(self) -> None:
        self.users = self.open_test_index()

    def test_provides_the_interface(self) -> None:
        """The backend keeps users (IUsers)."""
        self.assertTrue(verifyObject(IUsers, self.users))

    def test_add_then_read(self) -> None:
        """Users added are read back as they were, by name."""
        self.assertEqual(self.users.users(), [])
        self.users.add_user(user("bob", "supervisor", ("device:00a859000001", "number:2001")))
        self.users.add_user(user("alice"))
        self.users.add_user(user("root", "admin", ()))
        self.assertEqual([each.name for each in self.users.users()], ["alice", "bob", "root"])
        self.assertEqual(self.users.user("bob"),
                         user("bob", "supervisor", ("device:00a859000001", "number:2001")))
        self.assertIsNone(self.users.user("carol"))

    def test_a_name_once(self) -> None:
        """A name taken is refused (UserExists), the user there kept."""
        self.users.add_user(user("alice"))
        self.assertRaises(UserExists, self.users.add_user, user("alice", "admin", ()))
        self.assertEqual(self.users.user("alice").role, "listener")

    def test_replace(self) -> None:
        """A user is replaced whole; replacing a user that is not there fails."""
        self.users.add_user(user("alice"))
        changed = user("alice", "supervisor", ("all",), hash_password("another one", 1000))
        self.users.replace_user(changed)
        self.assertEqual(self.users.user("alice"), changed)
        self.assertRaises(NoSuchUser, self.users.replace_user, user("nobody"))

    def test_a_new_password_or_removal_ends_the_sessions(self) -> None:
        """A new password ends the user's sessions with the change (one
        transaction), another change keeps them; a removal ends them."""
        import attrs

        from recsvc.access.sessions import Session

        self.users.add_user(user("alice"))
        self.users.add_user(user("bob"))
        for token, name in (("a" * 64, "alice"), ("b" * 64, "bob")):
            self.users.add_session(Session(token, name, 0.0, 4e9), 1.0)
        alice = self.users.user("alice")
        self.users.replace_user(attrs.evolve(alice, changed_at="later"))
        self.assertIsNotNone(self.users.session("a" * 64))
        self.users.replace_user(attrs.evolve(alice, password_hash=hash_password("new", 1000)))
        self.assertIsNone(self.users.session("a" * 64))
        self.users.remove_user("bob")
        self.assertIsNone(self.users.session("b" * 64))

    def test_remove(self) -> None:
        """A user removed is gone; removing one that is not there fails."""
        self.users.add_user(user("alice"))
        self.users.remove_user("alice")
        self.assertEqual(self.users.users(), [])
        self.assertRaises(NoSuchUser, self.users.remove_user, "alice")


class UsersOnSqlite(UsersContract, OnSqlite, SynchronousTestCase):
    def test_an_index_of_schema_4_gains_users(self) -> None:
        """An index made before users (schema 4) gets their table in place,
        its recordings kept."""
        path = os.path.join(self.mktemp(), "index.sqlite3")
        self.patch(sqlite_index, "SCHEMA_VERSION", 4)
        self.patch(sqlite_index, "_SCHEMA", sqlite_index._SCHEMA[
            :-len(sqlite_index._USERS + sqlite_index._NOTES)])
        sqlite_index.SqliteIndex.open(path).close()
        with sqlite3.connect(path) as connection:
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertNotIn("users", tables)
        self.patch(sqlite_index, "SCHEMA_VERSION", 5)
        self.patch(sqlite_index, "_SCHEMA", ())
        found_in = sqlite_index.SqliteIndex.open(path)
        self.addCleanup(found_in.close)
        self.assertEqual(found_in.schema_version(), 5)
        found_in.add_user(user())
        self.assertEqual(found_in.users(), [user()])


class UsersOnPostgres(UsersContract, OnPostgres, SynchronousTestCase):
    pass
