"""Tests for what admins run recsvc with: the JSON-lines log observer and
the systemd unit."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from recsvc.admission import policy_of
from recsvc.logs import json_lines
from recsvc.control.commands import CallParties, StartRequest
from recsvc.testing import FakePhoneLink, memory_recorder

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class JsonLinesTests(SynchronousTestCase):
    def test_the_recorders_events_with_their_stable_keys(self) -> None:
        """A recording started and one refused, as the recorder logs them,
        come out as one JSON object a line with the stable keys
        (recordingId, device, peer, reason) a log shipper filters on."""
        out = io.StringIO()
        observer = json_lines(out)
        service = memory_recorder(self.mktemp())
        service.access = policy_of([], ["00a859000001"])
        service.startService()
        globalLogPublisher.addObserver(observer)
        try:
            for recording_id, device in (("7", "00:a8:59:00:00:01"), ("8", "00a859000002")):
                service.start_recording(
                    StartRequest(recording_id, device, "PCMA", "out",
                                 CallParties("2001", "Desk", "555", "Bob")),
                    FakePhoneLink(), "10.0.0.5", "10.0.0.9")
        finally:
            globalLogPublisher.removeObserver(observer)
        events = [json.loads(line) for line in out.getvalue().splitlines()]
        [started] = [e for e in events if e.get("recordingId") == "7"
                     and e["message"].startswith("Recording 7 started")]
        [refused] = [e for e in events if e.get("recordingId") == "8"]
        self.assertEqual((started["device"], started["peer"], started["level"]),
                         ("00:a8:59:00:00:01", "10.0.0.5", "info"))
        self.assertEqual(started["namespace"], "recsvc.service.RecorderService")
        self.assertEqual((refused["device"], refused["reason"], refused["level"]),
                         ("00a859000002", "device not allowed", "warn"))


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
