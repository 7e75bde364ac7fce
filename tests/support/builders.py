"""What tests send the recorder: Start requests and lines, RTP datagrams,
audio, and the sidecars the index reads."""

from __future__ import annotations

import random

from recsvc.control.commands import CallParties, StartRequest
from recsvc.media.rtp import RtpPacket, build_rtp


def start_request(recording_id: str = "7", device: str = "00a859000001",
                  codec: str = "PCMA") -> StartRequest:
    """A phone's Start of an outgoing call from 2001 (Desk) to 13800138000 (Bob)."""
    return StartRequest(
        recording_id, device, codec, "out", CallParties("2001", "Desk", "13800138000", "Bob")
    )


def rtp(sequence: int, payload: bytes, payload_type: int = 8) -> bytes:
    """An RTP datagram: packet ``sequence`` of a stream of 160-sample packets."""
    return build_rtp(RtpPacket(payload_type, sequence, sequence * 160, 99, payload))


def start_line(number: int) -> bytes:
    """A good Start, each from its own phone (the per-device caps stay out of it)."""
    return b"cmd=RecordStartRequest&id=%d&device=00a859%06x&codec=PCMA\n" % (number, number)


def audio(seconds: float, seed: int) -> bytes:
    """``seconds`` of random 8 kHz G.711 audio, the same for the same ``seed``."""
    return random.Random(seed).randbytes(int(8000 * seconds))


def sidecar(recording_id: str = "7", **fields) -> dict:
    """A finished recording's sidecar, with ``fields`` changed."""
    data = {
        "id": recording_id, "device": "00:a8:59:00:00:01", "codec": "PCMA", "format": "g711",
        "direction": "out", "local_number": "2001", "local_name": "Desk",
        "remote_number": "13800138000", "remote_name": "Bob", "status": "finished",
        "started_at": "2026-11-24T10:00:00.000Z", "stopped_at": "2026-11-24T10:01:00.000Z",
        "duration_s": 60.0, "stop_reason": "hangup", "stopped_by": "phone", "part": 1,
        "packets_received": 3000, "packets_lost": 0,
        "file": f"20261124T100000Z_out_13800138000_{recording_id}.wav",
    }
    data.update(fields)
    return data
