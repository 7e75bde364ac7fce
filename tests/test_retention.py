"""Tests for recsvc.storage.retention and the service's periodic sweep."""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from recsvc import upkeep
from recsvc.storage.retention import (
    LOCAL_COPY, TOO_MUCH, RetentionPolicy, finished_recordings, sweep)
from recsvc.testing import FakeIndexer, memory_recorder

DAY = 86400.0
NOW = 1_800_000_000.0


class Archive:
    """Recordings on disk, each with a sidecar, at chosen ages and sizes."""

    def __init__(self, root: str) -> None:
        self.root = root

    def add(self, name: str, age_days: float, size: int = 1000, status: str = "finished",
            partial: bool = False, **fields: object) -> str:
        folder = os.path.join(self.root, "00a859123456", name[:4])
        os.makedirs(folder, exist_ok=True)
        wav = os.path.join(folder, name + ".wav")
        with open(wav + (".part" if partial else ""), "wb") as handle:
            handle.write(b"\0" * size)
        with open(os.path.join(folder, name + ".json"), "w", encoding="utf-8") as handle:
            json.dump({"id": name, "status": status, **fields}, handle)
        moment = NOW - age_days * DAY
        for path in (wav + (".part" if partial else ""), os.path.join(folder, name + ".json")):
            os.utime(path, (moment, moment))
        return wav

    def names(self) -> list[str]:
        return sorted(
            name for _, _, files in os.walk(self.root) for name in files
        )


class SweepTests(SynchronousTestCase):
    def archive(self) -> Archive:
        root = self.mktemp()
        os.makedirs(root)
        return Archive(root)

    def test_sidecar_without_audio_swept(self) -> None:
        """
        A recording that received no RTP (a finished sidecar naming no
        file, no WAV) ages like the others and goes with its sidecar; one
        whose sidecar names a file but lost its WAV is left alone.
        """
        archive = self.archive()
        silent = archive.add("2020s", 400)
        os.unlink(silent)
        with open(silent[:-len(".wav")] + ".json", "w", encoding="utf-8") as handle:
            json.dump({"id": "s", "status": "finished", "file": None}, handle)
        os.utime(silent[:-len(".wav")] + ".json", (NOW - 400 * DAY, NOW - 400 * DAY))
        lost = archive.add("2020l", 400)
        os.unlink(lost)
        removed = sweep(archive.root, RetentionPolicy(max_age_days=90), NOW, lambda root: 10**12)
        self.assertEqual([os.path.basename(r.wav) for r in removed], ["2020s.wav"])
        self.assertEqual(archive.names(), ["2020l.json"])

    def test_archived_audio_swept(self) -> None:
        """
        With the archive on, a finished sidecar whose WAV was deleted once
        archived is a recording: it ages and goes like the others.
        """
        archive = self.archive()
        archived = archive.add("2020x", 400, file="2020x.wav")
        os.unlink(archived)
        policy = RetentionPolicy(max_age_days=90)
        self.assertEqual(sweep(archive.root, policy, NOW, lambda root: 10**12), [])
        removed = sweep(archive.root, policy, NOW, lambda root: 10**12, audio_archived=True)
        self.assertEqual([os.path.basename(r.wav) for r in removed], ["2020x.wav"])
        self.assertEqual(archive.names(), [])

    def test_size_rules_count_only_local_audio(self) -> None:
        """
        max_total_bytes and min_free_bytes are about this disk: they count
        and delete only recordings whose WAV is here, never a sidecar alone
        (its audio in the archive, or none), however old.
        """
        archive = self.archive()
        for index in range(5):
            archived = archive.add(f"a{index}", 30 - index, file=f"a{index}.wav")
            os.unlink(archived)
        silent = archive.add("s", 40)
        os.unlink(silent)
        archive.add("w0", 2, size=5000)
        archive.add("w1", 1, size=5000)
        sidecars = sorted(name for name in archive.names() if name[0] in "as")
        removed = sweep(archive.root, RetentionPolicy(min_free_bytes=10_000), NOW,
                        lambda root: 6000, audio_archived=True)
        self.assertEqual([(os.path.basename(r.wav), r.why) for r in removed],
                         [("w0.wav", TOO_MUCH)])
        total_each = 5000 + len(json.dumps({"id": "w1", "status": "finished"}))
        removed = sweep(archive.root, RetentionPolicy(max_total_bytes=total_each - 1), NOW,
                        lambda root: 10**12, audio_archived=True)
        self.assertEqual([os.path.basename(r.wav) for r in removed], ["w1.wav"])
        self.assertEqual(archive.names(), sidecars)

    def test_verified_local_copies_go_first(self) -> None:
        """
        With the archive on, the size and free-space rules first delete the
        local WAVs verified in the archive, oldest first (their sidecars
        stay: nothing is lost), and only then, if still needed, whole
        recordings not yet archived, oldest first.
        """
        archive = self.archive()
        verified = {archive.add("v0", 5, size=5000), archive.add("v1", 1, size=5000)}
        waiting = archive.add("n0", 3, size=5000)
        archive.add("n1", 2, size=5000)
        removed = sweep(archive.root, RetentionPolicy(min_free_bytes=10_000), NOW,
                        lambda root: 1000, audio_archived=True, in_archive=verified.__contains__)
        self.assertEqual([(os.path.basename(r.wav), r.why, r.whole) for r in removed],
                         [("v0.wav", LOCAL_COPY, False), ("v1.wav", LOCAL_COPY, False)])
        self.assertEqual(archive.names(), ["n0.json", "n0.wav", "n1.json", "n1.wav",
                                           "v0.json", "v1.json"])
        removed = sweep(archive.root, RetentionPolicy(min_free_bytes=10_000), NOW,
                        lambda root: 5000, audio_archived=True, in_archive=verified.__contains__)
        self.assertEqual([(r.wav, r.why, r.whole) for r in removed], [(waiting, TOO_MUCH, True)])
        self.assertEqual(archive.names(), ["n1.json", "n1.wav", "v0.json", "v1.json"])

    def test_max_age(self) -> None:
        """
        Recordings older than max_age_days go, with their sidecars; newer
        ones stay; an emptied folder is removed.
        """
        archive = self.archive()
        archive.add("2020a", 400)
        archive.add("2020b", 100)
        archive.add("2021c", 10)
        removed = sweep(archive.root, RetentionPolicy(max_age_days=90), NOW, lambda root: 10**12)
        self.assertEqual([os.path.basename(r.wav) for r in removed], ["2020a.wav", "2020b.wav"])
        self.assertEqual(archive.names(), ["2021c.json", "2021c.wav"])
        self.assertFalse(os.path.exists(os.path.join(archive.root, "00a859123456", "2020")))

    def test_max_total(self) -> None:
        """
        While the archive is larger than max_total_bytes the oldest go,
        and no more than needed.
        """
        archive = self.archive()
        for index, age in enumerate((5, 4, 3, 2, 1)):
            archive.add(f"r{index}", age, size=1000)
        total_each = 1000 + len(json.dumps({"id": "r0", "status": "finished"}))
        removed = sweep(archive.root, RetentionPolicy(max_total_bytes=3 * total_each), NOW,
                        lambda root: 10**12)
        self.assertEqual([os.path.basename(r.wav) for r in removed], ["r0.wav", "r1.wav"])

    def test_free_floor(self) -> None:
        """
        While less than min_free_bytes would be free, the oldest go; each
        deletion counts as freed space.
        """
        archive = self.archive()
        for index, age in enumerate((3, 2, 1)):
            archive.add(f"r{index}", age, size=5000)
        removed = sweep(archive.root, RetentionPolicy(min_free_bytes=10_000), NOW, lambda root: 1000)
        self.assertEqual(len(removed), 2)

    def test_never_in_progress(self) -> None:
        """
        A partial file, a sidecar still "recording" and a recording of this
        run are never deleted, however old.
        """
        archive = self.archive()
        archive.add("part", 999, partial=True)
        archive.add("live", 999, status="recording")
        active = archive.add("mine", 999)
        archive.add("gone", 999)
        removed = sweep(archive.root, RetentionPolicy(max_age_days=1), NOW, lambda root: 10**12,
                        is_active={active}.__contains__)
        self.assertEqual([os.path.basename(r.wav) for r in removed], ["gone.wav"])
        self.assertEqual([r.wav for r in finished_recordings(archive.root, lambda path: False)], [active])

    def test_no_policy_no_sweep(self) -> None:
        """
        Without any rule nothing is even listed, let alone deleted.
        """
        archive = self.archive()
        archive.add("old", 10_000)
        self.assertEqual(sweep(archive.root, RetentionPolicy(), NOW, lambda root: 0), [])
        self.assertEqual(len(archive.names()), 2)


class ServiceSweepTests(SynchronousTestCase):
    def test_periodic_sweep(self) -> None:
        """
        The service sweeps when the reactor runs and then every interval,
        with the clock's time: a recording that ages past max_age_days is
        removed at the next sweep after it does.
        """
        root = self.mktemp()
        os.makedirs(root)
        archive = Archive(root)
        archive.add("r1", 1.5)
        clock = Clock()
        clock.advance(NOW)
        service = memory_recorder(root, clock=clock)
        service.upkeep.retention = RetentionPolicy(max_age_days=2)
        service.upkeep.retention_interval = 3600
        service.startService()
        service.reactor_running()
        self.assertEqual(len(archive.names()), 2)
        clock.advance(DAY / 2 + 1)  # now 2 days old, and a sweep is due
        self.assertEqual(archive.names(), [])
        self.successResultOf(service.stopService())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_sweep_logs_what_it_removed(self) -> None:
        """
        Each recording a sweep deletes is logged by file name.
        """
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        root = self.mktemp()
        os.makedirs(root)
        wav = Archive(root).add("old", 10)
        clock = Clock()
        clock.advance(NOW)
        service = memory_recorder(root, clock=clock)
        service.upkeep.retention = RetentionPolicy(max_age_days=2)
        self.successResultOf(service.upkeep.sweep())
        removed = [e["file"] for e in events if e.get("log_format", "").startswith("Retention removed")]
        self.assertEqual(removed, [wav])

    def test_sweep_tells_the_index(self) -> None:
        """What a sweep deletes is dropped from the index; a sweep that
        deletes nothing does not bother it."""
        root = self.mktemp()
        os.makedirs(root)
        archive = Archive(root)
        wav = archive.add("old", 10)
        clock = Clock()
        clock.advance(NOW)
        service = memory_recorder(root, clock=clock)
        service.index = indexer = FakeIndexer(root=root)
        indexer.start()
        service.upkeep.retention = RetentionPolicy(max_age_days=2)
        self.successResultOf(service.upkeep.sweep())
        self.successResultOf(service.upkeep.sweep())
        self.assertEqual(indexer.calls, [("forget", [wav])])


class SymbolicLinkTests(SynchronousTestCase):
    """A sweep never follows a symbolic link below the storage root: it
    neither counts nor deletes what a link points at, nor walks into a
    linked folder; the link is left, with a line in the log."""

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.outside = Archive(os.path.abspath(self.mktemp()))

    def test_linked_wav_neither_counted_nor_deleted(self) -> None:
        """A link to a big file outside the root does not make the archive
        "too big": the recording that is there stays, and so do the link
        and its target."""
        wav = Archive(self.root).add("2024a", 10, size=1000)
        target = self.outside.add("2099z", 0, size=100_000)
        link = os.path.join(os.path.dirname(wav), "big.wav")
        os.symlink(target, link)
        with capturedLogs() as events:
            removed = sweep(self.root, RetentionPolicy(max_total_bytes=5000), NOW,
                            lambda root: 10**12)
        self.assertEqual(removed, [])
        self.assertTrue(os.path.exists(wav))
        self.assertTrue(os.path.islink(link))
        self.assertEqual(os.path.getsize(target), 100_000)
        self.assertEqual([event["file"] for event in events if "file" in event], [link])

    def test_old_link_not_removed(self) -> None:
        """A link to an old file is not taken for an old recording."""
        target = self.outside.add("2020a", 400)
        link = os.path.join(self.root, "old.wav")
        os.symlink(target, link)
        self.assertEqual(sweep(self.root, RetentionPolicy(max_age_days=90), NOW,
                               lambda root: 10**12), [])
        self.assertTrue(os.path.islink(link))
        self.assertTrue(os.path.exists(target))

    def test_linked_folder_not_walked(self) -> None:
        """Old recordings in a folder the root links to are not deleted."""
        target = self.outside.add("2020a", 400)
        os.symlink(self.outside.root, os.path.join(self.root, "elsewhere"))
        self.assertEqual(sweep(self.root, RetentionPolicy(max_age_days=90), NOW,
                               lambda root: 10**12), [])
        self.assertTrue(os.path.exists(target))

    def test_linked_root_is_followed(self) -> None:
        """The root itself may be a link (an admin's mounted disk)."""
        old = self.outside.add("2020a", 400)
        root = self.mktemp()
        os.symlink(self.outside.root, root)
        [removed] = sweep(root, RetentionPolicy(max_age_days=90), NOW, lambda root: 10**12)
        self.assertEqual(os.path.basename(removed.wav), "2020a.wav")
        self.assertFalse(os.path.exists(old))


class ArchiveSweepTests(SynchronousTestCase):
    def test_sweep_removes_archived_objects(self) -> None:
        """Retention applies to the archive too: what a sweep deletes is
        deleted from the store; newer recordings' objects stay."""
        from recsvc.archive.layout import ArchiveLocation
        from recsvc.archive.uploader import Archive as Uploads
        from recsvc.testing import MemoryStore, run_now

        root = self.mktemp()
        os.makedirs(root)
        archive = Archive(root)
        old = archive.add("old", 10, file="old.wav")
        new = archive.add("new", 1, file="new.wav")
        clock = Clock()
        clock.advance(NOW)
        store = MemoryStore()
        service = memory_recorder(root, clock=clock)
        service.upkeep.archive = Uploads(clock, root, ArchiveLocation("calls"), store,
                                         keep_local_days=30, run_blocking=run_now)
        self.successResultOf(service.upkeep.archive.start())
        self.assertEqual(len(store.objects), 4)
        service.upkeep.retention = RetentionPolicy(max_age_days=2)
        self.successResultOf(service.upkeep.sweep())
        self.assertEqual(sorted(store.objects), sorted(
            "recsvc/" + os.path.relpath(path, root)
            for path in (new, new[:-len(".wav")] + ".json")))
        self.assertFalse(os.path.exists(old))

    def uploads(self, root: str, store: Any, keep_local_days: float) -> Any:
        """A service on ``root`` whose archive is on ``store``, started."""
        from recsvc.archive.layout import ArchiveLocation
        from recsvc.archive.uploader import Archive as Uploads
        from recsvc.testing import run_now

        clock = Clock()
        clock.advance(NOW)
        service = memory_recorder(root, clock=clock)
        service.upkeep.archive = Uploads(clock, root, ArchiveLocation("calls"), store,
                                         keep_local_days=keep_local_days, run_blocking=run_now)
        self.successResultOf(service.upkeep.archive.start())
        return service

    def test_disk_pressure_never_deletes_the_archive(self) -> None:
        """Under disk pressure (min_free_bytes) with the store down, the
        archived recordings (their sidecars here, their audio in the
        archive) are neither deleted nor counted: the sweep deletes the
        oldest recording whose WAV is here and not archived, and no object
        leaves the store, now or when it is back."""
        from recsvc.testing import MemoryStore

        root = self.mktemp()
        os.makedirs(root)
        archive = Archive(root)
        for index in range(20):
            archive.add(f"old{index:02}", 40 - index, file=f"old{index:02}.wav")
        store = MemoryStore()
        service = self.uploads(root, store, keep_local_days=0)

        def sidecars() -> list[str]:
            return [name for name in archive.names() if name.endswith(".json")]
        self.assertEqual(len(store.objects), 40)
        self.assertEqual(len(sidecars()), 20)
        store.down = "cannot connect to the endpoint"
        new = [archive.add(f"new{index}", 1 - index / 10, size=100_000, file=f"new{index}.wav")
               for index in range(2)]
        service.index = indexer = FakeIndexer(root=root)
        indexer.start()
        service.upkeep.retention = RetentionPolicy(min_free_bytes=10**9)
        self.patch(upkeep, "free_bytes", lambda root: 10**9 - 60_000)
        [removed] = self.successResultOf(service.upkeep.sweep())
        self.assertEqual((removed.wav, removed.why), (new[0], TOO_MUCH))
        self.assertEqual(indexer.calls, [("forget", [new[0]])])
        store.down = None
        self.successResultOf(service.upkeep.archive.sweep_local_copies())
        self.assertEqual(len(store.objects), 40)
        self.assertEqual(len(sidecars()), 21)

    def test_disk_pressure_deletes_archived_local_copies_first(self) -> None:
        """With the archive on, disk pressure first deletes the local WAVs
        verified in the archive (keep_local_days not over yet): their
        sidecars and objects stay, the index keeps them (they play from
        the archive); a recording not archived yet stays on the disk."""
        from recsvc.testing import MemoryStore

        root = self.mktemp()
        os.makedirs(root)
        archive = Archive(root)
        archived = [archive.add(f"old{index}", 5 - index, size=5000, file=f"old{index}.wav")
                    for index in range(2)]
        store = MemoryStore()
        service = self.uploads(root, store, keep_local_days=30)
        store.down = "cannot connect to the endpoint"
        waiting = archive.add("new", 1, size=5000, file="new.wav")
        service.index = indexer = FakeIndexer(root=root)
        indexer.start()
        service.upkeep.retention = RetentionPolicy(min_free_bytes=10_000)
        self.patch(upkeep, "free_bytes", lambda root: 1000)
        removed = self.successResultOf(service.upkeep.sweep())
        self.assertEqual([(r.wav, r.why) for r in removed],
                         [(wav, LOCAL_COPY) for wav in archived])
        self.assertEqual(indexer.calls, [])
        self.assertTrue(os.path.exists(waiting))
        self.assertFalse(any(os.path.exists(wav) for wav in archived))
        self.assertTrue(all(os.path.exists(wav[:-4] + ".json") for wav in archived))
        store.down = None
        self.assertEqual(len(store.objects), 4)
