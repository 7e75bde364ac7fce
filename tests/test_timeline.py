"""Tests for recsvc.media.timeline: where each RTP payload lands in the file.

Pure and table-driven: packets carry their arrival time, a small recorder
feeds them through a `StreamClock` and a `Timeline` as the media pipeline
does, and the emitted segments are rendered into bytes (audio as is, silence
as A-law 0xD5) to be compared with the buffer the timestamps call for.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media.timeline import (
    Audio,
    LongGap,
    Segment,
    Silence,
    StreamClock,
    Timeline,
)

RATE = 8000  # the RTP clock of G.711 and G.722: one payload byte per tick
WINDOW = RATE  # the default 1 s reorder window
CAP = 30 * RATE  # the default 30 s max_gap_fill
SILENCE = b"\xd5"
SSRC = 0x5EED1E55

_SETTINGS = settings(max_examples=150, deadline=None)


@attrs.frozen
class _Packet:
    """One RTP packet as the recorder sees it. ``timestamp`` and
    ``sequence`` are unwrapped here; the wire values are taken modulo 2**32
    and 2**16 when the packet is received."""

    timestamp: int
    sequence: int
    payload: bytes
    arrival: float
    ssrc: int = SSRC

    @property
    def end(self) -> int:
        return self.timestamp + len(self.payload)


def _payload(sequence: int, ticks: int) -> bytes:
    # Differs from packet to packet and never contains the silence byte, so
    # a payload in the wrong place or a silence where audio belongs shows.
    return bytes((sequence * 37 + i) % 200 for i in range(ticks))


def _paced(
    ptimes_ms: Iterable[int],
    timestamp: int = 1000,
    sequence: int = 100,
    start: float = 0.0,
    ssrc: int = SSRC,
) -> list[_Packet]:
    """Packets as a phone sends them: each ``ptime`` ms long, timestamps
    advancing by their length, arriving exactly when the timestamps say."""
    packets = []
    ticks_sent = 0
    for index, ptime in enumerate(ptimes_ms):
        ticks = ptime * RATE // 1000
        packets.append(_Packet(
            timestamp=timestamp + ticks_sent,
            sequence=sequence + index,
            payload=_payload(sequence + index, ticks),
            arrival=start + ticks_sent / RATE,
            ssrc=ssrc,
        ))
        ticks_sent += ticks
    return packets


def _delayed(packets: Sequence[_Packet], delays: dict[int, float]) -> list[_Packet]:
    """``packets`` (in sending order) with packet ``i`` delayed by
    ``delays[i]`` seconds, in the order they arrive."""
    late = [
        attrs.evolve(packet, arrival=packet.arrival + delays.get(index, 0.0))
        for index, packet in enumerate(packets)
    ]
    return sorted(late, key=lambda packet: packet.arrival)


def _expected(packets: Iterable[_Packet], origin: int) -> bytes:
    """The file the timestamps call for: every payload at ``timestamp -
    origin``, silence wherever no payload is."""
    packets = list(packets)
    buffer = bytearray(SILENCE * (max(p.end for p in packets) - origin))
    for packet in packets:
        offset = packet.timestamp - origin
        buffer[offset:offset + len(packet.payload)] = packet.payload
    return bytes(buffer)


def _render(segments: Iterable[Segment]) -> bytes:
    return b"".join(
        segment.payload if isinstance(segment, Audio) else SILENCE * segment.ticks
        for segment in segments
    )


def _concat(packets: Iterable[_Packet]) -> bytes:
    return b"".join(packet.payload for packet in packets)


class _Recorder:
    """The stream clock and timeline wired as the media pipeline wires them."""

    def __init__(self, window: int = WINDOW, cap: int = CAP) -> None:
        self.clock = StreamClock(RATE, window)
        self.timeline = Timeline(window, cap)
        self.segments: list[Segment] = []

    def receive(self, packet: _Packet) -> list[Segment]:
        placed = self.clock.place(
            packet.ssrc, packet.timestamp % 2**32, packet.sequence % 2**16,
            packet.arrival, len(packet.payload),
        )
        if placed is None:
            return []
        out = self.timeline.push(placed.position, packet.payload, packet.arrival)
        self.segments += out
        return out

    def mark(self, packet: _Packet, kind: str) -> list[Segment]:
        """A payload-less packet (comfort noise) saying what follows it."""
        placed = self.clock.place(
            packet.ssrc, packet.timestamp % 2**32, packet.sequence % 2**16,
            packet.arrival, 0,
        )
        if placed is None:
            return []
        out = self.timeline.mark(placed.position, packet.arrival, kind)
        self.segments += out
        return out

    def run(self, packets: Iterable[_Packet]) -> bytes:
        for packet in packets:
            self.receive(packet)
        return self.finish()

    def finish(self) -> bytes:
        self.segments += self.timeline.flush()
        return _render(self.segments)


def _record(packets: Iterable[_Packet], **kwargs: int) -> tuple[bytes, _Recorder]:
    recorder = _Recorder(**kwargs)
    return recorder.run(packets), recorder


class InOrderTests(SynchronousTestCase):
    def test_pass_through_once_started(self) -> None:
        """
        The file starts once a reorder window of audio has arrived (the
        earliest packet of that first window opens it); from then on every
        packet that continues what was written comes straight out as its
        own payload, nothing held back.
        """
        packets = _paced([20] * 80)
        recorder = _Recorder()
        outs = [recorder.receive(packet) for packet in packets]
        # 50 packets of 160 ticks are exactly one window: still waiting.
        self.assertEqual(outs[:50], [[]] * 50)
        self.assertEqual(outs[50], [Audio(p.payload) for p in packets[:51]])
        for packet, out in zip(packets[51:], outs[51:]):
            self.assertEqual(out, [Audio(packet.payload)])
        self.assertEqual(recorder.timeline.flush(), [])
        self.assertEqual(recorder.timeline.file_ticks, 80 * 160)

    def test_packet_times(self) -> None:
        """
        Packet time comes from the timestamps: 10, 20, 30, 40, 60 ms and
        large 200 ms packets all give the payloads back to back, no silence
        and nothing counted as a gap, late or lost.
        """
        for ptime in (10, 20, 30, 40, 60, 200):
            with self.subTest(ptime=ptime):
                packets = _paced([ptime] * (3000 // ptime))
                data, recorder = _record(packets)
                self.assertEqual(data, _concat(packets))
                self.assertEqual(len(data), 3 * RATE)
                self.assertEqual(recorder.timeline.silence_ticks, {})
                self.assertEqual(
                    (recorder.timeline.gaps, recorder.timeline.late, recorder.clock.lost),
                    (0, 0, 0),
                )

    def test_packet_time_changes_mid_call(self) -> None:
        """
        The packet time may change during the call, in either direction,
        without a gap or an overlap.
        """
        ptimes = [20] * 25 + [30] * 20 + [10] * 30 + [60] * 10 + [200] * 3 + [40] * 10 + [20] * 5
        packets = _paced(ptimes)
        data, recorder = _record(packets)
        self.assertEqual(data, _concat(packets))
        self.assertEqual(recorder.timeline.silence_ticks, {})

    def test_payloads_at_timestamp_offsets(self) -> None:
        """
        With mixed packet times, loss and reordering together, every payload
        received lands at the byte offset its timestamp gives, counted from
        the first packet's timestamp.
        """
        packets = _paced([20] * 20 + [30] * 20 + [10] * 20 + [60] * 20 + [200] * 4)
        lost = {3, 21, 22, 45, 70}
        kept = [p for i, p in enumerate(packets) if i not in lost]
        arriving = _delayed(kept, {5: 0.05, 6: 0.03, 30: 0.3, 60: 0.5})
        data, _ = _record(arriving)
        self.assertEqual(data, _expected(kept, packets[0].timestamp))


class ReorderTests(SynchronousTestCase):
    def test_reorder_within_window_restored(self) -> None:
        """
        Packets reordered within the reorder window come out in timestamp
        order, byte for byte as if they had arrived in order; nothing is
        late or lost.
        """
        packets = _paced([20] * 120)
        cases = {
            "adjacent swaps": {3: 0.03, 10: 0.025, 11: 0.025},
            "one packet 900 ms late": {5: 0.9},
            "a burst reversed": {i: (29 - i) * 0.04 for i in range(20, 30)},
            "late while the file has started": {80: 0.7, 81: 0.35},
            "every other packet late": {i: 0.03 for i in range(0, 120, 2)},
        }
        for name, delays in cases.items():
            with self.subTest(name):
                data, recorder = _record(_delayed(packets, delays))
                self.assertEqual(data, _concat(packets))
                self.assertEqual(
                    (recorder.timeline.late, recorder.clock.lost, recorder.clock.duplicates),
                    (0, 0, 0),
                )

    def test_first_packet_reordered(self) -> None:
        """
        When the first packets arrive out of order the file starts at the
        earliest packet of the first window, so the first packet sent is not
        lost.
        """
        packets = _paced([20] * 80)
        cases = {
            "second before first": {0: 0.03},
            "fourth first": {0: 0.07, 1: 0.07, 2: 0.07},
            "first 600 ms late": {0: 0.6},
        }
        for name, delays in cases.items():
            with self.subTest(name):
                arriving = _delayed(packets, delays)
                self.assertNotEqual(arriving[0], packets[0])
                data, recorder = _record(arriving)
                self.assertEqual(data, _concat(packets))
                self.assertEqual(recorder.timeline.late, 0)

    def test_later_than_window_dropped(self) -> None:
        """
        A packet that arrives after the window has given up on its hole is
        counted late and dropped: its place stays silence (one loss gap of
        its length), and it is not counted lost since it did arrive.
        """
        packets = _paced([20] * 120)
        data, recorder = _record(_delayed(packets, {10: 1.5}))
        kept = packets[:10] + packets[11:]
        self.assertEqual(data, _expected(kept, packets[0].timestamp))
        self.assertEqual(recorder.timeline.late, 1)
        self.assertEqual((recorder.timeline.gaps, recorder.timeline.gap_ticks), (1, 160))
        self.assertEqual(recorder.clock.lost, 0)

    def test_much_later_than_window_dropped(self) -> None:
        """
        A straggler arriving seconds after its time (far beyond the window
        and the jump slack) is still just a late packet: dropped and counted
        late, the stream is not taken to have restarted, and the audio after
        it stays where its timestamps put it.
        """
        packets = _paced([20] * 400)
        data, recorder = _record(_delayed(packets, {100: 3.0}))
        kept = packets[:100] + packets[101:]
        self.assertEqual(data, _expected(kept, packets[0].timestamp))
        self.assertEqual(recorder.timeline.late, 1)
        self.assertEqual(recorder.clock.restarts, 0)

    def test_duplicates_dropped(self) -> None:
        """
        A second copy of a packet (same sequence number) is dropped and
        counted as a duplicate by the stream clock, whether it arrives at
        once, within the window or long after its original was written; it
        is not counted late and does not change the file.
        """
        packets = _paced([20] * 120)
        cases = {
            "immediately": [(5, 0.0)],
            "within the window": [(5, 0.3), (6, 0.5)],
            "long after it was written": [(40, 2.5)],
            "the first packet": [(0, 0.01)],
            "the last packet": [(119, 0.2)],
            "three copies": [(70, 0.0), (70, 0.1), (70, 0.9)],
        }
        for name, copies in cases.items():
            with self.subTest(name):
                extra = [
                    attrs.evolve(packets[i], arrival=packets[i].arrival + delay)
                    for i, delay in copies
                ]
                arriving = sorted(packets + extra, key=lambda p: p.arrival)
                data, recorder = _record(arriving)
                self.assertEqual(data, _concat(packets))
                self.assertEqual(recorder.clock.duplicates, len(copies))
                self.assertEqual((recorder.timeline.late, recorder.clock.lost), (0, 0))

    def test_overlap_keeps_new_part(self) -> None:
        """
        A payload that overlaps what was already written keeps only its new
        part, whether the older payload was written before it arrived or
        both were waiting in the window.
        """
        base = _paced([20] * 60)
        last = base[-1]
        overlapping = _Packet(
            last.timestamp + 80, last.sequence + 1, _payload(999, 160), last.arrival + 0.02
        )
        following = _Packet(
            last.timestamp + 240, last.sequence + 2, _payload(998, 160), last.arrival + 0.04
        )

        recorder = _Recorder()
        for packet in base:
            recorder.receive(packet)
        self.assertEqual(recorder.receive(overlapping), [Audio(overlapping.payload[80:])])
        recorder.receive(following)
        self.assertEqual(
            recorder.finish(),
            _concat(base) + overlapping.payload[80:] + following.payload,
        )

        # Both still waiting in the first window, the overlapping one first.
        first, second = _paced([20] * 2)
        overlapping = _Packet(first.timestamp + 80, 7, _payload(7, 160), 0.001)
        data, _ = _record([overlapping, first, second])
        self.assertEqual(data, first.payload + overlapping.payload[80:] + second.payload[80:])

    def test_payload_wholly_written_is_late(self) -> None:
        """
        A payload whose every tick was already written (a re-sent packet
        under a new sequence number) adds nothing and is counted late.
        """
        base = _paced([20] * 60)
        last = base[-1]
        copy = _Packet(last.timestamp, last.sequence + 1, _payload(5, 160), last.arrival + 0.01)
        recorder = _Recorder()
        for packet in base:
            recorder.receive(packet)
        self.assertEqual(recorder.receive(copy), [])
        self.assertEqual(recorder.finish(), _concat(base))
        self.assertEqual(recorder.timeline.late, 1)


    def test_second_payload_for_waiting_ticks_is_late(self) -> None:
        """
        A second payload for ticks whose first payload is still waiting in
        the window is counted late; the first one is kept.
        """
        first, second = _paced([20] * 2)
        other = _Packet(first.timestamp, 9, _payload(9, 160), 0.001)
        data, recorder = _record([first, other, second])
        self.assertEqual(data, first.payload + second.payload)
        self.assertEqual(recorder.timeline.late, 1)


class WrapTests(SynchronousTestCase):
    def test_wraps_without_glitch(self) -> None:
        """
        Sequence numbers wrap at 2**16 and timestamps at 2**32 without a
        glitch, also with packets reordered and duplicated across the wrap:
        the file is the payloads back to back, nothing lost, late or taken
        for a restart.
        """
        cases = {
            "sequence": (123456, 2**16 - 10),
            "timestamp": (2**32 - 800, 100),
            "timestamp mid-packet": (2**32 - 1230, 100),
            "both": (2**32 - 1600, 2**16 - 10),
        }
        for name, (timestamp, sequence) in cases.items():
            with self.subTest(name):
                packets = _paced([20] * 80, timestamp=timestamp, sequence=sequence)
                arriving = _delayed(packets, {8: 0.05, 9: 0.03, 10: 0.06})
                arriving.append(attrs.evolve(packets[10], arrival=packets[12].arrival + 0.001))
                arriving.sort(key=lambda p: p.arrival)
                data, recorder = _record(arriving)
                self.assertEqual(data, _concat(packets))
                self.assertEqual(
                    (recorder.clock.lost, recorder.clock.duplicates,
                     recorder.clock.restarts, recorder.timeline.late),
                    (0, 1, 0, 0),
                )


class LossTests(SynchronousTestCase):
    def test_loss_filled_exactly(self) -> None:
        """
        Lost packets become silence of exactly their duration, so the
        payloads after them stay at their timestamp offsets; each run of
        lost packets is one gap, and the stream clock counts every lost
        sequence number.
        """
        cases = [
            # ptimes, lost packet indices, gaps, silence ticks
            ([20] * 100, {50}, 1, 160),
            ([20] * 100, {10, 11, 12}, 1, 480),
            ([20] * 100, {5, 7} | set(range(60, 70)), 3, 160 + 160 + 1600),
            ([30] * 100, set(range(20, 70)), 1, 50 * 240),
            ([10] * 50 + [60] * 50, {49, 50}, 1, 80 + 480),
            ([200] * 20, {1, 18}, 2, 3200),
        ]
        for ptimes, lost, gaps, ticks in cases:
            with self.subTest(ptimes=ptimes[0], lost=sorted(lost)):
                packets = _paced(ptimes)
                kept = [p for i, p in enumerate(packets) if i not in lost]
                data, recorder = _record(kept)
                self.assertEqual(data, _expected(kept, packets[0].timestamp))
                self.assertEqual(len(data), sum(len(p.payload) for p in packets))
                self.assertEqual(
                    (recorder.timeline.gaps, recorder.timeline.gap_ticks, recorder.clock.lost),
                    (gaps, ticks, len(lost)),
                )
                self.assertEqual(recorder.timeline.discontinuities, [])

    def test_hole_held_for_exactly_the_window(self) -> None:
        """
        Audio after a hole waits until a window of audio beyond the hole has
        arrived, and not one packet longer: then the hole becomes silence
        and everything held comes out in order.
        """
        packets = _paced([20] * 150)
        recorder = _Recorder()
        outs = {i: recorder.receive(p) for i, p in enumerate(packets) if i != 60}
        # Packets 61..110 end at most 50 * 160 = 8000 ticks (the window)
        # beyond the hole: still held.
        self.assertEqual([outs[i] for i in range(61, 111)], [[]] * 50)
        self.assertEqual(
            outs[111], [Silence(160)] + [Audio(p.payload) for p in packets[61:112]]
        )

    def test_reorder_right_after_long_loss(self) -> None:
        """
        After a loss burst longer than the window, the first packets after
        it may still arrive out of order: the hole is given up only for what
        is older than the window, so the packet that arrives just after its
        successor still lands in place and is not counted late.
        """
        cases = {
            # ptimes, lost packet indices, delays (indices into the kept packets)
            "1.1 s lost mid-call": ([20] * 200, set(range(60, 115)), {60: 0.03}),
            "1.1 s lost mid-call, 3 reordered": (
                [20] * 200, set(range(60, 115)), {60: 0.05, 61: 0.03}
            ),
            "in the first window": ([60] * 22, set(range(5, 20)), {5: 0.061}),
            "4 s lost": ([20] * 400, set(range(100, 300)), {100: 0.2}),
        }
        for name, (ptimes, lost, delays) in cases.items():
            with self.subTest(name):
                packets = _paced(ptimes)
                kept = [p for i, p in enumerate(packets) if i not in lost]
                data, recorder = _record(_delayed(kept, delays))
                self.assertEqual(data, _expected(kept, packets[0].timestamp))
                self.assertEqual((recorder.timeline.late, recorder.timeline.gaps), (0, 1))

    def test_gap_over_cap_filled_to_cap(self) -> None:
        """
        A gap up to max_fill_ticks is filled in full; a longer one only up
        to the cap, and one LongGap records where it is in the file,
        its length by the timestamps, the wall-clock time it took and what
        was filled.
        """
        cap = 2 * RATE
        cases = [
            # lost packets (20 ms each), discontinuities
            (100, []),  # exactly the cap
            (101, [LongGap(
                offset_ticks=8000, gap_ticks=16160, wall_seconds=2.04, filled_ticks=cap,
            )]),
            (500, [LongGap(
                offset_ticks=8000, gap_ticks=80000, wall_seconds=10.02, filled_ticks=cap,
            )]),
        ]
        for lost, discontinuities in cases:
            with self.subTest(lost=lost):
                packets = _paced([20] * (100 + lost))
                before, after = packets[:50], packets[50 + lost:]
                data, recorder = _record(before + after, cap=cap)
                self.assertEqual(
                    data, _concat(before) + SILENCE * min(lost * 160, cap) + _concat(after)
                )
                self.assertEqual(recorder.timeline.discontinuities, discontinuities)
                self.assertEqual(
                    (recorder.timeline.gaps, recorder.timeline.gap_ticks),
                    (1, min(lost * 160, cap)),
                )


class RestartTests(SynchronousTestCase):
    def _change(self, change: str, pause: float) -> tuple[list[_Packet], list[_Packet]]:
        """One second of a stream, then one second of its continuation after
        ``change`` (``ssrc``, ``jump``: timestamps +10**9, ``back``:
        timestamps -10**6), the first new packet arriving ``pause`` seconds
        later than pacing says."""
        old = _paced([20] * 50, timestamp=1000, sequence=100)
        last = old[-1]
        start = last.arrival + 0.02 + pause
        if change == "ssrc":
            new = _paced([20] * 50, timestamp=77777, sequence=4000, start=start, ssrc=SSRC + 1)
        else:
            offset = 10**9 if change == "jump" else -(10**6)
            new = _paced(
                [20] * 50, timestamp=last.end + offset, sequence=last.sequence + 1, start=start
            )
        return old, new

    def test_reanchored_on_arrival(self) -> None:
        """
        A new SSRC, or a timestamp jump the wall clock does not explain,
        re-anchors the timeline on arrival time: the new stream follows the
        old one in the same file after exactly the wall time that passed (a
        0.5 s pause is 4000 ticks of silence), never hours of silence from
        the wild timestamps; each change counts as a restart.
        """
        cases = [
            ("ssrc", 0.0, 0),
            ("ssrc", 0.5, 4000),
            ("ssrc", 2.0, 16000),
            ("jump", 0.0, 0),
            ("jump", 0.5, 4000),
            ("back", 0.0, 0),
            ("back", 0.5, 4000),
        ]
        for change, pause, silence in cases:
            with self.subTest(change=change, pause=pause):
                old, new = self._change(change, pause)
                data, recorder = _record(old + new)
                self.assertEqual(data, _concat(old) + SILENCE * silence + _concat(new))
                self.assertEqual(recorder.clock.restarts, 1)
                self.assertEqual(recorder.clock.lost, 0)

    def test_new_ssrc_reordered_at_its_start(self) -> None:
        """
        The old stream's last packet arriving after a new SSRC has started
        still goes to its place, and the new stream's second packet arriving
        before its first does not push the first out.
        """
        old, new = self._change("ssrc", 0.0)
        delays = {49: 0.05, 50: 0.03}  # indices in old + new
        data, recorder = _record(_delayed(old + new, delays))
        self.assertEqual(data, _concat(old) + _concat(new))
        self.assertEqual(recorder.timeline.late, 0)

    def test_restart_with_sequence_starting_over(self) -> None:
        """
        A stream restarted on the same SSRC with a timestamp jump and its
        sequence numbers starting over from the same values is a restart,
        not a run of duplicates: the new audio is recorded.
        """
        old = _paced([20] * 50, timestamp=1000, sequence=100)
        new = _paced([20] * 50, timestamp=500_000_000, sequence=100, start=old[-1].arrival + 0.02)
        data, recorder = _record(old + new)
        self.assertEqual(data, _concat(old) + _concat(new))
        self.assertEqual((recorder.clock.restarts, recorder.clock.duplicates), (1, 0))

    def test_hold_is_capped_gap(self) -> None:
        """
        A pause the wall clock explains (on hold: timestamps and arrival
        both advance 60 s) is not a restart but an ordinary gap, filled up
        to the cap and recorded as a discontinuity.
        """
        old = _paced([20] * 50)
        last = old[-1]
        new = _paced([20] * 50, timestamp=last.end + 60 * RATE, sequence=last.sequence + 1,
                     start=last.arrival + 0.02 + 60)
        data, recorder = _record(old + new)
        self.assertEqual(data, _concat(old) + SILENCE * CAP + _concat(new))
        self.assertEqual(recorder.clock.restarts, 0)
        self.assertEqual(recorder.timeline.discontinuities, [
            LongGap(
                offset_ticks=8000, gap_ticks=60 * RATE, wall_seconds=60.02, filled_ticks=CAP,
            ),
        ])

    def test_lost_across_changes(self) -> None:
        """
        ``lost`` counts the sequence numbers never seen over the whole
        call: across SSRC changes, restarts and SSRCs the clock no longer
        tracks; reordered and duplicated packets are not lost.
        """

        def stream(
            ssrc: int, start: float, lost: set[int], timestamp: int = 1000, sequence: int = 0,
        ) -> list[_Packet]:
            packets = _paced(
                [20] * 30, timestamp=timestamp, sequence=sequence or ssrc * 1000,
                start=start, ssrc=ssrc,
            )
            return [p for i, p in enumerate(packets) if i not in lost]

        cases = {
            "one stream": (stream(1, 0, {3, 4}), 2),
            "ssrc change": (stream(1, 0, {3}) + stream(2, 0.6, {10, 11}), 3),
            "timestamp jump": (
                stream(1, 0, {3}) + stream(1, 0.6, {25}, timestamp=10**9, sequence=1030), 2
            ),
            "five ssrcs": ([p for s in range(1, 6) for p in stream(s, 0.6 * s, {7})], 5),
            "reordered and duplicated": (
                _delayed(stream(1, 0, set()), {4: 0.05, 5: 0.4}) + stream(1, 0.5, set())[:3],
                0,
            ),
        }
        for name, (packets, lost) in cases.items():
            with self.subTest(name):
                _, recorder = _record(packets)
                self.assertEqual(recorder.clock.lost, lost)


class JitterTests(SynchronousTestCase):
    def test_paced_arrival_has_no_jitter(self) -> None:
        """
        Packets arriving exactly as their timestamps are paced give an
        interarrival jitter of 0, whatever the packet time.
        """
        for ptimes in ([20] * 100, [10] * 50 + [60] * 50, [200] * 10):
            with self.subTest(ptime=ptimes[-1]):
                _, recorder = _record(_paced(ptimes, start=12.5))
                self.assertEqual(recorder.clock.jitter_ms, 0.0)

    def test_rfc3550_jitter(self) -> None:
        """
        Jitter is RFC 3550's running estimate J += (|D| - J) / 16 of the
        transit-time differences, in timestamp units and as milliseconds.
        """
        packets = [
            _Packet(160 * i, i, _payload(i, 160), arrival)
            for i, arrival in enumerate([0.0, 0.02, 0.05, 0.06])
        ]
        # Transit differences 0, 80, 80 ticks: J = 0 -> 5 -> 9.6875.
        _, recorder = _record(packets)
        self.assertAlmostEqual(recorder.clock.jitter_ticks, 9.6875)
        self.assertEqual(recorder.clock.jitter_ms, 1.211)

    def test_jitter_grows_with_irregular_arrival(self) -> None:
        """
        The more irregular the arrival, the larger the jitter.
        """
        packets = _paced([20] * 100)
        jitters = []
        for spread in (0.0, 0.005, 0.01, 0.03):
            _, recorder = _record(_delayed(packets, {i: spread for i in range(1, 100, 2)}))
            jitters.append(recorder.clock.jitter_ms)
        self.assertEqual(jitters[0], 0.0)
        self.assertEqual(jitters, sorted(set(jitters)))


class MarkerTests(SynchronousTestCase):
    def _pause(self, kind: str, pause_ms: int) -> tuple[list[_Packet], _Packet, list[_Packet]]:
        talk = _paced([20] * 60)
        last = talk[-1]
        marker = _Packet(last.end, last.sequence + 1, b"", last.arrival + 0.02)
        resumed = _paced(
            [20] * 60, timestamp=last.end + pause_ms * 8, sequence=last.sequence + 2,
            start=marker.arrival + pause_ms / 1000,
        )
        return talk, marker, resumed

    def test_marked_silence_is_not_loss(self) -> None:
        """
        After a comfort-noise or DTMF marker, the silence until audio
        resumes is of exactly the missing duration and counted under the
        marker's kind, not as a loss gap.
        """
        for kind in ("comfort_noise", "dtmf"):
            for pause_ms in (100, 2000):
                with self.subTest(kind=kind, pause_ms=pause_ms):
                    talk, marker, resumed = self._pause(kind, pause_ms)
                    recorder = _Recorder()
                    for packet in talk:
                        recorder.receive(packet)
                    recorder.mark(marker, kind)
                    for packet in resumed:
                        recorder.receive(packet)
                    data = recorder.finish()
                    self.assertEqual(
                        data, _concat(talk) + SILENCE * pause_ms * 8 + _concat(resumed)
                    )
                    self.assertIn(Silence(pause_ms * 8, kind), recorder.segments)
                    self.assertEqual(recorder.timeline.silence_ticks, {kind: pause_ms * 8})
                    self.assertEqual((recorder.timeline.gaps, recorder.clock.lost), (0, 0))

    def test_marker_reordered_still_applies(self) -> None:
        """
        A comfort-noise marker that arrives before the last audio packet
        ahead of it still marks the silence after that audio.
        """
        talk, marker, resumed = self._pause("comfort_noise", 500)
        arriving = talk[:-1] + [attrs.evolve(talk[-1], arrival=marker.arrival + 0.01)]
        recorder = _Recorder()
        for packet in arriving[:-1]:
            recorder.receive(packet)
        recorder.mark(marker, "comfort_noise")
        recorder.receive(arriving[-1])
        for packet in resumed:
            recorder.receive(packet)
        self.assertEqual(recorder.finish(), _concat(talk) + SILENCE * 4000 + _concat(resumed))
        self.assertEqual(recorder.timeline.silence_ticks, {"comfort_noise": 4000})

    def test_loss_after_marked_silence_is_loss(self) -> None:
        """
        Once audio resumes after a marker, a later hole is loss again.
        """
        talk, marker, resumed = self._pause("comfort_noise", 500)
        recorder = _Recorder()
        for packet in talk:
            recorder.receive(packet)
        recorder.mark(marker, "comfort_noise")
        for index, packet in enumerate(resumed):
            if index != 30:
                recorder.receive(packet)
        recorder.finish()
        self.assertEqual(recorder.timeline.silence_ticks, {"comfort_noise": 4000, "loss": 160})
        self.assertEqual(recorder.timeline.gaps, 1)

    def test_dtmf_events_counted_not_placed(self) -> None:
        """
        Telephone-event packets noted with ``count`` use up their sequence
        numbers (no loss counted for them, repeats are duplicates) and
        ``position_of`` puts their timestamp on the stream's timeline
        without moving it.
        """
        talk = _paced([20] * 10)
        last = talk[-1]
        recorder = _Recorder()
        for packet in talk:
            recorder.receive(packet)
        clock = recorder.clock
        self.assertTrue(clock.count(SSRC, last.sequence + 1))
        self.assertFalse(clock.count(SSRC, last.sequence + 1))
        self.assertTrue(clock.count(SSRC + 1, 5))  # unknown SSRC: nothing noted
        self.assertEqual(clock.position_of(SSRC, last.end), 10 * 160)
        self.assertIsNone(clock.position_of(SSRC + 1, last.end))
        after = _Packet(last.end, last.sequence + 2, _payload(1, 160), last.arrival + 0.02)
        recorder.receive(after)
        self.assertEqual((clock.lost, clock.duplicates), (0, 1))
        self.assertEqual(recorder.finish(), _concat(talk) + after.payload)


class FileOffsetTests(SynchronousTestCase):
    def test_offset_before_file_starts(self) -> None:
        """
        Before the file starts, a position's offset counts from the earliest
        packet held, where the file will start.
        """
        packets = _paced([20] * 10)
        recorder = _Recorder()
        for packet in _delayed(packets, {0: 0.05}):
            recorder.receive(packet)
        position = recorder.clock.position_of(SSRC, packets[3].timestamp + 7)
        self.assertEqual(recorder.timeline.file_offset(position), 3 * 160 + 7)

    def test_offset_after_capped_hole(self) -> None:
        """
        The offset of a position after a gap longer than the cap counts the
        gap only up to the cap, as it will be filled, whether or not the
        audio after the gap has been written yet.
        """
        talk = _paced([20] * 60)
        last = talk[-1]
        resumed = _paced(
            [20] * 60, timestamp=last.end + 60 * RATE, sequence=last.sequence + 1,
            start=last.arrival + 0.02 + 60,
        )
        recorder = _Recorder()
        for packet in talk + resumed[:1]:
            recorder.receive(packet)
        position = recorder.clock.position_of(SSRC, resumed[0].timestamp + 80)
        self.assertEqual(recorder.timeline.file_offset(position), 60 * 160 + CAP + 80)
        recorder.receive(resumed[1])
        position = recorder.clock.position_of(SSRC, resumed[1].timestamp)
        self.assertEqual(recorder.timeline.file_offset(position), 60 * 160 + CAP + 160)


# A realistic sender for the properties: runs of packet times, any starting
# timestamp and sequence number (so wraps happen), each packet delayed by
# up to 450 ms (less than the 1 s window) after the time it was sent.
_PTIMES = st.lists(
    st.tuples(st.sampled_from([10, 20, 30, 40, 60]), st.integers(1, 100)), min_size=1, max_size=4,
).map(lambda runs: [ptime for ptime, count in runs for _ in range(count)]).filter(
    lambda ptimes: len(ptimes) >= 2
)


@st.composite
def _sent(draw: st.DrawFn) -> list[_Packet]:
    return _paced(
        draw(_PTIMES),
        timestamp=draw(st.integers(0, 2**32 - 1)),
        sequence=draw(st.integers(0, 2**16 - 1)),
        start=draw(st.integers(0, 10**6)) / 1000,
    )


def _delays(count: int) -> st.SearchStrategy[list[float]]:
    return st.lists(st.integers(0, 450).map(lambda ms: ms / 1000), min_size=count, max_size=count)


class PropertyTests(SynchronousTestCase):
    @_SETTINGS
    @given(st.data())
    def test_any_reorder_within_window_same_file(self, data: st.DataObject) -> None:
        """
        Any arrival order that jitter smaller than the window can produce
        yields the same bytes as delivery in order, nothing late.
        """
        packets = data.draw(_sent())
        delays = data.draw(_delays(len(packets)))
        inorder, _ = _record(packets)
        reordered, recorder = _record(_delayed(packets, dict(enumerate(delays))))
        self.assertEqual(reordered, inorder)
        self.assertEqual(reordered, _concat(packets))
        self.assertEqual((recorder.timeline.late, recorder.clock.restarts), (0, 0))

    @_SETTINGS
    @given(st.data())
    def test_any_loss_right_length_and_offsets(self, data: st.DataObject) -> None:
        """
        Whatever packets are lost (the first and last arrive), the file is
        exactly as long as the timestamps span and every surviving payload
        sits at its timestamp's offset, silence elsewhere.
        """
        packets = data.draw(_sent())
        middle = len(packets) - 2
        keep = data.draw(st.lists(st.booleans(), min_size=middle, max_size=middle))
        kept = [packets[0]] + [p for p, k in zip(packets[1:-1], keep) if k] + [packets[-1]]
        delays = data.draw(_delays(len(kept)))
        out, recorder = _record(_delayed(kept, dict(enumerate(delays))))
        self.assertEqual(len(out), packets[-1].end - packets[0].timestamp)
        self.assertEqual(out, _expected(kept, packets[0].timestamp))
        self.assertEqual(recorder.clock.lost, len(packets) - len(kept))

    @_SETTINGS
    @given(st.data())
    def test_duplicates_change_nothing(self, data: st.DataObject) -> None:
        """
        Duplicates of any packets, arriving at any time up to the window
        after their originals were sent, leave the file unchanged and are
        each counted once.
        """
        packets = data.draw(_sent())
        delays = data.draw(_delays(len(packets)))
        copies = data.draw(st.lists(
            st.tuples(st.integers(0, len(packets) - 1), st.integers(0, 900)), max_size=30,
        ))
        arriving = _delayed(packets, dict(enumerate(delays))) + [
            attrs.evolve(packets[i], arrival=packets[i].arrival + ms / 1000) for i, ms in copies
        ]
        arriving.sort(key=lambda p: p.arrival)
        out, recorder = _record(arriving)
        self.assertEqual(out, _concat(packets))
        self.assertEqual(recorder.clock.duplicates, len(copies))
        self.assertEqual(recorder.timeline.late, 0)


class SequenceResyncTests(SynchronousTestCase):
    def test_sequence_jump_not_loss(self) -> None:
        """
        Sequence numbers that jump by thousands while the timestamps go on
        (a renumbered stream) are not counted as thousands of lost packets;
        the audio stays continuous.
        """
        clock = StreamClock(8000, 8000)
        positions = []
        for index in range(20):
            sequence = 1000 + index if index < 10 else 40000 + index
            placed = clock.place(7, 5000 + 160 * index, sequence, index * 0.02, 160)
            positions.append(placed.position)
        self.assertEqual(positions, [160 * i for i in range(20)])
        self.assertEqual((clock.lost, clock.restarts, clock.duplicates), (0, 0, 0))

    def test_loss_counted_across_resync(self) -> None:
        """
        Loss before and after a renumbering is still counted.
        """
        clock = StreamClock(8000, 8000)
        for index in (0, 1, 3, 4):  # 2 is lost
            clock.place(7, 160 * index, 100 + index, index * 0.02, 160)
        for index in (5, 7, 8):  # renumbered; 6 is lost
            clock.place(7, 160 * index, 20000 + index, index * 0.02, 160)
        self.assertEqual(clock.lost, 2)


class StallTests(SynchronousTestCase):
    def test_stall_then_burst_keeps_timeline(self) -> None:
        """
        A network stall of 3 s followed by a burst of the held packets
        (continuous sequence numbers and timestamps) is not a restart: the
        file is the call's audio with no silence put in.
        """
        packets = _paced([20] * 200)
        stalled = list(packets)
        for index in range(100, 200):
            stalled[index] = attrs.evolve(packets[index], arrival=5.0 + (index - 100) * 0.001)
        data, recorder = _record(stalled)
        self.assertEqual(data, _concat(packets))
        self.assertEqual(recorder.clock.restarts, 0)

    def test_very_late_straggler_is_late(self) -> None:
        """
        A packet more than 512 packets and several seconds late is late, not
        a restart: it is dropped, nothing else moves.
        """
        packets = _paced([20] * 700)
        straggler = attrs.evolve(packets[10], arrival=packets[-1].arrival + 0.01)
        data, recorder = _record(packets[:10] + packets[11:] + [straggler])
        expected = _concat(packets[:10]) + SILENCE * 160 + _concat(packets[11:])
        self.assertEqual(data, expected)
        self.assertEqual((recorder.clock.restarts, recorder.timeline.late), (0, 1))

    def test_marker_does_not_move_window(self) -> None:
        """
        A marker with a far-away position does not count as audio having
        arrived: a hole before it is still held for its packet.
        """
        line = Timeline(window_ticks=800, max_fill_ticks=CAP)
        self.assertEqual(line.push(0, b"a" * 160, 0.0), [])
        line.push(160, b"b" * 800, 0.1)  # opens the file
        self.assertEqual(line.push(1120, b"d" * 160, 0.2), [])  # hole at 960
        self.assertEqual(line.mark(10**7, 0.3, "dtmf"), [])
        self.assertEqual(line.push(960, b"c" * 160, 0.4), [Audio(b"c" * 160), Audio(b"d" * 160)])
