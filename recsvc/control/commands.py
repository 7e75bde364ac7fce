"""Control messages of the Fanvil recording protocol: bytes <-> frozen values.

Pure code, no Twisted: the wire format is ``key=value`` pairs joined by ``&``,
the first pair ``cmd=...``; values are percent-decoded with ``%XX`` rules only.
"""

from __future__ import annotations

import codecs
import re
from typing import Union
from urllib.parse import unquote, unquote_to_bytes

import attrs

START_REQUEST = "RecordStartRequest"
START_RESPONSE = "RecordStartResponse"
STOP_REQUEST = "RecordStopRequest"
STOP_RESPONSE = "RecordStopResponse"

SUCCESS = "success"
FAILED = "failed"

# The call-party fields a Stop may carry to replace the Start's values.
PARTY_FIELDS = ("local_number", "local_name", "remote_number", "remote_name")

# Only ASCII blanks are "spaces around keys and values"; other white space in
# a value (a name) is the value's own.
_BLANKS = " \t\r\n\x00"
_KEY = re.compile(r"[A-Za-z0-9_.\-]+")
# Characters a value may not carry raw: the separators, the escape itself,
# the framing terminators and other control characters.
_MUST_ESCAPE = re.compile(r"[&=%\x00-\x1f\x7f]")


def _percent_invalid(error: UnicodeError) -> tuple[str, int]:
    """A codecs error handler: bytes that are not UTF-8 become ``%XX``, so
    that two different raw values (ids above all) stay different, where
    U+FFFD would make them one."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start:error.end]
    return "".join(f"%{byte:02X}" for byte in bad), error.end


# (Registered once, by this name, for bytes.decode and unquote.)
PERCENT_INVALID = "recsvc.percent-invalid"
codecs.register_error(PERCENT_INVALID, _percent_invalid)


class MessageError(ValueError):
    """A message that cannot be decoded or is not a valid command.

    ``cmd`` and ``recording_id`` are what could be read of the message, so that
    the caller can still send a ``failed`` reply naming the recording.
    """

    def __init__(
        self, reason: str, cmd: str | None = None, recording_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cmd = cmd
        self.recording_id = recording_id


class UnknownCommand(MessageError):
    """A well-formed message whose cmd is none the server knows."""


@attrs.frozen
class Message:
    """One decoded control message: its ``cmd`` and the other fields in order."""

    cmd: str
    fields: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        for name, value in self.fields:
            if name == key:
                return value
        return default


def decode_message(data: bytes) -> Message:
    """Parse one framed message. Raises `MessageError`, and nothing else.

    Bytes that are not UTF-8, raw or percent-encoded, are kept as ``%XX``
    in the values (see `PERCENT_INVALID`)."""
    try:
        text = data.decode("utf-8").strip(_BLANKS)
        unescape = _unescape
    except UnicodeDecodeError:
        # Raw bytes that are not UTF-8 are carried through the splitting
        # as surrogates, and become %XX with the value's own escapes.
        text = data.decode("utf-8", errors="surrogateescape").strip(_BLANKS)
        unescape = _unescape_raw
    if not text:
        raise MessageError("empty message")
    pairs: list[tuple[str, str]] = []
    for part in text.split("&"):
        if not part.strip(_BLANKS):
            continue
        key, sep, value = part.partition("=")
        key = key.strip(_BLANKS)
        if not sep or not _KEY.fullmatch(key):
            raise MessageError(f"malformed field {part.strip()[:40]!r}", *_salvage(pairs))
        pairs.append((key, unescape(value.strip(_BLANKS))))
    if not pairs or pairs[0][0] != "cmd":
        raise MessageError("message does not begin with cmd=", *_salvage(pairs))
    cmd = pairs[0][1]
    if not cmd:
        raise MessageError("empty cmd", None, _salvage(pairs)[1])
    return Message(cmd=cmd, fields=tuple(pairs[1:]))


def _unescape(value: str) -> str:
    return unquote(value, errors=PERCENT_INVALID)


def _unescape_raw(value: str) -> str:
    """As `_unescape`, for a value holding raw bytes as surrogates."""
    raw = unquote_to_bytes(value.encode("utf-8", errors="surrogateescape"))
    return raw.decode("utf-8", errors=PERCENT_INVALID)


def _salvage(pairs: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    found = dict(reversed(pairs))
    return found.get("cmd"), found.get("id")


def encode_value(value: str) -> str:
    """Escape what would break the framing; leave the rest readable (``disk full``)."""
    escaped = _MUST_ESCAPE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), value)
    # Surrounding spaces would be stripped by the peer's parser: keep them.
    stripped = escaped.strip(" ")
    if stripped != escaped:
        lead = len(escaped) - len(escaped.lstrip(" "))
        trail = len(escaped) - lead - len(stripped)
        escaped = "%20" * lead + stripped + "%20" * trail
    return escaped


def encode_message(message: Message) -> bytes:
    """The wire form of a message, with no terminator."""
    pairs = [("cmd", message.cmd), *message.fields]
    return "&".join(f"{key}={encode_value(value)}" for key, value in pairs).encode("utf-8")


@attrs.frozen
class CallParties:
    """Who is on the call, as the phone reports it."""

    local_number: str = ""
    local_name: str = ""
    remote_number: str = ""
    remote_name: str = ""

    def updated(self, updates: tuple[tuple[str, str], ...]) -> CallParties:
        """These parties with the given fields replaced (a transferred call)."""
        return attrs.evolve(self, **dict(updates))


@attrs.frozen
class StartRequest:
    recording_id: str
    device: str
    codec: str
    direction: str
    parties: CallParties = CallParties()


@attrs.frozen
class StartResponse:
    recording_id: str
    result: str
    reason: str = ""
    server: str = ""
    port: int | None = None


@attrs.frozen
class StopRequest:
    recording_id: str
    reason: str = ""
    # Party fields present in the Stop; they replace the Start's values.
    updates: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class StopResponse:
    recording_id: str
    result: str
    reason: str = ""


Command = Union[StartRequest, StartResponse, StopRequest, StopResponse]

DIRECTIONS = {"in": "in", "out": "out", "incoming": "in", "outgoing": "out"}


def parse_command(message: Message) -> Command:
    """Turn a decoded message into a command. Raises `MessageError` with a
    short human reason, fit for a ``failed`` reply."""
    recording_id = (message.get("id") or "").strip()
    parse = _PARSERS.get(message.cmd)
    if parse is None:
        raise UnknownCommand(f"unknown command {message.cmd[:40]}", message.cmd,
                             recording_id or None)
    if not recording_id:
        raise MessageError("missing id", message.cmd, None)
    return parse(message, recording_id)


def _parse_start(message: Message, recording_id: str) -> StartRequest:
    codec = (message.get("codec") or "").strip().upper()
    if not codec:
        raise MessageError("missing codec", message.cmd, recording_id)
    raw_direction = (message.get("dir") or "").strip().lower()
    # A missing dir is recorded as unknown: losing a call for a metadata field
    # would be worse. A dir that is present must make sense.
    direction = DIRECTIONS.get(raw_direction, "unknown" if not raw_direction else None)
    if direction is None:
        raise MessageError(f"bad dir {raw_direction[:20]}", message.cmd, recording_id)
    return StartRequest(
        recording_id=recording_id,
        device=(message.get("device") or "").strip(),
        codec=codec,
        direction=direction,
        parties=CallParties(**{name: message.get(name, "") for name in PARTY_FIELDS}),
    )


def _parse_stop(message: Message, recording_id: str) -> StopRequest:
    return StopRequest(
        recording_id=recording_id,
        reason=message.get("reason", ""),
        updates=tuple(
            (name, value) for name in PARTY_FIELDS if (value := message.get(name)) is not None
        ),
    )


def _parse_stop_response(message: Message, recording_id: str) -> StopResponse:
    return StopResponse(
        recording_id, message.get("result", "").strip().lower(), message.get("reason", "")
    )


def _parse_start_response(message: Message, recording_id: str) -> StartResponse:
    port_text = (message.get("port") or "").strip()
    return StartResponse(
        recording_id=recording_id,
        result=message.get("result", "").strip().lower(),
        reason=message.get("reason", ""),
        server=message.get("server", "").strip(),
        # isdigit() alone admits "²", which int() refuses.
        port=int(port_text) if port_text.isascii() and port_text.isdigit() else None,
    )


_PARSERS = {
    START_REQUEST: _parse_start,
    START_RESPONSE: _parse_start_response,
    STOP_REQUEST: _parse_stop,
    STOP_RESPONSE: _parse_stop_response,
}


def to_message(command: Command) -> Message:
    """The message that carries a command, fields in the guide's order."""
    if isinstance(command, StartRequest):
        parties = command.parties
        # "unknown" is what a Start without dir reads as: it is sent without.
        direction = () if command.direction == "unknown" else (("dir", command.direction),)
        return Message(START_REQUEST, (
            ("id", command.recording_id),
            ("device", command.device),
            ("remote_number", parties.remote_number),
            ("remote_name", parties.remote_name),
            ("local_number", parties.local_number),
            ("local_name", parties.local_name),
            *direction,
            ("codec", command.codec),
        ))
    if isinstance(command, StartResponse):
        return Message(START_RESPONSE, (
            ("id", command.recording_id),
            ("result", command.result),
            ("reason", command.reason),
            ("server", command.server),
            ("port", "" if command.port is None else str(command.port)),
        ))
    if isinstance(command, StopRequest):
        fields = [("id", command.recording_id), *command.updates]
        if command.reason:
            fields.append(("reason", command.reason))
        return Message(STOP_REQUEST, tuple(fields))
    fields = [("id", command.recording_id), ("result", command.result)]
    if command.reason:
        fields.append(("reason", command.reason))
    return Message(STOP_RESPONSE, tuple(fields))


def encode_command(command: Command) -> bytes:
    return encode_message(to_message(command))


def failure_reply(error: MessageError) -> Message | None:
    """The ``failed`` reply owed for a message that could not be honoured, or
    None where there is nobody to answer (no id, or a response)."""
    cmd = error.cmd
    if cmd is None or cmd.endswith("Response"):
        return None
    if cmd == START_REQUEST:
        return to_message(StartResponse(error.recording_id or "", FAILED, error.reason))
    if error.recording_id is None:
        return None
    response = cmd[: -len("Request")] + "Response" if cmd.endswith("Request") else cmd + "Response"
    return Message(response, (
        ("id", error.recording_id), ("result", FAILED), ("reason", error.reason),
    ))
