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
import time
from array import array
from typing import Any, Callable

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.task import LoopingCall, deferLater

from recsvc import g711
from recsvc.phone import FRAMINGS, PlannedPacket, expected_recording, plan_call
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


def tone(seconds: float, codec: str = "PCMA", hertz: float = 440.0) -> bytes:
    """A sine tone in the codec's bytes (8000 bytes a second for all three)."""
    if codec == "G722":
        samples = array("h", (
            int(8000 * math.sin(2 * math.pi * hertz * n / 16000)) for n in range(int(16000 * seconds))
        ))
        import G722

        return G722.G722(16000, 64000).encode(samples)
    pcm = array("h", (
        int(8000 * math.sin(2 * math.pi * hertz * n / 8000)) for n in range(int(8000 * seconds))
    )).tobytes()
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
    plan: tuple[PlannedPacket, ...] = ()
    delivered: frozenset[int] = frozenset()


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
class SimulatedCall:
    """One phone recording one call against ``host:port``."""

    reactor: Any
    host: str
    port: int
    recording_id: str
    audio: bytes
    codec: str = "PCMA"
    ptime_ms: int = 20
    framing: str = "bare"
    faults: Faults = Faults()
    device: str = "00:a8:59:00:00:01"
    seed: int = 0

    async def run(self) -> CallResult:
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
        if response.result != "success":
            control.transport.loseConnection()
            return CallResult(self.recording_id, False, response.reason, start_latency, None, 0)
        plan = plan_call(
            self.audio, self.codec, self.ptime_ms,
            ssrc_changes=(len(self.audio) // 2,) if self.faults.ssrc_change else (),
            seed=self.seed,
        )
        delivered = await self._stream(plan, response.server, response.port)
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
        return CallResult(
            self.recording_id, True, "", start_latency, stop_latency, len(delivered),
            tuple(plan), frozenset(delivered),
        )

    async def _stream(self, plan: list[PlannedPacket], host: str, port: int) -> set[int]:
        """Send the plan in real time from one UDP port, with the faults."""
        rng = random.Random(self.seed)
        sender = self.reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        faults = self.faults
        order = [i for i in range(len(plan)) if i in (0, len(plan) - 1) or rng.random() >= faults.loss]
        for k in range(1, len(order) - 2):
            if rng.random() < faults.reorder:
                order[k], order[k + 1] = order[k + 1], order[k]
        step = self.ptime_ms / 1000
        sent: set[int] = set()
        finished: Deferred[None] = Deferred()
        queue = list(order)

        def tick() -> None:
            if not queue:
                loop.stop()
                return
            index = queue.pop(0)
            datagram = build_rtp(plan[index].packet)
            copies = 2 if rng.random() < faults.duplicates else 1
            delay = rng.uniform(0, faults.jitter_ms / 1000) if faults.jitter_ms else 0.0
            for _ in range(copies):
                if delay:
                    self.reactor.callLater(delay, sender.write, datagram, (host, port))
                else:
                    sender.write(datagram, (host, port))
            sent.add(index)

        loop = LoopingCall(tick)
        loop.clock = self.reactor
        loop.start(step).addBoth(lambda _: finished.callback(None))
        await finished
        # The last jittered packets, and the socket to settle.
        await deferLater(self.reactor, faults.jitter_ms / 1000 + 0.05, lambda: None)
        await sender.stopListening()
        return sent


def run_calls(
    reactor: Any, host: str, port: int, calls: int, seconds: float, codec: str = "PCMA",
    ptime_ms: int = 20, framing: str = "bare", faults: Faults = Faults(),
    audio: Callable[[int], bytes] | None = None, spread: float | None = None,
) -> Deferred[list[CallResult]]:
    """``calls`` phones each recording ``seconds`` of audio, their starts
    spread evenly over ``spread`` seconds (one packet time by default)."""
    spread = ptime_ms / 1000 if spread is None else spread
    run = []
    for index in range(calls):
        sound = audio(index) if audio is not None else tone(seconds, codec, 300 + 7 * index)
        call = SimulatedCall(
            reactor, host, port, f"sim-{index}", sound, codec, ptime_ms, framing, faults,
            device=f"00:a8:59:00:{index // 256:02x}:{index % 256:02x}", seed=index,
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
    try:
        _, data = read_audio(path)
    except (OSError, NotAWav) as error:
        return f"unreadable: {error}"
    expected = expected_recording(list(result.plan), set(result.delivered), SILENCE.get(codec, b"\0"))
    if data != expected:
        return f"{len(data)} bytes recorded, {len(expected)} expected, or different bytes"
    return None
