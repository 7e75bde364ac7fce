"""Tests for recsvc.endpoints: listener descriptions read without a reactor."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from recsvc.endpoints import LISTEN_BACKLOG, split_description, tcp_address, with_backlog


class DescriptionTests(SynchronousTestCase):
    def test_split(self) -> None:
        """Kind, positional and keyword arguments, escapes undone."""
        self.assertEqual(split_description(r"tcp6:9090:interface=\:\:1"),
                         ("tcp6", ["9090"], {"interface": "::1"}))
        self.assertEqual(split_description("ssl:port=443:privateKey=/k.pem"),
                         ("ssl", [], {"port": "443", "privateKey": "/k.pem"}))
        self.assertEqual(split_description("unix:/run/recsvc.sock"),
                         ("unix", ["/run/recsvc.sock"], {}))

    def test_tcp_address(self) -> None:
        self.assertEqual(tcp_address("tcp:10000"), ("tcp", "", 10000))
        self.assertEqual(tcp_address("tcp:port=10000:interface=192.0.2.1"),
                         ("tcp", "192.0.2.1", 10000))
        self.assertIsNone(tcp_address("unix:/run/recsvc.sock"))
        self.assertIsNone(tcp_address("tcp:interface=127.0.0.1"))

    def test_backlog_added_where_missing(self) -> None:
        """TCP and TLS listeners get recsvc's accept queue unless they say
        their own; what Twisted builds from it has that backlog."""
        self.assertEqual(with_backlog("tcp:10000"), f"tcp:10000:backlog={LISTEN_BACKLOG}")
        self.assertEqual(with_backlog("tcp:10000:backlog=64"), "tcp:10000:backlog=64")
        self.assertEqual(with_backlog("unix:/x.sock"), "unix:/x.sock")
        endpoint = serverFromString(MemoryReactor(), with_backlog(r"tcp6:0:interface=\:\:1"))
        self.assertEqual((endpoint._backlog, endpoint._interface), (LISTEN_BACKLOG, "::1"))

    @given(st.sampled_from(["tcp", "tcp6", "ssl", "unix", "TCP"]),
           st.lists(st.text(alphabet="ab:=\\1", max_size=6), max_size=4))
    def test_any_description_reads(self, kind: str, parts: list[str]) -> None:
        """Any description splits without error, and adding the backlog
        never changes what it already said."""
        description = ":".join([kind, *parts])
        before = split_description(description)
        _, positional, keywords = split_description(with_backlog(description))
        self.assertEqual(positional, before[1])
        self.assertEqual({k: v for k, v in keywords.items() if k != "backlog"},
                         {k: v for k, v in before[2].items() if k != "backlog"})
