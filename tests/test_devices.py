"""Tests for recsvc.devices: MAC addresses in any spelling, and device keys."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from recsvc.devices import device_key, parse_mac


class MacTests(SynchronousTestCase):
    def test_spellings(self) -> None:
        """A MAC with colons, dashes, dots or no separators, in any case and
        with spaces around, is 12 lower-case hex digits."""
        for text in ("00:A8:59:00:00:01", "00-a8-59-00-00-01", "00a859000001",
                     "00a8.5900.0001", " 00:a8:59:00:00:01 "):
            self.assertEqual(parse_mac(text), "00a859000001", text)

    def test_not_macs(self) -> None:
        """Too few or too many digits, a letter that is not hex and mixed
        separators are ValueErrors."""
        for text in ("", "00:a8:59", "00:a8:59:00:00:0g", "00a8590000011", "00:a8-59:00:00:01x"):
            self.assertRaises(ValueError, parse_mac, text)

    def test_device_key(self) -> None:
        """A device's key is its MAC's digits when it is one, else the name
        trimmed and lower-cased."""
        self.assertEqual(device_key("00:A8:59:00:00:01"), "00a859000001")
        self.assertEqual(device_key(" Front-Desk "), "front-desk")
