"""Tests for recsvc.media.dtmf: RFC 4733 telephone-events and the log of digits pressed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media.dtmf import (
    MAX_DIGITS,
    Digit,
    DtmfError,
    DtmfLog,
    TelephoneEvent,
    build_event,
    event_name,
    parse_event,
)

_SETTINGS = settings(max_examples=200, deadline=None)

_EVENTS = st.builds(
    TelephoneEvent,
    event=st.integers(0, 255),
    end=st.booleans(),
    volume=st.integers(0, 63),
    duration=st.integers(0, 0xFFFF),
)


class ParseTests(SynchronousTestCase):
    def test_known_bytes(self) -> None:
        """
        The RFC 4733 layout: event, E bit, reserved bit, 6-bit volume, 16-bit
        big-endian duration.
        """
        self.assertEqual(
            parse_event(b"\x05\x8a\x03\x20"),
            TelephoneEvent(event=5, end=True, volume=10, duration=800),
        )
        self.assertEqual(
            parse_event(b"\x0b\x3f\x00\xa0"),
            TelephoneEvent(event=11, end=False, volume=63, duration=160),
        )

    def test_reserved_bit_ignored(self) -> None:
        """
        The reserved bit (0x40) is neither the end bit nor part of the volume.
        """
        self.assertEqual(
            parse_event(b"\x01\x40\x00\x01"),
            TelephoneEvent(event=1, end=False, volume=0, duration=1),
        )

    def test_first_event_of_several(self) -> None:
        """
        A payload carrying several events (redundancy) yields the first.
        """
        first = TelephoneEvent(3, False, 10, 400)
        second = TelephoneEvent(4, True, 10, 800)
        self.assertEqual(parse_event(build_event(first) + build_event(second)), first)

    @_SETTINGS
    @given(_EVENTS)
    def test_round_trip(self, event: TelephoneEvent) -> None:
        """
        Any event survives build_event then parse_event, in four bytes.
        """
        data = build_event(event)
        self.assertEqual(len(data), 4)
        self.assertEqual(parse_event(data), event)

    @_SETTINGS
    @given(st.binary(max_size=3))
    def test_short_payload(self, data: bytes) -> None:
        """
        A payload shorter than one event raises DtmfError.
        """
        self.assertRaises(DtmfError, parse_event, data)

    @_SETTINGS
    @given(st.binary(min_size=4, max_size=40))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """
        Any four or more bytes parse to an event whose fields are in range,
        and building it gives back the first four bytes but for the reserved
        bit.
        """
        event = parse_event(data)
        self.assertTrue(0 <= event.volume <= 63)
        self.assertEqual(build_event(event), bytes([data[0], data[1] & 0xBF]) + data[2:4])

    def test_dtmf_error_is_value_error(self) -> None:
        """
        DtmfError is a ValueError, so callers catching parse errors broadly
        still catch it.
        """
        self.assertTrue(issubclass(DtmfError, ValueError))


class EventNameTests(SynchronousTestCase):
    def test_digits_and_letters(self) -> None:
        """
        Events 0-15 are 0-9, *, #, A-D (RFC 4733 table 3).
        """
        self.assertEqual(
            [event_name(event) for event in range(16)],
            list("0123456789*#ABCD"),
        )

    def test_flash(self) -> None:
        """
        Event 16 is the hook flash.
        """
        self.assertEqual(event_name(16), "flash")

    def test_other_events(self) -> None:
        """
        Events beyond flash are named by their number.
        """
        self.assertEqual(event_name(17), "event 17")
        self.assertEqual(event_name(255), "event 255")


def _press(
    log: DtmfLog, event: int, timestamp: int, offset: int, durations: list[int],
    end_retransmissions: int = 3, ssrc: int = 1,
) -> list[bool]:
    """The packets of one key press as a phone sends them: growing
    durations, then the end packet sent three times."""
    results = [
        log.event(ssrc, timestamp, offset, TelephoneEvent(event, False, 10, duration))
        for duration in durations[:-1]
    ]
    results += [
        log.event(ssrc, timestamp, offset, TelephoneEvent(event, True, 10, durations[-1]))
        for _ in range(end_retransmissions)
    ]
    return results


class DtmfLogTests(SynchronousTestCase):
    def test_one_press_one_digit(self) -> None:
        """
        The packets of one key press (same timestamp, growing durations, the
        end packet retransmitted) are one digit with the final duration; only
        the first packet is reported as a new press.
        """
        log = DtmfLog()
        results = _press(log, 5, 16000, 800, [160, 320, 480, 640, 800])
        self.assertEqual(results, [True] + [False] * 6)
        self.assertEqual(log.digits, [Digit("5", 800, 800)])

    def test_longest_duration_kept(self) -> None:
        """
        Packets reordered on the way (a shorter duration after a longer one)
        do not shorten the digit.
        """
        log = DtmfLog()
        for duration in (160, 640, 320, 480):
            log.event(1, 0, 0, TelephoneEvent(9, False, 10, duration))
        self.assertEqual(log.digits, [Digit("9", 0, 640)])

    def test_first_offset_kept(self) -> None:
        """
        The digit's offset is the one given with its first packet.
        """
        log = DtmfLog()
        log.event(1, 500, 1000, TelephoneEvent(1, False, 10, 160))
        log.event(1, 500, 1999, TelephoneEvent(1, True, 10, 320))
        self.assertEqual(log.digits, [Digit("1", 1000, 320)])

    def test_same_press_twice_distinguished(self) -> None:
        """
        The same digit pressed twice (two timestamps) is listed twice.
        """
        log = DtmfLog()
        _press(log, 7, 8000, 0, [160, 400])
        _press(log, 7, 16000, 8000, [160, 480])
        self.assertEqual(log.digits, [Digit("7", 0, 400), Digit("7", 8000, 480)])

    def test_sequence_of_digits(self) -> None:
        """
        A number dialled during the call is listed in the order pressed,
        with * # and letters named.
        """
        log = DtmfLog()
        for index, event in enumerate((1, 10, 0, 11, 12, 16)):
            _press(log, event, 1000 * index, 1000 * index, [160, 320])
        self.assertEqual(
            [digit.digit for digit in log.digits], ["1", "*", "0", "#", "A", "flash"]
        )
        self.assertEqual([digit.offset_ticks for digit in log.digits],
                         [0, 1000, 2000, 3000, 4000, 5000])

    def test_same_timestamp_other_ssrc(self) -> None:
        """
        Presses are told apart by SSRC too: a restarted stream that reuses a
        timestamp starts a new digit.
        """
        log = DtmfLog()
        self.assertTrue(log.event(1, 100, 0, TelephoneEvent(2, False, 10, 160)))
        self.assertTrue(log.event(2, 100, 50, TelephoneEvent(2, False, 10, 160)))
        self.assertEqual(len(log.digits), 2)

    def test_digits_is_a_copy(self) -> None:
        """
        The digits listed are a snapshot: changing the list changes nothing.
        """
        log = DtmfLog()
        log.event(1, 0, 0, TelephoneEvent(1, False, 10, 160))
        log.digits.clear()
        self.assertEqual(len(log.digits), 1)

    def test_many_presses(self) -> None:
        """
        A long call with many presses keeps all of them (the memory of
        recent presses is bounded, the list is not).
        """
        log = DtmfLog()
        for index in range(200):
            _press(log, index % 10, 800 * index, 800 * index, [160, 320])
        self.assertEqual(len(log.digits), 200)
        self.assertEqual(log.digits[-1], Digit("9", 800 * 199, 320))

    @_SETTINGS
    @given(
        st.lists(st.tuples(st.integers(0, 16), st.lists(st.integers(1, 8000), min_size=1, max_size=8)),
                 max_size=20),
        st.randoms(use_true_random=False),
    )
    def test_presses(self, presses, random) -> None:
        """
        Whatever order the packets of distinct presses arrive in, each press
        is listed once with its longest duration.
        """
        packets = [
            (index, event, duration)
            for index, (event, durations) in enumerate(presses)
            for duration in durations
        ]
        random.shuffle(packets)
        log = DtmfLog()
        for index, event, duration in packets:
            log.event(1, 160 * index, index, TelephoneEvent(event, False, 10, duration))
        got = sorted(log.digits, key=lambda digit: digit.offset_ticks)
        self.assertEqual(
            got,
            [Digit(event_name(event), index, max(durations))
             for index, (event, durations) in enumerate(presses)],
        )


class DigitCapTests(SynchronousTestCase):
    def test_digits_capped(self) -> None:
        """
        A sender that makes every packet a new key press cannot grow the
        digit log without bound: beyond MAX_DIGITS presses are counted, not
        listed.
        """
        log = DtmfLog()
        for timestamp in range(MAX_DIGITS + 25):
            log.event(1, timestamp, timestamp, TelephoneEvent(1, False, 10, 160))
        self.assertEqual((len(log.digits), log.overflow), (MAX_DIGITS, 25))
