"""What an application that embeds recsvc is told about its recordings: the
`IRecordingObserver` interface, and the service's side of it, which calls
each observer in turn and keeps their failures away from the recordings."""

from __future__ import annotations

import os
from typing import Any, Iterable

import attrs
from twisted.internet.defer import maybeDeferred
from twisted.python.failure import Failure
from zope.interface import Interface
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from recsvc.logs import Logger
from recsvc.summary import RecordingInfo, RecordingSummary


class IRecordingObserver(Interface):
    """Told of the recordings, by `recsvc.makeService(config, observers=[...])`.

    Every method is called on the reactor thread, with values the observer
    may keep (frozen, or its own copy). It should return quickly: blocking
    work belongs in a thread (``deferToThread``). It may return a Deferred
    (or be an ``async def``), which is not waited for: a failure in it, like
    an exception raised, is logged and never reaches the recording or the
    other observers.

    For each recording whose Start was accepted: ``recording_started``
    once its file exists, then ``recording_finished`` for each of its files
    as it is finished; the last file's sidecar has ``"next": null``. A
    recording that could not be kept ends with ``recording_failed`` instead
    of its last ``recording_finished`` (and has no ``recording_started`` if
    its first file could not be created). A refused Start is none of these.
    (A full file of a long recording that cannot be finished while the call
    goes on in the next one is logged, not reported: rare, as it takes a
    disk error that spares the next file.)

    The phone's values (the id, numbers and names in ``info`` and in the
    sidecar) are what it sent, unchecked: quote them (``{id!r}``) before
    they reach a log line, a path or a spreadsheet.
    """

    def recording_started(info: RecordingInfo) -> Any:
        """A Start was accepted and its file created (``NAME.wav.part``,
        with a sidecar of status ``recording`` on its way to disk).

        ``info`` (`recsvc.summary.RecordingInfo`): ``recording_id``,
        ``device``, ``codec`` (``codec.name``: PCMA, PCMU or G722),
        ``direction``, ``parties`` (``local_number``, ``local_name``,
        ``remote_number``, ``remote_name``) and ``peer`` (the phone's IP).
        """

    def recording_finished(sidecar: dict[str, Any], wav_path: str | None) -> Any:
        """A file of a recording is finished: the WAV and its JSON sidecar
        are on disk under their final names. Called for each file: a
        recording longer than ``storage.max_duration`` has several (the
        sidecars' ``part``, ``previous`` and ``next`` link them). The
        index may not have the file yet.

        ``sidecar``: the sidecar's JSON as a dict, the observer's own copy;
        ``wav_path``: the full (absolute) path of the WAV file, or None for
        a recording that received no audio, whose WAV is not kept (its
        sidecar says ``"file": null`` and why it ended, e.g. ``no RTP
        received``; only the sidecar is on disk).
        """

    def recording_failed(info: RecordingInfo, reason: str) -> Any:
        """A recording ended without its last file finished: the file could
        not be created after the Start was accepted (the phone was sent a
        Stop), or it could not be closed and its sidecar written. What could
        be kept is on disk (start-up recovery finishes a partial file).

        ``info``: as for ``recording_started``, with the Stop's updates to
        the parties; ``reason``: what went wrong, in words.
        """


def checked_observers(observers: Iterable[Any]) -> tuple[IRecordingObserver, ...]:
    """The observers handed to makeService, each checked against
    `IRecordingObserver` (declared with ``@implementer``, every method
    present with the right arguments). Raises TypeError naming the one
    that is not, before anything is built."""
    checked = []
    for position, observer in enumerate(observers):
        try:
            verifyObject(IRecordingObserver, observer)
        except Invalid as error:
            raise TypeError(
                f"observers[{position}] ({observer!r}) is not an IRecordingObserver "
                f"(declare @implementer(recsvc.IRecordingObserver) on its class and give "
                f"it every method): {error}") from None
        checked.append(observer)
    return tuple(checked)


@attrs.frozen
class RecordingObservers:
    """The recorder's observers, each told in turn; what one raises (or
    its Deferred fails with) is logged and goes no further."""

    log = Logger()

    observers: tuple[IRecordingObserver, ...] = ()

    def started(self, info: RecordingInfo) -> None:
        for observer in self.observers:
            self._tell(observer, "recording_started", info.recording_id, info)

    def finished(self, summary: RecordingSummary, wav_path: str) -> None:
        if not self.observers:
            return
        full_path = None if summary.file is None else os.path.abspath(wav_path)
        for observer in self.observers:
            self._tell(observer, "recording_finished", summary.info.recording_id,
                       summary.to_json(), full_path)

    def failed(self, info: RecordingInfo, reason: str) -> None:
        for observer in self.observers:
            self._tell(observer, "recording_failed", info.recording_id, info, reason)

    def _tell(self, observer: IRecordingObserver, method: str, recording_id: str,
              *args: Any) -> None:
        def failed(failure: Failure) -> None:
            self.log.failure(
                "Recording {recordingId}: observer {observer} failed in {method}", failure,
                recordingId=recording_id, observer=repr(observer), method=method)

        maybeDeferred(getattr(observer, method), *args).addErrback(failed)
