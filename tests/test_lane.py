"""Tests for recsvc.media.lane, and the hand-over it relies on
(`MediaPipeline.expected` and `MediaPipeline.continued`): packets taken by the
fast lane and handed over together must make the same file and the same
statistics as the same packets taken one by one (jitter aside)."""

from __future__ import annotations

import random

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media.codec import CODECS, SegmentEncoder
from recsvc.media.dtmf import TelephoneEvent, build_event
from recsvc.media.lane import MAX_RUN, FastLane
from recsvc.media.pipeline import Continuation, MediaPipeline, MediaPolicy
from recsvc.media.rtp import RtpPacket, build_rtp, parse_rtp
from recsvc.summary import MediaStats
from recsvc.media.timeline import RECENT

PCMA = CODECS["PCMA"]
PEER_IP = "127.0.0.1"
PHONE = (PEER_IP, 40000)
OTHER_PORT = (PEER_IP, 40002)  # the phone's IP, another port: a candidate source
STRANGER = ("192.0.2.99", 40000)  # another IP: rejected at once
RATE = 8000
START = 1000.0

# A packet the lane expects: audio 20 ms on, from the phone.
EXPECTED = Continuation(
    payload_type=8, ssrc=0x1234, sequence=100, timestamp=16000, ticks=160, source=PHONE
)

# Where the RTP reader reads every datagram into: the lane must copy what it takes.
_BUFFER = bytearray(65536)


def _datagram(expected: Continuation = EXPECTED, step: int = 0, **changes) -> bytes:
    """The wire form of the ``step``-th packet after ``expected`` (or of one
    differing from it as ``changes`` say)."""
    fields = dict(
        payload_type=expected.payload_type,
        sequence=(expected.sequence + step) & 0xFFFF,
        timestamp=(expected.timestamp + step * expected.ticks) & 0xFFFFFFFF,
        ssrc=expected.ssrc,
        payload=bytes([step % 256]) * expected.ticks,
    )
    fields.update(changes)
    return build_rtp(RtpPacket(**fields))


def _flip(datagram: bytes, first_byte: int) -> bytes:
    """The datagram with another first header byte, the same length."""
    return bytes([first_byte]) + datagram[1:]


def _offer(lane: FastLane, datagram: bytes, source=PHONE, now: float = START) -> bool:
    """Offer a datagram as the RTP reader does: in a large reused buffer, with its size."""
    _BUFFER[:len(datagram)] = datagram
    return lane.offer(memoryview(_BUFFER), len(datagram), source, now)


def _armed(expected: Continuation = EXPECTED) -> FastLane:
    lane = FastLane()
    lane.arm(expected)
    return lane


class FastLaneTests(SynchronousTestCase):
    def test_takes_expected_packet(self) -> None:
        """
        The packet the lane was armed for is taken: its payload (not its
        header) is kept, with the count and the arrival time.
        """
        lane = _armed()
        self.assertTrue(_offer(lane, _datagram(), now=START + 0.5))
        self.assertEqual(lane.take(), (1, bytearray(b"\0" * 160), [START + 0.5]))

    def test_takes_each_continuation(self) -> None:
        """
        After a taken packet the lane expects the next sequence number and
        the timestamp one packet on; the payloads are joined in order, and
        each one's arrival kept.
        """
        lane = _armed()
        for step in range(5):
            self.assertTrue(_offer(lane, _datagram(step=step), now=START + step / 50))
        count, payload, arrivals = lane.take()
        self.assertEqual(count, 5)
        self.assertEqual(bytes(payload), b"".join(bytes([n]) * 160 for n in range(5)))
        self.assertEqual(arrivals, [START + step / 50 for step in range(5)])

    def test_copies_out_of_the_buffer(self) -> None:
        """
        What the lane took is its own: the RTP reader's buffer is overwritten by
        the next datagram, and the lane only reads the ``size`` bytes it is
        told of.
        """
        lane = _armed()
        _BUFFER[:] = b"\xee" * len(_BUFFER)
        self.assertTrue(_offer(lane, _datagram()))
        _BUFFER[:200] = b"\x77" * 200
        self.assertEqual(bytes(lane.take()[1]), b"\0" * 160)

    def test_refuses_any_other_packet(self) -> None:
        """
        Anything but exactly the expected packet is refused, and leaves the
        lane as it was: another length, the marker bit, another payload
        type or SSRC, a sequence number or timestamp off by one either way,
        another source address or port, a header with CSRCs, an extension,
        padding or another version.
        """
        expected = _datagram()
        refused = {
            "shorter": _datagram(payload=b"\0" * 159),
            "longer": _datagram(payload=b"\0" * 161),
            "marker": _datagram(marker=True),
            "payload type": _datagram(payload_type=0),
            "comfort noise": _datagram(payload_type=13),
            "ssrc": _datagram(ssrc=0x1235),
            "sequence ahead": _datagram(sequence=101),
            "sequence behind": _datagram(sequence=99),
            "timestamp ahead": _datagram(timestamp=16001),
            "timestamp behind": _datagram(timestamp=15999),
            "next packet": _datagram(step=1),
            "csrc": _datagram(csrcs=(7,), payload=b"\0" * 156),
            "extension": _datagram(extension=(0xBEDE, b"\0" * 4), payload=b"\0" * 152),
            "csrc count bit": _flip(expected, 0x81),
            "extension bit": _flip(expected, 0x90),
            "padding bit": _flip(expected, 0xA0),
            "version 1": _flip(expected, 0x40),
        }
        lane = _armed()
        for name, datagram in refused.items():
            self.assertFalse(_offer(lane, datagram), name)
        for source in [OTHER_PORT, STRANGER, ("127.0.0.2", 40000), ("::ffff:127.0.0.1", 40000)]:
            self.assertFalse(_offer(lane, expected, source=source), source)
        self.assertEqual(lane.count, 0)
        self.assertTrue(_offer(lane, expected))
        self.assertEqual(lane.count, 1)

    def test_refuses_repeat(self) -> None:
        """
        A packet the lane has just taken, arriving again, is refused (the
        full path counts it as a duplicate).
        """
        lane = _armed()
        self.assertTrue(_offer(lane, _datagram()))
        self.assertFalse(_offer(lane, _datagram()))

    def test_unarmed_takes_nothing(self) -> None:
        """
        A new lane takes nothing, not even a packet with an all-zero header
        of its (zero) expected length.
        """
        lane = FastLane()
        self.assertFalse(_offer(lane, _datagram()))
        self.assertFalse(lane.offer(b"\0" * 12, 12, PHONE, START))
        self.assertFalse(lane.offer(b"\0" * 12, 0, None, START))
        self.assertEqual(lane.count, 0)

    def test_arm_none_disarms(self) -> None:
        """
        arm(None) stops the lane: the packet it expected is refused.
        """
        lane = _armed()
        self.assertTrue(_offer(lane, _datagram()))
        lane.take()
        lane.arm(None)
        self.assertFalse(_offer(lane, _datagram(step=1)))
        self.assertEqual(lane.count, 0)

    def test_disarm_keeps_taken(self) -> None:
        """
        A lane disarmed while it holds packets keeps them to be taken:
        Recording.stop reads what waits in the port (into the lane), disarms the lane,
        and hands its packets over when the files are finished.
        """
        lane = _armed()
        self.assertTrue(_offer(lane, _datagram(), now=START + 1))
        lane.arm(None)
        self.assertFalse(_offer(lane, _datagram(step=1)))
        self.assertEqual(lane.take(), (1, bytearray(b"\0" * 160), [START + 1]))

    def test_rearm_replaces_expectation(self) -> None:
        """
        Arming again expects the new continuation only.
        """
        lane = _armed()
        moved = attrs.evolve(EXPECTED, ssrc=0xBEEF, sequence=7, timestamp=99, ticks=80)
        lane.arm(moved)
        self.assertFalse(_offer(lane, _datagram()))
        self.assertTrue(_offer(lane, _datagram(moved)))
        self.assertEqual(lane.take()[:2], (1, bytearray(b"\0" * 80)))

    def test_take_resets(self) -> None:
        """
        take() hands over what was taken and starts afresh, still armed:
        the next packet is taken into a new buffer, the one handed over is
        not touched.
        """
        lane = _armed()
        _offer(lane, _datagram(step=0))
        _offer(lane, _datagram(step=1))
        count, payload, _ = lane.take()
        self.assertEqual((count, len(payload)), (2, 320))
        self.assertEqual(lane.take()[:2], (0, bytearray()))
        self.assertTrue(_offer(lane, _datagram(step=2)))
        self.assertEqual(len(payload), 320)
        self.assertEqual(lane.take()[:2], (1, bytearray(b"\2" * 160)))

    def test_stops_before_sequence_wrap(self) -> None:
        """
        The lane stops at sequence number 65535: the packet numbered 0 that
        follows goes to the full path (which unwraps it).
        """
        lane = _armed(attrs.evolve(EXPECTED, sequence=0xFFFE))
        wrapping = attrs.evolve(EXPECTED, sequence=0xFFFE)
        self.assertTrue(_offer(lane, _datagram(wrapping, step=0)))
        self.assertTrue(_offer(lane, _datagram(wrapping, step=1)))
        self.assertFalse(_offer(lane, _datagram(wrapping, step=2)))
        self.assertEqual(lane.count, 2)

    def test_stops_before_timestamp_wrap(self) -> None:
        """
        The lane stops at the last packet whose timestamp does not wrap,
        even when the wrap falls inside a packet's ticks.
        """
        for first, taken in [(2**32 - 320, 2), (2**32 - 161, 2), (2**32 - 160, 1), (2**32 - 1, 1)]:
            expected = attrs.evolve(EXPECTED, timestamp=first)
            lane = _armed(expected)
            results = [_offer(lane, _datagram(expected, step=step)) for step in range(taken + 1)]
            self.assertEqual(results, [True] * taken + [False], hex(first))

    def test_wrap_does_not_carry(self) -> None:
        """
        Past a wrap the lane takes nothing, not even the packet its header
        arithmetic would carry into: after sequence number 65535 one of the
        next payload type numbered 0, after a timestamp wrap one numbered
        two on.
        """
        expected = attrs.evolve(EXPECTED, sequence=0xFFFF)
        lane = _armed(expected)
        self.assertTrue(_offer(lane, _datagram(expected)))
        carried = _datagram(expected, step=1, payload_type=9)
        self.assertFalse(_offer(lane, carried))

        expected = attrs.evolve(EXPECTED, timestamp=2**32 - 160)
        lane = _armed(expected)
        self.assertTrue(_offer(lane, _datagram(expected)))
        carried = _datagram(expected, step=1, sequence=expected.sequence + 2)
        self.assertFalse(_offer(lane, carried))

    def test_stops_after_max_run(self) -> None:
        """
        At most MAX_RUN packets are taken after an arm: then the full path
        looks again.
        """
        expected = attrs.evolve(EXPECTED, sequence=0, timestamp=0)
        lane = _armed(expected)
        for step in range(MAX_RUN):
            self.assertTrue(_offer(lane, _datagram(expected, step=step)), step)
        self.assertFalse(_offer(lane, _datagram(expected, step=MAX_RUN)))
        self.assertEqual(lane.count, MAX_RUN)

    def test_peer_while_armed(self) -> None:
        """
        peer is the address the expected packet comes from while the lane
        takes packets; None unarmed, disarmed or run out.
        """
        lane = FastLane()
        self.assertIsNone(lane.peer)
        lane.arm(EXPECTED)
        self.assertEqual(lane.peer, PHONE)
        lane.arm(None)
        self.assertIsNone(lane.peer)
        expected = attrs.evolve(EXPECTED, sequence=0xFFFF)  # one packet before the wrap
        lane = _armed(expected)
        self.assertTrue(_offer(lane, _datagram(expected)))
        self.assertIsNone(lane.peer)

    def test_last_arrival(self) -> None:
        """
        last_arrival is when the lane last took a packet, across a take;
        None before any.
        """
        lane = _armed()
        self.assertIsNone(lane.last_arrival)
        _offer(lane, _datagram(step=0), now=START)
        _offer(lane, _datagram(step=1), now=START + 0.02)
        self.assertFalse(_offer(lane, _datagram(step=5), now=START + 0.5))
        self.assertEqual(lane.last_arrival, START + 0.02)
        lane.take()
        self.assertEqual(lane.last_arrival, START + 0.02)
        lane.take()
        self.assertEqual(lane.last_arrival, START + 0.02)


def _pipeline(codec=PCMA, decoded: bool = False, **policy) -> MediaPipeline:
    return MediaPipeline(
        codec, SegmentEncoder(codec, decoded=decoded), PEER_IP, MediaPolicy(**policy)
    )


Delivery = tuple[bytes, tuple[str, int], float]


def _one_by_one(pipeline: MediaPipeline, deliveries: list[Delivery]) -> bytes:
    """Every datagram to `MediaPipeline.packet`; the file's bytes."""
    out: list[bytes] = []
    for datagram, source, arrival in deliveries:
        out += pipeline.packet(parse_rtp(datagram), source, arrival)
    out += pipeline.flush()
    return b"".join(out)


def _through_lane(
    pipeline: MediaPipeline, deliveries: list[Delivery], syncs: frozenset[int] = frozenset()
) -> tuple[bytes, int]:
    """Every datagram offered to a fast lane first, as the RTP reader and the
    recording do: one the lane refuses goes to `MediaPipeline.packet`, after
    the lane's packets are handed over, and the lane is armed again. After
    the deliveries numbered in ``syncs`` the lane is also handed over (a
    recording's sync). Returns the file's bytes and how many the lane took."""
    lane = FastLane()
    out: list[bytes] = []
    taken = 0
    for index, (datagram, source, arrival) in enumerate(deliveries):
        if _offer(lane, datagram, source, arrival):
            taken += 1
        else:
            if lane.count:
                out += pipeline.continued(*lane.take())
            out += pipeline.packet(parse_rtp(datagram), source, arrival)
            lane.arm(pipeline.expected())
        if index in syncs and lane.count:
            out += pipeline.continued(*lane.take())
    if lane.count:
        out += pipeline.continued(*lane.take())
    out += pipeline.flush()
    return b"".join(out), taken


def _comparable(stats: MediaStats) -> MediaStats:
    """Stats as the lane must keep them: all but jitter, sampled once per hand-over."""
    return attrs.evolve(stats, jitter_ms=0)


def _clean(count: int, ptime: int = 160, sequence: int = 0, timestamp: int = 0,
           ssrc: int = 0x5EED, payload_type: int = 8) -> list[Delivery]:
    """An in-order stream, each packet arriving on time."""
    return [
        (
            build_rtp(RtpPacket(
                payload_type, (sequence + index) & 0xFFFF,
                (timestamp + index * ptime) & 0xFFFFFFFF, ssrc,
                random.Random(index).randbytes(ptime),
            )),
            PHONE,
            START + index * ptime / RATE,
        )
        for index in range(count)
    ]


class _Phone:
    """One call's RTP as the phone sends it (possibly restarting its stream)."""

    def __init__(self, rng: random.Random, ptime: int, sequence: int, timestamp: int) -> None:
        self.rng = rng
        self.ptime = ptime
        self.ssrc = rng.getrandbits(32)
        self.sequence = sequence
        self.timestamp = timestamp

    def restart(self) -> None:
        """A new SSRC with new numbers (the phone restarted its stream)."""
        self.ssrc = self.rng.getrandbits(32)
        self.sequence = self.rng.getrandbits(16)
        self.timestamp = self.rng.getrandbits(32)

    def packet(self, payload_type: int, payload: bytes, marker: bool = False,
               timestamp: int | None = None) -> RtpPacket:
        packet = RtpPacket(
            payload_type, self.sequence & 0xFFFF,
            (self.timestamp if timestamp is None else timestamp) & 0xFFFFFFFF,
            self.ssrc, payload, marker,
        )
        self.sequence += 1
        return packet


@attrs.frozen
class _Network:
    """How one random call is sent and delivered."""

    payload_type: int
    ptime: int
    count: int
    sequence: int
    timestamp: int
    first_marked: bool
    dtmf: bool
    loss: float
    duplicates: float
    foreign: float
    restarts: float
    comfort_noise: float
    jitter: float
    tick: float | None  # the RTP reader's: arrivals rounded to it


def _call(network: _Network, rng: random.Random) -> list[Delivery]:
    """A call's deliveries, in arrival order: the phone's packets with loss,
    reordering (jitter), duplicates, stalls, comfort noise, key presses and
    stream restarts, and packets from other sources."""
    phone = _Phone(rng, network.ptime, network.sequence, network.timestamp)
    sent: list[tuple[float, RtpPacket, tuple[str, int]]] = []
    stall = 0.0
    press: int | None = None  # the timestamp of the key press going on
    for slot in range(network.count):
        if rng.random() < network.restarts:
            phone.restart()
        if rng.random() < 0.01:
            stall += rng.uniform(0, 0.2)
        at = START + slot * network.ptime / RATE + stall
        if press is not None and rng.random() < 0.4:
            end = rng.random() < 0.5
            event = build_event(TelephoneEvent(5, end, 10, (phone.timestamp - press) & 0xFFFF))
            packets = [phone.packet(101, event, timestamp=press) for _ in range(3 if end else 1)]
            press = None if end else press
        elif network.dtmf and rng.random() < 0.03:
            press = phone.timestamp
            event = build_event(TelephoneEvent(5, False, 10, network.ptime))
            packets = [phone.packet(101, event, marker=True)]
        elif rng.random() < network.comfort_noise:
            packets = [phone.packet(13, b"\x40")]
        else:
            payload = rng.randbytes(network.ptime)
            packets = [phone.packet(
                network.payload_type, payload, marker=slot == 0 and network.first_marked
            )]
        phone.timestamp += network.ptime
        for packet in packets:
            if rng.random() >= network.loss:
                sent.append((at + rng.uniform(0, network.jitter), packet, PHONE))
            if rng.random() < network.duplicates:
                sent.append((at + rng.uniform(0, 0.1), packet, PHONE))
            if rng.random() < network.foreign:
                intruder = attrs.evolve(packet, payload=b"\x99" * len(packet.payload))
                sent.append((at + 0.001, intruder, rng.choice([STRANGER, OTHER_PORT])))
    sent.sort(key=lambda item: item[0])
    deliveries = []
    for at, packet, source in sent:
        if network.tick is not None:
            at = round(at / network.tick) * network.tick
        deliveries.append((build_rtp(packet), source, at))
    return deliveries


_RATES = st.sampled_from([0.0, 0.01, 0.05])
_CODECS = [(CODECS["PCMA"], False), (CODECS["PCMU"], False), (CODECS["PCMU"], True)]


def _networks(payload_type: int) -> st.SearchStrategy[_Network]:
    return st.builds(
        _Network,
        payload_type=st.just(payload_type),
        ptime=st.sampled_from([80, 160, 240]),
        count=st.one_of(st.integers(100, 300), st.integers(1, 5)),
        sequence=st.one_of(st.integers(0, 0xFFFF), st.integers(0xFFFF - 60, 0xFFFF)),
        timestamp=st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 16000, 2**32 - 1)),
        first_marked=st.booleans(),
        dtmf=st.booleans(),
        loss=_RATES,
        duplicates=_RATES,
        foreign=_RATES,
        restarts=st.sampled_from([0.0, 0.01]),
        comfort_noise=_RATES,
        jitter=st.sampled_from([0.0, 0.01, 0.05]),
        tick=st.sampled_from([None, 0.005]),
    )


class HandOverTests(SynchronousTestCase):
    def assert_same_recording(
        self, deliveries: list[Delivery], syncs: frozenset[int] = frozenset(), **pipeline
    ) -> tuple[int, MediaStats]:
        """The deliveries make the same file and stats through the lane as
        one by one; returns how many packets the lane took, and the stats."""
        slow, fast = _pipeline(**pipeline), _pipeline(**pipeline)
        expected = _one_by_one(slow, deliveries)
        data, taken = _through_lane(fast, deliveries, syncs)
        self.assertEqual(data, expected)
        stats = slow.stats()
        self.assertEqual(_comparable(fast.stats()), _comparable(stats))
        self.assertEqual(fast.last_admitted, slow.last_admitted)
        return taken, stats

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(
        st.sampled_from(_CODECS).flatmap(
            lambda codec: st.tuples(st.just(codec), _networks(codec[0].payload_type))
        ),
        st.sampled_from([40, 100, 300]),
        st.integers(0, 2**32 - 1),
    )
    def test_same_as_one_by_one(self, call: tuple, window: int, seed: int) -> None:
        """
        Whatever the network does to a call (loss, reordering, duplicates,
        stalls, comfort noise, key presses, stream restarts, packets from
        another address or port, numbers about to wrap), taking packets
        through the lane and handing them over (also at random syncs) gives
        the file and the statistics of taking each packet on its own, but
        for jitter.
        """
        rng = random.Random(seed)
        (codec, decoded), network = call
        deliveries = _call(network, rng)
        syncs = frozenset(i for i in range(len(deliveries)) if rng.random() < 0.05)
        self.assert_same_recording(
            deliveries, syncs, codec=codec, decoded=decoded, reorder_window_ms=window
        )

    def test_real_network_example(self) -> None:
        """
        A call with every fault at once (a lost packet, two swapped, a
        duplicate, comfort noise, a key press, a stranger's packets, an SSRC
        change, sequence numbers wrapping) is recorded the same through the
        lane, which takes the packets in between.
        """
        phone = _Phone(random.Random(7), 160, 0xFFF0, 2**32 - 4000)
        sent: list[Delivery] = []

        def send(packet: RtpPacket, source=PHONE, delay: float = 0.0) -> None:
            sent.append((build_rtp(packet), source, START + len(sent) * 0.02 + delay))

        held = None
        for slot in range(150):
            payload = bytes([slot % 256]) * 160
            if slot == 30:
                phone.packet(8, payload)  # lost
            elif slot == 40:
                held = phone.packet(8, payload)
            elif slot == 41:
                send(phone.packet(8, payload))
                send(held)  # swapped with the one before
            elif slot == 50:
                packet = phone.packet(8, payload)
                send(packet)
                send(packet, delay=0.004)  # twice
            elif slot == 60:
                send(phone.packet(13, b"\x40"))
            elif slot in (61, 62):
                pass  # silent after comfort noise
            elif slot in (80, 81, 82):
                end = slot == 82
                event = TelephoneEvent(1, end, 10, (slot - 79) * 160)
                send(phone.packet(101, build_event(event), marker=slot == 80,
                                  timestamp=phone.timestamp - (slot - 80) * 160))
            elif slot == 100:
                phone.restart()
                send(phone.packet(8, payload, marker=True))
            else:
                send(phone.packet(8, payload, marker=slot == 0))
            if slot % 20 == 5:
                send(RtpPacket(8, slot, slot * 160, 0xBAD, b"\x99" * 160), source=STRANGER)
            phone.timestamp += 160
        taken, stats = self.assert_same_recording(sent, reorder_window_ms=100)
        self.assertGreater(taken, 80)
        self.assertEqual((stats.lost, stats.duplicate, stats.comfort_noise, stats.dtmf_packets),
                         (1, 1, 1, 3))
        self.assertEqual((stats.stream_restarts, stats.rejected), (1, {"foreign address": 8}))

    def test_clean_stream_taken_by_lane(self) -> None:
        """
        In a clean in-order call the lane takes nearly every packet: all
        but those of the first reorder window (held before the file
        starts), one after each MAX_RUN taken and the few around the wraps
        of the sequence number and the timestamp.
        """
        deliveries = _clean(2500, sequence=65000, timestamp=2**32 - 100 * 160)
        taken, stats = self.assert_same_recording(deliveries)
        self.assertGreater(taken, 2500 - 60)
        self.assertEqual((stats.received, stats.lost, stats.gaps), (2500, 0, 0))

    def test_expected_steady_state(self) -> None:
        """
        In the steady state the pipeline expects the packet after the
        newest: same SSRC and payload type, next sequence number, timestamp
        one packet on, as long, from the locked source (an IPv4-mapped
        address as plain IPv4).
        """
        pipeline = _pipeline(reorder_window_ms=20)
        for datagram, _, arrival in _clean(5, ptime=240, sequence=0xFFFE, timestamp=7):
            pipeline.packet(parse_rtp(datagram), ("::ffff:127.0.0.1", 40000), arrival)
        self.assertEqual(
            pipeline.expected(),
            Continuation(8, 0x5EED, 3, 7 + 5 * 240, 240, PHONE),
        )

    def test_expected_none_unless_steady(self) -> None:
        """
        Nothing is expected before the first packet, while the first reorder
        window holds anything but one run of audio in order, while audio is
        held behind a hole, after comfort noise, and while another source of
        the phone's address is on probation. Within the first window, in-order
        audio is expected to go on, once its source has proven a stream.
        """
        deliveries = _clean(20)
        pipeline = _pipeline(reorder_window_ms=100)
        self.assertIsNone(pipeline.expected())
        for datagram, source, arrival in deliveries[:3]:
            pipeline.packet(parse_rtp(datagram), source, arrival)
        self.assertIsNone(pipeline.expected())  # held: the start is not decided
        datagram, source, arrival = deliveries[3]
        pipeline.packet(parse_rtp(datagram), source, arrival)
        self.assertEqual(pipeline.expected().sequence, 4)  # within the first window, in order
        reordered = _pipeline(reorder_window_ms=100)
        for index in (0, 2, 1):
            datagram, source, arrival = deliveries[index]
            reordered.packet(parse_rtp(datagram), source, arrival)
        self.assertIsNone(reordered.expected())  # within the first window, out of order
        for datagram, source, arrival in deliveries[4:10]:
            pipeline.packet(parse_rtp(datagram), source, arrival)
        self.assertIsNotNone(pipeline.expected())
        pipeline.packet(parse_rtp(deliveries[11][0]), PHONE, deliveries[11][2])
        self.assertIsNone(pipeline.expected())  # 10 is missing: 11 held
        pipeline.packet(parse_rtp(deliveries[10][0]), PHONE, deliveries[10][2])
        self.assertEqual(pipeline.expected().sequence, 12)
        pipeline.packet(RtpPacket(8, 12, 12 * 160, 0x5EED, b"\1" * 160), OTHER_PORT, START)
        self.assertIsNone(pipeline.expected())  # a candidate on probation
        pipeline.packet(parse_rtp(deliveries[12][0]), PHONE, deliveries[12][2])
        self.assertEqual(pipeline.expected().sequence, 13)
        pipeline.packet(RtpPacket(13, 13, 13 * 160, 0x5EED, b"\x40"), PHONE, deliveries[13][2])
        self.assertIsNone(pipeline.expected())  # comfort noise

    def test_continued_advances_expectation(self) -> None:
        """
        After ``count`` packets handed over, the next expected packet is
        ``count`` on; received and last_admitted count them.
        """
        pipeline = _pipeline(reorder_window_ms=20)
        for datagram, source, arrival in _clean(5):
            pipeline.packet(parse_rtp(datagram), source, arrival)
        before = pipeline.expected()
        out = pipeline.continued(3, b"\7" * 480, [START + 0.98, START + 0.99, START + 1.0])
        self.assertEqual(b"".join(out), b"\7" * 480)
        self.assertEqual(
            pipeline.expected(),
            attrs.evolve(before, sequence=before.sequence + 3, timestamp=before.timestamp + 480),
        )
        self.assertEqual(pipeline.stats().received, 8)
        self.assertEqual(pipeline.last_admitted, START + 1.0)

    def test_duplicate_of_taken_packet(self) -> None:
        """
        A packet the lane took, arriving again, is a duplicate (dropped,
        counted) up to RECENT sequence numbers behind the newest; further
        behind it is late, not a duplicate, and not written either.
        """
        deliveries = _clean(RECENT + 200)
        for behind, counted in [(1, (1, 0)), (RECENT - 1, (1, 0)), (RECENT, (0, 1))]:
            pipeline = _pipeline()
            data, taken = _through_lane(pipeline, deliveries)
            self.assertGreater(taken, RECENT + 1)
            repeat = deliveries[-1 - behind]
            self.assertEqual(pipeline.packet(parse_rtp(repeat[0]), PHONE, START + 60), [])
            stats = pipeline.stats()
            self.assertEqual((stats.duplicate, stats.late), counted, behind)

    def test_straggler_after_hand_over(self) -> None:
        """
        Once the lane's packets are handed over, the source check knows the
        newest of them: a repeat of one of them, arriving while another
        source of the phone's address is on probation, is a straggler that
        proves nothing, so the new source still takes over.
        """
        deliveries = _clean(80)
        repeat = deliveries[70]
        for index in range(4):
            if index == 2:
                deliveries.append((repeat[0], PHONE, START + 1.715))
            deliveries.append((
                build_rtp(RtpPacket(8, 500 + index, 90000 + 160 * index, 0xB, b"\x33" * 160)),
                OTHER_PORT, START + 1.70 + 0.01 * index,
            ))
        taken, stats = self.assert_same_recording(deliveries, reorder_window_ms=100)
        self.assertGreater(taken, 60)
        self.assertEqual((stats.source_switches, stats.duplicate), (1, 1))

    def test_cadence_kept_through_lane(self) -> None:
        """
        The source check judges the locked source silent by its own recent
        cadence, packet by packet: one long interval among the packets the
        lane took is remembered as it is, not averaged away. So a second
        stream from another port of the phone that would not take over one
        by one does not take over through the lane either.
        """
        times = [index * 0.02 for index in range(60)] + [1.26, 1.28, 1.30]  # one 80 ms gap
        deliveries = [
            (datagram, PHONE, START + at)
            for (datagram, _, _), at in zip(_clean(len(times)), times)
        ]
        for index in range(4):
            deliveries.append((
                build_rtp(RtpPacket(8, 500 + index, 90000 + 160 * index, 0xB, b"\x33" * 160)),
                OTHER_PORT, START + 1.37 + 0.01 * index,
            ))
        self.assert_same_recording(deliveries)

    def test_g722_hand_over(self) -> None:
        """
        G.722 (always stored decoded) is recorded the same through the lane:
        the decoder gets the handed-over audio as bytes.
        """
        taken, _ = self.assert_same_recording(
            _clean(100, payload_type=9), codec=CODECS["G722"], decoded=True, reorder_window_ms=20
        )
        self.assertGreater(taken, 90)
