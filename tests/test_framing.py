"""Tests for recsvc.control.framing: the control byte stream cut into messages."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import Message, encode_message
from recsvc.control.framing import (
    MessageFramer,
    MessageTooLong,
    begins_with_start,
    begins_with_stop,
    could_begin_messages,
    split_messages,
)

FRAMER_SETTINGS = settings(max_examples=200, deadline=None)

TERMINATORS = [b"\r\n", b"\n", b"\x00"]


def terminated_framer(terminator: bytes = b"\r\n", **kwargs) -> MessageFramer:
    """A framer that has seen one whole message ended by ``terminator``."""
    framer = MessageFramer(**kwargs)
    assert framer.feed(b"cmd=Hello&id=0" + terminator) == [b"cmd=Hello&id=0"]
    return framer


class BareTests(SynchronousTestCase):
    """Peers that send one message per write with no terminator."""

    def test_one_message_per_feed(self) -> None:
        """
        Each read of a bare peer is a whole message, handed over at once.
        """
        framer = MessageFramer()
        self.assertEqual(framer.feed(b"cmd=RecordStartRequest&id=1"),
                         [b"cmd=RecordStartRequest&id=1"])
        self.assertEqual(framer.feed(b"cmd=RecordStopRequest&id=1"),
                         [b"cmd=RecordStopRequest&id=1"])

    def test_bare_terminator(self) -> None:
        """
        A peer that has never sent a terminator is answered with none.
        """
        framer = MessageFramer()
        framer.feed(b"cmd=A&id=1")
        self.assertEqual(framer.terminator, b"")

    def test_run_together(self) -> None:
        """
        Several messages in one read with no separator are cut where each
        C{cmd=} begins.
        """
        self.assertEqual(MessageFramer().feed(b"cmd=A&id=1cmd=B&id=2"),
                         [b"cmd=A&id=1", b"cmd=B&id=2"])

    def test_run_together_with_ampersand(self) -> None:
        """
        Messages joined by C{&} are cut too, the joining C{&} dropped.
        """
        self.assertEqual(MessageFramer().feed(b"cmd=A&id=1&cmd=B&id=2"),
                         [b"cmd=A&id=1", b"cmd=B&id=2"])

    def test_space_before_equals_starts_message(self) -> None:
        """
        C{cmd =} (blank before the C{=}) also begins a message.
        """
        self.assertEqual(MessageFramer().feed(b"cmd=A&id=1cmd =B&id=2"),
                         [b"cmd=A&id=1", b"cmd =B&id=2"])

    def test_empty_feed(self) -> None:
        """
        An empty read yields no message.
        """
        self.assertEqual(MessageFramer().feed(b""), [])

    def test_long_bare_message(self) -> None:
        """
        A single bare message over max_length is MessageTooLong.
        """
        framer = MessageFramer(max_length=20)
        self.assertEqual(framer.feed(b"cmd=A&id=" + b"1" * 11), [b"cmd=A&id=" + b"1" * 11])
        self.assertRaises(MessageTooLong, framer.feed, b"cmd=A&id=" + b"1" * 12)

    def test_run_together_short_messages(self) -> None:
        """
        The limit applies per message: short messages run together into a
        longer read are accepted.
        """
        framer = MessageFramer(max_length=12)
        self.assertEqual(framer.feed(b"cmd=A&id=1cmd=B&id=2cmd=C&id=3"),
                         [b"cmd=A&id=1", b"cmd=B&id=2", b"cmd=C&id=3"])


class TerminatedTests(SynchronousTestCase):
    """Peers that end each message with CRLF, LF or NUL."""

    def test_terminators(self) -> None:
        """
        A message ended by CRLF, LF or NUL is handed over without the
        terminator, and the terminator becomes the reply style.
        """
        for terminator in TERMINATORS:
            framer = MessageFramer()
            self.assertEqual(framer.feed(b"cmd=A&id=1" + terminator), [b"cmd=A&id=1"])
            self.assertEqual(framer.terminator, terminator)

    def test_several_in_one_read(self) -> None:
        """
        Several terminated messages in one read are all handed over, in order.
        """
        for terminator in TERMINATORS:
            data = terminator.join([b"cmd=A&id=1", b"cmd=B&id=2", b"cmd=C&id=3"]) + terminator
            self.assertEqual(MessageFramer().feed(data),
                             [b"cmd=A&id=1", b"cmd=B&id=2", b"cmd=C&id=3"])

    def test_run_together_then_terminated(self) -> None:
        """
        Messages run together in one terminated line are cut at C{cmd=}.
        """
        self.assertEqual(MessageFramer().feed(b"cmd=A&id=1cmd=B&id=2\n"),
                         [b"cmd=A&id=1", b"cmd=B&id=2"])

    def test_split_message_reassembled(self) -> None:
        """
        Once the peer is known to use terminators, a message split across
        reads waits for its terminator and is handed over whole.
        """
        for terminator in TERMINATORS:
            framer = terminated_framer(terminator)
            self.assertEqual(framer.feed(b"cmd=RecordStop"), [])
            self.assertEqual(framer.feed(b"Request&id"), [])
            self.assertEqual(framer.feed(b"=7" + terminator + b"cmd=B"),
                             [b"cmd=RecordStopRequest&id=7"])
            self.assertEqual(framer.feed(b"&id=8" + terminator), [b"cmd=B&id=8"])

    def test_split_inside_crlf(self) -> None:
        """
        A CRLF whose CR and LF arrive in different reads yields the message
        once, and no empty message for the LF.
        """
        framer = terminated_framer(b"\r\n")
        messages = framer.feed(b"cmd=A&id=1\r")
        messages += framer.feed(b"\ncmd=B&id=2\r\n")
        self.assertEqual(messages, [b"cmd=A&id=1", b"cmd=B&id=2"])

    def test_split_inside_crlf_keeps_style(self) -> None:
        """
        A CRLF peer whose CR and LF arrive in different reads is still
        answered in CRLF: a lone CR at the end of a read is not taken as the
        reply style (a CRLF line reader would never see such a reply end).
        """
        framer = terminated_framer(b"\r\n")
        messages = framer.feed(b"cmd=A&id=1\r")
        # The style in force when a reply to these messages is written.
        self.assertEqual(framer.terminator, b"\r\n")
        messages += framer.feed(b"\n")
        self.assertEqual(messages, [b"cmd=A&id=1"])
        self.assertEqual(framer.terminator, b"\r\n")

    def test_blank_frames_ignored(self) -> None:
        """
        Empty lines and runs of terminators yield no empty messages.
        """
        framer = MessageFramer()
        self.assertEqual(framer.feed(b"\r\n\n\x00\r\n"), [])
        self.assertEqual(framer.feed(b"\r\ncmd=A&id=1\r\n\r\n  \r\ncmd=B&id=2\n\n"),
                         [b"cmd=A&id=1", b"cmd=B&id=2"])

    def test_unterminated_run_too_long(self) -> None:
        """
        For a terminated peer, unterminated bytes beyond max_length are
        MessageTooLong; up to max_length they wait.
        """
        framer = terminated_framer(max_length=20)
        self.assertEqual(framer.feed(b"x" * 20), [])
        self.assertRaises(MessageTooLong, framer.feed, b"x")

    def test_long_terminated_message(self) -> None:
        """
        A single terminated message over max_length, arriving in one read, is
        MessageTooLong.
        """
        framer = MessageFramer(max_length=20)
        self.assertEqual(framer.feed(b"cmd=A&id=" + b"1" * 11 + b"\n"),
                         [b"cmd=A&id=" + b"1" * 11])
        self.assertRaises(MessageTooLong, framer.feed, b"cmd=A&id=" + b"1" * 12 + b"\n")


class SplitMessagesTests(SynchronousTestCase):
    """split_messages on one frame."""

    def test_leading_junk_kept(self) -> None:
        """
        Bytes before the first C{cmd=} are kept as a piece of their own, for
        the decoder to refuse, rather than silently dropped.
        """
        self.assertEqual(split_messages(b"junk cmd=A&id=1"), [b"junk", b"cmd=A&id=1"])

    def test_escaped_equals_not_cut(self) -> None:
        """
        A value spelling C{cmd%3D} (an escaped C{=}) is not a message start.
        """
        self.assertEqual(split_messages(b"cmd=A&reason=cmd%3Dx"), [b"cmd=A&reason=cmd%3Dx"])


chunk_lists = st.lists(st.binary(max_size=64), max_size=20)


@st.composite
def streams_and_cuts(draw):
    """A byte stream of pieces, most ended by a terminator, and cut points."""
    pieces = draw(st.lists(
        st.tuples(st.binary(max_size=40), st.sampled_from(TERMINATORS + [b""])),
        max_size=12,
    ))
    stream = b"".join(body + end for body, end in pieces)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=10).map(sorted))
    return stream, cuts


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:])]


KNOWN_KEYS = ["id", "device", "dir", "codec", "result", "reason", "server", "port",
              "local_number", "local_name", "remote_number", "remote_name"]
encoded_messages = st.builds(
    Message,
    cmd=st.sampled_from(["RecordStartRequest", "RecordStopRequest", "RecordStopResponse"]),
    fields=st.lists(st.tuples(st.sampled_from(KNOWN_KEYS), st.text(max_size=12)),
                    max_size=8).map(tuple),
).map(encode_message)


class FramerPropertyTests(SynchronousTestCase):
    """Hypothesis properties of MessageFramer."""

    @FRAMER_SETTINGS
    @given(chunk_lists, st.integers(1, 100))
    @example([b"\r", b"\n" * 200, b"cmd=" * 40], 10)
    def test_arbitrary_chunks(self, chunks: list[bytes], max_length: int) -> None:
        """
        Feeding any bytes in any chunks raises nothing but MessageTooLong,
        and every message handed over is non-empty and within max_length.
        """
        framer = MessageFramer(max_length=max_length)
        for chunk in chunks:
            try:
                messages = framer.feed(chunk)
            except MessageTooLong:
                continue
            for message in messages:
                self.assertTrue(0 < len(message) <= max_length, message)

    @FRAMER_SETTINGS
    @given(st.sampled_from(TERMINATORS), streams_and_cuts())
    @example(b"\r\n", (b"cmd=A&id=1\r\ncmd=B&id=2\r\n", [11, 12, 13]))
    def test_split_anywhere(self, terminator: bytes, stream_and_cuts) -> None:
        """
        For a peer known to use terminators, cutting the stream at any points
        gives the same messages as feeding it whole (once a final terminator
        flushes what is left).
        """
        stream, cuts = stream_and_cuts
        whole = terminated_framer(terminator)
        expected = whole.feed(stream) + whole.feed(terminator)
        pieces = terminated_framer(terminator)
        got = [message for chunk in cut(stream, cuts) for message in pieces.feed(chunk)]
        got += pieces.feed(terminator)
        self.assertEqual(got, expected)

    @FRAMER_SETTINGS
    @given(st.sampled_from(TERMINATORS), st.lists(encoded_messages, min_size=1, max_size=6),
           st.data())
    def test_encoded_messages_framed(self, terminator: bytes, wire: list[bytes], data) -> None:
        """
        For a peer known to use terminators, messages written by
        encode_message and ended by a terminator come out of the framer byte
        for byte, however the stream is cut.
        """
        stream = b"".join(message + terminator for message in wire)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8).map(sorted))
        framer = terminated_framer(terminator)
        got = [message for chunk in cut(stream, cuts) for message in framer.feed(chunk)]
        self.assertEqual(got, wire)


class FirstBytesTests(SynchronousTestCase):
    """What the listener may tell from a connection's first bytes."""

    @FRAMER_SETTINGS
    @given(st.builds(Message, cmd=st.text(min_size=1),
                     fields=st.lists(st.tuples(st.from_regex(r"[a-z_]+", fullmatch=True),
                                               st.text()), max_size=4).map(tuple)),
           st.sampled_from([b"", b" ", b"\r\n", b"\x00", b"\t\n "]),
           st.sampled_from([b""] + TERMINATORS), st.integers(min_value=1, max_value=64))
    def test_every_start_of_a_message_is_let_in(self, message: Message, blanks: bytes,
                                                  terminator: bytes, cut: int) -> None:
        """
        However much of a connection's first message has come (its first
        bytes cut anywhere, blanks before it, any framing), it could begin
        control messages: no phone is refused for what it sent.
        """
        first = (blanks + encode_message(message) + terminator)[:cut]
        self.assertTrue(could_begin_messages(first))

    def test_what_no_phone_sends_is_told_apart(self) -> None:
        """Bytes that cannot begin "cmd=" (after blanks) cannot be a phone."""
        for first in (b"GET / HTTP/1.1", b"\x16\x03\x01\x02", b"cx", b"\r\ncmdx", b"id=1&cmd=x",
                      b"CMD=RecordStartRequest"):
            self.assertFalse(could_begin_messages(first), first)

    def test_a_start_is_told_from_its_first_bytes(self) -> None:
        """A first message that is a RecordStartRequest, in any framing and
        spacing, is recognised (and nothing else is)."""
        for first in (b"cmd=RecordStartRequest&id=1", b"\r\ncmd = RecordStartRequest\n",
                      b"cmd=RecordStartRequest", b"cmd=RecordStartRequest\x00cmd=X"):
            self.assertTrue(begins_with_start(first), first)
        for first in (b"cmd=RecordStartRequestX&id=1", b"cmd=RecordStopRequest&id=1",
                      b"cmd=RecordStartReq", b"xcmd=RecordStartRequest"):
            self.assertFalse(begins_with_start(first), first)

    def test_a_stop_is_told_from_its_first_bytes(self) -> None:
        """A first message that is a RecordStopRequest is recognised (a
        phone that reconnected to stop its recording), nothing else."""
        for first in (b"cmd=RecordStopRequest&id=1", b"\r\ncmd = RecordStopRequest\n",
                      b"cmd=RecordStopRequest"):
            self.assertTrue(begins_with_stop(first), first)
        for first in (b"cmd=RecordStopRequestX&id=1", b"cmd=RecordStartRequest&id=1",
                      b"cmd=RecordStopReq", b"xcmd=RecordStopRequest"):
            self.assertFalse(begins_with_stop(first), first)
