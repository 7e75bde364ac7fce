"""Tests for recsvc.rtp: RTP header parsing and the reorder window."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.rtp import ReorderWindow, RtpError, RtpPacket, build_rtp, parse_rtp

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
    def test_minimalHeader(self) -> None:
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

    def test_markerClearAndPayloadTypeMasked(self) -> None:
        """
        The marker is the top bit of the second byte only; the payload type
        is the low seven bits.
        """
        packet = parse_rtp(_header(second=0x7F) + b"x")
        self.assertFalse(packet.marker)
        self.assertEqual(packet.payload_type, 127)

    def test_emptyPayload(self) -> None:
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

    def test_emptyExtension(self) -> None:
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

    def test_paddingEatsWholePayload(self) -> None:
        """
        Padding may cover everything after the header, leaving no payload.
        """
        packet = parse_rtp(_header(first=0xA0) + b"\0\0\0\4")
        self.assertEqual(packet.payload, b"")

    def test_everythingAtOnce(self) -> None:
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

    def test_badVersion(self) -> None:
        """
        Any version other than 2 is refused.
        """
        for version in (0, 1, 3):
            with self.subTest(version=version):
                with self.assertRaises(RtpError):
                    parse_rtp(_header(first=version << 6) + b"audio")

    def test_truncatedHeader(self) -> None:
        """
        A datagram shorter than the 12-byte fixed header is refused.
        """
        for length in range(12):
            with self.subTest(length=length):
                with self.assertRaises(RtpError):
                    parse_rtp(_header()[:length])

    def test_truncatedCsrcs(self) -> None:
        """
        A CSRC count larger than the bytes that follow is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0x83) + struct.pack("!II", 1, 2) + b"\0\0\0")

    def test_truncatedExtensionHeader(self) -> None:
        """
        The X bit without room for the 4-byte extension header is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0x90) + b"\0\1")

    def test_truncatedExtensionData(self) -> None:
        """
        An extension length larger than the bytes that follow is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0x90) + struct.pack("!HH", 1, 2) + b"ABCDE")

    def test_zeroPadding(self) -> None:
        """
        The P bit with a padding count of zero is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0xA0) + b"audio\0")

    def test_paddingLongerThanPayload(self) -> None:
        """
        Padding that would reach back into the header (or the CSRCs or
        extension) is refused.
        """
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0xA0) + b"ab\x04")
        with self.assertRaises(RtpError):
            parse_rtp(_header(first=0xA1) + struct.pack("!I", 5) + b"\x02")

    def test_rtpErrorIsValueError(self) -> None:
        """
        RtpError is a ValueError, so callers catching ValueError see it.
        """
        self.assertTrue(issubclass(RtpError, ValueError))

    @_SETTINGS
    @given(_PACKETS)
    def test_roundTrip(self, packet: RtpPacket) -> None:
        """
        Any packet survives build_rtp then parse_rtp unchanged.
        """
        self.assertEqual(parse_rtp(build_rtp(packet)), packet)

    @_SETTINGS
    @given(_PACKETS, st.binary(max_size=20))
    def test_roundTripWithPadding(self, packet: RtpPacket, filler: bytes) -> None:
        """
        Adding padding (P bit and a trailing count) to a built packet does not
        change what parses out of it.
        """
        wire = bytearray(build_rtp(packet))
        wire[0] |= 0x20
        wire += filler + bytes([len(filler) + 1])
        self.assertEqual(parse_rtp(bytes(wire)), packet)

    def test_buildRefusesRaggedExtension(self) -> None:
        """
        build_rtp refuses extension data that is not whole 32-bit words, which
        it could not express on the wire.
        """
        packet = RtpPacket(0, 1, 2, 3, b"", extension=(1, b"abc"))
        self.assertRaises(ValueError, build_rtp, packet)

    @_SETTINGS
    @given(st.binary(max_size=80))
    def test_arbitraryBytes(self, data: bytes) -> None:
        """
        Arbitrary bytes either parse or raise RtpError, never anything else.
        """
        try:
            parse_rtp(data)
        except RtpError:
            pass

    @_SETTINGS
    @given(st.integers(0x80, 0xBF), st.binary(max_size=80))
    def test_arbitraryVersion2Bytes(self, first: int, rest: bytes) -> None:
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


def _packet(sequence: int) -> RtpPacket:
    sequence %= 0x10000
    return RtpPacket(8, sequence, sequence * 160, 0x1234, bytes([sequence & 0xFF]))


def _sequences(packets: list[RtpPacket]) -> list[int]:
    return [packet.sequence for packet in packets]


class ReorderWindowTests(SynchronousTestCase):
    def assertCounters(self, window: ReorderWindow, lost: int = 0, late: int = 0, duplicates: int = 0) -> None:
        self.assertEqual(
            (window.lost, window.late, window.duplicates), (lost, late, duplicates)
        )

    def test_inOrderPassthrough(self) -> None:
        """
        Packets arriving in order come straight out, one per push, with no
        loss counted.
        """
        window = ReorderWindow()
        for sequence in range(100, 140):
            self.assertEqual(_sequences(window.push(_packet(sequence))), [sequence])
        self.assertEqual(window.flush(), [])
        self.assertCounters(window)

    def test_reorderRestored(self) -> None:
        """
        A packet that arrives ahead of its predecessor is held until the
        predecessor arrives, then both come out in order.
        """
        window = ReorderWindow()
        self.assertEqual(_sequences(window.push(_packet(1))), [1])
        self.assertEqual(window.push(_packet(3)), [])
        self.assertEqual(window.push(_packet(4)), [])
        self.assertEqual(_sequences(window.push(_packet(2))), [2, 3, 4])
        self.assertCounters(window)

    def test_duplicateOfPending(self) -> None:
        """
        A second copy of a packet still waiting in the window is dropped and
        counted as a duplicate; only one copy comes out.
        """
        window = ReorderWindow()
        window.push(_packet(1))
        window.push(_packet(3))
        self.assertEqual(window.push(_packet(3)), [])
        self.assertEqual(_sequences(window.push(_packet(2))), [2, 3])
        self.assertCounters(window, duplicates=1)

    def test_duplicateOfReleased(self) -> None:
        """
        A second copy of a packet already released is dropped and counted as
        a duplicate, not as late.
        """
        window = ReorderWindow()
        window.push(_packet(1))
        window.push(_packet(2))
        self.assertEqual(window.push(_packet(1)), [])
        self.assertEqual(window.push(_packet(2)), [])
        self.assertCounters(window, duplicates=2)

    def test_holeSkippedWhenWindowFull(self) -> None:
        """
        A hole is waited for until ``size`` packets are pending; then the
        window gives up on it, releases what it holds, and counts exactly the
        missing packets as lost.
        """
        window = ReorderWindow(size=4)
        window.push(_packet(1))
        for sequence in (5, 6, 7):
            self.assertEqual(window.push(_packet(sequence)), [])
        self.assertCounters(window)
        self.assertEqual(_sequences(window.push(_packet(8))), [5, 6, 7, 8])
        self.assertCounters(window, lost=3)
        self.assertEqual(_sequences(window.push(_packet(9))), [9])
        self.assertCounters(window, lost=3)

    def test_latePacket(self) -> None:
        """
        A packet arriving after the window skipped past it is dropped and
        counted as late (it was already counted lost).
        """
        window = ReorderWindow(size=4)
        window.push(_packet(1))
        for sequence in (3, 4, 5, 6):
            window.push(_packet(sequence))
        self.assertCounters(window, lost=1)
        self.assertEqual(window.push(_packet(2)), [])
        self.assertCounters(window, lost=1, late=1)

    def test_flush(self) -> None:
        """
        flush releases every pending packet in order, counts the holes
        between them as lost, and leaves the window empty.
        """
        window = ReorderWindow()
        window.push(_packet(1))
        for sequence in (6, 3, 5):
            window.push(_packet(sequence))
        self.assertEqual(_sequences(window.flush()), [3, 5, 6])
        self.assertCounters(window, lost=2)
        self.assertEqual(window.flush(), [])
        self.assertEqual(_sequences(window.push(_packet(7))), [7])

    def test_wrapInOrder(self) -> None:
        """
        Sequence numbers wrapping from 65535 to 0 continue without loss, late
        packets or a pause.
        """
        window = ReorderWindow()
        for sequence in (65533, 65534, 65535, 0, 1, 2):
            self.assertEqual(_sequences(window.push(_packet(sequence))), [sequence])
        self.assertCounters(window)

    def test_wrapReordered(self) -> None:
        """
        Reordering across the wrap is restored: 0 sorts after 65535.
        """
        window = ReorderWindow()
        self.assertEqual(_sequences(window.push(_packet(65534))), [65534])
        self.assertEqual(window.push(_packet(0)), [])
        self.assertEqual(_sequences(window.push(_packet(65535))), [65535, 0])
        self.assertEqual(_sequences(window.push(_packet(1))), [1])
        self.assertCounters(window)

    def test_wrapHole(self) -> None:
        """
        A hole at the wrap is counted as exactly the packets missing across
        it.
        """
        window = ReorderWindow(size=3)
        window.push(_packet(65534))
        window.push(_packet(1))
        window.push(_packet(2))
        self.assertEqual(_sequences(window.push(_packet(3))), [1, 2, 3])
        self.assertCounters(window, lost=2)

    def test_wrapLateAndDuplicate(self) -> None:
        """
        Just after the wrap, 65535 is recognised as old: a duplicate if it
        was released, late if it was skipped.
        """
        window = ReorderWindow(size=2)
        window.push(_packet(65535))
        window.push(_packet(0))
        self.assertEqual(window.push(_packet(65535)), [])
        self.assertCounters(window, duplicates=1)
        window.push(_packet(2))
        window.push(_packet(3))  # gives up on 1
        self.assertEqual(window.push(_packet(1)), [])
        self.assertCounters(window, lost=1, late=1, duplicates=1)

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def test_permutationWithinWindow(self, data: st.DataObject) -> None:
        """
        After a first packet, any permutation of the next N <= size sequence
        numbers, starting anywhere (across the wrap too), comes out complete
        and in order without flush, with nothing counted lost, late or
        duplicate.
        """
        size = data.draw(st.integers(1, 32), label="size")
        start = data.draw(
            st.integers(0, 0xFFFF) | st.integers(0xFFFF - 40, 0xFFFF), label="start"
        )
        count = data.draw(st.integers(1, size), label="count")
        run = [(start + 1 + offset) % 0x10000 for offset in range(count)]
        arrival = data.draw(st.permutations(run), label="arrival")
        window = ReorderWindow(size=size)
        released = _sequences(window.push(_packet(start)))
        for sequence in arrival:
            released += _sequences(window.push(_packet(sequence)))
        self.assertEqual(released, [start] + run)
        self.assertEqual(window.flush(), [])
        self.assertCounters(window)

    @settings(max_examples=200, deadline=None)
    @given(
        st.integers(0, 0xFFFF) | st.integers(0xFFFF - 40, 0xFFFF),
        st.lists(st.integers(0, 40), min_size=1, max_size=80),
        st.integers(1, 20),
    )
    def test_everyPacketAccountedFor(self, base: int, offsets: list[int], size: int) -> None:
        """
        Whatever the arrival order, duplicates and holes: output is strictly
        increasing with no repeats; every pushed packet is released, late or
        duplicate; and ``lost`` is exactly the holes between released packets.
        """
        window = ReorderWindow(size=size)
        released: list[RtpPacket] = []
        for offset in offsets:
            released += window.push(_packet(base + offset))
        released += window.flush()
        # Unwrap relative to the base; every offset is < 41 so this is exact.
        unwrapped = [(packet.sequence - base) % 0x10000 for packet in released]
        self.assertEqual(unwrapped, sorted(set(unwrapped)))
        self.assertEqual(len(released) + window.late + window.duplicates, len(offsets))
        self.assertEqual(window.lost, unwrapped[-1] - unwrapped[0] + 1 - len(unwrapped))
        self.assertEqual(len(set(unwrapped)), len(released))


class StreamRestartTests(SynchronousTestCase):
    def test_backwardRestartResyncs(self) -> None:
        """A phone that restarts its sequence numbers far below the current
        ones is followed after two packets in a row: nothing after the
        restart is dropped as late."""
        window = ReorderWindow(size=4)
        released = []
        for sequence in range(20000, 20010):
            released += window.push(_packet(sequence))
        for sequence in range(5, 15):
            released += window.push(_packet(sequence))
        released += window.flush()
        self.assertEqual(_sequences(released), list(range(20000, 20010)) + list(range(5, 15)))
        self.assertEqual((window.lost, window.late), (0, 0))

    def test_forwardJumpNotCountedAsLoss(self) -> None:
        """A jump of thousands of numbers ahead is a restart, not thousands of
        lost packets."""
        window = ReorderWindow(size=4)
        released = []
        for sequence in [1, 2, 3, 40000, 40001, 40002]:
            released += window.push(_packet(sequence))
        released += window.flush()
        self.assertEqual(_sequences(released), [1, 2, 3, 40000, 40001, 40002])
        self.assertEqual(window.lost, 0)

    def test_strayPacketDropped(self) -> None:
        """A single packet far from the stream, not followed by its
        successor, is dropped and counted late; the stream goes on."""
        window = ReorderWindow(size=4)
        released = []
        for sequence in [1, 2, 30000, 3, 4]:
            released += window.push(_packet(sequence))
        released += window.flush()
        self.assertEqual(_sequences(released), [1, 2, 3, 4])
        self.assertEqual((window.late, window.lost), (1, 0))

    def test_strayPacketAtEndCounted(self) -> None:
        """A far packet that is the last one seen is counted late at flush,
        not silently forgotten."""
        window = ReorderWindow(size=4)
        released = window.push(_packet(1)) + window.push(_packet(30000)) + window.flush()
        self.assertEqual(_sequences(released), [1])
        self.assertEqual(window.late, 1)
