"""A recording's media path: RTP packets in, the bytes of its WAV file out.

Pure code (arrival times are given): source checking, then the stream clock
and the timeline, comfort noise and DTMF, and the codec's encoding of audio
and silence.
"""

from __future__ import annotations

from typing import Callable, Sequence

import attrs

from recsvc.media import timeline
from recsvc.media.codec import Codec, SegmentEncoder
from recsvc.media.dtmf import DtmfError, DtmfLog, parse_event
from recsvc.media.rtp import RtpPacket
from recsvc.media.source import PEER, Address, SourceGuard, SourcePolicy
from recsvc.summary import DigitPressed, Discontinuity, MediaStats

# What the source check lets in: packets, each with its arrival if not now.
Admitted = Sequence[tuple[RtpPacket, "float | None"]]

COMFORT_NOISE = 13  # RFC 3389, static payload type


@attrs.frozen
class MediaPolicy:
    """The rtp.* settings that shape a recording's timeline."""

    reorder_window_ms: int = 1000
    max_gap_fill: float = 30.0
    dtmf_payload_type: int = 101
    source: SourcePolicy = PEER
    # A payload longer than this much audio is rejected ("payload too long").
    max_packet_ms: int = 200


@attrs.frozen
class Continuation:
    """The packet that would continue a recording's stream exactly, in the
    steady state (in order, nothing held back, source locked): it would
    only be appended. A fast path may take such packets without the
    pipeline and hand them over later, together (`MediaPipeline.continued`)."""

    payload_type: int
    ssrc: int
    sequence: int
    timestamp: int
    ticks: int  # also its payload's length: one byte a tick for every codec here
    source: Address


# A key press lasts at most this long: an event whose start lies further
# from the stream's present than this (and the reorder window) has a
# timestamp that cannot be trusted, and is placed where the stream is now.
LONGEST_KEY_PRESS_S = 10.0


@attrs.define(eq=False)
class MediaPipeline:
    """One recording's media path: checks where each packet comes from,
    places it on the call's timeline, and returns the WAV bytes that are
    ready; keeps the statistics the sidecar reports."""

    codec: Codec
    encoder: SegmentEncoder
    peer_ip: str
    policy: MediaPolicy = MediaPolicy()
    _guard: SourceGuard = attrs.field(init=False)
    _clock: timeline.StreamClock = attrs.field(init=False)
    _timeline: timeline.Timeline = attrs.field(init=False)
    _dtmf: DtmfLog = attrs.field(init=False)
    _received: int = 0
    _comfort_noise: int = 0
    _dtmf_packets: int = 0
    _rejected: dict[str, int] = attrs.field(factory=dict)
    # When the last packet of the recording's own source arrived: what the
    # RTP timeouts watch (rejected traffic must not keep a recording alive).
    last_admitted: float | None = attrs.field(default=None, init=False)
    _accepted_types: frozenset[int] = attrs.field(init=False)
    _longest_payload: int = attrs.field(init=False)  # bytes (rtp.max_packet_ms)
    _plausible_event_ticks: int = attrs.field(init=False)
    # The source check: `_admit_at_start` until the first source has proven
    # a stream, then the guard's own. Meanwhile, how many packets the first
    # source has had admitted, and their distinct sequence numbers.
    _admit: Callable[[RtpPacket, Address, float], Admitted] = attrs.field(init=False)
    _starting: bool = attrs.field(init=False, default=True)
    _start_packets: int = attrs.field(init=False, default=0)
    _start_sequences: set[int] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        self._accepted_types = frozenset(
            (self.codec.payload_type, COMFORT_NOISE, self.policy.dtmf_payload_type)
        )
        self._longest_payload = self.codec.payload_bytes(self.policy.max_packet_ms)
        self._guard = SourceGuard(self.policy.source, self.peer_ip)
        self._admit = self._admit_at_start
        self._new_timeline()
        self._plausible_event_ticks = (
            self._clock.window_ticks + round(LONGEST_KEY_PRESS_S * self.codec.clock_rate)
        )

    def _new_timeline(self) -> None:
        """An empty timeline, and nothing received on it."""
        rate = self.codec.clock_rate
        window = self.policy.reorder_window_ms * rate // 1000
        self._clock = timeline.StreamClock(rate, window)
        self._timeline = timeline.Timeline(window, round(self.policy.max_gap_fill * rate))
        self._dtmf = DtmfLog()
        self._received = self._comfort_noise = self._dtmf_packets = 0

    def packet(self, packet: RtpPacket, source: Address, arrival: float) -> list[bytes]:
        """A valid RTP packet from ``source``; returns the bytes to append."""
        if packet.payload_type not in self._accepted_types:
            # Checked before the source: only media of this call may lock it.
            self._reject(f"payload type {packet.payload_type}")
            return []
        if len(packet.payload) > self._longest_payload:
            # Its bytes would be written as that much audio (a 65,000-byte
            # packet: 8 s), pushing the real packets after it out as late.
            self._reject("payload too long")
            return []
        out: list[bytes] = []
        for admitted, when in self._admit(packet, source, arrival):
            self.last_admitted = arrival
            out += self._admitted(admitted, arrival if when is None else when)
        return out

    def _admit_at_start(self, packet: RtpPacket, source: Address, arrival: float) -> Admitted:
        """The source check until the first source has had PROBATION_PACKETS
        packets admitted. If another source of an allowed address takes over
        before that (it went on while the first fell silent: the first were
        stray packets from the phone's address, just before the phone's
        own), the recording starts over with the newcomer, as if the strays
        had never come, unless the file already holds some of them (a reorder
        window shorter than they are)."""
        guard = self._guard
        switches = guard.switches
        admitted = guard.admit_timed(packet, source, arrival)
        if guard.switches != switches:
            if not self._timeline.file_ticks:
                self._reject("unconfirmed source", self._start_packets)
                self._new_timeline()
            self._end_start()
            return admitted
        self._start_packets += len(admitted)
        self._start_sequences.update(admitted_packet.sequence for admitted_packet, _ in admitted)
        if len(self._start_sequences) >= guard.probation:
            self._end_start()
        return admitted

    def _end_start(self) -> None:
        self._admit, self._starting = self._guard.admit_timed, False
        self._start_sequences = set()

    def expected(self) -> Continuation | None:
        """The packet that would continue the stream exactly, if the stream
        is in its steady state; None otherwise (also while the start is
        undecided: every packet of it must come to `packet`)."""
        if self._starting:
            return None
        clock = self._clock.continuation()
        if clock is None or self._timeline.continues_at != self._clock.end:
            return None
        ssrc, sequence, timestamp, ticks = clock
        source = self._guard.locked_source(ssrc, sequence)
        if source is None:
            return None
        return Continuation(self.codec.payload_type, ssrc, sequence, timestamp, ticks, source)

    def continued(self, count: int, payload: bytes, arrivals: Sequence[float]) -> list[bytes]:
        """``count`` packets arrived, the first being what `expected` said
        (no packet having come to `packet` since) and each the continuation
        of the one before; ``payload`` is theirs, joined, and ``arrivals``
        when each came. The same as taking them one by one with `packet`
        (jitter is sampled once)."""
        arrival = arrivals[-1]
        last_sequence = self._clock.continued(count, arrival)
        self._guard.continued(last_sequence, arrivals)
        self._received += count
        self.last_admitted = arrival
        # bytes: the lane gathers into a bytearray, which the G.722 decoder
        # refuses (and Audio holds bytes).
        return self._encode(self._timeline.continued(bytes(payload), arrival))

    def invalid(self) -> None:
        """A datagram that is not RTP."""
        self._reject("not rtp")

    def flush(self) -> list[bytes]:
        """What the reorder window still holds (the recording is ending)."""
        self._guard.finish()
        return self._encode(self._timeline.flush())

    def _admitted(self, packet: RtpPacket, arrival: float) -> list[bytes]:
        payload_type = packet.payload_type
        if payload_type == self.codec.payload_type:
            placed = self._clock.place(
                packet.ssrc, packet.timestamp, packet.sequence, arrival, len(packet.payload)
            )
            if placed is None:
                return []
            self._received += 1
            return self._encode(self._timeline.push(placed.position, packet.payload, arrival))
        if payload_type == COMFORT_NOISE:
            placed = self._clock.place(packet.ssrc, packet.timestamp, packet.sequence, arrival, 0)
            if placed is None:
                return []
            self._comfort_noise += 1
            return self._encode(self._timeline.mark(placed.position, arrival, timeline.COMFORT_NOISE))
        return self._telephone_event(packet, arrival)

    def _telephone_event(self, packet: RtpPacket, arrival: float) -> list[bytes]:
        try:
            event = parse_event(packet.payload)
        except DtmfError:
            self._reject("bad telephone-event")
            return []
        # The packets of one key press all carry the press's start time: they
        # are placed without moving the stream clock, which would read a long
        # press as a timestamp jump.
        if not self._clock.count(packet.ssrc, packet.sequence):
            return []
        position = self._clock.position_of(packet.ssrc, packet.timestamp)
        if position is None:
            placed = self._clock.place(packet.ssrc, packet.timestamp, packet.sequence, arrival, 0)
            assert placed is not None
            position = placed.position
        elif abs(position - self._clock.end) > self._plausible_event_ticks:
            position = self._clock.end
        self._dtmf_packets += 1
        if not self._dtmf.event(packet.ssrc, packet.timestamp, self._timeline.file_offset(position), event):
            return []
        return self._encode(self._timeline.mark(position, arrival, timeline.DTMF))

    def _encode(self, segments: list[timeline.Segment]) -> list[bytes]:
        encoder = self.encoder
        return [
            encoder.audio(segment.payload) if isinstance(segment, timeline.Audio)
            else encoder.silence(segment.ticks)
            for segment in segments
        ]

    def _reject(self, reason: str, count: int = 1) -> None:
        self._rejected[reason] = self._rejected.get(reason, 0) + count

    def stats(self) -> MediaStats:
        rate = self.codec.clock_rate
        line = self._timeline

        def ms(ticks: int) -> float:
            return round(1000 * ticks / rate, 3)

        rejected = dict(self._rejected)
        for reason, count in self._guard.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + count
        return MediaStats(
            received=self._received,
            lost=self._clock.lost,
            late=line.late,
            duplicate=self._clock.duplicates,
            rejected=rejected,
            comfort_noise=self._comfort_noise,
            dtmf_packets=self._dtmf_packets,
            gaps=line.gaps,
            gap_ms=ms(line.gap_ticks),
            comfort_noise_ms=ms(line.silence_ticks.get(timeline.COMFORT_NOISE, 0)),
            dtmf_ms=ms(line.silence_ticks.get(timeline.DTMF, 0)),
            jitter_ms=self._clock.jitter_ms,
            stream_restarts=self._clock.restarts,
            source_switches=self._guard.switches,
            discontinuities=tuple(
                Discontinuity(
                    offset_s=round(d.offset_ticks / rate, 3),
                    gap_s=round(d.gap_ticks / rate, 3),
                    wall_s=d.wall_seconds,
                    filled_s=round(d.filled_ticks / rate, 3),
                )
                for d in line.discontinuities
            ),
            dtmf=tuple(
                DigitPressed(d.digit, round(d.offset_ticks / rate, 3), ms(d.duration_ticks))
                for d in self._dtmf.digits
            ),
        )
