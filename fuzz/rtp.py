"""Coverage-guided fuzzing of the RTP parser, the telephone-event parser and
a recording's media pipeline (source check, stream clock, timeline) with
atheris (libFuzzer): ``make fuzz``, not part of ``make test``.

The input is a run of records: a datagram's length and the time since
the last one came (milliseconds), two big-endian bytes each, then the
datagram (`records`, which fuzz/seeds.py writes). Each datagram is parsed (RtpError is an expected refusal); a packet that parses must build
back to a packet that parses the same; packets go through one PCMA
recording's pipeline as they would from the socket, and the audio it
writes must stay within what its packets and gap filling allow. Any other
exception is a finding.

    python fuzz/rtp.py -max_total_time=60 var/fuzz/rtp var/fuzz/seeds/rtp
"""

from __future__ import annotations

import struct
import sys
from typing import Iterator

import atheris

with atheris.instrument_imports(include=["recsvc"]):
    from recsvc.media.codec import CODECS
    from recsvc.media.dtmf import DtmfError, parse_event
    from recsvc.media.pipeline import MediaPipeline, MediaPolicy
    from recsvc.media.rtp import RtpError, build_rtp, parse_rtp
    from recsvc.media.source import ANY
    from recsvc.storage.folder import Storage

PCMA = CODECS["PCMA"]
POLICY = MediaPolicy(reorder_window_ms=200, max_gap_fill=2.0, source=ANY)
SOURCE = ("192.0.2.7", 40000)
RECORD = struct.Struct("!HH")


def records(data: bytes) -> Iterator[tuple[bytes, float]]:
    """(datagram, seconds since the last) from the input."""
    offset = 0
    while offset + RECORD.size <= len(data):
        length, step_ms = RECORD.unpack_from(data, offset)
        offset += RECORD.size
        yield data[offset:offset + length % 1500], step_ms % 5000 / 1000
        offset += length % 1500


def one_input(data: bytes) -> None:
    media = MediaPipeline(PCMA, Storage("/nonexistent").encoder(PCMA), SOURCE[0], POLICY)
    arrival = 0.0
    packets = written = payload_bytes = 0
    for datagram, step in records(data):
        arrival += step
        try:
            packet = parse_rtp(datagram)
        except RtpError:
            media.invalid()
            continue
        if parse_rtp(build_rtp(packet)) != packet:
            raise AssertionError(f"{datagram!r} does not build back to itself")
        if packet.payload_type == POLICY.dtmf_payload_type:
            try:
                parse_event(packet.payload)
            except DtmfError:
                pass
        packets += 1
        payload_bytes += len(packet.payload)
        written += sum(len(chunk) for chunk in media.packet(packet, SOURCE, arrival))
    written += sum(len(chunk) for chunk in media.flush())
    # Every packet may open a gap filled with at most max_gap_fill of silence.
    bound = payload_bytes + packets * round(POLICY.max_gap_fill * 8000)
    if written > bound:
        raise AssertionError(f"{written} bytes written from {packets} packets "
                             f"({payload_bytes} bytes of payload)")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
