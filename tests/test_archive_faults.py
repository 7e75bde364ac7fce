"""The archive of a running service (recsvc.makeService on the reactor,
over loopback) under faults: the store goes away while calls go on being
recorded, and comes back; the local disk fills while the store is away.
The store is moto's S3 (or RECSVC_TEST_S3_ENDPOINT) behind a TCP proxy
that the tests close and open again (tests/support/s3.py StoreOutage).
The SIGKILL while uploading is tests/test_archive.py's CrashTests;
bench/archive_faults.py runs all three at scale with real processes."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from recsvc.archive import journal
from recsvc.archive.layout import ArchiveLocation
from recsvc.archive.s3 import CANNOT_CONNECT
from recsvc.archive.store import sha256_b64
from recsvc.archive.transfer import CANNOT_JOURNAL
from recsvc.archive.uploader import Archive
from recsvc.control.commands import StopResponse
from recsvc.phonesim.phone import SimulatedPhone, rtp_packets, send_rtp
from recsvc.storage.wav import audio_in
from recsvc.testing import MemoryStore, run_now
from tests.support import s3
from tests.support.builders import audio
from tests.support.loopback import LoopbackServiceMixin
from tests.support.recordings import read_wav, recordings, sidecar_of
from tests.support.spool import put_recording

LOCATION = ArchiveLocation("calls", "site-a/")


def sha256_of(path: str) -> tuple[int, str]:
    with open(path, "rb") as handle:
        data = handle.read()
    return len(data), base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class _OutageMixin(LoopbackServiceMixin):
    """The service with archive.url on the test store, through a proxy the
    test closes and opens."""

    timeout = 60
    keep_local_days = 30

    def more_config(self) -> dict:
        self.server = s3.server()
        self.bucket = self.server.bucket()
        self.store = s3.StoreOutage(self.server)
        self.store.up()
        self.addCleanup(self.store.down)
        settings = self.server.client_settings()
        for variable, key in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
                              ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key")):
            if key in settings:
                self.patch(os, "environ", {**os.environ, variable: settings[key]})
        return {"archive": {"url": f"s3://{self.bucket}/site", "region": "us-east-1",
                            "endpoint_url": self.store.endpoint_url,
                            "keep_local_days": self.keep_local_days}}

    @property
    def archive(self) -> Any:
        return self.recorder.archive

    @property
    def prefix(self) -> str:
        """What this node's keys begin with: the url's prefix, its name."""
        return f"site/{self.recorder.node}/"

    def bucket_objects(self) -> dict[str, tuple[int, str]]:
        """Each object's key: its size and SHA-256, of the bytes a GET
        serves (moto keeps the checksum a PUT sends without checking it),
        None unless the store's ChecksumSHA256 says the same."""
        client = self.server.client()
        listed = client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        found = {}
        for item in listed:
            data = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            head = client.head_object(Bucket=self.bucket, Key=item["Key"], ChecksumMode="ENABLED")
            digest = sha256_b64(data)
            found[item["Key"]] = (len(data), digest if head["ChecksumSHA256"] == digest else None)
        return found

    def files_of(self, root: str, wav_path: str) -> dict[str, tuple[int, str]]:
        """A recording's WAV and sidecar, by their keys: size and SHA-256."""
        sidecar = os.path.splitext(wav_path)[0] + ".json"
        return {self.prefix + os.path.relpath(path, root): sha256_of(path)
                for path in (wav_path, sidecar)}

    @inlineCallbacks
    def archived(self, root: str, *recording_ids: str, seconds: float = 20.0):
        """Until these recordings' WAVs and sidecars are journaled as
        verified (a file just finished is queued from a thread: until then
        nothing waits, and files_waiting is 0)."""
        def done() -> bool:
            found = recordings(root)
            for recording_id in recording_ids:
                if recording_id not in found:
                    return False
                folder, name = os.path.split(os.path.relpath(found[recording_id], root))
                stem = os.path.splitext(name)[0]
                if not {stem + ".wav", stem + ".json"} <= set(journal.verified_in(root, folder)):
                    return False
            return True

        yield self.wait_for(done, seconds)


class StoreDownTests(_OutageMixin, TestCase):
    """The store goes away while calls are recorded, and comes back."""

    @inlineCallbacks
    def test_store_down_then_back(self):
        """Calls recorded while the store refuses connections are recorded
        as ever (byte-exact); /healthz's figures say what waits and why;
        once the store is back each recording is in the bucket once, with
        its files' SHA-256, and nothing else."""
        sounds = {name: audio(1, seed=n) for n, name in enumerate(
            ("before", "during-1", "during-2", "after"))}
        yield deferToThread(self.call, "bare", "before", sounds["before"])
        yield self.archived(self.root, "before")
        yield self.store.down()
        for name in ("during-1", "during-2"):
            yield deferToThread(self.call, "bare", name, sounds[name])
        yield self.wait_for(lambda: self.archive.status().failing == (CANNOT_CONNECT,), 10)
        status = self.archive.status()
        self.assertEqual(status.files_waiting, 4)
        self.assertGreater(status.bytes_waiting, 2 * 8000)
        self.store.up()
        yield deferToThread(self.call, "bare", "after", sounds["after"])
        yield self.archived(self.root, *sounds)
        # (The journal's lines are written in the archive's threads; the
        # reactor hears of each upload just after.)
        yield self.wait_for(lambda: self.archive.status().files_waiting == 0, 10)
        self.assertEqual(self.archive.status().failing, ())
        found = recordings(self.root)
        self.assertEqual(sorted(found), sorted(sounds))
        expected = {}
        for name, path in found.items():
            self.assertEqual(read_wav(path)[1], sounds[name])
            expected.update(self.files_of(self.root, path))
        self.assertEqual(self.bucket_objects(), expected)


class FullDiskTests(_OutageMixin, TestCase):
    """The local disk fills while the store is away: a 3 MB tmpfs."""

    keep_local_days = 0

    def more_config(self) -> dict:
        if os.geteuid() != 0:
            raise SkipTest("mounting a tmpfs needs root")
        where = os.path.abspath(self.mktemp())
        os.makedirs(where)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", where],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SkipTest(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", where], check=False)
        with open(os.path.join(where, "filler"), "wb") as filler:
            filler.write(b"\0" * 1_800_000)  # leaves about 1.3 MB
        self.disk = where
        config = super().more_config()
        config["storage"] = {"root": os.path.join(where, "recordings"), "min_free_mb": 1}
        return config

    def free(self) -> int:
        stats = os.statvfs(self.disk)
        return stats.f_bavail * stats.f_frsize

    def filling_call(self) -> tuple[Any, Any]:
        """A call with more audio than the disk has room for, sent fast:
        the server stops it; then a second Start."""
        phone = SimulatedPhone("127.0.0.1", self.port, timeout=20)
        phone.connect()
        started = phone.start("full-1")
        assert started.result == "success", started
        send_rtp(rtp_packets(audio(150, seed=3)), started.server, started.port, interval=0.001)
        request = phone.receive()
        phone.send(StopResponse("full-1", "success"))
        second = phone.start("full-2")
        phone.close()
        return request, second

    @inlineCallbacks
    def test_full_disk_while_store_down(self):
        """With the store away the disk fills: the recording is stopped by
        the server and what it got is kept, new Starts are refused; once the
        store is back the recording is uploaded and verified, its local WAV
        deleted (keep_local_days: 0), the space is free again and a new call
        records and is archived too; the bucket holds each file once, with
        the original's SHA-256."""
        root = os.path.join(self.disk, "recordings")
        yield self.store.down()
        request, second = yield deferToThread(self.filling_call)
        self.assertEqual((request.reason, second.reason), ("disk full", "disk full"))
        yield self.wait_for(lambda: "full-1" in recordings(root), 10)
        wav = recordings(root)["full-1"]
        self.assertEqual(sidecar_of(wav)["stop_reason"], "disk full")
        originals = self.files_of(root, wav)
        yield self.wait_for(lambda: self.archive.status().failing == (CANNOT_CONNECT,), 10)
        self.assertEqual(self.archive.status().files_waiting, 2)
        full = self.free()
        self.store.up()
        yield self.archived(root, "full-1")
        # (Deleted once both files are journaled.)
        yield self.wait_for(lambda: not os.path.exists(wav), 10)
        self.assertGreater(self.free(), full + originals[self.prefix + os.path.relpath(wav, root)][0]
                           - 8192)
        # The disk watch sees the room again within its interval.
        yield deferLater(reactor, 1.5, lambda: None)
        sound = audio(1, seed=4)
        yield deferToThread(self.call, "bare", "after", sound)
        yield self.archived(root, "after")
        after = recordings(root)["after"]
        yield self.wait_for(lambda: not os.path.exists(after), 10)
        # Its WAV was deleted once verified: its object holds what was sent.
        key = self.prefix + os.path.relpath(after, root)
        blob = yield deferToThread(lambda: self.server.client().get_object(
            Bucket=self.bucket, Key=key)["Body"].read())
        self.assertEqual(audio_in(blob)[1], sound)
        originals[key] = (len(blob), base64.b64encode(hashlib.sha256(blob).digest()).decode())
        sidecar = os.path.splitext(after)[0] + ".json"
        originals[self.prefix + os.path.relpath(sidecar, root)] = sha256_of(sidecar)
        self.assertEqual(self.bucket_objects(), originals)


class JournalOnAFullDiskTests(SynchronousTestCase):
    """The archive on a disk that is full to the last byte (a 1 MB tmpfs),
    the memory store, a task.Clock: the journal's reserve."""

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("mounting a tmpfs needs root")
        self.disk = os.path.abspath(self.mktemp())
        os.makedirs(self.disk)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", self.disk],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SkipTest(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.disk], check=False)
        self.root = os.path.join(self.disk, "recordings")
        os.makedirs(self.root)
        self.clock = Clock()
        self.clock.advance(time.time())

    def fill(self) -> None:
        """Write a filler until the disk says it is full."""
        with open(os.path.join(self.disk, "filler"), "wb", buffering=0) as filler:
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * 4096)
        self.assertEqual(os.statvfs(self.disk).f_bavail, 0)

    def test_full_disk_while_the_store_is_down(self) -> None:
        """Recordings fill the disk while the store is down; once it is back
        each is verified and journaled all the same (with the room kept for
        the journal), its WAV deleted, and the room kept again: without it,
        nothing could be journaled, so nothing deleted, and the disk would
        stay full for good."""
        store = MemoryStore(down="cannot connect to the endpoint")
        archive = Archive(self.clock, self.root, LOCATION, store, run_blocking=run_now)
        self.successResultOf(archive.start())
        self.assertEqual(os.path.getsize(os.path.join(self.root, ".archive", journal.RESERVE_NAME)),
                         journal.RESERVE_BYTES)
        wavs = []
        for n in range(2):
            wav, _ = put_recording(self.root, f"call{n}", audio=b"RIFF" + os.urandom(200_000))
            archive.queue(os.path.join(self.root, wav), True, f"call{n}")
            wavs.append(wav)
        self.fill()
        self.clock.advance(1)
        self.assertEqual(archive.status().files_waiting, 4)
        store.down = None
        self.clock.advance(2)
        self.assertEqual(archive.status().files_waiting, 0)
        self.assertEqual(len(store.objects), 4)
        for wav in wavs:
            self.assertFalse(os.path.exists(os.path.join(self.root, wav)))
            self.assertIn(os.path.basename(wav), journal.verified_in(self.root, os.path.dirname(wav)))
        self.assertEqual(os.path.getsize(os.path.join(self.root, ".archive", journal.RESERVE_NAME)),
                         journal.RESERVE_BYTES)

    def test_journal_full_is_a_cause(self) -> None:
        """With no room even for the journal (no reserve: the disk was full
        before the archive started), the upload fails with a cause that
        /healthz shows, and is tried again: not a bug's traceback."""
        wav, _ = put_recording(self.root, "call0", audio=b"RIFF" + os.urandom(100_000))
        self.fill()
        store = MemoryStore()
        archive = Archive(self.clock, self.root, LOCATION, store, run_blocking=run_now)
        with capturedLogs() as events:
            self.successResultOf(archive.start())
        self.assertEqual(archive.status().failing, (CANNOT_JOURNAL,))
        self.assertFalse([event for event in events if event.get("log_failure")])
        os.unlink(os.path.join(self.disk, "filler"))
        self.clock.advance(1)
        self.assertEqual(archive.status().files_waiting, 0)
        self.assertFalse(os.path.exists(os.path.join(self.root, wav)))
