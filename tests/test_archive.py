"""Tests for recsvc.archive: object keys, the backlog and its pauses, the
journal, the stores (boto3 on moto's S3 and the memory fake, one contract),
the uploads (verified, then the local copy deleted; a store that is down;
a checksum the store gets wrong; restarts) and the config."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from recsvc.archive import journal
from recsvc.archive.backlog import Backlog, FailureCauses, WaitingRecording, retry_delay
from recsvc.archive.layout import ArchiveLocation, node_of, object_metadata
from recsvc.archive.s3 import CANNOT_CONNECT, HEAD_FORBIDDEN, S3Store, client_for
from recsvc.archive.store import KeyTaken, LocalFile, StoreFailure, read_local
from recsvc.archive.transfer import (
    CHECKSUM_MISMATCH, NO_CHECKSUMS, OBJECT_APPEARED, OBJECT_IN_THE_WAY)
from recsvc.archive.uploader import Archive, ArchiveStatus
from recsvc.config import ConfigError, parse_config
from recsvc.metrics import Metrics
from recsvc.testing import MemoryStore, run_now
from tests.support import s3
from tests.support.loopback import reap
from tests.support.scrape import samples
from tests.support.servers import free_port
from tests.support.spool import put_recording

DAY = 86400.0
LOCATION = ArchiveLocation("calls", "site-a/")


def sha256_of(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def read(root: str, relative: str) -> bytes:
    with open(os.path.join(root, relative), "rb") as handle:
        return handle.read()


class LayoutTests(SynchronousTestCase):
    """Where files go in the store, and what goes with them."""

    def test_url(self) -> None:
        """s3://bucket/prefix gives the bucket and a prefix ending in / (or
        none); anything else is refused saying why."""
        self.assertEqual(ArchiveLocation.from_url("s3://calls/site-a//x"),
                         ArchiveLocation("calls", "site-a/x/"))
        self.assertEqual(ArchiveLocation.from_url("s3://calls"), ArchiveLocation("calls", ""))
        for bad in ("http://calls/x", "s3://Calls/x", "s3://c/x", "s3://calls/../x", "calls"):
            self.assertRaises(ValueError, ArchiveLocation.from_url, bad)

    def test_keys_mirror_the_local_tree(self) -> None:
        """A file's key is its path under storage.root, in a folder of its
        node, under the prefix; a path that leaves the root, or a node that
        is not a folder name, has none."""
        self.assertEqual(LOCATION.key("rec-a", "00a859123456/2026/11/25/x.wav"),
                         "site-a/rec-a/00a859123456/2026/11/25/x.wav")
        for bad in ("../x.wav", "/etc/x.wav", "a//x.wav", "a/./x.wav"):
            self.assertRaises(ValueError, LOCATION.key, "rec-a", bad)
        for node in ("", ".", "..", "a/b", "a\\b", "x" * 64):
            self.assertRaises(ValueError, LOCATION.key, node, "x.wav")

    def test_the_node_of_a_recording(self) -> None:
        """A recording's objects are in the folder of the node its sidecar
        (or index row) names, else of the node that has it: every node
        computes the same key from an index row."""
        self.assertEqual(node_of("rec-a", "rec-b"), "rec-a")
        for unnamed in (None, "", "a/b", 7):
            self.assertEqual(node_of(unnamed, "rec-b"), "rec-b")

    def test_metadata(self) -> None:
        """The sidecar's chosen fields go along, percent-encoded ASCII; null
        and structured values do not."""
        metadata = object_metadata({"id": "4711", "remote_number": "+86 138", "local_name": "x",
                                    "device": "00:a8", "duration_s": 1.5, "part": 1,
                                    "stopped_at": None, "remote_name": "Zoë",
                                    "direction": "out\n"})
        self.assertEqual(metadata, {"id": "4711", "remote-number": "+86 138", "device": "00:a8",
                                    "duration-s": "1.5", "part": "1", "direction": "out%0A"})
        self.assertTrue(all(value.isascii() for value in metadata.values()))


class BacklogTests(SynchronousTestCase):
    """What waits, the pauses, the causes said once."""

    def test_retry_delay(self) -> None:
        """1, 2, 4, ... seconds, never more than 300."""
        self.assertEqual([retry_delay(n) for n in (1, 2, 3, 9, 10, 1000)],
                         [1.0, 2.0, 4.0, 256.0, 300.0, 300.0])

    def test_take_give_back_done(self) -> None:
        """Recordings are handed out once each, in order; one given back is
        handed out again first; files, bytes and the oldest age count what
        waits, under way or not."""
        backlog = Backlog()
        first = WaitingRecording("a.json", "a.wav", 100, since=10.0)
        second = WaitingRecording("b.json", None, 5, since=20.0)
        self.assertTrue(backlog.add(first))
        self.assertTrue(backlog.add(second))
        self.assertFalse(backlog.add(first))
        self.assertEqual((backlog.files, backlog.bytes, backlog.oldest_age(30.0)), (3, 105, 20.0))
        self.assertIs(backlog.take(), first)
        backlog.give_back(first)
        self.assertIs(backlog.take(), first)
        self.assertIs(backlog.take(), second)
        self.assertIsNone(backlog.take())
        backlog.done(first)
        self.assertEqual((backlog.files, backlog.bytes, backlog.oldest_age(30.0)), (1, 5, 10.0))

    def test_causes_said_once(self) -> None:
        """A cause is new once until an upload succeeds, which clears every
        cause with its count."""
        causes = FailureCauses()
        self.assertEqual([causes.failed(c) for c in ("a", "a", "b", "a")],
                         [True, False, True, False])
        self.assertEqual(causes.ongoing, ("a", "b"))
        self.assertEqual(causes.succeeded(), {"a": 3, "b": 1})
        self.assertTrue(causes.failed("a"))


class JournalTests(SynchronousTestCase):
    """What is verified, on disk."""

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(self.root)

    def test_recorded_and_read_back(self) -> None:
        """A verified file is read back from its folder's journal, which
        lies under the dot-folder (no .json name the index would take)."""
        wav, _ = put_recording(self.root, "one")
        local = read_local(os.path.join(self.root, wav))
        journal.record_verified(self.root, wav, local, "k/one.wav")
        found = journal.verified_in(self.root, os.path.dirname(wav))
        self.assertEqual(found["one.wav"], journal.VerifiedFile("one.wav", local.size,
                                                                local.sha256, "k/one.wav"))
        path = journal.journal_path(self.root, os.path.dirname(wav))
        self.assertTrue(path.startswith(os.path.join(self.root, ".archive") + os.sep))
        self.assertFalse(path.endswith(".json"))

    def test_line_cut_short_by_a_crash(self) -> None:
        """A last line a crash cut short is passed over, and the next line
        is not glued to it."""
        wav, sidecar = put_recording(self.root, "one")
        journal.record_verified(self.root, wav, LocalFile(3, "x"), "k")
        with open(journal.journal_path(self.root, os.path.dirname(wav)), "a") as handle:
            handle.write('{"file": "one.js')
        journal.record_verified(self.root, sidecar, LocalFile(4, "y"), "k2")
        found = journal.verified_in(self.root, os.path.dirname(wav))
        self.assertEqual(sorted(found), ["one.json", "one.wav"])

    def test_waiting_recordings(self) -> None:
        """Finished recordings not verified wait (a file verified already is
        not sent again); recordings in progress and verified ones do not; a
        recording without audio is its sidecar alone."""
        done_wav, done_sidecar = put_recording(self.root, "done")
        half_wav, half_sidecar = put_recording(self.root, "half")
        put_recording(self.root, "running", status="recording")
        _, silent = put_recording(self.root, "silent", audio=None)
        for relative in (done_wav, done_sidecar, half_wav):
            journal.record_verified(self.root, relative,
                                    read_local(os.path.join(self.root, relative)), "k")
        waiting = {w.sidecar: w for w in journal.waiting_recordings(self.root)}
        self.assertEqual(sorted(waiting), sorted([half_sidecar, silent]))
        self.assertEqual(waiting[half_sidecar].verified, frozenset({half_wav}))
        self.assertEqual(waiting[half_sidecar].wav, half_wav)
        self.assertEqual(waiting[half_sidecar].recording_id, "half")
        self.assertEqual(waiting[silent].files, (silent,))
        # A verified file that has changed since (its size) waits again.
        with open(os.path.join(self.root, done_wav), "ab") as handle:
            handle.write(b"more")
        self.assertIn(done_sidecar, [w.sidecar for w in journal.waiting_recordings(self.root)])

    def test_wav_deleted_while_looked_at(self) -> None:
        """A WAV deleted between the folder's listing and its reading (a
        verified one whose keep_local_days is over) does not hide its
        recording: the sidecar not verified yet still waits."""
        wav, sidecar = put_recording(self.root, "one")
        journal.record_verified(self.root, wav, read_local(os.path.join(self.root, wav)), "k")
        walk = journal.walk_files

        def listed_then_deleted(root: str, found_link: Any) -> Any:
            for folder, files in walk(root, found_link):
                if "one.wav" in files:
                    os.unlink(os.path.join(folder, "one.wav"))
                yield folder, files

        self.patch(journal, "walk_files", listed_then_deleted)
        [waiting] = journal.waiting_recordings(self.root)
        self.assertEqual((waiting.sidecar, waiting.wav, waiting.verified),
                         (sidecar, wav, frozenset({wav})))

    def test_local_copies_deleted_when_due(self) -> None:
        """Only verified WAVs finished before the cut-off go, as they were
        verified (same size); sidecars and unverified WAVs stay."""
        old_wav, old_sidecar = put_recording(self.root, "old")
        new_wav, _ = put_recording(self.root, "new")
        unverified, _ = put_recording(self.root, "unverified")
        for relative in (old_wav, old_sidecar, new_wav):
            journal.record_verified(self.root, relative,
                                    read_local(os.path.join(self.root, relative)), "k")
        now = time.time()
        for relative in (old_wav, unverified):
            os.utime(os.path.join(self.root, relative), (now - 10 * DAY, now - 10 * DAY))
        self.assertEqual(journal.delete_local_copies(self.root, now - 5 * DAY), [old_wav])
        self.assertFalse(os.path.exists(os.path.join(self.root, old_wav)))
        for kept in (old_sidecar, new_wav, unverified):
            self.assertTrue(os.path.exists(os.path.join(self.root, kept)))

    def test_forget(self) -> None:
        """Removed files leave their journal; an empty journal goes with its
        folders."""
        wav, sidecar = put_recording(self.root, "one")
        other, _ = put_recording(self.root, "two")
        for relative in (wav, sidecar, other):
            journal.record_verified(self.root, relative, LocalFile(1, "x"), "k")
        journal.forget(self.root, [wav, sidecar])
        self.assertEqual(list(journal.verified_in(self.root, os.path.dirname(wav))), ["two.wav"])
        journal.forget(self.root, [other])
        self.assertEqual(os.listdir(os.path.join(self.root, ".archive")), [])


    def test_an_append_during_a_rewrite_is_kept(self) -> None:
        """A line appended by another thread (a verified upload) while
        `forget` rewrites the same journal is not lost: the writes take
        turns, and the rewritten journal's rename is made durable."""
        folder = "00a859123456/2026/11/25"
        journal.record_verified(self.root, folder + "/one.wav", LocalFile(1, "x"), "k/one.wav")
        journal.record_verified(self.root, folder + "/two.wav", LocalFile(2, "y"), "k/two.wav")
        reading = journal._read_journal
        appending: list[threading.Thread] = []

        def read_then_append(*args: Any, **kwargs: Any) -> Any:
            # While forget has read the journal and not yet replaced it,
            # another thread appends (as an upload's thread would).
            found = reading(*args, **kwargs)
            if not appending:
                appending.append(threading.Thread(target=journal.record_verified, args=(
                    self.root, folder + "/three.wav", LocalFile(3, "z"), "k/three.wav")))
                appending[0].start()
                appending[0].join(0.5)
            return found
        self.patch(journal, "_read_journal", read_then_append)
        synced: list[str] = []
        self.patch(journal, "fsync_directory", synced.append)
        journal.forget(self.root, [folder + "/one.wav"])
        appending[0].join()
        self.patch(journal, "_read_journal", reading)
        self.assertEqual(sorted(journal.verified_in(self.root, folder)), ["three.wav", "two.wav"])
        self.assertIn(os.path.dirname(journal.journal_path(self.root, folder)), synced)


class _StoreContract:
    """What the archive relies on of a store: one suite, run against the
    real one (boto3 on moto's S3, or RECSVC_TEST_S3_ENDPOINT) and the
    memory fake, so that the fake cannot drift."""

    # Whether the store checks a body against the checksum sent with it.
    checks_checksums = True

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()
        self.path = os.path.join(self.mktemp())
        self.data = bytes(range(256)) * 40
        with open(self.path, "wb") as handle:
            handle.write(self.data)
        self.sha256 = sha256_of(self.data)

    def test_put_then_head(self) -> None:
        """The store holds the file and gives back its size and SHA-256."""
        self.store.put("a/b.wav", self.path, "audio/wav", {"id": "7"}, self.sha256)
        stored = self.store.head("a/b.wav")
        self.assertEqual((stored.size, stored.sha256), (len(self.data), sha256_of(self.data)))
        self.assertTrue(read_local(self.path).verified_by(stored))

    def test_head_of_nothing(self) -> None:
        """No object: None, not an error."""
        self.assertIsNone(self.store.head("none.wav"))

    def test_put_replaces(self) -> None:
        """A second PUT of a key replaces the object (the same key after a
        restart is the same object, never a second one)."""
        self.store.put("k.wav", self.path, "audio/wav", {}, self.sha256)
        with open(self.path, "wb") as handle:
            handle.write(b"other")
        self.store.put("k.wav", self.path, "audio/wav", {}, sha256_of(b"other"))
        self.assertEqual(self.store.head("k.wav").size, 5)
        self.assertEqual(self.store.get("k.wav"), b"other")

    def test_get_ranges(self) -> None:
        """Bytes first to last, inclusive, or to the end, as playback's
        Range asks; a missing object is NoSuchKey."""
        self.store.put("k.wav", self.path, "audio/wav", {}, self.sha256)
        self.assertEqual(self.store.get("k.wav", 10, 19), self.data[10:20])
        self.assertEqual(self.store.get("k.wav", 100), self.data[100:])
        self.assertEqual(self.store.get("k.wav"), self.data)
        failure = self.assertRaises(StoreFailure, self.store.get, "none.wav")
        self.assertEqual(failure.cause, "NoSuchKey")

    def test_metadata(self) -> None:
        """The metadata given with the PUT comes back."""
        self.store.put("k.wav", self.path, "audio/wav", {"id": "7", "remote-number": "%2B86"},
                       self.sha256)
        self.assertEqual(self.store.metadata("k.wav"), {"id": "7", "remote-number": "%2B86"})

    def test_put_gives_back_the_checksum(self) -> None:
        """A PUT's answer gives the SHA-256 the store keeps of what it
        received, as its HEAD does."""
        self.assertEqual(self.store.put("k.wav", self.path, "audio/wav", {}, self.sha256),
                         self.sha256)
        self.assertEqual(self.store.put("j.wav", self.path, "audio/wav", {}, self.sha256,
                                        only_if_absent=True),
                         self.sha256)
        self.assertEqual(self.store.head("k.wav").sha256, sha256_of(self.data))

    def test_put_refuses_a_body_not_its_checksum(self) -> None:
        """A body whose SHA-256 is not the one given with it (the file
        changed since the archive read it) is refused, BadDigest, and
        nothing is stored."""
        if not self.checks_checksums:
            raise SkipTest("moto keeps the ChecksumSHA256 a PUT sends without checking it; "
                           "S3 and MinIO check it (RECSVC_TEST_S3_ENDPOINT)")
        failure = self.assertRaises(StoreFailure, self.store.put, "k.wav", self.path,
                                    "audio/wav", {}, sha256_of(b"other"))
        self.assertEqual(failure.cause, "BadDigest")
        self.assertIsNone(self.store.head("k.wav"))

    def test_put_only_if_absent(self) -> None:
        """A PUT only if absent stores at a free key; at a taken one it is
        refused (KeyTaken) and the object stays as it was."""
        self.store.put("k.wav", self.path, "audio/wav", {"id": "1"}, self.sha256,
                       only_if_absent=True)
        other = self.mktemp()
        with open(other, "wb") as handle:
            handle.write(b"other")
        self.assertRaises(KeyTaken, self.store.put, "k.wav", other, "audio/wav", {"id": "2"},
                          sha256_of(b"other"), only_if_absent=True)
        self.assertEqual(self.store.get("k.wav"), self.data)
        self.assertEqual(self.store.metadata("k.wav"), {"id": "1"})

    def test_honours_only_if_absent(self) -> None:
        """The store says it honours PUTs only if absent (moto, S3, the
        fake), and asking leaves no object behind."""
        self.assertTrue(self.store.honours_only_if_absent())
        self.assertTrue(self.store.honours_only_if_absent())
        self.assertEqual(self.keys(), [])

    def test_delete(self) -> None:
        """A deleted object is gone; deleting nothing is no error."""
        self.store.put("k.wav", self.path, "audio/wav", {}, self.sha256)
        self.store.delete("k.wav")
        self.assertIsNone(self.store.head("k.wav"))
        self.store.delete("k.wav")


class MemoryStoreContractTests(_StoreContract, SynchronousTestCase):
    """recsvc.testing.MemoryStore keeps the contract."""

    def make_store(self) -> Any:
        return MemoryStore()

    def keys(self) -> list[str]:
        return sorted(self.store.objects)


class S3StoreContractTests(_StoreContract, SynchronousTestCase):
    """recsvc.archive.s3.S3Store (boto3) on a real S3 API keeps the contract."""

    def make_store(self) -> Any:
        server = s3.server()
        self.checks_checksums = server.external
        self.client = server.client()
        return S3Store(ArchiveLocation(server.bucket(), "p/"), client=self.client)

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.store.location.bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def test_the_checksum_sent_is_the_archives_reading(self) -> None:
        """The PUT carries the SHA-256 given (the archive's reading of the
        file) in its signed headers, and botocore hashes the body neither
        for a checksum nor for the signature: the store checks the body."""
        store = S3Store(self.store.location, client=client_for(**_settings_of(s3.server())))
        sent: list[Any] = []
        store.client.meta.events.register(
            "before-send.s3.PutObject", lambda request, **_: sent.append(request.headers))
        self.assertEqual(store.put("k.wav", self.path, "audio/wav", {}, self.sha256),
                         self.sha256)
        headers = {name.lower(): value for name, value in sent[0].items()}
        self.assertEqual(headers["x-amz-checksum-sha256"], self.sha256.encode("ascii"))
        self.assertEqual(headers["x-amz-content-sha256"], b"UNSIGNED-PAYLOAD")
        self.assertIn(b"x-amz-checksum-sha256", headers["authorization"])

    def test_a_store_ignoring_the_condition(self) -> None:
        """A store that takes a PUT only if absent at a taken key (one that
        ignores If-None-Match) is found out, and its probe deleted."""
        real = self.client

        class Ignoring:
            def put_object(self, IfNoneMatch: str = "", **arguments: Any) -> Any:
                return real.put_object(**arguments)

            def delete_object(self, **arguments: Any) -> Any:
                return real.delete_object(**arguments)
        self.store.client = Ignoring()
        self.assertFalse(self.store.honours_only_if_absent())
        self.assertEqual(self.keys(), [])

    def test_a_probe_left_by_a_crash(self) -> None:
        """A probe object a crash left (or another node's, under way)
        refuses the first put: the store honours the condition; the probe
        is deleted."""
        self.client.put_object(Bucket=self.store.location.bucket, Key="p/.recsvc-probe",
                               Body=b"")
        self.assertTrue(self.store.honours_only_if_absent())
        self.assertEqual(self.keys(), [])

    def test_asked_once_though_the_probe_cannot_be_deleted(self) -> None:
        """A policy without s3:DeleteObject (the uploads need none): the
        answer is kept all the same, the store asked once, the probe left
        said in the log."""
        real = self.client
        puts: list[str] = []

        class NoDeleting:
            def put_object(self, **arguments: Any) -> Any:
                puts.append(arguments["Key"])
                return real.put_object(**arguments)

            def delete_object(self, **arguments: Any) -> Any:
                from botocore.exceptions import ClientError
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}},
                                  "DeleteObject")
        self.store.client = NoDeleting()
        with capturedLogs() as logged:
            self.assertTrue(self.store.honours_only_if_absent())
            self.assertTrue(self.store.honours_only_if_absent())
        self.assertEqual(len(puts), 2)
        self.assertIn("AccessDenied", [event.get("reason") for event in logged])

    def test_endpoint_down(self) -> None:
        """An endpoint that refuses connections is one cause, whatever the
        call."""
        store = S3Store(LOCATION, make_client=lambda: client_for(
            f"http://127.0.0.1:{free_port()}", "us-east-1", 2,
            aws_access_key_id="x", aws_secret_access_key="y"))
        failure = self.assertRaises(StoreFailure, store.head, "k.wav")
        self.assertEqual(failure.cause, CANNOT_CONNECT)


    def test_head_forbidden_names_the_permissions(self) -> None:
        """A HEAD answered 403 (AWS's answer for a missing key without
        s3:ListBucket) fails with a cause naming the permissions needed,
        rather than passing for an absent object."""
        from botocore.exceptions import ClientError

        class Forbidding:
            def head_object(self, **arguments: Any) -> Any:
                raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}},
                                  "HeadObject")
        failure = self.assertRaises(StoreFailure, S3Store(LOCATION, client=Forbidding()).head,
                                    "k.wav")
        self.assertEqual(failure.cause, HEAD_FORBIDDEN)
        self.assertIn("s3:ListBucket", failure.cause)


def _settings_of(server: Any) -> dict[str, Any]:
    """client_for's arguments for ``server``."""
    settings = server.client_settings()
    return dict(endpoint_url=settings.pop("endpoint_url"), region=settings.pop("region_name"),
                threads=2, **settings)


def _uploads(store: Any, root: str, clock: Clock, keep_local_days: float = 0.0,
             **more: Any) -> tuple[Archive, list[dict[str, Any]], Metrics]:
    events: list[dict[str, Any]] = []
    metrics = Metrics()
    archive = Archive(clock, root, LOCATION, store, keep_local_days=keep_local_days,
                      run_blocking=run_now, announce=events.append, metrics=metrics, **more)
    metrics.watch_archive(archive.status)
    return archive, events, metrics


class UploadTests(SynchronousTestCase):
    """The archive's uploads on the memory store, with a task.Clock."""

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.clock = Clock()
        self.clock.advance(time.time())
        self.store = MemoryStore()

    def test_verified_then_local_copy_deleted(self) -> None:
        """A finished recording's WAV and sidecar are uploaded, verified and
        journaled; with keep_local_days 0 the WAV goes at once, its sidecar
        stays; an `archived` event names the keys."""
        archive, events, metrics = _uploads(self.store, self.root, self.clock)
        self.successResultOf(archive.start())
        wav, sidecar = put_recording(self.root, "4711")
        audio = read(self.root, wav)
        archive.queue(os.path.join(self.root, wav), True, "4711")
        self.assertEqual(self.store.objects["site-a/a/" + wav], audio)
        self.assertEqual(self.store.objects["site-a/a/" + sidecar], read(self.root, sidecar))
        self.assertEqual(self.store.puts, ["site-a/a/" + wav, "site-a/a/" + sidecar])
        self.assertEqual(self.store.object_metadata["site-a/a/" + wav]["id"], "4711")
        self.assertFalse(os.path.exists(os.path.join(self.root, wav)))
        self.assertTrue(os.path.exists(os.path.join(self.root, sidecar)))
        self.assertEqual(sorted(journal.verified_in(self.root, os.path.dirname(wav))),
                         ["4711.json", "4711.wav"])
        [event] = events
        self.assertEqual((event["event"], event["id"], event["key"], event["path"]),
                         ("archived", "4711", "site-a/a/" + wav, wav))
        self.assertEqual(archive.status(), ArchiveStatus(0, 0, 0.0, ()))
        scraped = samples(metrics)
        self.assertEqual(scraped[("recsvc_archive_files_verified_total", ())], 2)
        self.assertEqual(scraped[("recsvc_archive_local_copies_deleted_total", ())], 1)
        self.assertEqual(scraped[("recsvc_archive_files_waiting", ())], 0)

    def test_local_copy_kept_for_keep_local_days(self) -> None:
        """With keep_local_days, the verified WAV stays until that many days
        after it was finished (a sweep then deletes it)."""
        wav, _ = put_recording(self.root, "4711")
        archive, _, _ = _uploads(self.store, self.root, self.clock, keep_local_days=3)
        self.successResultOf(archive.start())
        self.assertIn("site-a/a/" + wav, self.store.objects)
        self.clock.advance(2 * DAY)
        self.assertTrue(os.path.exists(os.path.join(self.root, wav)))
        self.clock.advance(1.1 * DAY)
        self.assertFalse(os.path.exists(os.path.join(self.root, wav)))

    def test_store_down_then_back(self) -> None:
        """While the store fails, the recordings wait (the status says how
        many files and bytes, since when), the cause is logged once, and the
        uploads are retried with growing pauses; once it is back every
        file is uploaded once, none lost."""
        self.store.down = "cannot connect to the endpoint"
        archive, events, metrics = _uploads(self.store, self.root, self.clock)
        with capturedLogs() as logged:
            self.successResultOf(archive.start())
            names = [f"call{n}" for n in range(3)]
            sizes = 0
            for name in names:
                wav, sidecar = put_recording(self.root, name)
                sizes += len(read(self.root, wav)) + len(read(self.root, sidecar))
                archive.queue(os.path.join(self.root, wav), True, name)
                self.clock.advance(10)
            for _ in range(12):
                self.clock.advance(60)
            status = archive.status()
            self.assertEqual((status.files_waiting, status.bytes_waiting), (6, sizes))
            self.assertGreaterEqual(status.oldest_waiting_s, 12 * 60)
            self.assertEqual(status.failing, ("cannot connect to the endpoint",))
            self.store.down = None
            self.clock.advance(300)
        self.assertEqual(archive.status().files_waiting, 0)
        self.assertEqual(len(self.store.puts), 6)
        self.assertEqual(len(set(self.store.puts)), 6)
        self.assertEqual(sorted(event["id"] for event in events), names)
        said = [event for event in logged if event.get("reason") == "cannot connect to the endpoint"]
        self.assertEqual(len(said), 2)  # it began, and it cleared
        self.assertIn("work again", said[1]["log_format"])
        failures = samples(metrics)[("recsvc_archive_failures_total",
                                     (("cause", "cannot connect to the endpoint"),))]
        self.assertGreater(failures, 5)

    def test_checksum_mismatch(self) -> None:
        """A store whose SHA-256 differs from the file's has not verified
        it: nothing is journaled, the local copy stays, the mismatch is
        logged (once) and the upload retried until the store holds the
        file as it is."""
        wav, sidecar = put_recording(self.root, "4711")
        self.store.wrong_checksum = True
        archive, events, _ = _uploads(self.store, self.root, self.clock)
        with capturedLogs() as logged:
            self.successResultOf(archive.start())
            self.clock.advance(1)
            self.clock.advance(2)
        self.assertEqual(self.store.puts, ["site-a/a/" + wav] * 3)
        self.assertTrue(os.path.exists(os.path.join(self.root, wav)))
        self.assertEqual(journal.verified_in(self.root, os.path.dirname(wav)), {})
        self.assertEqual(events, [])
        said = [event for event in logged if event.get("reason") == CHECKSUM_MISMATCH]
        self.assertEqual(len(said), 1)
        self.assertIn(sha256_of(read(self.root, wav)), said[0]["detail"])
        self.store.wrong_checksum = False
        self.clock.advance(4)
        self.assertFalse(os.path.exists(os.path.join(self.root, wav)))
        self.assertEqual(len(events), 1)
        self.assertIn("site-a/a/" + sidecar, self.store.objects)

    def test_restart_uploads_nothing_twice(self) -> None:
        """After a restart, verified recordings are not sent again; one
        whose upload was done but not journaled (a crash in between) is
        found in the store as it is and journaled without a PUT."""
        wav, sidecar = put_recording(self.root, "4711")
        archive, _, _ = _uploads(self.store, self.root, self.clock, keep_local_days=30)
        self.successResultOf(archive.start())
        self.assertEqual(len(self.store.puts), 2)
        again, _, _ = _uploads(self.store, self.root, self.clock, keep_local_days=30)
        self.successResultOf(again.start())
        self.assertEqual(len(self.store.puts), 2)
        os.unlink(journal.journal_path(self.root, os.path.dirname(wav)))
        third, events, _ = _uploads(self.store, self.root, self.clock, keep_local_days=30)
        self.successResultOf(third.start())
        self.assertEqual(len(self.store.puts), 2)
        self.assertEqual(sorted(journal.verified_in(self.root, os.path.dirname(wav))),
                         ["4711.json", "4711.wav"])
        self.assertEqual(len(events), 1)

    def test_recording_without_audio(self) -> None:
        """A recording that received no audio is its sidecar alone."""
        _, sidecar = put_recording(self.root, "silent", audio=None)
        archive, events, _ = _uploads(self.store, self.root, self.clock)
        self.successResultOf(archive.start())
        self.assertEqual(self.store.puts, ["site-a/a/" + sidecar])
        self.assertEqual(events[0]["key"], None)

    def test_retention_removes_objects(self) -> None:
        """Files retention removed are removed from the store and the
        journal too."""
        wav, sidecar = put_recording(self.root, "4711")
        archive, _, _ = _uploads(self.store, self.root, self.clock, keep_local_days=30)
        self.successResultOf(archive.start())
        self.successResultOf(archive.forget([wav, sidecar]))
        self.assertEqual(self.store.objects, {})
        self.assertEqual(journal.verified_in(self.root, os.path.dirname(wav)), {})

    def test_retention_while_the_store_is_down(self) -> None:
        """Objects retention removed while the store refuses are marked for
        deletion in the journal (not verified any more), and deleted by a
        later sweep, by a restarted archive too."""
        wav, sidecar = put_recording(self.root, "4711")
        archive, _, _ = _uploads(self.store, self.root, self.clock, keep_local_days=30)
        self.successResultOf(archive.start())
        self.store.down = "cannot connect to the endpoint"
        for relative in (wav, sidecar):
            os.unlink(os.path.join(self.root, relative))
        self.successResultOf(archive.forget([wav, sidecar]))
        self.assertEqual(len(self.store.objects), 2)
        self.assertEqual(journal.verified_in(self.root, os.path.dirname(wav)), {})
        self.assertEqual(sorted(journal.marked_for_deletion(self.root)),
                         sorted([(wav, "site-a/a/" + wav), (sidecar, "site-a/a/" + sidecar)]))
        archive.stop()
        self.store.down = None
        again, _, _ = _uploads(self.store, self.root, self.clock, keep_local_days=30)
        self.successResultOf(again.start())
        self.assertEqual(self.store.objects, {})
        self.assertEqual(journal.marked_for_deletion(self.root), [])

    def test_two_nodes_one_path_two_objects(self) -> None:
        """Two nodes sharing one archive.url, each with a recording at the
        same path below its root, get two objects (the node is in the key:
        its sidecar's, else the uploading node's name): neither is
        overwritten, and each is deleted from its node's disk once
        verified."""
        location = ArchiveLocation("recordings", "calls/")
        name = "20261125T093015Z_out_100_1"
        audio = {"rec-a": b"RIFF" + b"A" * 4000, "rec-b": b"RIFF" + b"B" * 4000,
                 "rec-c": b"RIFF" + b"C" * 4000}
        for node in audio:
            root = os.path.join(self.root, node)
            os.makedirs(root)
            archive = Archive(self.clock, root, location, self.store, node=node,
                              run_blocking=run_now)
            self.successResultOf(archive.start())
            # (rec-c's sidecar names no node: from before nodes had names.)
            wav, _ = put_recording(root, name, audio=audio[node],
                                   node=None if node == "rec-c" else node)
            archive.queue(os.path.join(root, wav), True, "1")
            self.assertFalse(os.path.exists(os.path.join(root, wav)))
        for node, data in audio.items():
            self.assertEqual(self.store.objects[f"calls/{node}/{wav}"], data)
        self.assertEqual(len(self.store.objects), 6)

    def test_a_new_file_costs_one_request(self) -> None:
        """A recording's files, new to the store, are each sent with one PUT
        (only if absent), verified by the SHA-256 its answer gives: no HEAD."""
        wav, sidecar = put_recording(self.root, "4711")
        archive, events, _ = _uploads(self.store, self.root, self.clock)
        self.successResultOf(archive.start())
        self.assertEqual(self.store.puts, ["site-a/a/" + wav, "site-a/a/" + sidecar])
        self.assertEqual((self.store.heads, len(events)), (0, 1))

    def test_a_store_ignoring_conditions_is_asked_first(self) -> None:
        """A store that would replace an object at a PUT only if absent is
        asked (HEAD) before each PUT instead."""
        self.store.conditional_puts = False
        wav, sidecar = put_recording(self.root, "4711")
        archive, events, _ = _uploads(self.store, self.root, self.clock)
        self.successResultOf(archive.start())
        self.assertEqual(self.store.puts, ["site-a/a/" + wav, "site-a/a/" + sidecar])
        self.assertEqual((self.store.heads, len(events)), (2, 1))

    def test_an_object_gone_meanwhile_is_put_only_if_absent_still(self) -> None:
        """A PUT only if absent refused, then nothing there at the HEAD (an
        object deleted meanwhile): the file is put only if absent again; an
        object that appears at that moment is never replaced (the upload
        fails, tried again later)."""
        class Racing(MemoryStore):
            refusals = 1
            asked: list[bool] = []

            def put(self, key: str, path: str, content_type: str, metadata: Any, sha256: str,
                    only_if_absent: bool = False) -> Any:
                self.asked.append(only_if_absent)
                if self.refusals and only_if_absent:
                    self.refusals -= 1
                    raise KeyTaken(key)
                return super().put(key, path, content_type, metadata, sha256, only_if_absent)
        store = Racing()
        wav, _ = put_recording(self.root, "4711")
        archive, events, _ = _uploads(store, self.root, self.clock)
        self.successResultOf(archive.start())
        self.assertEqual((store.asked, len(events)), ([True, True, True], 1))
        store.asked.clear()
        store.refusals = 2
        other, _ = put_recording(self.root, "4712")
        with capturedLogs() as logged:
            archive.queue(os.path.join(self.root, other), True, "4712")
        self.assertEqual(store.asked, [True, True])
        self.assertIn(OBJECT_APPEARED, [event.get("reason") for event in logged])
        self.assertEqual(archive.status().failing, (OBJECT_APPEARED,))

    def test_a_different_object_is_never_overwritten(self) -> None:
        """An object at a recording's key that is not its file (nor an
        earlier upload of it) is left as it is: that recording is not
        uploaded, its local copy stays, the log says so once (naming the
        key), and the other recordings upload unpaused; the next start
        tries it again."""
        self.check_never_overwritten()

    def test_never_overwritten_where_conditions_are_ignored(self) -> None:
        """The same on a store that ignores PUTs only if absent (asked first)."""
        self.store.conditional_puts = False
        self.check_never_overwritten()

    def check_never_overwritten(self) -> None:
        wav, sidecar = put_recording(self.root, "4711")
        other_wav, _ = put_recording(self.root, "4712")
        key = "site-a/a/" + wav
        foreign = os.path.join(self.root, "foreign")
        with open(foreign, "wb") as handle:
            handle.write(b"RIFF another recording")
        self.store.put(key, foreign, "audio/wav", {"id": "someone-else"},
                       sha256_of(b"RIFF another recording"))
        archive, events, metrics = _uploads(self.store, self.root, self.clock)
        with capturedLogs() as logged:
            self.successResultOf(archive.start())
        self.assertEqual(read(self.root, "foreign"), self.store.objects[key])
        self.assertEqual(self.store.puts, [key, "site-a/a/" + other_wav,
                                           "site-a/a/" + other_wav[:-4] + ".json"])
        self.assertTrue(os.path.exists(os.path.join(self.root, wav)))
        self.assertFalse(os.path.exists(os.path.join(self.root, other_wav)))
        self.assertEqual([event["id"] for event in events], ["4712"])
        said = [event for event in logged if event.get("reason") == OBJECT_IN_THE_WAY]
        self.assertEqual(len(said), 1)
        self.assertIn(f"a different object is already at {key}", said[0]["detail"])
        self.assertEqual(said[0]["log_level"], LogLevel.error)
        self.assertIsNone(archive._retry)  # (no pause)
        self.assertEqual(archive.status(), ArchiveStatus(0, 0, 0.0, (), set_aside=1))
        self.assertEqual(archive.status().to_json()["set_aside"], 1)
        self.assertEqual(samples(metrics)[("recsvc_archive_failures_total",
                                           (("cause", OBJECT_IN_THE_WAY),))], 1)
        self.assertEqual(samples(metrics)[("recsvc_archive_recordings_set_aside", ())], 1)
        archive.queue(os.path.join(self.root, wav), True, "4711")  # (set aside: not again)
        self.assertEqual(len(self.store.puts), 3)
        archive.forget([wav, sidecar])  # (retention: set aside no more)
        self.assertEqual(archive.status().set_aside, 0)
        del self.store.objects[key]
        again, events, _ = _uploads(self.store, self.root, self.clock)
        self.successResultOf(again.start())
        self.assertEqual(self.store.objects[key], b"RIFF" + bytes(range(256)) * 8)
        self.assertIn("site-a/a/" + sidecar, self.store.objects)

    def test_an_unverified_upload_of_its_own_is_replaced(self) -> None:
        """An object at the key that is an earlier upload of the same
        recording's file (its metadata says so: a PUT the store damaged, a
        file changed since) is replaced, not taken for another's."""
        wav, _ = put_recording(self.root, "4711")
        archive, events, _ = _uploads(self.store, self.root, self.clock)
        truncated = os.path.join(self.root, "truncated")
        with open(truncated, "wb") as handle:
            handle.write(read(self.root, wav)[:100])
        self.store.put("site-a/a/" + wav, truncated, "audio/wav",
                       object_metadata(json.loads(read(self.root, wav[:-4] + ".json"))),
                       sha256_of(read(self.root, wav)[:100]))
        self.successResultOf(archive.start())
        self.assertEqual(len(events), 1)
        self.assertFalse(os.path.exists(os.path.join(self.root, wav)))

    def test_a_store_without_checksums_says_so(self) -> None:
        """A store that keeps no SHA-256 checksums (an older Ceph RGW) makes
        the uploads fail with a cause that says so, not as a mismatch with
        None; the local copies stay."""
        wav, _ = put_recording(self.root, "4711")
        self.store.keeps_checksums = False
        archive, events, _ = _uploads(self.store, self.root, self.clock)
        with capturedLogs() as logged:
            self.successResultOf(archive.start())
            self.clock.advance(1)
        said = [event for event in logged if event.get("reason") == NO_CHECKSUMS]
        self.assertEqual(len(said), 1)
        self.assertIn("ChecksumSHA256", NO_CHECKSUMS)
        self.assertTrue(os.path.exists(os.path.join(self.root, wav)))
        self.assertEqual(events, [])
        self.assertEqual(archive.status().failing, (NO_CHECKSUMS,))

    def test_disk_errors_are_errors_not_tracebacks(self) -> None:
        """The start-up look failing on the disk is logged as an error with
        the OS's reason (log.failure is for bugs)."""
        def unreadable(root: str) -> Any:
            raise PermissionError(13, "Permission denied", root)
        self.patch(journal, "waiting_recordings", unreadable)
        archive, _, _ = _uploads(self.store, self.root, self.clock)
        with capturedLogs() as logged:
            archive.start()
        [said] = [event for event in logged if "upload failed" in event.get("log_format", "")]
        self.assertEqual(said["log_level"], LogLevel.error)
        self.assertIn("Permission denied", said["reason"])
        self.assertNotIn("log_failure", said)

    def test_stopped(self) -> None:
        """Once stopped, nothing more begins: what finishes then waits on
        the disk for the next start."""
        archive, _, _ = _uploads(self.store, self.root, self.clock)
        self.successResultOf(archive.start())
        archive.stop()
        wav, _ = put_recording(self.root, "late")
        archive.queue(os.path.join(self.root, wav), True, "late")
        self.assertEqual(self.store.puts, [])


class MotoUploadTests(SynchronousTestCase):
    """The archive on boto3 and a real S3 API (moto, or
    RECSVC_TEST_S3_ENDPOINT): the store's own SHA-256 checks the upload."""

    def setUp(self) -> None:
        self.server = s3.server()
        self.bucket = self.server.bucket()
        self.location = ArchiveLocation(self.bucket, "site-a/")
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.clock = Clock()
        self.clock.advance(time.time())

    def archive(self, store: Any) -> Archive:
        return Archive(self.clock, self.root, self.location, store, run_blocking=run_now)

    def keys(self) -> list[str]:
        listed = self.server.client().list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(item["Key"] for item in listed)

    def test_verified_then_local_copy_deleted(self) -> None:
        """The WAV and sidecar are in the bucket with the SHA-256 S3 keeps
        and the sidecar's fields as metadata; the local WAV is gone."""
        wav, sidecar = put_recording(self.root, "4711")
        audio = read(self.root, wav)
        store = S3Store(self.location, client=self.server.client())
        self.successResultOf(self.archive(store).start())
        self.assertEqual(self.keys(), sorted(["site-a/a/" + wav, "site-a/a/" + sidecar]))
        head = self.server.client().head_object(Bucket=self.bucket, Key="site-a/a/" + wav,
                                                ChecksumMode="ENABLED")
        self.assertEqual((head["ContentLength"], head["ChecksumSHA256"]),
                         (len(audio), sha256_of(audio)))
        self.assertEqual(head["ContentType"], "audio/wav")
        self.assertEqual(head["Metadata"]["remote-number"], "+8613800138000")
        self.assertFalse(os.path.exists(os.path.join(self.root, wav)))

    def test_store_down_then_back(self) -> None:
        """An endpoint that does not answer: the recordings wait; once it
        answers, each is in the bucket once."""
        for n in range(3):
            put_recording(self.root, f"call{n}")
        down = S3Store(self.location, make_client=lambda: client_for(
            f"http://127.0.0.1:{free_port()}", "us-east-1", 2,
            aws_access_key_id="x", aws_secret_access_key="y"))
        archive = self.archive(down)
        self.successResultOf(archive.start())
        self.clock.advance(1)
        self.assertEqual(archive.status().failing, (CANNOT_CONNECT,))
        self.assertEqual(archive.status().files_waiting, 6)
        archive.store = S3Store(self.location, client=self.server.client())
        self.clock.advance(2)
        self.assertEqual(archive.status().files_waiting, 0)
        self.assertEqual(len(self.keys()), 6)


class ArchiveConfigTests(SynchronousTestCase):
    """The archive section."""

    def test_off_by_default(self) -> None:
        """No archive.url: no archive."""
        self.assertIsNone(parse_config({}).archive.location)
        self.assertIsNone(parse_config({"archive": None}).archive.url)

    def test_values(self) -> None:
        """The keys, as given."""
        config = parse_config({"archive": {
            "url": "s3://calls/site-a", "endpoint_url": "http://127.0.0.1:9000",
            "region": "eu-west-1", "keep_local_days": 30,
            "server_side_encryption": "aws:kms", "kms_key_id": "alias/recsvc"}})
        self.assertEqual(config.archive.location, ArchiveLocation("calls", "site-a/"))
        self.assertEqual((config.archive.keep_local_days, config.archive.kms_key_id),
                         (30.0, "alias/recsvc"))

    def test_errors_name_the_key(self) -> None:
        """A bad value names its key; a file longer than one PUT takes is
        refused with the longest storage.max_duration that fits."""
        for section, key in [({"url": "s3://X"}, "archive.url"),
                             ({"endpoint_url": "ftp://x"}, "archive.endpoint_url"),
                             ({"keep_local_days": -1}, "archive.keep_local_days"),
                             ({"server_side_encryption": "rot13"},
                              "archive.server_side_encryption"),
                             ({"url": "s3://calls", "kms_key_id": "k"}, "archive.kms_key_id"),
                             ({"secret_access_key": "x"}, "archive.secret_access_key")]:
            error = self.assertRaises(ConfigError, parse_config, {"archive": section})
            self.assertEqual(error.key, key)
        error = self.assertRaises(ConfigError, parse_config, {
            "archive": {"url": "s3://calls"}, "storage": {"max_duration": 7 * DAY}})
        self.assertEqual(error.key, "storage.max_duration")
        self.assertIn("167772 s", str(error))


TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def _aws_environment(server: s3.S3Server) -> dict[str, str]:
    """The environment a recsvc process finds the test store's credentials
    in (the AWS chain's variables; a real endpoint's are there already)."""
    settings = server.client_settings()
    environment = dict(os.environ)
    if "aws_access_key_id" in settings:
        environment["AWS_ACCESS_KEY_ID"] = settings["aws_access_key_id"]
        environment["AWS_SECRET_ACCESS_KEY"] = settings["aws_secret_access_key"]
    return environment


def _verified_lines(root: str) -> int:
    count = 0
    for folder, _, files in os.walk(os.path.join(root, ".archive")):
        if journal.JOURNAL_NAME in files:
            with open(os.path.join(folder, journal.JOURNAL_NAME), "rb") as handle:
                count += handle.read().count(b"\n")
    return count


class CrashTests(SynchronousTestCase):
    """A real recsvc (twistd) killed with SIGKILL while it uploads, then
    started again: every recording is in the bucket exactly once (no other
    object), each file with the SHA-256 of the original."""

    def setUp(self) -> None:
        self.server = s3.server()
        self.bucket = self.server.bucket()
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.config = os.path.abspath(self.mktemp())
        with open(self.config, "w", encoding="utf-8") as handle:
            handle.write(
                'control:\n  listen: "tcp:0:interface=127.0.0.1"\nhttp:\n  listen: "off"\n'
                f'rtp:\n  interface: 127.0.0.1\n  port_range: [43000, 43009]\n'
                f'storage:\n  root: "{self.root}"\n  min_free_mb: 1\n'
                f'index:\n  database: "{self.root}-index/recsvc.sqlite3"\n'
                f'archive:\n  url: "s3://{self.bucket}/node-a"\n'
                f'  endpoint_url: "{self.server.endpoint_url}"\n  region: us-east-1\n'
                '  keep_local_days: 0\n')

    def run_recsvc(self, log: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", f"--logfile={log}", "recsvc",
             "--config", self.config],
            env=_aws_environment(self.server), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.addCleanup(reap, process)
        return process

    def wait_until(self, predicate: Any, process: subprocess.Popen[bytes], what: str,
                   seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            if process.poll() is not None:
                self.fail(f"recsvc exited ({process.returncode}) before {what}")
            if time.monotonic() > deadline:
                self.fail(f"not reached within {seconds:g} s: {what}")
            time.sleep(0.01)

    def test_killed_while_uploading(self) -> None:
        """SIGKILL as soon as the first file is verified (others then under
        way or waiting), then a restart: uploads resume, the local WAVs go
        once verified, and the bucket holds each file once, as it was."""
        originals = {}
        for n in range(12):
            audio = b"RIFF" + os.urandom(512 * 1024)
            wav, sidecar = put_recording(self.root, f"call{n:02d}", audio=audio,
                                         folder=f"00a859000{n % 3:03d}/2026/11/25")
            originals[wav] = audio
            originals[sidecar] = read(self.root, sidecar)
        first = self.run_recsvc(self.mktemp())
        self.wait_until(lambda: _verified_lines(self.root) > 0, first, "a file is verified")
        first.kill()
        first.wait()
        second = self.run_recsvc(self.mktemp())
        self.wait_until(lambda: _verified_lines(self.root) >= len(originals), second,
                        "every file is verified")
        self.wait_until(lambda: not any(
            os.path.exists(os.path.join(self.root, wav)) for wav in originals
            if wav.endswith(".wav")), second, "the local WAVs are deleted")
        second.terminate()
        second.wait()
        client = self.server.client()
        listed = client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        self.assertEqual(sorted(item["Key"] for item in listed),
                         sorted("node-a/a/" + relative for relative in originals))
        for relative, data in originals.items():
            head = client.head_object(Bucket=self.bucket, Key="node-a/a/" + relative,
                                      ChecksumMode="ENABLED")
            self.assertEqual((head["ContentLength"], head["ChecksumSHA256"]),
                             (len(data), sha256_of(data)), relative)
        for relative in originals:
            if relative.endswith(".json"):
                self.assertTrue(os.path.exists(os.path.join(self.root, relative)))


class StatusTests(SynchronousTestCase):
    """How far behind the archive is, in /healthz and /metrics."""

    def test_healthz_and_metrics(self) -> None:
        """/healthz stays 200 "ok" (the service records all the same) and
        gives the files and bytes waiting, the oldest's age and the causes
        failing; /metrics has the same gauges and counts failures by cause."""
        from twisted.web.test.requesthelper import DummyRequest

        from recsvc.web.site import HealthResource

        root = self.mktemp()
        os.makedirs(root)
        _, sidecar = put_recording(root, "4711")
        clock = Clock()
        clock.advance(os.stat(os.path.join(root, sidecar)).st_mtime)
        store = MemoryStore(down="AccessDenied")
        archive, _, metrics = _uploads(store, root, clock)
        self.successResultOf(archive.start())
        clock.advance(30)

        class Recorder:
            running, accepting, disk, registry = True, True, None, ()

        Recorder.archive = archive  # type: ignore[attr-defined]
        request = DummyRequest([b""])
        body = json.loads(HealthResource(Recorder()).render_GET(request))
        self.assertEqual(request.responseCode or 200, 200)
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["archive"]["files_waiting"], 2)
        self.assertEqual(body["archive"]["failing"], ["AccessDenied"])
        self.assertGreaterEqual(body["archive"]["oldest_waiting_s"], 30)
        scraped = samples(metrics)
        self.assertEqual(scraped[("recsvc_archive_files_waiting", ())], 2)
        self.assertEqual(scraped[("recsvc_archive_bytes_waiting", ())],
                         body["archive"]["bytes_waiting"])
        self.assertGreaterEqual(scraped[("recsvc_archive_oldest_waiting_seconds", ())], 30)
        self.assertGreater(scraped[("recsvc_archive_failures_total",
                                    (("cause", "AccessDenied"),))], 1)

    def test_no_archive_no_figures(self) -> None:
        """Without an archive, neither /healthz nor /metrics speaks of one."""
        from recsvc.archive.uploader import NoArchive

        self.assertIsNone(NoArchive().status())
        self.assertFalse([name for name, _ in samples(Metrics()) if "archive_files" in name
                          and "waiting" in name])


class WithoutBoto3Tests(SynchronousTestCase):
    """boto3 is the archive's alone (the ``archive`` extra)."""

    def test_service_without_boto3(self) -> None:
        """Without boto3, a service without an archive is built and its
        config checked; one with archive.url is refused naming the key and
        the remedy."""
        root = os.path.abspath(self.mktemp())
        program = (
            "import sys\n"
            "sys.modules['boto3'] = sys.modules['botocore'] = None\n"
            "from recsvc.config import ConfigError\n"
            "from recsvc.tap import makeService\n"
            f"config = {{'storage': {{'root': {root!r}}}, 'http': {{'listen': 'off'}},\n"
            "          'control': {'listen': 'tcp:0:interface=127.0.0.1'},\n"
            f"          'index': {{'database': {root + '.sqlite3'!r}}}}}\n"
            "makeService(config)\n"
            "try:\n"
            "    makeService({**config, 'archive': {'url': 's3://calls'}})\n"
            "except ConfigError as error:\n"
            "    print(error)\n")
        output = subprocess.run([sys.executable, "-c", program], capture_output=True,
                                check=True, timeout=60).stdout.decode()
        self.assertIn("archive.url: needs boto3", output)
        self.assertIn("recsvc[archive]", output)
