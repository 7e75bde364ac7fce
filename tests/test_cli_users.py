"""``recsvc user add|list|set|passwd|remove`` as an admin uses it: the
password from standard input (never the command line), each refusal a
clear message with nothing written, and the same on a shared index."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from contextlib import closing

from twisted.trial.unittest import SynchronousTestCase

from recsvc.access.scopes import Scope
from recsvc.cli.commands import main
from recsvc.index.backends import open_index
from recsvc.passwords import verify_password
from tests.support.indexes import OnPostgres
from tests.test_cli import CommandCase

GROUPS = ("groups:\n  sales:\n    devices: [\"00:a8:59:00:00:01\"]\n    numbers: [\"2001\"]\n"
          "  support:\n    numbers: [\"2100\"]\n")


class UsersCase(CommandCase):
    """A config with groups; the user commands run in-process."""

    def setUp(self) -> None:
        super().setUp()
        with open(self.config, "a", encoding="utf-8") as handle:
            handle.write(GROUPS)

    def user_command(self, *argv: str, password: str = "") -> tuple[int, str, str]:
        self.patch(sys, "stdin", io.StringIO(password))
        return self.recsvc("-c", self.config, "user", *argv)

    def stored(self, name: str):
        with closing(open_index(self.database, read_only=True)) as found_in:
            return found_in.user(name)


class UserCommandTests(UsersCase):
    def test_add_list_set_passwd_remove(self) -> None:
        """A user added with a password from standard input, listed, changed
        (role and scopes, the password kept), given a new password, removed."""
        status, out, _ = self.user_command("add", "alice", "--role", "listener", "--scope",
                                           "group:sales", password="correct horse\n")
        self.assertEqual((status, out), (0, "added alice, listener, scope group:sales\n"))
        alice = self.stored("alice")
        self.assertEqual((alice.role, alice.scopes), ("listener", (Scope("group", "sales"),)))
        self.assertTrue(verify_password("correct horse", alice.password_hash))
        self.assertEqual(self.user_command("add", "root", "--role", "admin",
                                           password="battery staple\n")[0], 0)
        status, out, _ = self.user_command("list")
        self.assertEqual([line.split()[:3] for line in out.splitlines()],
                         [["NAME", "ROLE", "SCOPES"], ["alice", "listener", "group:sales"],
                          ["root", "admin", "-"]])
        status, out, _ = self.user_command("set", "alice", "--role", "supervisor", "--scope",
                                           "number:2001", "--scope", "device:00A859000002")
        self.assertEqual(out, "changed alice, supervisor, scope device:00a859000002 "
                              "number:2001\n")
        self.assertTrue(verify_password("correct horse", self.stored("alice").password_hash))
        self.assertEqual(self.user_command("set", "alice", "--role", "listener")[0], 0)
        self.assertEqual(self.stored("alice").scopes,
                         (Scope("device", "00a859000002"), Scope("number", "2001")))
        from recsvc.access.sessions import Session

        with closing(open_index(self.database)) as found_in:
            found_in.add_session(Session("f" * 64, "alice", 0.0, 4e9), 1.0)
        status, out, _ = self.user_command("passwd", "alice", password="a new password\n")
        self.assertEqual((status, out), (0, "changed the password of alice (and ended their "
                                            "sessions of the page)\n"))
        with closing(open_index(self.database, read_only=True)) as found_in:
            self.assertIsNone(found_in.session("f" * 64))
        self.assertTrue(verify_password("a new password", self.stored("alice").password_hash))
        listed = json.loads(self.user_command("list", "--json")[1])
        self.assertEqual([(user["name"], user["role"], user["scopes"]) for user in listed],
                         [("alice", "listener", ["device:00a859000002", "number:2001"]),
                          ("root", "admin", [])])
        self.assertNotIn("hash", json.dumps(listed))
        self.assertEqual(self.user_command("remove", "alice"), (0, "removed alice\n", ""))
        self.assertIsNone(self.stored("alice"))

    def test_refusals_write_nothing(self) -> None:
        """Each bad request says what is wrong (exit status 1; 2 for an
        option argparse refuses) and changes nothing."""
        self.user_command("add", "alice", "--role", "listener", "--scope", "group:sales",
                          password="correct horse\n")
        before = self.stored("alice")
        for argv, password, status, said in (
                (("add", "bob", "--role", "listener", "--scope", "group:sales"), "short\n", 1,
                 "at least 8 characters"),
                (("add", "bob", "--role", "listener", "--scope", "group:ops"), "", 1,
                 "no group 'ops' in the config's groups: (known: sales, support)"),
                (("add", "bob", "--role", "listener"), "", 1, "a listener needs a scope"),
                (("add", "bob", "--role", "admin", "--scope", "all"), "", 1, "has no scope"),
                (("add", "bob", "--role", "listener", "--scope", "device:nope"), "", 1,
                 "is not a MAC address"),
                (("add", "alice", "--role", "admin"), "correct horse\n", 1,
                 "there is a user alice already"),
                (("add", "a:b", "--role", "admin"), "", 2, "is not a user name"),
                (("add", "bob", "--role", "boss"), "", 2, "invalid choice: 'boss'"),
                (("add", "bob", "--role", "admin", "--password", "x"), "", 2,
                 "unrecognized arguments: --password"),
                (("set", "carol", "--role", "admin"), "", 1, "no user carol"),
                (("set", "alice", "--role", "auditor", "--scope", "all"), "", 1, "has no scope"),
                (("passwd", "carol"), "correct horse\n", 1, "no user carol"),
                (("passwd", "alice"), "short\n", 1, "at least 8 characters"),
                (("remove", "carol"), "", 1, "no user carol")):
            got, out, err = self.user_command(*argv, password=password)
            self.assertEqual((got, out), (status, ""), argv)
            self.assertIn(said, err, argv)
            if status == 1:
                self.assertTrue(err.startswith(f"recsvc user {argv[0]}: "), err)
        self.assertEqual(self.stored("alice"), before)
        self.assertIsNone(self.stored("bob"))

    def test_an_admin_made_a_listener_needs_a_scope(self) -> None:
        """A role that takes a scope, given to an admin, asks for one; an
        auditor made from a listener loses the listener's."""
        self.user_command("add", "root", "--role", "admin", password="correct horse\n")
        self.assertIn("needs a scope", self.user_command("set", "root", "--role", "listener")[2])
        self.user_command("add", "ann", "--role", "listener", "--scope", "all",
                          password="correct horse\n")
        self.assertEqual(self.user_command("set", "ann", "--role", "auditor")[0], 0)
        self.assertEqual(self.stored("ann").scopes, ())


class TokenCommandTests(UsersCase):
    def test_a_token_shown_once_and_revoked(self) -> None:
        """The token is printed once, only its hash kept; a new one replaces
        it; --revoke takes it away; the password and scopes stay."""
        from recsvc.access.sessions import token_hash

        self.user_command("add", "alice", "--role", "listener", "--scope", "group:sales",
                          password="correct horse\n")
        status, out, _ = self.user_command("token", "alice")
        token = out.split()[0]
        self.assertTrue(token.startswith("rst_") and len(token) > 40, token)
        stored = self.stored("alice")
        self.assertEqual(stored.token_hash, token_hash(token))
        self.assertEqual(stored.scopes, (Scope("group", "sales"),))
        self.user_command("set", "alice", "--role", "supervisor")
        self.assertEqual(self.stored("alice").token_hash, token_hash(token))
        self.assertEqual(self.user_command("token", "alice", "--revoke")[0], 0)
        self.assertEqual(self.stored("alice").token_hash, "")


class AuditCommandTests(UsersCase):
    def test_user_changes_are_audited_and_verified(self) -> None:
        """Each change to a user is a row of the audit trail (who ran the
        command, from the command line); ``audit verify`` says the chain
        is intact, then, once a row is altered by hand, which row is not
        (exit status 1); ``audit export`` writes the rows as JSON lines."""
        import sqlite3

        from recsvc.cli.audit import system_user

        self.user_command("add", "alice", "--role", "listener", "--scope", "group:sales",
                          password="correct horse\n")
        self.user_command("set", "alice", "--scope", "number:2001")
        self.user_command("passwd", "alice", password="a new password\n")
        self.user_command("remove", "alice")
        self.user_command("remove", "alice")  # (refused: not audited)
        status, out, err = self.recsvc("-c", self.config, "audit", "export")
        rows = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([(row["seq"], row["action"], row["target"], row["source"], row["actor"])
                          for row in rows],
                         [(1, "user_add", "alice", "cli", system_user()),
                          (2, "user_change", "alice", "cli", system_user()),
                          (3, "user_password", "alice", "cli", system_user()),
                          (4, "user_remove", "alice", "cli", system_user())])
        self.assertEqual(rows[1]["detail"], {"role": "listener", "scopes": ["number:2001"]})
        self.assertNotIn("horse", out)
        self.assertEqual(self.recsvc("-c", self.config, "audit", "export", "--after", "3")[1],
                         out.splitlines(keepends=True)[3])
        status, out, _ = self.recsvc("-c", self.config, "audit", "verify")
        self.assertEqual(status, 0)
        self.assertIn(f"intact: 4 rows, the last 4 (hash {rows[3]['hash']})", out)
        anchor = f"3:{rows[2]['hash']}"
        self.assertEqual(self.recsvc("-c", self.config, "audit", "verify", "--expect", anchor)[0],
                         0)
        status, _, err = self.recsvc("-c", self.config, "audit", "verify", "--expect",
                                     f"9:{rows[2]['hash']}")
        self.assertEqual(status, 1)
        self.assertIn("row 9 is gone", err)
        status, _, err = self.recsvc("-c", self.config, "audit", "verify", "--expect",
                                     f"3:{rows[1]['hash']}")
        self.assertIn("row 3's hash is", err)
        self.assertEqual(self.recsvc("-c", self.config, "audit", "verify", "--expect", "3:x")[0],
                         2)
        with closing(sqlite3.connect(self.database)) as connection, connection:
            self.assertRaises(sqlite3.DatabaseError, connection.execute,
                              "UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        with closing(sqlite3.connect(self.database)) as connection, connection:
            connection.execute("DROP TRIGGER audit_not_changed")
            connection.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        status, out, err = self.recsvc("-c", self.config, "audit", "verify")
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("the audit trail is broken at row 2: row 2 was changed"),
                        err)


class AuditedChangeTests(UsersCase):
    def test_a_change_that_cannot_be_audited_is_not_made(self) -> None:
        """The change and its audit row go together, or neither."""
        import sqlite3

        self.user_command("add", "alice", "--role", "admin", password="correct horse\n")
        with closing(sqlite3.connect(self.database)) as connection, connection:
            connection.execute("ALTER TABLE audit RENAME TO audit_elsewhere")
        status, _, err = self.user_command("add", "bob", "--role", "admin",
                                           password="correct horse\n")
        self.assertEqual(status, 1)
        self.assertIn("audit", err)
        self.assertEqual(self.user_command("remove", "alice")[0], 1)
        self.assertIsNone(self.stored("bob"))
        self.assertIsNotNone(self.stored("alice"))

    def test_the_actor_is_the_process_user(self) -> None:
        """$USER does not name the actor: the process's real user does."""
        from recsvc.cli.audit import system_user

        self.patch(os, "environ", {**os.environ, "USER": "mallory", "LOGNAME": "mallory"})
        self.user_command("add", "alice", "--role", "admin", password="correct horse\n")
        rows = [json.loads(line) for line in
                self.recsvc("-c", self.config, "audit", "export")[1].splitlines()]
        self.assertEqual(rows[0]["actor"], system_user())
        self.assertNotEqual(system_user(), "mallory")

    def test_writing_needs_the_config(self) -> None:
        """Without -c, no index is made here for the users to be lost in."""
        self.elsewhere()
        self.patch(sys, "stdin", io.StringIO("correct horse\n"))
        status, _, err = self.recsvc("user", "add", "alice", "--role", "admin")
        self.assertEqual(status, 1)
        self.assertIn("-c FILE: the service's config file", err)
        self.assertEqual(os.listdir("."), [])

    def test_the_last_user_removed_says_the_door_opens(self) -> None:
        """Removing the last user says the HTTP side asks for no credentials again."""
        self.user_command("add", "alice", "--role", "admin", password="correct horse\n")
        status, out, _ = self.user_command("remove", "alice")
        self.assertEqual(status, 0)
        self.assertIn("no user is left, so the page and the API ask for no credentials", out)


class UserCommandOnPostgresTests(OnPostgres, SynchronousTestCase):
    def test_users_of_a_shared_index(self) -> None:
        """With index.database a PostgreSQL URL, the users are that
        database's, which every node reads."""
        database = self.new_database()
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        config = os.path.join(folder, "recsvc.yaml")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write(f"index:\n  database: {json.dumps(database)}\nnode: node-a\n")
        self.patch(sys, "stdin", io.StringIO("correct horse\n"))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["-c", config, "user", "add", "ann", "--role", "auditor"])
        out, err = out.getvalue(), err.getvalue()
        self.assertEqual((status, out, err), (0, "added ann, auditor\n", ""))
        found_in = self.open_test_index("node-b", database)
        self.assertEqual([(user.name, user.role) for user in found_in.users()],
                         [("ann", "auditor")])
