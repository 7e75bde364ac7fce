"""Tests for the ``recsvc`` command (recsvc.cli.commands) as people use it: the config
file before or after the subcommand and its paths from its own folder,
--version, option errors in the options' own names, pages, one shape for
``show``, descriptions in every --help, a closed pipe, and calls shown the
same way by ``search`` and ``status``."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
from contextlib import closing

from twisted.trial.unittest import SynchronousTestCase

from recsvc import __version__

from recsvc.index import store as index
from recsvc.index.sqlite import SqliteIndex
from recsvc.cli.commands import main, parser
from recsvc.cli.listing import direction_and_parties
from recsvc.cli.status import Status, format_status
from tests.support.pipes import status_when_reader_leaves

RECSVC = os.path.join(os.path.dirname(sys.executable), "recsvc")


def call(number: int, **fields: object) -> dict:
    """A finished recording's sidecar, the ``number``-th of a day (later
    numbers started later)."""
    data = {
        "id": f"call-{number}", "device": "00:a8:59:00:00:01", "codec": "PCMA",
        "direction": "out", "local_number": "2001", "local_name": "Desk",
        "remote_number": "13800138000", "remote_name": "Bob", "status": "finished",
        "started_at": f"2026-11-24T10:{number // 60:02d}:{number % 60:02d}.000Z",
        "duration_s": 60.0, "stop_reason": "hangup", "part": 1,
        "file": f"20261124T10_out_{number}.wav",
    }
    data.update(fields)
    return data


def index_calls(database: str, calls: list[dict], folder: str = "00a859000001/2026/11/24") -> None:
    """Put the calls' sidecars straight into the index at ``database``."""
    with closing(SqliteIndex.open(database)) as connection:
        for data in calls:
            sidecar = os.path.join(folder, os.path.splitext(data["file"])[0] + ".json")
            index.add(connection, index.entry_from_sidecar(data, sidecar, 0))


class CommandCase(SynchronousTestCase):
    """A config file in FOLDER/etc naming ../var/recordings and
    ../var/recsvc.sqlite3, as the sample does; commands run in-process."""

    def setUp(self) -> None:
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.folder, "etc"))
        self.config = os.path.join(self.folder, "etc", "recsvc.yaml")
        with open(self.config, "w", encoding="utf-8") as handle:
            handle.write("storage:\n  root: ../var/recordings\n"
                         "index:\n  database: ../var/recsvc.sqlite3\n"
                         "http:\n  listen: \"off\"\n")
        self.database = os.path.join(self.folder, "var", "recsvc.sqlite3")
        self.root = os.path.join(self.folder, "var", "recordings")
        self.scratch = os.path.abspath(self.mktemp())
        os.makedirs(self.scratch)
        here = os.getcwd()
        self.addCleanup(os.chdir, here)

    def recsvc(self, *argv: str) -> tuple[int, str, str]:
        """``recsvc ARGV``: its exit status, standard output and error."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def elsewhere(self) -> str:
        """Change to a fresh directory outside the config's folder."""
        directory = tempfile.mkdtemp(dir=self.scratch)
        os.chdir(directory)
        return directory


class ConfigFileTests(CommandCase):
    def test_config_before_or_after_the_subcommand(self) -> None:
        """-c/--config FILE is the same before the subcommand or after it."""
        index_calls(self.database, [call(1)])
        outputs = {self.recsvc(*argv)
                   for argv in (["-c", self.config, "search"], ["--config", self.config, "search"],
                                ["search", "-c", self.config], ["search", f"--config={self.config}"])}
        [(status, out, err)] = outputs
        self.assertEqual((status, err), (0, ""))
        self.assertIn("call-1", out)

    def test_paths_from_the_config_files_folder(self) -> None:
        """
        The config's relative paths are its folder's, from any working
        directory: reindex in one directory, search from another, find the
        same recordings under FOLDER/var, and nothing made where they ran.
        """
        sidecar = os.path.join(self.root, "00a859000001", "call-7.json")
        os.makedirs(os.path.dirname(sidecar))
        with open(sidecar, "w", encoding="utf-8") as handle:
            json.dump(call(7, file="call-7.wav"), handle)
        first = self.elsewhere()
        status, out, err = self.recsvc("-c", os.path.relpath(self.config), "reindex")
        self.assertEqual(status, 0, err)
        self.assertTrue(os.path.exists(self.database))
        second = self.elsewhere()
        status, out, err = self.recsvc("search", "-c", self.config, "--json")
        self.assertEqual(status, 0, err)
        [found] = json.loads(out)["recordings"]
        self.assertEqual(os.path.realpath(found["path"]), os.path.realpath(sidecar[:-5] + ".wav"))
        self.assertEqual((os.listdir(first), os.listdir(second)), ([], []))

    def test_without_a_config_file_the_missing_index_says_so(self) -> None:
        """Without -c the built-in paths are the working directory's; a
        missing index says that no config file was given and how to give
        one, not to build an index there."""
        self.elsewhere()
        status, _, err = self.recsvc("search", "--number", "138")
        self.assertEqual(status, 1)
        self.assertIn("no index at var/recsvc.sqlite3 (the default index.database, from the "
                      "working directory: no config file given, -c FILE names the service's)",
                      err)
        self.assertNotIn("reindex", err)
        status, _, err = self.recsvc("-c", self.config, "search")
        self.assertEqual(status, 1)
        self.assertIn(f"index.database of {self.config}): the service makes it as it starts, "
                      f"or `recsvc -c {self.config} reindex`", err)

    def test_check_config_takes_c_too(self) -> None:
        """check-config checks -c FILE (before or after it) or its FILE;
        two different files are an error naming FILE; neither: the
        built-in defaults. It makes no index where none is (a search
        would then find that empty one instead of the service's)."""
        for argv in (["-c", self.config, "check-config"], ["check-config", "-c", self.config],
                     ["check-config", self.config], ["-c", self.config, "check-config",
                                                     self.config]):
            status, out, err = self.recsvc(*argv)
            self.assertEqual(status, 0, err)
            self.assertTrue(out.startswith(f"{self.config}: OK (recordings in "
                                           f"{os.path.join(self.folder, 'etc', '../var/recordings')}"),
                            out)
        other = os.path.abspath(self.mktemp())
        status, _, err = self.recsvc("-c", self.config, "check-config", other)
        self.assertEqual(status, 2)
        self.assertIn(f"argument FILE: {other} is not the -c/--config file", err)
        directory = self.elsewhere()
        status, out, err = self.recsvc("check-config")
        self.assertEqual(status, 0, err)
        self.assertTrue(out.startswith("the built-in defaults: OK (recordings in var/recordings"))
        self.assertTrue(os.path.isdir(os.path.join(directory, "var", "recordings")))
        self.assertFalse(os.path.exists(os.path.join(directory, "var", "recsvc.sqlite3")))
        status, _, err = self.recsvc("search")
        self.assertEqual(status, 1)
        self.assertIn("no index at var/recsvc.sqlite3", err)

    def test_check_config_says_one_line_for_a_bad_file(self) -> None:
        """A bad config file: one line naming the file and the key, exit status 1."""
        with open(self.config, "a", encoding="utf-8") as handle:
            handle.write("rtp:\n  prot_range: [1, 2]\n")
        status, out, err = self.recsvc("check-config", "-c", self.config)
        self.assertEqual((status, out), (1, ""))
        [line] = err.splitlines()
        self.assertTrue(line.startswith(f"recsvc check-config: {self.config}: rtp.prot_range: "
                                        "unknown key"), line)
        status, _, err = self.recsvc("-c", self.config, "search")
        self.assertTrue(err.startswith(f"recsvc search: {self.config}: rtp.prot_range: "), err)

    def test_check_config_notes_a_port_taken_now(self) -> None:
        """A port taken now (by the running service, most likely) is noted
        with the key and the address; the config itself is OK."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            with open(self.config, "a", encoding="utf-8") as handle:
                handle.write(f"control:\n  listen: tcp:{port}:interface=127.0.0.1\n")
            status, out, err = self.recsvc("check-config", self.config)
        self.assertEqual(status, 0, err)
        self.assertIn(": OK", out)
        self.assertIn(f"recsvc check-config: NOTE, now: control.listen: 127.0.0.1:{port} is "
                      "taken (another recsvc running?)", err)
        status, _, err = self.recsvc("check-config", self.config)
        self.assertEqual((status, err), (0, ""))  # let go: nothing to note

    def test_version(self) -> None:
        """recsvc --version prints the version."""
        status, out, _ = self.recsvc("--version")
        self.assertEqual((status, out), (0, f"recsvc {__version__}\n"))


class OptionErrorTests(CommandCase):
    """A bad option value names the option as it is typed, after the
    subcommand's usage, with argparse's exit status (2)."""

    def assert_option_error(self, argv: list[str], expected: str, internal: str = "") -> None:
        status, out, err = self.recsvc(*argv)
        self.assertEqual((status, out), (2, ""), err)
        self.assertTrue(err.startswith(f"usage: recsvc {argv[0]} "), err)
        self.assertIn(f"recsvc {argv[0]}: error: argument {expected}", err)
        if internal:
            self.assertNotIn(internal, err)

    def test_search_options(self) -> None:
        """--limit, --page, --min-duration, --since, --number and --device
        are named as typed (not page_size, min_duration_s...)."""
        index_calls(self.database, [call(1)])
        for argv, expected, internal in (
                (["--limit", "0"], "--limit: 0 is outside 1..500", "page_size"),
                (["--limit", "501"], "--limit: 501 is outside 1..500", "page_size"),
                (["--page", "0"], "--page: 0 is outside", ""),
                (["--min-duration", "nan"], "--min-duration: nan is not a duration",
                 "min_duration_s"),
                (["--since", "2026-13-01"], "--since: '2026-13-01' is not a date", ""),
                (["--number", "abc"], "--number: 'abc' has no digits", ""),
                (["--device", "zz"], "--device: 'zz' has no hex digits", ""),
                (["--limit", "x"], "--limit: invalid int value: 'x'", "")):
            self.assert_option_error(["search", "-c", self.config, *argv], expected, internal)
        self.assert_option_error(["export", "-c", self.config, "--until", "someday"],
                               "--until: 'someday' is not a date")

    def test_a_hostile_cursor(self) -> None:
        """--after with a cursor no search gave (a duration no float holds,
        NaN, Infinity) is an option error naming --after, in any order,
        never a traceback."""
        index_calls(self.database, [call(1)])
        for duration, node in itertools.product(("1" + "0" * 400, "NaN", "Infinity"),
                                                (',"n"', "")):
            cursor = base64.urlsafe_b64encode(
                f'["2026-11-24T10:00:00.000Z",{duration},"p"{node}]'.encode()).decode()
            for order in ("longest", "newest"):
                self.assert_option_error(
                    ["search", "-c", self.config, "--order", order, "--after", cursor],
                    "--after: ", "Traceback")

    def test_other_commands_options(self) -> None:
        """status's --timeout, --url and --user, convert's -o/--output-dir."""
        self.assert_option_error(["status", "--timeout", "0"], "--timeout: '0' is not above 0")
        self.assert_option_error(["status", "--timeout", "soon"], "--timeout: 'soon' is not a number")
        self.assert_option_error(["status", "--url", "localhost:8080"],
                               "--url: 'localhost:8080' is not http://HOST:PORT")
        self.assert_option_error(["status", "--user", "ann:secret"],
                               "--user: 'ann:secret' is not a user name (no colon)")
        occupied = os.path.abspath(self.mktemp())
        open(occupied, "w").close()
        self.assert_option_error(["convert", "-o", occupied, "x.wav"],
                               f"-o/--output-dir: cannot make the folder {occupied}")


class SearchTests(CommandCase):
    def test_where_each_file_is(self) -> None:
        """The path shown is where the WAV is: this node's file when it has
        it; else its object in the archive (archive.url); without one,
        another node's file as NODE:PATH. An object's key has the node's
        folder: the row's node, else this node's."""
        index_calls(self.database, [call(1, node="rec-b"), call(2, node="rec-a"),
                                    call(3, node="rec-a")])
        relative = "00a859000001/2026/11/24/20261124T10_out_{}.wav"
        here = os.path.join(self.root, relative.format(3))
        os.makedirs(os.path.dirname(here))
        open(here, "wb").close()
        with open(self.config, "a", encoding="utf-8") as handle:
            handle.write("node: rec-a\n")

        def paths() -> dict[str, str]:
            status, out, err = self.recsvc("search", "-c", self.config, "--json")
            self.assertEqual(status, 0, err)
            return {row["id"]: row["path"] if row["path"].startswith(("s3:", "rec-")) else
                    os.path.normpath(row["path"]) for row in json.loads(out)["recordings"]}
        self.assertEqual(paths(), {"call-1": "rec-b:" + relative.format(1),
                                   "call-2": os.path.join(self.root, relative.format(2)),
                                   "call-3": here})
        with open(self.config, "a", encoding="utf-8") as handle:
            handle.write("archive:\n  url: s3://recordings/calls\n")
        self.assertEqual(paths(), {"call-1": "s3://recordings/calls/rec-b/" + relative.format(1),
                                   "call-2": "s3://recordings/calls/rec-a/" + relative.format(2),
                                   "call-3": here})

    def test_says_when_more_pages_follow(self) -> None:
        """A full page followed by more recordings ends with a line on
        standard error saying how to get the next page (with --limit, when
        it is not the default, and how many that page shows); the last
        page, even exactly full, does not."""
        index_calls(self.database, [call(number) for number in range(5)])
        status, out, err = self.recsvc("search", "-c", self.config, "--limit", "2")
        self.assertEqual([line.split()[-2] for line in out.splitlines()], ["call-4", "call-3"])
        self.assertEqual(err, "(more: --page 2 --limit 2 shows the next 2 of 5)\n")
        status, out, err = self.recsvc("search", "-c", self.config, *self.following(err))
        self.assertEqual([line.split()[-2] for line in out.splitlines()], ["call-2", "call-1"])
        self.assertEqual(err, "(more: --page 3 --limit 2 shows the next 1 of 5)\n")
        status, out, err = self.recsvc("search", "-c", self.config, "--limit", "2", "--page", "3")
        self.assertEqual((len(out.splitlines()), err), (1, ""))
        status, out, err = self.recsvc("search", "-c", self.config, "--limit", "5")
        self.assertEqual((len(out.splitlines()), err), (5, ""))
        status, out, err = self.recsvc("search", "-c", self.config, "--limit", "2", "--page", "4")
        self.assertEqual((out, err), ("", "no recordings on page 4 (the search finds fewer)\n"))

    def test_more_at_the_default_page_size(self) -> None:
        """At the default page size the line needs no --limit, and following
        it shows the rest (with --limit 2, "--page 2" alone showed
        recordings 51 and on, not 3 and on)."""
        index_calls(self.database, [call(number) for number in range(52)])
        status, out, err = self.recsvc("search", "-c", self.config)
        self.assertEqual((len(out.splitlines()), err), (50, "(more: --page 2 shows the next 2 of 52)\n"))
        self.assertEqual(self.following(err), ["--page", "2"])
        status, out, err = self.recsvc("search", "-c", self.config, *self.following(err))
        self.assertEqual([line.split()[-2] for line in out.splitlines()], ["call-1", "call-0"])

    def following(self, said: str) -> list[str]:
        """The options the "(more: ...)" line gives for the next page."""
        self.assertTrue(said.startswith("(more: "), said)
        return said.removeprefix("(more: ").split(" shows ")[0].split()

    def test_json_says_the_next_page(self) -> None:
        """--json is the web API's shape, with next_page (null on the last page)."""
        index_calls(self.database, [call(number) for number in range(3)])
        status, out, err = self.recsvc("search", "-c", self.config, "--limit", "2", "--json")
        found = json.loads(out)
        self.assertEqual(err, "")
        self.assertEqual([row["id"] for row in found["recordings"]], ["call-2", "call-1"])
        self.assertEqual((found["page"], found["page_size"], found["next_page"]), (1, 2, 2))
        status, out, err = self.recsvc("search", "-c", self.config, "--limit", "2", "--page",
                                       "2", "--json")
        found = json.loads(out)
        self.assertEqual(([row["id"] for row in found["recordings"]], found["next_page"]),
                         (["call-0"], None))

    def test_show_is_always_a_list_of_files(self) -> None:
        """show prints a JSON list whether the recording has one file or
        several (its parts, in order), each with its WAV's path."""
        index_calls(self.database, [
            call(1), call(3, id="long", part=2, file="long_part2.wav"),
            call(2, id="long", part=1, file="long.wav")])
        status, out, _ = self.recsvc("show", "-c", self.config, "call-1")
        [only] = json.loads(out)
        self.assertEqual((status, only["id"]), (0, "call-1"))
        status, out, _ = self.recsvc("show", "-c", self.config, "long")
        parts = json.loads(out)
        self.assertEqual([(part["part"], os.path.basename(part["path"])) for part in parts],
                         [(1, "long.wav"), (2, "long_part2.wav")])

    def test_export_is_csv_by_default(self) -> None:
        """export writes CSV without --csv (which it still takes)."""
        index_calls(self.database, [call(1), call(2)])
        status, out, err = self.recsvc("export", "-c", self.config)
        self.assertEqual((status, err), (0, ""))
        rows = list(csv.reader(io.StringIO(out)))
        self.assertEqual((rows[0][0], [row[0] for row in rows[1:]]), ("id", ["call-2", "call-1"]))
        self.assertEqual(self.recsvc("export", "-c", self.config, "--csv"), (status, out, err))


    def test_export_keeps_formulas_out_of_spreadsheets(self) -> None:
        """A name or number a phone sent that a spreadsheet would run as a
        formula (=, +, -, @, a tab or CR first) is exported with a leading
        ', as text; numbers as phones write them (+4930123, -) are left as
        they are (the cells were written as sent)."""
        index_calls(self.database, [call(
            1, local_name='=HYPERLINK("http://evil","x")', remote_name="@SUM(A1)",
            local_number="+4930 123", remote_number="-", stop_reason="+cmd|' /C calc'!A0",
            device="\t=1+2")])
        status, out, err = self.recsvc("export", "-c", self.config)
        [header, row] = list(csv.reader(io.StringIO(out)))
        cells = dict(zip(header, row))
        self.assertEqual(
            [cells[column] for column in ("local_name", "remote_name", "local_number",
                                          "remote_number", "stop_reason", "device")],
            ["'=HYPERLINK(\"http://evil\",\"x\")", "'@SUM(A1)", "+4930 123", "-",
             "'+cmd|' /C calc'!A0", "'\t=1+2"])
        self.assertEqual((cells["duration_s"], cells["id"]), ("60.0", "call-1"))


class HelpTests(SynchronousTestCase):
    def test_every_subcommand_describes_itself(self) -> None:
        """Each subcommand's --help has a description of its own (not just
        its usage), and the list of subcommands a summary of each."""
        [commands] = [action for action in parser()._actions if action.dest == "command"]
        self.assertEqual(set(commands.choices), {
            "search", "show", "export", "reindex", "check-config", "hash-password", "status",
            "convert", "user", "audit", "hold", "release", "holds", "erase"})
        summaries = {action.dest: action.help for action in commands._choices_actions}
        for name, command in commands.choices.items():
            self.assertTrue(summaries[name], name)
            self.assertGreater(len(command.description or ""), len(summaries[name]), name)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                self.assertEqual(main([name, "--help"]), 0)
            words = " ".join(out.getvalue().split())
            self.assertIn(" ".join(command.description.split()[:6]), words, name)
            self.assertIn("-c FILE, --config FILE", words, name)


class DirectionTests(SynchronousTestCase):
    def test_direction_and_parties(self) -> None:
        """The direction, then the local party, an arrow from caller to
        called, the remote party; "-" for a party without number or name."""
        self.assertEqual(direction_and_parties(call(1)), "out  2001 Desk -> 13800138000 Bob")
        self.assertEqual(direction_and_parties(call(1, direction="in", remote_name="")),
                         "in   2001 Desk <- 13800138000")
        self.assertEqual(direction_and_parties({"direction": "unknown", "local_number": "2001",
                                                "remote_number": None}),
                         "unknown  2001 -- -")

    def test_search_and_status_print_a_call_alike(self) -> None:
        """An incoming call reads the same in search (finished) and status
        (in progress)."""
        folder = os.path.abspath(self.mktemp())
        config = os.path.join(folder, "recsvc.yaml")
        os.makedirs(folder)
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("http:\n  listen: \"off\"\n")
        incoming = call(1, direction="in", remote_number="555", remote_name="Alice")
        index_calls(os.path.join(folder, "var", "recsvc.sqlite3"), [incoming])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(["search", "-c", config])
        active = dict(incoming, seconds=1.0, packets_received=50, packets_lost=0)
        shown = format_status(Status("http://127.0.0.1:8080", [active], {}))
        expected = "  in   2001 Desk <- 555 Alice  "
        self.assertIn(expected, out.getvalue())
        self.assertIn(expected, shown)


class PhonesWordsTests(CommandCase):
    """What a phone sent (its numbers and names) reaches the terminal only
    printable."""

    # An escape sequence, a C1 control (CSI), a new line beginning a forged
    # line, a line separator.
    SENT = "\x1b[2J\x1b]0;owned\x07Desk\x9b31m\nfake line\u2028"

    def test_search_and_status_lines(self) -> None:
        """search and status print each control character a phone sent as
        ``?``: one line a recording, no escape sequence (they were printed
        as sent: a name could clear the screen or add a line)."""
        evil = call(1, local_name=self.SENT, remote_number="555\r")
        index_calls(self.database, [evil])
        status, out, _ = self.recsvc("search", "-c", self.config)
        shown = format_status(Status("http://127.0.0.1:8080", [
            dict(evil, seconds=1.0, packets_received=50, packets_lost=0)], {}))
        for text in (out.rstrip("\n"), shown.splitlines()[2]):
            self.assertTrue(text.isprintable(), repr(text))
            self.assertIn("2001 ?[2J?]0;owned?Desk?31m?fake line -> 555? Bob", text)
        self.assertEqual(len(out.splitlines()), 1)

    def test_json_keeps_letters_escapes_controls(self) -> None:
        """search --json and show escape every character that is not
        printable (JSON itself escapes only those below 0x20), keep letters
        such as "é" as they are, and read back as what the phone sent."""
        evil = call(1, local_name=self.SENT, remote_name="Zoë \U000e0001")
        index_calls(self.database, [evil])
        for argv in (("search", "--json"), ("show", "call-1")):
            status, out, _ = self.recsvc(*argv, "-c", self.config)
            self.assertTrue(out.replace("\n", "").isprintable(), argv)
            self.assertIn('"remote_name": "Zo\u00eb \\udb40\\udc01"', out)
            parsed = json.loads(out)
            [row] = parsed["recordings"] if isinstance(parsed, dict) else parsed
            self.assertEqual((row["local_name"], row["remote_name"]),
                             (self.SENT, "Zo\u00eb \U000e0001"))


class ClosedPipeTests(SynchronousTestCase):
    def test_closed_pipe_ends_quietly(self) -> None:
        """
        `recsvc export | head -1` over many recordings: once the reader has
        gone, recsvc ends at once with nothing on standard error (no
        BrokenPipeError traceback) and exit status 141, as a tool killed by
        SIGPIPE.
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        config = os.path.join(folder, "recsvc.yaml")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("http:\n  listen: \"off\"\n")
        # Far more than a pipe holds (64 KiB), so that the writer meets the closed end.
        index_calls(os.path.join(folder, "var", "recsvc.sqlite3"),
                    [call(number, remote_name="x" * 200) for number in range(2000)])
        self.assertEqual(status_when_reader_leaves([RECSVC, "-c", config, "export"],
                                                   b"id,started_at"), (141, b""))
