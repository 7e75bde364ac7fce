"""A RecorderService started on the fakes of recsvc.testing, for the tests
that drive it by hand."""

from __future__ import annotations

import json

from recsvc.storage.folder import sidecar_path
from recsvc.testing import FakePhoneLink, FakePortPool, ManualRunner, MemoryWriters, memory_recorder, run_now
from tests.support.builders import start_request


class ServiceTestsMixin:
    """A RecorderService on the fakes of recsvc.testing (made by
    ``make_service``), its recordings started and their sidecars read."""

    def make_service(self, fail_at=None, runner=run_now, ports=None, writers=None, **kwargs):
        """A started service on fakes, with one phone link connected."""
        self.root = self.mktemp()
        self.runner = runner
        self.writers = writers or MemoryWriters(fail_at=fail_at)
        self.ports = ports or FakePortPool()
        self.service = memory_recorder(
            self.root, writers=self.writers, ports=self.ports, run_blocking=runner, **kwargs
        )
        self.service.startService()
        self.link = FakePhoneLink()
        self.service.link_connected(self.link)
        return self.service

    def start(self, request=None, link=None):
        """Start a recording and return the answer (its file is created
        off the reactor thread: a held runner is run for it)."""
        answer = self.service.start_recording(
            request or start_request(), link or self.link, "127.0.0.1", "127.0.0.9"
        )
        if isinstance(self.runner, ManualRunner):
            self.runner.run_pending()
        return self.successResultOf(answer)

    def sidecar_of(self, recording_id: str) -> dict:
        [path] = [p for p in self.writers.writers if p.endswith(f"_{recording_id}.wav")]
        with open(sidecar_path(path), encoding="utf-8") as handle:
            return json.load(handle)

    def sidecars(self) -> list[dict]:
        result = []
        for path in self.writers.writers:
            with open(sidecar_path(path), encoding="utf-8") as handle:
                result.append(json.load(handle))
        return result
