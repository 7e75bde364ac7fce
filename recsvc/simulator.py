"""Phones on the reactor: many simulated Fanvil phones recording at once.

Each `SimulatedCall` opens the control connection, asks to record, sends RTP
paced in real time (with optional faults), stops, and measures how long the
server took to answer. `run_calls` spreads many calls evenly in time, as real
phones are, and `verify` checks each recording byte for byte.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import time
from array import array
from collections import deque
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall, deferLater

from recsvc import g711
from recsvc.pacer import LeanStream, Pacer, Stream, udp_socket
from recsvc.phone import FRAMINGS, PAYLOAD_TYPES, PlannedPacket, expected_recording, plan_call
from recsvc.protocol.commands import (
    CallParties,
    StartRequest,
    StartResponse,
    StopRequest,
    StopResponse,
    decode_message,
    encode_command,
    parse_command,
)
from recsvc.protocol.framing import MessageFramer
from recsvc.rtp import build_rtp
from recsvc.wav import NotAWav, read_audio

SILENCE = {"PCMA": b"\xd5", "PCMU": b"\xff"}


CALL_OFFSET = 167  # bytes of the shared tone between one call's audio and the next's


def tone(seconds: float, codec: str = "PCMA", hertz: float = 440.0, noise: int = 0) -> bytes:
    """A sine tone in the codec's bytes (8000 bytes a second for all three),
    with random noise of up to ``noise`` (of 32767) added if asked."""
    rate = 16000 if codec == "G722" else 8000
    rng = random.Random(0)
    samples = array("h", (
        int(8000 * math.sin(2 * math.pi * hertz * n / rate)) + (rng.randint(-noise, noise) if noise else 0)
        for n in range(int(rate * seconds))
    ))
    if codec == "G722":
        import G722

        return G722.G722(16000, 64000).encode(samples)
    pcm = samples.tobytes()
    return g711.encode_alaw(pcm) if codec == "PCMA" else g711.encode_ulaw(pcm)


@attrs.frozen
class Faults:
    loss: float = 0.0  # fraction of packets not sent
    reorder: float = 0.0  # fraction of packets swapped with the next
    duplicates: float = 0.0  # fraction of packets sent twice
    jitter_ms: float = 0.0  # each packet sent up to this much late
    ssrc_change: bool = False  # the stream restarts half way
    drop_connection: bool = False  # the TCP connection breaks instead of a Stop


@attrs.frozen
class CallResult:
    recording_id: str
    started: bool
    start_reason: str
    start_latency: float | None
    stop_latency: float | None
    packets_sent: int
    # What a perfect recorder makes of what was sent (lost packets as
    # silence): what `verify` compares the recording with.
    expected: bytes | memoryview | None = None


class _Control(Protocol):
    def __init__(self, framing: str) -> None:
        self.framer = MessageFramer()
        self.terminator = FRAMINGS[framing]
        self.waiting: list[tuple[type, Deferred[Any]]] = []
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)

    def send(self, command: Any) -> None:
        self.transport.write(encode_command(command) + self.terminator)

    def expect(self, kind: type) -> Deferred[Any]:
        waiter: Deferred[Any] = Deferred()
        self.waiting.append((kind, waiter))
        return waiter

    def dataReceived(self, data: bytes) -> None:
        for raw in self.framer.feed(data):
            command = parse_command(decode_message(raw))
            for index, (kind, waiter) in enumerate(self.waiting):
                if isinstance(command, kind):
                    del self.waiting[index]
                    waiter.callback(command)
                    break
            else:
                if isinstance(command, StopRequest):  # the server stopped us
                    self.send(StopResponse(command.recording_id, "success"))

    def connectionLost(self, reason: Any) -> None:
        for _, waiter in self.waiting:
            waiter.errback(reason)
        self.waiting = []
        self.closed.callback(None)


@attrs.define(eq=False)
class ReactorPacer:
    """A `Pacer` woken by the reactor every millisecond while it has streams."""

    reactor: Any
    pacer: Pacer = attrs.field(factory=Pacer)
    _loop: LoopingCall | None = None

    def send(self, stream: Stream, sock: socket.socket) -> Deferred[int]:
        """Send ``stream`` from ``sock``, starting now; fires with the number
        of datagrams sent once its last slot is served."""
        sent: Deferred[int] = Deferred()
        self.pacer.add(stream, sock, time.monotonic(),
                       lambda count: self.reactor.callLater(0, sent.callback, count))
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.reactor
            self._loop.start(0.001)
        return sent

    def _tick(self) -> None:
        self.pacer.run_due(time.monotonic())
        if not self.pacer.active and self._loop is not None:
            self._loop.stop()
            self._loop = None


@attrs.define(eq=False)
class PlannedStream:
    """A planned call's packets with network faults: some lost, some swapped
    with the next, some sent twice, some late."""

    plan: list[PlannedPacket]
    faults: Faults
    rng: random.Random
    delivered: set[int] = attrs.field(factory=set)
    _order: deque[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        faults, rng, last = self.faults, self.rng, len(self.plan) - 1
        order = [i for i in range(len(self.plan)) if i in (0, last) or rng.random() >= faults.loss]
        for k in range(1, len(order) - 2):
            if rng.random() < faults.reorder:
                order[k], order[k + 1] = order[k + 1], order[k]
        self._order = deque(order)

    def next_slot(self) -> list[tuple[float, bytes]] | None:
        if not self._order:
            return None
        index = self._order.popleft()
        self.delivered.add(index)
        datagram = build_rtp(self.plan[index].packet)
        copies = 2 if self.rng.random() < self.faults.duplicates else 1
        jitter = self.faults.jitter_ms / 1000
        delay = self.rng.uniform(0, jitter) if jitter else 0.0
        return [(delay, datagram)] * copies


@attrs.define(eq=False)
class SimulatedCall:
    """One phone recording one call against ``host:port``."""

    reactor: Any
    host: str
    port: int
    recording_id: str
    audio: bytes | memoryview
    codec: str = "PCMA"
    ptime_ms: int = 20
    framing: str = "bare"
    faults: Faults = Faults()
    device: str = "00:a8:59:00:00:01"
    seed: int = 0
    pacer: ReactorPacer | None = None
    answered: Callable[[], None] = lambda: None  # called when the Start is answered

    async def run(self) -> CallResult:
        """The call; a control connection that fails or breaks is reported
        as a call that did not start (or stop) properly, not raised."""
        answered = False

        def note_answered() -> None:
            nonlocal answered
            if not answered:
                answered = True
                self.answered()

        try:
            return await self._run(note_answered)
        except Exception as error:
            note_answered()  # no answer will come: counted as one
            reason = f"control connection failed: {error.__class__.__name__}"
            return CallResult(self.recording_id, False, reason, None, None, 0)

    async def _run(self, note_answered: Callable[[], None]) -> CallResult:
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port)
        control = await endpoint.connect(Factory.forProtocol(lambda: _Control(self.framing)))
        began = time.monotonic()
        answer = control.expect(StartResponse)
        control.send(StartRequest(
            self.recording_id, self.device, self.codec, "out",
            CallParties("2001", "Sim", "13800138000", "Callee"),
        ))
        response: StartResponse = await answer
        start_latency = time.monotonic() - began
        note_answered()
        if response.result != "success":
            control.transport.loseConnection()
            return CallResult(self.recording_id, False, response.reason, start_latency, None, 0)
        sent, expected = await self._stream(response.server, response.port)
        stop_latency = None
        if self.faults.drop_connection:
            control.transport.abortConnection()
        else:
            began = time.monotonic()
            stopped = control.expect(StopResponse)
            control.send(StopRequest(self.recording_id, "hangup"))
            await stopped
            stop_latency = time.monotonic() - began
            control.transport.loseConnection()
        await control.closed
        return CallResult(self.recording_id, True, "", start_latency, stop_latency, sent, expected)

    async def _stream(self, host: str, port: int) -> tuple[int, bytes | memoryview]:
        """Send the call's RTP in real time from its own UDP port; returns
        the datagrams sent and what a perfect recording of them holds."""
        rng = random.Random(self.seed)
        faults = self.faults
        planned = None
        if (faults.loss, faults.reorder, faults.duplicates, faults.jitter_ms, faults.ssrc_change) == (
            0, 0, 0, 0, False
        ):
            stream: Stream = LeanStream(
                self.audio, PAYLOAD_TYPES[self.codec], rng.getrandbits(32), rng.getrandbits(16),
                rng.getrandbits(32), 8 * self.ptime_ms,
            )
        else:
            plan = plan_call(
                bytes(self.audio), self.codec, self.ptime_ms,
                ssrc_changes=(len(self.audio) // 2,) if faults.ssrc_change else (), seed=self.seed,
            )
            stream = planned = PlannedStream(plan, faults, rng)
        pacer = self.pacer if self.pacer is not None else ReactorPacer(self.reactor)
        sock = udp_socket(host, port)
        try:
            sent = await pacer.send(stream, sock)
            # The last late packets, and the socket to settle.
            await deferLater(self.reactor, faults.jitter_ms / 1000 + 0.05, lambda: None)
        finally:
            sock.close()
        if planned is None:
            return sent, self.audio
        silence = SILENCE.get(self.codec, b"\0")
        return sent, expected_recording(planned.plan, planned.delivered, silence)


def call_audio(calls: int, seconds: float, codec: str = "PCMA") -> Callable[[int], memoryview]:
    """Each call's audio: ``seconds`` of one shared tone with a little noise
    (so that no two stretches are alike), call i's from 167*i bytes in. A
    packet recorded into the wrong call or place shows; one tone serves
    thousands of calls."""
    length = int(8000 * seconds)
    shared = memoryview(tone(length / 8000 + calls * CALL_OFFSET / 8000, codec, noise=300))
    return lambda index: shared[CALL_OFFSET * index:CALL_OFFSET * index + length]


def run_calls(
    reactor: Any, host: str, port: int, calls: int, seconds: float, codec: str = "PCMA",
    ptime_ms: int = 20, framing: str = "bare", faults: Faults = Faults(),
    audio: Callable[[int], bytes | memoryview] | None = None, spread: float | None = None,
    pacer: ReactorPacer | None = None, all_started: Callable[[], None] | None = None,
    first_started: Callable[[], None] | None = None,
) -> Deferred[list[CallResult]]:
    """``calls`` phones each recording ``seconds`` of audio, their starts
    spread evenly over ``spread`` seconds (one packet time by default).
    ``first_started`` and ``all_started`` are called once the first and
    every Start have been answered."""
    spread = ptime_ms / 1000 if spread is None else spread
    audio = audio if audio is not None else call_audio(calls, seconds, codec)
    pacer = pacer if pacer is not None else ReactorPacer(reactor)
    answered = [0]

    def one_answered() -> None:
        answered[0] += 1
        if answered[0] == 1 and first_started is not None:
            first_started()
        if answered[0] == calls and all_started is not None:
            all_started()

    run = []
    for index in range(calls):
        call = SimulatedCall(
            reactor, host, port, f"sim-{index}", audio(index), codec, ptime_ms, framing, faults,
            device=f"00:a8:59:00:{index // 256:02x}:{index % 256:02x}", seed=index, pacer=pacer,
            answered=one_answered,
        )
        run.append(deferLater(reactor, spread * index / max(calls, 1), lambda c=call: c.run())
                   .addCallback(lambda coroutine: Deferred.fromCoroutine(coroutine)))
    return gatherResults(run, consumeErrors=True)


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def finished_recordings(root: str) -> dict[str, str]:
    """Recording id -> WAV path of the finished recordings under ``root``
    (read once, however many calls are verified)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".json"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    sidecar = json.load(handle)
                if sidecar.get("status") == "finished":
                    found[sidecar["id"]] = os.path.join(folder, sidecar["file"])
    return found


def verify(recordings: dict[str, str], result: CallResult, codec: str = "PCMA") -> str | None:
    """None if the recording of ``result`` (found in ``recordings``, from
    `finished_recordings`) holds exactly what was sent, lost packets as
    silence; else what is wrong. For G.711 stored as received (g711)."""
    path = recordings.get(result.recording_id)
    if path is None:
        return "no finished recording"
    if result.expected is None:
        return "nothing was sent"
    try:
        _, data = read_audio(path)
    except (OSError, NotAWav) as error:
        return f"unreadable: {error}"
    if data != result.expected:
        return f"{len(data)} bytes recorded, {len(result.expected)} expected, or different bytes"
    return None
