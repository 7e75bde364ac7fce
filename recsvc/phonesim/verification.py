"""Whether each recording of a `recsvc-phone` run holds what its phone sent.

A recording is found by its id *and* its start time within the run (never
another run's file that has the same id), through the server's HTTP API or
in its storage folder, and compared byte for byte with what a perfect
recorder makes of the packets that were sent; its sidecar must name the
phone, the direction and the number the Start gave, and list the keys
pressed.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence
from urllib.parse import quote

import attrs
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed, readBody
from twisted.web.http_headers import Headers

from recsvc.media import g711
from recsvc.media.codec import CODECS, WAVE_FORMAT_PCM
from recsvc.cli.listing import printable
from recsvc.storage.wav import NotAWav, audio_in

if TYPE_CHECKING:
    from recsvc.phonesim.simulator import CallResult

# How far a recording's start may lie outside the run, for the two clocks'
# rounding (the sidecar's is to the millisecond).
SLACK_S = 2.0
# A key's offset in the sidecar may differ from where it was pressed by
# rounding (the sidecar's is to the millisecond).
KEY_OFFSET_TOLERANCE_S = 0.002
_ENCODERS = {"PCMA": g711.encode_alaw, "PCMU": g711.encode_ulaw}


class VerificationUnavailable(Exception):
    """The recordings cannot be looked at at all (no API there, credentials
    refused, no such folder): why, and what to give instead."""


@attrs.frozen
class RunWindow:
    """When the run's recordings started: from before its first Start was
    sent to after its last call ended (Unix time)."""

    began: float
    ended: float

    def holds(self, moment: float) -> bool:
        return self.began - SLACK_S <= moment <= self.ended + SLACK_S

    def __str__(self) -> str:
        return f"{_iso(self.began - SLACK_S)} .. {_iso(self.ended + SLACK_S)}"


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + "Z"


@attrs.frozen(eq=False)
class FoundFile:
    """A finished file of a recording: its sidecar, and where its WAV is
    (a path, or the API's path of the stored file; None for a recording
    that received no audio, whose WAV the server did not keep)."""

    sidecar: dict[str, Any]
    location: str | None


def started_at(sidecar: dict[str, Any]) -> float | None:
    """A sidecar's ``started_at`` as Unix time; None if it is not a time."""
    try:
        return datetime.fromisoformat(str(sidecar.get("started_at"))).timestamp()
    except ValueError:
        return None


def files_of_run(found: Sequence[FoundFile], recording_id: str,
                 window: RunWindow) -> list[FoundFile] | str:
    """The files of ``recording_id`` that started within the run, in order
    of their parts; or why there are none."""
    mine = [f for f in found if f.sidecar.get("id") == recording_id
            and f.sidecar.get("status") == "finished"]
    if not mine:
        return "no finished recording"
    in_run = [f for f in mine if (moment := started_at(f.sidecar)) is not None
              and window.holds(moment)]
    if not in_run:
        times = ", ".join(sorted(_printable(str(f.sidecar.get("started_at"))) for f in mine))
        return (f"no recording of this run: the one(s) with this id started at {times}, "
                f"not within {window} (another run's, or the server's clock is not this "
                "machine's)")
    return sorted(in_run, key=lambda f: f.sidecar.get("part") or 1)


def compare(result: CallResult, codec: str, files: Sequence[FoundFile],
            blobs: Sequence[bytes]) -> str | None:
    """None if the recording of ``result`` (its ``files``, whose WAV files'
    bytes are ``blobs``) is what the phone said and sent; else what is wrong."""
    setup, first = result.setup, files[0].sidecar
    said = {"device": setup.device, "direction": setup.direction,
            "remote_number": setup.remote_number}
    for key, value in said.items():
        if first.get(key) != value:
            return f"the sidecar's {key} is {first.get(key)!r}, the phone said {value!r}"
    if result.expected is None:
        return "nothing was sent"
    audio, keys, ticks = [], [], 0
    for found, blob in zip(files, blobs):
        stored = _as_sent(found, blob, codec)
        if isinstance(stored, str):
            return stored
        for pressed in found.sidecar.get("dtmf") or ():
            keys.append((pressed.get("digit"), ticks / 8000 + float(pressed.get("offset_s", 0))))
        ticks += len(stored)
        audio.append(stored)
    recorded, expected = b"".join(audio), bytes(result.expected)
    shift = _shift(recorded, expected, CODECS[codec].stored_silence, result.restart_at)
    if shift is None:
        return _difference(recorded, expected)
    pressed = [key for key, _ in result.expected_keys]
    if [key for key, _ in keys] != pressed:
        return f"keys {''.join(str(k) for k, _ in keys)!r} listed, {''.join(pressed)!r} pressed"
    for (key, listed), (_, at) in zip(keys, result.expected_keys):
        if result.restart_at is not None and at >= result.restart_at:
            at += shift
        if abs(listed - at / 8000) > KEY_OFFSET_TOLERANCE_S:
            return f"key {key} listed at {listed:.3f} s, pressed at {at / 8000:.3f} s"
    return None


def _as_sent(found: FoundFile, blob: bytes, codec: str) -> bytes | str:
    """A file's audio as G.711 bytes, as they were sent (16-bit PCM encoded
    again: G.711 decoded and encoded again is what it was, and the server's
    silence, zero, is the codec's silence); or why it cannot be."""
    name = _printable(str(found.sidecar.get("file")))
    try:
        fmt, data = audio_in(blob)
    except NotAWav as error:
        return f"{name}: not a WAV file ({error})"
    if fmt.format_tag == CODECS[codec].stored_format_tag:
        return data
    if fmt.format_tag == WAVE_FORMAT_PCM and fmt.bits_per_sample == 16 and codec in _ENCODERS:
        return _ENCODERS[codec](data)
    return (f"{name}: stored as WAV format {fmt.format_tag} of {fmt.bits_per_sample} bits, "
            f"not as {codec} or 16-bit PCM")


def _shift(recorded: bytes, expected: bytes, silence: bytes, restart_at: int | None) -> int | None:
    """0 if ``recorded`` is ``expected``; where the stream restarted (at
    ``restart_at``), how much later (or, negative, earlier) the server put
    what follows, the difference being silence; None if neither."""
    if recorded == expected:
        return 0
    if restart_at is None:
        return None
    shift = len(recorded) - len(expected)
    cut = restart_at + min(shift, 0)
    gap = recorded[restart_at:restart_at + shift] if shift > 0 else expected[cut:restart_at]
    if shift and recorded[:cut] == expected[:cut] and gap == silence * abs(shift) \
            and recorded[restart_at + shift:] == expected[restart_at:]:
        return shift
    return None


def _printable(text: str, limit: int = 200) -> str:
    """What a server wrote, fit for a terminal: no control characters
    (escape sequences), not too long."""
    return printable(text[:limit])


def _difference(recorded: bytes, expected: bytes) -> str:
    """Where two different recordings first differ, for people."""
    same, step, common = 0, 4096, min(len(recorded), len(expected))
    while same < common and recorded[same:same + step] == expected[same:same + step]:
        same += step
    while same < common and recorded[same] == expected[same]:
        same += 1
    return (f"{len(recorded)} bytes recorded, {len(expected)} expected; the first difference "
            f"at byte {same} ({same / 8000:.3f} s)")


class Recordings(Protocol):
    """Where the run's recordings are looked up."""

    def files(self, recording_ids: Sequence[str]) -> Deferred[dict[str, list[FoundFile]]]:
        """The finished files there now of those ids (ids with none may be
        left out). Fails with VerificationUnavailable."""

    def read(self, found: FoundFile) -> Deferred[bytes]:
        """The whole WAV file of ``found``. Fails with VerificationUnavailable."""


@attrs.frozen
class StorageFolder:
    """The recordings in the server's storage folder (``storage.root``),
    as this machine sees it. Sidecars last written before ``since`` are not
    even read: an archive of many earlier runs costs a directory walk."""

    root: str
    since: float

    def files(self, recording_ids: Sequence[str]) -> Deferred[dict[str, list[FoundFile]]]:
        return deferToThread(self._files, frozenset(recording_ids))

    def _files(self, wanted: frozenset[str]) -> dict[str, list[FoundFile]]:
        if not os.path.isdir(self.root):
            raise VerificationUnavailable(f"--storage-root {self.root}: no such folder")
        found: dict[str, list[FoundFile]] = {}
        for stored in finished_sidecars(self.root, self.since - SLACK_S):
            if stored.sidecar.get("id") in wanted:
                found.setdefault(stored.sidecar["id"], []).append(stored)
        return found

    def read(self, found: FoundFile) -> Deferred[bytes]:
        def read() -> bytes:
            with open(found.location, "rb") as handle:
                return handle.read()

        def unreadable(failure: Any) -> bytes:
            failure.trap(OSError)
            raise VerificationUnavailable(f"{found.location}: {failure.value}")
        return deferToThread(read).addErrback(unreadable)


def finished_sidecars(root: str, since: float | None = None) -> list[FoundFile]:
    """The finished recordings' files under ``root`` (their WAV paths), from
    the sidecars last written at ``since`` (Unix time) or later. Blocking."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".json"):
                continue
            path = os.path.join(folder, name)
            try:
                if since is not None and os.stat(path).st_mtime < since:
                    continue
                with open(path, encoding="utf-8") as handle:
                    sidecar = json.load(handle)
            except (OSError, ValueError):  # gone (retention), or not a sidecar
                continue
            if not isinstance(sidecar, dict):
                continue
            wav = sidecar.get("file")
            if sidecar.get("status") != "finished":
                continue
            if wav is None:
                found.append(FoundFile(sidecar, None))  # (no audio, no WAV kept)
            # The file beside its sidecar, never elsewhere.
            elif isinstance(wav, str) and wav == os.path.basename(wav) \
                    and wav not in ("", ".", ".."):
                found.append(FoundFile(sidecar, os.path.join(folder, wav)))
    return found


class ApiRecordings:
    """The recordings through the server's HTTP API: ``GET
    /api/recordings/{id}`` for the files, ``.../audio?format=original`` for
    each stored file as it is. A few requests at a time, on kept-alive
    connections."""

    def __init__(self, reactor: Any, url: str, authorization: str | None = None,
                 at_once: int = 8, timeout: float = 30.0) -> None:
        self._reactor = reactor
        self.url = url.rstrip("/")
        self._authorization = authorization
        self._timeout = timeout
        self._pool = HTTPConnectionPool(reactor)
        self._pool.maxPersistentPerHost = at_once
        self._agent = Agent(reactor, pool=self._pool, connectTimeout=timeout)
        self._at_once = DeferredSemaphore(at_once)
        self._checked = False

    def files(self, recording_ids: Sequence[str]) -> Deferred[dict[str, list[FoundFile]]]:
        return Deferred.fromCoroutine(self._files(recording_ids))

    async def _files(self, recording_ids: Sequence[str]) -> dict[str, list[FoundFile]]:
        if not self._checked:
            await self._check()
            self._checked = True
        listed = await gatherResults(
            [self._at_once.run(lambda i=i: Deferred.fromCoroutine(self._files_of(i)))
             for i in recording_ids], consumeErrors=True,
        ).addErrback(lambda failure: failure.value.subFailure.raiseException())
        return {i: files for i, files in zip(recording_ids, listed) if files}

    async def _check(self) -> None:
        """Whether recsvc answers at the URL (``/healthz`` needs no
        credentials): anything else is not asked for 500 recordings."""
        code, body = await self._get("/healthz")
        try:
            answer = json.loads(body)
            recsvc = isinstance(answer, dict) and "status" in answer
        except ValueError:
            recsvc = False
        if not recsvc:
            raise VerificationUnavailable(
                f"{self.url} does not answer as recsvc's HTTP API (/healthz: HTTP {code}); "
                "give --storage-root or --api-url")

    async def _files_of(self, recording_id: str) -> list[FoundFile]:
        path = f"/api/recordings/{quote(recording_id, safe='')}"
        code, body = await self._get(path)
        if code == 404:
            return []  # not (yet) in the index
        self._refuse(path, code, body)
        try:
            rows = json.loads(body)["files"]
        except (ValueError, KeyError, TypeError) as error:
            raise VerificationUnavailable(
                f"{self.url}{path}: not recsvc's answer ({error})") from None
        return [FoundFile(row, None if row.get("file") is None else
                          f"{path}/audio?format=original&file="
                          f"{quote(str(row.get('file')), safe='')}")
                for row in rows if isinstance(row, dict)]

    def read(self, found: FoundFile) -> Deferred[bytes]:
        async def read() -> bytes:
            code, body = await self._get(found.location)
            self._refuse(found.location, code, body)
            return body
        return self._at_once.run(lambda: Deferred.fromCoroutine(read()))

    def _refuse(self, path: str, code: int, body: bytes) -> None:
        """Raise VerificationUnavailable for an answer other than 200."""
        if code == 200:
            return
        if code == 401:
            raise VerificationUnavailable(
                f"{self.url} wants credentials (http.auth): give --token, or --user (the "
                "password is asked)")
        try:
            said = f": {_printable(str(json.loads(body)['error']))}"
        except (ValueError, KeyError, TypeError):
            said = ""
        raise VerificationUnavailable(f"{self.url}{path}: HTTP {code}{said}")

    async def _get(self, path: str) -> tuple[int, bytes]:
        headers = Headers()
        if self._authorization is not None:
            headers.addRawHeader(b"authorization", self._authorization.encode("latin-1"))
        def timed_out(result: Any, timeout: float) -> Failure:
            return Failure(DeferredTimeout())  # not the cancelled request's error

        try:
            asked = self._agent.request(b"GET", (self.url + path).encode("ascii"), headers)
            asked.addTimeout(self._timeout, self._reactor, timed_out)
            response = await asked
            reading = readBody(response)
            reading.addTimeout(self._timeout, self._reactor, timed_out)
            return response.code, await reading
        except (ConnectError, DNSLookupError) as error:
            raise VerificationUnavailable(
                f"no recsvc API answers at {self.url} ({error.__class__.__name__}); give "
                "--storage-root or --api-url") from None
        except DeferredTimeout:
            raise VerificationUnavailable(
                f"{self.url}{path}: no answer within {self._timeout:g} s") from None
        except ResponseFailed as error:
            raise VerificationUnavailable(
                f"{self.url}{path}: no whole answer ({error.__class__.__name__})") from None

    def close(self) -> Deferred[None]:
        return self._pool.closeCachedConnections()


async def verify_run(
    reactor: Any, recordings: Recordings, results: Sequence[CallResult], codec: str,
    window: RunWindow, patience: float = 10.0, poll: float = 0.5, at_once: int = 8,
    now: Callable[[], float] = time.monotonic,
) -> dict[str, str | None]:
    """Recording id -> None (what was sent) or what is wrong, for each call
    of ``results`` that started. A recording not (yet) there is looked for
    again every ``poll`` seconds while others keep turning up, up to
    ``patience`` seconds after the last one did (the server finishes and
    indexes them just after their Stops). Fails with VerificationUnavailable."""
    started = {r.recording_id: r for r in results if r.started}
    chosen: dict[str, list[FoundFile]] = {}
    why_not: dict[str, str] = {}
    missing = list(started)
    last_found = now()
    while missing:
        found = await recordings.files(missing)
        for recording_id in missing:
            files = files_of_run(found.get(recording_id, []), recording_id, window)
            if isinstance(files, str):
                why_not[recording_id] = files
            else:
                chosen[recording_id] = files
                why_not.pop(recording_id, None)
        if len(missing) != len(why_not):
            last_found = now()
        missing = sorted(why_not)
        if missing and now() - last_found < patience:
            await deferLater(reactor, poll, lambda: None)
        else:
            break

    limit = DeferredSemaphore(at_once)

    async def check(recording_id: str) -> str | None:
        files = chosen[recording_id]
        blobs = []
        for found in files:
            if found.location is None:
                reason = _printable(str(found.sidecar.get("stop_reason")))
                return f"no audio kept: the recording ended ({reason}) having received none"
            blobs.append(await recordings.read(found))
        return compare(started[recording_id], codec, files, blobs)

    checked = await gatherResults(
        [limit.run(lambda i=i: Deferred.fromCoroutine(check(i))) for i in sorted(chosen)],
        consumeErrors=True,
    ).addErrback(lambda failure: failure.value.subFailure.raiseException())
    return {**why_not, **dict(zip(sorted(chosen), checked))}
