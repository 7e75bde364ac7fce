"""Misbehaving control clients, to test and measure that a server keeps
serving its phones while something hammers its control port.

Each kind of abuse runs in its own thread with blocking sockets and never
reads what the server answers:

- ``garbage``: random bytes (newlines among them) as fast as the server
  takes them, reconnecting whenever it closes the connection;
- ``bad-starts``: Start requests that fail (no such codec), each owed a
  ``failed`` reply that is never read;
- ``endless``: one line that never ends;
- ``half-open``: as many idle connections as the server lets it hold (a
  partial message on each), from every source address, trying for more;
- ``churn``: connect and drop with a reset, as fast as possible (a reset
  leaves no TIME_WAIT behind: dropped with a FIN, tens of thousands of
  connections a minute would take every ephemeral port of the machine);
- ``spray``: new connections as fast as one thread can open them, each
  sent SPRAY_BYTES of garbage, kept open a moment (the last SPRAY_HELD of
  them) and dropped with a reset: the server must accept and refuse
  thousands a second that all send data.

``sources`` are the local addresses the clients connect from (on Linux any
127.x.y.z reaches 127.0.0.1), shared out among the kinds (each kind its
own, while there are enough), so that one run looks like several
misbehaving machines and each meets the per-address limits on its own. Run as ``python -m recsvc.phonesim.abuse --port P --seconds S``: it prints
one JSON line of counts when done (or sent SIGTERM).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import random
import signal
import socket
import struct
import threading
import time
from typing import Callable, Iterator

import attrs

KINDS = ("garbage", "bad-starts", "endless", "half-open", "churn", "spray")
CHUNK = 16384
SPRAY_BYTES = 512
SPRAY_HELD = 64


@attrs.define
class AbuseCounts:
    """What one kind of abuse did (only its own thread writes it)."""

    connections: int = 0
    refused: int = 0  # connect() failed
    closed_by_server: int = 0  # reset or closed while writing (refused ones too)
    stalled: int = 0  # a write did not finish in 2 s: the server stopped reading
    bytes_sent: int = 0
    held: int = 0  # half-open: connections alive when last looked at


@attrs.define(eq=False)
class Abuser:
    """The abuse of ``kinds`` against ``host:port`` until `stop` (or ``seconds``)."""

    host: str
    port: int
    kinds: tuple[str, ...] = KINDS
    sources: tuple[str, ...] = ("127.0.0.1",)
    seed: int = 0
    counts: dict[str, AbuseCounts] = attrs.field(init=False)
    _done: threading.Event = attrs.field(init=False, factory=threading.Event)
    _threads: list[threading.Thread] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds of abuse: {sorted(unknown)}")
        self.counts = {kind: AbuseCounts() for kind in self.kinds}

    def start(self) -> None:
        for number, kind in enumerate(self.kinds):
            run = getattr(self, "_" + kind.replace("-", "_"))
            thread = threading.Thread(
                target=run, args=(self.counts[kind], random.Random(self.seed + number),
                                  self._sources_of(number)),
                name=f"abuse-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> dict[str, dict[str, int]]:
        """Stops every client; returns the counts by kind."""
        self._done.set()
        for thread in self._threads:
            thread.join(10)
        return {kind: attrs.asdict(counts) for kind, counts in self.counts.items()}

    def _connect(self, counts: AbuseCounts, source: str) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2,
                                            source_address=(source, 0))
        except OSError:
            counts.refused += 1
            return None
        counts.connections += 1
        return sock

    def _sources_of(self, number: int) -> itertools.cycle[str]:
        """The addresses of the ``number``-th kind, round and round."""
        if len(self.sources) >= len(self.kinds):
            return itertools.cycle(self.sources[number::len(self.kinds)])
        return itertools.cycle([self.sources[number % len(self.sources)]])

    def _connections(self, counts: AbuseCounts, sources: itertools.cycle[str],
                     pause: float) -> Iterator[socket.socket]:
        """New connections, one address after another, until stopped
        (``pause`` seconds after a refused one)."""
        for source in sources:
            if self._done.is_set():
                return
            sock = self._connect(counts, source)
            if sock is None:
                time.sleep(pause)
                continue
            yield sock

    def _keep_writing(self, counts: AbuseCounts, sources: itertools.cycle[str],
                      next_chunk: Callable[[], bytes], first: bytes = b"") -> None:
        """One connection after another, each written to until the server
        closes it."""
        for sock in self._connections(counts, sources, 0.01):
            with sock:
                try:
                    sock.sendall(first)
                    counts.bytes_sent += len(first)
                    while not self._done.is_set():
                        chunk = next_chunk()
                        sock.sendall(chunk)
                        counts.bytes_sent += len(chunk)
                except socket.timeout:
                    counts.stalled += 1
                except OSError:
                    counts.closed_by_server += 1

    def _garbage(self, counts: AbuseCounts, rng: random.Random,
                 sources: itertools.cycle[str]) -> None:
        def chunk() -> bytes:
            data = bytearray(rng.randbytes(CHUNK))
            for _ in range(64):
                data[rng.randrange(CHUNK)] = 0x0A
            return bytes(data)
        self._keep_writing(counts, sources, chunk)

    def _bad_starts(self, counts: AbuseCounts, rng: random.Random,
                    sources: itertools.cycle[str]) -> None:
        numbers = itertools.count()

        def chunk() -> bytes:
            return b"".join(
                b"cmd=RecordStartRequest&id=flood-%d&device=00a859000000&codec=NOPE\n"
                % next(numbers) for _ in range(100))
        self._keep_writing(counts, sources, chunk)

    def _endless(self, counts: AbuseCounts, rng: random.Random,
                 sources: itertools.cycle[str]) -> None:
        self._keep_writing(counts, sources, lambda: b"x" * CHUNK,
                           first=b"cmd=RecordStartRequest\n" + b"id=")

    def _half_open(self, counts: AbuseCounts, rng: random.Random,
                   sources: itertools.cycle[str]) -> None:
        held: list[socket.socket] = []
        try:
            for source in sources:
                if self._done.wait(0.002):
                    return
                held = _alive(held)
                counts.held = len(held)
                sock = self._connect(counts, source)
                if sock is None:
                    continue
                try:
                    sock.sendall(b"cmd=RecordStartReq")
                except OSError:
                    counts.closed_by_server += 1
                    sock.close()
                    continue
                sock.setblocking(False)  # (looked at without waiting)
                held.append(sock)
        finally:
            for sock in held:
                sock.close()

    def _churn(self, counts: AbuseCounts, rng: random.Random,
               sources: itertools.cycle[str]) -> None:
        for sock in self._connections(counts, sources, 0.001):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


    def _spray(self, counts: AbuseCounts, rng: random.Random,
               sources: itertools.cycle[str]) -> None:
        garbage = bytes(rng.randbytes(SPRAY_BYTES))
        held: collections.deque[socket.socket] = collections.deque()
        try:
            for sock in self._connections(counts, sources, 0.001):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                try:
                    sock.send(garbage)
                    counts.bytes_sent += SPRAY_BYTES
                except OSError:
                    counts.closed_by_server += 1
                held.append(sock)
                if len(held) > SPRAY_HELD:
                    held.popleft().close()
        finally:
            for sock in held:
                sock.close()


def _alive(sockets: list[socket.socket]) -> list[socket.socket]:
    """The sockets the server has not closed (a refused connection is
    accepted by the kernel first, then reset); the others are closed."""
    alive = []
    for sock in sockets:
        try:
            gone = sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            gone = False
        except OSError:
            gone = True
        if gone:
            sock.close()
        else:
            alive.append(sock)
    return alive


def source_addresses(count: int) -> tuple[str, ...]:
    """``count`` loopback addresses from 127.0.0.2 on (all reach 127.0.0.1)."""
    return tuple(f"127.0.0.{2 + n}" for n in range(count))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--sources", type=int, default=8,
                        help="how many loopback source addresses (127.0.0.2 on)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    abuser = Abuser(args.host, args.port, tuple(args.kinds),
                    source_addresses(args.sources), args.seed)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    abuser.start()
    print(json.dumps({"abusing": list(args.kinds)}), flush=True)
    stopped.wait(args.seconds)
    print(json.dumps(abuser.stop()), flush=True)


if __name__ == "__main__":
    main()
