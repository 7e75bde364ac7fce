"""The recordings folder: creates each recording's WAV and writes its sidecar."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from typing import Any, Callable, Iterator

import attrs

from recsvc.media.codec import Codec, SegmentEncoder
from recsvc.logs import Logger
from recsvc.storage.naming import PathTemplate
from recsvc.storage.wav import (
    AudioWriter,
    WavFileWriter,
    WavFormat,
    fsync_directory,
)

FORMATS = ("g711", "pcm16")

WriterOpener = Callable[[str, WavFormat], AudioWriter]

_log = Logger()


class StorageError(Exception):
    """A recording's files could not be finished."""


class FileKeptWithError(StorageError):
    """A file that could not be finished cleanly (its close failed: a full
    disk, an I/O error) but is on disk under its name with what it holds,
    its sidecar naming the error: the recording failed, yet the file is
    one to index and archive."""

    def __init__(self, message: str, summary: Any) -> None:
        super().__init__(message)
        self.summary = summary


def open_wav_file(path: str, fmt: WavFormat, file_mode: int = 0o640) -> AudioWriter:
    return WavFileWriter(path, fmt, file_mode)


@attrs.frozen
class Storage:
    """Lays recordings out under ``root`` by ``path_template`` (storage.path):
    ``NAME.wav`` with ``NAME.json`` beside it. Names never collide: a taken
    name gets a suffix."""

    root: str
    audio_format: str = "g711"
    # None: real WAV files with file_mode; tests give a fake.
    open_writer: WriterOpener | None = None
    # Recordings and sidecars are created with this mode, whatever the umask.
    file_mode: int = 0o640
    path_template: PathTemplate = PathTemplate()
    # Folders already checked to lie inside the root, and made: a burst of
    # Starts creates files in the same few folders, and every system call
    # of a creating thread is a turn at the GIL the reactor must wait for.
    _ready_folders: set[str] = attrs.field(factory=set, eq=False, repr=False)

    def keeps_received_bytes(self, codec: Codec) -> bool:
        """Whether files hold the RTP payloads as received (g711 format and a
        codec with a WAV form of its own) rather than decoded PCM."""
        return self.audio_format == "g711" and codec.stored_format_tag is not None

    def wav_format(self, codec: Codec) -> WavFormat:
        if self.keeps_received_bytes(codec):
            return WavFormat.stored(codec)
        return WavFormat.pcm16(codec)

    def encoder(self, codec: Codec) -> SegmentEncoder:
        """How a recording's timeline becomes this storage's bytes."""
        return SegmentEncoder(codec, decoded=not self.keeps_received_bytes(codec))

    def create(
        self, codec: Codec, started_at: float, device: str, direction: str,
        remote_number: str, recording_id: str, part: int = 1, **more_fields: str,
    ) -> AudioWriter:
        """Create the WAV file of a recording (of its ``part``-th file, for a
        recording longer than a file may be), named by storage.path from
        these fields (``more_fields``: remote_name, local_number, local_name).
        Raises OSError."""
        *folders, stem = self.path_template.build(started_at, {
            "device": device, "direction": direction, "remote_number": remote_number,
            "id": recording_id, "codec": codec.name, **more_fields,
        })
        if part > 1:
            stem += f"_part{part}"
        folder = self._folder(folders)
        try:
            return self._create_in(folder, stem, codec)
        except FileNotFoundError:
            # The folder went away since it was made (emptied and removed):
            # checked and made again.
            self._ready_folders.discard(folder)
            return self._create_in(self._folder(folders), stem, codec)

    def _folder(self, folders: list[str]) -> str:
        """The folder (made if missing), checked to lie inside the root."""
        root = os.path.abspath(self.root)
        folder = os.path.join(root, *folders)
        if folder in self._ready_folders:
            return folder
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(folder)]) != real_root:
            raise PermissionError(f"{folder} is outside the storage root")
        os.makedirs(folder, exist_ok=True)
        if len(self._ready_folders) >= 1024:
            self._ready_folders.clear()
        self._ready_folders.add(folder)
        return folder

    def _create_in(self, folder: str, stem: str, codec: Codec) -> AudioWriter:
        for attempt in range(1000):
            name = stem if attempt == 0 else f"{stem}-{attempt}"
            path = os.path.join(folder, name + ".wav")
            # A partial file of that name makes the creation fail (it is
            # created exclusively); a sidecar must be looked for.
            if os.path.exists(sidecar_path(path)):
                continue
            try:
                if self.open_writer is None:
                    return open_wav_file(path, self.wav_format(codec), self.file_mode)
                return self.open_writer(path, self.wav_format(codec))
            except FileExistsError:
                continue
        raise FileExistsError(f"no free name for {stem} in {folder}")

    def write_sidecar(self, writer_path: str, data: dict[str, Any], durable: bool = True) -> str:
        """Write the sidecar whole (temp file, rename): durably (fsyncs of
        the file and its folder), or, if not ``durable``, leaving that to a
        later sync of the filesystem. Blocking.

        On a full disk, a sidecar that exists already (the one written at
        Start) is overwritten in place: its blocks are ours, a new file's are not.
        """
        path = sidecar_path(writer_path)
        text = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            _replace_whole(path, text, self.file_mode, durable)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT) or not os.path.exists(path):
                raise
            _overwrite_in_place(path, text)
        return path


    def has_audio(self, wav_path: str) -> bool:
        """Whether a WAV is there under its final name (one that could not
        be closed cleanly may be, or may not). Blocking."""
        return self.open_writer is not None or os.path.exists(wav_path)

    def remove_audio(self, wav_path: str) -> None:
        """Remove a finished WAV that holds no audio (its sidecar stays,
        naming no file). Blocking."""
        if self.open_writer is None:
            try:
                os.unlink(wav_path)
            except FileNotFoundError:
                pass
            except OSError as error:
                # The recording is finished all the same: its sidecar says so.
                _log.warn("Could not remove {file}, the empty WAV of a recording that "
                          "received no audio: {error}", file=wav_path, error=str(error))


def no_follow(path: str, flags: int) -> int:
    """An ``opener`` for `open` that refuses a symbolic link (OSError,
    ELOOP): below the storage root, a link may point anywhere, and the
    recordings' code reads, repairs and serves only the files it made."""
    return os.open(path, flags | os.O_NOFOLLOW)


def read_json(path: str) -> object:
    """A sidecar's JSON (not through a symbolic link); None if it cannot be
    read or is not JSON. Blocking."""
    try:
        with open(path, encoding="utf-8", opener=no_follow) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def walk_files(root: str, found_link: Callable[[str], object], root_listed: bool = False,
               ) -> Iterator[tuple[str, dict[str, os.DirEntry[str]]]]:
    """Each folder under ``root`` (root first, then its folders by name,
    depth first) with its regular files by name. A symbolic link below
    root is never followed: not listed, not walked into, and
    ``found_link(path)`` is told of it; root itself may be a link (a disk
    mounted elsewhere). One listing per folder, no syscall per file (the
    kinds come with the listing); a folder that cannot be listed is left
    out, as os.walk does, and so is root itself unless ``root_listed``:
    then its OSError is raised (for a caller that takes what it does not
    find as gone, an unreadable root is not an empty one)."""
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError:
            if root_listed and folder is root:
                raise
            continue
        files, folders = {}, []
        for entry in entries:
            if entry.is_symlink():
                found_link(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                files[entry.name] = entry
        yield folder, files
        pending.extend(sorted(folders, reverse=True))


def sidecar_path(wav_path: str) -> str:
    base, _ = os.path.splitext(wav_path)
    return base + ".json"


def _replace_whole(path: str, text: bytes, file_mode: int, durable: bool) -> None:
    temporary = path + ".tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, file_mode)
        os.fchmod(fd, file_mode)  # whatever the umask
        with open(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if durable:
        fsync_directory(os.path.dirname(path))


def _overwrite_in_place(path: str, text: bytes) -> None:
    with open(path, "r+b", opener=no_follow) as handle:
        handle.write(text)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


