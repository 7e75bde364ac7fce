"""Tests for recsvc.media.rtp: RTP header parsing and the reorder window."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media.rtp import RtpError, RtpPacket, build_rtp, parse_rtp

_SETTINGS = settings(max_examples=200, deadline=None)


def _header(
    first: int = 0x80, second: int = 8, sequence: int = 1234,
    timestamp: int = 0x01020304, ssrc: int = 0xDEADBEEF,
) -> bytes:
    return struct.pack("!BBHII", first, second, sequence, timestamp, ssrc)


_PACKETS = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none() | st.tuples(
        st.integers(0, 0xFFFF),
        st.lists(st.binary(min_size=4, max_size=4), max_size=8).map(b"".join),
    ),
)


class ParseTests(SynchronousTestCase):
    def test_minimal_header(self) -> None:
        """
        A 12-byte header with no CSRC, extension or padding yields its fields
        and everything after the header as the payload.
        """
        packet = parse_rtp(_header(second=0x80 | 8) + b"\xd5" * 160)
        self.assertEqual(
            packet,
            RtpPacket(
                payload_type=8, sequence=1234, timestamp=0x01020304,
                ssrc=0xDEADBEEF, payload=b"\xd5" * 160, marker=True,
            ),
        )

    def test_marker_clear_and_payload_type_masked(self) -> None:
        """
        The marker is the top bit of the second byte only; the payload type
        is the low seven bits.
        """
        packet = parse_rtp(_header(second=0x7F) + b"x")
        self.assertFalse(packet.marker)
        self.assertEqual(packet.payload_type, 127)

    def test_empty_payload(self) -> None:
        """
        A bare header is a valid packet with an empty payload.
        """
        self.assertEqual(parse_rtp(_header()).payload, b"")

    def test_csrcs(self) -> None:
        """
        The CSRC count in the first byte says how many 32-bit CSRCs follow
        the fixed header; they are returned and kept out of the payload.
        """
        data = _header(first=0x82) + struct.pack("!II", 11, 22) + b"audio"
        packet = parse_rtp(data)
        self.assertEqual(packet.csrcs, (11, 22))
        self.assertEqual(packet.payload, b"audio")

    def test_extension(self) -> None:
        """
        With the X bit set, the extension header (profile, length in words)
        and its data are returned and kept out of the payload.
        """
        data = _header(first=0x90) + struct.pack("!HH", 0xBEDE, 2) + b"ABCDEFGH" + b"audio"
        packet = parse_rtp(data)
        self.assertEqual(packet.extension, (0xBEDE, b"ABCDEFGH"))
        self.assertEqual(packet.payload, b"audio")

    def test_empty_extension(self) -> None:
        """
        An extension of zero words is present but empty.
        """
        packet = parse_rtp(_header(first=0x90) + struct.pack("!HH", 7, 0) + b"audio")
        self.assertEqual(packet.extension, (7, b""))
        self.assertEqual(packet.payload, b"audio")

    def test_padding(self) -> None:
        """
        With the P bit set, the last byte counts the padding bytes (itself
        included), which are stripped from the payload.
        """
        packet = parse_rtp(_header(first=0xA0) + b"audio" + b"\0\0\3")
        self.assertEqual(packet.payload, b"audio")

    def test_padding_eats_whole_payload(self) -> None:
        """
        Padding may cover everything after the header, leaving no payload.
        """
        packet = parse_rtp(_header(first=0xA0) + b"\0\0\0\4")
        self.assertEqual(packet.payload, b"")

    def test_everything_at_once(self) -> None:
        """
        CSRCs, an extension and padding together: the payload is exactly the
        bytes between the extension and the padding.
        """
        data = (
            _header(first=0xB1)
            + struct.pack("!I", 99)
            + struct.pack("!HH", 1, 1) + b"EXT!"
            + b"payload"
            + b"\xff\2"
        )
        packet = parse_rtp(data)
        self.assertEqual(packet.csrcs, (99,))
        self.assertEqual(packet.extension, (1, b"EXT!"))
        self.assertEqual(packet.payload, b"payload")

    def test_bad_version(self) -> None:
        """
        Any version other than 2 is refused.
        """
        for version in (0, 1, 3):
            with self.subTest(version=version):
                with self.assertRaises(RtpError):
                    parse_rtp(_header(first=version << 6) + b"audio")

    def test_truncated_header(self) -> None:
        """
        A datagram shorter than the 12-byte fixed header is refused.
        """
        for length in range(12):
            with self.subTest(length=length):
                with self.assertRaises(RtpError):
                    parse_rtp(_header()[:length])

    def test_truncated_csrcs(self) -> None:
        """
        A CSRC count larger than the bytes that follow is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0x83) + struct.pack("!II", 1, 2) + b"\0\0\0")

    def test_truncated_extension_header(self) -> None:
        """
        The X bit without room for the 4-byte extension header is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0x90) + b"\0\1")

    def test_truncated_extension_data(self) -> None:
        """
        An extension length larger than the bytes that follow is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0x90) + struct.pack("!HH", 1, 2) + b"ABCDE")

    def test_zero_padding(self) -> None:
        """
        The P bit with a padding count of zero is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0xA0) + b"audio\0")

    def test_padding_longer_than_payload(self) -> None:
        """
        Padding that would reach back into the header (or the CSRCs or
        extension) is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0xA0) + b"ab\x04")
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0xA1) + struct.pack("!I", 5) + b"\x02")

    def test_rtp_error_is_value_error(self) -> None:
        """
        RtpError is a ValueError, so callers catching ValueError see it.
        """
        self.assertTrue(issubclass(RtpError, ValueError))

    @_SETTINGS
    @given(_PACKETS)
    def test_round_trip(self, packet: RtpPacket) -> None:
        """
        Any packet survives build_rtp then parse_rtp unchanged.
        """
        self.assertEqual(parse_rtp(build_rtp(packet)), packet)

    @_SETTINGS
    @given(_PACKETS, st.binary(max_size=20))
    def test_round_trip_with_padding(self, packet: RtpPacket, filler: bytes) -> None:
        """
        Adding padding (P bit and a trailing count) to a built packet does not
        change what parses out of it.
        """
        wire = bytearray(build_rtp(packet))
        wire[0] |= 0x20
        wire += filler + bytes([len(filler) + 1])
        self.assertEqual(parse_rtp(bytes(wire)), packet)

    def test_build_refuses_ragged_extension(self) -> None:
        """
        build_rtp refuses extension data that is not whole 32-bit words, which
        it could not express on the wire.
        """
        packet = RtpPacket(0, 1, 2, 3, b"", extension=(1, b"abc"))
        self.assertRaises(ValueError, build_rtp, packet)

    @_SETTINGS
    @given(st.binary(max_size=80))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """
        Arbitrary bytes either parse or raise RtpError, never anything else.
        """
        try:
            parse_rtp(data)
        except RtpError:
            pass

    @_SETTINGS
    @given(st.integers(0x80, 0xBF), st.binary(max_size=80))
    def test_arbitrary_version2_bytes(self, first: int, rest: bytes) -> None:
        """
        Arbitrary bytes behind a version-2 first byte (so CSRC, extension and
        padding parsing are reached) either parse or raise RtpError; what
        parses has a payload no longer than the datagram.
        """
        data = bytes([first]) + rest
        try:
            packet = parse_rtp(data)
        except RtpError:
            return
        self.assertLessEqual(12 + 4 * len(packet.csrcs) + len(packet.payload), len(data))
        self.assertEqual(len(packet.csrcs), first & 0x0F)
