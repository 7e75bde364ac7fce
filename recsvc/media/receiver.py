"""The DatagramProtocol on a recording's port: parse, hand over, never raise."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.protocol import DatagramProtocol

from recsvc.media.lane import FastLane
from recsvc.logs import Logger
from recsvc.media.rtp import RtpError, RtpPacket, parse_rtp


class PacketSink(Protocol):
    def packet_received(self, packet: RtpPacket, source: tuple[str, int]) -> None: ...

    def datagram_invalid(self) -> None: ...


class RtpReceiver(DatagramProtocol):
    """Receives one recording's RTP. ``sink`` is set once the recording exists
    (the port is opened first, so that a Start without a port fails early)."""

    log = Logger()
    noisy = False  # a start and stop line per recording is the service's to log

    def __init__(self) -> None:
        self.sink: PacketSink | None = None
        # Packets that only continue the stream skip this protocol (see
        # recsvc.media.lane); the recording arms the lane and takes from it.
        self.lane = FastLane()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            packet = parse_rtp(datagram)
        except RtpError:
            sink.datagram_invalid()
            return
        try:
            sink.packet_received(packet, addr)
        except Exception:
            self.log.failure("RTP packet from {peer} was not handled", peer=addr)
