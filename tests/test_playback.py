"""Tests for recsvc.web.playback: stored G.711 served as 16-bit PCM WAV, by
byte ranges."""

from __future__ import annotations

import os
import random

import attrs

from twisted.trial.unittest import SynchronousTestCase

from recsvc.media import g711

from recsvc.web import playback
from recsvc.media.codec import WAVE_FORMAT_ALAW, WAVE_FORMAT_MULAW, WAVE_FORMAT_PCM
from recsvc.storage.wav import NotAWav, WavFileWriter, WavFormat, parse_header, read_audio


class RangeTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """No Range header serves the whole file; a start, a start and end
        (cut at the file's end) and a suffix each give their first and last
        byte."""
        self.assertIsNone(playback.byte_range(None, 100))
        self.assertEqual(playback.byte_range("bytes=0-", 100), (0, 99))
        self.assertEqual(playback.byte_range("bytes=10-19", 100), (10, 19))
        self.assertEqual(playback.byte_range("bytes=90-200", 100), (90, 99))
        self.assertEqual(playback.byte_range("bytes=-10", 100), (90, 99))
        self.assertEqual(playback.byte_range("bytes=-1000", 100), (0, 99))

    def test_served_whole(self) -> None:
        """Forms this does not serve (several ranges, other units) get the
        whole file, as HTTP allows."""
        for header in ("bytes=0-1,5-6", "items=0-1", "bytes=-", "nonsense"):
            self.assertIsNone(playback.byte_range(header, 100), header)

    def test_unsatisfiable(self) -> None:
        """A range that starts at or past the end, ends before it starts,
        asks for no bytes, or any range of an empty file is Unsatisfiable."""
        for header in ("bytes=100-", "bytes=100-200", "bytes=20-10", "bytes=-0"):
            self.assertRaises(playback.Unsatisfiable, playback.byte_range, header, 100)
        self.assertRaises(playback.Unsatisfiable, playback.byte_range, "bytes=-5", 0)

    def test_positions_of_thousands_of_digits(self) -> None:
        """Positions longer than any file size (beyond Python's limit for
        int() of a string) are beyond the file, never an error of int();
        leading zeros do not make a small number long."""
        many = "9" * 5000
        self.assertRaises(playback.Unsatisfiable, playback.byte_range, f"bytes={many}-", 100)
        self.assertEqual(playback.byte_range(f"bytes=-{many}", 100), (0, 99))
        self.assertEqual(playback.byte_range(f"bytes=10-{many}", 100), (10, 99))
        self.assertEqual(playback.byte_range("bytes=" + "0" * 5000 + "7-", 100), (7, 99))
        self.assertIsNone(playback.byte_range("bytes=\u0661-", 100))  # (Arabic-Indic 1)


class DecodedTests(SynchronousTestCase):
    def write(self, format_tag: int, audio: bytes, bits: int = 8) -> str:
        path = self.mktemp() + ".wav"
        writer = WavFileWriter(path, WavFormat(format_tag, 8000, bits))
        writer.write(audio)
        writer.close()
        return path

    def test_whole_and_every_range_decode_alike(self) -> None:
        """The decoded WAV is a valid 16-bit PCM WAV of the same audio, and
        any byte range of it is that slice of the whole."""
        audio = bytes(random.Random(4).randrange(256) for _ in range(1001))
        for format_tag, decode in ((WAVE_FORMAT_ALAW, g711.decode_alaw),
                                   (WAVE_FORMAT_MULAW, g711.decode_ulaw)):
            playable = playback.open_playable(playback.FileBytes(self.write(format_tag, audio)))
            self.assertTrue(playable.decoded)
            self.assertEqual(playable.data_size, 1001)
            whole = playback.read_decoded(playable, 0, playable.size - 1)
            self.assertEqual(len(whole), playable.size)
            fmt, offset = parse_header(whole[:100])
            self.assertEqual((fmt.format_tag, fmt.bits_per_sample, fmt.sample_rate),
                             (WAVE_FORMAT_PCM, 16, 8000))
            self.assertEqual(whole[offset:], decode(audio))
            cuts = random.Random(5)
            for _ in range(200):
                start = cuts.randrange(playable.size)
                end = cuts.randrange(start, playable.size)
                self.assertEqual(playback.read_decoded(playable, start, end),
                                 whole[start:end + 1], (start, end))

    def test_pcm_served_as_stored(self) -> None:
        """A 16-bit PCM WAV is served as stored, not decoded."""
        stored = playback.FileBytes(self.write(WAVE_FORMAT_PCM, b"\x01\x02" * 10, bits=16))
        playable = playback.open_playable(stored)
        self.assertFalse(playable.decoded)

    def test_declared_size_beyond_the_file(self) -> None:
        """A header that claims more audio than the file holds (cut short)
        serves what is there."""
        path = self.write(WAVE_FORMAT_ALAW, b"\xd5" * 100)
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) - 40)
        self.assertEqual(playback.open_playable(playback.FileBytes(path)).data_size, 60)
        self.assertEqual(len(read_audio(path)[1]), 60)

    def test_not_a_wav(self) -> None:
        """A file that is not a WAV is refused with NotAWav."""
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(b"hello")
        self.assertRaises(NotAWav, playback.open_playable, playback.FileBytes(path))


class SymbolicLinkTests(SynchronousTestCase):
    """A recording's file that is a symbolic link (to a file outside the
    storage root, say) is not opened: not its header, not its bytes, even
    when it became a link after its header was read."""

    def setUp(self) -> None:
        self.target = os.path.abspath(self.mktemp() + ".wav")
        writer = WavFileWriter(self.target, WavFormat(WAVE_FORMAT_ALAW, 8000, 8))
        writer.write(b"\xd5" * 100)
        writer.close()
        self.link = os.path.abspath(self.mktemp() + ".wav")
        os.symlink(self.target, self.link)

    def test_link_not_opened(self) -> None:
        """open_playable refuses a link instead of reading the header it points at."""
        self.assertRaises(OSError, playback.open_playable, playback.FileBytes(self.link))

    def test_link_not_read(self) -> None:
        """Bytes are read again for each range: a file swapped for a link
        meanwhile is refused."""
        playable = attrs.evolve(playback.open_playable(playback.FileBytes(self.target)),
                                   source=playback.FileBytes(self.link))
        self.assertRaises(OSError, playback.read_stored, playable, 0, 10)
        self.assertRaises(OSError, playback.read_decoded, playable, 0, playable.size - 1)
