"""Coverage-guided fuzzing of the control framing and message codec
(atheris, libFuzzer): ``make fuzz``, not part of ``make test``.

The input is a 4-byte seed for where reads end, then the byte stream: it
is cut into reads (as TCP may cut it) and fed to one connection's framer; every message is decoded and parsed. Expected
refusals (MessageTooLong, MessageError) are fine; any other exception is
a finding. A command that parses must survive encoding and parsing again
unchanged, and a refused one must get a reply that itself decodes.

    python fuzz/control.py -max_total_time=60 var/fuzz/control var/fuzz/seeds/control
"""

from __future__ import annotations

import random
import sys
from typing import Iterator

import atheris

with atheris.instrument_imports(include=["recsvc"]):
    from recsvc.control.commands import (
        MessageError,
        decode_message,
        encode_command,
        encode_message,
        failure_reply,
        parse_command,
    )
    from recsvc.control.framing import MessageFramer, MessageTooLong

MAX_MESSAGE_BYTES = 4096


def reads(data: bytes) -> Iterator[bytes]:
    """The stream after the 4-byte seed, cut where the seed says."""
    cuts = random.Random(data[:4])
    offset = 4
    while offset < len(data):
        length = cuts.choice((1, 2, 7, 64, 512, 4096))
        yield data[offset:offset + length]
        offset += length


def one_input(data: bytes) -> None:
    framer = MessageFramer(max_length=MAX_MESSAGE_BYTES)
    for read in reads(data):
        try:
            messages = framer.feed(read)
        except MessageTooLong:
            return  # the connection is closed here
        for raw in messages:
            try:
                command = parse_command(decode_message(raw))
            except MessageError as error:
                reply = failure_reply(error)
                if reply is not None:
                    decode_message(encode_message(reply))
                continue
            again = parse_command(decode_message(encode_command(command)))
            if again != command:
                raise AssertionError(f"{raw!r} parsed as {command!r}, re-encoded as {again!r}")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
