"""What is verified in the archive, on disk: a journal per folder of
recordings, ``ROOT/.archive/<folder>/verified.jsonl``, a JSON line for each
file the store confirmed (name, size, SHA-256, key), appended and fsynced
before anything local is deleted. The sidecars are never touched (the index
reads them again when they change). At start-up every finished recording
with a file not in its journal waits for the upload again. Blocking: run
these in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from typing import Iterator

import attrs

from recsvc.archive.backlog import WaitingRecording
from recsvc.archive.store import LocalFile
from recsvc.logs import Logger
from recsvc.storage.folder import no_follow, read_json, walk_files
from recsvc.storage.wav import fsync_directory

# Dot-named: no sidecar or WAV is ever named so, and the index, recovery
# and retention look only at .json, .wav and .part files below it.
JOURNAL_FOLDER = ".archive"
JOURNAL_NAME = "verified.jsonl"
# Room kept for the journal on a disk that fills up: ROOT/.archive/reserve,
# this many bytes, given back when a journal line finds the disk full. A
# full disk must not keep the archive from journaling what it verified:
# nothing local is deleted before it is journaled, so without the room the
# space would never come back.
RESERVE_NAME = "reserve"
RESERVE_BYTES = 128 * 1024



@attrs.define(eq=False)
class Journals:
    """A storage root's journals, as the archive's threads share them:
    every write (an append, a rewrite, a folder made or removed) holds
    ``lock``, so that a rewrite (`forget`) never loses a line another
    thread appends meanwhile (`record_verified`, `mark_for_deletion`)."""

    log = Logger()

    root: str
    lock: threading.Lock = attrs.field(factory=threading.Lock)


_journals: dict[str, Journals] = {}
_journals_lock = threading.Lock()


def journals_of(root: str) -> Journals:
    """The one Journals of a storage root (by its real path)."""
    real = os.path.realpath(root)
    with _journals_lock:
        if real not in _journals:
            _journals[real] = Journals(real)
        return _journals[real]


@attrs.frozen
class VerifiedFile:
    """A file the store holds, as its journal line says."""

    name: str
    size: int
    sha256: str
    key: str


def journal_path(root: str, relative_folder: str) -> str:
    return os.path.normpath(os.path.join(root, JOURNAL_FOLDER, relative_folder, JOURNAL_NAME))


def record_verified(root: str, relative_path: str, local: LocalFile, key: str) -> None:
    """Journal that the store holds the file at ``relative_path`` (under
    root) as ``local`` says, under ``key``: durable when this returns. On
    a full disk the reserve is given back for it (see `keep_reserve`)."""
    try:
        _record_verified(root, relative_path, local, key)
    except OSError as error:
        if error.errno != errno.ENOSPC or not release_reserve(root):
            raise
        _record_verified(root, relative_path, local, key)


def _reserve_path(root: str) -> str:
    return os.path.join(root, JOURNAL_FOLDER, RESERVE_NAME)


def keep_reserve(root: str) -> bool:
    """Make the journal's reserve whole again if the disk has the room;
    whether it is whole."""
    path = _reserve_path(root)
    with contextlib.suppress(FileNotFoundError):
        if os.lstat(path).st_size == RESERVE_BYTES:
            return True
    try:
        _make_folders(os.path.dirname(path), root)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        try:
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.pwrite(fd, b"\0" * RESERVE_BYTES, 0)  # (no fallocate on this file system)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        # (Best effort: no room now, or a folder it cannot write; tried
        # again after the next deletion.)
        with contextlib.suppress(OSError):
            os.unlink(path)
        return False
    return True


def release_reserve(root: str) -> bool:
    """Give the reserve's room back to the disk; whether there was one."""
    try:
        os.unlink(_reserve_path(root))
    except FileNotFoundError:
        return False
    Journals.log.warn("Archive: the disk of {root} is full: the journal's reserve is used up (made "
                      "again once verified local copies are deleted)", root=root,
                      reason="disk full")
    return True


def _record_verified(root: str, relative_path: str, local: LocalFile, key: str) -> None:
    folder, name = os.path.split(relative_path)
    path = journal_path(root, folder)
    line = json.dumps({"file": name, "size": local.size, "sha256": local.sha256, "key": key},
                      ensure_ascii=True) + "\n"
    with journals_of(root).lock:
        made = _make_folders(os.path.dirname(path), root)
        created = not os.path.exists(path)
        if created:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o640))
        _append(path, line)
        if made or created:  # new names in folders: durable too
            fsync_directory(os.path.dirname(path))
            for each in made:
                fsync_directory(os.path.dirname(each))


def _make_folders(folder: str, root: str) -> list[str]:
    """Make ``folder`` and the missing ones above it (up to root); the made
    ones, deepest first."""
    made = []
    current = folder
    while not os.path.isdir(current) and current != root:
        made.append(current)
        current = os.path.dirname(current)
    for each in reversed(made):
        with contextlib.suppress(FileExistsError):
            os.mkdir(each, 0o750)
    return made


def verified_in(root: str, relative_folder: str) -> dict[str, VerifiedFile]:
    """The files of a folder the journal says the store holds, by name (a
    later line for a name wins; a line a crash cut short is passed over;
    a file marked for deletion is not among them)."""
    return _read_journal(root, relative_folder)[0]


def _read_journal(root: str, relative_folder: str, strict: bool = False,
                  ) -> tuple[dict[str, VerifiedFile], dict[str, str]]:
    """The verified files by name, and the keys of those marked for
    deletion by name. A journal that cannot be read counts as empty (said
    in the log), unless ``strict`` (OSError: it is to be rewritten)."""
    verified: dict[str, VerifiedFile] = {}
    deleting: dict[str, str] = {}
    try:
        with open(journal_path(root, relative_folder), "rb", opener=no_follow) as handle:
            lines = handle.read().split(b"\n")
    except FileNotFoundError:
        return verified, deleting
    except OSError as error:
        if strict:
            raise
        Journals.log.warn("Archive: cannot read the journal of {folder}: {reason}",
                          folder=relative_folder, reason=error.strerror)
        return verified, deleting
    for line in lines:
        try:
            entry = json.loads(line)
            name = entry["file"]
            if entry.get("delete"):
                verified.pop(name, None)
                deleting[name] = str(entry["key"])
                continue
            verified[name] = VerifiedFile(name, int(entry["size"]), str(entry["sha256"]),
                                          str(entry["key"]))
            deleting.pop(name, None)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # (an empty line, or one cut short by a crash)
    return verified, deleting


def mark_for_deletion(root: str, relative_paths: list[str]) -> list[tuple[str, str]]:
    """Journal that the objects of these removed files (retention) are to
    be deleted from the store, durably, so that a store down now or a
    crash does not leave them there for good; those marked, with their
    keys (a file never verified has no object to delete)."""
    marked = []
    with journals_of(root).lock:  # (read and appended to as one)
        for folder, names in _by_folder(relative_paths).items():
            verified = verified_in(root, folder)
            lines = []
            for name in sorted(names & set(verified)):
                lines.append(json.dumps({"file": name, "delete": True,
                                         "key": verified[name].key}, ensure_ascii=True) + "\n")
                marked.append((os.path.join(folder, name), verified[name].key))
            if lines:
                _append(journal_path(root, folder), "".join(lines))
    return marked


def marked_for_deletion(root: str) -> list[tuple[str, str]]:
    """The files whose objects are still to be deleted, with their keys."""
    marked = []
    journals_root = os.path.join(root, JOURNAL_FOLDER)
    for folder, files in _journal_folders(root):
        if JOURNAL_NAME in files:
            relative = os.path.relpath(folder, journals_root)
            for name, key in _read_journal(root, relative)[1].items():
                marked.append((os.path.normpath(os.path.join(relative, name)), key))
    return marked


def _append(path: str, text: str) -> None:
    """Append lines to a journal and make them durable."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        # A crash in the middle of a line leaves it without its newline:
        # the next line must not be glued to it.
        if size and os.pread(fd, 1, size - 1) != b"\n":
            text = "\n" + text
        data = text.encode("ascii")
        while data:
            # (A short write on a full disk: the next one says ENOSPC, and
            # the line cut short is passed over when read.)
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _by_folder(relative_paths: list[str]) -> dict[str, set[str]]:
    by_folder: dict[str, set[str]] = {}
    for relative_path in relative_paths:
        folder, name = os.path.split(relative_path)
        by_folder.setdefault(folder, set()).add(name)
    return by_folder


def _journal_folders(root: str) -> Iterator[tuple[str, dict[str, os.DirEntry[str]]]]:
    yield from walk_files(os.path.join(root, JOURNAL_FOLDER), lambda path: None)


def waiting_recordings(root: str) -> list[WaitingRecording]:
    """The finished recordings under root with a file the journal does not
    say the store holds (as it is now: same size), oldest first."""
    waiting = []
    for folder, files in walk_files(root, lambda path: None):
        relative = os.path.relpath(folder, root)
        if relative.split(os.sep)[0] == JOURNAL_FOLDER:
            continue
        sidecars = [name for name in files if name.endswith(".json") and not name.startswith(".")]
        if not sidecars:
            continue
        verified = verified_in(root, relative)
        for name in sidecars:
            recording = _waiting(root, relative, name, files, verified)
            if recording is not None:
                waiting.append(recording)
    waiting.sort(key=lambda recording: (recording.since, recording.sidecar))
    return waiting


def _waiting(root: str, relative: str, name: str, files: dict[str, os.DirEntry[str]],
             verified: dict[str, VerifiedFile]) -> WaitingRecording | None:
    wav_name = name[: -len(".json")] + ".wav"
    try:
        sidecar_stat = files[name].stat(follow_symlinks=False)
    except OSError:
        return None  # removed meanwhile (retention)
    wav_size = None
    if wav_name in files:
        try:
            wav_size = files[wav_name].stat(follow_symlinks=False).st_size
        except OSError:
            pass  # deleted since the listing (verified, its keep_local_days over)
    sidecar_done = _holds(verified, name, sidecar_stat.st_size)
    wav_done = wav_size is None or _holds(verified, wav_name, wav_size)
    if sidecar_done and wav_done:
        return None  # (its sidecar not even read)
    data = read_json(os.path.join(root, relative, name))
    if not isinstance(data, dict) or data.get("status") != "finished":
        return None  # in progress, recovered later, or not a sidecar
    has_audio = data.get("file") is not None and (wav_size is not None or wav_name in verified)
    done = {name} if sidecar_done else set()
    if has_audio and wav_done:
        done.add(wav_name)
    size = (0 if sidecar_done else sidecar_stat.st_size) + (
        0 if wav_done or wav_size is None else wav_size)
    return WaitingRecording(
        sidecar=os.path.join(relative, name) if relative != "." else name,
        wav=(os.path.join(relative, wav_name) if relative != "." else wav_name)
        if has_audio else None,
        size=size, since=sidecar_stat.st_mtime,
        verified=frozenset(os.path.join(relative, each) if relative != "." else each
                           for each in done),
        recording_id=None if data.get("id") is None else str(data["id"]))


def _holds(verified: dict[str, VerifiedFile], name: str, size: int) -> bool:
    entry = verified.get(name)
    return entry is not None and entry.size == size


def delete_local_copy(root: str, relative_path: str, local: LocalFile) -> bool:
    """Delete a verified WAV if it is still the file that was verified (its
    size); whether it was deleted."""
    path = os.path.join(root, relative_path)
    try:
        if os.lstat(path).st_size != local.size:
            return False
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def holds_local_copy(root: str, path: str) -> bool:
    """Whether the journal says the store holds the WAV at ``path`` (under
    root) as it is now (its size): deleting it loses nothing."""
    relative = os.path.relpath(path, root)
    folder, name = os.path.split(relative)
    entry = verified_in(root, folder).get(name)
    try:
        return entry is not None and os.lstat(path).st_size == entry.size
    except FileNotFoundError:
        return False


def delete_local_copies(root: str, finished_before: float) -> list[str]:
    """Delete the local WAVs that the journal says the store holds, as they
    are (same size), finished before ``finished_before`` (their mtime):
    keep_local_days has passed. Their sidecars stay. Returns the paths
    deleted, under root."""
    deleted = []
    journals_root = os.path.join(root, JOURNAL_FOLDER)
    for folder, files in _journal_folders(root):
        if JOURNAL_NAME not in files:
            continue
        relative = os.path.relpath(folder, journals_root)
        for name, entry in verified_in(root, relative).items():
            if not name.endswith(".wav"):
                continue
            path = os.path.normpath(os.path.join(root, relative, name))
            try:
                stats = os.lstat(path)
            except FileNotFoundError:
                continue
            if stats.st_size != entry.size or stats.st_mtime >= finished_before \
                    or not os.path.isfile(path) or os.path.islink(path):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                deleted.append(os.path.relpath(path, root))
    return deleted


def forget(root: str, relative_paths: list[str]) -> None:
    """Take files whose objects are deleted out of their journals; a journal
    left empty is removed with its empty folders."""
    with journals_of(root).lock:
        for folder, names in _by_folder(relative_paths).items():
            _forget_in(root, folder, names)


def _forget_in(root: str, folder: str, names: set[str]) -> None:
    path = journal_path(root, folder)
    verified, deleting = _read_journal(root, folder, strict=True)
    kept = [entry for entry in verified.values() if entry.name not in names]
    still = {name: key for name, key in deleting.items() if name not in names}
    if not kept and not still:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        _remove_empty_folders(os.path.dirname(path), os.path.join(root, JOURNAL_FOLDER))
        return
    text = "".join(json.dumps({"file": e.name, "size": e.size, "sha256": e.sha256,
                               "key": e.key}, ensure_ascii=True) + "\n" for e in kept)
    text += "".join(json.dumps({"file": name, "delete": True, "key": key},
                               ensure_ascii=True) + "\n" for name, key in still.items())
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(os.path.dirname(path))  # (the rename durable too)


def _remove_empty_folders(folder: str, top: str) -> None:
    while os.path.abspath(folder).startswith(os.path.abspath(top) + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)
