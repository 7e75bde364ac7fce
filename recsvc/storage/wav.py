"""WAV (RIFF) files: the header, pure, and the writer that streams audio into one.

The header is written with zero sizes when the file is created and patched
with the real sizes at every sync and when it is closed, so the data chunk
holds exactly the bytes written, in the order written.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from typing import Callable, Protocol

import attrs

from recsvc.media.codec import WAVE_FORMAT_PCM, Codec

# How much audio the writer gathers before one write() to the file. Live
# recordings hand over their audio at every sync anyway; this bounds the
# system calls of a long write such as `recsvc convert`.
WRITE_BATCH_BYTES = 16 * 1024
# A write at least this long, with nothing buffered, goes to the file as it is.
DIRECT_WRITE_BYTES = 4096


@attrs.frozen
class WavFormat:
    format_tag: int
    sample_rate: int
    bits_per_sample: int
    channels: int = 1

    @property
    def block_align(self) -> int:
        return self.channels * self.bits_per_sample // 8

    @classmethod
    def stored(cls, codec: Codec) -> WavFormat:
        """The codec's own bytes, as received (A-law/mu-law WAV for G.711)."""
        assert codec.stored_format_tag is not None, codec.name
        return cls(codec.stored_format_tag, codec.clock_rate, 8)

    @classmethod
    def pcm16(cls, codec: Codec) -> WavFormat:
        """The codec decoded to 16-bit linear PCM."""
        return cls(WAVE_FORMAT_PCM, codec.decoded_rate, 16)


@attrs.frozen
class WavLayout:
    """Where the fields that change with the data size sit in the header."""

    header: bytes
    riff_size_offset: int = 4
    fact_offset: int | None = None
    data_size_offset: int = 0


_SIZE = struct.Struct("<I")


def wav_header(fmt: WavFormat, data_size: int = 0) -> WavLayout:
    """The header for ``data_size`` bytes of audio, and where its sizes sit.

    Non-PCM formats carry an 18-byte fmt chunk (cbSize = 0) and a fact chunk
    with the sample count, as RIFF requires for compressed formats.
    """
    pcm = fmt.format_tag == WAVE_FORMAT_PCM
    fmt_body = struct.pack(
        "<HHIIHH",
        fmt.format_tag,
        fmt.channels,
        fmt.sample_rate,
        fmt.sample_rate * fmt.block_align,
        fmt.block_align,
        fmt.bits_per_sample,
    )
    if not pcm:
        fmt_body += struct.pack("<H", 0)
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    fact_offset = None
    if not pcm:
        fact_offset = 8 + len(chunks) + 8
        chunks += b"fact" + struct.pack("<I", 4) + struct.pack("<I", data_size // fmt.block_align)
    data_size_offset = 8 + len(chunks) + 4
    chunks += b"data" + struct.pack("<I", data_size)
    riff_size = len(chunks) + data_size + (data_size & 1)
    header = b"RIFF" + struct.pack("<I", riff_size) + chunks
    return WavLayout(header, 4, fact_offset, data_size_offset)


def header_patches(fmt: WavFormat, data_size: int) -> list[tuple[int, bytes]]:
    """The (offset, bytes) writes that bring a header up to ``data_size``."""
    layout = wav_header(fmt, data_size)
    fields = [layout.riff_size_offset, layout.data_size_offset]
    if layout.fact_offset is not None:
        fields.append(layout.fact_offset)
    return [(offset, layout.header[offset:offset + 4]) for offset in fields]


class NotAWav(ValueError):
    """Bytes that do not begin like a WAV file with a data chunk."""


def parse_header(head: bytes) -> tuple[WavFormat, int]:
    """The format of a WAV file from its first bytes, and where the data
    chunk's bytes begin. Raises `NotAWav`."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise NotAWav("no RIFF/WAVE header")
    offset, fmt = 12, None
    while offset + 8 <= len(head):
        chunk, size = head[offset:offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        if chunk == b"fmt " and offset + 8 + 16 <= len(head):
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, offset + 8)
            fmt = WavFormat(tag, rate, bits, channels)
        elif chunk == b"data":
            if fmt is None or fmt.block_align == 0 or fmt.sample_rate == 0:
                raise NotAWav("data before a valid fmt chunk")
            return fmt, offset + 8
        offset += 8 + size + (size & 1)
    raise NotAWav("no data chunk")


def declared_data_size(head: bytes, fmt: WavFormat, data_offset: int, file_size: int) -> int:
    """The data size a header declares (``head``, parsed by `parse_header`
    into ``fmt`` and ``data_offset``), as far as the file holds it, in whole
    frames (a pad byte, or a partly written sample, is not audio)."""
    declared = struct.unpack_from("<I", head, data_offset - 4)[0]
    size = max(0, min(declared, file_size - data_offset))
    return size - size % fmt.block_align


def read_audio(path: str) -> tuple[WavFormat, bytes]:
    """A WAV file's format and the audio its header declares (as far as the
    file holds it). Blocking. Raises `NotAWav`, OSError."""
    with open(path, "rb") as handle:
        return audio_in(handle.read())


def audio_in(blob: bytes) -> tuple[WavFormat, bytes]:
    """The format of a whole WAV file's bytes and the audio its header
    declares (as far as ``blob`` holds it). Raises `NotAWav`."""
    fmt, offset = parse_header(blob[:4096])
    declared = struct.unpack_from("<I", blob, offset - 4)[0]
    return fmt, blob[offset:offset + declared]


class AudioWriter(Protocol):
    """Where a recording's audio goes. `WavFileWriter` is the real one;
    `recsvc.testing.MemoryWavWriter` the fake, held to the same contract.

    Blocking: a writer is used off the reactor thread, by one thread at a
    time."""

    @property
    def path(self) -> str:
        """Where the finished file is (its sidecar goes beside it)."""

    @property
    def data_bytes(self) -> int:
        """Audio bytes written so far that the finished file will hold."""

    def write(self, data: bytes) -> None:
        """Append audio. Raises OSError; what was written before stays valid."""

    def sync(self, durable: bool = True) -> None:
        """Make what was written playable as it stands (data in the file,
        sizes in the header) and, if ``durable``, on disk. Raises OSError."""

    def close(self) -> None:
        """Finish the file: remaining data, sizes in the header, fsync, and
        the file under its final name. Raises OSError."""


PARTIAL_SUFFIX = ".part"


def partial_path(path: str) -> str:
    """Where a WAV file is while it is being recorded."""
    return path + PARTIAL_SUFFIX


@attrs.define(eq=False)
class WavFileWriter:
    """Streams audio into a WAV file: ``path`` + ".part" while recording
    (created exclusively; neither name may exist), renamed to ``path`` once
    finished. After each `sync` the partial file is a playable WAV."""

    path: str
    format: WavFormat
    file_mode: int = 0o640
    _fd: int = -1
    _pending: bytearray = attrs.field(factory=bytearray)
    _written: int = 0
    _failed: OSError | None = None
    # The header as written at each sync: only its size fields change.
    _layout: WavLayout = attrs.field(init=False)
    _header: bytearray = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._layout = wav_header(self.format)
        self._header = bytearray(self._layout.header)
        if os.path.exists(self.path):
            raise FileExistsError(errno.EEXIST, "File exists", self.path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(partial_path(self.path), flags, self.file_mode)
        try:
            # Held while recording: start-up recovery leaves a locked file alone.
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(self._fd, self.file_mode)  # whatever the umask
            _write_all(self._fd, wav_header(self.format).header)
        except OSError as error:
            os.close(self._fd)
            os.unlink(partial_path(self.path))
            raise getattr(error, "error", error) from None

    @property
    def data_bytes(self) -> int:
        return self._written + len(self._pending)

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            raise ValueError("write to a closed writer")
        if self._failed is not None:
            raise self._failed
        if not self._pending and len(data) >= DIRECT_WRITE_BYTES:
            self._write_now(data)  # a recording's hand-over: no copy
            return
        self._pending += data
        if len(self._pending) >= WRITE_BATCH_BYTES:
            self._flush()

    def sync(self, durable: bool = True) -> None:
        if self._fd < 0:
            raise ValueError("sync of a closed writer")
        if self._failed is None:
            self._flush()
        if os.fstat(self._fd).st_nlink == 0:
            # Writes to a file whose directory was removed succeed, into
            # nothing: stop now, not at the rename.
            raise OSError(errno.ENOENT, "the recording's file or folder was removed")
        self._patch_header(self._written - self._written % self.format.block_align)
        if durable:
            os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd < 0:
            return
        flush_error = None
        try:
            if self._failed is None:
                self._flush()
        except OSError as error:
            flush_error = error  # the file is still finished with what it has
        try:
            self._finish_header()
        finally:
            os.close(self._fd)
            self._fd = -1
            # Even if the header or fsync failed, the file takes its final
            # name: what it holds is the recording, and its sidecar names it.
            os.rename(partial_path(self.path), self.path)
            fsync_directory(os.path.dirname(self.path) or ".")
        if flush_error is not None:
            raise flush_error

    def _flush(self) -> None:
        pending, self._pending = self._pending, bytearray()
        self._write_now(pending)

    def _write_now(self, data: bytes | bytearray) -> None:
        try:
            self._written += _write_all(self._fd, data)
        except _PartialWrite as partial:
            self._written += partial.written
            self._failed = partial.error
            raise partial.error from None

    def _finish_header(self) -> None:
        # A failed write may have cut a sample in two: drop the partial one.
        size = self._written - self._written % self.format.block_align
        data_start = len(wav_header(self.format).header)
        if size & 1:
            # RIFF chunks are word-aligned; without room for the pad byte
            # (disk full) drop the odd byte rather than break the file.
            try:
                _pwrite_all(self._fd, b"\0", data_start + size)
            except OSError:
                size -= 1
        self._written = size
        self._patch_header(size)
        os.ftruncate(self._fd, data_start + size + (size & 1))
        os.fsync(self._fd)

    def _patch_header(self, size: int) -> None:
        # The whole header in one write (only its sizes change): one system
        # call a sync, not one per size field; the same bytes as
        # wav_header(format, size), without building it again.
        header, layout = self._header, self._layout
        _SIZE.pack_into(header, layout.riff_size_offset, len(header) - 8 + size + (size & 1))
        _SIZE.pack_into(header, layout.data_size_offset, size)
        if layout.fact_offset is not None:
            _SIZE.pack_into(header, layout.fact_offset, size // self.format.block_align)
        _pwrite_all(self._fd, header, 0)


class _PartialWrite(OSError):
    """A write that failed after ``written`` bytes reached the file."""

    def __init__(self, written: int, error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.written = written
        self.error = error


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    written = 0
    while written < len(view):
        try:
            count = os.write(fd, view[written:])
        except OSError as error:
            raise _PartialWrite(written, error) from None
        if count == 0:
            raise _PartialWrite(written, OSError(errno.EIO, "short write"))
        written += count
    return written


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    while data:
        count = os.pwrite(fd, data, offset)
        data = data[count:]
        offset += count


def sync_filesystem(path: str) -> None:
    """Make everything written to the filesystem holding ``path`` durable,
    in one call (Linux syncfs; elsewhere sync). Blocking."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if _syncfs is None:
            os.sync()
        elif _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
    finally:
        os.close(fd)


def _find_syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _find_syncfs()


def fsync_directory(path: str) -> None:
    """Make a rename or a new file in ``path`` durable. Blocking."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
