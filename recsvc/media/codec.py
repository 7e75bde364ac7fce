"""The audio codecs recsvc records, and how their RTP becomes WAV bytes."""

from __future__ import annotations

import sys
from typing import Callable

import attrs

from recsvc.media import g711

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_ALAW = 6
WAVE_FORMAT_MULAW = 7

Decoder = Callable[[bytes], bytes]


def _g711_decoder(table_decode: Decoder) -> Callable[[], Decoder]:
    return lambda: table_decode


def _g722_decoder() -> Decoder:
    """A G.722 (64 kbit/s) decoder to 16 kHz 16-bit little-endian PCM. Stateful
    (ADPCM): one per recording, fed the stream in order."""
    import G722

    decoder = G722.G722(16000, 64000, use_numpy=False)

    def decode(payload: bytes) -> bytes:
        samples = decoder.decode(payload)
        if sys.byteorder == "big":
            samples.byteswap()
        return samples.tobytes()

    return decode


@attrs.frozen
class Codec:
    name: str
    payload_type: int  # the static RTP payload type (RFC 3551)
    clock_rate: int  # RTP timestamp units per second (8000 for G.722 too: RFC 3551)
    decoded_rate: int  # samples per second of the decoded audio
    new_decoder: Callable[[], Decoder]  # to 16-bit little-endian PCM
    # The WAV format tag of the received bytes kept as they are, with one
    # byte a sample; None where they are not stored as such (G.722).
    stored_format_tag: int | None = None
    stored_silence: bytes = b""  # one sample of silence in the stored form
    payload_rate: int = 8000  # RTP payload bytes a second (64 kbit/s for all three)

    def payload_bytes(self, milliseconds: int) -> int:
        """How long an RTP payload of ``milliseconds`` of audio is, in bytes."""
        return milliseconds * self.payload_rate // 1000

    @property
    def samples_per_tick(self) -> int:
        return self.decoded_rate // self.clock_rate


CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec("PCMA", 8, 8000, 8000, _g711_decoder(g711.decode_alaw), WAVE_FORMAT_ALAW, b"\xd5"),
        Codec("PCMU", 0, 8000, 8000, _g711_decoder(g711.decode_ulaw), WAVE_FORMAT_MULAW, b"\xff"),
        Codec("G722", 9, 8000, 16000, _g722_decoder),
    )
}


@attrs.define(eq=False)
class SegmentEncoder:
    """Turns a recording's timeline (audio payloads, silences in RTP ticks)
    into the bytes its WAV file holds: the received bytes as they are, or
    decoded 16-bit PCM."""

    codec: Codec
    decoded: bool
    _decode: Decoder | None = None

    def __attrs_post_init__(self) -> None:
        if self.decoded:
            self._decode = self.codec.new_decoder()

    @property
    def bytes_per_tick(self) -> int:
        """Bytes of the file for one RTP clock tick."""
        return 1 if self._decode is None else 2 * self.codec.samples_per_tick

    def audio(self, payload: bytes) -> bytes:
        return payload if self._decode is None else self._decode(payload)

    def silence(self, ticks: int) -> bytes:
        if self._decode is None:
            return self.codec.stored_silence * ticks
        return b"\0\0" * (ticks * self.codec.samples_per_tick)
