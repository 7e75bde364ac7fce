"""RTP (RFC 3550) packets: header parsing and building, with no I/O."""

from __future__ import annotations

import struct

import attrs

_FIXED_HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet."""


@attrs.frozen
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile, data)


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse a datagram. Raises `RtpError`, and nothing else."""
    if len(data) < _FIXED_HEADER.size:
        raise RtpError(f"datagram of {len(data)} bytes is shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
    version = first >> 6
    if version != 2:
        raise RtpError(f"RTP version {version}")
    offset = _FIXED_HEADER.size
    csrc_count = first & 0x0F
    end_of_csrcs = offset + 4 * csrc_count
    if len(data) < end_of_csrcs:
        raise RtpError("truncated CSRC list")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, offset)
    offset = end_of_csrcs
    extension = None
    if first & 0x10:
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        profile, words = struct.unpack_from("!HH", data, offset)
        offset += 4
        if len(data) < offset + 4 * words:
            raise RtpError("truncated header extension")
        extension = (profile, data[offset:offset + 4 * words])
        offset += 4 * words
    end = len(data)
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > end:
            raise RtpError(f"bad padding length {padding}")
        end -= padding
    return RtpPacket(
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        csrcs=csrcs,
        extension=extension,
        payload=data[offset:end],
    )


def build_rtp(packet: RtpPacket) -> bytes:
    """The wire form of a packet (no padding). Used by the phone simulator and tests."""
    first = 0x80 | len(packet.csrcs) | (0x10 if packet.extension is not None else 0)
    header = _FIXED_HEADER.pack(
        first,
        (0x80 if packet.marker else 0) | packet.payload_type,
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
    )
    header += struct.pack(f"!{len(packet.csrcs)}I", *packet.csrcs)
    if packet.extension is not None:
        profile, data = packet.extension
        if len(data) % 4:
            raise ValueError("extension data must be a whole number of 32-bit words")
        header += struct.pack("!HH", profile, len(data) // 4) + data
    return header + packet.payload
