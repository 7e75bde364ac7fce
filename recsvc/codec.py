"""The audio codecs recsvc records, and what each means for RTP and WAV."""

from __future__ import annotations

from typing import Callable

import attrs

from recsvc import g711

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_ALAW = 6
WAVE_FORMAT_MULAW = 7


@attrs.frozen
class Codec:
    name: str
    payload_type: int  # the static RTP payload type (RFC 3551)
    sample_rate: int
    wav_format_tag: int  # the stored bytes' WAV format tag
    bits_per_sample: int
    silence: bytes  # one sample of silence in the stored form
    to_pcm16: Callable[[bytes], bytes]  # decode to little-endian 16-bit PCM


CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec("PCMA", 8, 8000, WAVE_FORMAT_ALAW, 8, b"\xd5", g711.decode_alaw),
        Codec("PCMU", 0, 8000, WAVE_FORMAT_MULAW, 8, b"\xff", g711.decode_ulaw),
    )
}
