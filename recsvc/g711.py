"""G.711 A-law and mu-law to 16-bit linear PCM (ITU-T G.711), by lookup table."""

from __future__ import annotations

import struct


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
