"""``recsvc-phone``: act as one or many Fanvil phones against a recording server."""

from __future__ import annotations

import argparse
import gc
import wave
from array import array
from typing import Any, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from recsvc import g711
from recsvc.phone import FRAMINGS
from recsvc.simulator import (
    Faults,
    ReactorPacer,
    finished_recordings,
    percentile,
    run_calls,
    verify,
)


def audio_from_wav(path: str, codec: str) -> bytes:
    """A 16-bit mono WAV file (8 or 16 kHz) in the codec's bytes."""
    with wave.open(path, "rb") as source:
        if source.getsampwidth() != 2 or source.getnchannels() != 1:
            raise SystemExit(f"{path}: need 16-bit mono PCM")
        rate = source.getframerate()
        pcm = array("h", source.readframes(source.getnframes()))
    if rate not in (8000, 16000):
        raise SystemExit(f"{path}: need 8000 or 16000 Hz, not {rate}")
    if codec == "G722":
        import G722

        if rate == 8000:
            pcm = array("h", (s for s in pcm for _ in range(2)))
        return G722.G722(16000, 64000).encode(pcm)
    if rate == 16000:
        pcm = pcm[::2]
    return g711.encode_alaw(pcm.tobytes()) if codec == "PCMA" else g711.encode_ulaw(pcm.tobytes())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsvc-phone", description=__doc__)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--calls", type=int, default=1, help="concurrent phones (default 1)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of audio per call")
    p.add_argument("--codec", choices=("PCMA", "PCMU", "G722"), default="PCMA")
    p.add_argument("--ptime", type=int, default=20, help="packet time, ms")
    p.add_argument("--framing", choices=sorted(FRAMINGS), default="bare")
    p.add_argument("--wav", help="send this 16-bit mono WAV (else a tone)")
    p.add_argument("--spread", type=float, help="seconds over which the calls start")
    p.add_argument("--loss", type=float, default=0.0, help="percent of packets lost")
    p.add_argument("--reorder", type=float, default=0.0, help="percent of packets reordered")
    p.add_argument("--duplicates", type=float, default=0.0, help="percent sent twice")
    p.add_argument("--jitter", type=float, default=0.0, help="ms of random delay")
    p.add_argument("--ssrc-change", action="store_true", help="restart the stream half way")
    p.add_argument("--drop-connection", action="store_true", help="break TCP instead of a Stop")
    p.add_argument("--storage-root", help="verify every recording byte for byte here")
    return p


async def _main(reactor: Any, args: argparse.Namespace) -> int:
    faults = Faults(
        args.loss / 100, args.reorder / 100, args.duplicates / 100, args.jitter,
        args.ssrc_change, args.drop_connection,
    )
    sound = audio_from_wav(args.wav, args.codec)[: int(8000 * args.duration)] if args.wav else None
    pacer = ReactorPacer(reactor)
    results = await run_calls(
        reactor, args.host, args.port, args.calls, args.duration, args.codec, args.ptime,
        args.framing, faults, audio=(lambda index: sound) if sound is not None else None,
        spread=args.spread, pacer=pacer,
        first_started=lambda: print("first start answered", flush=True),
        all_started=lambda: print("all starts answered", flush=True),
    )
    started = [r for r in results if r.started]
    starts = [r.start_latency for r in results if r.start_latency is not None]
    stops = [r.stop_latency for r in results if r.stop_latency is not None]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{1000 * value:.1f} ms"

    print(f"starts: {len(started)} succeeded, {len(results) - len(started)} failed "
          f"{sorted({r.start_reason for r in results if not r.started})}")
    print(f"start latency p50 {ms(percentile(starts, 0.5))}, p99 {ms(percentile(starts, 0.99))}")
    print(f"stop latency p50 {ms(percentile(stops, 0.5))}, p99 {ms(percentile(stops, 0.99))}")
    print(f"packets sent: {sum(r.packets_sent for r in results)}")
    print(f"pacing: the latest packet went {1000 * pacer.pacer.late_max:.1f} ms late")
    status = 0 if len(started) == len(results) else 1
    if args.storage_root:
        found = finished_recordings(args.storage_root)
        wrong = [(r.recording_id, problem) for r in started
                 if (problem := verify(found, r, args.codec)) is not None]
        print(f"verified: {len(started) - len(wrong)} byte-exact, {len(wrong)} not")
        for recording_id, problem in wrong[:10]:
            print(f"  {recording_id}: {problem}")
        status = status or (1 if wrong else 0)
    return status


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # A load generator is an instrument: its own pauses (full garbage
    # collections over thousands of calls' objects) must not show as the
    # server's latency. Young objects are still collected.
    gc.freeze()
    gc.set_threshold(50_000, 20, 1_000_000)

    async def run(reactor: Any) -> None:
        status = await _main(reactor, args)
        if status:
            raise SystemExit(status)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
