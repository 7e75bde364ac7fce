"""The ``recsvc`` command: tools around the recordings: find them in the
index (search, show, export, reindex), check a config file, ask the running
service for its status, convert the phones' USB recordings."""

from __future__ import annotations

import argparse
import csv
from contextlib import closing
import json
import os
import shlex
import socket
import sys
from typing import Any, Callable, Iterable, Sequence

import attrs
from twisted.internet.error import CannotListenError

from recsvc import __version__

from recsvc.index import store as index
from recsvc.index.spreadsheet import EXPORT_COLUMNS, csv_cells
from recsvc.index.backends import (
    CannotOpenIndex, index_errors, is_postgresql, open_index, shown, without_password)
from recsvc.media.codec import CODECS
from recsvc.archive.layout import node_of
from recsvc.config import Config, ConfigError, load_config
from recsvc.application.endpoints import listen_failure, tcp_address
from recsvc.cli.listing import direction_and_parties, json_text, printable
from recsvc.media.pipeline import MediaPipeline, MediaPolicy
from recsvc.media.source import ANY
from recsvc.storage.folder import FORMATS, Storage
from recsvc.storage.usbfile import NotAPhoneRecording, parse_phone_recording
from recsvc.storage.wav import WavFileWriter


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
        try:
            os.makedirs(args.output_dir, exist_ok=True)
        except OSError as error:
            raise OptionError("-o/--output-dir", f"cannot make the folder {args.output_dir}: "
                              f"{error.strerror or error}") from None
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


class OptionError(Exception):
    """A bad value for an option, named as the user types it (exit status 2,
    as argparse's own)."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"argument {option}: {problem}")
        self.option, self.problem = option, problem


# Exit statuses: a bad option (argparse's), a closed standard output (as a
# program killed by SIGPIPE: 128 + 13), an interrupt (128 + SIGINT).
BAD_OPTION = 2
CLOSED_PIPE = 141
INTERRUPTED = 130


def _config(args: argparse.Namespace) -> Config:
    """The config file's (-c), its relative paths taken from its folder; or,
    without one, the built-in defaults, from the working directory."""
    return load_config(args.config) if args.config else Config()


def _key_of(args: argparse.Namespace, key: str) -> str:
    """Where a setting came from, for a message: the config file's key, or
    the default with the way to name the service's config file."""
    if args.config:
        return f"{key} of {args.config}"
    return (f"the default {key}, from the working directory: no config file given, "
            "-c FILE names the service's")


def _open_index(config: Config, args: argparse.Namespace, writable: bool = False) -> Any:
    """The index, read-only unless ``writable`` (then created if need be).
    Raises CommandError naming index.database."""
    database = args.index_database = config.index.database
    if not writable and not is_postgresql(database) and not os.path.exists(database):
        # Without the service's config file, building one here would make a
        # second index, empty, beside the service's.
        advice = (f": the service makes it as it starts, or `recsvc -c "
                  f"{shlex.quote(args.config)} reindex` from the recordings"
                  if args.config else "")
        raise CommandError(
            f"no index at {database} ({_key_of(args, 'index.database')}){advice}")
    try:
        # Written to, it is this node's: a reindex of a shared index reads
        # and forgets this node's recordings only.
        return open_index(database, read_only=not writable, node=config.node)
    except CannotOpenIndex as error:
        # (A shared index's errors begin with its URL, its password hidden.)
        where = "" if is_postgresql(database) else f"{database}: "
        raise CommandError(f"index.database: cannot open {where}{error}") from None


def _full_path(row: dict[str, Any], config: Config) -> dict[str, Any]:
    """An index row with where its WAV is: under storage.root when it is
    there (the index keeps the path relative to the root); else its object
    in the archive (archive.url), or, without one, ``NODE:PATH`` for
    another node's file; None for a recording that received no audio (no
    WAV was kept)."""
    if row.get("file") is None:
        return dict(row, path=None)
    node = row.get("node") or ""
    local = os.path.join(config.storage.root, row["path"])
    if os.path.exists(local):
        return dict(row, path=local)
    location = config.archive.location
    if location is not None:
        key = location.key(node_of(row.get("node"), config.node), row["path"])
        return dict(row, path=f"s3://{location.bucket}/{key}")
    if node in ("", config.node):
        return dict(row, path=local)  # (gone: retention, or by hand)
    return dict(row, path=f"{node}:{row['path']}")


def _full_paths(rows: Iterable[dict[str, Any]], config: Config) -> list[dict[str, Any]]:
    return [_full_path(row, config) for row in rows]


# The options of a search, by the index.Search field each sets (its
# ValueErrors begin with the field's name).
SEARCH_OPTIONS = {
    "number": "--number", "name": "--name", "device": "--device", "direction": "--direction",
    "since": "--since", "until": "--until", "min_duration_s": "--min-duration",
    "stop_reason": "--stop-reason", "page": "--page", "page_size": "--limit",
    "order": "--order", "after": "--after", "note": "--note", "tag": "--tag",
}


# Recordings a page of ``search`` unless --limit says.
PAGE_SIZE = 50


def _search_of(args: argparse.Namespace, config: Config, page: int = 1,
               page_size: int = PAGE_SIZE) -> index.Search:
    """The search the options ask for. Raises OptionError naming the option."""
    try:
        return index.Search(
            number=args.number, name=args.name, device=args.device, direction=args.direction,
            since=args.since, until=args.until, min_duration_s=args.min_duration,
            stop_reason=args.stop_reason, note=args.note, tag=args.tag, page=page,
            page_size=page_size,
            order=args.order, after=getattr(args, "after", None), plan=config.numbers.plan,
        )
    except ValueError as error:
        field, _, problem = str(error).partition(": ")
        if field not in SEARCH_OPTIONS:
            raise CommandError(str(error)) from None
        raise OptionError(SEARCH_OPTIONS[field], problem) from None


def _search(args: argparse.Namespace) -> int:
    config = _config(args)
    query = _search_of(args, config, args.page, args.limit)
    with closing(_open_index(config, args)) as connection:
        page = index.page_of(connection, query)
    found = _full_paths(page.rows, config)
    following = None if page.next is None or query.page >= index.MAX_PAGE else query.page + 1
    if args.json:
        # The web API's shape (GET /api/recordings), and the next page's number.
        print(json_text({"recordings": found, "page": query.page, "page_size": query.page_size,
                         "order": query.order, "total": page.total.count,
                         "total_exact": page.total.exact, "next": page.next,
                         "next_page": following}))
        return 0
    if not found:
        print("no recordings found" if query.page == 1 else
              f"no recordings on page {query.page} (the search finds fewer)", file=sys.stderr)
        return 0
    for row in found:
        print(printable("  ".join([
            row.get("started_at", ""), direction_and_parties(row),
            row.get("device", ""), row.get("node") or "-", f"{row.get('duration_s', 0):.1f} s",
            row.get("stop_reason", "") or "-", row.get("id", ""), row["path"] or "-",
        ])))
    if following is not None:
        # The options that show it: a page's number means nothing without its size.
        limit = "" if query.page_size == PAGE_SIZE else f" --limit {query.page_size}"
        order = "" if query.order == "newest" else f" --order {query.order}"
        after = "" if query.after is None else f" --after {query.after}"
        total = page.total
        if total.exact and query.after is None:
            rest = min(query.page_size, total.count - query.page * query.page_size)
            shows = f"the next {rest} of {total.count}"
        else:
            shows = f"the next page of {'' if total.exact else 'about '}{total.count}"
        print(f"(more: --page {following}{limit}{order}{after} shows {shows})", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    """One recording's files: always a JSON list, its parts in order."""
    config = _config(args)
    with closing(_open_index(config, args)) as connection:
        found = _full_paths(index.search(connection, index.Search(
            recording_id=args.id, page_size=index.MAX_PAGE_SIZE)), config)
    if not found:
        raise CommandError(f"no finished recording with id {args.id!r} in the index")
    found.sort(key=lambda row: (row.get("part") or 1, row["path"] or ""))
    print(json_text(found))
    return 0


def _export(args: argparse.Namespace) -> int:
    config = _config(args)
    query = _search_of(args, config)
    with closing(_open_index(config, args)) as connection:
        out = csv.writer(sys.stdout)
        out.writerow(EXPORT_COLUMNS)
        for found in index.search_all(connection, query):
            row = _full_path(found, config)
            out.writerow(csv_cells(row, EXPORT_COLUMNS))
    return 0


def _reindex(args: argparse.Namespace) -> int:
    config = _config(args)
    root = config.storage.root
    if not os.path.isdir(root):
        raise CommandError(f"no recordings folder at {root} ({_key_of(args, 'storage.root')})")
    with closing(_open_index(config, args, writable=True)) as connection:
        try:
            done = index.catch_up(connection, root, full=True)
        except OSError as error:  # (the root itself: nothing was forgotten)
            raise CommandError(f"cannot read the recordings folder {root} "
                               f"({_key_of(args, 'storage.root')}): {error.strerror or error}; "
                               "the index is left as it was") from None
    print(f"{shown(config.index.database)}: {done.added} recordings indexed, {done.removed} gone "
          f"from the index")
    for path, reason in done.skipped:
        print(f"{os.path.join(root, path)}: not indexed: {reason}", file=sys.stderr)
    if done.kept is not None:
        print(f"recsvc reindex: {done.kept}", file=sys.stderr)
    return 1 if done.skipped or done.kept is not None else 0


def _checked_file(args: argparse.Namespace) -> str | None:
    """check-config's file: FILE or -c FILE (the same one if both); None
    for the built-in defaults."""
    if args.file is not None and args.config is not None:
        if os.path.abspath(args.file) != os.path.abspath(args.config):
            raise OptionError("FILE", f"{args.file} is not the -c/--config file "
                              f"{args.config}: give one")
    return args.file if args.file is not None else args.config


def _taken_now(config: Config) -> list[str]:
    """Why each TCP listener of ``config`` could not listen now (its port
    taken, not allowed), one line each: a probe that binds and lets go."""
    reasons = []
    for key, description in (("control.listen", config.control.listen),
                             ("http.listen", config.http.listen)):
        address = None if description == "off" else tcp_address(description)
        if address is None or address[2] == 0:
            continue
        kind, interface, port = address
        family = socket.AF_INET6 if kind == "tcp6" or ":" in interface else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As Twisted's listeners: a port left in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((interface, port))
            except OSError as error:
                reasons.append(listen_failure(key, CannotListenError(interface, port, error)))
    return reasons


def _check_config(args: argparse.Namespace) -> int:
    """The config file as the service reads it at start-up: OK, or the one
    line saying what is wrong. A port taken now (by the running service,
    most likely) is noted, not an error."""
    from recsvc.application.startup import check_config, http_endpoint_for, open_http_warning
    from recsvc.tap import global_reactor

    path = _checked_file(args)
    try:
        config = load_config(path) if path is not None else Config()
        reactor = global_reactor()
        check_config(config, reactor)
        if is_postgresql(config.index.database) or os.path.exists(config.index.database):
            # (An index made here would be an empty second one, which a
            # search would then read instead of the service's.)
            _open_index(config, args).close()
        endpoint = http_endpoint_for(config, reactor)
    except ConfigError as error:
        raise CommandError(error.in_file(path)) from None
    warning = open_http_warning(config, endpoint)
    if warning is not None:
        print(f"recsvc check-config: WARNING: {warning}", file=sys.stderr)
    for reason in _taken_now(config):
        print(f"recsvc check-config: NOTE, now: {reason}", file=sys.stderr)
    print(f"{path or 'the built-in defaults'}: OK (recordings in {config.storage.root}, "
          f"index {shown(config.index.database)}, control on {config.control.listen}, "
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
    from recsvc.passwords import hash_password

    password = _read_password(confirm=True)
    if len(password) < 8:
        raise CommandError("a password needs at least 8 characters")
    print(hash_password(password))
    return 0


def _user(args: argparse.Namespace) -> int:
    """``recsvc user ACTION``: the users of index.database (opened to write:
    a new index is made, an older one migrated, as the service does)."""
    import time

    from recsvc.cli import users as user_commands

    args.command = f"user {args.action}"  # (what a message begins with)
    if args.action != "list" and not args.config:
        raise CommandError("-c FILE: the service's config file, so that the user goes into "
                           "its index (index.database); without one a new index would be "
                           "made here, which the service never reads")
    def act(found_in: Any, config: Config) -> str:
        if args.action == "add":
            return user_commands.add(found_in, args, config.group_map, _read_password,
                                     time.time())
        if args.action == "set":
            return user_commands.change(found_in, args, config.group_map, time.time())
        if args.action == "passwd":
            return user_commands.passwd(found_in, args, _read_password, time.time())
        if args.action == "remove":
            return user_commands.remove(found_in, args, time.time())
        if args.action == "token":
            return user_commands.token(found_in, args, time.time())
        return user_commands.listing(found_in, args.json)
    return _on_the_index(args, args.action != "list", act, user_commands.UserCommandError)


def _on_the_index(args: argparse.Namespace, writable: bool,
                  act: Callable[[Any, Config], str], refused: type[Exception]) -> int:
    """``act(index, config)`` on the config's index (opened to write if
    ``writable``), closed after; what it says printed, a ``refused`` error
    said as the command's."""
    config = _config(args)
    found_in = _open_index(config, args, writable=writable)
    try:
        said = act(found_in, config)
    except refused as error:
        raise CommandError(str(error)) from None
    finally:
        found_in.close()
    print(said)
    return 0


# The search options of `recsvc hold` (any given: hold what the search finds).
HOLD_SEARCH_FIELDS = ("number", "name", "device", "direction", "since", "until",
                      "min_duration", "stop_reason", "note", "tag")


def _holds(args: argparse.Namespace) -> int:
    """``recsvc hold|release|holds|erase``."""
    import time

    from recsvc.cli import holds

    if args.command != "holds" and not args.config:
        raise CommandError("-c FILE: the service's config file, so that the change goes into "
                           "its index (index.database) and its recordings")
    def act(found_in: Any, config: Config) -> str:
        if args.command == "hold":
            searched = any(getattr(args, field) is not None for field in HOLD_SEARCH_FIELDS)
            if (args.id is None) == (not searched):
                raise CommandError("give a recording's id or search options (--number, "
                                   "--since, ...), not both")
            if args.id is not None:
                return holds.hold(found_in, args.id, args.reason, time.time())
            return holds.hold_found(found_in, _search_of(args, config), args.reason,
                                    time.time())
        if args.command == "release":
            return holds.release(found_in, args.id, args.reason, time.time())
        if args.command == "holds":
            return holds.listing(found_in)
        return holds.erase(found_in, config, args.number, args.reason, time.time(),
                           holds.archive_store(config))
    return _on_the_index(args, args.command != "holds", act, holds.HoldCommandError)


def _audit(args: argparse.Namespace) -> int:
    """``recsvc audit verify|export``."""
    from recsvc.cli import audit

    args.command = f"audit {args.action}"  # (what a message begins with)
    found_in = _open_index(_config(args), args)
    try:
        if args.action == "export":
            audit.export(found_in, sys.stdout, args.after)
            return 0
        intact, said = audit.verify_trail(found_in, args.expect)
    finally:
        found_in.close()
    print(said, file=sys.stdout if intact else sys.stderr)
    return 0 if intact else 1


def _status(args: argparse.Namespace) -> int:
    """The running service's recordings in progress and counters, through its
    HTTP API: http.listen from the config (or --url), with the config's
    http.auth token, or --user and a password."""
    from recsvc.cli.status import StatusError, api_url, basic_authorization, fetch_status, format_status

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


def _positive(kind: type) -> Any:
    """An argparse type: a number above 0 of ``kind``."""
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
        return value
    return convert


def _service_url(text: str) -> str:
    """An argparse type: the service's HTTP side, http:// or https://."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not http://HOST:PORT or https://HOST:PORT")
    return text


def _user_name(text: str) -> str:
    """An argparse type: a user name of http.auth.users (basic
    authentication cannot carry one with a colon)."""
    if not text or ":" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a user name (no colon)")
    return text


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
    command.add_argument("--note", metavar="TEXT", help="text in a note on the recording, or "
                         "in its tags")
    command.add_argument("--tag", help="a tag of the recording's notes")
    command.add_argument("--order", choices=index.ORDERS, default="newest",
                         help="newest first (the default), oldest, longest or shortest first")


CONFIG_HELP = ("the service's config file; relative paths in it are taken from its folder "
               "(default: the built-in defaults, from the working directory)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="recsvc", description="Tools for recsvc recordings: find them in the index, "
        "check a config file, ask the running service, convert USB recordings.")
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    top.add_argument("-c", "--config", metavar="FILE", help=CONFIG_HELP)
    # -c also after the subcommand (SUPPRESS: absent there, the one before stays).
    config_after = argparse.ArgumentParser(add_help=False)
    config_after.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                              help=CONFIG_HELP)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=description,
                                  parents=[config_after])
        sub.set_defaults(command_parser=sub)
        return sub

    search = command(
        "search", "find finished recordings, newest first",
        "Find finished recordings in the index (index.database), newest first (or as --order "
        "says), a page at a "
        "time: every option given must match. Each line: start, direction and parties, "
        "phone, duration, stop reason, id, the WAV file. When more pages follow, a last "
        "line on standard error says so.")
    _search_options(search)
    search.add_argument("--page", type=int, default=1, help="which page (default: 1)")
    search.add_argument("--limit", type=int, default=PAGE_SIZE,
                        help=f"recordings a page (1-{index.MAX_PAGE_SIZE}; default: {PAGE_SIZE})")
    search.add_argument("--after", metavar="CURSOR",
                        help="the pages after the one whose \"next\" (--json) this is")
    search.add_argument("--json", action="store_true",
                        help="as JSON: the sidecars with their paths, the page, the total, "
                        "next (the cursor --after takes) and next_page")
    search.set_defaults(run=_search)
    show = command(
        "show", "one recording's files",
        "One finished recording's files, as a JSON list (one entry a file, its parts in "
        "order): each file's sidecar with the path of its WAV.")
    show.add_argument("id", help="the recording's id (as the phone sent it)")
    show.set_defaults(run=_show)
    export = command(
        "export", "the recordings found, as CSV on standard output",
        "All the recordings a search finds (no pages), newest first, as CSV on standard "
        "output, one row a file.")
    export.add_argument("--csv", action="store_true", help="CSV (the default, and the one format)")
    _search_options(export)
    export.set_defaults(run=_export)
    reindex = command(
        "reindex", "rebuild the index from the sidecars under storage.root",
        "Rebuild the index (index.database) from the sidecars under storage.root; it may "
        "run beside the service. Sidecars it cannot read are named, and the exit status "
        "is 1.")
    reindex.set_defaults(run=_reindex)
    check = command(
        "check-config", "check a config file as the service would",
        "Check a config file as the service does at start-up: the keys and values, the "
        "listeners' descriptions, the storage root and the index. Says OK, or names what is "
        "wrong (exit status 1). A port taken now (the running service's, most likely) is "
        "noted.")
    check.add_argument("file", metavar="FILE", nargs="?",
                       help="the config file (or -c FILE; neither: the built-in defaults)")
    check.set_defaults(run=_check_config)
    hashing = command(
        "hash-password", "a password hash for http.auth.users",
        "Print a password hash for http.auth.users. The password is read from the terminal "
        "(asked twice) or the first line of standard input, never the command line.")
    hashing.set_defaults(run=_hash_password)
    _user_commands(command("user", "add, list, change and remove the users of the page "
                                   "and the API",
                           "The users kept in the index database (index.database), each with "
                           "a role and the scopes that say which recordings they reach. "
                           "Passwords are read from the terminal (asked twice) or the first "
                           "line of standard input, never the command line."),
                   config_after)
    held = command("hold", "keep a recording, or every one a search finds, past retention "
                           "and erasure (legal hold)",
                   "Put every file of a recording (or of every recording the search options "
                   "find) on legal hold, with a reason: retention, erasure and the archive's "
                   "retention leave them until they are released.")
    held.add_argument("id", nargs="?", help="the recording's id (or search options)")
    _search_options(held)
    held.add_argument("--reason", required=True, help="why (one line), for the audit trail")
    held.set_defaults(run=_holds)
    released = command("release", "end a recording's legal hold",
                       "Release a recording from its legal hold (audited, with a reason).")
    released.add_argument("id", help="the recording's id")
    released.add_argument("--reason", required=True, help="why (one line)")
    released.set_defaults(run=_holds)
    listed = command("holds", "the recordings on legal hold",
                     "List the files on legal hold: the recording, its node and path, when, "
                     "by whom and why.")
    listed.set_defaults(run=_holds)
    erased = command("erase", "erase every recording of a number (on request)",
                     "Erase every recording whose local or remote number is NUMBER (in either "
                     "form, as numbers.* relate them): this node's WAVs and sidecars, their "
                     "objects in the archive and their index rows. Held recordings are not "
                     "erased, and are listed; so are other nodes' (erase them there). A "
                     "disposal record (what was erased, with the files' sizes and SHA-256) "
                     "goes into the audit trail.")
    erased.add_argument("--number", required=True, help="the number, as written or its digits")
    erased.add_argument("--reason", required=True, help="why (one line), for the disposal record")
    erased.set_defaults(run=_holds)
    _audit_commands(command("audit", "check the audit trail, or write it out",
                            "The audit trail kept in the index database (index.database): "
                            "who searched, played, downloaded, changed users, and when. Its "
                            "rows' hashes chain, so that one altered or removed is found."),
                    config_after)
    status = command(
        "status", "the running service's recordings in progress and counters",
        "Ask the running service, through its HTTP API (/api/active and /metrics), for the "
        "recordings in progress and its counters. The URL is http.listen's, the token "
        "http.auth's; exit status 1 when it cannot be asked.")
    status.add_argument("--url", type=_service_url,
                        help="the service's HTTP side (default: from http.listen)")
    status.add_argument("--user", type=_user_name, help="for http.auth.users: the password is asked "
                        "(or read from standard input)")
    status.add_argument("--insecure", action="store_true",
                        help="https: do not check the certificate (a self-signed one)")
    status.add_argument("--timeout", type=_positive(float), default=10.0, metavar="SECONDS",
                        help="for each answer (default: 10)")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.set_defaults(run=_status)
    convert = command(
        "convert", "turn the phone's USB recordings (Record_*.wav) into WAV files",
        "Turn Fanvil USB recordings (a codec header and raw RTP) into WAV files. Each FILE "
        "becomes FILE.converted.wav beside it, or DIR/FILE.wav.")
    convert.add_argument("files", nargs="+", metavar="FILE")
    convert.add_argument("-o", "--output-dir", metavar="DIR")
    convert.add_argument("--format", choices=FORMATS, default="g711",
                         help="g711: the codec's bytes as recorded (default); pcm16: decoded")
    convert.set_defaults(run=_convert)
    return top


def _user_commands(user: argparse.ArgumentParser, config_after: argparse.ArgumentParser) -> None:
    from recsvc.cli.users import ROLE_HELP, ROLE_NAMES, SCOPE_HELP, user_name

    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=summary[0].upper() + summary[1:]
                                 + ".", parents=[config_after])
        sub.set_defaults(command_parser=sub, run=_user)
        if name != "list":
            sub.add_argument("name", type=user_name, help="the user's name")
        return sub
    add = action("add", "add a user (the password is asked for)")
    add.add_argument("--role", required=True, choices=ROLE_NAMES, help=ROLE_HELP)
    add.add_argument("--scope", action="append", metavar="SCOPE", help=SCOPE_HELP)
    listed = action("list", "the users, by name, with their roles and scopes")
    listed.add_argument("--json", action="store_true", help="as JSON")
    change = action("set", "change a user's role or scopes (--scope given replaces them all)")
    change.add_argument("--role", choices=ROLE_NAMES, help=ROLE_HELP)
    change.add_argument("--scope", action="append", metavar="SCOPE", help=SCOPE_HELP)
    action("passwd", "set a user's password (asked for)")
    tokens = action("token", "a new API token for a user, shown once (the bearer token of "
                             "their scripts, with their rights and scope)")
    tokens.add_argument("--revoke", action="store_true", help="take the token away")
    action("remove", "remove a user")


def _anchor(text: str) -> tuple[int, str]:
    from recsvc.cli.audit import parse_anchor

    return parse_anchor(text)


def _audit_commands(audit: argparse.ArgumentParser,
                    config_after: argparse.ArgumentParser) -> None:
    actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check every row's hash and its place in the chain",
        description="Check every row of the audit trail: its hash, and the hash of the row "
        "before it. Says the rows and the last hash (exit status 0), or the first row that "
        "was changed, removed or slipped in (exit status 1).", parents=[config_after])
    verify.add_argument("--expect", metavar="SEQ:HASH", type=_anchor,
                        help="a row's place and hash as an earlier verify said them (kept "
                        "elsewhere): the trail must still hold it, so that rows cut from its "
                        "end, or a trail written again whole, are found")
    verify.set_defaults(command_parser=verify, run=_audit)
    export = actions.add_parser(
        "export", help="the rows as JSON lines on standard output",
        description="Write the audit trail's rows, in order, as JSON lines on standard "
        "output: seq, at, actor, source, action, target, detail, previous_hash, hash.",
        parents=[config_after])
    export.add_argument("--after", type=int, default=0, metavar="SEQ",
                        help="only the rows after this one (default: all)")
    export.set_defaults(command_parser=export, run=_audit)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``recsvc`` command; returns its exit status."""
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader has gone (`recsvc search | head`): end quietly, as tools
        # killed by SIGPIPE do, with nothing left to flush at exit.
        _discard_stdout()
        return CLOSED_PIPE
    except KeyboardInterrupt:
        return INTERRUPTED


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit:  # --help, --version, a bad option (argparse's)
        return 0 if exit.code is None else int(exit.code)
    try:
        status = args.run(args)
        sys.stdout.flush()  # (here, where a closed pipe is caught)
        return status
    except OptionError as error:
        # As argparse says its own: the usage line, then the option and what is wrong.
        args.command_parser.print_usage(sys.stderr)
        print(f"{args.command_parser.prog}: error: {error}", file=sys.stderr)
        return BAD_OPTION
    except (CommandError, ConfigError) as error:
        message = error.in_file(args.config) if isinstance(error, ConfigError) else str(error)
        print(f"recsvc {args.command}: {message}", file=sys.stderr)
        return 1
    except index_errors() as error:
        # (What the database said: without its URL's password, should it quote it.)
        reason = " ".join(without_password(str(error), getattr(args, "index_database", ""))
                          .split()) or type(error).__name__
        print(f"recsvc {args.command}: the index: {reason}", file=sys.stderr)
        return 1


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # (no file descriptor: nothing will be flushed to one)
        pass


if __name__ == "__main__":
    sys.exit(main())
