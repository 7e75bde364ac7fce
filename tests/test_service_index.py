"""Tests for what RecorderService tells the index: each finished file, and the
catch-up after start-up recovery."""

from __future__ import annotations

import errno
import glob
import os

import attrs
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import StopRequest
from recsvc.session import Limits
from recsvc.archive.uploader import NoArchive
from recsvc.storage.folder import StorageError, sidecar_path
from recsvc.storage.wav import WavFileWriter, partial_path
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


@attrs.define
class NotingWebhook:
    """A webhook that notes each sidecar it is given to deliver."""

    delivered: list[dict] = attrs.field(factory=list)

    def deliver(self, sidecar: dict) -> None:
        self.delivered.append(sidecar)


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

    def record_on_disk(self) -> tuple[FakeIndexer, NotingArchive]:
        """A recording in real WAV files, its index, archive and webhook
        (self.delivered) noting what they are told; started, with one packet."""
        self.make_service()
        self.service.webhook = NotingWebhook()
        self.delivered = self.service.webhook.delivered
        self.service.storage = attrs.evolve(self.service.storage, open_writer=None)
        self.service.index = indexer = FakeIndexer(root=self.root)
        indexer.start()
        self.service.upkeep.archive = archive = NotingArchive()
        port = self.start().port
        self.ports.deliver(port, rtp(1, b"a" * 160))
        return indexer, archive

    def test_a_wav_kept_on_a_full_disk_is_reported(self) -> None:
        """A real WAV whose last audio meets a full disk as it is closed is
        on disk under its name all the same: the index and the archive are
        told of it; the Stop fails."""
        indexer, archive = self.record_on_disk()

        def disk_full(writer: WavFileWriter) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.patch(WavFileWriter, "_flush", disk_full)
        self.failureResultOf(self.service.stop_recording(StopRequest("7")), StorageError)
        [wav] = glob.glob(os.path.join(os.path.abspath(self.root), "**", "*.wav"),
                          recursive=True)
        self.assertEqual([(call, os.path.abspath(path)) for call, path in indexer.calls],
                         [("file_finished", wav)])
        self.assertEqual([os.path.abspath(path) for path, _ in archive.files], [wav])
        [sidecar] = self.delivered
        self.assertEqual((sidecar["file"], sidecar["error"]),
                         (os.path.basename(wav), "No space left on device"))
        self.flushLoggedErrors()

    def test_a_wav_not_under_its_name_is_not_reported(self) -> None:
        """A WAV that could not take its final name (its rename failed) is
        not told to the index or the archive: start-up recovery finishes
        what is left."""
        indexer, archive = self.record_on_disk()
        finish_header = WavFileWriter._finish_header

        def partial_file_gone(writer: WavFileWriter) -> None:
            finish_header(writer)
            os.rename(partial_path(writer.path), partial_path(writer.path) + ".elsewhere")
        self.patch(WavFileWriter, "_finish_header", partial_file_gone)
        self.failureResultOf(self.service.stop_recording(StopRequest("7")), StorageError)
        self.assertEqual(glob.glob(os.path.join(self.root, "**", "*.wav"), recursive=True), [])
        self.assertEqual((indexer.calls, archive.files, self.delivered), ([], [], []))
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
