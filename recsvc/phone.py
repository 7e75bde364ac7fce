"""A simulated Fanvil phone over real sockets (blocking), to test a server.

It speaks the control protocol in a chosen framing and sends RTP from given
audio bytes. Blocking on purpose: it runs in another thread or process than
the server it tests.
"""

from __future__ import annotations

import random
import socket
import time
from typing import Iterator

import attrs

from recsvc.protocol.commands import (
    CallParties,
    Command,
    StartRequest,
    StartResponse,
    StopRequest,
    StopResponse,
    decode_message,
    encode_command,
    parse_command,
)
from recsvc.protocol.framing import MessageFramer
from recsvc.rtp import RtpPacket, build_rtp

FRAMINGS = {"bare": b"", "crlf": b"\r\n", "lf": b"\n", "nul": b"\x00"}
PAYLOAD_TYPES = {"PCMA": 8, "PCMU": 0}
SAMPLE_CALL = CallParties("2001", "Desk", "13800138000", "Customer")


@attrs.define(eq=False)
class SimulatedPhone:
    """One phone's control connection to ``host:port``."""

    host: str
    port: int
    device: str = "00:a8:59:12:34:56"
    framing: str = "bare"
    timeout: float = 5.0
    _socket: socket.socket | None = None
    _framer: MessageFramer = attrs.field(factory=MessageFramer)
    _inbox: list[Command] = attrs.field(factory=list)

    def connect(self) -> None:
        self._socket = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        """Drop the TCP connection (as a phone whose network fails would)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def send(self, command: Command) -> None:
        self.send_raw(encode_command(command) + FRAMINGS[self.framing])

    def send_raw(self, data: bytes) -> None:
        assert self._socket is not None, "not connected"
        self._socket.sendall(data)
        if self.framing == "bare":
            # The firmware's one message per write: keep writes apart.
            time.sleep(0.005)

    def receive(self) -> Command:
        """The next command from the server (waits up to ``timeout``)."""
        assert self._socket is not None, "not connected"
        while not self._inbox:
            data = self._socket.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._inbox += [parse_command(decode_message(m)) for m in self._framer.feed(data)]
        return self._inbox.pop(0)

    def start(
        self, recording_id: str, codec: str = "PCMA", direction: str = "out",
        parties: CallParties = SAMPLE_CALL,
    ) -> StartResponse:
        self.send(StartRequest(recording_id, self.device, codec, direction, parties))
        response = self.receive()
        assert isinstance(response, StartResponse), response
        return response

    def stop(self, recording_id: str, reason: str = "hangup",
             updates: tuple[tuple[str, str], ...] = ()) -> StopResponse:
        self.send(StopRequest(recording_id, reason, updates))
        response = self.receive()
        assert isinstance(response, StopResponse), response
        return response


def rtp_packets(
    audio: bytes, codec: str = "PCMA", samples_per_packet: int = 160,
    ssrc: int | None = None, first_sequence: int | None = None,
) -> Iterator[bytes]:
    """``audio`` (stored codec bytes, one byte a sample) cut into RTP packets."""
    rng = random.Random(len(audio))
    ssrc = rng.getrandbits(32) if ssrc is None else ssrc
    sequence = rng.getrandbits(16) if first_sequence is None else first_sequence
    timestamp = rng.getrandbits(32)
    for offset in range(0, len(audio), samples_per_packet):
        payload = audio[offset:offset + samples_per_packet]
        yield build_rtp(RtpPacket(
            payload_type=PAYLOAD_TYPES[codec],
            sequence=sequence & 0xFFFF,
            timestamp=timestamp & 0xFFFFFFFF,
            ssrc=ssrc,
            payload=payload,
            marker=offset == 0,
        ))
        sequence += 1
        timestamp += len(payload)


def send_rtp(packets: Iterator[bytes], host: str, port: int, interval: float = 0.0) -> int:
    """Send packets over UDP, ``interval`` seconds apart (0: as fast as allowed
    without flooding loopback buffers). Returns how many were sent."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, (host, port))
            sent += 1
            time.sleep(interval if interval else 0.0005)
    return sent
