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

from recsvc.media.dtmf import TelephoneEvent, build_event, event_name, parse_event
from recsvc.control.commands import (
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
from recsvc.control.framing import MessageFramer
from recsvc.media.rtp import RtpPacket, build_rtp

FRAMINGS = {"bare": b"", "crlf": b"\r\n", "lf": b"\n", "nul": b"\x00"}
PAYLOAD_TYPES = {"PCMA": 8, "PCMU": 0, "G722": 9}
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


@attrs.frozen
class CallTiming:
    """How long one call's control steps took, as the phone saw them (ms)."""

    recording_id: str
    connect_ms: float  # TCP connect
    start_ms: float  # from sending the Start to reading its answer
    stop_ms: float  # from sending the Stop to reading its answer
    started: StartResponse
    stopped: StopResponse


def timed_call(host: str, port: int, recording_id: str, audio: bytes, codec: str = "PCMA",
               framing: str = "lf", device: str = "00:a8:59:12:34:56",
               interval: float = 0.0) -> CallTiming:
    """One whole call on a new control connection (connect, Start, RTP,
    Stop, close), with the time each control step took. ``interval``: as
    for `send_rtp`."""
    phone = SimulatedPhone(host, port, device=device, framing=framing)
    began = time.perf_counter()
    phone.connect()
    try:
        connected = time.perf_counter()
        started = phone.start(recording_id, codec=codec)
        answered = time.perf_counter()
        if started.result == "success":
            send_rtp(rtp_packets(audio, codec), started.server, started.port, interval)
        stopping = time.perf_counter()
        stopped = phone.stop(recording_id)
        ended = time.perf_counter()
    finally:
        phone.close()
    return CallTiming(recording_id, 1000 * (connected - began), 1000 * (answered - connected),
                      1000 * (ended - stopping), started, stopped)


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


@attrs.frozen
class PlannedPacket:
    """A packet a simulated phone sends, with where it belongs in the call."""

    packet: RtpPacket
    tick: int  # position in the call, in RTP clock ticks from its start
    kind: str  # audio | comfort_noise | dtmf


def plan_call(
    audio: bytes,
    codec: str = "PCMA",
    ptime_ms: int = 20,
    ssrc_changes: tuple[int, ...] = (),
    silences: tuple[tuple[int, int], ...] = (),
    dtmf: tuple[tuple[int, int, int], ...] = (),
    dtmf_payload_type: int = 101,
    seed: int = 0,
) -> list[PlannedPacket]:
    """The packets of a call whose audio is ``audio`` (one byte a tick).

    ``silences`` are (start, ticks) where the phone sends one comfort-noise
    packet instead of audio; ``dtmf`` are (start, event, ticks) key presses
    sent as RFC 4733 events instead of audio; at each tick of
    ``ssrc_changes`` the stream restarts with a new SSRC, sequence number and
    timestamp base (a transfer), carrying on in time.
    """
    rng = random.Random(seed)
    step = 8 * ptime_ms
    plan: list[PlannedPacket] = []
    ssrc, sequence, base = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)
    changes = sorted(ssrc_changes)

    def add(payload_type: int, tick: int, payload: bytes, kind: str, marker: bool = False,
            timestamp_tick: int | None = None) -> None:
        nonlocal sequence
        timestamp = (base + (tick if timestamp_tick is None else timestamp_tick)) & 0xFFFFFFFF
        plan.append(PlannedPacket(
            RtpPacket(payload_type, sequence & 0xFFFF, timestamp, ssrc, payload, marker), tick, kind
        ))
        sequence += 1

    tick = 0
    while tick < len(audio):
        if changes and tick >= changes[0]:
            changes.pop(0)
            ssrc, sequence = rng.getrandbits(32), rng.getrandbits(16)
            base = (rng.getrandbits(32) - tick) & 0xFFFFFFFF
        silence = next(((a, n) for a, n in silences if a <= tick < a + n), None)
        press = next(((a, e, n) for a, e, n in dtmf if a <= tick < a + n), None)
        if silence is not None:
            start, ticks = silence
            if tick == start:
                add(13, tick, bytes([40]), "comfort_noise", marker=True)
            tick = start + ticks
            continue
        if press is not None:
            start, event, ticks = press
            for elapsed in range(step, ticks + step, step):
                end = elapsed >= ticks
                repeats = 3 if end else 1
                for _ in range(repeats):
                    add(dtmf_payload_type, start + elapsed - step,
                        build_event(TelephoneEvent(event, end, 10, min(elapsed, ticks))),
                        "dtmf", marker=elapsed == step, timestamp_tick=start)
            tick = start + ticks
            continue
        # A packet stops short where a silence or a key press begins.
        boundary = min([a for a, _ in silences if a > tick] + [a for a, _, _ in dtmf if a > tick]
                       + [c for c in changes if c > tick] + [tick + step])
        add(PAYLOAD_TYPES[codec], tick, audio[tick:boundary], "audio")
        tick = boundary
    return plan


def expected_recording(plan: list[PlannedPacket], delivered: set[int], silence: bytes) -> bytes:
    """The file a perfect recorder makes of ``plan`` when the packets at the
    indexes in ``delivered`` arrive: every delivered audio payload at its
    tick, silence elsewhere, from the first to the last delivered tick."""
    audio = [(plan[i].tick, plan[i].packet.payload) for i in delivered if plan[i].kind == "audio"]
    start = min(plan[i].tick for i in delivered)
    end = max(tick + len(payload) for tick, payload in audio)
    recording = bytearray(silence * (end - start))
    for tick, payload in audio:
        recording[tick - start:tick - start + len(payload)] = payload
    return bytes(recording)


def expected_keys(plan: list[PlannedPacket], delivered: set[int]) -> tuple[tuple[str, int], ...]:
    """The keys a perfect recorder lists when the packets at the indexes in
    ``delivered`` arrive: each key press of ``plan`` of which at least one
    packet arrived, with where it begins in the file (ticks from the first
    delivered tick), in order."""
    start = min(plan[i].tick for i in delivered)
    began: dict[tuple[int, int], int] = {}  # (ssrc, event timestamp) -> its first tick
    for planned in plan:
        if planned.kind == "dtmf":
            key = (planned.packet.ssrc, planned.packet.timestamp)
            began[key] = min(began.get(key, planned.tick), planned.tick)
    pressed = {}
    for index in delivered:
        planned = plan[index]
        if planned.kind == "dtmf":
            key = (planned.packet.ssrc, planned.packet.timestamp)
            pressed[key] = event_name(parse_event(planned.packet.payload).event)
    return tuple(sorted(((name, began[key] - start) for key, name in pressed.items()),
                        key=lambda pressed_key: pressed_key[1]))


def restart_tick(plan: list[PlannedPacket]) -> int | None:
    """Where in the call the stream first restarts (a new SSRC), in ticks
    from its first packet; None if it never does."""
    first = plan[0].packet.ssrc
    return next((p.tick - plan[0].tick for p in plan if p.packet.ssrc != first), None)
