"""Embedding recsvc in a Twisted application: makeService's observers and
folders, and the README's own `.tac` run under `twistd -ny` recording a
call over loopback. (The public names: tests/test_exports.py.)"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

import recsvc
from recsvc.config import ConfigError
from recsvc.phonesim.phone import timed_call
from recsvc.phonesim.simulator import finished_recordings
from recsvc.storage.folder import sidecar_path
from tests.support.output import OutputLines

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(CHECKOUT, "README.md")
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


@implementer(recsvc.IRecordingObserver)
class QuietObserver:
    """An observer that does nothing (makeService only wires it)."""

    def recording_started(self, info: Any) -> None:
        pass

    def recording_finished(self, sidecar: dict[str, Any], wav_path: str) -> None:
        pass

    def recording_failed(self, info: Any, reason: str) -> None:
        pass


class MakeServiceEmbeddedTests(SynchronousTestCase):
    """makeService as an application calls it: a mapping, observers, folders."""

    def mapping(self) -> dict[str, Any]:
        base = os.path.abspath(self.mktemp())
        return {
            "control": {"listen": "tcp:0:interface=127.0.0.1"},
            "rtp": {"interface": "127.0.0.1", "port_range": [45000, 45009]},
            "storage": {"root": os.path.join(base, "recordings")},
            "index": {"database": os.path.join(base, "index", "recsvc.sqlite3")},
            "http": {"listen": "off"},
        }

    def test_observers_reach_the_recorder(self) -> None:
        """The observers given to recsvc.makeService are the recorder's, in
        order; without any, it has none."""
        first, second = QuietObserver(), QuietObserver()
        tree = recsvc.makeService(self.mapping(), MemoryReactorClock(), observers=[first, second])
        self.assertEqual(tree.getServiceNamed("recorder").observers.observers, (first, second))
        tree = recsvc.makeService(self.mapping(), MemoryReactorClock())
        self.assertEqual(tree.getServiceNamed("recorder").observers.observers, ())

    def test_bad_observer_refused_before_anything_is_made(self) -> None:
        """An observer that is not an IRecordingObserver is a TypeError
        naming it, raised before any folder is made."""
        mapping = self.mapping()
        error = self.assertRaises(TypeError, recsvc.makeService, mapping, MemoryReactorClock(),
                                  observers=[QuietObserver(), object()])
        self.assertIn("observers[1]", str(error))
        self.assertFalse(os.path.exists(mapping["storage"]["root"]))

    def test_creates_storage_root_and_index_folder(self) -> None:
        """Built from a mapping (no twistd Options), makeService creates
        storage.root and the folder of index.database."""
        mapping = self.mapping()
        recsvc.makeService(mapping, MemoryReactorClock())
        self.assertTrue(os.path.isdir(mapping["storage"]["root"]))
        self.assertTrue(os.path.isdir(os.path.dirname(mapping["index"]["database"])))

    def test_storage_root_that_cannot_be_made(self) -> None:
        """A storage.root that cannot be created (under a regular file) is a
        ConfigError naming storage.root and the path."""
        mapping = self.mapping()
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w"):
            pass
        mapping["storage"]["root"] = os.path.join(blocker, "recordings")
        error = self.assertRaises(ConfigError, recsvc.makeService, mapping, MemoryReactorClock())
        self.assertEqual(error.key, "storage.root")
        self.assertIn(mapping["storage"]["root"], str(error))

    def test_index_folder_that_cannot_be_made(self) -> None:
        """An index.database whose folder cannot be created is a ConfigError
        naming index.database and the folder."""
        mapping = self.mapping()
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w"):
            pass
        mapping["index"]["database"] = os.path.join(blocker, "index", "recsvc.sqlite3")
        error = self.assertRaises(ConfigError, recsvc.makeService, mapping, MemoryReactorClock())
        self.assertEqual(error.key, "index.database")
        self.assertIn(os.path.join(blocker, "index"), str(error))

    def test_bad_endpoint_makes_no_folder(self) -> None:
        """A control.listen Twisted cannot parse is a ConfigError naming it,
        before any folder is made (the config is checked first)."""
        mapping = self.mapping()
        mapping["control"]["listen"] = "bogus:1"
        error = self.assertRaises(ConfigError, recsvc.makeService, mapping, MemoryReactorClock())
        self.assertEqual(error.key, "control.listen")
        self.assertFalse(os.path.exists(mapping["storage"]["root"]))


# The README's .tac, made to run here: (its text, what the test puts
# instead). Each must be in the README exactly once, so that the test runs
# what a reader copies and fails when the two drift apart.
TAC_SUBSTITUTIONS = (
    ('"tcp:10000"', '"tcp:0:interface=127.0.0.1"'),
    ('"10.20.0.0/16"', '"127.0.0.0/8"'),
    ('"0.0.0.0"', '"127.0.0.1"'),
    ("[41000, 41999]", "[44000, 44999]"),
    ('"/var/lib/pbx/recordings"', "{root!r}"),
    ('"/var/lib/pbx/recsvc.sqlite3"', "{database!r}"),
)


def readme_tac() -> str:
    """The python block of the README's Embedding section (the .tac)."""
    with open(README, encoding="utf-8") as handle:
        readme = handle.read()
    section = readme.split("\n## Embedding\n", 1)[1].split("\n## ", 1)[0]
    [tac] = re.findall(r"```python\n(.*?)```", section, re.S)
    return tac


class ReadmeTacTests(TestCase):
    """The README's `.tac`, under `twistd -ny`, records a call and its
    observer says so."""

    timeout = 60

    def test_readme_shows_a_runnable_tac(self) -> None:
        """The Embedding section has one python block, a .tac with an
        `application` built by makeService with an observer, holding each
        value the end-to-end test replaces exactly once."""
        tac = readme_tac()
        self.assertIn("application = service.Application(", tac)
        self.assertIn("@implementer(recsvc.IRecordingObserver)", tac)
        self.assertIn("observers=[CallLog()]", tac)
        for original, _ in TAC_SUBSTITUTIONS:
            self.assertEqual(tac.count(original), 1, original)

    def test_twistd_ny_records_a_call(self) -> None:
        """`twistd -ny pbx.tac` with the README's text: a phone's call is
        recorded, the observer logs its start and its finished file with
        the full path of the WAV the recorder wrote (and no failure), and
        SIGTERM ends the process cleanly."""
        return deferToThread(self._record_under_twistd)

    def _record_under_twistd(self) -> None:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        root = os.path.join(workdir, "data", "recordings")
        database = os.path.join(workdir, "data", "index", "recsvc.sqlite3")
        tac = readme_tac()
        for original, replacement in TAC_SUBSTITUTIONS:
            tac = tac.replace(original, replacement.format(root=root, database=database))
        with open(os.path.join(workdir, "pbx.tac"), "w", encoding="utf-8") as handle:
            handle.write(tac)

        process = subprocess.Popen(
            [TWISTD, "-ny", "pbx.tac", "--pidfile=", "--logfile=-"],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        output = OutputLines(process.stdout)

        def wait_for(pattern: str) -> re.Match[str]:
            match = output.wait_for(pattern)
            if match is None:
                self.fail(f"twistd never logged {pattern!r}:\n" + "".join(output.seen))
            return match

        try:
            port = int(wait_for(r"Listening for control connections on 127\.0\.0\.1:(\d+)")[1])
            sound = random.Random(15).randbytes(8000)
            call = timed_call("127.0.0.1", port, "embedded-1", sound, interval=0.001)
            self.assertEqual((call.started.result, call.stopped.result), ("success", "success"))
            wait_for(r"\[pbx#info\] pbx: recording 'embedded-1' started from '00:a8:59:12:34:56'")
            finished = wait_for(
                r"\[pbx#info\] pbx: recording 'embedded-1' part 1 finished: (\S+\.wav) \(([\d.]+) s\)")
            process.send_signal(signal.SIGTERM)
            self.assertIn(process.wait(timeout=20), (0, -signal.SIGTERM))
            self.assertIn("Server Shut Down.", output.rest())
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        log = "".join(output.seen)
        self.assertNotIn("could not be kept", log)
        self.assertNotIn("Traceback", log)
        wav_path, seconds = finished[1], float(finished[2])
        self.assertEqual(finished_recordings(root), {"embedded-1": wav_path})
        self.assertTrue(os.path.isabs(wav_path))
        with open(sidecar_path(wav_path), encoding="utf-8") as handle:
            sidecar = json.load(handle)
        self.assertEqual((sidecar["duration_s"], sidecar["format"]), (seconds, "pcm16"))
        self.assertEqual(seconds, 1.0)
        self.assertTrue(os.path.isfile(database))
