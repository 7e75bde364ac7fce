"""Tests for recsvc.control.commands: control messages <-> frozen commands."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import (
    FAILED,
    START_REQUEST,
    START_RESPONSE,
    STOP_REQUEST,
    STOP_RESPONSE,
    SUCCESS,
    CallParties,
    Message,
    MessageError,
    StartRequest,
    StartResponse,
    StopRequest,
    StopResponse,
    decode_message,
    encode_command,
    encode_message,
    encode_value,
    failure_reply,
    parse_command,
    to_message,
)

# Parsers are cheap; a few hundred examples find the edges without slowing
# the suite down.
PARSER_SETTINGS = settings(max_examples=300, deadline=None)

GUIDE_START = (
    b"cmd=RecordStartRequest&id=1234567&device=0c383e123456"
    b"&remote_number=+4930123456&remote_name=Alice%20Smith"
    b"&local_number=201&local_name=Bob&dir=in&codec=PCMA"
)
GUIDE_STOP = (
    b"cmd=RecordStopRequest&id=1234567&remote_number=+4930999888"
    b"&remote_name=Carol&local_number=201&local_name=Bob&reason=hangup"
)


def parse(data: bytes):
    """The command carried by the wire bytes of one message."""
    return parse_command(decode_message(data))


def parse_error(testCase: SynchronousTestCase, data: bytes) -> MessageError:
    """The MessageError that decoding and parsing ``data`` raises."""
    return testCase.assertRaises(MessageError, parse, data)


class DecodeMessageTests(SynchronousTestCase):
    """decode_message: the key=value&... wire form into a Message."""

    def test_guide_start(self) -> None:
        """
        The Start request printed in the guide decodes to its cmd and the
        other fields in the order they were sent.
        """
        self.assertEqual(
            decode_message(GUIDE_START),
            Message(START_REQUEST, (
                ("id", "1234567"),
                ("device", "0c383e123456"),
                ("remote_number", "+4930123456"),
                ("remote_name", "Alice Smith"),
                ("local_number", "201"),
                ("local_name", "Bob"),
                ("dir", "in"),
                ("codec", "PCMA"),
            )),
        )

    def test_plus_stays_plus(self) -> None:
        """
        A C{+} is not a space (this is not form encoding): it begins
        international numbers and survives decoding.
        """
        message = decode_message(b"cmd=RecordStartRequest&id=1&remote_number=+49+30")
        self.assertEqual(message.get("remote_number"), "+49+30")

    def test_percent_decoded(self) -> None:
        """
        C{%XX} escapes are decoded, as UTF-8 where they spell multi-byte
        characters, and an escaped C{&} or C{=} does not split the message.
        """
        message = decode_message(
            b"cmd=RecordStartRequest&id=1&remote_name=J%C3%BCrgen%20%26%20Co%3D%25"
        )
        self.assertEqual(message.get("remote_name"), "J\u00fcrgen & Co=%")

    def test_spaces_around_keys_and_values(self) -> None:
        """
        Blanks around keys, values and the whole message are ignored.
        """
        message = decode_message(b"  cmd = RecordStopRequest &  id = 42\t& reason = hangup \r\n")
        self.assertEqual(
            message, Message(STOP_REQUEST, (("id", "42"), ("reason", "hangup")))
        )

    def test_space_before_equals(self) -> None:
        """
        C{port =123}, as the guide prints it, is the field C{port}.
        """
        message = decode_message(b"cmd=RecordStartResponse&id=1&server=192.0.2.1&port =123")
        self.assertEqual(message.get("port"), "123")

    def test_inner_spaces_kept(self) -> None:
        """
        Spaces inside a value are the value's own and are kept.
        """
        message = decode_message(b"cmd=RecordStopRequest&id=1&reason=disk  full")
        self.assertEqual(message.get("reason"), "disk  full")

    def test_empty_message(self) -> None:
        """
        A message of nothing but blanks is a MessageError, not an empty
        Message.
        """
        error = self.assertRaises(MessageError, decode_message, b" \r\n\x00")
        self.assertEqual(error.reason, "empty message")

    def test_not_beginning_with_cmd(self) -> None:
        """
        A message whose first field is not C{cmd} is refused; the id it
        carries is still salvaged.
        """
        error = self.assertRaises(MessageError, decode_message, b"id=5&cmd=RecordStopRequest")
        self.assertEqual(error.reason, "message does not begin with cmd=")
        self.assertEqual(error.recording_id, "5")

    def test_field_without_equals(self) -> None:
        """
        A field with no C{=} is malformed; the cmd and id read before it are
        salvaged so that a failed reply can name the recording.
        """
        error = self.assertRaises(
            MessageError, decode_message, b"cmd=RecordStopRequest&id=9&garbage"
        )
        self.assertIn("malformed field", error.reason)
        self.assertEqual((error.cmd, error.recording_id), (STOP_REQUEST, "9"))

    def test_empty_cmd(self) -> None:
        """
        An empty cmd is refused, keeping the id.
        """
        error = self.assertRaises(MessageError, decode_message, b"cmd=&id=3")
        self.assertEqual((error.reason, error.cmd, error.recording_id), ("empty cmd", None, "3"))


    def test_invalid_utf8_ids_stay_distinct(self) -> None:
        """
        Bytes that are not UTF-8 in a value, raw or percent-encoded, become
        ``%XX`` (their hex) rather than all one U+FFFD: two different raw
        ids stay two ids, and valid text around them is kept as it is.
        """
        ids = [parse(b"cmd=RecordStopRequest&id=" + raw).recording_id
               for raw in (b"\xff1", b"\xfe1", b"%FF1", b"%FE1", b"\xc3\xa91\xff")]
        self.assertEqual(ids, ["%FF1", "%FE1", "%FF1", "%FE1", "\u00e91%FF"])

    def test_invalid_utf8_in_other_fields(self) -> None:
        """
        Invalid bytes in a name, or in a field's key, never raise anything
        but MessageError, and a name keeps its valid characters.
        """
        start = parse(b"cmd=RecordStartRequest&id=1&codec=PCMA&remote_name=Jo\xe9")
        self.assertEqual(start.parties.remote_name, "Jo%E9")
        parse_error(self, b"cmd=RecordStopRequest&i\xffd=1")


class ParseStartTests(SynchronousTestCase):
    """parse_command on RecordStartRequest."""

    def test_guide_start(self) -> None:
        """
        The guide's Start request becomes a StartRequest with every field in
        its place.
        """
        self.assertEqual(
            parse(GUIDE_START),
            StartRequest(
                recording_id="1234567",
                device="0c383e123456",
                codec="PCMA",
                direction="in",
                parties=CallParties(
                    local_number="201",
                    local_name="Bob",
                    remote_number="+4930123456",
                    remote_name="Alice Smith",
                ),
            ),
        )

    def test_missing_id(self) -> None:
        """
        A Start with no id is a MessageError C{"missing id"} that still says
        which command it was.
        """
        error = parse_error(self, b"cmd=RecordStartRequest&device=x&dir=in&codec=PCMA")
        self.assertEqual(str(error), "missing id")
        self.assertEqual((error.reason, error.cmd, error.recording_id),
                         ("missing id", START_REQUEST, None))

    def test_blank_id_is_missing(self) -> None:
        """
        An id of only blanks is no id.
        """
        error = parse_error(self, b"cmd=RecordStartRequest&id=%20%09&dir=in&codec=PCMA")
        self.assertEqual(error.reason, "missing id")

    def test_unknown_command(self) -> None:
        """
        An unknown cmd is a MessageError that names it and salvages the id.
        """
        error = parse_error(self, b"cmd=RecordPauseRequest&id=77")
        self.assertEqual(error.reason, "unknown command RecordPauseRequest")
        self.assertEqual((error.cmd, error.recording_id), ("RecordPauseRequest", "77"))

    def test_unknown_command_without_id(self) -> None:
        """
        An unknown cmd without an id is refused with no id to salvage.
        """
        error = parse_error(self, b"cmd=Hello")
        self.assertEqual((error.cmd, error.recording_id), ("Hello", None))

    def test_codec_upper_cased(self) -> None:
        """
        The codec is matched case-insensitively: it is stored upper-cased.
        """
        for raw, codec in [(b"pcmu", "PCMU"), (b"Pcma", "PCMA"), (b"g722", "G722")]:
            command = parse(b"cmd=RecordStartRequest&id=1&dir=in&codec=" + raw)
            self.assertEqual(command.codec, codec)

    def test_missing_codec(self) -> None:
        """
        A Start without a codec is refused (the stream could not be decoded),
        keeping the id for the failed reply.
        """
        error = parse_error(self, b"cmd=RecordStartRequest&id=4&dir=in")
        self.assertEqual((error.reason, error.recording_id), ("missing codec", "4"))

    def test_directions(self) -> None:
        """
        C{dir=in} and C{dir=out}, in any case, become C{"in"} and C{"out"}.
        """
        for raw, direction in [(b"in", "in"), (b"out", "out"), (b"IN", "in"), (b"Out", "out")]:
            command = parse(b"cmd=RecordStartRequest&id=1&codec=PCMA&dir=" + raw)
            self.assertEqual(command.direction, direction)

    def test_missing_dir_is_unknown(self) -> None:
        """
        A missing or empty dir does not lose the call: it is recorded as
        C{"unknown"}.
        """
        for data in [b"cmd=RecordStartRequest&id=1&codec=PCMA",
                     b"cmd=RecordStartRequest&id=1&codec=PCMA&dir="]:
            self.assertEqual(parse(data).direction, "unknown")

    def test_bad_dir(self) -> None:
        """
        A dir that is present but neither in nor out is refused, naming it.
        """
        error = parse_error(self, b"cmd=RecordStartRequest&id=8&codec=PCMA&dir=sideways")
        self.assertEqual(error.reason, "bad dir sideways")
        self.assertEqual((error.cmd, error.recording_id), (START_REQUEST, "8"))


class ParseStopTests(SynchronousTestCase):
    """parse_command on RecordStopRequest and the responses."""

    def test_guide_stop(self) -> None:
        """
        The guide's Stop request carries its reason and every party field as
        an update, in the order of PARTY_FIELDS.
        """
        self.assertEqual(
            parse(GUIDE_STOP),
            StopRequest(
                recording_id="1234567",
                reason="hangup",
                updates=(
                    ("local_number", "201"),
                    ("local_name", "Bob"),
                    ("remote_number", "+4930999888"),
                    ("remote_name", "Carol"),
                ),
            ),
        )

    def test_only_present_fields_update(self) -> None:
        """
        Only the party fields the Stop carries are updates: applied to the
        Start's parties they replace those and keep the rest.
        """
        command = parse(b"cmd=RecordStopRequest&id=5&remote_number=+4989777")
        self.assertEqual(command.updates, (("remote_number", "+4989777"),))
        self.assertEqual(command.reason, "")
        start = CallParties("201", "Bob", "+4930123456", "Alice")
        self.assertEqual(
            start.updated(command.updates),
            CallParties("201", "Bob", "+4989777", "Alice"),
        )

    def test_bare_stop(self) -> None:
        """
        A Stop with only cmd and id is valid and updates nothing.
        """
        self.assertEqual(parse(b"cmd=RecordStopRequest&id=5"), StopRequest("5"))

    def test_stop_reason_decoded(self) -> None:
        """
        The Stop's reason is percent-decoded.
        """
        command = parse(b"cmd=RecordStopRequest&id=5&reason=user%20hung%20up")
        self.assertEqual(command.reason, "user hung up")

    def test_stop_missing_id(self) -> None:
        """
        A Stop without an id is refused with C{"missing id"}.
        """
        error = parse_error(self, b"cmd=RecordStopRequest&reason=x")
        self.assertEqual((error.reason, error.cmd), ("missing id", STOP_REQUEST))

    def test_stop_response(self) -> None:
        """
        The phone's RecordStopResponse parses with its result lower-cased.
        """
        self.assertEqual(
            parse(b"cmd=RecordStopResponse&id=5&result=Success"),
            StopResponse("5", SUCCESS),
        )

    def test_start_response(self) -> None:
        """
        A RecordStartResponse parses, including the guide's C{port =xxx}.
        """
        self.assertEqual(
            parse(b"cmd=RecordStartResponse&id=5&result=success&reason=&server=192.0.2.1"
                  b"&port =41000"),
            StartResponse("5", SUCCESS, "", "192.0.2.1", 41000),
        )

    def test_start_response_non_numeric_port(self) -> None:
        """
        A port that is not a number is no port (None), not an exception.
        """
        command = parse(b"cmd=RecordStartResponse&id=5&result=success&port=abc")
        self.assertIsNone(command.port)

    def test_start_response_superscript_port(self) -> None:
        """
        A port made of characters that C{str.isdigit} accepts but C{int}
        does not (superscript two) is no port either: parsing raises nothing
        but MessageError.
        """
        command = parse(
            "cmd=RecordStartResponse&id=5&result=success&port=\u00b2".encode("utf-8")
        )
        self.assertIsNone(command.port)


class FailureReplyTests(SynchronousTestCase):
    """failure_reply: the failed reply owed for a refused message."""

    def reply(self, data: bytes) -> Message | None:
        return failure_reply(parse_error(self, data))

    def test_start_without_id(self) -> None:
        """
        A Start with no id still gets a failed RecordStartResponse (with an
        empty id) so the phone shows its prompt, giving the reason.
        """
        reply = self.reply(b"cmd=RecordStartRequest&dir=in&codec=PCMA")
        self.assertEqual(
            reply,
            Message(START_RESPONSE, (
                ("id", ""), ("result", FAILED), ("reason", "missing id"),
                ("server", ""), ("port", ""),
            )),
        )
        self.assertEqual(
            encode_message(reply),
            b"cmd=RecordStartResponse&id=&result=failed&reason=missing id&server=&port=",
        )

    def test_start_refused_with_id(self) -> None:
        """
        A refused Start with an id gets a failed RecordStartResponse naming it.
        """
        reply = self.reply(b"cmd=RecordStartRequest&id=12&dir=up&codec=PCMA")
        self.assertEqual(reply, to_message(StartResponse("12", FAILED, "bad dir up")))

    def test_unknown_request_with_id(self) -> None:
        """
        An unknown C{<X>Request} with an id is answered by a failed
        C{<X>Response} for that id.
        """
        self.assertEqual(
            self.reply(b"cmd=RecordPauseRequest&id=77"),
            Message("RecordPauseResponse", (
                ("id", "77"), ("result", FAILED),
                ("reason", "unknown command RecordPauseRequest"),
            )),
        )

    def test_unknown_command_with_id(self) -> None:
        """
        An unknown cmd not ending in Request is answered by C{<cmd>Response}.
        """
        reply = self.reply(b"cmd=Hello&id=3")
        self.assertEqual(reply.cmd, "HelloResponse")
        self.assertEqual(reply.get("id"), "3")
        self.assertEqual(reply.get("result"), FAILED)

    def test_unknown_command_without_id(self) -> None:
        """
        An unknown command without an id gets no reply: there is nothing to
        name.
        """
        self.assertIsNone(self.reply(b"cmd=RecordPauseRequest"))

    def test_stop_without_id(self) -> None:
        """
        A Stop without an id gets no reply.
        """
        self.assertIsNone(self.reply(b"cmd=RecordStopRequest&reason=x"))

    def test_responses_get_no_reply(self) -> None:
        """
        A refused response, known or not, is never answered (no reply loops).
        """
        self.assertIsNone(self.reply(b"cmd=RecordStopResponse&result=success"))
        self.assertIsNone(self.reply(b"cmd=RecordStartResponse&result=success"))
        self.assertIsNone(self.reply(b"cmd=RecordPauseResponse&id=4"))

    def test_undecodable_gets_no_reply(self) -> None:
        """
        A message with no readable cmd gets no reply.
        """
        self.assertIsNone(failure_reply(
            self.assertRaises(MessageError, decode_message, b"hello world")
        ))


class EncodeTests(SynchronousTestCase):
    """encode_value, encode_message, to_message and encode_command."""

    def test_readable_value(self) -> None:
        """
        A plain value with inner spaces and a C{+} is written as it is.
        """
        self.assertEqual(encode_value("disk full"), "disk full")
        self.assertEqual(encode_value("+4930123456"), "+4930123456")

    def test_escapes(self) -> None:
        """
        The separators, the escape character, CR, LF and NUL are escaped.
        """
        self.assertEqual(encode_value("a&b=c%d\re\nf\x00g"), "a%26b%3Dc%25d%0De%0Af%00g")

    def test_surrounding_spaces_escaped(self) -> None:
        """
        Leading and trailing spaces are escaped, which the peer's parser
        would otherwise strip; inner ones are not.
        """
        self.assertEqual(encode_value("  a b "), "%20%20a b%20")
        self.assertEqual(encode_value(" "), "%20")

    def test_start_response_field_order(self) -> None:
        """
        A StartResponse is written with the guide's field order.
        """
        self.assertEqual(
            encode_command(StartResponse("1234567", SUCCESS, "", "192.0.2.10", 41000)),
            b"cmd=RecordStartResponse&id=1234567&result=success&reason="
            b"&server=192.0.2.10&port=41000",
        )

    def test_stop_request_reason(self) -> None:
        """
        A server-side Stop carries its reason, readable.
        """
        self.assertEqual(
            encode_command(StopRequest("9", reason="disk full")),
            b"cmd=RecordStopRequest&id=9&reason=disk full",
        )

    def test_stop_response(self) -> None:
        """
        A StopResponse is C{cmd&id&result}, with a reason only if there is one.
        """
        self.assertEqual(encode_command(StopResponse("9", SUCCESS)),
                         b"cmd=RecordStopResponse&id=9&result=success")
        self.assertEqual(encode_command(StopResponse("9", FAILED, "unknown id")),
                         b"cmd=RecordStopResponse&id=9&result=failed&reason=unknown id")

    def test_commands_round_trip(self) -> None:
        """
        Every command written by encode_command is parsed back to itself.
        """
        commands = [
            StartRequest("1", "0c383e123456", "PCMA", "out",
                         CallParties("201", "B & B", "+4930", " Alice ")),
            StartResponse("1", SUCCESS, "", "192.0.2.10", 41000),
            StartResponse("1", FAILED, "no free port=sorry"),
            StopRequest("1", "disk full", (("remote_number", "+4989"),)),
            StopResponse("1", SUCCESS),
            StopResponse("1", FAILED, "unknown id"),
        ]
        for command in commands:
            self.assertEqual(parse(encode_command(command)), command)


field_keys = st.from_regex(r"[A-Za-z0-9_]+", fullmatch=True)
# Surrogates are not text that UTF-8 can carry; everything else is allowed.
field_values = st.text()
messages = st.builds(
    Message,
    cmd=st.text(min_size=1),
    fields=st.lists(st.tuples(field_keys, field_values), max_size=8).map(tuple),
)

KNOWN_KEYS = ["id", "device", "dir", "codec", "result", "reason", "server", "port",
              "local_number", "local_name", "remote_number", "remote_name"]
# Well-formed messages of the known commands with arbitrary values: reaches
# the command parsers, which random bytes rarely do.
known_messages = st.builds(
    Message,
    cmd=st.sampled_from([START_REQUEST, START_RESPONSE, STOP_REQUEST, STOP_RESPONSE]),
    fields=st.lists(
        st.tuples(st.sampled_from(KNOWN_KEYS), st.text(max_size=12)), max_size=10
    ).map(tuple),
)


class PropertyTests(SynchronousTestCase):
    """Hypothesis properties of the message codec."""

    @PARSER_SETTINGS
    @given(messages)
    @example(Message(" ", (("a", " \t\r\n\x00 x \x00\t "),)))
    @example(Message("cmd", (("cmd", "%41+%"), ("id", "a=b&c"))))
    @example(Message("\u00e9", (("x", "\x85\u00a0\u3000"),)))
    def test_round_trip(self, message: Message) -> None:
        """
        Any message with non-empty cmd, word keys and arbitrary text values
        decodes back to itself from its encoded form.
        """
        self.assertEqual(decode_message(encode_message(message)), message)

    @PARSER_SETTINGS
    @given(st.binary(max_size=200))
    @example(b"cmd=RecordStartRequest&id=1&codec=%FF%FE&dir=%C0")
    @example(b"\xff\xfe&&&===%%%")
    def test_arbitrary_bytes_decode(self, data: bytes) -> None:
        """
        decode_message raises nothing but MessageError, whatever the bytes.
        """
        try:
            decode_message(data)
        except MessageError:
            pass

    @PARSER_SETTINGS
    @given(st.binary(max_size=200))
    def test_arbitrary_bytes_parse(self, data: bytes) -> None:
        """
        decode_message then parse_command raise nothing but MessageError,
        whatever the bytes.
        """
        try:
            parse_command(decode_message(data))
        except MessageError:
            pass

    @PARSER_SETTINGS
    @given(known_messages)
    @example(Message(START_RESPONSE, (("id", "1"), ("port", "\u00b2"))))
    def test_arbitrary_fields_parse(self, message: Message) -> None:
        """
        parse_command raises nothing but MessageError for a known command
        with any fields and values.
        """
        try:
            parse_command(decode_message(encode_message(message)))
        except MessageError:
            pass

    @PARSER_SETTINGS
    @given(known_messages)
    @example(Message(START_REQUEST, (("id", "1"), ("codec", "PCMA"))))  # (atheris found it)
    def test_parsed_command_reencodes(self, message: Message) -> None:
        """
        A command that parses is sent as a message that parses back to the
        same command: what the simulated phones send is what they mean. (A
        Start without dir reads as direction unknown, and is sent without.)
        """
        try:
            command = parse_command(message)
        except MessageError:
            return
        self.assertEqual(parse_command(decode_message(encode_command(command))), command)

