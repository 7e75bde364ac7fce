"""A recording as a browser plays it: a 16-bit PCM WAV decoded on the fly
from the stored G.711 (Chrome plays no A-law WAV), any byte range of it, so
that the player can seek. Files stored as something else are served as
they are. The stored bytes come from a local file (`FileBytes`, never
through a symbolic link) or from the archive (`ArchivedBytes`, byte ranges
of an object). Pure, but for the sources' reads and `open_playable`,
`read_stored` and `read_decoded`, which block.
"""

from __future__ import annotations

import os
import re

import attrs

from recsvc.media.codec import CODECS, WAVE_FORMAT_PCM
from typing import Any

from recsvc.storage.folder import no_follow
from recsvc.storage.wav import WavFormat, declared_data_size, parse_header, wav_header

# The stored formats served decoded (G.711, kept as received), by WAV format tag.
_DECODERS = {codec.stored_format_tag: codec.new_decoder() for codec in CODECS.values()
             if codec.stored_format_tag is not None}
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
# A byte position with more digits than this is beyond any file (and int()
# of thousands of digits raises: Python's integer string limit).
_MAX_DIGITS = 18


class Unsatisfiable(ValueError):
    """A Range that asks for no byte of the file (HTTP 416)."""


# How much of a stored file is read for its header.
_HEADER_READ = 4096


@attrs.frozen
class FileBytes:
    """A recording stored in a local file (opened without following a
    symbolic link in its place)."""

    path: str

    def head(self) -> tuple[bytes, int]:
        """The file's first bytes (its header) and its size. Blocking."""
        with open(self.path, "rb", opener=no_follow) as handle:
            return handle.read(_HEADER_READ), os.fstat(handle.fileno()).st_size

    def read(self, first: int, last: int) -> bytes:
        """Bytes ``first`` to ``last`` (inclusive). Blocking."""
        with open(self.path, "rb", opener=no_follow) as handle:
            handle.seek(first)
            return handle.read(last - first + 1)

    def __str__(self) -> str:
        return self.path


@attrs.frozen
class ArchivedBytes:
    """A recording as an object of the archive (recsvc.archive), read a
    byte range at a time; ``store`` is an IObjectStore, ``size`` the
    object's size as the store said it."""

    store: Any
    key: str
    size: int

    def head(self) -> tuple[bytes, int]:
        return self.read(0, min(_HEADER_READ, self.size) - 1), self.size

    def read(self, first: int, last: int) -> bytes:
        return self.store.get(self.key, first, last)

    def __str__(self) -> str:
        return f"archive:{self.key}"


@attrs.frozen
class Playable:
    """A stored recording's audio: where it is stored (a FileBytes or an
    ArchivedBytes), where the audio is in it, and how much."""

    source: Any
    stored: WavFormat
    data_offset: int
    data_size: int  # bytes of stored audio
    file_size: int = 0  # bytes of the stored file

    @property
    def decoded(self) -> bool:
        """Whether it is served decoded to 16-bit PCM (else as stored)."""
        return self.stored.format_tag in _DECODERS

    @property
    def header(self) -> bytes:
        """The served WAV's header (decoded)."""
        fmt = WavFormat(WAVE_FORMAT_PCM, self.stored.sample_rate, 16, self.stored.channels)
        return wav_header(fmt, 2 * self.data_size).header

    @property
    def size(self) -> int:
        """Bytes of the served WAV (decoded)."""
        return len(self.header) + 2 * self.data_size


def open_playable(source: Any) -> Playable:
    """Read a stored WAV's header (``source``: a FileBytes or an
    ArchivedBytes). Blocking. Raises NotAWav, OSError, the store's errors."""
    head, file_size = source.head()
    fmt, offset = parse_header(head)
    return Playable(source, fmt, offset, declared_data_size(head, fmt, offset, file_size),
                    file_size)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The first and last byte a Range header asks for (None: the whole
    file; a form this does not serve, such as several ranges, is served
    whole too, as HTTP allows). Raises Unsatisfiable."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = _position(last)
        if count == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - count), size - 1
    start = _position(first)
    if start >= size:
        raise Unsatisfiable(header)
    end = size - 1 if not last else min(_position(last), size - 1)
    if end < start:
        raise Unsatisfiable(header)
    return start, end


def _position(digits: str) -> int:
    """A Range's byte position or count; one too long to be a file's is
    taken as 10**_MAX_DIGITS, beyond any file."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else 10 ** _MAX_DIGITS


def read_stored(playable: Playable, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (inclusive) of the stored file. Blocking."""
    return playable.source.read(start, end)


def read_decoded(playable: Playable, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (inclusive) of the decoded WAV. Blocking."""
    header = playable.header
    out = header[start:end + 1] if start < len(header) else b""
    if end < len(header):
        return out
    first = max(start, len(header)) - len(header)  # in the decoded audio
    last = end - len(header)
    stored = playable.source.read(playable.data_offset + first // 2,
                                  playable.data_offset + last // 2)
    decoded = _DECODERS[playable.stored.format_tag](stored)
    return out + decoded[first % 2:first % 2 + last - first + 1]
