"""Cut the control byte stream into messages, whatever framing the phone uses.

The firmware sends one bare message per write (no terminator); other clients
end messages with CRLF, LF or NUL. Several messages may arrive in one read,
each beginning with ``cmd=``. Pure code: bytes in, messages out.
"""

from __future__ import annotations

import re

import attrs

# No lone CR: a CRLF split between two reads must not read as two styles.
TERMINATORS = re.compile(rb"\r\n|\n|\x00")
# Where a message begins: "cmd=" (spaces tolerated before the "=").
MESSAGE_START = re.compile(rb"cmd[ \t]*=")
# What a connection's first bytes may be while its first message begins:
# blanks, then "cmd=", or as much of it as has come.
_FIRST_BYTES = re.compile(rb"[ \t\r\n\x00]*(?:cmd[ \t]*=|(?:cmd[ \t]*|cm|c)?\Z)")
_FIRST_START = re.compile(rb"[ \t\r\n\x00]*cmd[ \t]*=[ \t]*RecordStartRequest(?:[ \t]*[&\r\n\x00]|\Z)")
_FIRST_STOP = re.compile(rb"[ \t\r\n\x00]*cmd[ \t]*=[ \t]*RecordStopRequest(?:[ \t]*[&\r\n\x00]|\Z)")


class MessageTooLong(ValueError):
    """A message (or an unterminated run of bytes) over the size limit."""


@attrs.define(eq=False)
class MessageFramer:
    """Stateful framer for one connection.

    A peer that has never sent a terminator is a *bare* peer: what is left of
    each read after the last terminator is a whole message, as the firmware
    sends it. Once a peer has ended a message with a terminator, unterminated
    bytes wait for the rest. ``terminator`` is the style to reply in.
    """

    max_length: int = 4096
    terminator: bytes = b""
    _buffer: bytes = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The whole messages that ``data`` completes. Raises `MessageTooLong`."""
        buffer = self._buffer + data
        frames: list[bytes] = []
        position = 0
        for match in TERMINATORS.finditer(buffer):
            frames.append(buffer[position:match.start()])
            position = match.end()
            self.terminator = match.group()
        tail = buffer[position:]
        if self.terminator:
            self._buffer = tail
            if len(tail) > self.max_length:
                self._buffer = b""
                raise MessageTooLong(f"{len(tail)} bytes without a terminator")
        else:
            self._buffer = b""
            frames.append(tail)
        messages = [message for frame in frames for message in split_messages(frame)]
        for message in messages:
            if len(message) > self.max_length:
                raise MessageTooLong(f"message of {len(message)} bytes")
        return messages


def could_begin_messages(first: bytes) -> bool:
    """Whether a connection's first bytes are the beginning of control
    messages (or too few to tell): anything else is not a phone."""
    return _FIRST_BYTES.match(first) is not None


def begins_with_start(first: bytes) -> bool:
    """Whether a connection's first bytes begin with a RecordStartRequest."""
    return _FIRST_START.match(first) is not None


def begins_with_stop(first: bytes) -> bool:
    """Whether a connection's first bytes begin with a RecordStopRequest
    (a phone that reconnected to stop its recording)."""
    return _FIRST_STOP.match(first) is not None


def split_messages(frame: bytes) -> list[bytes]:
    """Split a frame that holds several messages run together at each ``cmd=``.

    A literal ``cmd=`` inside a value would be cut too; values are expected
    to escape ``=`` (``%3D``), as the message format requires.
    """
    starts = [match.start() for match in MESSAGE_START.finditer(frame)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    pieces = (frame[a:b] for a, b in zip(starts, starts[1:] + [len(frame)]))
    return [piece for piece in (p.strip(b" \t&") for p in pieces) if piece]
