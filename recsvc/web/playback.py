"""A recording as a browser plays it: a 16-bit PCM WAV decoded on the fly
from the stored G.711 (Chrome plays no A-law WAV), any byte range of it, so
that the player can seek. Files stored as something else are served as
they are. Pure, but for `open_playable` and `read_decoded` (blocking reads,
which refuse a file that is a symbolic link).
"""

from __future__ import annotations

import os
import re

import attrs

from recsvc.media.codec import CODECS, WAVE_FORMAT_PCM
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


@attrs.frozen
class Playable:
    """A stored recording's audio: where it is in its file, and how much."""

    path: str
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


def open_playable(path: str) -> Playable:
    """Read a WAV file's header. Blocking. Raises NotAWav, OSError."""
    with open(path, "rb", opener=no_follow) as handle:
        head = handle.read(4096)
        file_size = os.fstat(handle.fileno()).st_size
    fmt, offset = parse_header(head)
    return Playable(path, fmt, offset, declared_data_size(head, fmt, offset, file_size),
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
    with open(playable.path, "rb", opener=no_follow) as handle:
        handle.seek(start)
        return handle.read(end - start + 1)


def read_decoded(playable: Playable, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` (inclusive) of the decoded WAV. Blocking."""
    header = playable.header
    out = header[start:end + 1] if start < len(header) else b""
    if end < len(header):
        return out
    first = max(start, len(header)) - len(header)  # in the decoded audio
    last = end - len(header)
    with open(playable.path, "rb", opener=no_follow) as handle:
        handle.seek(playable.data_offset + first // 2)
        stored = handle.read(last // 2 - first // 2 + 1)
    decoded = _DECODERS[playable.stored.format_tag](stored)
    return out + decoded[first % 2:first % 2 + last - first + 1]
