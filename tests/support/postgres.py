"""A real PostgreSQL server for the tests: a throwaway cluster made with
Debian's ``initdb`` in a temporary folder, started on a free port of
127.0.0.1 and removed when the test process ends.

One cluster serves a test process (each of trial's workers has its own);
each test takes a database of its own from it (``PostgresCluster.database``).
PostgreSQL will not run as root: as root, the cluster belongs to the
unprivileged ``postgres`` user that Debian's package creates (or ``nobody``).
``make test`` installs Debian's ``postgresql`` when it is missing; where it
cannot be found the tests that need it skip, saying why."""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from typing import Any

from twisted.trial.unittest import SkipTest

from tests.support.servers import free_port, started, stop_process, wait_until_listening

# Where Debian puts the server's programs (they are not on the PATH).
_DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"
# The one role the tests connect as (trust authentication, on 127.0.0.1 only).
ROLE = "recsvc"


def server_binaries() -> str | None:
    """The folder with initdb and postgres: Debian's newest version, else
    wherever the PATH has initdb; None if there is none."""
    found = sorted(glob.glob(_DEBIAN_BINARIES), key=_version_of)
    for folder in reversed(found):
        if os.access(os.path.join(folder, "initdb"), os.X_OK):
            return folder
    initdb = shutil.which("initdb")
    return None if initdb is None else os.path.dirname(os.path.realpath(initdb))


def _version_of(folder: str) -> tuple[int, ...]:
    version = os.path.basename(os.path.dirname(folder))
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _owner() -> pwd.struct_passwd | None:
    """Who the server runs as: None (this user) unless this is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise SkipTest("PostgreSQL will not run as root, and there is no postgres or nobody user")


class PostgresCluster:
    """A PostgreSQL server of its own: ``start`` makes and starts it,
    ``stop`` stops it and removes its folder."""

    def __init__(self, folder: str | None = None, durable: bool = False) -> None:
        """``folder``: where the cluster is kept (made there the first time,
        used again after, never removed: the benchmarks' indexes); by
        default a temporary folder, removed at ``stop``. ``durable``: as a
        real server writes (fsync on), not as throwaway test data."""
        self.port = 0
        self._kept = folder
        self._durable = durable
        self._folder: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binaries = server_binaries()
        if binaries is None:
            raise SkipTest("PostgreSQL's server is not installed (Debian's postgresql: make test "
                           "installs it)")
        owner = _owner()
        if self._kept is not None:
            os.makedirs(self._kept, exist_ok=True)
            self._folder = self._kept
        else:
            self._folder = tempfile.mkdtemp(prefix="recsvc-postgres-")
        data, sockets = os.path.join(self._folder, "data"), os.path.join(self._folder, "sockets")
        os.makedirs(sockets, exist_ok=True)
        if owner is not None:
            for path in (self._folder, sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        as_owner: dict[str, Any] = {} if owner is None else {
            "user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        if not os.path.exists(os.path.join(data, "PG_VERSION")):
            initdb = subprocess.run(
                [os.path.join(binaries, "initdb"), "--pgdata", data, "--username", ROLE,
                 "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync"],
                capture_output=True, cwd=self._folder, **as_owner)
            if initdb.returncode != 0:
                raise RuntimeError(f"initdb failed: {initdb.stderr.decode(errors='replace')}")
        # Throwaway data: no waiting for the disk.
        writes = [] if self._durable else [
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        for attempt in range(5):
            self.port = free_port()
            self._process = subprocess.Popen(
                [os.path.join(binaries, "postgres"), "-D", data, "-p", str(self.port),
                 "-k", sockets, "-c", "listen_addresses=127.0.0.1", *writes],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self._folder,
                **as_owner)
            if wait_until_listening(self._process, self.port) and self._accepting():
                atexit.register(self.stop)
                return
            stop_process(self._process)
        raise RuntimeError("PostgreSQL did not start on a free port of 127.0.0.1")

    def _accepting(self, timeout: float = 30.0) -> bool:
        """Whether the server, listening, comes to take connections (it
        refuses them while it starts up) within ``timeout`` seconds."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=5).close()
                return True
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    return False
                time.sleep(0.05)

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server, as the config takes it."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database of its own: its URL."""
        import psycopg

        name = "test_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)  # SIGTERM: a smart shutdown
            if process.stderr is not None:
                process.stderr.close()
        folder, self._folder = self._folder, None
        if folder is not None and folder != self._kept:
            shutil.rmtree(folder, ignore_errors=True)


def cluster() -> PostgresCluster:
    """This test process's cluster (see servers.started)."""
    return started(PostgresCluster)
