"""The archive's bookkeeping, pure: the recordings waiting for their upload
(how many files and bytes, since when), the pause after a failure, and
which failure causes are still unsaid or ongoing."""

from __future__ import annotations

from typing import Sequence

import attrs

# The first pause after a failure, and the longest (seconds): a store that
# is down is asked again every 5 minutes at most.
FIRST_RETRY = 1.0
LONGEST_RETRY = 300.0


def retry_delay(failures: int, first: float = FIRST_RETRY, longest: float = LONGEST_RETRY) -> float:
    """Seconds to wait after ``failures`` failures in a row (from 1): 1, 2,
    4, ... never more than ``longest``."""
    if failures >= 64:  # 2.0 ** 1024 overflows; far beyond any cap anyway
        return float(longest)
    return float(min(first * 2.0 ** (max(failures, 1) - 1), longest))


@attrs.frozen
class WaitingRecording:
    """A finished recording's files to upload, by their paths under
    storage.root: the sidecar, and the WAV (None when it received no
    audio); ``size`` their bytes, ``since`` when it was finished."""

    sidecar: str
    wav: str | None
    size: int
    since: float
    # Its files the journal says the store holds already (not sent again).
    verified: frozenset[str] = frozenset()
    recording_id: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """Its files in upload order: the audio first, so that a sidecar in
        the store means its audio is there too."""
        return (self.sidecar,) if self.wav is None else (self.wav, self.sidecar)


@attrs.define
class Backlog:
    """The recordings waiting for their upload, oldest first (in the order
    they came), each known once by its sidecar's path; ``take`` hands out
    one not already under way."""

    _waiting: dict[str, WaitingRecording] = attrs.field(factory=dict)
    _taken: set[str] = attrs.field(factory=set)
    _set_aside: set[str] = attrs.field(factory=set)

    def add(self, recording: WaitingRecording) -> bool:
        """False if it is waiting already, or set aside."""
        if recording.sidecar in self._waiting or recording.sidecar in self._set_aside:
            return False
        self._waiting[recording.sidecar] = recording
        return True

    def take(self) -> WaitingRecording | None:
        """The first waiting recording not under way (now under way)."""
        for sidecar, recording in self._waiting.items():
            if sidecar not in self._taken:
                self._taken.add(sidecar)
                return recording
        return None

    def give_back(self, recording: WaitingRecording) -> None:
        """Its upload failed: it waits again, in its place."""
        self._taken.discard(recording.sidecar)

    def set_aside(self, recording: WaitingRecording) -> None:
        """Its upload cannot succeed as things are (another object is at its
        key): it waits no more, and is not taken back until the next start
        (a new Backlog), so that it holds up no other upload."""
        self.done(recording)
        self._set_aside.add(recording.sidecar)

    def removed(self, relative_paths: Sequence[str]) -> None:
        """Retention removed these files: a recording set aside whose
        sidecar is among them is set aside no more."""
        self._set_aside.difference_update(relative_paths)

    @property
    def aside(self) -> int:
        """How many recordings are set aside."""
        return len(self._set_aside)

    def done(self, recording: WaitingRecording) -> None:
        """Verified in the store (or gone): it waits no more."""
        self._taken.discard(recording.sidecar)
        self._waiting.pop(recording.sidecar, None)

    @property
    def under_way(self) -> int:
        return len(self._taken)

    @property
    def recordings(self) -> int:
        return len(self._waiting)

    @property
    def files(self) -> int:
        return sum(len(recording.files) for recording in self._waiting.values())

    @property
    def bytes(self) -> int:
        return sum(recording.size for recording in self._waiting.values())

    def oldest_age(self, now: float) -> float:
        """Seconds since the oldest waiting recording was finished (0: none)."""
        if not self._waiting:
            return 0.0
        return max(0.0, now - min(recording.since for recording in self._waiting.values()))

    def __contains__(self, sidecar: str) -> bool:
        return sidecar in self._waiting


@attrs.define
class FailureCauses:
    """Failures said once per cause: `failed` says whether a cause is new
    (log it), `succeeded` returns the causes that an upload's success
    cleared, with how many failures each stood for (log that too)."""

    _ongoing: dict[str, int] = attrs.field(factory=dict)

    def failed(self, cause: str) -> bool:
        new = cause not in self._ongoing
        self._ongoing[cause] = self._ongoing.get(cause, 0) + 1
        return new

    def succeeded(self) -> dict[str, int]:
        cleared, self._ongoing = self._ongoing, {}
        return cleared

    @property
    def ongoing(self) -> tuple[str, ...]:
        return tuple(self._ongoing)
