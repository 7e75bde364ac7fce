"""Tests for recsvc.application.endpoints: listener descriptions read without a
reactor, checked against what Twisted builds from them."""

from __future__ import annotations

import errno
import os

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from recsvc.application.endpoints import (
    LISTEN_BACKLOG, POSITIONAL_WITH_FILES, arguments, files_from, listen_failure, only_this_host, tcp_address,
    with_backlog)


def built(description: str):
    """What Twisted makes of a description, or None if it refuses it."""
    try:
        return serverFromString(MemoryReactor(), description)
    except Exception:
        return None


class DescriptionTests(SynchronousTestCase):
    def test_arguments_named_as_twisted_names_them(self) -> None:
        """Positional arguments get the names Twisted's parsers give them
        (for TCP, TCP6 and SSL, or the kinds asked for); what Twisted would
        refuse, or another kind, is None."""
        self.assertEqual(arguments("unix:/run/recsvc.sock:660", POSITIONAL_WITH_FILES),
                         ("unix", {"address": "/run/recsvc.sock", "mode": "660"}))
        self.assertEqual(arguments(r"tcp6:9090:50:interface=\:\:1"),
                         ("tcp6", {"port": "9090", "backlog": "50", "interface": "::1"}))
        self.assertEqual(arguments("tcp:10000:192.0.2.1:50"),
                         ("tcp", {"port": "10000", "interface": "192.0.2.1", "backlog": "50"}))
        self.assertIsNone(arguments("unix:/run/recsvc.sock"))
        self.assertIsNone(arguments("tcp:1:a:2:3"))  # more than Twisted takes
        self.assertIsNone(arguments("tcp:1:port=2"))  # the port twice
        self.assertIsNone(arguments("tcp:10000\\"))  # (Twisted fails on it too)

    def test_tcp_address(self) -> None:
        """The port and interface, given by keyword or in their place; an
        interface not given is every interface of the kind."""
        self.assertEqual(tcp_address("tcp:10000"), ("tcp", "", 10000))
        self.assertEqual(tcp_address("tcp:10000:192.0.2.1"), ("tcp", "192.0.2.1", 10000))
        self.assertEqual(tcp_address("tcp:port=10000:interface=192.0.2.1"),
                         ("tcp", "192.0.2.1", 10000))
        self.assertEqual(tcp_address("tcp6:9090"), ("tcp6", "::", 9090))
        self.assertEqual(tcp_address("ssl:443:/etc/key.pem"), ("ssl", "", 443))
        self.assertIsNone(tcp_address("unix:/run/recsvc.sock"))
        self.assertIsNone(tcp_address("tcp:interface=127.0.0.1"))

    def test_only_this_host(self) -> None:
        """Loopback interfaces and Unix sockets are this host's alone; every
        interface, or another address, is not."""
        for listen in ("tcp:10000:interface=127.0.0.1", r"tcp6:10000:interface=\:\:1",
                       "tcp:10000:127.0.0.2", "unix:/run/recsvc.sock",
                       "ssl:443:privateKey=k.pem:interface=127.0.0.1"):
            self.assertTrue(only_this_host(listen), listen)
        for listen in ("tcp:10000", "tcp6:10000", "tcp:10000:interface=192.0.2.1",
                       "tcp:10000:interface=0.0.0.0", "nonsense:1", "tcp:1\\"):
            self.assertFalse(only_this_host(listen), listen)

    def test_backlog_added_where_missing(self) -> None:
        """TCP and TLS listeners get recsvc's accept queue unless they give
        their own, as a keyword or in its place; what Twisted builds from
        it has that backlog."""
        self.assertEqual(with_backlog("tcp:10000"), f"tcp:10000:backlog={LISTEN_BACKLOG}")
        for own in ("tcp:10000:backlog=64", "tcp:10000:127.0.0.1:64", "tcp6:9090:64",
                    "unix:/x.sock", r"ssl:443:privateKey=C\\:backlog=64"):
            self.assertEqual(with_backlog(own), own)
        endpoint = built(with_backlog(r"tcp6:0:interface=\:\:1"))
        self.assertEqual((endpoint._backlog, endpoint._interface), (LISTEN_BACKLOG, "::1"))

    @settings(suppress_health_check=[HealthCheck.filter_too_much])
    @given(st.sampled_from(["tcp", "tcp6"]), st.sampled_from(["0", "10000", "port=10000"]),
           st.lists(st.sampled_from(["64", "127.0.0.1", r"\:\:1", "::1", "",
                                     "interface=127.0.0.1", r"interface=\:\:1", "backlog=7",
                                     "x=1", "\\", "\\\\"]), max_size=3))
    def test_as_twisted_reads_it(self, kind: str, port: str, parts: list[str]) -> None:
        """Whatever Twisted accepts, it still accepts with the backlog
        added, listening on the same port and interface with the backlog
        given or recsvc's; and tcp_address reads that port and interface."""
        description = ":".join([kind, port, *parts])
        before = built(description)
        assume(before is not None)
        after = built(with_backlog(description))
        self.assertIsNotNone(after, with_backlog(description))
        self.assertEqual((after._port, after._interface), (before._port, before._interface))
        self.assertIn(after._backlog, (before._backlog, LISTEN_BACKLOG))
        if after._backlog != before._backlog:
            self.assertEqual(before._backlog, 50)  # Twisted's default: none was given
        self.assertEqual(tcp_address(description), (kind, before._interface, before._port))


class FilesTests(SynchronousTestCase):
    """The files a listener names, taken from a config file's folder."""

    def test_relative_files_from_the_folder(self) -> None:
        """An SSL listener's key and certificates and a UNIX socket, given
        relative (by keyword or in their place), are taken from the folder;
        absolute ones and the other arguments stay as they are."""
        folder = "/etc/recsvc"
        self.assertEqual(
            arguments(files_from("ssl:8443:privateKey=key.pem:certKey=/pki/cert.pem"
                                 ":extraCertChain=chain.pem:interface=127.0.0.1", folder)),
            ("ssl", {"port": "8443", "privateKey": "/etc/recsvc/key.pem",
                     "certKey": "/pki/cert.pem", "extraCertChain": "/etc/recsvc/chain.pem",
                     "interface": "127.0.0.1"}))
        self.assertEqual(arguments(files_from("ssl:8443:key.pem", folder))[1]["privateKey"],
                         "/etc/recsvc/key.pem")
        self.assertEqual(files_from("unix:run/recsvc.sock:mode=660", folder),
                         "unix:address=/etc/recsvc/run/recsvc.sock:mode=660")

    def test_default_key_from_the_folder(self) -> None:
        """An SSL listener without privateKey reads server.pem: the folder's."""
        self.assertEqual(arguments(files_from("ssl:8443", "/etc/recsvc"))[1],
                         {"port": "8443", "privateKey": "/etc/recsvc/server.pem"})

    def test_others_as_they_are(self) -> None:
        """Descriptions without a relative file, of other kinds, or that
        Twisted would refuse, come back as they were."""
        for description in ("tcp:10000", r"tcp6:10000:interface=\:\:1", "unix:/run/x.sock",
                            "ssl:8443:privateKey=/k.pem", "systemd:domain=INET:index=0",
                            "ssl:1:a.pem:privateKey=b.pem", "tcp:1\\", "off"):
            self.assertEqual(files_from(description, "/etc/recsvc"), description)

    def test_twisted_reads_the_folders_file(self) -> None:
        """What Twisted builds from the result reads the key in the folder
        (here, missing: its error names the folder's file)."""
        folder = self.mktemp()
        error = self.assertRaises(Exception, serverFromString, MemoryReactor(),
                                  files_from("ssl:8443:privateKey=key.pem", folder))
        self.assertIn(os.path.join(folder, "key.pem"), str(error))

    @given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                   min_size=1, max_size=30))
    def test_any_folder_survives_quoting(self, name: str) -> None:
        """Colons, backslashes and equals signs in the folder are quoted:
        the description read back names the file in that very folder."""
        folder = "/" + name
        rewritten = files_from("ssl:8443:privateKey=key.pem:interface=127.0.0.1", folder)
        self.assertEqual(arguments(rewritten),
                         ("ssl", {"port": "8443", "privateKey": os.path.join(folder, "key.pem"),
                                  "interface": "127.0.0.1"}))


class ListenFailureTests(SynchronousTestCase):
    """What a listener that cannot listen tells the user, in one line."""

    def failure(self, code: int, interface: str | None = "127.0.0.1",
                port: int | str = 10000) -> CannotListenError:
        return CannotListenError(interface, port, OSError(code, os.strerror(code)))

    def test_taken(self) -> None:
        """A port in use names the key, the address, and what to do."""
        self.assertEqual(
            listen_failure("control.listen", self.failure(errno.EADDRINUSE)),
            "control.listen: 127.0.0.1:10000 is taken (another recsvc running?): stop what "
            "listens there, or set another port in control.listen")
        self.assertIn("*:8080 is taken",
                      listen_failure("http.listen", self.failure(errno.EADDRINUSE, "", 8080)))

    def test_ipv6_address_bracketed(self) -> None:
        """An IPv6 address is bracketed before its port ([::1]:10000), as in
        a URL: "::1:10000" or ":::10000" could be read more than one way."""
        for interface, where in (("::1", "[::1]:10000"), ("::", "[::]:10000"),
                                 ("fe80::1%eth0", "[fe80::1%eth0]:10000")):
            self.assertIn(f"control.listen: {where} is taken",
                          listen_failure("control.listen",
                                         self.failure(errno.EADDRINUSE, interface)))

    def test_not_allowed_and_not_here(self) -> None:
        """A privileged port and an address this machine does not have say so."""
        self.assertIn("no permission to listen on 127.0.0.1:10000",
                      listen_failure("control.listen", self.failure(errno.EACCES)))
        self.assertIn("http.listen: 192.0.2.1 is not an address of this machine",
                      listen_failure("http.listen", self.failure(errno.EADDRNOTAVAIL,
                                                                 "192.0.2.1")))

    def test_other_reasons(self) -> None:
        """Anything else: the key, the address (a UNIX socket's path) and the reason."""
        self.assertEqual(
            listen_failure("http.listen", CannotListenError(None, "/run/x.sock",
                                                            "Cannot acquire lock")),
            "http.listen: cannot listen on /run/x.sock: Cannot acquire lock")
        self.assertEqual(listen_failure("control.listen", self.failure(errno.ENOBUFS)),
                         f"control.listen: cannot listen on 127.0.0.1:10000: "
                         f"{os.strerror(errno.ENOBUFS)}")
