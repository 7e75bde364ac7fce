"""The ``recsvc`` command: tools around the recordings: find them in the
index (search, show, export, reindex), check a config file, ask the running
service for its status, convert the phones' USB recordings."""

from __future__ import annotations

import argparse
import csv
from contextlib import closing
import json
import os
import sqlite3
import sys
from typing import Any, Iterable, Sequence

import attrs

from recsvc import index
from recsvc.codec import CODECS
from recsvc.config import Config, ConfigError, load_config
from recsvc.pipeline import MediaPipeline, MediaPolicy
from recsvc.source import ANY
from recsvc.storage import FORMATS, Storage
from recsvc.usbfile import NotAPhoneRecording, parse_phone_recording
from recsvc.wav import WavFileWriter


@attrs.frozen
class Converted:
    source: str
    output: str
    codec: str
    packets: int
    duration_s: float


def convert_file(source: str, output: str, audio_format: str = "g711") -> Converted:
    """Turn a phone's USB recording into a WAV file, through the same media
    path and writer as a live recording. Raises NotAPhoneRecording, OSError."""
    with open(source, "rb") as handle:
        recording = parse_phone_recording(handle.read())
    codec = CODECS[recording.codec]
    storage = Storage(os.path.dirname(output) or ".", audio_format)
    media = MediaPipeline(codec, storage.encoder(codec), "0.0.0.0", MediaPolicy(source=ANY))
    writer = WavFileWriter(output, storage.wav_format(codec))
    packets = 0
    first_timestamp = None
    try:
        for packet in recording.packets():
            if first_timestamp is None:
                first_timestamp = packet.timestamp
            # No arrival times in the file: the timestamps are the clock.
            arrival = ((packet.timestamp - first_timestamp) & 0xFFFFFFFF) / codec.clock_rate
            for chunk in media.packet(packet, ("0.0.0.0", 0), arrival):
                writer.write(chunk)
            packets += 1
        for chunk in media.flush():
            writer.write(chunk)
    finally:
        writer.close()
    fmt = storage.wav_format(codec)
    duration = round(writer.data_bytes / fmt.block_align / fmt.sample_rate, 3)
    return Converted(source, output, codec.name, packets, duration)


def _output_for(source: str, output_dir: str | None) -> str:
    stem = os.path.splitext(os.path.basename(source))[0]
    if output_dir is None:
        return os.path.join(os.path.dirname(source), stem + ".converted.wav")
    return os.path.join(output_dir, stem + ".wav")


def _convert(args: argparse.Namespace) -> int:
    failed = 0
    if args.output_dir is not None:
        os.makedirs(args.output_dir, exist_ok=True)
    for source in args.files:
        output = _output_for(source, args.output_dir)
        try:
            done = convert_file(source, output, args.format)
        except NotAPhoneRecording as error:
            print(f"{source}: not a Fanvil USB recording: {error}", file=sys.stderr)
            failed += 1
        except FileExistsError:
            print(f"{source}: {output} exists; not overwritten", file=sys.stderr)
            failed += 1
        except OSError as error:
            print(f"{source}: {error.strerror or error}", file=sys.stderr)
            failed += 1
        else:
            print(f"{source} -> {output} ({done.codec}, {done.packets} packets, {done.duration_s} s)")
    return 1 if failed else 0


class CommandError(Exception):
    """What went wrong, for the command's user (exit status 1)."""


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config) if args.config else Config()


def _open_index(config: Config, writable: bool = False) -> sqlite3.Connection:
    """The index, read-only unless ``writable`` (then created if need be).
    Raises CommandError naming index.database."""
    database = config.index.database
    if not writable and not os.path.exists(database):
        raise CommandError(f"no index at {database} (index.database): start the service, "
                           "or run recsvc reindex")
    try:
        return index.connect(database, read_only=not writable)
    except (OSError, sqlite3.Error) as error:
        raise CommandError(f"index.database: cannot open {database}: {error}") from None


def _full_path(row: dict[str, Any], config: Config) -> dict[str, Any]:
    """An index row with its WAV's path under storage.root (the index keeps
    it relative to the root)."""
    return dict(row, path=os.path.join(config.storage.root, row["path"]))


def _full_paths(rows: Iterable[dict[str, Any]], config: Config) -> list[dict[str, Any]]:
    return [_full_path(row, config) for row in rows]


def _search_of(args: argparse.Namespace, config: Config, page: int = 1,
               page_size: int = 50) -> index.Search:
    try:
        return index.Search(
            number=args.number, name=args.name, device=args.device, direction=args.direction,
            since=args.since, until=args.until, min_duration_s=args.min_duration,
            stop_reason=args.stop_reason, page=page, page_size=page_size,
            plan=config.numbers.plan,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None


def _search(args: argparse.Namespace) -> int:
    config = _config(args)
    with closing(_open_index(config)) as connection:
        found = _full_paths(index.search(connection, _search_of(args, config, args.page, args.limit)),
                            config)
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return 0
    if not found:
        print("no recordings found", file=sys.stderr)
        return 0
    for row in found:
        print("  ".join([
            row.get("started_at", ""), f"{row.get('direction', ''):3}",
            f"{row.get('local_number', '')} {row.get('local_name', '')}".strip() or "-",
            "->" if row.get("direction") == "out" else "<-",
            f"{row.get('remote_number', '')} {row.get('remote_name', '')}".strip() or "-",
            row.get("device", ""), f"{row.get('duration_s', 0):.1f} s",
            row.get("stop_reason", "") or "-", row.get("id", ""), row["path"],
        ]))
    return 0


def _show(args: argparse.Namespace) -> int:
    config = _config(args)
    with closing(_open_index(config)) as connection:
        found = _full_paths(index.search(connection, index.Search(
            recording_id=args.id, page_size=index.MAX_PAGE_SIZE)), config)
    if not found:
        raise CommandError(f"no finished recording with id {args.id!r} in the index")
    print(json.dumps(found if len(found) > 1 else found[0], indent=2, ensure_ascii=False))
    return 0


EXPORT_COLUMNS = ("id", "started_at", "stopped_at", "duration_s", "direction", "local_number",
                  "local_name", "remote_number", "remote_name", "device", "stop_reason",
                  "stopped_by", "codec", "part", "packets_received", "packets_lost", "path")


def _export(args: argparse.Namespace) -> int:
    config = _config(args)
    with closing(_open_index(config)) as connection:
        out = csv.writer(sys.stdout)
        out.writerow(EXPORT_COLUMNS)
        for found in index.search_all(connection, _search_of(args, config)):
            row = _full_path(found, config)
            out.writerow(["" if row.get(column) is None else row.get(column)
                          for column in EXPORT_COLUMNS])
    return 0


def _reindex(args: argparse.Namespace) -> int:
    config = _config(args)
    root = config.storage.root
    if not os.path.isdir(root):
        raise CommandError(f"no recordings folder at {root} (storage.root)")
    with closing(_open_index(config, writable=True)) as connection:
        done = index.catch_up(connection, root, full=True)
    print(f"{config.index.database}: {done.added} recordings indexed, {done.removed} gone "
          f"from the index")
    for path, reason in done.skipped:
        print(f"{os.path.join(root, path)}: not indexed: {reason}", file=sys.stderr)
    return 1 if done.skipped else 0


def _check_config(args: argparse.Namespace) -> int:
    from recsvc.tap import _global_reactor, check_config, http_endpoint_for, open_http_warning

    config = load_config(args.file)
    reactor = _global_reactor()
    check_config(config, reactor)
    _open_index(config, writable=True).close()
    warning = open_http_warning(config, http_endpoint_for(config, reactor))
    if warning is not None:
        print(f"recsvc check-config: WARNING: {warning}", file=sys.stderr)
    print(f"{args.file}: OK (recordings in {config.storage.root}, "
          f"index {config.index.database}, control on {config.control.listen}, "
          f"HTTP on {config.http.listen})")
    return 0


def _read_password(confirm: bool) -> str:
    """A password from the terminal (asked twice if ``confirm``) or the first
    line of standard input, never the command line."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != password:
        raise CommandError("the passwords differ")
    return password


def _hash_password(args: argparse.Namespace) -> int:
    """A hash for http.auth.users."""
    from recsvc.httpauth import hash_password

    password = _read_password(confirm=True)
    if len(password) < 8:
        raise CommandError("a password needs at least 8 characters")
    print(hash_password(password))
    return 0


def _status(args: argparse.Namespace) -> int:
    """The running service's recordings in progress and counters, through its
    HTTP API: http.listen from the config (or --url), with the config's
    http.auth token, or --user and a password."""
    from recsvc.status import StatusError, api_url, basic_authorization, fetch_status, format_status

    config = _config(args)
    try:
        url = args.url or api_url(config)
        if args.user is not None:
            authorization: str | None = basic_authorization(args.user, _read_password(False))
        elif config.http.auth.token is not None:
            authorization = f"Bearer {config.http.auth.token}"
        else:
            authorization = None
        status = fetch_status(url, authorization, timeout=args.timeout, insecure=args.insecure)
    except StatusError as error:
        raise CommandError(str(error)) from None
    print(json.dumps(status.as_json(), indent=1) if args.json else format_status(status))
    return 0


def _search_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--number", help="digits in the local or the remote number (with "
                         "numbers.country_code, its national and international forms alike)")
    command.add_argument("--name", help="text in the local or the remote name")
    command.add_argument("--device", metavar="MAC", help="the phone (its MAC address, or part of it)")
    command.add_argument("--direction", choices=index.DIRECTIONS)
    command.add_argument("--since", metavar="DATE",
                         help="started at or after: a UTC day (YYYY-MM-DD) or an ISO time, "
                         "with its offset (2026-12-07T00:00+14:00; UTC without one)")
    command.add_argument("--until", metavar="DATE",
                         help="started before (a day: to its end; or an ISO time)")
    command.add_argument("--min-duration", type=float, metavar="SECONDS")
    command.add_argument("--stop-reason", metavar="REASON")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="recsvc", description="Tools for recsvc recordings.")
    top.add_argument("-c", "--config", metavar="FILE",
                     help="the service's config file (default: the built-in defaults)")
    commands = top.add_subparsers(dest="command", required=True)
    search = commands.add_parser("search", help="find finished recordings, newest first")
    _search_options(search)
    search.add_argument("--page", type=int, default=1)
    search.add_argument("--limit", type=int, default=50, help="recordings a page (1-500)")
    search.add_argument("--json", action="store_true", help="the sidecars, as JSON")
    search.set_defaults(run=_search)
    show = commands.add_parser("show", help="one recording's sidecar (all its files')")
    show.add_argument("id")
    show.set_defaults(run=_show)
    export = commands.add_parser("export", help="the recordings found, as CSV on standard output")
    export.add_argument("--csv", action="store_true", required=True, help="(the one format)")
    _search_options(export)
    export.set_defaults(run=_export)
    reindex = commands.add_parser(
        "reindex", help="rebuild the index from the sidecars under storage.root")
    reindex.set_defaults(run=_reindex)
    check = commands.add_parser("check-config", help="check a config file as the service would")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(run=_check_config)
    hashing = commands.add_parser(
        "hash-password", help="a password hash for http.auth.users (the password from the "
        "terminal or standard input)")
    hashing.set_defaults(run=_hash_password)
    status = commands.add_parser(
        "status", help="the running service's recordings in progress and counters "
        "(through its HTTP API)")
    status.add_argument("--url", help="the service's HTTP side (default: from http.listen)")
    status.add_argument("--user", help="for http.auth.users: the password is asked "
                        "(or read from standard input)")
    status.add_argument("--insecure", action="store_true",
                        help="https: do not check the certificate (a self-signed one)")
    status.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.set_defaults(run=_status)
    convert = commands.add_parser(
        "convert", help="turn the phone's USB recordings (Record_*.wav) into WAV files",
        description="Turn Fanvil USB recordings (a codec header and raw RTP) into WAV "
        "files. Each FILE becomes FILE.converted.wav beside it, or DIR/FILE.wav.",
    )
    convert.add_argument("files", nargs="+", metavar="FILE")
    convert.add_argument("-o", "--output-dir", metavar="DIR")
    convert.add_argument("--format", choices=FORMATS, default="g711",
                         help="g711: the codec's bytes as recorded (default); pcm16: decoded")
    convert.set_defaults(run=_convert)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, ConfigError) as error:
        print(f"recsvc {args.command}: {error}", file=sys.stderr)
        return 1
    except sqlite3.Error as error:
        print(f"recsvc {args.command}: the index: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
