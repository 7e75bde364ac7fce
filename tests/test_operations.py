"""Tests for what admins run recsvc with: the JSON-lines log observer and
the systemd unit."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from recsvc.logs import json_lines

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class JsonLinesTests(SynchronousTestCase):
    def test_one_object_a_line_with_the_stable_keys(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="recsvc.service.RecorderService", observer=json_lines(out))
        log.info("Recording {recordingId} started from {device}", recordingId="7",
                 device="00:a8:59:00:00:01", peer="10.0.0.5")
        log.warn("Recording {recordingId} refused: {reason}", recordingId="8",
                 reason="device not allowed")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first, second = (json.loads(line) for line in lines)
        self.assertEqual((first["recordingId"], first["device"], first["peer"]),
                         ("7", "00:a8:59:00:00:01", "10.0.0.5"))
        self.assertEqual(first["log_namespace"], "recsvc.service.RecorderService")
        self.assertEqual(second["reason"], "device not allowed")
        self.assertEqual(second["log_level"]["name"], "warn")


class SystemdUnitTests(SynchronousTestCase):
    def test_unit_verifies(self) -> None:
        """etc/recsvc.service passes `systemd-analyze verify` (with its
        ExecStart pointed at this checkout, as an install would have it)."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed (no systemd here)")
        if not os.access(os.path.join(CHECKOUT, ".venv", "bin", "twistd"), os.X_OK):
            raise SkipTest("no .venv/bin/twistd in this checkout (run `make venv`)")
        with open(os.path.join(CHECKOUT, "etc", "recsvc.service"), encoding="utf-8") as handle:
            unit = handle.read()
        self.assertIn("--nodaemon --pidfile= --logfile=-", unit)
        folder = self.mktemp()
        os.makedirs(folder)
        path = os.path.join(folder, "recsvc.service")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(unit.replace("/opt/recsvc", CHECKOUT))
        checked = subprocess.run([analyze, "verify", path], capture_output=True, text=True,
                                 timeout=60)
        self.assertEqual(checked.returncode, 0, checked.stderr + checked.stdout)
        self.assertNotIn("recsvc.service", checked.stderr)  # no warning about the unit
