"""After a crash: finish the recordings a previous run left behind.

A recording in progress is ``NAME.wav.part`` with a sidecar ``NAME.json``
whose status is ``recording``. At start-up each such file is repaired (its
sizes taken from its length, a trailing partial sample dropped), renamed to
``NAME.wav``, and its sidecar finished with stop_reason "server crash",
keeping what the phone told us at Start. Blocking: run it in a thread.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import time
from functools import partial
from typing import Any, Callable

import attrs

from recsvc.logs import Logger
from recsvc.storage.folder import no_follow, sidecar_path, walk_files
from recsvc.summary import iso_utc
from recsvc.storage.wav import (
    PARTIAL_SUFFIX,
    NotAWav,
    WavFormat,
    declared_data_size,
    fsync_directory,
    header_patches,
    parse_header,
    wav_header,
)

CRASH_REASON = "server crash"

log = Logger()


class DamagedFile(ValueError):
    """A partial file with no WAV header to repair."""


@attrs.frozen
class Recovered:
    """One recording finished after a crash."""

    path: str  # the WAV file
    data_bytes: int
    duration_s: float


def recover_all(
    root: str,
    write_sidecar: Callable[[str, dict[str, Any]], Any],
    is_active: Callable[[str], bool] = lambda path: False,
) -> list[Recovered]:
    """Finish every recording under ``root`` that a crash interrupted.

    ``write_sidecar(wav_path, data)`` writes a sidecar durably (the storage's
    own); ``is_active(wav_path)`` tells the recordings of this run, which
    are left alone (their partial files are also locked). Files that cannot be repaired are renamed
    ``NAME.wav.damaged`` and left for a person; nothing is deleted. A
    symbolic link below ``root`` is never followed (it could point at any
    file): it is left as it is, with a warning.
    """
    recovered = []
    for folder, files in walk_files(root, _left_link):
        for name in sorted(files):
            path = os.path.join(folder, name)
            if name.endswith(".wav" + PARTIAL_SUFFIX):
                wav = path[: -len(PARTIAL_SUFFIX)]
                if is_active(wav):
                    continue
                result = _safely(partial(_recover_partial, wav, write_sidecar), path)
            elif name.endswith(".json") and _is_unfinished(path):
                wav = path[: -len(".json")] + ".wav"
                if is_active(wav) or name[: -len(".json")] + ".wav" not in files:
                    continue  # its .part is handled under its own name (or a link's)
                # Crashed between finishing the WAV and its sidecar.
                try:
                    result = _safely(partial(_finish_final, wav, write_sidecar), path)
                except DamagedFile:
                    continue  # not a WAV this server wrote: left for a person
            else:
                continue
            if result is not None:
                recovered.append(result)
    return recovered


def _left_link(path: str) -> None:
    log.warn("Not recovering {file}: a symbolic link, not followed (left for a person)",
             file=path, reason="symbolic link")


def _finish_final(wav: str, write_sidecar: Callable[[str, dict[str, Any]], Any]) -> Recovered:
    return _finish_sidecar(wav, _wav_data_size(wav), write_sidecar)


def _safely(recover: Callable[[], Recovered | None], path: str) -> Recovered | None:
    """One file's trouble does not stop the others' recovery."""
    try:
        return recover()
    except OSError as error:
        log.error("Cannot recover {file}: {reason}", file=path, reason=error.strerror or str(error))
        return None


def _recover_partial(wav: str, write_sidecar: Callable[[str, dict[str, Any]], Any]) -> Recovered | None:
    partial = wav + PARTIAL_SUFFIX
    try:
        lock = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None  # finished meanwhile
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a writer holds it: a recording in progress, not a crash
        return _repair_and_finish(wav, partial, write_sidecar, os.fstat(lock).st_mtime)
    finally:
        os.close(lock)


def _repair_and_finish(
    wav: str, partial: str, write_sidecar: Callable[[str, dict[str, Any]], Any],
    stopped_at: float,
) -> Recovered | None:
    """``stopped_at``: when the recording last wrote, before the repair
    touches the file."""
    try:
        size = repair_wav(partial)
    except DamagedFile:
        os.rename(partial, wav + ".damaged")
        return None
    if os.path.lexists(wav):
        # Names are never reused while a partial file has them, so this is a
        # file put there by hand: never overwrite it, leave this one aside.
        os.rename(partial, wav + ".damaged")
        return None
    os.rename(partial, wav)
    fsync_directory(os.path.dirname(wav) or ".")
    return _finish_sidecar(wav, size, write_sidecar, stopped_at)


def repair_wav(path: str) -> int:
    """Bring a WAV file's sizes in line with its length; returns the data
    size. A trailing partial sample is cut off. Raises `DamagedFile`."""
    with open(path, "r+b", opener=no_follow) as handle:
        head = handle.read(4096)
        fmt, data_offset = _parse_header(head)
        length = os.fstat(handle.fileno()).st_size
        size = max(0, length - data_offset)
        size -= size % fmt.block_align
        if size & 1:
            handle.seek(data_offset + size)
            handle.write(b"\0")
        handle.truncate(data_offset + size + (size & 1))
        for offset, value in header_patches(fmt, size):
            handle.seek(offset)
            handle.write(value)
        handle.flush()
        os.fsync(handle.fileno())
    return size


def _parse_header(head: bytes) -> tuple[WavFormat, int]:
    """The format and where the data chunk's bytes begin, of a header this
    server wrote (the only kind whose sizes it knows how to patch)."""
    try:
        fmt, data_offset = parse_header(head)
    except NotAWav as error:
        raise DamagedFile(str(error)) from None
    if not _written_by_us(head, fmt):
        # header_patches() writes where wav_header() puts the sizes.
        raise DamagedFile("not a header this server writes")
    return fmt, data_offset


def _written_by_us(head: bytes, fmt: WavFormat) -> bool:
    """Whether ``head`` is the header `wav_header` builds, but for its sizes."""
    try:
        layout = wav_header(fmt)
    except struct.error:  # a byte rate too large for the field
        return False
    ours = bytearray(head[:len(layout.header)])
    for offset, value in header_patches(fmt, 0):
        ours[offset:offset + 4] = value
    return bytes(ours) == layout.header


def _wav_data_size(path: str) -> int:
    """The data size a finished file's header gives, as far as the file
    holds it (its pad byte is not audio)."""
    with open(path, "rb", opener=no_follow) as handle:
        head = handle.read(4096)
        fmt, data_offset = _parse_header(head)
        length = os.fstat(handle.fileno()).st_size
    return declared_data_size(head, fmt, data_offset, length)


def _is_unfinished(sidecar: str) -> bool:
    try:
        with open(sidecar, encoding="utf-8", opener=no_follow) as handle:
            return json.load(handle).get("status") == "recording"
    except (OSError, ValueError, AttributeError):
        return False


def _finish_sidecar(
    wav: str, size: int, write_sidecar: Callable[[str, dict[str, Any]], Any],
    stopped_at: float | None = None,
) -> Recovered:
    """The sidecar written at Start (if any), finished as a crashed recording."""
    data: dict[str, Any] = {}
    try:
        with open(sidecar_path(wav), encoding="utf-8", opener=no_follow) as handle:
            loaded = json.load(handle)
        if isinstance(loaded, dict):
            data = loaded
    except (OSError, ValueError):
        pass  # crashed before the Start's sidecar was written: what we know
    with open(wav, "rb", opener=no_follow) as handle:
        fmt, _ = _parse_header(handle.read(4096))
        finished_at = os.fstat(handle.fileno()).st_mtime
    duration = round(size // fmt.block_align / fmt.sample_rate, 3)
    data.update({
        "status": "finished",
        "stopped_at": iso_utc(finished_at if stopped_at is None else stopped_at),
        "duration_s": duration,
        "stop_reason": CRASH_REASON,
        "stopped_by": "server",
        "interrupted": True,
        "bytes": size,
        "sample_rate": fmt.sample_rate,
        "file": os.path.basename(wav),
        "recovered_at": iso_utc(time.time()),
    })
    write_sidecar(wav, data)
    return Recovered(wav, size, duration)
