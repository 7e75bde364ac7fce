"""Retention: the oldest finished recordings go when the archive's policy says so.

A sweep (blocking: run it in a thread) lists the finished recordings under
the storage root, oldest first. Every recording older than max_age_days
goes (its WAV and sidecar; with the archive on, its objects too). The size
and free-space rules (max_total_gb, min_free_gb) are about this disk: they
count only the recordings whose WAV is here, and free space by deleting
WAVs, never a sidecar alone (it frees nothing) and never what is only in
the archive. With the archive on they first delete the local WAVs already
verified in the archive, oldest first (nothing is lost: the sidecar stays,
the audio plays from the archive), and only then, if still needed, whole
recordings not yet archived, as without an archive. A recording in
progress (a ``.part`` file, a sidecar still "recording", or one this run
is writing) is never touched. A recording that received no audio is its
sidecar alone (naming no file), and goes by age the same way.
"""

from __future__ import annotations

import os
from typing import Callable

import attrs
from recsvc.logs import Logger

from recsvc.storage.folder import read_json, walk_files
from recsvc.storage.wav import PARTIAL_SUFFIX

log = Logger()


@attrs.frozen
class RetentionPolicy:
    max_age_days: float = 0.0  # 0: no age limit
    max_total_bytes: int = 0  # 0: no size limit
    min_free_bytes: int = 0  # 0: no free-space floor

    @property
    def active(self) -> bool:
        return bool(self.max_age_days or self.max_total_bytes or self.min_free_bytes)


# Why a sweep removed what it did (StoredRecording.why).
TOO_OLD = "max_age_days"  # the whole recording, and its objects in the archive
TOO_MUCH = "disk space"  # the whole recording, never archived (max_total_gb, min_free_gb)
LOCAL_COPY = "local copy"  # only its WAV, verified in the archive (max_total_gb, min_free_gb)


@attrs.frozen
class StoredRecording:
    wav: str
    sidecar: str | None
    size: int  # bytes of the WAV (if on this disk) and its sidecar
    modified: float  # when it was finished (the WAV's mtime)
    # Bytes of its WAV on this disk: 0 for a recording without audio, or
    # whose audio is only in the archive.
    audio_bytes: int = 0
    # What a sweep did to it (TOO_OLD, TOO_MUCH, LOCAL_COPY); "" if nothing.
    why: str = ""

    @property
    def whole(self) -> bool:
        """Whether the recording went, not only its local copy."""
        return self.why != LOCAL_COPY


def finished_recordings(root: str, is_active: Callable[[str], bool],
                        audio_archived: bool = False) -> list[StoredRecording]:
    """The finished recordings under ``root``, oldest first. A symbolic link
    below root is not followed (what it points at is not the archive's to
    count or delete): it is left, with a warning. ``audio_archived``: a
    finished sidecar whose WAV is gone is a recording whose audio is in the
    archive (archive.url: the WAV deleted once verified), not a WAV that
    went missing."""
    found = []
    for folder, files in walk_files(root, _left_link):
        for name, entry in files.items():
            if name.endswith(".json") and name[: -len(".json")] + ".wav" not in files:
                silent = _without_audio(entry, audio_archived)
                if silent is not None:
                    found.append(silent)
                continue
            if not name.endswith(".wav"):
                continue
            wav = entry.path
            sidecar_entry = files.get(name[: -len(".wav")] + ".json")
            sidecar = None if sidecar_entry is None else sidecar_entry.path
            if name + PARTIAL_SUFFIX in files or is_active(wav) or _still_recording(sidecar):
                continue
            try:
                stats = entry.stat(follow_symlinks=False)
                size = stats.st_size + (
                    sidecar_entry.stat(follow_symlinks=False).st_size if sidecar_entry else 0)
            except OSError:
                continue  # removed meanwhile
            found.append(StoredRecording(wav, sidecar, size, stats.st_mtime,
                                         audio_bytes=stats.st_size))
    found.sort(key=lambda recording: (recording.modified, recording.wav))
    return found


def _left_link(path: str) -> None:
    log.warn("Retention: {file} is a symbolic link, not followed (left for a person)",
             file=path, reason="symbolic link")


def _without_audio(sidecar: os.DirEntry[str], audio_archived: bool) -> StoredRecording | None:
    """The recording of a finished sidecar that names no file (it received
    no audio, and no WAV was kept), or whose audio is in the archive, if
    that is what it is."""
    data = read_json(sidecar.path)
    if not (isinstance(data, dict) and data.get("status") == "finished"
            and "file" in data and (data["file"] is None or audio_archived)):
        return None  # (a WAV that went missing is left for a person)
    try:
        stats = sidecar.stat(follow_symlinks=False)
    except OSError:
        return None
    return StoredRecording(sidecar.path[: -len(".json")] + ".wav", sidecar.path,
                           stats.st_size, stats.st_mtime)


def _still_recording(sidecar: str | None) -> bool:
    if sidecar is None:
        return False
    data = read_json(sidecar)
    return isinstance(data, dict) and data.get("status") == "recording"


def sweep(
    root: str,
    policy: RetentionPolicy,
    now: float,
    free_bytes: Callable[[str], int],
    is_active: Callable[[str], bool] = lambda path: False,
    audio_archived: bool = False,
    in_archive: Callable[[str], bool] | None = None,
    held: frozenset[str] = frozenset(),
) -> list[StoredRecording]:
    """Apply the policy; returns what was removed, oldest first, each with
    why (``audio_archived``: see finished_recordings). ``in_archive`` says
    whether a WAV (its path) is verified in the archive as it is: the size
    and free-space rules delete those WAVs alone, first. The recordings
    whose WAV paths (relative to root) are ``held`` (legal holds) are left
    whole, whatever the rules say. Blocking."""
    if not policy.active or not os.path.isdir(root):
        return []
    recordings = [recording for recording in finished_recordings(root, is_active, audio_archived)
                  if os.path.relpath(recording.wav, root) not in held]
    oldest_allowed = now - policy.max_age_days * 86400
    removed = []
    here = []  # (recordings with their WAV on this disk, not too old)
    for recording in recordings:
        if policy.max_age_days and recording.modified < oldest_allowed:
            _remove(recording, root)
            removed.append(attrs.evolve(recording, why=TOO_OLD))
        elif recording.audio_bytes:
            here.append(recording)
    total = sum(recording.size for recording in here)
    free = free_bytes(root) if policy.min_free_bytes else 0

    def short() -> bool:
        return bool(policy.max_total_bytes and total > policy.max_total_bytes
                    or policy.min_free_bytes and free < policy.min_free_bytes)

    if in_archive is not None and short():
        archived = set()
        for recording in here:
            if not short():
                break
            if in_archive(recording.wav) and _unlink(recording.wav):
                total -= recording.audio_bytes
                free += recording.audio_bytes
                archived.add(recording.wav)
                removed.append(attrs.evolve(recording, why=LOCAL_COPY))
        here = [recording for recording in here if recording.wav not in archived]
    for recording in here:
        if not short():
            break  # the rest are newer: every rule holds
        _remove(recording, root)
        total -= recording.size
        free += recording.size
        removed.append(attrs.evolve(recording, why=TOO_MUCH))
    removed.sort(key=lambda recording: (recording.modified, recording.wav))
    return removed


def _remove(recording: StoredRecording, root: str) -> None:
    """Delete a recording's WAV and sidecar (a recording without audio, or
    whose audio is only in the archive, has no WAV here)."""
    for path in (recording.wav, recording.sidecar):
        if path is not None:
            _unlink(path)
    _remove_empty_folders(os.path.dirname(recording.wav), root)


def _unlink(path: str) -> bool:
    """Whether the file was there to delete."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _remove_empty_folders(folder: str, root: str) -> None:
    root = os.path.abspath(root)
    folder = os.path.abspath(folder)
    while folder != root and folder.startswith(root + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return  # not empty (or in use): stop here
        folder = os.path.dirname(folder)
