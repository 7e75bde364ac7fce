"""What the PostgreSQL index alone does (recsvc.index.postgres): several
nodes writing to one database, each catching up with its own recordings
only; its schema made and migrated once however many nodes start; what
it says when it cannot be opened; the ``recsvc`` commands on it. What
every index does is tests/test_index_contract.py's."""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from recsvc.cli.commands import main
from recsvc.index import store as index
from recsvc.index.backends import CannotOpenIndex, open_index, shown
from tests.support.builders import sidecar
from tests.support.indexes import OnPostgres
from tests.support.sidecars import SidecarRoot


class TwoNodesTests(OnPostgres, SynchronousTestCase):
    """Two recorder nodes, each with its own storage root, sharing one index."""

    def setUp(self) -> None:
        self.database = self.new_database()
        self.node_a = self.open_test_index("node-a", self.database)
        self.node_b = self.open_test_index("node-b", self.database)
        self.root_a = SidecarRoot(self.mktemp())
        self.root_b = SidecarRoot(self.mktemp())

    def ids(self, found_in, **search) -> list[str]:
        return sorted(row["id"] for row in index.search(found_in, index.Search(**search)))

    def test_catch_ups_see_and_forget_their_own_node_only(self) -> None:
        """Each node's catch-up indexes its own sidecars, finds unchanged
        only its own rows and forgets only its own files: a file gone from
        one node's root is forgotten there, and never another node's (not
        even by a node with no recordings, nor a full reindex). Every node
        searches them all."""
        gone = self.root_a.write(sidecar("a1"))
        self.root_a.write(sidecar("a2"), folder="00a859000002/2026/11/24")
        self.root_b.write(sidecar("b1"))
        self.assertEqual(index.catch_up(self.node_a, self.root_a.root).added, 2)
        self.assertEqual(index.catch_up(self.node_b, self.root_b.root).added, 1)
        for found_in in (self.node_a, self.node_b):
            self.assertEqual(self.ids(found_in), ["a1", "a2", "b1"])
        self.assertEqual(len(self.node_a.indexed()), 2)
        self.assertEqual(len(self.node_b.indexed()), 1)
        again = index.catch_up(self.node_b, self.root_b.root, full=True)
        self.assertEqual((again.added, again.removed), (1, 0))
        os.unlink(gone)
        done = index.catch_up(self.node_a, self.root_a.root)
        self.assertEqual((done.added, done.removed, done.unchanged), (0, 1, 1))
        self.assertEqual(self.ids(self.node_b), ["a2", "b1"])
        empty = self.open_test_index("node-c", self.database)
        empty_root = self.mktemp()
        os.makedirs(empty_root)
        nothing = index.catch_up(empty, empty_root)
        self.assertEqual(nothing.removed, 0)
        self.assertEqual(self.ids(empty), ["a2", "b1"])

    def test_the_same_path_on_two_nodes(self) -> None:
        """Two nodes may file a recording under the same path (the same
        phone and second, or a storage.path without {device}): each keeps
        its own row, indexed again or forgotten by its node alone."""
        self.root_a.write(sidecar("same", node="node-a"))
        self.root_b.write(sidecar("same", node="node-b", duration_s=7.0))
        index.catch_up(self.node_a, self.root_a.root)
        index.catch_up(self.node_b, self.root_b.root)
        found = index.search(self.node_a, index.Search(recording_id="same"))
        self.assertEqual(sorted(row["node"] for row in found), ["node-a", "node-b"])
        self.assertEqual(len({row["path"] for row in found}), 1)
        [path] = self.node_a.indexed()
        self.node_a.remove([path])
        [left] = index.search(self.node_b, index.Search(recording_id="same"))
        self.assertEqual((left["node"], left["duration_s"]), ("node-b", 7.0))

    def test_pages_after_a_cursor_give_both_nodes_rows_of_one_path(self) -> None:
        """Two nodes' recordings of the same start and path (ordered by
        node after the path) are both found page after page, after each
        page's cursor, in every order."""
        for root, found_in, node in ((self.root_a, self.node_a, "node-a"),
                                     (self.root_b, self.node_b, "node-b")):
            root.write(sidecar("same", node=node))
            index.catch_up(found_in, root.root)
        for order in index.ORDERS:
            page = index.page_of(self.node_a, index.Search(page_size=1, order=order))
            self.assertEqual((page.total, len(page.rows)), (index.Total(2, True), 1))
            second = index.page_of(self.node_a, index.Search(page_size=1, order=order,
                                                             after=page.next))
            self.assertEqual(sorted(row["node"] for row in page.rows + second.rows),
                             ["node-a", "node-b"], order)
            self.assertIsNone(second.next)

    def test_an_old_sidecars_node_is_the_indexing_nodes(self) -> None:
        """A sidecar from before nodes had names is found, on any node, as
        the recording of the node that indexed it (the row's key), not of
        the node searching: another node's is played from the archive."""
        self.root_b.write(sidecar("old"))  # (the builder's sidecars name no node)
        index.catch_up(self.node_b, self.root_b.root)
        for found_in in (self.node_a, self.node_b):
            [row] = index.search(found_in, index.Search())
            self.assertEqual(row["node"], "node-b")
            [row] = index.search_all(found_in, index.Search())
            self.assertEqual(row["node"], "node-b")

    def test_writing_needs_the_node(self) -> None:
        """An index opened to write names its node; without one it is
        refused, saying so (searching needs none)."""
        with self.assertRaises(CannotOpenIndex) as caught:
            open_index(self.database)
        self.assertIn("node", str(caught.exception))
        open_index(self.database, read_only=True).close()


class OpeningTests(OnPostgres, SynchronousTestCase):
    """The schema, made and migrated in place, and what an opening that
    fails says."""

    def test_nodes_starting_at_once_make_the_schema_once(self) -> None:
        """Several nodes opening a new database at once all open it; the
        schema is made once (one version row)."""
        database = self.new_database()
        opened, failed = [], []

        def open_one(node: str) -> None:
            try:
                opened.append(open_index(database, node=node))
            except Exception as error:  # reported below
                failed.append(error)

        threads = [threading.Thread(target=open_one, args=(f"node-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for found_in in opened:
            self.addCleanup(found_in.close)
        self.assertEqual((len(opened), failed), (4, []))
        from recsvc.index import postgres

        with opened[0].pool.connection() as connection:
            self.assertEqual(connection.execute("SELECT version FROM schema_version").fetchall(),
                             [(postgres.SCHEMA_VERSION,)])

    def test_a_later_version_migrates_in_place(self) -> None:
        """An index of version 1 is brought to this version in place when it
        is next opened to write, its rows kept (no reindex) and found
        through the new indexes (a number by its pieces, a device through
        the devices seen); a search of an older schema says how it will be
        migrated."""
        from recsvc.index import postgres

        self.assertEqual(postgres.SCHEMA_VERSION, 4)
        database = self.new_database()
        at_version_1 = self.patch(postgres, "SCHEMA_VERSION", 1)
        found_in = self.open_test_index("node-a", database)
        self.assertEqual(found_in.schema_version(), 1)
        data = sidecar("kept")
        entry = index.entry_from_sidecar(data, "d/" + data["file"][:-4] + ".json", 5)
        with found_in.pool.connection() as connection:  # as version 1 wrote rows
            connection.execute(postgres._UPSERT, found_in._row_of(entry))
        at_version_1.restore()
        with self.assertRaises(CannotOpenIndex) as caught:
            open_index(database, read_only=True)
        self.assertIn("migrated in place", str(caught.exception))
        migrated = self.open_test_index("node-a", database)
        self.assertEqual(migrated.schema_version(), 4)
        self.assertEqual(migrated.users(), [])
        self.assertEqual(migrated.notes_of("kept"), [])
        self.assertEqual(list(migrated.indexed().values()), [5])
        self.patch(index, "WALK_FIRST", 0)  # looked up, not walked
        for search in (index.Search(number="138"), index.Search(number="00138"),
                       index.Search(device="00:a8:59:00:00:01"), index.Search(device="0001")):
            self.assertEqual([row["id"] for row in migrated.search(search)], ["kept"], search)
        self.assertEqual(migrated.search(index.Search(number="00139")), [])
        with found_in.pool.connection() as connection:  # a node still at schema 1 writes on
            data = sidecar("other", device="00:a8:59:00:00:99")
            other = index.entry_from_sidecar(data, "d/" + data["file"][:-4] + ".json", 5)
            connection.execute(postgres._UPSERT, found_in._row_of(other))
        self.assertEqual([row["id"] for row in migrated.search(index.Search(device="0099"))],
                         ["other"])

    def test_a_newer_schema_refused(self) -> None:
        """An index of a later recsvc is refused, to write or to search,
        saying so."""
        database = self.new_database()
        found_in = self.open_test_index("node-a", database)
        with found_in.pool.connection() as connection:
            connection.execute("UPDATE schema_version SET version = 99")
        for read_only in (False, True):
            with self.assertRaises(CannotOpenIndex) as caught:
                open_index(database, read_only=read_only, node="node-a")
            self.assertIn("schema version 99, newer", str(caught.exception))

    def test_no_index_yet_to_search(self) -> None:
        """A search of a database without an index says there is none yet,
        and makes none."""
        database = self.new_database()
        with self.assertRaises(CannotOpenIndex) as caught:
            open_index(database, read_only=True)
        self.assertIn("no index there yet", str(caught.exception))
        self.assertIn(database, str(caught.exception))

    def test_cannot_connect_hides_the_password(self) -> None:
        """A server that cannot be reached is named, with why, and never
        with the URL's password."""
        from tests.support.servers import free_port

        url = f"postgresql://recsvc:s3cret@127.0.0.1:{free_port()}/nothing"
        with self.assertRaises(CannotOpenIndex) as caught:
            open_index(url, node="node-a")
        message = str(caught.exception)
        self.assertNotIn("s3cret", message)
        self.assertIn("postgresql://recsvc:***@127.0.0.1:", message)
        self.assertIn("refused", message)

    def test_cannot_open_never_says_the_password(self) -> None:
        """Whatever the password holds (#, ?, a space, a % libpq cannot
        decode, a /), and whether in the user part or a password=
        parameter, an opening that fails names the URL with the password
        hidden, and its reason (libpq's, which may quote the URL's parts)
        never holds the password, raw or percent-decoded."""
        from tests.support.servers import free_port

        port = free_port()
        for url, password in (
                (f"postgresql://rec:pa#ss@127.0.0.1:{port}/db", "pa#ss"),
                (f"postgresql://rec:pa?ss@127.0.0.1:{port}/db", "pa?ss"),
                (f"postgresql://rec:my secret@127.0.0.1:{port}/db", "my secret"),
                (f"postgresql://rec:hunter2%zz@127.0.0.1:{port}/db", "hunter2"),
                (f"postgresql://rec:pa/ss@127.0.0.1:{port}/db", "pa/ss"),
                (f"postgresql://rec:s%40cret@127.0.0.1:{port}/db", "s@cret"),
                (f"postgresql://rec@127.0.0.1:{port}/db?password=hunter2", "hunter2"),
                (f"postgresql://rec@127.0.0.1:{port}/db?pass%77ord=p%40ss", "p@ss")):
            with self.assertRaises(CannotOpenIndex) as caught:
                open_index(url, node="node-a")
            message = str(caught.exception)
            for part in (password, quote(password, safe="")):
                self.assertNotIn(part, message, url)
            self.assertIn("***", message)
            self.assertIn(f"@127.0.0.1:{port}/db", message)

    def test_shown_hides_any_password(self) -> None:
        """shown() keeps the user, hosts, database and parameters of a URL
        and hides its password, whatever it holds (libpq reads #, ? and a
        space in it), and a password= parameter's value, however its name
        is percent-encoded."""
        for url, expected in (
                ("postgresql://rec:pa#ss@h/db", "postgresql://rec:***@h/db"),
                ("postgresql://rec:pa?ss@h:5432/db", "postgresql://rec:***@h:5432/db"),
                ("postgresql://rec:my secret@h/db", "postgresql://rec:***@h/db"),
                ("postgresql://rec:a@b@h/db", "postgresql://rec:***@h/db"),
                ("postgres://rec@h/db?sslmode=require&password=p@ss",
                 "postgres://rec@h/db?sslmode=require&password=***"),
                ("postgresql://h/db?pass%77ord=x", "postgresql://h/db?pass%77ord=***"),
                ("postgresql://rec@h1:5432,h2/db", "postgresql://rec@h1:5432,h2/db"),
                ("var/recsvc.sqlite3", "var/recsvc.sqlite3")):
            self.assertEqual(shown(url), expected)

    def test_without_pg_trgm_says_what_to_do(self) -> None:
        """A user who may not create pg_trgm in a database without it is
        told the index needs it and who can create it."""
        database = self.new_database()
        import psycopg

        with psycopg.connect(database, autocommit=True) as connection:
            connection.execute("DROP ROLE IF EXISTS limited")
            connection.execute("CREATE ROLE limited LOGIN")
            connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            connection.execute("REVOKE CREATE ON DATABASE " + database.rsplit("/", 1)[1]
                               + " FROM PUBLIC")
        with self.assertRaises(CannotOpenIndex) as caught:
            open_index(database.replace("//recsvc@", "//limited@"), node="node-a")
        self.assertIn("pg_trgm", str(caught.exception))
        self.assertIn("CREATE EXTENSION pg_trgm", str(caught.exception))


class CommandTests(OnPostgres, SynchronousTestCase):
    """The ``recsvc`` commands on a shared index, as two nodes run them."""

    def setUp(self) -> None:
        self.database = self.new_database()
        self.roots = {}
        self.configs = {}
        for node in ("node-a", "node-b"):
            base = os.path.abspath(self.mktemp())
            self.roots[node] = SidecarRoot(os.path.join(base, "recordings"))
            os.makedirs(self.roots[node].root)
            self.configs[node] = os.path.join(base, "recsvc.yaml")
            with open(self.configs[node], "w") as handle:
                handle.write(f"node: {node}\nstorage:\n  root: {self.roots[node].root}\n"
                             f"index:\n  database: {self.database}\n")

    def run_command(self, node: str, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["--config", self.configs[node], *argv])
        return status, out.getvalue(), err.getvalue()

    def test_an_index_error_never_says_the_password(self) -> None:
        """A search the database fails is said in one line, the URL's
        password hidden should the database's message quote it."""
        import psycopg

        from recsvc.index.postgres import PostgresIndex

        url = self.database + "?password=hunter%20%202"  # (two spaces in it)
        with open(self.configs["node-a"]) as handle:
            text = handle.read()
        with open(self.configs["node-a"], "w") as handle:
            handle.write(text.replace(f"database: {self.database}", f"database: {url}"))
        self.assertEqual(self.run_command("node-a", "reindex")[0], 0)

        def failing(found_in: object, query: object) -> None:
            raise psycopg.OperationalError(
                f"lost the server\nwhile asking {url} (password 'hunter  2')")
        self.patch(PostgresIndex, "search", failing)
        status, _, err = self.run_command("node-a", "search")
        self.assertEqual(status, 1)
        self.assertNotIn("hunter", err)
        self.assertIn("recsvc search: the index: lost the server while asking ", err)

    def test_reindex_each_node_search_all(self) -> None:
        """`recsvc reindex` on a node indexes its recordings and leaves the
        other node's; `search`, `show` and `export` on either find them all."""
        status, _, err = self.run_command("node-a", "search")
        self.assertEqual(status, 1)
        self.assertIn("no index there yet", err)
        self.roots["node-a"].write(sidecar("a1", node="node-a"))
        self.roots["node-b"].write(sidecar("b1", node="node-b", remote_number="555"))
        self.assertEqual(self.run_command("node-a", "reindex")[0], 0)
        status, out, _ = self.run_command("node-b", "reindex")
        self.assertEqual(status, 0)
        self.assertIn("1 recordings indexed, 0 gone", out)
        status, out, _ = self.run_command("node-b", "search", "--json")
        self.assertEqual(sorted(row["id"] for row in json.loads(out)["recordings"]),
                         ["a1", "b1"])
        status, out, _ = self.run_command("node-a", "show", "b1")
        self.assertEqual(json.loads(out)[0]["node"], "node-b")
        status, out, _ = self.run_command("node-a", "export", "--number", "555")
        self.assertEqual(len(out.splitlines()), 2)
        status, out, _ = self.run_command("node-a", "check-config")
        self.assertEqual(status, 0, out)
        self.assertIn(f"index {self.database}", out)
