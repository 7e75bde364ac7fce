"""What a recording is, as values: the call, its media statistics, and the
summary its JSON sidecar holds."""

from __future__ import annotations

import time
from typing import Any

import attrs

from recsvc.media.codec import Codec
from recsvc.control.commands import CallParties


@attrs.frozen
class RecordingInfo:
    """What the phone told us at Start, plus where it called from."""

    recording_id: str
    device: str
    codec: Codec
    direction: str
    parties: CallParties
    peer: str  # the phone's IP, from its control connection
    # The recorder node it is recorded on (the config's node; "" for none).
    node: str = ""


@attrs.frozen
class DigitPressed:
    digit: str
    offset_s: float
    duration_ms: float


@attrs.frozen
class Discontinuity:
    offset_s: float  # where in the file
    gap_s: float  # how long by the timestamps
    wall_s: float  # how long by the wall clock
    filled_s: float  # how much silence was put in


@attrs.frozen
class MediaStats:
    """How the call's RTP arrived and what became of it."""

    received: int = 0  # audio packets placed on the timeline
    lost: int = 0  # sequence numbers never seen
    late: int = 0  # arrived after their place was written
    duplicate: int = 0
    rejected: dict[str, int] = attrs.field(factory=dict)  # by reason
    comfort_noise: int = 0  # comfort-noise packets
    dtmf_packets: int = 0
    gaps: int = 0  # holes filled because audio was lost
    gap_ms: float = 0.0
    comfort_noise_ms: float = 0.0
    dtmf_ms: float = 0.0
    jitter_ms: float = 0.0
    stream_restarts: int = 0  # timestamp jumps and SSRC changes
    source_switches: int = 0
    discontinuities: tuple[Discontinuity, ...] = ()
    dtmf: tuple[DigitPressed, ...] = ()

    def within(self, start_s: float, length_s: float | None) -> MediaStats:
        """These statistics as seen from a file that holds the recording from
        ``start_s`` on, for ``length_s`` seconds (None: to the end): the
        digits and discontinuities in it, at offsets within it."""
        if start_s == 0 and length_s is None:
            return self
        end_s = float("inf") if length_s is None else start_s + length_s

        def inside(offset: float) -> bool:
            return start_s <= offset < end_s

        return attrs.evolve(
            self,
            dtmf=tuple(
                attrs.evolve(d, offset_s=round(d.offset_s - start_s, 3))
                for d in self.dtmf if inside(d.offset_s)
            ),
            discontinuities=tuple(
                attrs.evolve(d, offset_s=round(d.offset_s - start_s, 3))
                for d in self.discontinuities if inside(d.offset_s)
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "packets_received": self.received,
            "packets_lost": self.lost,
            "packets_late": self.late,
            "packets_duplicate": self.duplicate,
            "packets_rejected": dict(sorted(self.rejected.items())),
            "packets_comfort_noise": self.comfort_noise,
            "packets_dtmf": self.dtmf_packets,
            "gaps": {"count": self.gaps, "filled_ms": self.gap_ms},
            "comfort_noise_ms": self.comfort_noise_ms,
            "dtmf_silence_ms": self.dtmf_ms,
            "jitter_ms": self.jitter_ms,
            "stream_restarts": self.stream_restarts,
            "source_switches": self.source_switches,
            "discontinuities": [attrs.asdict(d) for d in self.discontinuities],
            "dtmf": [attrs.asdict(d) for d in self.dtmf],
        }


@attrs.frozen
class RecordingSummary:
    """One file of a recording, as its sidecar describes it."""

    info: RecordingInfo
    audio_format: str
    file: str | None  # None: no audio was received, and no WAV kept
    started_at: float
    stopped_at: float | None  # None while recording
    stop_reason: str
    stopped_by: str
    data_bytes: int
    frames: int
    sample_rate: int
    stats: MediaStats
    rtp_port: int | None
    error: str | None = None
    part: int = 1  # a long recording goes on in further files
    previous: str | None = None  # the file before this one
    next: str | None = None  # the file after this one
    overflow_ms: float = 0.0  # audio dropped because the disk did not keep up

    @property
    def duration_s(self) -> float:
        return round(self.frames / self.sample_rate, 3)

    def to_json(self) -> dict[str, Any]:
        info = self.info
        data: dict[str, Any] = {
            "id": info.recording_id,
            "node": info.node,
            "device": info.device,
            "codec": info.codec.name,
            "format": self.audio_format,
            "direction": info.direction,
            **attrs.asdict(info.parties),
            "status": "recording" if self.stopped_at is None else "finished",
            "started_at": iso_utc(self.started_at),
            "stopped_at": None if self.stopped_at is None else iso_utc(self.stopped_at),
            "duration_s": self.duration_s,
            "stop_reason": self.stop_reason,
            "stopped_by": self.stopped_by,
            **self.stats.to_json(),
            "bytes": self.data_bytes,
            "sample_rate": self.sample_rate,
            "file": self.file,
            "overflow_ms": self.overflow_ms,
            "part": self.part,
            "previous": self.previous,
            "next": self.next,
            "peer": info.peer,
            "rtp_port": self.rtp_port,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


def iso_utc(seconds: float) -> str:
    whole = int(seconds)
    millis = int(round((seconds - whole) * 1000))
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"
