"""G.711 A-law and mu-law to and from 16-bit linear PCM (ITU-T G.711), by
lookup table. Decoding serves pcm16 storage; encoding the phone simulator."""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Callable


def alaw_to_linear(code: int) -> int:
    """One A-law byte to a 16-bit sample."""
    code ^= 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    if exponent == 0:
        magnitude = (mantissa << 4) + 8
    else:
        magnitude = ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if code & 0x80 else -magnitude


def ulaw_to_linear(code: int) -> int:
    """One mu-law byte to a 16-bit sample."""
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if code & 0x80 else magnitude


def _table(decode) -> tuple[bytes, ...]:
    return tuple(struct.pack("<h", decode(code)) for code in range(256))


_ALAW = _table(alaw_to_linear)
_ULAW = _table(ulaw_to_linear)


def decode_alaw(data: bytes) -> bytes:
    """A-law bytes to little-endian 16-bit PCM."""
    return b"".join(map(_ALAW.__getitem__, data))


def decode_ulaw(data: bytes) -> bytes:
    """mu-law bytes to little-endian 16-bit PCM."""
    return b"".join(map(_ULAW.__getitem__, data))


def linear_to_alaw(sample: int) -> int:
    """One 16-bit sample to A-law (ITU-T G.711, as the reference encoder)."""
    if sample >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        sample = -sample - 1
    sample >>= 3  # 13-bit magnitude
    if sample < 32:
        return ((sample >> 1) ^ mask) & 0xFF
    exponent = sample.bit_length() - 5
    if exponent > 7:
        return (0x7F ^ mask) & 0xFF
    mantissa = (sample >> exponent) & 0x0F
    return ((exponent << 4) | mantissa) ^ mask


def linear_to_ulaw(sample: int) -> int:
    """One 16-bit sample to mu-law (ITU-T G.711, as the reference encoder)."""
    sample >>= 2  # 14-bit, as the reference works
    if sample < 0:
        sample, mask = -sample, 0x7F
    else:
        mask = 0xFF
    sample = min(sample, 8159) + 33
    segment = sample.bit_length() - 6
    if segment > 7:
        return (0x7F ^ mask) & 0xFF
    return ((segment << 4) | ((sample >> (segment + 1)) & 0x0F)) ^ mask


def _encoder_table(encode: Callable[[int], int]) -> bytes:
    # Index: the sample's 16-bit two's-complement pattern.
    return bytes(encode(value - 65536 if value >= 32768 else value) for value in range(65536))


_ENCODER_TABLES: dict[Callable[[int], int], bytes] = {}


def _encode(pcm: bytes, encode: Callable[[int], int]) -> bytes:
    table = _ENCODER_TABLES.get(encode)
    if table is None:  # built on first use: 64 KB, a moment of work
        table = _ENCODER_TABLES[encode] = _encoder_table(encode)
    return bytes(table[value] for value in _samples(pcm))


def encode_alaw(pcm: bytes) -> bytes:
    """Little-endian 16-bit PCM to A-law bytes."""
    return _encode(pcm, linear_to_alaw)


def encode_ulaw(pcm: bytes) -> bytes:
    """Little-endian 16-bit PCM to mu-law bytes."""
    return _encode(pcm, linear_to_ulaw)


def _samples(pcm: bytes) -> array:
    """Little-endian 16-bit samples as unsigned patterns, on any host."""
    samples = array("H", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples
