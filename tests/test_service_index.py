"""Tests for what RecorderService tells the index: each finished file, and the
catch-up after start-up recovery."""

from __future__ import annotations

import errno
import os

import attrs
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import StopRequest
from recsvc.session import Limits
from recsvc.storage.folder import sidecar_path
from recsvc.archive.uploader import NoArchive
from recsvc.storage.folder import StorageError
from recsvc.summary import RecordingSummary
from recsvc.testing import FailingWriter, FakeIndexer, ManualRunner, MemoryWriters
from tests.support.builders import rtp
from tests.support.service import ServiceTestsMixin


@attrs.define
class NotingArchive(NoArchive):
    """An archive that notes each file it is told of."""

    files: list[tuple[str, RecordingSummary]] = attrs.field(factory=list)

    def file_finished(self, wav_path: str, summary: RecordingSummary) -> None:
        self.files.append((wav_path, summary))


class IndexHookTests(ServiceTestsMixin, SynchronousTestCase):
    """The service tells the index (recsvc.index.indexer) what it needs to know."""

    def test_each_finished_file_indexed(self) -> None:
        """A file is indexed once finished, its sidecar written: not before."""
        self.make_service()
        self.service.index = indexer = FakeIndexer(root=self.root)
        indexer.start()
        port = self.start().port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        self.assertEqual(indexer.calls, [])
        self.successResultOf(self.service.stop_recording(StopRequest("7")))
        [path] = self.writers.writers
        self.assertEqual(indexer.calls, [("file_finished", path)])
        self.assertTrue(os.path.exists(sidecar_path(path)))

    def test_each_part_indexed(self) -> None:
        """A recording that goes on in a second file has each file indexed
        as it is finished, the first before the second."""
        self.make_service(limits=Limits(max_duration=1.0))
        self.service.index = indexer = FakeIndexer(root=self.root)
        indexer.start()
        port = self.start().port
        for sequence in range(60):
            self.ports.deliver(port, rtp(sequence, bytes([sequence]) * 160))
        self.successResultOf(self.service.stop_recording(StopRequest("7")))
        first, second = sorted(self.writers.writers)
        self.assertTrue(second.endswith("_7_part2.wav"), second)
        self.assertEqual(indexer.calls, [("file_finished", first), ("file_finished", second)])

    def test_file_kept_with_an_error_indexed_and_archived_at_once(self) -> None:
        """A file whose close fails (a full disk at the Stop) but which is
        on disk with its sidecar is told to the index and the archive at
        once, not at the next start; the Stop still fails."""
        writers = MemoryWriters()

        def closing_fails(path, fmt):
            return FailingWriter(writers(path, fmt),
                                 close_error=OSError(errno.ENOSPC, "No space left on device"))

        self.make_service(writers=writers)
        self.service.storage = attrs.evolve(self.service.storage, open_writer=closing_fails)
        self.service.index = indexer = FakeIndexer(root=self.root)
        indexer.start()
        self.service.upkeep.archive = archive = NotingArchive()
        port = self.start().port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        self.failureResultOf(self.service.stop_recording(StopRequest("7")), StorageError)
        [path] = writers.writers
        self.assertEqual(indexer.calls, [("file_finished", path)])
        [(archived, summary)] = archive.files
        self.assertEqual((archived, summary.error, summary.data_bytes),
                         (path, "No space left on device", 160))
        self.flushLoggedErrors()

    def test_index_failure_spares_the_recording(self) -> None:
        """An index that fails when told of a finished file is logged; the
        recording is finished all the same."""
        self.make_service()

        class BrokenIndexer(FakeIndexer):
            def file_finished(self, wav_path: str) -> None:
                raise RuntimeError("index broken")

        self.service.index = broken = BrokenIndexer(root=self.root)
        broken.start()
        port = self.start().port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        summary = self.successResultOf(self.service.stop_recording(StopRequest("7")))
        self.assertEqual(summary.stats.received, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_index_caught_up_after_recovery(self) -> None:
        """Once the reactor runs, the index catches up with the sidecars
        after recovery has finished what a crash left."""
        runner = ManualRunner()
        self.make_service(runner=runner)
        self.service.index = indexer = FakeIndexer(root=self.root)
        indexer.start()
        self.service.reactor_running()
        self.assertEqual(indexer.calls, [])  # recovery is held
        runner.run_pending()
        self.assertEqual(indexer.calls, [("catch_up", None)])
