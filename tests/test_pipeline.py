"""Tests for recsvc.media.pipeline: RTP as real networks deliver it in, the bytes of
the WAV file out."""

from __future__ import annotations

import math
import random
from array import array

import attrs
import G722
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media import g711
from recsvc.media.codec import CODECS, SegmentEncoder
from recsvc.media.dtmf import TelephoneEvent, build_event
from recsvc.media.pipeline import MediaPipeline, MediaPolicy
from recsvc.media.rtp import RtpPacket
from recsvc.media.source import ANY
from recsvc.storage.folder import Storage
from recsvc.summary import DigitPressed, Discontinuity

PCMA = CODECS["PCMA"]
PCMU = CODECS["PCMU"]
G722_CODEC = CODECS["G722"]

PEER_IP = "127.0.0.1"
PHONE = (PEER_IP, 40000)
STRANGER = ("192.0.2.99", 40000)
RATE = 8000
START = 1000.0  # wall-clock time of the call's first tick


def _pipeline(codec=PCMA, decoded: bool = False, **policy) -> MediaPipeline:
    return MediaPipeline(
        codec, SegmentEncoder(codec, decoded=decoded), PEER_IP, MediaPolicy(**policy)
    )


def _at(position: int) -> float:
    """When the packet for a timeline position arrives if the network is kind."""
    return START + position / RATE


def _payload(position: int, ticks: int) -> bytes:
    """Audio for ``ticks`` from ``position``, different everywhere and never
    all silence."""
    return random.Random(position).randbytes(ticks)


class _Sender:
    """One RTP stream as a phone sends it: call positions (ticks) in, packets
    out, with its own SSRC, sequence numbers and timestamp origin."""

    def __init__(
        self, ssrc: int, sequence: int, timestamp: int, start: int = 0, payload_type: int = 8
    ) -> None:
        self.ssrc = ssrc
        self._sequence = sequence
        self._timestamp = timestamp
        self._start = start
        self._payload_type = payload_type

    def _packet(self, payload_type: int, position: int, payload: bytes) -> RtpPacket:
        packet = RtpPacket(
            payload_type=payload_type,
            sequence=self._sequence & 0xFFFF,
            timestamp=(self._timestamp + position - self._start) & 0xFFFFFFFF,
            ssrc=self.ssrc,
            payload=payload,
        )
        self._sequence += 1
        return packet

    def audio(self, position: int, payload: bytes, payload_type: int | None = None) -> RtpPacket:
        if payload_type is None:
            payload_type = self._payload_type
        return self._packet(payload_type, position, payload)

    def comfort_noise(self, position: int) -> RtpPacket:
        return self._packet(13, position, b"\x40")

    def dtmf(self, position: int, event: int, duration: int, end: bool = False) -> RtpPacket:
        return self._packet(101, position, build_event(TelephoneEvent(event, end, 10, duration)))

    def skip(self) -> None:
        """A packet sent and lost on the way."""
        self._sequence += 1


def _run(pipeline: MediaPipeline, deliveries) -> bytes:
    """Feed (packet, source, arrival) in order, flush, and return the file's bytes."""
    out: list[bytes] = []
    for packet, source, arrival in deliveries:
        out += pipeline.packet(packet, source, arrival)
    out += pipeline.flush()
    return b"".join(out)


def _expected(length: int, pieces: list[tuple[int, bytes]], silence: bytes = b"\xd5") -> bytes:
    data = bytearray(silence * length)
    for position, payload in pieces:
        data[position:position + len(payload)] = payload
    return bytes(data)


def _stream(ptime: int, count: int, ssrc: int = 0x1234, sequence: int = 0, timestamp: int = 0):
    """A plain in-order stream: (deliveries, pieces)."""
    sender = _Sender(ssrc, sequence, timestamp)
    deliveries, pieces = [], []
    for index in range(count):
        position = index * ptime
        payload = _payload(position, ptime)
        deliveries.append((sender.audio(position, payload), PHONE, _at(position)))
        pieces.append((position, payload))
    return deliveries, pieces


class InOrderTests(SynchronousTestCase):
    def test_storage_encoder(self) -> None:
        """
        With the storage's own encoder (g711 format keeps A-law as received),
        an in-order stream comes out as the concatenated payloads.
        """
        pipeline = MediaPipeline(PCMA, Storage("unused").encoder(PCMA), PEER_IP, MediaPolicy())
        deliveries, pieces = _stream(160, 100)
        self.assertEqual(_run(pipeline, deliveries), b"".join(p for _, p in pieces))
        stats = pipeline.stats()
        self.assertEqual((stats.received, stats.lost, stats.gaps, stats.rejected), (100, 0, 0, {}))

    def test_packet_times_from_timestamps(self) -> None:
        """
        Packet time is read from the timestamps: 10, 20, 30, 40, 60 ms and
        large packets all come out as their payloads back to back, also when
        the packet time changes mid-call.
        """
        sender = _Sender(0x55, 100, 77777)
        deliveries, pieces = [], []
        position = 0
        for ptime in (80, 160, 240, 320, 480, 1600, 240, 80):
            for _ in range(12):
                payload = _payload(position, ptime)
                deliveries.append((sender.audio(position, payload), PHONE, _at(position)))
                pieces.append((position, payload))
                position += ptime
        self.assertEqual(_run(_pipeline(), deliveries), _expected(position, pieces))

    def test_wrapping_counters(self) -> None:
        """
        Sequence numbers and timestamps wrapping at 2^16 and 2^32 do not
        glitch the file.
        """
        deliveries, pieces = _stream(160, 50, sequence=65510, timestamp=0xFFFFF000)
        pipeline = _pipeline()
        self.assertEqual(_run(pipeline, deliveries), b"".join(p for _, p in pieces))
        stats = pipeline.stats()
        self.assertEqual((stats.lost, stats.duplicate, stats.stream_restarts), (0, 0, 0))


class LossTests(SynchronousTestCase):
    def test_loss_filled_with_silence(self) -> None:
        """
        A lost packet becomes A-law silence (0xD5) for exactly its duration,
        counted as a gap, and the packets after it sit at their offsets.
        """
        deliveries, pieces = _stream(160, 50)
        lost = {10, 11, 30}
        deliveries = [d for index, d in enumerate(deliveries) if index not in lost]
        pieces = [p for index, p in enumerate(pieces) if index not in lost]
        pipeline = _pipeline()
        data = _run(pipeline, deliveries)
        self.assertEqual(data, _expected(50 * 160, pieces))
        self.assertEqual(data[1600:1920], b"\xd5" * 320)
        stats = pipeline.stats()
        self.assertEqual((stats.lost, stats.gaps, stats.gap_ms), (3, 2, 60.0))
        self.assertEqual(stats.comfort_noise_ms, 0.0)

    def test_mu_law_silence(self) -> None:
        """
        For PCMU the filled silence is 0xFF.
        """
        sender = _Sender(1, 0, 0, payload_type=0)
        deliveries = [
            (sender.audio(position, b"\x01" * 160), PHONE, _at(position))
            for position in (0, 160, 480)
        ]
        data = _run(_pipeline(PCMU), deliveries)
        self.assertEqual(data, b"\x01" * 320 + b"\xff" * 160 + b"\x01" * 160)

    def test_long_gap_capped(self) -> None:
        """
        A gap longer than max_gap_fill (a call on hold) is filled only up to
        the cap, and the discontinuity is reported with its length by the
        timestamps and by the wall clock (between the packets on either side,
        so up to one packet time more).
        """
        sender = _Sender(1, 0, 0)
        deliveries = []
        for position in (0, 160, 320 + 2 * RATE):
            payload = _payload(position, 160)
            deliveries.append((sender.audio(position, payload), PHONE, _at(position)))
        pipeline = _pipeline(max_gap_fill=0.5)
        data = _run(pipeline, deliveries)
        self.assertEqual(len(data), 320 + RATE // 2 + 160)
        self.assertEqual(data[320:320 + RATE // 2], b"\xd5" * (RATE // 2))
        [discontinuity] = pipeline.stats().discontinuities
        self.assertEqual(
            attrs.evolve(discontinuity, wall_s=0.0),
            Discontinuity(offset_s=0.04, gap_s=2.0, wall_s=0.0, filled_s=0.5),
        )
        self.assertTrue(2.0 <= discontinuity.wall_s <= 2.02, discontinuity.wall_s)

    @settings(max_examples=60, deadline=None)
    @given(
        st.sampled_from([80, 160, 240, 320, 480]),
        st.lists(st.booleans(), min_size=2, max_size=60),
    )
    def test_any_loss_pattern(self, ptime: int, received: list[bool]) -> None:
        """
        Whatever packets are lost (the first and last arrive), the file is as
        long as the timestamps say and every payload is at its offset.
        """
        received[0] = received[-1] = True
        deliveries, pieces = _stream(ptime, len(received), sequence=65500, timestamp=0xFFFFFF00)
        deliveries = [d for d, keep in zip(deliveries, received) if keep]
        pieces = [p for p, keep in zip(pieces, received) if keep]
        pipeline = _pipeline()
        self.assertEqual(_run(pipeline, deliveries), _expected(len(received) * ptime, pieces))
        self.assertEqual(pipeline.stats().lost, received.count(False))


class ReorderTests(SynchronousTestCase):
    def test_reordered_and_duplicated(self) -> None:
        """
        Packets swapped on the way are written in timestamp order; a
        duplicate is dropped and counted; nothing is late.
        """
        deliveries, pieces = _stream(160, 40)
        deliveries[5], deliveries[6] = deliveries[6], deliveries[5]
        deliveries[20:20] = [deliveries[19]]  # 19 delivered twice
        pipeline = _pipeline()
        self.assertEqual(_run(pipeline, deliveries), b"".join(p for _, p in pieces))
        stats = pipeline.stats()
        self.assertEqual((stats.duplicate, stats.late, stats.lost, stats.gaps), (1, 0, 0, 0))

    @settings(max_examples=40, deadline=None)
    @given(st.randoms(use_true_random=False))
    def test_permutation_within_window(self, rng: random.Random) -> None:
        """
        Any shuffling of arrival order within 200 ms (well inside the 1 s
        reorder window) yields the same file as the in-order stream.
        """
        deliveries, pieces = _stream(160, 60)
        jittered = [
            (packet, source, arrival + rng.uniform(0, 0.2))
            for packet, source, arrival in deliveries
        ]
        jittered.sort(key=lambda delivery: delivery[2])
        self.assertEqual(_run(_pipeline(), jittered), b"".join(p for _, p in pieces))


class ComfortNoiseTests(SynchronousTestCase):
    def test_comfort_noise_is_silence(self) -> None:
        """
        Comfort noise (payload type 13) becomes silence until the next audio,
        reported as comfort_noise_ms and not as a gap.
        """
        sender = _Sender(1, 0, 0)
        deliveries = [
            (sender.audio(0, b"\x01" * 160), PHONE, _at(0)),
            (sender.comfort_noise(160), PHONE, _at(160)),
            (sender.audio(160 + 4000, b"\x02" * 160), PHONE, _at(4160)),
        ]
        pipeline = _pipeline()
        data = _run(pipeline, deliveries)
        self.assertEqual(data, b"\x01" * 160 + b"\xd5" * 4000 + b"\x02" * 160)
        stats = pipeline.stats()
        self.assertEqual(stats.comfort_noise, 1)
        self.assertEqual(stats.comfort_noise_ms, 500.0)
        self.assertEqual((stats.gaps, stats.gap_ms, stats.lost), (0, 0.0, 0))

    def test_comfort_noise_mu_law(self) -> None:
        """
        For PCMU comfort noise is 0xFF silence.
        """
        sender = _Sender(1, 0, 0, payload_type=0)
        deliveries = [
            (sender.audio(0, b"\x01" * 160), PHONE, _at(0)),
            (sender.comfort_noise(160), PHONE, _at(160)),
            (sender.audio(800, b"\x02" * 160), PHONE, _at(800)),
        ]
        pipeline = _pipeline(PCMU)
        self.assertEqual(
            _run(pipeline, deliveries), b"\x01" * 160 + b"\xff" * 640 + b"\x02" * 160
        )
        self.assertEqual(pipeline.stats().comfort_noise_ms, 80.0)


class DtmfTests(SynchronousTestCase):
    def _call(self, start: int):
        """Audio in 20 ms packets for 2 s, but for a press of '#' at
        ``start`` lasting 100 ms, during which the phone sends only
        telephone-events (the end packet three times, same sequence number)."""
        sender = _Sender(7, 0, 5000)
        deliveries, pieces = [], []
        press = range(start, start + 800)
        for position in range(0, 2 * RATE, 160):
            if position == start:
                for duration in (160, 320, 480, 640):
                    deliveries.append(
                        (sender.dtmf(start, 11, duration), PHONE, _at(start + duration - 160))
                    )
                end = sender.dtmf(start, 11, 800, end=True)
                deliveries += [(end, PHONE, _at(start + 640 + 5 * i)) for i in range(3)]
            if position in press:
                continue
            payload = _payload(position, 160)
            deliveries.append((sender.audio(position, payload), PHONE, _at(position)))
            pieces.append((position, payload))
        return deliveries, _expected(2 * RATE, pieces)

    def test_dtmf_not_audio(self) -> None:
        """
        Telephone-events are not written as audio: the press is silence of
        its length, counted as dtmf_ms, not as loss.
        """
        deliveries, expected = self._call(8000)
        pipeline = _pipeline()
        self.assertEqual(_run(pipeline, deliveries), expected)
        stats = pipeline.stats()
        self.assertEqual((stats.gaps, stats.lost, stats.dtmf_ms), (0, 0, 100.0))
        self.assertEqual(stats.dtmf_packets, 5)

    def test_digit_listed_once_with_offset(self) -> None:
        """
        The press is listed once, with its offset in the recording in
        seconds and its duration.
        """
        deliveries, _ = self._call(12000)
        pipeline = _pipeline()
        _run(pipeline, deliveries)
        self.assertEqual(pipeline.stats().dtmf, (DigitPressed("#", 1.5, 100.0),))

    def test_digit_early_in_call(self) -> None:
        """
        A digit pressed within the first reorder window of the recording
        (before anything has been written) still gets its true offset.
        """
        deliveries, expected = self._call(2400)
        pipeline = _pipeline()
        self.assertEqual(_run(pipeline, deliveries), expected)
        self.assertEqual(pipeline.stats().dtmf, (DigitPressed("#", 0.3, 100.0),))

    def test_custom_payload_type(self) -> None:
        """
        The DTMF payload type is the configured one: 96 is DTMF with
        dtmf_payload_type=96, and 101 is then an unknown payload type.
        """
        event = build_event(TelephoneEvent(1, False, 10, 160))
        deliveries = [
            (RtpPacket(8, 0, 0, 7, b"\x01" * 160), PHONE, _at(0)),
            (RtpPacket(96, 1, 160, 7, event), PHONE, _at(160)),
            (RtpPacket(101, 2, 160, 7, event), PHONE, _at(160)),
            (RtpPacket(8, 3, 320, 7, b"\x02" * 160), PHONE, _at(320)),
        ]
        pipeline = _pipeline(dtmf_payload_type=96)
        self.assertEqual(
            _run(pipeline, deliveries), b"\x01" * 160 + b"\xd5" * 160 + b"\x02" * 160
        )
        stats = pipeline.stats()
        self.assertEqual([digit.digit for digit in stats.dtmf], ["1"])
        self.assertEqual(stats.dtmf_ms, 20.0)
        self.assertEqual(stats.rejected, {"payload type 101": 1})

    def test_bad_telephone_event(self) -> None:
        """
        A telephone-event too short to parse is rejected, not raised.
        """
        pipeline = _pipeline()
        pipeline.packet(RtpPacket(8, 0, 0, 7, b"\x01" * 160), PHONE, _at(0))
        self.assertEqual(pipeline.packet(RtpPacket(101, 1, 160, 7, b"\x01"), PHONE, _at(160)), [])
        pipeline.flush()
        self.assertEqual(pipeline.stats().rejected, {"bad telephone-event": 1})


class RejectTests(SynchronousTestCase):
    def test_foreign_sender_never_in_file(self) -> None:
        """
        A stranger sending well-formed, in-sequence RTP with the phone's SSRC
        from another IP never gets a byte into the file; each of its packets
        is counted as "foreign address".
        """
        deliveries, pieces = _stream(160, 50, ssrc=0xCAFE)
        stranger = _Sender(0xCAFE, 0, 0)
        mixed = []
        for index, delivery in enumerate(deliveries):
            position = index * 160
            mixed.append((stranger.audio(position, b"\x99" * 160), STRANGER, delivery[2] - 0.001))
            mixed.append(delivery)
        mixed.insert(0, (stranger.audio(0, b"\x99" * 160), STRANGER, START - 0.01))
        pipeline = _pipeline()
        data = _run(pipeline, mixed)
        self.assertEqual(data, b"".join(p for _, p in pieces))
        self.assertNotIn(b"\x99" * 4, data)
        self.assertEqual(pipeline.stats().rejected, {"foreign address": 51})

    def test_other_payload_type(self) -> None:
        """
        A payload type that is neither the codec, comfort noise nor DTMF is
        rejected as "payload type N" and nothing of it is written.
        """
        pipeline = _pipeline()
        self.assertEqual(pipeline.packet(RtpPacket(0, 0, 0, 7, b"\x99" * 160), PHONE, _at(0)), [])
        pipeline.packet(RtpPacket(18, 1, 0, 7, b"\x99" * 20), PHONE, _at(0))
        pipeline.packet(RtpPacket(18, 2, 160, 7, b"\x99" * 20), PHONE, _at(160))
        self.assertEqual(pipeline.flush(), [])
        self.assertEqual(
            pipeline.stats().rejected, {"payload type 0": 1, "payload type 18": 2}
        )
        self.assertEqual(pipeline.stats().received, 0)

    def test_invalid_counted(self) -> None:
        """
        Datagrams that are not RTP are counted as "not rtp", alongside the
        source guard's reasons.
        """
        pipeline = _pipeline()
        pipeline.invalid()
        pipeline.invalid()
        pipeline.packet(RtpPacket(8, 0, 0, 7, b"\x01"), STRANGER, _at(0))
        self.assertEqual(pipeline.stats().rejected, {"not rtp": 2, "foreign address": 1})

    def test_any_policy(self) -> None:
        """
        With source: any, RTP from another IP than the control connection
        (an SBC) is recorded.
        """
        deliveries, pieces = _stream(160, 10)
        deliveries = [(packet, STRANGER, arrival) for packet, _, arrival in deliveries]
        pipeline = _pipeline(source=ANY)
        self.assertEqual(_run(pipeline, deliveries), b"".join(p for _, p in pieces))
        self.assertEqual(pipeline.stats().rejected, {})

    def test_flood_from_second_port(self) -> None:
        """
        Asterisk's strict-RTP flood test, at a realistic flood rate: while the
        phone keeps sending every 20 ms, an attacker on the phone's IP
        sending ten in-sequence packets per 20 ms from another port never
        takes over; its packets are all rejected as "unconfirmed source".
        """
        deliveries, pieces = _stream(160, 100)
        attacker = _Sender(0xBAD, 0, 0)
        flooded = []
        flood = 0
        for packet, source, arrival in deliveries:
            flooded.append((packet, source, arrival))
            for burst in range(10):
                flooded.append(
                    (attacker.audio(flood * 16, b"\x99" * 16), (PEER_IP, 6666),
                     arrival + 0.001 + 0.0018 * burst)
                )
                flood += 1
        flooded.append(deliveries[-1])  # ends with the phone: all flood counted
        pipeline = _pipeline()
        data = _run(pipeline, flooded)
        self.assertEqual(data, b"".join(p for _, p in pieces))
        stats = pipeline.stats()
        self.assertEqual(stats.source_switches, 0)
        self.assertEqual(stats.rejected, {"unconfirmed source": flood})


class SsrcChangeTests(SynchronousTestCase):
    def _change(self):
        """2 s of a call whose stream restarts (new SSRC, sequence and
        timestamp origin, same port) at 1 s, right on time."""
        first = _Sender(0xA1, 100, 9000)
        second = _Sender(0xB2, 40000, 0x7FFF0000, start=RATE)
        deliveries, pieces = [], []
        for position in range(0, 2 * RATE, 160):
            sender = first if position < RATE else second
            payload = _payload(position, 160)
            deliveries.append((sender.audio(position, payload), PHONE, _at(position)))
            pieces.append((position, payload))
        return deliveries, _expected(2 * RATE, pieces)

    def test_new_ssrc_continues_timeline(self) -> None:
        """
        A new SSRC mid-call continues the same file where the wall clock says:
        the new stream's payloads (its probation packets included) follow
        the old ones with no silence in between and none lost.
        """
        deliveries, expected = self._change()
        pipeline = _pipeline()
        data = _run(pipeline, deliveries)
        self.assertEqual(len(data), len(expected))
        self.assertEqual(data, expected)
        stats = pipeline.stats()
        self.assertEqual((stats.received, stats.lost, stats.gaps), (100, 0, 0))
        self.assertEqual(stats.source_switches, 1)

    def test_new_ssrc_counted_as_restart(self) -> None:
        """
        The sidecar's stream_restarts counts SSRC changes as well as
        timestamp jumps (see summary.MediaStats).
        """
        deliveries, _ = self._change()
        pipeline = _pipeline()
        _run(pipeline, deliveries)
        self.assertEqual(pipeline.stats().stream_restarts, 1)


class DecodedTests(SynchronousTestCase):
    def test_pcm16_doubles_bytes(self) -> None:
        """
        Decoded to 16-bit PCM, each A-law byte becomes its two-byte sample,
        and lost audio becomes zero samples.
        """
        deliveries, pieces = _stream(160, 20)
        del deliveries[7]
        del pieces[7]
        pipeline = _pipeline(decoded=True)
        data = _run(pipeline, deliveries)
        self.assertEqual(len(data), 2 * 20 * 160)
        self.assertEqual(data, g711.decode_alaw(_expected(20 * 160, pieces))[:7 * 320]
                         + b"\0" * 320 + g711.decode_alaw(b"".join(p for _, p in pieces[7:])))

    def test_pcm16_comfort_noise_is_zeros(self) -> None:
        """
        Decoded, comfort noise is zero samples too.
        """
        sender = _Sender(1, 0, 0)
        deliveries = [
            (sender.audio(0, b"\x01" * 160), PHONE, _at(0)),
            (sender.comfort_noise(160), PHONE, _at(160)),
            (sender.audio(480, b"\x01" * 160), PHONE, _at(480)),
        ]
        data = _run(_pipeline(decoded=True), deliveries)
        sample = g711.decode_alaw(b"\x01")
        self.assertEqual(data, sample * 160 + b"\0" * 640 + sample * 160)


def _tone(count: int) -> array:
    return array("h", (int(9000 * math.sin(2 * math.pi * 440 * i / 16000)) for i in range(count)))


class G722Tests(SynchronousTestCase):
    def _payloads(self, packets: int, ticks: int = 160) -> list[bytes]:
        """G.722 payloads of a tone: ``ticks`` RTP ticks (8 kHz clock, RFC
        3551) are 2 * ticks samples at 16 kHz and ``ticks`` bytes."""
        encoded = G722.G722(16000, 64000).encode(_tone(2 * ticks * packets))
        return [encoded[i * ticks:(i + 1) * ticks] for i in range(packets)]

    def test_length_is_four_bytes_per_tick(self) -> None:
        """
        G.722 is decoded to 16 kHz 16-bit PCM: 4 output bytes per RTP tick,
        the same as a fresh decoder gives for the payloads in order.
        """
        payloads = self._payloads(25)
        sender = _Sender(9, 0, 0, payload_type=9)
        deliveries = [
            (sender.audio(index * 160, payload), PHONE, _at(index * 160))
            for index, payload in enumerate(payloads)
        ]
        pipeline = _pipeline(G722_CODEC, decoded=True)
        data = _run(pipeline, deliveries)
        self.assertEqual(len(data), 4 * 25 * 160)
        reference = G722.G722(16000, 64000, use_numpy=False).decode(b"".join(payloads))
        self.assertEqual(data, reference.tobytes())
        self.assertNotEqual(data, b"\0" * len(data))

    def test_loss_is_zero_samples(self) -> None:
        """
        A lost G.722 packet becomes zero samples for its duration; the file
        is still 4 bytes per tick of the whole call.
        """
        payloads = self._payloads(20)
        sender = _Sender(9, 0, 0, payload_type=9)
        deliveries = []
        for index, payload in enumerate(payloads):
            packet = sender.audio(index * 160, payload)
            if index not in (5, 6):
                deliveries.append((packet, PHONE, _at(index * 160)))
        pipeline = _pipeline(G722_CODEC, decoded=True)
        data = _run(pipeline, deliveries)
        self.assertEqual(len(data), 4 * 20 * 160)
        self.assertEqual(data[5 * 640:7 * 640], b"\0" * 1280)
        decoder = G722.G722(16000, 64000, use_numpy=False)
        before = decoder.decode(b"".join(payloads[:5])).tobytes()
        after = decoder.decode(b"".join(payloads[7:])).tobytes()
        self.assertEqual(data, before + b"\0" * 1280 + after)
        self.assertEqual(pipeline.stats().gap_ms, 40.0)


class RealNetworkTests(SynchronousTestCase):
    def test_everything_at_once(self) -> None:
        """
        The issue's "done when": 30 ms packets with loss, reordering, a
        duplicate, comfort noise, a DTMF press, a mid-call SSRC change (to
        20 ms packets) and a stranger sending from another IP give a file
        whose length matches the timestamps, with every received payload at
        its offset byte for byte, and statistics that say what happened.
        """
        a = _Sender(0xA1, 65530, 0xFFFFF000)
        stranger = _Sender(0xA1, 65530, 0xFFFFF000)
        deliveries, pieces = [], []
        late: list = []

        def audio(sender: _Sender, position: int, ticks: int, deliver: bool = True):
            payload = _payload(position, ticks)
            packet = sender.audio(position, payload)
            pieces.append((position, payload))
            if deliver:
                deliveries.append((packet, PHONE, _at(position)))
            return packet

        foreign = 0
        for slot in range(30):
            position = slot * 240
            deliveries.append(
                (stranger.audio(position, b"\x99" * 240), STRANGER, _at(position) + 0.002)
            )
            foreign += 1
            if slot == 10:
                a.skip()  # lost
            elif slot == 11:
                late.append(audio(a, position, 240, deliver=False))
            elif slot == 12:
                audio(a, position, 240)
                deliveries.append((late.pop(), PHONE, _at(position) + 0.005))
            elif slot == 13:
                packet = audio(a, position, 240)
                deliveries.append((packet, PHONE, _at(position) + 0.004))
            elif slot == 14:
                deliveries.append((a.comfort_noise(position), PHONE, _at(position)))
            elif slot in (15, 16):
                pass  # the phone is silent after comfort noise
            elif slot in (20, 21, 22):
                duration = (slot - 19) * 240
                deliveries.append((a.dtmf(20 * 240, 5, duration), PHONE, _at(position)))
            elif slot == 23:
                for retransmission in range(3):
                    deliveries.append((
                        a.dtmf(20 * 240, 5, 960, end=True), PHONE,
                        _at(position) + 0.005 * retransmission,
                    ))
            else:
                audio(a, position, 240)
        b = _Sender(0xB2, 1000, 123456, start=7200)
        for index in range(30):
            position = 7200 + index * 160
            if index == 5:
                b.skip()
            elif index == 10:
                late.append(audio(b, position, 160, deliver=False))
            elif index == 11:
                audio(b, position, 160)
                deliveries.append((late.pop(), PHONE, _at(position) + 0.003))
            else:
                audio(b, position, 160)
        end = 7200 + 30 * 160

        pipeline = MediaPipeline(PCMA, Storage("unused").encoder(PCMA), PEER_IP, MediaPolicy())
        data = _run(pipeline, deliveries)
        self.assertEqual(len(data), end)
        for position, payload in pieces:
            self.assertEqual(data[position:position + len(payload)], payload, position)
        self.assertEqual(data, _expected(end, pieces))
        self.assertEqual(data[10 * 240:11 * 240], b"\xd5" * 240)  # lost
        self.assertEqual(data[14 * 240:17 * 240], b"\xd5" * 720)  # comfort noise
        self.assertEqual(data[20 * 240:24 * 240], b"\xd5" * 960)  # DTMF
        self.assertNotIn(b"\x99" * 4, data)

        stats = pipeline.stats()
        self.assertEqual(stats.received, 22 + 29)
        self.assertEqual(stats.lost, 2)
        self.assertEqual(stats.duplicate, 1)
        self.assertEqual(stats.late, 0)
        self.assertEqual(stats.gaps, 2)
        self.assertEqual(stats.gap_ms, 50.0)
        self.assertEqual(stats.comfort_noise, 1)
        self.assertEqual(stats.comfort_noise_ms, 90.0)
        self.assertEqual(stats.dtmf_packets, 6)
        self.assertEqual(stats.dtmf_ms, 120.0)
        self.assertEqual(stats.dtmf, (DigitPressed("5", 0.6, 120.0),))
        self.assertEqual(stats.rejected, {"foreign address": foreign})
        self.assertEqual(stats.source_switches, 1)
        self.assertEqual(stats.discontinuities, ())


class HostileEventTests(SynchronousTestCase):
    def test_wild_dtmf_timestamp(self) -> None:
        """
        A telephone-event whose timestamp lies ten minutes away is listed
        where the stream is now, and puts no silence into the file.
        """
        sender = _Sender(0x1234, 0, 0)
        deliveries, pieces = [], []
        for index in range(100):
            position = index * 160
            payload = _payload(position, 160)
            deliveries.append((sender.audio(position, payload), PHONE, _at(position)))
            pieces.append((position, payload))
            if index == 50:
                wild = sender.dtmf(position + 600 * RATE, 3, 160, end=True)
                deliveries.append((wild, PHONE, _at(position) + 0.001))
        pipeline = _pipeline()
        data = _run(pipeline, deliveries)
        self.assertEqual(data, b"".join(p for _, p in pieces))
        [digit] = pipeline.stats().dtmf
        self.assertEqual(digit.digit, "3")
        self.assertLess(abs(digit.offset_s - 51 * 0.02), 0.05)
        self.assertEqual(pipeline.stats().discontinuities, ())

    def test_other_payload_type_does_not_lock_source(self) -> None:
        """
        A packet of a payload type the call does not use, even arriving
        first, does not lock the source: the phone's audio that follows from
        another port is recorded.
        """
        decoy = RtpPacket(18, 1, 0, 0xD0D0, b"\x00" * 20)
        deliveries, pieces = _stream(160, 20)
        pipeline = _pipeline()
        out = pipeline.packet(decoy, (PEER_IP, 5555), 0.0)
        data = b"".join(out) + _run(pipeline, deliveries)
        self.assertEqual(data, b"".join(p for _, p in pieces))
        self.assertEqual(pipeline.stats().rejected, {"payload type 18": 1})


class PacketLengthTests(SynchronousTestCase):
    """rtp.max_packet_ms: a payload longer than that much audio is junk."""

    def test_huge_packet_never_written(self) -> None:
        """
        One 65,000-byte packet with a valid header from the phone, taking the
        place of the next real packet, is rejected as "payload too long":
        the file holds exactly the phone's 2 s, and no real packet is late
        or a duplicate because of it.
        """
        deliveries, pieces = _stream(160, 100, ssrc=0x1234, sequence=10, timestamp=800)
        real = deliveries[30][0]
        huge = attrs.evolve(real, payload=b"\x99" * 65000)
        deliveries.insert(30, (huge, PHONE, deliveries[30][2] - 0.001))
        pipeline = _pipeline()
        data = _run(pipeline, deliveries)
        self.assertEqual(data, b"".join(p for _, p in pieces))
        stats = pipeline.stats()
        self.assertEqual(stats.rejected, {"payload too long": 1})
        self.assertEqual((stats.received, stats.late, stats.duplicate), (100, 0, 0))

    def test_limit_is_inclusive(self) -> None:
        """
        With the default 200 ms, a PCMA payload of 1,600 bytes (200 ms) is
        recorded and one of 1,601 is rejected; the limit is configurable
        (rtp.max_packet_ms) and holds for G.722 (8,000 bytes a second) too.
        """
        for codec, max_packet_ms, longest in ((PCMA, 200, 1600), (PCMU, 60, 480),
                                              (G722_CODEC, 200, 1600)):
            pipeline = _pipeline(codec, decoded=codec is G722_CODEC, max_packet_ms=max_packet_ms)
            sender = _Sender(0x1234, 0, 0, payload_type=codec.payload_type)
            pipeline.packet(sender.audio(0, b"\x10" * longest), PHONE, _at(0))
            pipeline.packet(sender.audio(longest, b"\x10" * (longest + 1)), PHONE, _at(longest))
            pipeline.flush()
            stats = pipeline.stats()
            self.assertEqual((stats.received, stats.rejected), (1, {"payload too long": 1}),
                             codec.name)

    def test_too_long_does_not_lock_source(self) -> None:
        """
        An oversized packet arriving first from another port on the phone's
        IP does not lock the source (nor count towards a probation): the
        phone's stream that follows is recorded from its first packet.
        """
        decoy = RtpPacket(8, 1, 0, 0xD0D0, b"\x99" * 2000)
        deliveries, pieces = _stream(160, 20)
        pipeline = _pipeline()
        data = _run(pipeline, [(decoy, (PEER_IP, 5555), START - 0.01), *deliveries])
        self.assertEqual(data, b"".join(p for _, p in pieces))
        self.assertEqual(pipeline.stats().source_switches, 0)


class StartRaceTests(SynchronousTestCase):
    """Two sources of the phone's address racing at the start of a call."""

    def _race(self, stray: _Sender, **policy):
        """3 packets from another port of the phone's IP, sent just before
        the phone's first packet, then the phone's 2 s stream (its timestamps
        overlapping the stray's)."""
        deliveries, pieces = _stream(160, 100, ssrc=0x1234, sequence=7000, timestamp=90000)
        early = [(stray.audio(index * 160, b"\x99" * 160), (PEER_IP, 5555), START - 0.003 + index * 0.001)
                 for index in range(3)]
        pipeline = _pipeline(**policy)
        return pipeline, _run(pipeline, early + deliveries), b"".join(p for _, p in pieces)

    def test_phone_stream_wins_over_stray_packets(self) -> None:
        """
        The stray packets (their own SSRC) are never recorded: the file is the
        phone's stream, byte-exact from its first packet; the strays are
        counted as "unconfirmed source", the phone taking over as one source
        switch (and no stream restart).
        """
        pipeline, data, phone = self._race(_Sender(0xBAD, 100, 90000))
        self.assertEqual(data, phone)
        stats = pipeline.stats()
        self.assertEqual(stats.rejected, {"unconfirmed source": 3})
        self.assertEqual((stats.source_switches, stats.stream_restarts), (1, 0))
        self.assertEqual((stats.received, stats.duplicate, stats.late), (100, 0, 0))

    def test_stray_with_phone_numbering_is_no_duplicate(self) -> None:
        """
        Strays that copy the phone's SSRC and sequence numbers do not make
        the phone's own packets duplicates: the file is still its stream,
        byte-exact.
        """
        pipeline, data, phone = self._race(_Sender(0x1234, 7000, 90000))
        self.assertEqual(data, phone)
        stats = pipeline.stats()
        self.assertEqual((stats.received, stats.duplicate, stats.late), (100, 0, 0))
        self.assertEqual(stats.rejected, {"unconfirmed source": 3})

    def test_written_stray_stays(self) -> None:
        """
        With a reorder window shorter than the strays (20 ms), they are in
        the file before the race is decided: they stay (nothing written is
        taken back), and the phone's stream follows them, whole.
        """
        pipeline, data, phone = self._race(_Sender(0xBAD, 100, 90000), reorder_window_ms=20)
        self.assertTrue(data.endswith(phone))
        self.assertEqual(pipeline.stats().received, 103)

    def test_later_takeover_keeps_both(self) -> None:
        """
        Once the first source has proven a stream (4 packets), a takeover is
        an ordinary one: what it sent stays in the file, the newcomer's
        stream follows.
        """
        stray = _Sender(0xBAD, 100, 90000)
        early = [(stray.audio(index * 160, b"\x99" * 160), (PEER_IP, 5555), START - 0.5 + index * 0.02)
                 for index in range(4)]
        deliveries, pieces = _stream(160, 50, ssrc=0x1234, sequence=7000, timestamp=90000)
        pipeline = _pipeline()
        data = _run(pipeline, early + deliveries)
        self.assertEqual(data[:640], b"\x99" * 640)
        self.assertTrue(data.endswith(b"".join(p for _, p in pieces)))
        self.assertEqual(pipeline.stats().rejected, {})
