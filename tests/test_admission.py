"""Tests for recsvc.admission (who may connect and record, and how much),
and how the control factory, the control protocol and a reload use it."""

from __future__ import annotations

import ipaddress
import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from recsvc.admission import (
    NOT_ALLOWED,
    NOT_CONTROL,
    OTHERS,
    TOO_MANY,
    TOO_MANY_FROM_IP,
    AccessPolicy,
    ConnectionLimits,
    Connections,
    Place,
    RefusalLog,
    StartRate,
    parse_network,
    policy_of,
)
from recsvc.devices import device_key, parse_mac
from recsvc.control.protocol import ControlFactory, ControlProtocol, _Refusal
from recsvc.refusals import RefusalLines
from recsvc.application.reload import AccessReload
from recsvc.testing import memory_recorder, run_now
from tests.support.builders import start_line
from tests.support.control import DefendedServerMixin
from tests.support.scrape import samples


def _spelt(mac: bytes, style: str, upper: bool) -> str:
    """A MAC address as people write it: 00:a8:.., 00-a8-.., 00a8..,
    00a8.5900.0001."""
    digits = mac.hex()
    if style == ".":
        text = ".".join(digits[i:i + 4] for i in range(0, 12, 4))
    else:
        text = style.join(digits[i:i + 2] for i in range(0, 12, 2))
    return text.upper() if upper else text


class AdmissionPropertyTests(SynchronousTestCase):
    @given(st.binary(min_size=6, max_size=6), st.sampled_from([":", "-", "", "."]),
           st.booleans(), st.sampled_from(["", " ", "\t"]))
    def test_any_spelling_of_a_mac(self, mac: bytes, style: str, upper: bool,
                                   space: str) -> None:
        """Every common spelling of a MAC is the same device, for the
        access list and the device folders alike."""
        text = space + _spelt(mac, style, upper) + space
        self.assertEqual(parse_mac(text), mac.hex())
        self.assertEqual(device_key(text), mac.hex())
        self.assertTrue(policy_of([], [_spelt(mac, ":", True)]).allows_device(text))

    @given(st.text(max_size=30))
    def test_any_text_is_a_mac_or_a_value_error(self, text: str) -> None:
        """Whatever the text: 12 lower-case hex digits, or ValueError."""
        try:
            key = parse_mac(text)
        except ValueError as error:
            self.assertIn("not a MAC address", str(error))
        else:
            self.assertRegex(key, r"\A[0-9a-f]{12}\Z")

    @given(st.ip_addresses(), st.data())
    def test_network_allows_its_addresses(self, address, data) -> None:
        """A network from any address and prefix allows that address; an
        IPv4 network also allows the address as an IPv4-mapped IPv6 peer,
        and reads the same written as a mapped network."""
        prefix = data.draw(st.integers(0, address.max_prefixlen))
        network = parse_network(f"{address}/{prefix}")
        policy = AccessPolicy((network,))
        self.assertTrue(policy.allows_peer(str(address)))
        if address.version == 4:
            self.assertTrue(policy.allows_peer(f"::ffff:{address}"))
            self.assertEqual(parse_network(f"::ffff:{address}/{96 + prefix}"), network)

    @given(st.text(max_size=40))
    def test_any_text_is_a_network_or_a_value_error(self, text: str) -> None:
        """Whatever the text: a network, or ValueError naming it; and any
        text as a peer is allowed or not, never an error."""
        try:
            network = parse_network(text)
        except ValueError as error:
            self.assertIn(repr(text), str(error))
        else:
            self.assertIsInstance(network, (ipaddress.IPv4Network, ipaddress.IPv6Network))
        policy = policy_of(["10.0.0.0/8", "fd00::/8"], [])
        self.assertIn(policy.allows_peer(text), (True, False))


class PolicyTests(SynchronousTestCase):
    def test_everyone_when_empty(self) -> None:
        """With no lists every peer and every device is allowed."""
        policy = AccessPolicy()
        self.assertTrue(policy.allows_peer("203.0.113.9"))
        self.assertTrue(policy.allows_device("anything"))

    def test_networks(self) -> None:
        """A peer is allowed only within the listed networks or addresses,
        IPv4 or IPv6, an IPv4 phone on an IPv6 socket included; text that is
        no address is not allowed."""
        policy = policy_of(["10.0.0.0/8", "192.168.1.5", "fd00::/8"], [])
        self.assertTrue(policy.allows_peer("10.1.2.3"))
        self.assertTrue(policy.allows_peer("192.168.1.5"))
        self.assertTrue(policy.allows_peer("::ffff:10.9.9.9"))  # an IPv4 phone on a v6 socket
        self.assertTrue(policy.allows_peer("fd00::1"))
        self.assertFalse(policy.allows_peer("192.168.1.6"))
        self.assertFalse(policy.allows_peer("127.0.0.1"))
        self.assertFalse(policy.allows_peer("not an address"))

    def test_devices(self) -> None:
        """A device is allowed if its MAC, in any spelling, is on the list,
        and only then."""
        policy = policy_of([], ["00:A8:59:00:00:01"])
        self.assertTrue(policy.allows_device("00-a8-59-00-00-01"))
        self.assertFalse(policy.allows_device("00a859000002"))

    def test_mapped_networks_are_ipv4(self) -> None:
        """An IPv4-mapped IPv6 network is read as its IPv4 network and
        allows the address in both forms."""
        self.assertEqual(str(parse_network("::ffff:10.0.0.0/104")), "10.0.0.0/8")
        policy = policy_of(["::ffff:10.0.0.0/104"], [])
        self.assertTrue(policy.allows_peer("10.0.0.1"))
        self.assertTrue(policy.allows_peer("::ffff:10.0.0.1"))

    def test_ipv6_networks_hold_mapped_peers(self) -> None:
        """An IPv4 phone is in the IPv6 networks that hold its mapped form,
        such as ::/0, whether a socket shows it as ::ffff:a.b.c.d or
        a.b.c.d (the property below found it was in neither)."""
        policy = policy_of(["::/0"], [])
        self.assertTrue(policy.allows_peer("::ffff:192.0.2.7"))
        self.assertTrue(policy.allows_peer("2001:db8::1"))
        self.assertTrue(policy.allows_peer("192.0.2.7"))
        self.assertFalse(policy_of(["2001:db8::/32"], []).allows_peer("192.0.2.7"))

    def test_bad_networks(self) -> None:
        """A prefix too long for its address, a word or empty text is not a
        network: ValueError."""
        for text in ("10.0.0.0/33", "ten", ""):
            self.assertRaises(ValueError, parse_network, text)


class ConnectionsTests(SynchronousTestCase):
    def test_limits(self) -> None:
        """control.allow, the total and the idle connections per address
        each refuse with their reason; a released connection makes room."""
        connections = Connections(ConnectionLimits(max_connections=3, max_per_ip=2),
                                  policy_of(["10.0.0.0/8"], []))
        self.assertEqual(connections.admit("192.0.2.1"), NOT_ALLOWED)
        first = connections.admit("10.0.0.1")
        self.assertIsInstance(first, Place)
        self.assertIsInstance(connections.admit("10.0.0.1"), Place)
        self.assertEqual(connections.admit("10.0.0.1"), TOO_MANY_FROM_IP)
        self.assertIsInstance(connections.admit("10.0.0.2"), Place)
        self.assertEqual(connections.admit("10.0.0.3"), TOO_MANY)
        self.assertEqual(connections.total, 3)
        first.release()
        first.release()  # twice: its place given back once
        self.assertEqual(connections.total, 2)
        self.assertIsInstance(connections.admit("10.0.0.3"), Place)
        self.assertEqual(connections.total, 3)

    def test_connections_carrying_recordings_do_not_count_per_address(self) -> None:
        """
        Only idle connections (without a recording) count toward the
        per-address limit: an address whose connections all carry
        recordings (phones behind one NAT address) may open as many as the
        total allows, while its idle ones stay bounded.
        """
        connections = Connections(ConnectionLimits(max_connections=100, max_per_ip=2))
        places = []
        for _ in range(50):
            place = connections.admit("192.0.2.1")
            self.assertIsInstance(place, Place)
            place.carries(True)
            places.append(place)
        self.assertEqual(connections.idle_from("192.0.2.1"), 0)
        idle = [connections.admit("192.0.2.1"), connections.admit("192.0.2.1")]
        self.assertEqual(connections.admit("192.0.2.1"), TOO_MANY_FROM_IP)
        self.assertEqual(connections.total, 52)
        places[0].carries(False)  # its recording ended: idle again, one too many
        self.assertTrue(places[0].excess)
        self.assertFalse(places[1].excess)
        places[0].release()
        self.assertEqual(connections.idle_from("192.0.2.1"), 2)
        self.assertFalse(any(place.excess for place in idle))
        places[1].release()  # released while carrying: the idle count stays
        self.assertEqual((connections.idle_from("192.0.2.1"), connections.total), (2, 50))

    def test_a_start_is_taken_beyond_the_idle_limit(self) -> None:
        """
        A connection whose first message is a Start is taken although its
        address has its limit of idle connections (they may all be phones
        starting calls at once); if it turns out to carry no recording, it
        is in excess. The total still bounds everything.
        """
        connections = Connections(ConnectionLimits(max_connections=4, max_per_ip=1))
        idle = connections.admit("192.0.2.1")
        starting = [connections.admit("192.0.2.1", starting=True) for _ in range(3)]
        self.assertEqual(connections.admit("192.0.2.1", starting=True), TOO_MANY)
        self.assertTrue(all(isinstance(place, Place) for place in [idle, *starting]))
        starting[0].carries(True)
        self.assertFalse(starting[0].excess)
        self.assertTrue(starting[1].excess)  # (still idle: its Start was refused)
        starting[1].release()
        starting[2].release()
        self.assertFalse(idle.excess)
        self.assertEqual(connections.idle_from("192.0.2.1"), 1)

    def test_ipv6_counted_by_its_64(self) -> None:
        """IPv6 peers are held to the idle limit by their /64 (a host may
        pick any address in it): another /64 has its own count, and a
        released connection makes room in its own."""
        connections = Connections(ConnectionLimits(max_connections=10, max_per_ip=2))
        first = connections.admit("2001:db8:0:1::1")
        self.assertIsInstance(first, Place)
        self.assertIsInstance(connections.admit("2001:db8:0:1::2"), Place)
        self.assertEqual(connections.admit("2001:db8:0:1::3"), TOO_MANY_FROM_IP)
        self.assertIsInstance(connections.admit("2001:db8:0:2::1"), Place)
        first.release()
        self.assertIsInstance(connections.admit("2001:db8:0:1::9"), Place)

    def test_ipv4_counted_whatever_its_form(self) -> None:
        """An IPv4 peer seen on a dual-stack socket (::ffff:a.b.c.d) is the
        same address as a.b.c.d."""
        connections = Connections(ConnectionLimits(max_connections=10, max_per_ip=1))
        self.assertIsInstance(connections.admit("::ffff:192.0.2.1"), Place)
        self.assertEqual(connections.admit("192.0.2.1"), TOO_MANY_FROM_IP)


class StartRateTests(SynchronousTestCase):
    def test_per_device_sliding_minute(self) -> None:
        """Each device may start per_minute recordings in any sliding
        minute, counted apart from other devices."""
        rate = StartRate(per_minute=2)
        self.assertTrue(rate.allow("a", 0))
        self.assertTrue(rate.allow("a", 10))
        self.assertFalse(rate.allow("a", 20))
        self.assertTrue(rate.allow("b", 20))
        self.assertTrue(rate.allow("a", 60))  # the first has left the minute
        self.assertFalse(rate.allow("a", 61))

    def test_bounded(self) -> None:
        """Made-up device names cannot grow it without bound: beyond
        max_devices starting within a minute, new ones are refused; quiet
        ones make room."""
        rate = StartRate(per_minute=5, max_devices=100)
        self.assertTrue(all(rate.allow(f"device-{number}", 0) for number in range(100)))
        self.assertFalse(rate.allow("device-new", 1))
        self.assertTrue(rate.allow("device-1", 1))  # known devices go on
        self.assertTrue(rate.allow("device-new", 61))  # the others went quiet
        self.assertEqual(list(rate._starts), ["device-new"])  # all others quiet

    def test_refund(self) -> None:
        """A refunded start gives its place back within the minute."""
        rate = StartRate(per_minute=1)
        self.assertTrue(rate.allow("a", 0))
        rate.refund("a")
        self.assertTrue(rate.allow("a", 1))


class _CountedLooks(dict):
    """A RefusalLog's peers, counting the looks through them all."""

    looks = 0

    def items(self):  # type: ignore[override]
        self.looks += 1
        return super().items()


class RefusalLogTests(SynchronousTestCase):
    def test_once_per_interval_with_the_count(self) -> None:
        """A peer's first refusal is said at once, the next ones of the
        interval are not; the first after it is said with how many it
        stands for. Each peer has its own interval."""
        log = RefusalLog(interval=60)
        self.assertEqual(log.note("192.0.2.1", NOT_ALLOWED, 0), ("192.0.2.1", 1))
        for second in range(1, 10):
            self.assertIsNone(log.note("192.0.2.1", NOT_ALLOWED, second))
        self.assertEqual(log.note("192.0.2.2", NOT_ALLOWED, 10), ("192.0.2.2", 1))
        self.assertEqual(log.note("192.0.2.1", NOT_ALLOWED, 60), ("192.0.2.1", 10))

    def test_flood_from_many_addresses(self) -> None:
        """Beyond max_peers addresses in an interval the rest are counted
        together: a flood from a whole /64 is a line a minute, not one an
        attempt."""
        log = RefusalLog(interval=60, max_peers=100)
        lines = [log.note(f"2001:db8::{number:x}", NOT_ALLOWED, number / 1000)
                 for number in range(20_000)]
        logged = [line for line in lines if line is not None]
        self.assertEqual(len(logged), 101)
        self.assertEqual(logged[-1], (OTHERS, 1))
        later = log.note("2001:db8::ffff:1", NOT_ALLOWED, 61)
        self.assertIsNotNone(later)  # old peers forgotten: named again

    def test_what_a_silence_hid_is_owed_a_line(self) -> None:
        """
        Refusals kept silent are owed a line once their interval is over
        (`overdue`, which begins the next interval) or at the end
        (`unsaid`): none is left out of every count.
        """
        log = RefusalLog(interval=60)
        self.assertIsNone(log.next_due())
        log.note("192.0.2.1", NOT_ALLOWED, 0)
        self.assertIsNone(log.next_due())  # said at once: nothing owed
        for second in (1, 2, 3):
            log.note("192.0.2.1", NOT_ALLOWED, second)
        log.note("192.0.2.2", TOO_MANY_FROM_IP, 30)
        log.note("192.0.2.2", TOO_MANY_FROM_IP, 31)
        self.assertEqual(log.next_due(), 60)
        self.assertEqual(log.overdue(59), [])
        self.assertEqual(log.overdue(60), [("192.0.2.1", NOT_ALLOWED, 3)])
        self.assertEqual(log.next_due(), 90)
        self.assertIsNone(log.note("192.0.2.1", NOT_ALLOWED, 61))  # a new interval began
        self.assertEqual(sorted(log.unsaid()), [("192.0.2.1", NOT_ALLOWED, 1),
                                                ("192.0.2.2", TOO_MANY_FROM_IP, 1)])
        self.assertEqual(log.unsaid(), [])
        self.assertIsNone(log.next_due())

    def test_a_flood_from_new_addresses_costs_one_look_a_second(self) -> None:
        """
        Once max_peers addresses are named, refusals from ever new ones
        (a spray from many addresses, or from the addresses of one IPv6
        /64) do not each look through all the named ones for some to
        forget: at most one look a second, whatever their number. Peers
        gone quiet are still forgotten, and named again.
        """
        looks = _CountedLooks()
        log = RefusalLog(interval=60, max_peers=100, last=looks)
        for number in range(100):
            log.note(f"2001:db8::{number:x}", NOT_ALLOWED, 0)
        for number in range(5000):
            log.note(f"2001:db8::1:{number:x}", NOT_ALLOWED, 1 + number / 10_000)
        self.assertEqual(looks.looks, 1)
        self.assertEqual(log.note("192.0.2.1", NOT_ALLOWED, 61), ("192.0.2.1", 1))
        self.assertEqual(looks.looks, 2)

    def test_owed_at_the_time_it_says(self) -> None:
        """
        At the time `next_due` names, `overdue` says what is owed, whatever
        the times' rounding (here at + 60 - at is just under 60): the timer
        set for it then finds it due, rather than setting itself again for
        the same moment (for ever, on a test's Clock).
        """
        log = RefusalLog(interval=60)
        at = 78.11573280273792
        self.assertLess((at + 60) - at, 60)
        log.note("192.0.2.1", NOT_ALLOWED, at)
        log.note("192.0.2.1", NOT_ALLOWED, at + 1)
        self.assertEqual(log.overdue(log.next_due()), [("192.0.2.1", NOT_ALLOWED, 1)])

    def test_owed_lines_are_not_forgotten_in_a_flood(self) -> None:
        """Making room for new peers never drops a peer whose refusals are
        still owed a line."""
        log = RefusalLog(interval=60, max_peers=2)
        log.note("192.0.2.1", NOT_ALLOWED, 0)
        log.note("192.0.2.1", NOT_ALLOWED, 1)  # owed
        log.note("192.0.2.2", NOT_ALLOWED, 2)
        log.note("192.0.2.2", NOT_ALLOWED, 3)  # owed
        self.assertEqual(log.note("192.0.2.3", NOT_ALLOWED, 100), (OTHERS, 1))
        self.assertEqual(sorted(log.unsaid()), [("192.0.2.1", NOT_ALLOWED, 1),
                                                ("192.0.2.2", NOT_ALLOWED, 1)])


class RefusalLinesTests(SynchronousTestCase):
    def test_summaries_each_interval_and_at_flush(self) -> None:
        """
        While refusals go on, what each minute's silence hid is summarised
        when the minute is over (without a timer while nothing is owed),
        and `flush` says the rest: every refusal is in some line's count.
        """
        clock = Clock()
        said: list[tuple[str, str, int]] = []
        lines = RefusalLines(clock, lambda *line: said.append(line))
        self.assertEqual(lines.note("192.0.2.1", NOT_ALLOWED), ("192.0.2.1", 1))
        self.assertEqual(clock.getDelayedCalls(), [])
        counted = 1
        for second in range(1, 150):
            clock.advance(1)
            if lines.note("192.0.2.1", NOT_ALLOWED) is not None:
                counted += 1  # (none: each interval's line is a summary)
        self.assertEqual(counted, 1)
        self.assertEqual(said, [("192.0.2.1", NOT_ALLOWED, 59), ("192.0.2.1", NOT_ALLOWED, 60)])
        lines.flush()
        self.assertEqual(said[-1], ("192.0.2.1", NOT_ALLOWED, 30))
        self.assertEqual(1 + sum(count for _, _, count in said), 150)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(3600)
        self.assertEqual(len(said), 3)

    def test_each_silence_said_when_its_own_minute_is_over(self) -> None:
        """
        A peer's hidden refusals are summed up when its own minute since its
        last line is over, even while the timer waits for another peer's
        later one: no peer goes more than a minute without a line while its
        refusals go on.
        """
        clock = Clock()
        said: list[tuple[float, str, int]] = []
        lines = RefusalLines(clock, lambda peer, reason, count: said.append(
            (clock.seconds(), peer, count)))
        lines.note("192.0.2.1", NOT_ALLOWED)  # said at 0
        clock.advance(20)
        lines.note("192.0.2.2", NOT_ALLOWED)  # said at 20
        clock.advance(1)
        self.assertIsNone(lines.note("192.0.2.2", NOT_ALLOWED))  # owed at 80
        clock.advance(1)
        self.assertIsNone(lines.note("192.0.2.1", NOT_ALLOWED))  # owed at 60
        clock.advance(38)
        self.assertEqual(said, [(60, "192.0.2.1", 1)])
        clock.advance(20)
        self.assertEqual(said, [(60, "192.0.2.1", 1), (80, "192.0.2.2", 1)])
        self.assertEqual(clock.getDelayedCalls(), [])


class FactoryTests(DefendedServerMixin, SynchronousTestCase):
    """The control factory refuses at once what admission refuses."""

    def setUp(self) -> None:
        """(Each test makes its server with its own access list and limits.)"""

    def make(self, allow: list[str], **limits: int) -> ControlFactory:
        connections = Connections(
            ConnectionLimits(limits.get("total", 100), limits.get("per_ip", 100)),
            policy_of(allow, []))
        return self.build(connections=connections, runner=run_now)

    def test_address_outside_allow_refused_counted_logged_once(self) -> None:
        """A peer outside control.allow is closed at once without a byte,
        counted each time and logged once; an IPv4 peer seen as a mapped
        IPv6 address is in its IPv4 network."""
        factory = self.make(["10.0.0.0/8"])
        with capturedLogs() as events:
            for _ in range(5):
                refused = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", 5060))
                transport = StringTransport()
                refused.makeConnection(transport)
                self.assertTrue(transport.disconnecting)  # closed at once
                self.assertEqual(transport.value(), b"")
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual((warnings[0]["peer"], warnings[0]["reason"]), ("192.0.2.7", NOT_ALLOWED))
        self.assertEqual(samples(self.recorder.metrics)[
            ("recsvc_connections_refused_total", (("reason", NOT_ALLOWED),))], 5)
        self.assertIsNotNone(factory.buildProtocol(IPv6Address("TCP", "::ffff:10.0.0.5", 5060)))

    def test_closed_connections_make_room(self) -> None:
        """A connection lost (once or twice) gives back its place: its
        address may open another."""
        factory = self.make([], per_ip=1)
        protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1)))
        self.assertIsInstance(factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 2)), _Refusal)
        protocol.connectionLost(None)
        protocol.connectionLost(None)  # twice: its place given back once
        self.assertIsInstance(factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 3)),
                              ControlProtocol)
        self.assertEqual(factory.connections.total, 1)

    def test_refused_behind_tls(self) -> None:
        """Under a TLS (or PROXY) wrapper a refused connection is closed
        too: the factory never hands the wrapper None."""
        from twisted.protocols.tls import TLSMemoryBIOFactory
        from twisted.internet.ssl import CertificateOptions

        factory = self.make(["10.0.0.0/8"])
        wrapper = TLSMemoryBIOFactory(CertificateOptions(), False, factory)
        protocol = wrapper.buildProtocol(IPv4Address("TCP", "192.0.2.7", 5060))
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.disconnecting)

    def test_idle_connection_closed_unless_recording(self) -> None:
        """control.idle_timeout closes a connection without a message for
        that long (aborted, counted as idle), a message resetting the
        clock; one carrying a recording is never closed for it."""
        factory = self.make([])
        idle = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        idle_transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1))
        idle.makeConnection(idle_transport)
        busy = factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 1))
        busy_transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.2", 1),
                                         hostAddress=IPv4Address("TCP", "127.0.0.9", 10000))
        busy.makeConnection(busy_transport)
        busy.dataReceived(b"cmd=RecordStartRequest&id=1&device=00a859000001&codec=PCMA\n")
        self.assertIn(b"result=success", busy_transport.value())
        self.clock.advance(299)
        idle.dataReceived(b"\n")  # a message (even blank) resets the timer
        self.clock.advance(299)
        self.assertFalse(idle_transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(idle_transport.disconnected)  # aborted: no waiting on a reader
        self.assertEqual(samples(self.recorder.metrics)[
            ("recsvc_connections_closed_total", (("reason", "idle"),))], 1)
        self.clock.advance(3600)
        self.assertFalse(busy_transport.disconnecting)  # a recording on it: never idle


class SiteBehindOneAddressTests(DefendedServerMixin, SynchronousTestCase):
    """control.max_connections_per_ip bounds a flood's idle connections, not
    a site's recordings."""

    def setUp(self) -> None:
        """(Each test makes its server with its own limits.)"""

    def make(self, per_ip: int, total: int = 1000) -> ControlFactory:
        return self.build(connections=Connections(ConnectionLimits(total, per_ip)),
                          runner=run_now)

    def open(self, factory: ControlFactory, host: str, first: bytes | None = None,
             ) -> tuple[ControlProtocol | None, StringTransport]:
        """A connection from ``host`` as the screening listener makes it
        (``first``: the bytes it saw waiting), or as a plain one (None)."""
        if first is None:
            protocol = factory.buildProtocol(IPv4Address("TCP", host, 40000))
        else:
            protocol = factory.admit(host, first)
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000),
                                    hostAddress=IPv4Address("TCP", "127.0.0.9", 10000))
        if isinstance(protocol, ControlProtocol):
            protocol.makeConnection(transport)
        return protocol, transport

    def test_more_recordings_from_one_address_than_the_limit(self) -> None:
        """
        Phones behind one NAT address record far more calls at once than
        control.max_connections_per_ip, whether their Starts are seen by
        the listener (all connecting at once) or arrive one after another;
        idle connections from that address are still held to the limit.
        """
        factory = self.make(per_ip=2)
        connections = []
        for number in range(10):  # one after another, each sending its Start
            protocol, transport = self.open(factory, "192.0.2.1")
            self.assertIsInstance(protocol, ControlProtocol)
            protocol.dataReceived(start_line(number))
            connections.append((protocol, transport, number))
        burst = [(*self.open(factory, "192.0.2.1", start_line(number)), number)
                 for number in range(10, 20)]  # all at once: their Starts seen waiting
        self.assertTrue(all(isinstance(protocol, ControlProtocol) for protocol, _, _ in burst))
        for protocol, _, number in burst:
            protocol.dataReceived(start_line(number))
        connections += burst
        self.clock.advance(0)
        self.assertEqual(len(self.recorder.registry), 20)
        self.assertTrue(all(b"result=success" in transport.value()
                            for _, transport, _ in connections))
        self.assertFalse(any(transport.disconnecting for _, transport, _ in connections))
        idle = [self.open(factory, "192.0.2.1")[0] for _ in range(3)]
        self.assertEqual([type(protocol) for protocol in idle],
                         [ControlProtocol, ControlProtocol, _Refusal])
        self.assertEqual(factory.connections.total, 22)

    def test_refused_start_beyond_the_limit_is_answered_then_closed(self) -> None:
        """
        A connection taken beyond the idle limit for its Start, which is
        refused, is answered and then closed (its reply is not thrown
        away), counted as closed for too many connections from its address.
        """
        factory = self.make(per_ip=1)
        self.open(factory, "192.0.2.1")
        bad_start = b"cmd=RecordStartRequest&id=9&device=00a859000009&codec=G729\n"
        protocol, transport = self.open(factory, "192.0.2.1", bad_start)
        self.assertIsInstance(protocol, ControlProtocol)
        protocol.dataReceived(bad_start)
        self.assertIn(b"result=failed&reason=unsupported codec", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)  # closed after the reply, not aborted
        self.assertEqual(samples(self.recorder.metrics)[
            ("recsvc_connections_closed_total", (("reason", TOO_MANY_FROM_IP),))], 1)

    def test_connection_whose_recording_ended_closed_when_in_excess(self) -> None:
        """
        When a connection's last recording has ended and its address holds
        more idle connections than the limit, it is closed once the Stop
        is answered; within the limit, it stays.
        """
        factory = self.make(per_ip=1)
        first, first_transport = self.open(factory, "192.0.2.1")
        first.dataReceived(start_line(1))
        second, second_transport = self.open(factory, "192.0.2.1", start_line(2))
        second.dataReceived(start_line(2))
        second.dataReceived(b"cmd=RecordStopRequest&id=2\n")
        self.clock.advance(0)
        self.assertIn(b"RecordStopResponse&id=2&result=success", second_transport.value())
        self.assertFalse(second_transport.disconnecting)  # the only idle one
        first.dataReceived(b"cmd=RecordStopRequest&id=1\n")
        self.clock.advance(0)
        self.assertIn(b"RecordStopResponse&id=1&result=success", first_transport.value())
        self.assertTrue(first_transport.disconnecting)  # one idle too many
        self.assertFalse(second_transport.disconnecting)

    def test_first_bytes_that_are_no_control_message_are_refused(self) -> None:
        """
        A connection whose first bytes cannot begin a control message (an
        HTTP request, random bytes) is refused by the listener before
        anything is built for it: counted and logged once a minute per
        address, summed up when the minute is over. A first message still
        on its way (only part of "cmd=" yet) is let in.
        """
        factory = self.make(per_ip=100)
        with capturedLogs() as events:
            for first in (b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", b"cmx", b"\r\nhello"):
                self.assertIsNone(factory.admit("192.0.2.1", first))
            self.clock.advance(60)
        for first in (b"c", b"cm", b"\r\ncmd", b"cmd =", b"  "):
            self.assertIsInstance(factory.admit("192.0.2.1", first), ControlProtocol)
        self.assertEqual(samples(self.recorder.metrics)[
            ("recsvc_connections_refused_total", (("reason", NOT_CONTROL),))], 4)
        self.assertEqual([(event["reason"], event["count"]) for event in events
                          if event["log_level"] == LogLevel.warn],
                         [(NOT_CONTROL, 1), (NOT_CONTROL, 3)])

    def test_stopping_the_factory_says_what_the_log_has_not(self) -> None:
        """When the listener stops (shutdown), the refusals and closings the
        log has not said yet are summed up."""
        factory = self.make(per_ip=1)
        self.open(factory, "192.0.2.1")
        for _ in range(5):
            self.assertIsInstance(self.open(factory, "192.0.2.1")[0], _Refusal)
        factory.doStart()  # (as a listening port does)
        with capturedLogs() as events:
            factory.doStop()
        self.assertEqual([(event["peer"], event["reason"], event["count"]) for event in events],
                         [("192.0.2.1", TOO_MANY_FROM_IP, 4)])


    def test_closings_while_the_recorder_drains_are_in_some_line(self) -> None:
        """
        At shutdown the listener stops first, and the recordings end after
        it: connections closed meanwhile because their address has too many
        idle ones are each in some line's count once the recorder has
        stopped; the connections the recorder itself closes at the end are
        not counted as closed for that.
        """
        factory = self.build(connections=Connections(ConnectionLimits(1000, 1)))
        factory.doStart()  # (as a listening port does)
        opened = [self.open(factory, "192.0.2.1")]  # idle: the address's one
        for number in range(3):
            protocol, transport = self.open(factory, "192.0.2.1", start_line(number))
            protocol.dataReceived(start_line(number))
            opened.append((protocol, transport))
        self.runner.run_pending()
        lost: set[ControlProtocol] = set()

        def turn() -> None:
            self.runner.run_pending()
            self.clock.advance(0)
            for protocol, transport in opened:
                if transport.disconnecting and protocol not in lost:
                    lost.add(protocol)
                    protocol.connectionLost(Failure(ConnectionDone()))

        with capturedLogs() as events:
            factory.doStop()  # the listener stops first
            for number in (0, 1):  # two calls end meanwhile
                opened[1 + number][0].dataReceived(b"cmd=RecordStopRequest&id=%d\n" % number)
            turn()
            stopping = self.recorder.stopService()
            turn()
            self.successResultOf(stopping)
            turn()
        self.assertEqual(len(lost), 4)
        closed = samples(self.recorder.metrics)[
            ("recsvc_connections_closed_total", (("reason", TOO_MANY_FROM_IP),))]
        self.assertEqual(closed, 2)
        said = [event["count"] for event in events
                if event.get("reason") in (TOO_MANY_FROM_IP, f"closed ({TOO_MANY_FROM_IP})")]
        self.assertEqual(sum(said), closed)


class ReloadTests(SynchronousTestCase):
    def test_reload_applies_new_lists_and_keeps_old_on_error(self) -> None:
        """A reload applies the file's new control and device lists to the
        recorder and the connections alike; a file with a bad list is
        refused, logged naming the key, and the old lists stay."""
        path = os.path.abspath(self.mktemp())
        recorder = memory_recorder(self.mktemp())
        connections = Connections(ConnectionLimits(10, 10))
        reload = AccessReload(path, recorder, connections)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("control:\n  allow: [10.0.0.0/8]\ndevices:\n  allow: [00a859000001]\n")
        self.assertTrue(reload())
        self.assertIs(recorder.access, connections.policy)
        self.assertFalse(recorder.access.allows_peer("192.0.2.1"))
        self.assertFalse(recorder.access.allows_device("00a859000002"))
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("devices:\n  allow: [not-a-mac]\n")
        with capturedLogs() as events:
            self.assertFalse(reload())
        self.assertIn("devices.allow", events[-1]["reason"])
        self.assertFalse(recorder.access.allows_device("00a859000002"))  # as it was


class RefusalPeerTests(SynchronousTestCase):
    def test_overall_limits_are_nobodys(self) -> None:
        """A refusal by an overall limit is counted under OTHERS, shown as
        "many addresses"; one by an address's own limit under its address."""
        from recsvc.admission import (OTHERS, TOO_FEW_DESCRIPTORS, TOO_MANY, TOO_MANY_FROM_IP,
                                      refused_peer, shown_peer)
        self.assertEqual([refused_peer("10.0.0.1", reason)
                          for reason in (TOO_MANY, TOO_FEW_DESCRIPTORS, TOO_MANY_FROM_IP)],
                         [OTHERS, OTHERS, "10.0.0.1"])
        self.assertEqual((shown_peer(OTHERS), shown_peer("10.0.0.1")),
                         ("many addresses", "10.0.0.1"))
