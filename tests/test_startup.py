"""Tests for recsvc.application.startup: what start-up checks of a config
against the machine."""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from recsvc.application.startup import check_config
from recsvc.config import ConfigError, parse_config


class CheckConfigTests(SynchronousTestCase):
    """check_config checks against the machine but starts nothing."""

    def test_does_not_listen(self) -> None:
        """Checking the endpoint only parses it: nothing listens on the reactor."""
        reactor = MemoryReactorClock()
        root = os.path.abspath(self.mktemp())
        check_config(parse_config({"control": {"listen": "tcp:10000"}, "storage": {"root": root}}), reactor)
        self.assertEqual(reactor.tcpServers, [])

    def test_bad_endpoint(self) -> None:
        """A bad endpoint is a ConfigError with key control.listen."""
        config = parse_config({"control": {"listen": "bogus:1"}})
        error = self.assertRaises(ConfigError, check_config, config, MemoryReactorClock())
        self.assertEqual(error.key, "control.listen")

    def test_endpoint_that_cannot_be_built(self) -> None:
        """
        An endpoint whose parser fails for a reason other than syntax (an ssl:
        endpoint without pyOpenSSL, or whose key file is missing) is still a
        ConfigError naming control.listen, not a traceback from twistd.
        """
        missing = os.path.abspath(self.mktemp())
        config = parse_config(
            {"control": {"listen": f"ssl:10443:privateKey={missing}:certKey={missing}"}}
        )
        error = self.assertRaises(ConfigError, check_config, config, MemoryReactorClock())
        self.assertEqual(error.key, "control.listen")
