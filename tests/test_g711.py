"""Tests for recsvc.media.g711: A-law and mu-law decoding to 16-bit PCM."""

from __future__ import annotations

import struct
import warnings

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media import g711
from recsvc.media.g711 import alaw_to_linear, decode_alaw, decode_ulaw, ulaw_to_linear

with warnings.catch_warnings():
    # audioop is deprecated (gone in 3.13), but it is the reference we have.
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:
        audioop = None

ALL_CODES = bytes(range(256))


def _samples(data: bytes, order: str = "<") -> tuple[int, ...]:
    return struct.unpack(f"{order}{len(data) // 2}h", data)


class AgainstAudioopTests(SynchronousTestCase):
    if audioop is None:
        skip = "the audioop module is not available"

    def test_alaw(self) -> None:
        """
        Every A-law code decodes to the sample audioop gives.
        """
        self.assertEqual(
            _samples(decode_alaw(ALL_CODES)), _samples(audioop.alaw2lin(ALL_CODES, 2), "=")
        )

    def test_ulaw(self) -> None:
        """
        Every mu-law code decodes to the sample audioop gives.
        """
        self.assertEqual(
            _samples(decode_ulaw(ALL_CODES)), _samples(audioop.ulaw2lin(ALL_CODES, 2), "=")
        )


class KnownValueTests(SynchronousTestCase):
    def test_alaw_known(self) -> None:
        """
        A-law 0xD5 (silence) is +8, 0x55 is -8, 0xAA and 0x2A the extremes
        +/-32256.
        """
        self.assertEqual(_samples(decode_alaw(b"\xd5\x55\xaa\x2a")), (8, -8, 32256, -32256))
        self.assertEqual(alaw_to_linear(0xD5), 8)

    def test_ulaw_known(self) -> None:
        """
        mu-law 0xFF and 0x7F (silence) are 0; 0x80 and 0x00 are the extremes
        +/-32124.
        """
        self.assertEqual(_samples(decode_ulaw(b"\xff\x7f\x80\x00")), (0, 0, 32124, -32124))
        self.assertEqual(ulaw_to_linear(0xFF), 0)

    def test_little_endian(self) -> None:
        """
        The output is little-endian whatever the machine.
        """
        self.assertEqual(decode_alaw(b"\xaa"), b"\x00\x7e")
        self.assertEqual(decode_ulaw(b"\x80"), b"\x7c\x7d")

    def test_symmetric(self) -> None:
        """
        Flipping the sign bit of a code negates its sample.
        """
        for code in range(128):
            self.assertEqual(alaw_to_linear(code), -alaw_to_linear(code | 0x80))
            self.assertEqual(ulaw_to_linear(code), -ulaw_to_linear(code | 0x80))

    def test_empty(self) -> None:
        """
        No bytes in, no bytes out.
        """
        self.assertEqual(decode_alaw(b""), b"")
        self.assertEqual(decode_ulaw(b""), b"")

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=400))
    def test_sample_by_sample(self, data: bytes) -> None:
        """
        Decoding a buffer gives two bytes per input byte, each the decode of
        that byte alone.
        """
        for decode, one in ((decode_alaw, alaw_to_linear), (decode_ulaw, ulaw_to_linear)):
            out = decode(data)
            self.assertEqual(len(out), 2 * len(data))
            self.assertEqual(_samples(out), tuple(map(one, data)))


class EncoderTests(SynchronousTestCase):
    if audioop is None:
        skip = "the audioop module is not available"

    def test_every_sample(self) -> None:
        """
        Encoding every 16-bit sample gives what the standard library's
        reference encoder gives, for A-law and mu-law.
        """
        pcm = struct.pack("<65536h", *range(-32768, 32768))
        self.assertEqual(g711.encode_alaw(pcm), audioop.lin2alaw(pcm, 2))
        self.assertEqual(g711.encode_ulaw(pcm), audioop.lin2ulaw(pcm, 2))


class EncodeDecodeTests(SynchronousTestCase):
    def test_codes_round_trip(self) -> None:
        """
        Every code decodes to a sample that encodes back to the same code
        (but mu-law's two zeros, 0x7F and 0xFF, which both mean 0).
        """
        for code in range(256):
            sample = g711.alaw_to_linear(code)
            self.assertEqual(g711.linear_to_alaw(sample), code)
            sample = g711.ulaw_to_linear(code)
            expected = 0xFF if code == 0x7F else code
            self.assertEqual(g711.linear_to_ulaw(sample), expected)
