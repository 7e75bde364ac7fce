"""A recording's timeline: where each RTP payload belongs in the file.

Pure code, no I/O and no clock of its own (arrival times are given). Two
steps:

- `StreamClock` turns a packet's SSRC and 32-bit timestamp into a position
  on one continuous timeline (in RTP clock ticks), re-anchoring on arrival
  time when the stream restarts (new SSRC, a timestamp jump the wall clock
  does not explain); it also drops duplicates and measures jitter and loss.
- `Timeline` puts positioned payloads in order within a reorder window and
  emits the file's content: audio, and silence for exactly what is missing
  (capped, with the discontinuity noted).
"""

from __future__ import annotations

import heapq
from typing import Union

import attrs

# A timestamp/wall-clock disagreement larger than this (beyond the reorder
# window) is a restarted stream, not network jitter.
JUMP_SLACK_S = 1.0

# How far behind the highest sequence number duplicates are recognised (one
# bit each): 2.5 s of 20 ms packets, more than any reorder window keeps;
# older repeats are late anyway.
RECENT = 128
_RECENT_MASK = (1 << RECENT) - 1
# A packet at most this many sequence numbers ahead, whose timestamp advanced
# by at most LONGEST_PACKET_S per number, continues the stream.
CONTINUOUS_STEPS = 16
LONGEST_PACKET_S = 1.0

# A sequence number further than this from the highest one is a renumbered
# stream, not loss (RFC 3550 A.1's MAX_DROPOUT).
MAX_DROPOUT = 3000


# What a silence in the file stands for.
LOSS = "loss"  # audio the network lost
COMFORT_NOISE = "comfort_noise"  # the phone sent comfort noise instead of audio
DTMF = "dtmf"  # the phone sent key presses instead of audio


@attrs.frozen
class Audio:
    """Payload bytes that go into the file as they are (one byte per tick)."""

    payload: bytes


@attrs.frozen
class Silence:
    """``ticks`` of silence: ``kind`` is ``loss`` (a gap the network made) or
    ``comfort_noise`` (the phone sent comfort noise instead of audio)."""

    ticks: int
    kind: str = LOSS


Segment = Union[Audio, Silence]


@attrs.frozen
class LongGap:
    """A gap longer than the fill cap (the sidecar calls it a discontinuity): where it is in the file, how long it
    was by the timestamps and by the wall clock, and how much was filled."""

    offset_ticks: int
    gap_ticks: int
    wall_seconds: float
    filled_ticks: int


@attrs.define(eq=False)
class _Source:
    """What the clock knows of one SSRC."""

    anchor_timestamp: int  # extended timestamp that maps to anchor_position
    anchor_position: int
    highest_timestamp: int  # extended
    highest_arrival: float
    base_sequence: int  # extended
    highest_sequence: int  # extended
    received: int = 0
    transit: float | None = None
    # Bit i set: highest_sequence - i was received (duplicate detection).
    seen: int = 0


@attrs.frozen
class Positioned:
    """A packet placed on the timeline."""

    position: int
    arrival: float


@attrs.define(eq=False)
class StreamClock:
    """Maps (SSRC, timestamp, sequence, arrival) to timeline positions.

    ``rate`` is the RTP clock rate; ``window_ticks`` the reorder window, which
    bounds how far timestamps and the wall clock may disagree before the
    stream is taken to have restarted.
    """

    rate: int
    window_ticks: int
    duplicates: int = 0
    jitter_ticks: float = 0.0
    restarts: int = 0
    _sources: dict[int, _Source] = attrs.field(factory=dict)
    _current: int | None = None  # SSRC
    _end: int = 0  # highest position + duration seen, over all sources
    _end_start: int = 0  # where the packet that reached _end began
    _end_arrival: float = 0.0  # and when it arrived
    _retired_lost: int = 0  # loss counted on sources no longer tracked

    def place(
        self, ssrc: int, timestamp: int, sequence: int, arrival: float, ticks: int
    ) -> Positioned | None:
        """The position of a packet's first tick, or None for a duplicate."""
        source = self._sources.get(ssrc)
        if source is None:
            if self._current is not None:
                self.restarts += 1  # a new SSRC: the phone restarted its stream
            source = self._anchor(ssrc, timestamp, sequence, arrival)
        extended_sequence = _unwrap(sequence, source.highest_sequence, 16)
        extended = _unwrap(timestamp, source.highest_timestamp, 32)
        if self._jumped(source, extended, extended_sequence, arrival):
            # Before the duplicate check: a restarted stream may reuse the
            # sequence numbers it had just sent.
            self.restarts += 1
            self._retire(ssrc)
            source = self._anchor(ssrc, timestamp, sequence, arrival)
            extended = source.anchor_timestamp
            extended_sequence = source.base_sequence
        elif _seen(source, extended_sequence):
            self.duplicates += 1
            return None
        elif abs(extended_sequence - source.highest_sequence) > MAX_DROPOUT:
            # Sequence numbers that jump while the timestamps go on: count
            # from the new numbers (RFC 3550 A.1), not thousands as lost.
            self._resync_sequence(source, extended_sequence)
        self._remember(source, extended_sequence)
        self._measure_jitter(source, extended, arrival)
        if extended >= source.highest_timestamp:
            source.highest_timestamp = extended
            source.highest_arrival = arrival
        self._current = ssrc
        position = source.anchor_position + extended - source.anchor_timestamp
        if position + ticks > self._end:
            self._end, self._end_start, self._end_arrival = position + ticks, position, arrival
        return Positioned(position, arrival)

    @property
    def end(self) -> int:
        """The furthest position any packet has reached: the stream's present."""
        return self._end

    def continuation(self) -> tuple[int, int, int, int] | None:
        """The packet that would continue the stream exactly, as (SSRC,
        sequence, timestamp, ticks): next in both numberings after the
        newest packet, and as long. None unless that newest packet is also
        the one that reached the stream's end (the steady state)."""
        if self._current is None:
            return None
        source = self._sources[self._current]
        ticks = self._end - self._end_start
        start = source.anchor_position + source.highest_timestamp - source.anchor_timestamp
        if start != self._end_start or not 0 < ticks <= LONGEST_PACKET_S * self.rate:
            return None
        return (
            self._current,
            (source.highest_sequence + 1) & 0xFFFF,
            (source.highest_timestamp + ticks) & 0xFFFFFFFF,
            ticks,
        )

    def continued(self, count: int, arrival: float) -> int:
        """``count`` packets arrived, each the `continuation` of the one
        before, the last by ``arrival``: the same as placing them one by one,
        but jitter is sampled once, with the last. Returns the last one's
        sequence number."""
        source = self._sources[self._current]  # type: ignore[index]
        ticks = self._end - self._end_start
        source.received += count
        source.seen = ((source.seen << count) | ((1 << count) - 1)) & _RECENT_MASK
        source.highest_sequence += count
        extended = source.highest_timestamp + count * ticks
        self._measure_jitter(source, extended, arrival)
        source.highest_timestamp, source.highest_arrival = extended, arrival
        self._end += count * ticks
        self._end_start, self._end_arrival = self._end - ticks, arrival
        return source.highest_sequence & 0xFFFF

    def count(self, ssrc: int, sequence: int) -> bool:
        """Note a packet of a known SSRC that is not placed (a DTMF event
        packet), so its sequence number is not taken for loss. False for a
        duplicate; True also when the SSRC is unknown (nothing noted)."""
        source = self._sources.get(ssrc)
        if source is None:
            return True
        extended = _unwrap(sequence, source.highest_sequence, 16)
        if _seen(source, extended):
            self.duplicates += 1
            return False
        self._remember(source, extended)
        return True

    def position_of(self, ssrc: int, timestamp: int) -> int | None:
        """Where a timestamp of a known SSRC falls (for DTMF events)."""
        source = self._sources.get(ssrc)
        if source is None:
            return None
        extended = _unwrap(timestamp, source.highest_timestamp, 32)
        return source.anchor_position + extended - source.anchor_timestamp

    @property
    def lost(self) -> int:
        """Packets expected by their sequence numbers and never received."""
        return sum(
            max(0, s.highest_sequence - s.base_sequence + 1 - s.received)
            for s in self._sources.values()
        ) + self._retired_lost

    @property
    def jitter_ms(self) -> float:
        return round(1000 * self.jitter_ticks / self.rate, 3)

    def _anchor(self, ssrc: int, timestamp: int, sequence: int, arrival: float) -> _Source:
        """A new stream starts where the wall clock says it does: right after
        what came before, plus the time that passed since."""
        if self._current is None:
            position = 0
        else:
            elapsed = max(0.0, arrival - self._end_arrival)
            position = max(self._end, self._end_start + round(elapsed * self.rate))
        source = _Source(
            anchor_timestamp=timestamp,
            anchor_position=position,
            highest_timestamp=timestamp,
            highest_arrival=arrival,
            base_sequence=sequence,
            highest_sequence=sequence,
        )
        if len(self._sources) >= 4:
            # A phone does not come back to a stream it left long ago.
            self._retire(next(iter(self._sources)))
        self._sources[ssrc] = source
        return source

    def _resync_sequence(self, source: _Source, extended_sequence: int) -> None:
        self._retired_lost += max(
            0, source.highest_sequence - source.base_sequence + 1 - source.received
        )
        source.base_sequence = source.highest_sequence = extended_sequence
        source.received = 0
        source.seen = 0

    def _retire(self, ssrc: int) -> None:
        retired = self._sources.pop(ssrc)
        self._retired_lost += max(
            0, retired.highest_sequence - retired.base_sequence + 1 - retired.received
        )

    def _jumped(
        self, source: _Source, extended: int, extended_sequence: int, arrival: float
    ) -> bool:
        if source.received == 0:
            return False
        behind = source.highest_sequence - extended_sequence
        if 0 <= behind < MAX_DROPOUT and extended <= source.highest_timestamp:
            # Behind in both numberings: a straggler (late, or a duplicate),
            # however late it is, not a restart.
            return False
        ahead = extended - source.highest_timestamp
        if 0 < -behind <= CONTINUOUS_STEPS and 0 <= ahead <= -behind * LONGEST_PACKET_S * self.rate:
            # The next packets in both numberings: after a network stall,
            # however long, the stream goes on where it was; the timestamps
            # say so even if the wall clock does not.
            return False
        by_timestamps = (extended - source.highest_timestamp) / self.rate
        by_wall_clock = arrival - source.highest_arrival
        slack = self.window_ticks / self.rate + JUMP_SLACK_S
        return abs(by_timestamps - by_wall_clock) > slack

    def _remember(self, source: _Source, extended_sequence: int) -> None:
        source.received += 1
        ahead = extended_sequence - source.highest_sequence
        if ahead > 0:
            source.seen = ((source.seen << ahead) | 1) & _RECENT_MASK
            source.highest_sequence = extended_sequence
        elif -ahead < RECENT:
            source.seen |= 1 << -ahead
        source.base_sequence = min(source.base_sequence, extended_sequence)

    def _measure_jitter(self, source: _Source, extended: int, arrival: float) -> None:
        # RFC 3550 6.4.1 interarrival jitter, in timestamp units.
        transit = arrival * self.rate - extended
        if source.transit is not None:
            self.jitter_ticks += (abs(transit - source.transit) - self.jitter_ticks) / 16
        source.transit = transit


def _seen(source: _Source, extended_sequence: int) -> bool:
    behind = source.highest_sequence - extended_sequence
    return 0 <= behind < RECENT and bool(source.seen >> behind & 1)


def _unwrap(value: int, reference: int, bits: int) -> int:
    """``value`` (modulo 2**bits) as the extended number nearest ``reference``."""
    size = 1 << bits
    half = size >> 1
    delta = (value - reference + half) % size - half
    return reference + delta


@attrs.frozen
class _Pending:
    position: int
    arrival: float
    payload: bytes  # empty for a marker
    kind: str = "audio"  # or, for a marker, what the silence after it is: COMFORT_NOISE, DTMF


@attrs.define(eq=False)
class Timeline:
    """Orders positioned payloads and emits the file's content.

    A payload that continues what was written goes out at once; one after a
    hole waits until ``window_ticks`` of audio beyond the hole have arrived
    for the hole to be filled, then the hole becomes silence. Silence for
    one gap is capped at ``max_fill_ticks``; longer gaps are noted as
    discontinuities.
    A payload that overlaps what was written keeps only its new part; one
    wholly before it is late. Markers (comfort noise, DTMF) say why the
    silence that follows them is silence; without one, a gap is loss.
    """

    window_ticks: int
    max_fill_ticks: int
    late: int = 0
    gaps: int = 0  # gaps filled because audio was lost
    silence_ticks: dict[str, int] = attrs.field(factory=dict)  # by kind
    discontinuities: list[LongGap] = attrs.field(factory=list)
    file_ticks: int = 0  # ticks emitted so far
    _written: int | None = None  # timeline position up to which all is emitted
    _last_arrival: float = 0.0
    _pending: dict[int, _Pending] = attrs.field(factory=dict)
    _heap: list[int] = attrs.field(factory=list)
    _newest_end: int = 0
    # Before the first write: whether what is held is one run of audio,
    # each payload right after the one before (see continues_at).
    _held_run: bool = False
    _silence_kind: str = LOSS

    def push(self, position: int, payload: bytes, arrival: float) -> list[Segment]:
        """A payload whose first tick sits at ``position``."""
        if not payload:
            return []
        return self._add(_Pending(position, arrival, payload))

    def mark(self, position: int, arrival: float, kind: str) -> list[Segment]:
        """From ``position`` the phone sends ``kind`` (comfort_noise, dtmf)
        instead of audio: the silence until the next audio is not loss."""
        return self._add(_Pending(position, arrival, b"", kind))

    def flush(self) -> list[Segment]:
        """Everything still waiting (the recording ends)."""
        return self._release(final=True)

    @property
    def continues_at(self) -> int | None:
        """Where audio that simply continues the stream goes: the written
        end, when nothing is held back; in the first window (nothing
        written yet), the end of what is held, when that is one run of
        audio in order. None otherwise."""
        if not self._heap:
            return self._written
        if self._written is None and self._held_run:
            return self._newest_end
        return None

    def continued(self, payload: bytes, arrival: float) -> list[Segment]:
        """Audio that begins at `continues_at` (the payloads of packets that
        each continued the one before): the same as pushing them one by one."""
        if self._written is None:
            return self._add(_Pending(self._newest_end, arrival, payload))
        assert not self._heap
        self._newest_end = max(self._newest_end, self._written + len(payload))
        return self._emit(_Pending(self._written, arrival, payload))

    def file_offset(self, position: int) -> int:
        """Where a timeline position lands in the file, in ticks."""
        if self._written is None:
            # Nothing written yet: the file will start at the earliest held packet.
            return max(0, position - self._heap[0]) if self._heap else 0
        ahead = position - self._written
        if ahead > 0 and self._heap and self._heap[0] > self._written:
            # The hole before the next held payload is not filled yet; it
            # will be only up to the cap.
            hole = self._heap[0] - self._written
            ahead -= max(0, min(ahead, hole) - self.max_fill_ticks)
        return max(0, self.file_ticks + ahead)

    @property
    def gap_ticks(self) -> int:
        """Silence put in for lost audio, in ticks."""
        return self.silence_ticks.get(LOSS, 0)

    def _add(self, entry: _Pending) -> list[Segment]:
        if self._written is not None and entry.position + max(1, len(entry.payload)) <= self._written:
            if entry.payload:
                self.late += 1
            return []
        if self._written is None:
            self._held_run = bool(entry.payload) and (
                not self._heap or (self._held_run and entry.position == self._newest_end)
            )
        existing = self._pending.get(entry.position)
        if existing is not None:
            if existing.payload and entry.payload:
                self.late += 1  # another payload for the same ticks
            if existing.payload or not entry.payload:
                return []
        else:
            heapq.heappush(self._heap, entry.position)
        self._pending[entry.position] = entry
        if entry.payload:
            # Only audio tells how far the stream has come: a marker with a
            # wild timestamp must not release the window early.
            self._newest_end = max(self._newest_end, entry.position + len(entry.payload))
        return self._release(final=False)

    def _release(self, final: bool) -> list[Segment]:
        segments: list[Segment] = []
        if self._written is None and self._heap:
            # The file starts at the earliest packet of the first window, so
            # that a reordered first packet is not lost.
            first = self._heap[0]
            if not final and self._newest_end - first <= self.window_ticks:
                return segments
            self._written = first
            self._last_arrival = self._pending[first].arrival
        while self._heap:
            position = self._heap[0]
            assert self._written is not None
            # A hole is given up only once audio a window beyond its end has
            # arrived: until then its last packets may still come.
            if position > self._written and not final and (
                self._newest_end - position <= self.window_ticks
            ):
                break
            heapq.heappop(self._heap)
            segments += self._emit(self._pending.pop(position))
        return segments

    def _emit(self, entry: _Pending) -> list[Segment]:
        assert self._written is not None
        segments: list[Segment] = []
        gap = entry.position - self._written
        if gap > 0:
            segments.append(self._fill(gap, entry.arrival))
            self._written = entry.position
        if not entry.payload:
            self._silence_kind = entry.kind
            return segments
        payload = entry.payload[max(0, self._written - entry.position):]
        if not payload:
            self.late += 1
            return segments
        segments.append(Audio(payload))
        self.file_ticks += len(payload)
        self._written += len(payload)
        self._last_arrival = entry.arrival
        self._silence_kind = LOSS
        return segments

    def _fill(self, gap: int, arrival: float) -> Silence:
        filled = min(gap, self.max_fill_ticks)
        if gap > self.max_fill_ticks:
            self.discontinuities.append(LongGap(
                offset_ticks=self.file_ticks,
                gap_ticks=gap,
                wall_seconds=round(max(0.0, arrival - self._last_arrival), 3),
                filled_ticks=filled,
            ))
        kind = self._silence_kind
        if kind == LOSS:
            self.gaps += 1
        self.silence_ticks[kind] = self.silence_ticks.get(kind, 0) + filled
        self.file_ticks += filled
        return Silence(filled, kind)
