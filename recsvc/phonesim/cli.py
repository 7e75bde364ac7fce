"""recsvc-phone: act as one or many Fanvil phones against a recording
server, and check that each recording holds what its phone sent."""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import socket
import time
import wave
from array import array
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, FirstError
from twisted.internet.task import react

from recsvc.media import g711
from recsvc.phonesim.fleet import (
    DIRECTIONS,
    AddressRange,
    Fleet,
    FleetError,
    key_presses,
    parse_device_prefix,
    parse_digits,
    parse_number_pattern,
    parse_source_addresses,
    run_prefix,
)
from recsvc.phonesim.pacer import Pacer
from recsvc.phonesim.phone import FRAMINGS
from recsvc.phonesim.simulator import CallResult, Faults, ReactorPacer, percentile, run_calls
from recsvc.phonesim.verification import (
    ApiRecordings,
    Recordings,
    RunWindow,
    StorageFolder,
    VerificationUnavailable,
    verify_run,
)

DEFAULT_API_PORT = 8080


class NotASound(ValueError):
    """A --wav file that cannot be sent: why."""


def audio_from_wav(path: str, codec: str) -> bytes:
    """A 16-bit mono WAV file (8 or 16 kHz) in the codec's bytes. Raises
    NotASound saying why it cannot be."""
    try:
        with wave.open(path, "rb") as source:
            if source.getsampwidth() != 2 or source.getnchannels() != 1:
                raise NotASound(f"{path}: need 16-bit mono PCM")
            rate = source.getframerate()
            pcm = array("h", source.readframes(source.getnframes()))
    except OSError as error:
        raise NotASound(f"{path}: {error.strerror or error}") from None
    except (wave.Error, EOFError) as error:
        raise NotASound(f"{path}: not a WAV file ({error or 'cut short'})") from None
    if rate not in (8000, 16000):
        raise NotASound(f"{path}: need 8000 or 16000 Hz, not {rate}")
    if not pcm:
        raise NotASound(f"{path}: no audio in it")
    if codec == "G722":
        import G722

        if rate == 8000:
            pcm = array("h", (s for s in pcm for _ in range(2)))
        return G722.G722(16000, 64000).encode(pcm)
    if rate == 16000:
        pcm = pcm[::2]
    return g711.encode_alaw(pcm.tobytes()) if codec == "PCMA" else g711.encode_ulaw(pcm.tobytes())



def _option(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser of ours: its error is shown with the
    option's name (argparse hides a ValueError's own message)."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except FleetError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = parse.__name__
    return convert


def _port(text: str) -> int:
    """An argparse type: a TCP port."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1 to 65535)")
    return port


# Where the API's token may come from instead of the command line.
TOKEN_VARIABLE = "RECSVC_TOKEN"
# Starts a second when --spread is not given: as the benchmarks' phones
# ("500 phones starting within a second"), a busy site's morning at most.
STARTS_PER_SECOND = 500


def default_spread(calls: int, ptime_ms: int) -> float:
    """Seconds over which ``calls`` start by default: STARTS_PER_SECOND a
    second, over one packet time at least."""
    return max(ptime_ms / 1000, calls / STARTS_PER_SECOND)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recsvc-phone", description=__doc__,
        epilog="Exit status 1 when a start failed, a recording is not what was sent, or "
               "the check asked for with --storage-root or --api-url could not be made.",
    )
    p.add_argument("host", help="the recording server's address")
    p.add_argument("port", type=_port, help="its control port (control.listen)")
    p.add_argument("--calls", type=int, default=1,
                   help="phones, each recording one call, all at once (default: %(default)s)")
    p.add_argument("--duration", type=float, default=5.0,
                   help="seconds of audio per call (default: %(default)s)")
    p.add_argument("--codec", choices=("PCMA", "PCMU", "G722"), default="PCMA",
                   help="(default: %(default)s)")
    p.add_argument("--ptime", type=int, default=20, help="packet time, ms (default: %(default)s)")
    p.add_argument("--framing", choices=sorted(FRAMINGS), default="bare",
                   help="how control messages end (default: %(default)s)")
    p.add_argument("--wav", help="send this 16-bit mono WAV, 8 or 16 kHz (default: a tone, "
                   "different in each call)")
    p.add_argument("--spread", type=float,
                   help="seconds over which the calls start, evenly (default: "
                        f"{STARTS_PER_SECOND} a second, --calls/{STARTS_PER_SECOND}, at least "
                        "one --ptime)")
    fleet = p.add_argument_group("the phones")
    fleet.add_argument(
        "--source-addresses", type=_option(parse_source_addresses), metavar="RANGE",
        help="IPv4 addresses of this machine the phones send from, phone i from the "
             "(i mod count)th, its control connection and its RTP alike: A-B "
             "(127.0.0.2-127.0.0.250), a CIDR (127.0.1.0/24: its host addresses) or one "
             "address (default: the system's choice)")
    fleet.add_argument("--direction", choices=DIRECTIONS, default="out",
                       help="of the calls; mixed: even-numbered phones call out, odd ones are "
                            "called (default: %(default)s)")
    fleet.add_argument(
        "--numbers", type=_option(parse_number_pattern), default="138########",
        metavar="PATTERN",
        help="the remote party's number: each # is a digit of the phone's number i, "
             "zero-padded (+49301234####: phone 7 calls +493012340007) (default: %(default)s)")
    fleet.add_argument(
        "--device-prefix", type=_option(parse_device_prefix), default="00:a8:59",
        metavar="MAC",
        help="the phones' MAC addresses begin so; phone i's ends in i, in hex "
             "(default: %(default)s, Fanvil's)")
    fleet.add_argument(
        "--dtmf", type=_option(parse_digits), default="", metavar="KEYS",
        help="keys each call presses (0-9 * # A-D), spread over the call, 160 ms each, as "
             "RFC 4733 events of payload type 101 (the server's default "
             "rtp.dtmf_payload_type) (default: none)")
    faults = p.add_argument_group("network faults")
    faults.add_argument("--loss", type=float, default=0.0,
                        help="percent of packets lost (default: %(default)s)")
    faults.add_argument("--reorder", type=float, default=0.0,
                        help="percent of packets reordered (default: %(default)s)")
    faults.add_argument("--duplicates", type=float, default=0.0,
                        help="percent of packets sent twice (default: %(default)s)")
    faults.add_argument("--jitter", type=float, default=0.0,
                        help="ms of random delay (default: %(default)s)")
    faults.add_argument("--ssrc-change", action="store_true",
                        help="restart the stream half way")
    faults.add_argument("--drop-connection", action="store_true",
                        help="break TCP instead of a Stop")
    check = p.add_argument_group(
        "the check", "Each recording is found by its id and its start within this run, and "
        "compared byte for byte with what its phone sent (G.711 stored as g711 or pcm16).")
    where = check.add_mutually_exclusive_group()
    where.add_argument("--api-url", metavar="URL",
                       help="recsvc's HTTP API (default: http://HOST:8080)")
    where.add_argument("--storage-root", metavar="DIR",
                       help="read the recordings in this folder (the server's storage.root) "
                            "instead of asking the API")
    who = check.add_mutually_exclusive_group()
    who.add_argument("--token", help="the API's http.auth.token (better: the environment "
                                     f"variable {TOKEN_VARIABLE}, which ps does not show)")
    who.add_argument("--user", help="an http.auth user of the API: the password is asked on "
                                    "the terminal, or read from the first line of standard input")
    return p


def options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, checked: a value that cannot work is refused with
    the option's name."""
    p = parser()
    args = p.parse_args(argv)
    if args.calls < 1:
        p.error(f"--calls: {args.calls} is not a number of phones")
    # (Written so that nan, which compares false with everything, and inf
    # are refused too.)
    if not 0 < args.duration < math.inf:
        p.error(f"--duration: {args.duration:g} is not a number of seconds")
    if not 10 <= args.ptime <= 120:
        p.error(f"--ptime: {args.ptime} is not a packet time (10 to 120 ms)")
    if args.spread is not None and not 0 <= args.spread < math.inf:
        p.error(f"--spread: {args.spread:g} is not a number of seconds")
    for option in ("loss", "reorder", "duplicates"):
        if not 0 <= getattr(args, option) <= 100:
            p.error(f"--{option}: {getattr(args, option):g} is not a percentage (0 to 100)")
    if not 0 <= args.jitter < math.inf:
        p.error(f"--jitter: {args.jitter:g} is not a number of ms")
    for option, problem in Fleet("", args.device_prefix, args.numbers).problems(args.calls):
        p.error(f"{option}: {problem}")
    ticks = int(8000 * args.duration)
    if args.wav is not None:
        try:
            ticks = min(ticks, len(audio_from_wav(args.wav, args.codec)))
        except NotASound as error:
            p.error(f"--wav: {error}")
    try:
        key_presses(args.dtmf, ticks, 8 * args.ptime)
    except FleetError as error:
        p.error(f"--dtmf: {error}")
    if args.source_addresses is not None:
        problem = _not_local(args.source_addresses)
        if problem is not None:
            p.error(f"--source-addresses: {problem}")
    if args.api_url is not None:
        parts = urlsplit(args.api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname \
                or not args.api_url.isascii():
            p.error(f"--api-url: {args.api_url!r} is not an http:// or https:// URL")
    if args.token is None and args.user is None:
        args.token = os.environ.get(TOKEN_VARIABLE) or None
    if args.token is not None and not (args.token.isascii() and args.token.isprintable()):
        p.error(f"--token (or {TOKEN_VARIABLE}): a token is printable ASCII")
    return args


def _not_local(addresses: AddressRange) -> str | None:
    """Why the phones cannot send from these addresses, if they cannot: the
    first and the last are tried."""
    for address in dict.fromkeys((addresses.address(0), addresses.last)):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, 0))
            except OSError as error:
                return f"{address} is not an address of this machine ({error.strerror})"
    return None


def authorization_of(args: argparse.Namespace) -> str | None:
    if args.token is not None:
        return f"Bearer {args.token}"
    if args.user is not None:
        from recsvc.cli.commands import _read_password
        from recsvc.cli.status import basic_authorization

        return basic_authorization(args.user, _read_password(confirm=False))
    return None


def recordings_of(reactor: Any, args: argparse.Namespace, authorization: str | None,
                began: float) -> Recordings:
    if args.storage_root is not None:
        return StorageFolder(args.storage_root, began)
    url = args.api_url or f"http://{args.host}:{DEFAULT_API_PORT}"
    return ApiRecordings(reactor, url, authorization)


async def run_phones(reactor: Any, args: argparse.Namespace, authorization: str | None = None) -> int:
    faults = Faults(
        args.loss / 100, args.reorder / 100, args.duplicates / 100, args.jitter,
        args.ssrc_change, args.drop_connection,
    )
    sound = audio_from_wav(args.wav, args.codec)[: int(8000 * args.duration)] if args.wav else None
    fleet = Fleet(run_prefix(time.time(), random.Random()), args.device_prefix, args.numbers,
                  args.direction, args.source_addresses, args.dtmf)
    print(fleet.describe(args.calls), flush=True)
    pacer = ReactorPacer(reactor, Pacer(args.ptime / 1000))
    began = time.time()
    results = await run_calls(
        reactor, args.host, args.port, args.calls, args.duration, args.codec, args.ptime,
        args.framing, faults, audio=(lambda index: sound) if sound is not None else None,
        spread=default_spread(args.calls, args.ptime) if args.spread is None else args.spread,
        pacer=pacer,
        first_started=lambda: print("first start answered", flush=True),
        all_started=lambda: print("all starts answered", flush=True),
        fleet=fleet,
    )
    window = RunWindow(began, time.time())
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
    print(f"pacing: the latest packet went {1000 * pacer.pacer.late_max:.1f} ms late", flush=True)
    status = 0 if len(started) == len(results) else 1
    if started:
        checked = await _check(reactor, args, authorization, started, window)
        status = status or checked
    return status


async def _check(reactor: Any, args: argparse.Namespace, authorization: str | None,
                 started: list[CallResult], window: RunWindow) -> int:
    """Verify the recordings and say how it went; the exit status it calls for."""
    asked = args.storage_root is not None or args.api_url is not None
    if args.codec == "G722":
        print("not verified: G.722 is stored decoded (16 kHz PCM), not as it was sent")
        return 1 if asked else 0
    recordings = recordings_of(reactor, args, authorization, window.began)
    began = time.monotonic()
    try:
        problems = await verify_run(reactor, recordings, started, args.codec, window)
    except VerificationUnavailable as error:
        print(f"not verified: {error}")
        return 1 if asked else 0
    finally:
        if isinstance(recordings, ApiRecordings):
            await recordings.close()
    wrong = sorted((recording_id, problem) for recording_id, problem in problems.items()
                   if problem is not None)
    where = args.storage_root if args.storage_root is not None else recordings.url
    print(f"verified: {len(started) - len(wrong)} byte-exact, {len(wrong)} not "
          f"(in {where}, {time.monotonic() - began:.1f} s)")
    for recording_id, problem in wrong[:10]:
        print(f"  {recording_id}: {problem}")
    if len(wrong) > 10:
        print(f"  ... and {len(wrong) - 10} more")
    return 1 if wrong else 0


def main(argv: Sequence[str] | None = None) -> None:
    args = options(argv)
    # Asked before the calls, not after minutes of them.
    authorization = authorization_of(args)
    # A load generator is an instrument: its own pauses (full garbage
    # collections over thousands of calls' objects) must not show as the
    # server's latency. Young objects are still collected.
    gc.freeze()
    gc.set_threshold(50_000, 20, 1_000_000)

    async def run(reactor: Any) -> None:
        try:
            status = await run_phones(reactor, args, authorization)
        except (BrokenPipeError, FirstError) as error:
            # (A line printed while the calls run fails inside one of them:
            # gatherResults hands that on as its FirstError.)
            if isinstance(error, FirstError) and not error.subFailure.check(BrokenPipeError):
                raise
            # The reader has gone (`recsvc-phone ... | head`): end quietly, as
            # the recsvc command does, without waiting for the calls.
            from recsvc.cli.commands import CLOSED_PIPE, _discard_stdout

            _discard_stdout()
            raise SystemExit(CLOSED_PIPE) from None
        if status:
            raise SystemExit(status)

    react(lambda reactor: Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    main()
