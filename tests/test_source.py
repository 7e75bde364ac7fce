"""Tests for recsvc.media.source: which packets may enter a recording (anti-injection)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media.rtp import RtpPacket
from recsvc.config import parse_config
from recsvc.media.source import ANY, PEER, PROBATION_PACKETS, STRICT, SourceGuard, normalize_ip

PHONE = "192.0.2.10"
PHONE_RTP = (PHONE, 4000)
SSRC = 0x11111111


def _packet(sequence: int, ssrc: int = SSRC, timestamp: int | None = None) -> RtpPacket:
    if timestamp is None:
        timestamp = sequence * 160
    return RtpPacket(
        payload_type=8, sequence=sequence & 0xFFFF, timestamp=timestamp & 0xFFFFFFFF,
        ssrc=ssrc, payload=bytes([sequence & 0x7F]) * 160,
    )


def _locked(policy=PEER, peer_ip: str = PHONE) -> SourceGuard:
    """A guard that has locked onto PHONE_RTP with SSRC."""
    guard = SourceGuard(policy, peer_ip)
    assert list(guard.admit(_packet(100), PHONE_RTP)) == [_packet(100)]
    return guard


class NormalizeIpTests(SynchronousTestCase):
    def test_mapped_ipv4(self) -> None:
        """
        An IPv4-mapped IPv6 address (what a dual-stack socket reports) is the
        plain IPv4 address.
        """
        self.assertEqual(normalize_ip("::ffff:192.0.2.10"), "192.0.2.10")
        self.assertEqual(normalize_ip("::FFFF:c000:020a"), "192.0.2.10")

    def test_ipv6_canonical(self) -> None:
        """
        Two spellings of one IPv6 address normalize to the same string.
        """
        self.assertEqual(normalize_ip("2001:0DB8:0:0::1"), normalize_ip("2001:db8::1"))

    def test_not_an_address(self) -> None:
        """
        Something that is not an IP address is returned as given.
        """
        self.assertEqual(normalize_ip("phone.example"), "phone.example")


class PeerPolicyTests(SynchronousTestCase):
    def test_first_packet_from_peer_admitted(self) -> None:
        """
        The first packet from the control connection's IP is recorded at
        once, and later ones from the same source too.
        """
        guard = SourceGuard(PEER, PHONE)
        self.assertEqual(list(guard.admit(_packet(1), PHONE_RTP)), [_packet(1)])
        self.assertEqual(list(guard.admit(_packet(2), PHONE_RTP)), [_packet(2)])
        self.assertEqual(guard.rejected, {})
        self.assertEqual(guard.switches, 0)

    def test_foreign_address_rejected(self) -> None:
        """
        Packets from any other IP are rejected as "foreign address", before
        and after the lock, however many arrive in sequence.
        """
        guard = SourceGuard(PEER, PHONE)
        self.assertEqual(list(guard.admit(_packet(1), ("192.0.2.66", 4000))), [])
        guard.admit(_packet(2), PHONE_RTP)
        for sequence in range(3, 23):
            self.assertEqual(list(guard.admit(_packet(sequence), ("192.0.2.66", 4000))), [])
        self.assertEqual(guard.rejected, {"foreign address": 21})
        self.assertEqual(guard.switches, 0)
        # The phone is still the locked source.
        self.assertEqual(list(guard.admit(_packet(3), PHONE_RTP)), [_packet(3)])

    def test_foreign_first_does_not_lock(self) -> None:
        """
        A foreign packet arriving before the phone's first packet does not
        lock the source: the phone's first packet is still admitted at once.
        """
        guard = SourceGuard(PEER, PHONE)
        guard.admit(_packet(1, ssrc=99), ("198.51.100.1", 4000))
        self.assertEqual(list(guard.admit(_packet(7), PHONE_RTP)), [_packet(7)])

    def test_ipv4_mapped_source_is_peer(self) -> None:
        """
        A packet whose source is the peer's IPv4 address in IPv4-mapped IPv6
        form is from the peer, and is the same locked source as the plain form.
        """
        guard = SourceGuard(PEER, PHONE)
        self.assertEqual(
            list(guard.admit(_packet(1), ("::ffff:" + PHONE, 4000))), [_packet(1)]
        )
        self.assertEqual(list(guard.admit(_packet(2), PHONE_RTP)), [_packet(2)])
        self.assertEqual(guard.rejected, {})

    def test_ipv4_mapped_peer(self) -> None:
        """
        A control connection reported in IPv4-mapped form accepts RTP from
        the plain IPv4 address.
        """
        guard = SourceGuard(PEER, "::ffff:" + PHONE)
        self.assertEqual(list(guard.admit(_packet(1), PHONE_RTP)), [_packet(1)])
        guard.admit(_packet(2), ("::ffff:192.0.2.11", 4000))
        self.assertEqual(guard.rejected, {"foreign address": 1})

    def test_ipv6_spellings_are_one_address(self) -> None:
        """
        An IPv6 peer spelled differently by the control connection and the
        RTP socket is still the peer.
        """
        guard = SourceGuard(PEER, "2001:DB8:0::a")
        self.assertEqual(list(guard.admit(_packet(1), ("2001:db8::a", 4000))), [_packet(1)])
        self.assertEqual(guard.rejected, {})


class ProbationTests(SynchronousTestCase):
    def test_new_port_confirmed_after_probation(self) -> None:
        """
        A new port on the peer's IP is held back for PROBATION_PACKETS - 1
        in-sequence packets while the locked source is silent; the next one
        switches the source and all the held packets are returned in order.
        """
        self.assertEqual(PROBATION_PACKETS, 4)
        guard = _locked()
        moved = (PHONE, 4002)
        for sequence in (500, 501, 502):
            self.assertEqual(list(guard.admit(_packet(sequence), moved)), [])
        self.assertEqual(
            list(guard.admit(_packet(503), moved)),
            [_packet(500), _packet(501), _packet(502), _packet(503)],
        )
        self.assertEqual(guard.switches, 1)
        self.assertEqual(guard.rejected, {})
        # The new source is now the locked one.
        self.assertEqual(list(guard.admit(_packet(504), moved)), [_packet(504)])

    def test_new_ssrc_confirmed_after_probation(self) -> None:
        """
        A new SSRC from the same address and port (the phone restarted its
        stream) goes through the same probation and then loses nothing.
        """
        guard = _locked()
        held = [_packet(sequence, ssrc=0x2222) for sequence in (9, 10, 11)]
        for packet in held:
            self.assertEqual(list(guard.admit(packet, PHONE_RTP)), [])
        last = _packet(12, ssrc=0x2222)
        self.assertEqual(list(guard.admit(last, PHONE_RTP)), held + [last])
        self.assertEqual(guard.switches, 1)

    def test_probation_across_sequence_wrap(self) -> None:
        """
        Sequence numbers that wrap from 65535 to 0 are still in sequence.
        """
        guard = _locked()
        moved = (PHONE, 4002)
        for sequence in (65533, 65534, 65535):
            guard.admit(_packet(sequence), moved)
        self.assertEqual(len(guard.admit(_packet(0), moved)), 4)
        self.assertEqual(guard.switches, 1)

    def test_old_source_must_pass_probation_to_come_back(self) -> None:
        """
        After a switch the old source is a stranger: it needs its own
        probation to come back.
        """
        guard = _locked()
        moved = (PHONE, 4002)
        for sequence in range(500, 504):
            guard.admit(_packet(sequence), moved)
        for sequence in (101, 102, 103):
            self.assertEqual(list(guard.admit(_packet(sequence), PHONE_RTP)), [])
        self.assertEqual(len(guard.admit(_packet(104), PHONE_RTP)), 4)
        self.assertEqual(guard.switches, 2)

    def test_out_of_sequence_restarts_probation(self) -> None:
        """
        A candidate packet far out of sequence (a jump) restarts the
        probation; the packets held so far are rejected as "unconfirmed source".
        """
        guard = _locked()
        moved = (PHONE, 4002)
        guard.admit(_packet(500), moved)
        guard.admit(_packet(501), moved)
        guard.admit(_packet(900), moved)  # a jump: restart with 900
        self.assertEqual(guard.rejected, {"unconfirmed source": 2})
        guard.admit(_packet(901), moved)
        guard.admit(_packet(902), moved)
        self.assertEqual(
            list(guard.admit(_packet(903), moved)),
            [_packet(900), _packet(901), _packet(902), _packet(903)],
        )
        self.assertEqual(guard.rejected, {"unconfirmed source": 2})

    def test_loss_and_reordering_keep_probation(self) -> None:
        """
        A little loss or reordering among a candidate's packets does not
        break its run: all its packets are kept once it is confirmed.
        """
        guard = _locked()
        moved = (PHONE, 4002)
        for sequence in (500, 502, 501):
            self.assertEqual(list(guard.admit(_packet(sequence), moved)), [])
        self.assertEqual(
            list(guard.admit(_packet(504), moved)),
            [_packet(500), _packet(502), _packet(501), _packet(504)],
        )
        self.assertEqual(guard.rejected, {})

    def test_repeated_sequence_does_not_count(self) -> None:
        """
        A repeated sequence number does not count towards probation: a
        replayed packet alone never takes over, however often it is sent.
        """
        guard = _locked()
        moved = (PHONE, 4002)
        for _ in range(10):
            self.assertEqual(list(guard.admit(_packet(500), moved)), [])
        self.assertEqual(guard.switches, 0)
        guard.admit(_packet(501), moved)
        guard.admit(_packet(502), moved)
        self.assertEqual(len(guard.admit(_packet(503), moved)), 13)
        self.assertEqual(guard.switches, 1)

    def test_other_candidate_restarts_probation(self) -> None:
        """
        Two candidates taking turns never confirm each other's probation.
        """
        guard = _locked()
        for sequence in range(500, 520):
            port = 4002 if sequence % 2 else 4004
            self.assertEqual(list(guard.admit(_packet(sequence), (PHONE, port))), [])
        self.assertEqual(guard.switches, 0)
        self.assertEqual(guard.rejected, {"unconfirmed source": 19})

    def test_locked_source_interrupts_probation(self) -> None:
        """
        A packet from the locked source during probation means it is not
        silent: the candidate's held packets are rejected and its count
        starts over.
        """
        guard = _locked()
        moved = (PHONE, 4002)
        for sequence in (500, 501, 502):
            guard.admit(_packet(sequence), moved)
        self.assertEqual(list(guard.admit(_packet(101), PHONE_RTP)), [_packet(101)])
        self.assertEqual(guard.rejected, {"unconfirmed source": 3})
        for sequence in (503, 504, 505):
            self.assertEqual(list(guard.admit(_packet(sequence), moved)), [])
        self.assertEqual(len(guard.admit(_packet(506), moved)), 4)
        self.assertEqual(guard.rejected, {"unconfirmed source": 3})

    def test_flood_from_second_port_never_takes_over(self) -> None:
        """
        Asterisk's strict-RTP flood test, by sequence numbers alone: while
        the locked source keeps sending (PROBATION_PACKETS - 1 flood packets
        between two of its packets), a flood from a second port with
        in-sequence numbers never takes over; every flood packet is counted
        as "unconfirmed source" and every packet of the locked source is
        kept. (test_pipeline floods faster, with arrival times.)
        """
        guard = _locked()
        attacker = (PHONE, 6666)
        admitted = []
        flood = 0
        for tick in range(1, 201):
            for _ in range(PROBATION_PACKETS - 1):
                admitted += guard.admit(_packet(30000 + flood), attacker)
                flood += 1
            admitted += guard.admit(_packet(100 + tick), PHONE_RTP)
        self.assertEqual(admitted, [_packet(100 + tick) for tick in range(1, 201)])
        self.assertEqual(guard.switches, 0)
        self.assertEqual(guard.rejected, {"unconfirmed source": flood})

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.booleans(), min_size=1, max_size=60))
    def test_interleaved_flood_property(self, pattern: list[bool]) -> None:
        """
        Whatever the interleaving, a second source that never sends
        PROBATION_PACKETS in a row without the locked source in between is
        never admitted, and each of its packets is counted exactly once when
        the locked source speaks again.
        """
        guard = _locked()
        run = 0
        flood = 0
        for from_attacker in pattern + [False]:
            if from_attacker and run < PROBATION_PACKETS - 1:
                run += 1
                self.assertEqual(
                    list(guard.admit(_packet(40000 + flood, ssrc=0xBAD), (PHONE, 6666))), []
                )
                flood += 1
            else:
                run = 0
                self.assertEqual(len(guard.admit(_packet(100 + flood), PHONE_RTP)), 1)
        self.assertEqual(guard.switches, 0)
        self.assertEqual(guard.rejected.get("unconfirmed source", 0), flood)


class StrictPolicyTests(SynchronousTestCase):
    def test_strict_never_switches(self) -> None:
        """
        With rtp.source: strict the first source is locked for good: another
        port or SSRC on the peer's IP is rejected as "strict source" however
        long it sends in sequence, even while the locked source is silent.
        """
        guard = _locked(STRICT)
        for sequence in range(500, 520):
            self.assertEqual(list(guard.admit(_packet(sequence), (PHONE, 4002))), [])
        for sequence in range(600, 610):
            self.assertEqual(list(guard.admit(_packet(sequence, ssrc=7), PHONE_RTP)), [])
        self.assertEqual(guard.switches, 0)
        self.assertEqual(guard.rejected, {"strict source": 30})
        self.assertEqual(list(guard.admit(_packet(101), PHONE_RTP)), [_packet(101)])

    def test_strict_foreign_address(self) -> None:
        """
        Strict also accepts only the peer's IP: others are "foreign address".
        """
        guard = _locked(STRICT)
        guard.admit(_packet(1), ("203.0.113.5", 4000))
        self.assertEqual(guard.rejected, {"foreign address": 1})

    def test_strict_locks_first_packet(self) -> None:
        """
        Under strict, whatever source sends first from the peer's IP is the
        one that is locked.
        """
        guard = SourceGuard(STRICT, PHONE)
        self.assertEqual(len(guard.admit(_packet(1), (PHONE, 5000))), 1)
        self.assertEqual(list(guard.admit(_packet(2), PHONE_RTP)), [])
        self.assertEqual(guard.rejected, {"strict source": 1})


class AnyPolicyTests(SynchronousTestCase):
    def test_any_address_accepted(self) -> None:
        """
        With rtp.source: any the first packet from any address is admitted
        and locks the source, whatever the control connection's IP.
        """
        guard = SourceGuard(ANY, PHONE)
        sbc = ("203.0.113.5", 30000)
        self.assertEqual(list(guard.admit(_packet(1), sbc)), [_packet(1)])
        self.assertEqual(list(guard.admit(_packet(2), sbc)), [_packet(2)])
        self.assertEqual(guard.rejected, {})

    def test_any_still_locks(self) -> None:
        """
        Any address may send, but once locked another source (even the
        peer's own IP) must pass probation, and a flood interleaved with the
        locked source never takes over.
        """
        guard = SourceGuard(ANY, PHONE)
        sbc = ("203.0.113.5", 30000)
        guard.admit(_packet(1), sbc)
        for sequence in range(2, 12):
            self.assertEqual(list(guard.admit(_packet(900 + sequence), PHONE_RTP)), [])
            self.assertEqual(list(guard.admit(_packet(sequence), sbc)), [_packet(sequence)])
        self.assertEqual(guard.rejected, {"unconfirmed source": 10})
        self.assertEqual(guard.switches, 0)
        for sequence in range(950, 954):
            admitted = guard.admit(_packet(sequence), ("198.51.100.7", 1))
        self.assertEqual(len(admitted), 4)
        self.assertEqual(guard.switches, 1)


class NetworkPolicyTests(SynchronousTestCase):
    _policy = (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8:1::/48"),
    )

    def test_inside_accepted(self) -> None:
        """
        With a list of networks, an address inside one of them is accepted,
        including the IPv4-mapped form of an IPv4 address inside.
        """
        for host in ("10.1.2.3", "::ffff:10.1.2.3", "2001:db8:1::99"):
            guard = SourceGuard(self._policy, PHONE)
            self.assertEqual(list(guard.admit(_packet(1), (host, 4000))), [_packet(1)], host)
            self.assertEqual(guard.rejected, {}, host)

    def test_outside_rejected(self) -> None:
        """
        An address outside every network is rejected as "foreign address",
        even the control connection's own IP.
        """
        guard = SourceGuard(self._policy, PHONE)
        for host in (PHONE, "11.0.0.1", "2001:db8:2::1", "::ffff:192.0.2.10"):
            self.assertEqual(list(guard.admit(_packet(1), (host, 4000))), [], host)
        self.assertEqual(guard.rejected, {"foreign address": 4})

    def test_mapped_networks_as_control_allow_reads_them(self) -> None:
        """
        rtp.source networks are read as control.allow's are: one written in
        its IPv4-mapped form holds the IPv4 phone, and ::/0 holds an IPv4
        phone on a dual-stack socket.
        """
        for networks, host in ((["::ffff:10.0.0.0/104"], "10.0.0.5"),
                               (["::/0"], "::ffff:10.0.0.5")):
            policy = parse_config({"rtp": {"source": networks}}).rtp.source
            guard = SourceGuard(policy, PHONE)
            self.assertEqual(list(guard.admit(_packet(1), (host, 4000))), [_packet(1)], networks)

    def test_networks_still_lock(self) -> None:
        """
        A second address inside the networks must pass probation like any
        other new source.
        """
        guard = SourceGuard(self._policy, PHONE)
        guard.admit(_packet(1), ("10.0.0.1", 4000))
        self.assertEqual(list(guard.admit(_packet(2), ("10.0.0.2", 4000))), [])
        self.assertEqual(guard.switches, 0)


class RejectedCountTests(SynchronousTestCase):
    def test_counts_by_reason(self) -> None:
        """
        Rejections are counted exactly, each under its own reason.
        """
        guard = _locked()
        for sequence in range(5):
            guard.admit(_packet(sequence), ("198.51.100.9", 4000))
        guard.admit(_packet(700), (PHONE, 4002))
        guard.admit(_packet(701), (PHONE, 4002))
        guard.admit(_packet(101), PHONE_RTP)
        guard.admit(_packet(702), (PHONE, 4002))  # held, not yet rejected
        self.assertEqual(guard.rejected, {"foreign address": 5, "unconfirmed source": 2})


class StragglerTests(SynchronousTestCase):
    def test_locked_straggler_keeps_probation(self) -> None:
        """
        A late or repeated packet of the locked source (behind its newest
        sequence number) is admitted but does not break a new source's
        probation: only a fresh packet proves the locked source alive.
        """
        guard = _locked()
        guard.admit(_packet(101), PHONE_RTP)
        moved = (PHONE, 4002)
        guard.admit(_packet(500), moved)
        guard.admit(_packet(501), moved)
        self.assertEqual(list(guard.admit(_packet(101), PHONE_RTP)), [_packet(101)])
        guard.admit(_packet(502), moved)
        self.assertEqual(len(guard.admit(_packet(503), moved)), 4)
        self.assertEqual(guard.rejected, {})

    def test_fresh_locked_packet_drops_candidate(self) -> None:
        """
        A fresh packet of the locked source drops the candidate's packets.
        """
        guard = _locked()
        moved = (PHONE, 4002)
        guard.admit(_packet(500), moved)
        guard.admit(_packet(501), moved)
        guard.admit(_packet(101), PHONE_RTP)
        self.assertEqual(guard.rejected, {"unconfirmed source": 2})

    def test_finish_rejects_candidate(self) -> None:
        """
        A candidate still on probation when the recording ends is counted
        as rejected.
        """
        guard = _locked()
        guard.admit(_packet(500), (PHONE, 4002))
        guard.finish()
        self.assertEqual(guard.rejected, {"unconfirmed source": 1})


class ContinuedTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.floats(0, 1000, allow_nan=False), max_size=20),
        st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)),
        st.lists(st.floats(0, 1, allow_nan=False), max_size=8),
    )
    def test_same_as_one_by_one(self, arrivals, locked_last, intervals) -> None:
        """
        continued() leaves the cadence (the recent intervals and the last
        arrival) as hearing each arrival in turn would.
        """
        guards = []
        for _ in range(2):
            guard = SourceGuard(PEER, "127.0.0.1")
            guard._locked_last = locked_last
            guard._intervals.extend(intervals)
            guards.append(guard)
        one_by_one, together = guards
        for arrival in arrivals:
            one_by_one._heard(arrival)
        together.continued(7, arrivals)
        self.assertEqual(list(together._intervals), list(one_by_one._intervals))
        self.assertEqual(together._locked_last, one_by_one._locked_last)
        self.assertEqual(together._locked_highest, 7)
