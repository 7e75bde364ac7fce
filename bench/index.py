"""Search at scale (issue 18): an index of N synthetic finished recordings
(realistic numbers, names and devices over three years), grown in steps,
and at each size the latency of the searches people make (p50 / p99 of
``--repeat`` runs each; the API's answer, a page with its total and next
cursor, for the most common ones) and how fast finished recordings are
indexed as the service indexes them (one commit each). On demand, not in
`make test`: `make bench-index` (SQLite and PostgreSQL; the PostgreSQL
cluster, Debian's, is started here in the folder, as the tests start theirs).

    python bench/index.py --sizes 1000000 3000000 10000000 --write-docs

``--folder`` keeps the indexes there (one a size): run again with the same
folder, the rows already in them are kept (only what is missing is
added), so that ``--build-only`` builds them now and a later run times
them on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsvc.index import store as index  # noqa: E402
from recsvc.index.sqlite import SqliteIndex  # noqa: E402

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                    "benchmarks.md")
BEGIN, END = "<!-- index:begin -->", "<!-- index:end -->"
FIRST_NAMES = ["Alice", "Bob", "Carol", "Dieter", "Eva", "Fatima", "Giulia", "Hans", "Ines",
               "Jürgen", "Kai", "Li", "Maria", "Nils", "Olga", "Paul", "Qiang", "Rosa", "Sven",
               "Tanja", "Ute", "Viktor", "Wei", "Xenia", "Yusuf", "Zoe"]
LAST_NAMES = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
              "Schulz", "Hoffmann", "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Garcia",
              "Rossi", "Novak", "Kowalski", "Smith", "Jones", "Brown", "Taylor"]
START = 1_700_000_000  # 2023-11-14: three years of calls from here
SPAN = 3 * 365 * 86400
DEVICES = 5000


def remote_number(rng: random.Random) -> str:
    """A caller as a call centre sees them: mobiles and landlines, national
    and international, now and then a short or withheld one."""
    kind = rng.random()
    if kind < 0.45:
        return "1" + rng.choice("3578") + "".join(rng.choice("0123456789") for _ in range(9))
    if kind < 0.75:
        return "+49 30 " + "".join(rng.choice("0123456789") for _ in range(7))
    if kind < 0.95:
        return "0" + rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(8))
    return rng.choice(["", "112", "anonymous"])


def sidecars(rng: random.Random, first: int, count: int) -> Iterator[dict[str, Any]]:
    for number in range(first, first + count):
        started = START + rng.randrange(SPAN)
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started))
        device = "00a859%06x" % rng.randrange(DEVICES)
        duration = round(rng.expovariate(1 / 180), 1)
        named = rng.random() < 0.6
        yield {
            "id": f"call-{number}", "node": rng.choice(["rec-1", "rec-2"]), "device": device,
            "codec": "PCMA", "format": "g711", "direction": rng.choice(["in", "out"]),
            "local_number": str(2000 + rng.randrange(2000)),
            "local_name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            "remote_number": remote_number(rng),
            "remote_name": (f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" if named else ""),
            "status": "finished", "started_at": when + ".000Z",
            "stopped_at": when + ".000Z", "duration_s": duration,
            "stop_reason": rng.choice(["hangup", "hangup", "hangup", "connection lost"]),
            "stopped_by": "phone", "part": 1, "packets_received": int(duration * 50),
            "packets_lost": 0, "file": f"{when.replace('-', '').replace(':', '')}Z_call-{number}.wav",
        }


def grow(found_in: Any, rng: random.Random, first: int, count: int) -> float:
    """Add ``count`` recordings in large transactions (as a reindex does);
    the seconds it took."""
    began = time.perf_counter()
    batch = []
    for data in sidecars(rng, first, count):
        folder = f"{data['device']}/{data['started_at'][:10].replace('-', '/')}"
        batch.append(index.entry_from_sidecar(data, f"{folder}/{data['file'][:-4]}.json", 0))
        if len(batch) == 1000:
            found_in.put(batch)
            batch = []
    if batch:
        found_in.put(batch)
    return time.perf_counter() - began


def timed(run: Any, repeat: int) -> tuple[float, float, int]:
    """p50 and p99 in ms over ``repeat`` runs of ``run()``, and what it found."""
    took = []
    found = 0
    for _ in range(repeat):
        began = time.perf_counter()
        found = run()
        took.append(1000 * (time.perf_counter() - began))
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, int(0.99 * len(took)))], found


def searches(found_in: Any) -> list[tuple[str, Any]]:
    """What people search for (values taken from the index itself), each
    as a function that runs it and says how many rows it gave."""
    sample = (index.search(found_in, index.Search(page=3, page_size=500))
              or index.search(found_in, index.Search(page_size=500)))
    known = next(row for row in sample if len(row["remote_number"]) > 8 and row["remote_name"])
    rare_number, name = known["remote_number"], known["remote_name"]
    device = known["device"]
    surname = name.split()[-1]

    def page(**fields: Any) -> Any:
        query = index.Search(**fields)
        return lambda: len(index.search(found_in, query))

    def answer(**fields: Any) -> Any:
        """As the API answers: the page, its total and the next cursor."""
        query = index.Search(**fields)
        return lambda: len(index.page_of(found_in, query).rows)

    def after_page_999(**fields: Any) -> Any:
        """Page 1000 as Next reaches it: after the last row of page 999."""
        before = index.search(found_in, index.Search(page=999, **fields))
        if not before:
            return None  # (fewer pages: not timed)
        return page(after=index.cursor_of(before[-1]), **fields)

    return [
        ("newest, no filter", answer()),
        ("newest, page 1000 (by its number)", page(page=1000)),
        ("newest, page 1000 (after page 999)", after_page_999()),
        ("a common number part (030)", answer(number="030")),
        ("a common number part, page 1000 (by its number)", page(number="030", page=1000)),
        ("a common number part, page 1000 (after page 999)", after_page_999(number="030")),
        ("a rare number (one caller)", answer(number=rare_number)),
        ("an absent number", answer(number="99999999999")),
        ("a medium number part (7 digits)",
         answer(number=re.sub(r"\D", "", rare_number)[-7:])),
        ("a name (surname)", answer(name=surname)),
        ("a full name", answer(name=name)),
        ("a device (its MAC)", answer(device=device)),
        ("a device (6 digits of its MAC)", answer(device=device[-6:])),
        ("a month", answer(since="2025-06-01", until="2025-06-30")),
        ("a month and a name", answer(since="2025-06-01", until="2025-06-30", name=surname)),
        ("longest first", answer(order="longest")),
        ("longest first, a name", answer(order="longest", name=surname)),
        ("a day, shortest first", answer(since="2025-06-02", until="2025-06-02",
                                         order="shortest")),
    ]


def indexing_rate(found_in: Any, first: int, count: int = 1000) -> float:
    """Finished recordings a second, each indexed and committed on its own
    (as the service's index thread does); then forgotten again."""
    added = []
    began = time.perf_counter()
    for data in sidecars(random.Random(first), first, count):
        folder = f"{data['device']}/{data['started_at'][:10].replace('-', '/')}"
        entry = index.entry_from_sidecar(data, f"{folder}/{data['file'][:-4]}.json", 0)
        index.add(found_in, entry)
        added.append(entry.path)
    rate = count / (time.perf_counter() - began)
    found_in.remove(added)
    return rate


def table(results: list[dict[str, Any]]) -> str:
    sizes = [result["size"] for result in results]
    lines = ["| search | " + " | ".join(f"{size:,} recordings: p50 / p99 (ms)" for size in sizes)
             + " |", "|---|" + "---|" * len(sizes)]
    # Every search of any size (a deep page is not timed where there are
    # fewer pages), in the order they were run.
    names = list(dict.fromkeys(name for result in results for name in result["searches"]))
    for name in names:
        cells = [f"{r['searches'][name]['p50']:.1f} / {r['searches'][name]['p99']:.1f}"
                 if name in r["searches"] else "-" for r in results]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| indexing, one commit each (recordings a second) | "
                 + " | ".join(f"{r['indexing_per_s']:,.0f}" for r in results) + " |")
    lines.append("| index file | " + " | ".join(f"{r['file_mb']:,.0f} MB" for r in results) + " |")
    return "\n".join(lines)


NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
TARGET_MS = 100.0


def verdict(results: list[dict[str, Any]]) -> str:
    """The target at the largest size: every search's p99 within TARGET_MS?"""
    largest = max(results, key=lambda result: result["size"])
    worst = max(largest["searches"].items(), key=lambda item: item[1]["p99"])
    over = [name for name, figures in largest["searches"].items()
            if figures["p99"] > TARGET_MS]
    said = (f"At {largest['size']:,} recordings the slowest search is \"{worst[0]}\", "
            f"{worst[1]['p99']:.1f} ms at p99: ")
    if not over:
        return said + f"every search within the {TARGET_MS:.0f} ms target."
    return said + (f"{len(over)} over the {TARGET_MS:.0f} ms target ("
                   + "; ".join(f"{name}: {largest['searches'][name]['p99']:.0f} ms, "
                               f"{largest['searches'][name]['p99'] / TARGET_MS:.1f}x"
                               for name in over) + ").")


def write_docs(results: dict[str, list[dict[str, Any]]], command: str) -> None:
    with open(DOCS, encoding="utf-8") as handle:
        text = handle.read()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=os.path.dirname(DOCS)).stdout.strip() or "?"
    tables = "\n\n".join(f"{NAMES[backend]}:\n\n{table(measured)}\n\n{verdict(measured)}"
                          for backend, measured in results.items())
    block = (f"{BEGIN}\nRun {time.strftime('%Y-%m-%d')} at commit `{commit}`: `{command}`.\n\n"
             f"{tables}\n{END}")
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text,
                      flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Search at scale\n\n" + block + "\n"
    with open(DOCS, "w", encoding="utf-8") as handle:
        handle.write(text)


def build(found_in: Any, size: int) -> float:
    """Grow ``found_in`` to ``size`` rows, the same rows whatever it holds
    already (what an earlier run left: the generator is replayed past
    them); the seconds the growing took."""
    rng = random.Random(18)
    there = len(found_in.indexed())
    for _ in sidecars(rng, 0, min(there, size)):
        pass
    return grow(found_in, rng, there, size - there) if size > there else 0.0


def measure(found_in: Any, size: int, built: float, repeat: int) -> dict[str, Any]:
    """The searches' p50 and p99 and the indexing rate at ``size`` rows."""
    result: dict[str, Any] = {"size": size, "built_s": round(built, 1), "searches": {}}
    for name, run in searches(found_in):
        if run is None:
            continue
        p50, p99, found = timed(run, repeat)
        result["searches"][name] = {"p50": round(p50, 2), "p99": round(p99, 2), "found": found}
    result["indexing_per_s"] = round(indexing_rate(found_in, 10 ** 9 + size))
    return result


def sqlite_indexes(folder: str) -> Any:
    """The SQLite index of each size, a file in ``folder``'s own folder."""
    def open_size(size: int) -> tuple[Any, Any, Any]:
        database = os.path.join(folder, "sqlite", str(size), "index.sqlite3")
        found_in = SqliteIndex.open(database)

        def size_mb() -> int:
            found_in.sqlite.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return round(os.path.getsize(database) / 1e6)
        return found_in, size_mb, lambda: None
    return open_size, lambda: None


def postgresql_indexes(folder: str) -> Any:
    """The PostgreSQL index of each size, a database of a cluster kept in
    ``folder`` (Debian's server, started here as the tests start theirs,
    but writing as a real server does: fsync on)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import psycopg

    from recsvc.index.postgres import PostgresIndex
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster(os.path.join(folder, "postgresql"), durable=True)
    cluster.start()

    def open_size(size: int) -> tuple[Any, Any, Any]:
        name = f"bench_{size}"
        with psycopg.connect(cluster.url(), autocommit=True) as connection:
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                      (name,)).fetchone():
                connection.execute(f'CREATE DATABASE "{name}"')
        found_in = PostgresIndex.open(cluster.url(name), node="bench")

        def size_mb() -> int:
            with psycopg.connect(cluster.url(name)) as connection:
                return round(connection.execute(
                    "SELECT pg_database_size(current_database())").fetchone()[0] / 1e6)

        def settle() -> None:
            """What autovacuum does soon after a load: the visibility map
            (index-only scans) and the planner's statistics."""
            with psycopg.connect(cluster.url(name), autocommit=True) as connection:
                connection.execute("VACUUM ANALYZE recordings")
        return found_in, size_mb, settle
    return open_size, cluster.stop


BACKENDS = {"sqlite": sqlite_indexes, "postgresql": postgresql_indexes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--backends", nargs="+", choices=sorted(BACKENDS),
                        default=["sqlite", "postgresql"])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--folder", help="where the indexes are built, one a size and backend "
                        "(default: a temporary folder); given again, what is there is kept")
    parser.add_argument("--build-only", action="store_true",
                        help="build the indexes, time nothing (to time them on a quiet machine)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    folder = args.folder or tempfile.mkdtemp(prefix="recsvc-bench-index-")
    results: dict[str, list[dict[str, Any]]] = {}
    for backend in args.backends:
        open_size, finish = BACKENDS[backend](folder)
        try:
            for size in sorted(args.sizes):
                found_in, size_mb, settle = open_size(size)
                built = build(found_in, size)
                settle()
                if args.build_only:
                    print(json.dumps({"backend": backend, "size": size,
                                      "built_s": round(built, 1)}), flush=True)
                    found_in.close()
                    continue
                result = measure(found_in, size, built, args.repeat)
                result["file_mb"] = size_mb()
                found_in.close()
                results.setdefault(backend, []).append(result)
                print(json.dumps({"backend": backend, **result}), flush=True)
        finally:
            finish()
    for backend, measured in results.items():
        print(f"\n{NAMES[backend]}:\n{table(measured)}\n{verdict(measured)}")
    if args.write_docs and results:
        write_docs(results, "python bench/index.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
