"""Tests for recsvc.storage.wav (header and file writer) and the writer fakes in
recsvc.testing, held to one contract."""

from __future__ import annotations

import ctypes
import errno
import io
import os
import stat
import struct
import wave

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.storage import wav
from recsvc.media.codec import CODECS
from recsvc.testing import FailingWriter, MemoryWavWriter
from recsvc.storage.wav import (
    DIRECT_WRITE_BYTES,
    WRITE_BATCH_BYTES,
    AudioWriter,
    NotAWav,
    WavFileWriter,
    WavFormat,
    header_patches,
    parse_header,
    partial_path,
    read_audio,
    sync_filesystem,
    wav_header,
)
from tests.support.recordings import check_wav

ALAW = WavFormat.stored(CODECS["PCMA"])
ULAW = WavFormat.stored(CODECS["PCMU"])
PCM16 = WavFormat.pcm16(CODECS["PCMA"])


class HeaderTests(SynchronousTestCase):
    def test_alaw(self) -> None:
        """
        A-law: format tag 6, an 18-byte fmt chunk (cbSize 0), 8000 Hz mono
        8-bit, a fact chunk with the sample count, then the data chunk.
        """
        header = wav_header(ALAW, 1000).header
        self.assertEqual(len(header), 58)
        riff, riff_size, wave_id = struct.unpack_from("<4sI4s", header)
        self.assertEqual((riff, riff_size, wave_id), (b"RIFF", 50 + 1000, b"WAVE"))
        self.assertEqual(
            struct.unpack_from("<4sIHHIIHHH", header, 12),
            (b"fmt ", 18, 6, 1, 8000, 8000, 1, 8, 0),
        )
        self.assertEqual(struct.unpack_from("<4sII", header, 38), (b"fact", 4, 1000))
        self.assertEqual(struct.unpack_from("<4sI", header, 50), (b"data", 1000))

    def test_mulaw(self) -> None:
        """
        mu-law is laid out as A-law with format tag 7.
        """
        header = wav_header(ULAW, 0).header
        self.assertEqual(
            struct.unpack_from("<4sIHHIIHHH", header, 12),
            (b"fmt ", 18, 7, 1, 8000, 8000, 1, 8, 0),
        )
        self.assertEqual(header[38:42], b"fact")

    def test_pcm16(self) -> None:
        """
        16-bit PCM: format tag 1, a 16-byte fmt chunk, no fact chunk, 16000
        bytes per second; the stdlib wave module reads it.
        """
        audio = struct.pack("<4h", 0, 1000, -1000, 32767)
        header = wav_header(PCM16, len(audio)).header
        self.assertEqual(len(header), 44)
        self.assertEqual(struct.unpack_from("<4sI", header), (b"RIFF", 36 + len(audio)))
        self.assertEqual(
            struct.unpack_from("<4sIHHIIHH", header, 12),
            (b"fmt ", 16, 1, 1, 8000, 16000, 2, 16),
        )
        self.assertEqual(struct.unpack_from("<4sI", header, 36), (b"data", len(audio)))
        with wave.open(io.BytesIO(header + audio)) as reader:
            self.assertEqual(
                (reader.getnchannels(), reader.getsampwidth(), reader.getframerate(), reader.getnframes()),
                (1, 2, 8000, 4),
            )
            self.assertEqual(reader.readframes(4), audio)

    def test_odd_size_counts_pad(self) -> None:
        """
        An odd data size leaves the data chunk size odd but counts the pad
        byte in the RIFF size.
        """
        header = wav_header(ALAW, 7).header
        self.assertEqual(struct.unpack_from("<I", header, 4), (50 + 7 + 1,))
        self.assertEqual(struct.unpack_from("<I", header, 54), (7,))
        check_wav(self, header + b"\1" * 7 + b"\0", ALAW)

    def test_layout_offsets(self) -> None:
        """
        The layout points at the RIFF size, the fact sample count and the
        data size in the header (and at no fact chunk for PCM).
        """
        alaw = wav_header(ALAW, 0x01020304)
        self.assertEqual(
            (alaw.riff_size_offset, alaw.fact_offset, alaw.data_size_offset), (4, 46, 54)
        )
        self.assertEqual(alaw.header[46:50], struct.pack("<I", 0x01020304))
        pcm = wav_header(PCM16, 10)
        self.assertEqual((pcm.fact_offset, pcm.data_size_offset), (None, 40))

    @settings(max_examples=100, deadline=None)
    @given(st.sampled_from([ALAW, ULAW, PCM16]), st.integers(0, 2**31))
    def test_patches_bring_header_up_to_size(self, fmt: WavFormat, size: int) -> None:
        """
        Applying header_patches to the zero-size header gives exactly the
        header built for that size.
        """
        if fmt.block_align == 2:
            size -= size % 2
        header = bytearray(wav_header(fmt).header)
        for offset, value in header_patches(fmt, size):
            header[offset:offset + len(value)] = value
        self.assertEqual(bytes(header), wav_header(fmt, size).header)

    @settings(max_examples=50, deadline=None)
    @given(st.sampled_from([ALAW, ULAW, PCM16]), st.lists(st.integers(0, 2**31), min_size=1, max_size=4))
    def test_writer_header_at_each_size(self, fmt: WavFormat, sizes: list[int]) -> None:
        """
        A file writer's header at each sync (patched in place, size after
        size) is exactly the header built for that size.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        writer = WavFileWriter(os.path.join(directory, "a.wav"), fmt)
        try:
            for size in sizes:
                size -= size % fmt.block_align
                writer._patch_header(size)
                with open(wav.partial_path(writer.path), "rb") as handle:
                    on_disk = handle.read(len(wav_header(fmt).header))
                self.assertEqual(on_disk, wav_header(fmt, size).header)
        finally:
            writer.close()


def _chunks(total: int, step: int = 997) -> list[bytes]:
    """``total`` bytes of varied audio in writes of varied sizes."""
    pieces = []
    sent = 0
    size = 1
    while sent < total:
        size = min(total - sent, (size * 7 + step) % 5003 + 1)
        pieces.append(bytes((sent + i) * 31 % 251 for i in range(size)))
        sent += size
    return pieces


class WriterContract:
    """Behaviour every AudioWriter has; mixed into a SynchronousTestCase that
    provides ``make_writer`` and ``file_bytes``."""

    def make_writer(self, fmt: WavFormat) -> AudioWriter:
        raise NotImplementedError

    def file_bytes(self, writer: AudioWriter) -> bytes:
        """What the finished file holds."""
        raise NotImplementedError


    def test_empty_recording(self) -> None:
        """
        A writer closed without audio leaves a valid WAV with an empty data
        chunk.
        """
        writer = self.make_writer(ALAW)
        writer.close()
        self.assertEqual(check_wav(self, self.file_bytes(writer), ALAW), b"")
        self.assertEqual(writer.data_bytes, 0)

    def test_many_writes(self) -> None:
        """
        The data chunk holds exactly the bytes written, in order, across many
        writes adding up to several write batches; data_bytes counts them.
        """
        pieces = _chunks(3 * WRITE_BATCH_BYTES + 1234)
        writer = self.make_writer(ALAW)
        for piece in pieces:
            writer.write(piece)
        expected = b"".join(pieces)
        self.assertEqual(writer.data_bytes, len(expected))
        writer.close()
        self.assertEqual(check_wav(self, self.file_bytes(writer), ALAW), expected)
        self.assertEqual(writer.data_bytes, len(expected))

    def test_one_big_write(self) -> None:
        """
        A single write larger than a batch lands whole.
        """
        audio = bytes(range(256)) * (WRITE_BATCH_BYTES // 256 * 2 + 1)
        writer = self.make_writer(ULAW)
        writer.write(audio)
        writer.close()
        self.assertEqual(check_wav(self, self.file_bytes(writer), ULAW), audio)

    def test_sizes_after_close(self) -> None:
        """
        After close the RIFF size, fact sample count and data size agree with
        the audio written and the file length.
        """
        writer = self.make_writer(ALAW)
        writer.write(b"\x55" * 4000)
        writer.close()
        data = self.file_bytes(writer)
        self.assertEqual(len(data), 58 + 4000)
        self.assertEqual(struct.unpack_from("<I", data, 4), (len(data) - 8,))
        self.assertEqual(struct.unpack_from("<I", data, 46), (4000,))
        self.assertEqual(struct.unpack_from("<I", data, 54), (4000,))

    def test_odd_length_padded(self) -> None:
        """
        An odd amount of audio gets a zero pad byte after the data chunk,
        counted in the RIFF size but not in the data size.
        """
        writer = self.make_writer(ALAW)
        writer.write(b"\x01" * 1000)
        writer.write(b"\x02")
        writer.close()
        data = self.file_bytes(writer)
        self.assertEqual(len(data), 58 + 1001 + 1)
        self.assertEqual(data[-1:], b"\0")
        self.assertEqual(struct.unpack_from("<I", data, 54), (1001,))
        self.assertEqual(struct.unpack_from("<I", data, 4), (len(data) - 8,))
        self.assertEqual(check_wav(self, data, ALAW), b"\x01" * 1000 + b"\x02")

    def test_pcm16(self) -> None:
        """
        16-bit PCM audio written in pieces is what the stdlib wave module
        reads back.
        """
        samples = struct.pack("<6000h", *((i * 37) % 65536 - 32768 for i in range(6000)))
        writer = self.make_writer(PCM16)
        for start in range(0, len(samples), 320):
            writer.write(samples[start:start + 320])
        writer.close()
        self.assertEqual(check_wav(self, self.file_bytes(writer), PCM16), samples)

    def test_close_twice(self) -> None:
        """
        A second close is harmless and changes nothing.
        """
        writer = self.make_writer(ALAW)
        writer.write(b"abc")
        writer.close()
        first = self.file_bytes(writer)
        writer.close()
        self.assertEqual(self.file_bytes(writer), first)

    def test_failing_writer_passes_path(self) -> None:
        """
        A FailingWriter shows the wrapped writer's path and data_bytes.
        """
        inner = self.make_writer(ALAW)
        failing = FailingWriter(inner, fail_at=3)
        failing.write(b"12345")
        self.assertEqual(failing.path, inner.path)
        self.assertEqual(failing.data_bytes, 5)
        failing.close()

    def test_failing_writer(self) -> None:
        """
        Wrapped in a FailingWriter that fails write N with ENOSPC: write N
        (and every later one) raises OSError(ENOSPC), and close still gives a
        valid file holding exactly the bytes of writes 1..N-1.
        """
        pieces = _chunks(2 * WRITE_BATCH_BYTES + 500)
        failAt = len(pieces) - 2
        self.assertGreater(sum(map(len, pieces[:failAt - 1])), WRITE_BATCH_BYTES)
        writer = FailingWriter(self.make_writer(ALAW), fail_at=failAt)
        for piece in pieces[:failAt - 1]:
            writer.write(piece)
        for piece in pieces[failAt - 1:]:
            error = self.assertRaises(OSError, writer.write, piece)
            self.assertEqual(error.errno, errno.ENOSPC)
        writer.close()
        self.assertEqual(
            check_wav(self, self.file_bytes(writer.inner), ALAW), b"".join(pieces[:failAt - 1])
        )

    def test_failing_first_write(self) -> None:
        """
        A FailingWriter failing its first write leaves a valid, empty file.
        """
        writer = FailingWriter(self.make_writer(PCM16), fail_at=1)
        error = self.assertRaises(OSError, writer.write, b"\0\0")
        self.assertEqual(error.errno, errno.ENOSPC)
        writer.close()
        self.assertEqual(check_wav(self, self.file_bytes(writer.inner), PCM16), b"")

    # One function run by two test classes is what a contract mixin is;
    # each class's examples stand on their own.
    @settings(
        max_examples=25, deadline=None,
        suppress_health_check=[HealthCheck.differing_executors],
    )
    @given(
        st.sampled_from([ALAW, ULAW]),
        st.lists(st.binary(max_size=WRITE_BATCH_BYTES // 2), max_size=8),
    )
    def test_any_writes(self, fmt: WavFormat, pieces: list[bytes]) -> None:
        """
        Whatever the sizes of the writes, the file holds their concatenation.
        """
        writer = self.make_writer(fmt)
        for piece in pieces:
            writer.write(piece)
        writer.close()
        self.assertEqual(check_wav(self, self.file_bytes(writer), fmt), b"".join(pieces))


class MemoryWavWriterTests(WriterContract, SynchronousTestCase):
    """The fake writer keeps the contract."""

    def make_writer(self, fmt: WavFormat) -> MemoryWavWriter:
        return MemoryWavWriter("/nowhere/recording.wav", fmt)

    def file_bytes(self, writer: AudioWriter) -> bytes:
        assert isinstance(writer, MemoryWavWriter)
        return writer.contents()



class WavFileWriterTests(WriterContract, SynchronousTestCase):
    """The real writer keeps the contract, and more that only a file can."""

    def make_writer(self, fmt: WavFormat) -> WavFileWriter:
        directory = self.mktemp()
        os.makedirs(directory)
        writer = WavFileWriter(os.path.join(directory, "recording.wav"), fmt)
        self.addCleanup(writer.close)
        return writer

    def test_hand_over_written_at_once(self) -> None:
        """
        A write of a recording's hand-over (at least DIRECT_WRITE_BYTES, with
        nothing buffered) reaches the file at once, unbuffered; smaller writes
        are buffered and follow it in order.
        """
        writer = self.make_writer(ALAW)
        header = os.path.getsize(partial_path(writer.path))
        writer.write(bytearray(b"\x01" * DIRECT_WRITE_BYTES))
        self.assertEqual(os.path.getsize(partial_path(writer.path)), header + DIRECT_WRITE_BYTES)
        writer.write(b"\x02" * 10)
        self.assertEqual(os.path.getsize(partial_path(writer.path)), header + DIRECT_WRITE_BYTES)
        writer.write(b"\x03" * DIRECT_WRITE_BYTES)  # behind buffered audio: buffered too
        self.assertEqual(writer.data_bytes, 2 * DIRECT_WRITE_BYTES + 10)
        writer.close()
        self.assertEqual(
            check_wav(self, self.file_bytes(writer), ALAW),
            b"\x01" * DIRECT_WRITE_BYTES + b"\x02" * 10 + b"\x03" * DIRECT_WRITE_BYTES,
        )

    def file_bytes(self, writer: AudioWriter) -> bytes:
        """The file as it stands: the partial one while recording, the
        finished one once closed."""
        path = partial_path(writer.path)
        if not os.path.exists(path):
            path = writer.path
        with open(path, "rb") as handle:
            return handle.read()


    def test_never_overwrites(self) -> None:
        """
        Creating a writer over an existing file raises FileExistsError and
        leaves the file as it was.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "taken.wav")
        with open(path, "wb") as handle:
            handle.write(b"precious")
        self.assertRaises(FileExistsError, WavFileWriter, path, ALAW)
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(), b"precious")

    def test_file_mode(self) -> None:
        """
        The file is created with mode 0640 whatever the umask.
        """
        for mask in (0o000, 0o077, 0o027, 0o777):
            with self.subTest(umask=oct(mask)):
                previous = os.umask(mask)
                try:
                    writer = self.make_writer(ALAW)
                finally:
                    os.umask(previous)
                writer.close()
                self.assertEqual(stat.S_IMODE(os.stat(writer.path).st_mode), 0o640)

    def test_header_on_disk_at_once(self) -> None:
        """
        The file holds a valid empty WAV header as soon as it is created, so
        a crash before close leaves a readable (if short-sized) file.
        """
        writer = self.make_writer(ALAW)
        self.assertEqual(self.file_bytes(writer), wav_header(ALAW).header)

    def _fill_disk(self, room: int) -> list[int]:
        """Make recsvc.storage.wav's os.write accept ``room`` more bytes (cutting the
        write that reaches the limit short), then fail with ENOSPC.
        Returns the list of attempted write lengths."""
        attempts: list[int] = []
        budget = [room]

        class FullDiskOs:
            def __getattr__(self, name: str) -> object:
                return getattr(os, name)

            @staticmethod
            def write(fd: int, data: bytes) -> int:
                attempts.append(len(data))
                if budget[0] <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                count = os.write(fd, bytes(data[:budget[0]]))
                budget[0] -= count
                return count

        self.patch(wav, "os", FullDiskOs())
        return attempts

    def test_disk_full_mid_batch(self) -> None:
        """
        When the disk fills part way through a batch, the write that
        triggered it raises ENOSPC, later writes raise too, and close leaves
        a valid file holding exactly the bytes that reached the disk.
        """
        writer = self.make_writer(ALAW)
        room = 10001
        attempts = self._fill_disk(room)
        pieces = _chunks(WRITE_BATCH_BYTES + 3000)
        error = None
        for piece in pieces:
            try:
                writer.write(piece)
            except OSError as caught:
                error = caught
                break
        self.assertIsNot(error, None, "the disk never filled")
        self.assertEqual(error.errno, errno.ENOSPC)
        self.assertGreater(len(attempts), 0)
        later = self.assertRaises(OSError, writer.write, b"more")
        self.assertEqual(later.errno, errno.ENOSPC)
        writer.close()
        audio = check_wav(self, self.file_bytes(writer), ALAW)
        self.assertEqual(audio, b"".join(pieces)[:room])
        self.assertEqual(writer.data_bytes, room)

    def test_disk_full_mid_sample(self) -> None:
        """
        A 16-bit PCM write cut off in the middle of a sample leaves a file
        with whole samples only: the half sample is dropped.
        """
        writer = self.make_writer(PCM16)
        room = 10001
        self._fill_disk(room)
        samples = struct.pack(f"<{WRITE_BATCH_BYTES}h", *range(WRITE_BATCH_BYTES))
        error = self.assertRaises(OSError, writer.write, samples)
        self.assertEqual(error.errno, errno.ENOSPC)
        writer.close()
        audio = check_wav(self, self.file_bytes(writer), PCM16)
        self.assertEqual(audio, samples[:room - 1])
        self.assertEqual(writer.data_bytes, room - 1)

    def test_disk_full_on_close(self) -> None:
        """
        When the final flush in close hits a full disk, close raises ENOSPC
        but still leaves a valid file with what reached the disk, and a
        second close does nothing.
        """
        writer = self.make_writer(ALAW)
        self._fill_disk(300)
        writer.write(b"\x11" * 1000)
        error = self.assertRaises(OSError, writer.close)
        self.assertEqual(error.errno, errno.ENOSPC)
        self.assertEqual(check_wav(self, self.file_bytes(writer), ALAW), b"\x11" * 300)
        writer.close()

    def test_disk_full_for_pad_byte(self) -> None:
        """
        If even the pad byte after odd-length audio cannot be written, the
        last byte is dropped rather than leaving a broken file.
        """
        writer = self.make_writer(ALAW)
        writer.write(b"\x22" * 101)
        dataStart = len(wav_header(ALAW).header)
        realPwrite = os.pwrite

        class PadFailsOs:
            def __getattr__(self, name: str) -> object:
                return getattr(os, name)

            @staticmethod
            def pwrite(fd: int, data: bytes, offset: int) -> int:
                if offset >= dataStart:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return realPwrite(fd, data, offset)

        self.patch(wav, "os", PadFailsOs())
        writer.close()
        self.assertEqual(check_wav(self, self.file_bytes(writer), ALAW), b"\x22" * 100)

    def test_disk_full_writing_header(self) -> None:
        """
        A full disk while the header is written raises the plain ENOSPC
        OSError and leaves no file behind.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "recording.wav")
        self._fill_disk(10)
        error = self.assertRaises(OSError, WavFileWriter, path, ALAW)
        self.assertEqual(error.errno, errno.ENOSPC)
        self.assertIs(type(error), OSError)
        self.assertFalse(os.path.exists(path))


class PartialFileTests(SynchronousTestCase):
    def make_writer(self) -> WavFileWriter:
        directory = self.mktemp()
        os.makedirs(directory)
        return WavFileWriter(os.path.join(directory, "call.wav"), ALAW)

    def test_records_under_partial_name(self) -> None:
        """
        While recording, the file is NAME.wav.part; closing renames it to
        NAME.wav and leaves no partial file.
        """
        writer = self.make_writer()
        self.assertTrue(os.path.exists(partial_path(writer.path)))
        self.assertFalse(os.path.exists(writer.path))
        writer.write(b"\x01" * 100)
        writer.close()
        self.assertFalse(os.path.exists(partial_path(writer.path)))
        with open(writer.path, "rb") as handle:
            self.assertEqual(check_wav(self, handle.read(), ALAW), b"\x01" * 100)

    def test_sync_leaves_playable_partial_file(self) -> None:
        """
        After sync the partial file is a valid WAV whose sizes cover all that
        was written: a crash right then loses nothing written before.
        """
        writer = self.make_writer()
        self.addCleanup(writer.close)
        writer.write(b"\x02" * 1000)
        writer.sync()
        writer.write(b"\x03" * 500)
        writer.sync()
        with open(partial_path(writer.path), "rb") as handle:
            self.assertEqual(check_wav(self, handle.read(), ALAW), b"\x02" * 1000 + b"\x03" * 500)

    def test_final_name_taken(self) -> None:
        """
        A writer is never created over a finished recording of that name.
        """
        writer = self.make_writer()
        writer.close()
        self.assertRaises(FileExistsError, WavFileWriter, writer.path, ALAW)


class FailingFinishTests(SynchronousTestCase):
    def make_writer(self) -> WavFileWriter:
        directory = self.mktemp()
        os.makedirs(directory)
        return WavFileWriter(os.path.join(directory, "call.wav"), ALAW)

    def test_renamed_even_if_fsync_fails(self) -> None:
        """
        A close whose fsync fails raises, but the file still takes its final
        name (its sidecar names it); no partial file is left for recovery to
        mistake for a crash.
        """
        writer = self.make_writer()
        writer.write(b"\x01" * 10)

        def failing_fsync(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        self.patch(os, "fsync", failing_fsync)
        self.assertRaises(OSError, writer.close)
        self.assertTrue(os.path.exists(writer.path))
        self.assertFalse(os.path.exists(partial_path(writer.path)))

    def test_vanished_file_fails_sync(self) -> None:
        """
        If the recording's file (or folder) is removed, the next sync fails
        with ENOENT, so the recording stops at once rather than recording
        into nothing.
        """
        writer = self.make_writer()

        def close_quietly() -> None:
            try:
                writer.close()
            except OSError:
                pass  # its file is gone: nothing to rename

        self.addCleanup(close_quietly)
        writer.write(b"\x01" * 10)
        writer.sync()
        os.unlink(partial_path(writer.path))
        writer.write(b"\x02" * 10)
        error = self.assertRaises(OSError, writer.sync)
        self.assertEqual(error.errno, errno.ENOENT)


class SyncFilesystemTests(SynchronousTestCase):
    """sync_filesystem makes the whole filesystem of the recordings durable
    in one call: syncfs where there is one, sync elsewhere."""

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def test_syncs(self) -> None:
        """
        On a real directory the call returns quietly (this platform's
        syncfs, or sync without one).
        """
        self.assertIsNone(sync_filesystem(self.directory))

    def test_syncfs_on_the_directory(self) -> None:
        """
        syncfs is called once, on a descriptor of the directory given (so
        it is that directory's filesystem that is flushed), which is closed
        afterwards.
        """
        seen: list[tuple[int, int, int]] = []

        def syncfs(fd: int) -> int:
            status = os.fstat(fd)
            seen.append((fd, status.st_dev, status.st_ino))
            return 0

        self.patch(wav, "_syncfs", syncfs)
        sync_filesystem(self.directory)
        expected = os.stat(self.directory)
        [(fd, device, inode)] = seen
        self.assertEqual((device, inode), (expected.st_dev, expected.st_ino))
        error = self.assertRaises(OSError, os.fstat, fd)
        self.assertEqual(error.errno, errno.EBADF)

    def test_fallback_to_sync(self) -> None:
        """
        Without syncfs (not Linux, or an old libc) the whole system is
        synced instead, once.
        """
        calls: list[None] = []
        self.patch(wav, "_syncfs", None)
        self.patch(os, "sync", lambda: calls.append(None))
        sync_filesystem(self.directory)
        self.assertEqual(len(calls), 1)

    def test_syncfs_fails(self) -> None:
        """
        A syncfs that fails (-1) raises OSError with its errno, its message
        and the path, and the descriptor is still closed.
        """
        opened: list[int] = []

        def failing_syncfs(fd: int) -> int:
            opened.append(fd)
            ctypes.set_errno(errno.EIO)
            return -1

        self.patch(wav, "_syncfs", failing_syncfs)
        error = self.assertRaises(OSError, sync_filesystem, self.directory)
        self.assertEqual(error.errno, errno.EIO)
        self.assertEqual(error.strerror, os.strerror(errno.EIO))
        self.assertEqual(error.filename, self.directory)
        self.assertIn(self.directory, str(error))
        [fd] = opened
        self.assertRaises(OSError, os.fstat, fd)

    def test_missing_directory(self) -> None:
        """
        A directory that does not exist is an OSError naming it, before any
        sync is attempted.
        """
        calls: list[int] = []
        self.patch(wav, "_syncfs", lambda fd: calls.append(fd) or 0)
        self.patch(os, "sync", lambda: calls.append(-1))
        missing = os.path.join(self.directory, "gone")
        error = self.assertRaises(OSError, sync_filesystem, missing)
        self.assertEqual(error.errno, errno.ENOENT)
        self.assertEqual(error.filename, missing)
        self.assertEqual(calls, [])


class ReadAudioTests(SynchronousTestCase):
    def test_reads_what_was_written(self) -> None:
        """
        read_audio gives back the format and exactly the audio written,
        without the pad byte of odd 8-bit data.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        writer = WavFileWriter(os.path.join(directory, "call.wav"), ALAW)
        writer.write(b"\x05" * 101)
        writer.close()
        self.assertEqual(read_audio(writer.path), (ALAW, b"\x05" * 101))

    def test_not_a_wav(self) -> None:
        """
        Bytes that are not a WAV with a data chunk raise NotAWav.
        """
        for head in (b"", b"RIFF\0\0\0\0WAVE", b"ID3\x03" + b"\0" * 40, wav_header(ALAW).header[:30]):
            self.assertRaises(NotAWav, parse_header, head)
