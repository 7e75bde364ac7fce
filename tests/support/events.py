"""A recording's events as a test sees them: an IRecordingEvents that
keeps what it is told and makes each further file with a given function."""

from __future__ import annotations

from typing import Callable

import attrs
from zope.interface import implementer

from recsvc.session import IRecordingEvents, Recording
from recsvc.storage.wav import AudioWriter
from recsvc.summary import RecordingSummary


def no_file(number: int) -> AudioWriter:
    raise AssertionError(f"file {number} was not expected")


@implementer(IRecordingEvents)
@attrs.define(eq=False)
class KeptEvents:
    """The recordings started and stopped and the files finished (or kept
    with an error), in order;
    ``make_part`` creates each file asked for."""

    make_part: Callable[[int], AudioWriter] = no_file
    started_recordings: list[Recording] = attrs.field(factory=list)
    finished_files: list[tuple[str, RecordingSummary]] = attrs.field(factory=list)
    kept_files: list[tuple[str, RecordingSummary]] = attrs.field(factory=list)
    stopped_recordings: list[Recording] = attrs.field(factory=list)

    def open_part(self, number: int) -> AudioWriter:
        return self.make_part(number)

    def started(self, recording: Recording) -> None:
        self.started_recordings.append(recording)

    def file_finished(self, recording: Recording, path: str, summary: RecordingSummary) -> None:
        self.finished_files.append((path, summary))

    def file_kept(self, recording: Recording, path: str, summary: RecordingSummary) -> None:
        self.kept_files.append((path, summary))

    def stopped(self, recording: Recording) -> None:
        self.stopped_recordings.append(recording)
