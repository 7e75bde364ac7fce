"""The phone's own USB recordings ("Record_<time>.wav"), which are not WAV.

A Fanvil phone recording locally writes ``char codec[64] | int32 rtpLen |
int32 increment | uint32 dataSize`` and then the RTP packets as sent, each
rtpLen bytes. The byte order of the integers is not documented, so it is
detected: the one in which rtpLen is a plausible RTP packet length.
"""

from __future__ import annotations

import struct
from typing import Iterator

import attrs

from recsvc.media.rtp import RtpError, RtpPacket, parse_rtp

HEADER_SIZE = 64 + 12
# Names the firmware may give the codec field, for the codecs recsvc knows.
CODEC_NAMES = {
    "PCMA": "PCMA", "G711A": "PCMA", "G.711A": "PCMA", "ALAW": "PCMA", "G711ALAW": "PCMA",
    "PCMU": "PCMU", "G711U": "PCMU", "G.711U": "PCMU", "ULAW": "PCMU", "G711ULAW": "PCMU",
    "G722": "G722", "G.722": "G722",
}


class NotAPhoneRecording(ValueError):
    """The file is not a phone's USB recording (or is damaged)."""


@attrs.frozen
class PhoneRecording:
    codec: str  # a recsvc codec name: PCMA, PCMU, G722
    packet_length: int
    increment: int
    data: bytes  # the RTP packets, back to back
    byte_order: str  # "<" little or ">" big endian, as detected

    def packets(self) -> Iterator[RtpPacket]:
        """The RTP packets; a damaged one is skipped, a cut-off last one dropped."""
        size = self.packet_length
        for offset in range(0, len(self.data) - size + 1, size):
            try:
                yield parse_rtp(self.data[offset:offset + size])
            except RtpError:
                continue


def parse_phone_recording(blob: bytes) -> PhoneRecording:
    """Read a USB recording. Raises `NotAPhoneRecording` saying why."""
    if blob[:4] == b"RIFF":
        raise NotAPhoneRecording("this is already a RIFF WAV file")
    if len(blob) < HEADER_SIZE:
        raise NotAPhoneRecording(f"{len(blob)} bytes is shorter than the {HEADER_SIZE}-byte header")
    raw_name = blob[:64].split(b"\0", 1)[0]
    try:
        name = raw_name.decode("ascii").strip()
    except UnicodeDecodeError:
        raise NotAPhoneRecording("the codec field is not text") from None
    for order in "<>":
        length, increment, size = struct.unpack_from(order + "iiI", blob, 64)
        if 12 < length <= 1500 and 0 < increment <= 16000:
            break
    else:
        raise NotAPhoneRecording("no plausible RTP packet length in either byte order")
    codec = CODEC_NAMES.get(name.upper().replace(" ", "").replace("-", ""))
    if codec is None:
        raise NotAPhoneRecording(f"unsupported codec {name[:20]!r} (PCMA, PCMU or G722)")
    data = blob[HEADER_SIZE:HEADER_SIZE + size]
    if len(data) < length:
        raise NotAPhoneRecording("no complete RTP packet after the header")
    return PhoneRecording(codec, length, increment, data, order)
