"""Tests for recsvc.endpoints: listener descriptions read without a
reactor, checked against what Twisted builds from them."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from recsvc.endpoints import LISTEN_BACKLOG, arguments, only_this_host, tcp_address, with_backlog


def built(description: str):
    """What Twisted makes of a description, or None if it refuses it."""
    try:
        return serverFromString(MemoryReactor(), description)
    except Exception:
        return None


class DescriptionTests(SynchronousTestCase):
    def test_arguments_named_as_twisted_names_them(self) -> None:
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
