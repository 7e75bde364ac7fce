"""Tests for recsvc.phonesim.fleet: who the simulated phones of a run are (ids,
MAC addresses, numbers, directions, source addresses, key presses)."""

from __future__ import annotations

import ipaddress
import random
import re

from twisted.trial.unittest import SynchronousTestCase

from recsvc.phonesim.fleet import (
    KEY_PRESS_TICKS,
    AddressRange,
    DevicePrefix,
    Fleet,
    FleetError,
    NumberPattern,
    key_presses,
    parse_device_prefix,
    parse_digits,
    parse_number_pattern,
    parse_source_addresses,
    run_prefix,
)
from recsvc.storage.naming import safe_component


class RunPrefixTests(SynchronousTestCase):
    def test_letters_and_digits(self) -> None:
        """A run prefix is 8 lower-case letters and digits: ids built on it
        pass the protocol and file names unchanged."""
        for seed in range(50):
            prefix = run_prefix(1_790_000_000.0 + 7919 * seed, random.Random(seed))
            self.assertRegex(prefix, r"^[0-9a-z]{8}$")
            self.assertEqual(safe_component(f"{prefix}-499"), f"{prefix}-499")

    def test_runs_get_different_prefixes(self) -> None:
        """Runs a second apart, or in the same second, get different
        prefixes (the same second: by the random part)."""
        rng = random.Random(1)
        self.assertNotEqual(run_prefix(1_790_000_000.0, rng), run_prefix(1_790_000_001.0, rng))
        same_second = {run_prefix(1_790_000_000.5, rng) for _ in range(20)}
        self.assertEqual(len(same_second), 20)

    def test_time_part_follows_the_clock(self) -> None:
        """The first five characters are the second the run began, in base
        36: later runs sort after earlier ones (within about 700 days)."""
        early = run_prefix(1_790_000_000.0, random.Random(2))
        late = run_prefix(1_790_000_000.0 + 86400, random.Random(3))
        self.assertLess(early[:5], late[:5])


class SourceAddressTests(SynchronousTestCase):
    def test_range(self) -> None:
        """A-B takes both ends and what lies between."""
        addresses = parse_source_addresses("127.0.0.2-127.0.0.250")
        self.assertEqual(addresses, AddressRange(ipaddress.IPv4Address("127.0.0.2"), 249))
        self.assertEqual((addresses.address(0), addresses.last), ("127.0.0.2", "127.0.0.250"))

    def test_cidr_hosts(self) -> None:
        """A CIDR gives its host addresses (not the network's nor its
        broadcast address); /31 and /32 give all theirs; host bits set are
        forgiven."""
        net = parse_source_addresses("127.0.1.0/24")
        self.assertEqual((net.address(0), net.last, net.count), ("127.0.1.1", "127.0.1.254", 254))
        self.assertEqual(parse_source_addresses("127.0.1.7/24"), net)
        one = parse_source_addresses("127.0.0.9/32")
        self.assertEqual((one.address(0), one.count), ("127.0.0.9", 1))
        self.assertEqual(parse_source_addresses("127.0.0.8/31").count, 2)

    def test_one_address(self) -> None:
        """One address is a range of one: every phone sends from it."""
        one = parse_source_addresses("127.0.0.3")
        self.assertEqual([one.address(i) for i in range(3)], ["127.0.0.3"] * 3)

    def test_phones_take_turns(self) -> None:
        """Phone i sends from the (i mod count)th address."""
        addresses = parse_source_addresses("127.0.0.2-127.0.0.4")
        self.assertEqual([addresses.address(i) for i in range(7)],
                         ["127.0.0.2", "127.0.0.3", "127.0.0.4"] * 2 + ["127.0.0.2"])

    def test_wrong(self) -> None:
        """A range that ends before it begins, something that is not an
        IPv4 address (IPv6 too) or not a network: each said so."""
        for text, said in [
            ("127.0.0.9-127.0.0.2", "ends before it begins"),
            ("127.0.0.2-127.0.0.300", "'127.0.0.300' is not an IPv4 address"),
            ("localhost", "'localhost' is not an IPv4 address"),
            ("::1", "'::1' is not an IPv4 address"),
            ("127.0.0.0/33", "is not an IPv4 network"),
            ("", "'' is not an IPv4 address"),
        ]:
            with self.assertRaises(FleetError) as caught:
                parse_source_addresses(text)
            self.assertIn(said, str(caught.exception), text)


class NumberPatternTests(SynchronousTestCase):
    def test_hashes_take_the_phone_number(self) -> None:
        """Each # is a digit of the phone's number, zero-padded, left to
        right, wherever the # are."""
        self.assertEqual(parse_number_pattern("+49301234####").number(7), "+493012340007")
        self.assertEqual(parse_number_pattern("1#2#").number(34), "1324")
        self.assertEqual(parse_number_pattern("*31#").number(5), "*315")

    def test_capacity(self) -> None:
        """n # give 10**n numbers; without # every phone calls the same."""
        self.assertEqual(NumberPattern("00##").capacity, 100)
        fixed = parse_number_pattern("+4930123456")
        self.assertEqual({fixed.number(i) for i in range(5)}, {"+4930123456"})

    def test_wrong(self) -> None:
        """Anything but digits, a leading +, * and # is refused, naming
        what is wrong."""
        for text, said in [("030-1234", "'-'"), ("12+34", "'+'"), ("abc#", "'abc'"),
                           ("", "an empty pattern"), ("12 34", "' '")]:
            with self.assertRaises(FleetError) as caught:
                parse_number_pattern(text)
            self.assertIn(said, str(caught.exception), text)


class DevicePrefixTests(SynchronousTestCase):
    def test_any_spelling(self) -> None:
        """Colons, dashes, dots or none, in either case."""
        for text in ("00:a8:59", "00-A8-59", "00a8.59", "00A859"):
            self.assertEqual(parse_device_prefix(text), DevicePrefix("00a859"))

    def test_devices(self) -> None:
        """Phone i's MAC address is the prefix and i in the remaining hex
        digits, written with colons."""
        prefix = parse_device_prefix("00:a8:59")
        self.assertEqual(prefix.device(0), "00:a8:59:00:00:00")
        self.assertEqual(prefix.device(499), "00:a8:59:00:01:f3")
        self.assertEqual(parse_device_prefix("02:00:0").device(1), "02:00:00:00:00:01")
        self.assertEqual(DevicePrefix("00a85912345").capacity, 16)

    def test_wrong(self) -> None:
        """Not hex, or too long to leave a digit for the phone's number."""
        with self.assertRaises(FleetError) as caught:
            parse_device_prefix("00:zz")
        self.assertIn("not hex digits", str(caught.exception))
        with self.assertRaises(FleetError) as caught:
            parse_device_prefix("00:a8:59:12:34:56")
        self.assertIn("12 hex digits: at most 11", str(caught.exception))


class KeyTests(SynchronousTestCase):
    def test_keys(self) -> None:
        """0-9, *, # and A-D, any case; none is allowed; others refused."""
        self.assertEqual(parse_digits("19*#abcd"), "19*#ABCD")
        self.assertEqual(parse_digits(""), "")
        with self.assertRaises(FleetError) as caught:
            parse_digits("12x")
        self.assertIn("keys are 0-9, *, # and A-D", str(caught.exception))

    def test_presses_spread_over_the_call(self) -> None:
        """The keys are pressed in order, evenly over the call, each on a
        packet's start and held KEY_PRESS_TICKS, with audio around each."""
        presses = key_presses("1#A", 8000 * 4, 160)
        self.assertEqual([(event, ticks) for _, event, ticks in presses],
                         [(1, KEY_PRESS_TICKS), (11, KEY_PRESS_TICKS), (12, KEY_PRESS_TICKS)])
        starts = [start for start, _, _ in presses]
        self.assertEqual(starts, [8000, 16000, 24000])
        presses = key_presses("12", 8000 * 3, 240)
        self.assertEqual([start % 240 for start, _, _ in presses], [0, 0])
        self.assertEqual(key_presses("", 8000, 160), ())

    def test_too_many_keys_for_the_call(self) -> None:
        """Keys that do not fit, each with a packet of audio either side,
        are refused, saying how long the call must be."""
        with self.assertRaises(FleetError) as caught:
            key_presses("1234567890", 8000, 160)
        self.assertIn("10 key presses of 160 ms need calls of at least 2.2 s (--duration)",
                      str(caught.exception))
        self.assertEqual(len(key_presses("1234567890", 17600, 160)), 10)
        self.assertRaises(FleetError, key_presses, "1234567890", 17599, 160)


class FleetTests(SynchronousTestCase):
    def test_calls(self) -> None:
        """Phone i's call: the run's prefix and i as its id, its own MAC
        address and number, its source address, the keys."""
        fleet = Fleet("k3x9a7qz", parse_device_prefix("00:a8:59"),
                      parse_number_pattern("+4930####"), "out",
                      parse_source_addresses("127.0.0.2-127.0.0.3"), "12")
        call = fleet.call(2)
        self.assertEqual(
            (call.recording_id, call.device, call.direction, call.remote_number,
             call.source_address, call.keys),
            ("k3x9a7qz-2", "00:a8:59:00:00:02", "out", "+49300002", "127.0.0.2", "12"))
        self.assertTrue(all(re.fullmatch(r"k3x9a7qz-\d+", fleet.call(i).recording_id)
                            for i in range(10)))
        self.assertIsNone(Fleet("p").call(0).source_address)

    def test_mixed_directions(self) -> None:
        """mixed: even-numbered phones call out, odd ones are called."""
        fleet = Fleet("p", direction="mixed")
        self.assertEqual([fleet.call(i).direction for i in range(4)], ["out", "in", "out", "in"])
        self.assertEqual({Fleet("p", direction="in").call(i).direction for i in range(3)}, {"in"})

    def test_problems_name_the_option(self) -> None:
        """More phones than the device prefix or the number pattern can
        tell apart: each said, with the option to change."""
        fleet = Fleet("p", DevicePrefix("00a85912345"), NumberPattern("12#"))
        self.assertEqual(fleet.problems(10), [])
        self.assertEqual([option for option, _ in fleet.problems(17)],
                         ["--device-prefix", "--numbers"])
        self.assertIn("leaves room for 16 phones, not 17", fleet.problems(17)[0][1])
        self.assertEqual(Fleet("p", numbers=NumberPattern("123")).problems(500), [])

    def test_describe(self) -> None:
        """The run's first lines: its ids, and its phones' MAC addresses,
        direction, numbers and (with --source-addresses) the addresses
        they use, first to last."""
        fleet = Fleet("k3x9a7qz", DevicePrefix("00a859"), NumberPattern("+4930####"), "mixed",
                      parse_source_addresses("127.0.0.2-127.0.0.250"))
        self.assertEqual(fleet.describe(500).splitlines(), [
            "run k3x9a7qz: recording ids k3x9a7qz-0 .. k3x9a7qz-499",
            "phones 00:a8:59:00:00:00 .. 00:a8:59:00:01:f3, mixed, to +49300000 .. +49300499, "
            "from 127.0.0.2 .. 127.0.0.250"])
        self.assertEqual(Fleet("p").describe(3).splitlines()[1],
                         "phones 00:a8:59:00:00:00 .. 00:a8:59:00:00:02, out, "
                         "to 13800000000 .. 13800000002")
        self.assertTrue(Fleet("p", sources=parse_source_addresses("127.0.1.0/24")).describe(3)
                        .endswith("from 127.0.1.1 .. 127.0.1.3"))
