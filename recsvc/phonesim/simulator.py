"""Phones on the reactor: many simulated Fanvil phones recording at once.

Each `SimulatedCall` opens the control connection (from its own address,
if given), asks to record, sends RTP paced in real time (with optional
faults and key presses), stops, and measures how long the server took to
answer. `run_calls` spreads many calls evenly in time, as real phones are;
`recsvc.phonesim.verification` checks each recording byte for byte.
"""

from __future__ import annotations

import math
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

from recsvc.media import g711
from recsvc.media.codec import CODECS
from recsvc.phonesim.fleet import CallSetup, Fleet, key_presses, run_prefix
from recsvc.phonesim.pacer import LeanStream, Pacer, Stream, udp_socket
from recsvc.phonesim.phone import (
    FRAMINGS,
    PAYLOAD_TYPES,
    PlannedPacket,
    expected_keys,
    expected_recording,
    plan_call,
    restart_tick,
)
from recsvc.control.commands import (
    CallParties,
    StartRequest,
    StartResponse,
    StopRequest,
    StopResponse,
    decode_message,
    encode_command,
    parse_command,
)
from recsvc.control.framing import MessageFramer
from recsvc.media.rtp import build_rtp
from recsvc.phonesim.verification import finished_sidecars

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
    setup: CallSetup
    started: bool
    start_reason: str
    start_latency: float | None
    stop_latency: float | None
    packets_sent: int
    # What a perfect recorder makes of what was sent (lost packets and key
    # presses as silence): what verification compares the recording with.
    expected: bytes | memoryview | None = None
    # The keys it must list: (key, ticks from the file's start), in order.
    expected_keys: tuple[tuple[str, int], ...] = ()
    # Where in the file the stream restarted (--ssrc-change), in ticks: the
    # server places what follows by the wall clock, a little later or
    # earlier than the timestamps say.
    restart_at: int | None = None

    @property
    def recording_id(self) -> str:
        return self.setup.recording_id


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
    """A planned call's packets, each in the slot (packet time) of its place
    in the call, with network faults: some lost (their slot stays empty, as
    on a network: what follows is not sent early), some swapped with the
    next one sent, some sent twice, some late."""

    plan: list[PlannedPacket]
    faults: Faults
    rng: random.Random
    step: int = 160  # RTP ticks a slot
    delivered: set[int] = attrs.field(factory=set)
    _slots: deque[list[tuple[int, float]]] = attrs.field(init=False)
    _held: set[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        faults, rng, plan = self.faults, self.rng, self.plan
        # Where the stream restarts (a new SSRC), the server places the new
        # stream by the wall clock: the packets either side go whole, in
        # order and on time, or no recorder could tell where it belongs.
        held = {0, len(plan) - 1}
        for index in range(1, len(plan)):
            if plan[index].packet.ssrc != plan[index - 1].packet.ssrc:
                held.update((index - 1, index))
        sent = [i for i in range(len(plan)) if i in held or rng.random() >= faults.loss]
        # The tick each is sent at: its own, or its neighbour's if swapped.
        send_tick = {i: plan[i].tick for i in sent}
        for k in range(1, len(sent) - 2):
            early, late = sent[k], sent[k + 1]
            if early not in held and late not in held and rng.random() < faults.reorder:
                send_tick[early], send_tick[late] = send_tick[late], send_tick[early]
                sent[k], sent[k + 1] = late, early
        self._held = held
        slots: list[list[tuple[int, float]]] = [
            [] for _ in range(max(send_tick.values()) // self.step + 1)]
        for index in sent:
            # A packet that begins within a slot (after a key press, a
            # restart) goes that much into it.
            slots[send_tick[index] // self.step].append(
                (index, send_tick[index] % self.step / 8000))
        self._slots = deque(slots)

    def next_slot(self) -> list[tuple[float, bytes]] | None:
        if not self._slots:
            return None
        sends = []
        jitter = self.faults.jitter_ms / 1000
        for index, into in self._slots.popleft():
            self.delivered.add(index)
            datagram = build_rtp(self.plan[index].packet)
            copies = 2 if self.rng.random() < self.faults.duplicates else 1
            late = self.rng.uniform(0, jitter) if jitter and index not in self._held else 0.0
            delay = into + late
            sends += [(delay, datagram)] * copies
        return sends


@attrs.define(eq=False)
class SimulatedCall:
    """One phone recording one call against ``host:port``."""

    reactor: Any
    host: str
    port: int
    setup: CallSetup
    audio: bytes | memoryview
    codec: str = "PCMA"
    ptime_ms: int = 20
    framing: str = "bare"
    faults: Faults = Faults()
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
            return CallResult(self.setup, False, reason, None, None, 0)

    async def _run(self, note_answered: Callable[[], None]) -> CallResult:
        setup = self.setup
        source = setup.source_address
        endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port,
                                      bindAddress=None if source is None else (source, 0))
        control = await endpoint.connect(Factory.forProtocol(lambda: _Control(self.framing)))
        began = time.monotonic()
        answer = control.expect(StartResponse)
        control.send(StartRequest(
            setup.recording_id, setup.device, self.codec, setup.direction,
            CallParties("2001", "Sim", setup.remote_number, "Callee"),
        ))
        response: StartResponse = await answer
        start_latency = time.monotonic() - began
        note_answered()
        if response.result != "success":
            control.transport.loseConnection()
            return CallResult(setup, False, response.reason, start_latency, None, 0)
        sent, expected, keys, restart_at = await self._stream(response.server, response.port)
        stop_latency = None
        if self.faults.drop_connection:
            control.transport.abortConnection()
        else:
            began = time.monotonic()
            stopped = control.expect(StopResponse)
            control.send(StopRequest(setup.recording_id, "hangup"))
            await stopped
            stop_latency = time.monotonic() - began
            control.transport.loseConnection()
        await control.closed
        return CallResult(setup, True, "", start_latency, stop_latency, sent, expected, keys,
                          restart_at)

    async def _stream(
        self, host: str, port: int,
    ) -> tuple[int, bytes | memoryview, tuple[tuple[str, int], ...], int | None]:
        """Send the call's RTP in real time from its own UDP port; returns
        the datagrams sent, what a perfect recording of them holds, the
        keys it lists and where the stream restarted (ticks into the file)."""
        rng = random.Random(self.seed)
        faults = self.faults
        planned = None
        presses = key_presses(self.setup.keys, len(self.audio), 8 * self.ptime_ms)
        if not presses and (
            faults.loss, faults.reorder, faults.duplicates, faults.jitter_ms, faults.ssrc_change
        ) == (0, 0, 0, 0, False):
            stream: Stream = LeanStream(
                self.audio, PAYLOAD_TYPES[self.codec], rng.getrandbits(32), rng.getrandbits(16),
                rng.getrandbits(32), 8 * self.ptime_ms,
            )
        else:
            plan = plan_call(
                bytes(self.audio), self.codec, self.ptime_ms,
                ssrc_changes=(len(self.audio) // 2,) if faults.ssrc_change else (),
                dtmf=presses, seed=self.seed,
            )
            stream = planned = PlannedStream(plan, faults, rng, 8 * self.ptime_ms)
        pacer = self.pacer if self.pacer is not None else ReactorPacer(
            self.reactor, Pacer(self.ptime_ms / 1000))
        sock = udp_socket(host, port, source=self.setup.source_address)
        try:
            sent = await pacer.send(stream, sock)
            # The last late packets, and the socket to settle.
            await deferLater(self.reactor, faults.jitter_ms / 1000 + 0.05, lambda: None)
        finally:
            sock.close()
        if planned is None:
            return sent, self.audio, (), None
        # G.722 is stored decoded: its expectation is not compared.
        silence = getattr(CODECS.get(self.codec), "stored_silence", b"") or b"\0"
        return (sent, expected_recording(planned.plan, planned.delivered, silence),
                expected_keys(planned.plan, planned.delivered), restart_tick(planned.plan))


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
    first_started: Callable[[], None] | None = None, fleet: Fleet | None = None,
) -> Deferred[list[CallResult]]:
    """``calls`` phones each recording ``seconds`` of audio, their starts
    spread evenly over ``spread`` seconds (one packet time by default).
    Phone i is ``fleet.call(i)`` (by default: ids of a new run prefix, each
    phone its own MAC address, calling out). ``first_started`` and
    ``all_started`` are called once the first and every Start have been
    answered."""
    spread = ptime_ms / 1000 if spread is None else spread
    fleet = fleet if fleet is not None else Fleet(run_prefix(time.time(), random.Random()))
    audio = audio if audio is not None else call_audio(calls, seconds, codec)
    pacer = pacer if pacer is not None else ReactorPacer(reactor, Pacer(ptime_ms / 1000))
    if pacer.pacer.interval != ptime_ms / 1000:  # packets would go early or late
        raise ValueError(f"a pacer of {pacer.pacer.interval} s slots for {ptime_ms} ms packets")
    answered = [0]

    def one_answered() -> None:
        answered[0] += 1
        if answered[0] == 1 and first_started is not None:
            first_started()
        if answered[0] == calls and all_started is not None:
            all_started()

    if calls and fleet.keys:
        key_presses(fleet.keys, len(audio(0)), 8 * ptime_ms)  # FleetError if they do not fit
    run = []
    for index in range(calls):
        call = SimulatedCall(
            reactor, host, port, fleet.call(index), audio(index), codec, ptime_ms, framing,
            faults, seed=index, pacer=pacer, answered=one_answered,
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
    """Recording id -> WAV path of the finished recordings under ``root``,
    for a folder whose ids are all different (a test's, a benchmark's): of
    files with the same id, any one is given. `recsvc.phonesim.verification` finds
    a run's own recordings among others'."""
    return {found.sidecar["id"]: found.location for found in finished_sidecars(root)}
