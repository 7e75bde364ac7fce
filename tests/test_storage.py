"""Tests for recsvc.storage.folder: where recordings' files go and how they are written."""

from __future__ import annotations

import calendar
import errno
import json
import os
import shutil
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from recsvc.storage import folder as storage_module
from recsvc.media.codec import CODECS
from recsvc.storage.naming import PathTemplate
from recsvc.storage.folder import Storage, open_wav_file, sidecar_path
from recsvc.testing import MemoryWavWriter, MemoryWriters
from recsvc.storage.wav import AudioWriter, WavFileWriter, WavFormat, partial_path, wav_header

PCMA = CODECS["PCMA"]
PCMU = CODECS["PCMU"]
STARTED = calendar.timegm((2024, 5, 17, 9, 30, 15))
FIELDS = dict(
    started_at=STARTED, device="00:A8:59:12:34:56", direction="in",
    remote_number="+4930123", recording_id="rec1",
)


class StorageTestCase(SynchronousTestCase):
    def make_root(self) -> str:
        root = self.mktemp()
        os.makedirs(root)
        return root

    def create(self, storage: Storage, codec=PCMA, **overrides) -> AudioWriter:
        writer = storage.create(codec, **{**FIELDS, **overrides})
        self.addCleanup(writer.close)
        return writer

    def assert_under(self, path: str, root: str) -> None:
        real, realRoot = os.path.realpath(path), os.path.realpath(root)
        self.assertEqual(os.path.commonpath([real, realRoot]), realRoot, f"{real} escaped {realRoot}")


class CreateTests(StorageTestCase):
    def test_layout(self) -> None:
        """
        create makes the device/YYYY/MM/DD folders under the root and a WAV
        file named after the recording in them.
        """
        root = self.make_root()
        writer = self.create(Storage(root))
        self.assertIsInstance(writer, WavFileWriter)
        expected = os.path.join(
            os.path.abspath(root), "00a859123456", "2024", "05", "17",
            "20240517T093015Z_in_+4930123_rec1.wav",
        )
        self.assertEqual(writer.path, expected)
        self.assertTrue(os.path.isfile(partial_path(expected)))  # while recording
        with open(partial_path(expected), "rb") as handle:
            self.assertEqual(handle.read(4), b"RIFF")

    def test_existing_folders_reused(self) -> None:
        """
        A second recording the same day goes into the folders already there.
        """
        root = self.make_root()
        storage = Storage(root)
        first = self.create(storage)
        second = self.create(storage, recording_id="rec2")
        self.assertEqual(os.path.dirname(first.path), os.path.dirname(second.path))
        self.assertNotEqual(first.path, second.path)

    def test_hostile_fields_stay_under_root(self) -> None:
        """
        Ids, devices, directions and numbers built to climb out of the root
        or name absolute paths still land under the root.
        """
        root = self.make_root()
        storage = Storage(root)
        for hostile in ("../../x", "/etc/passwd", "..", ".", "", "a/../../../b", "\0", "../" * 20):
            with self.subTest(hostile=hostile):
                writer = self.create(
                    storage, device=hostile, recording_id=hostile,
                    direction=hostile, remote_number=hostile,
                )
                self.assert_under(writer.path, root)
                self.assertTrue(os.path.isfile(partial_path(writer.path)))
                relative = os.path.relpath(os.path.realpath(writer.path), os.path.realpath(root))
                self.assertEqual(len(relative.split(os.sep)), 5)

    def test_removed_folder_made_again(self) -> None:
        """
        A folder removed after a recording was created in it (emptied and
        removed by an administrator, say) is checked and made again.
        """
        root = self.make_root()
        storage = Storage(root)
        first = self.create(storage)
        first.close()
        folder = os.path.dirname(first.path)
        shutil.rmtree(os.path.join(root, "00a859123456"))
        second = self.create(storage, recording_id="rec2")
        self.assertEqual(os.path.dirname(second.path), folder)
        self.assertTrue(os.path.isfile(partial_path(second.path)))

    def test_partial_file_takes_name(self) -> None:
        """
        A name whose partial file exists (a recording in progress, or left
        by a crash) is not reused.
        """
        root = self.make_root()
        storage = Storage(root)
        first = self.create(storage)
        second = self.create(storage)
        self.assertEqual(second.path, first.path[:-len(".wav")] + "-1.wav")
        self.assertTrue(os.path.isfile(partial_path(first.path)))

    def test_same_fields_get_suffix(self) -> None:
        """
        A second create with identical fields gets a "-1" name (then "-2")
        and leaves the first file alone.
        """
        root = self.make_root()
        storage = Storage(root)
        first = self.create(storage)
        first.write(b"first")
        first.close()
        with open(first.path, "rb") as handle:
            before = handle.read()
        second = self.create(storage)
        third = self.create(storage)
        base = first.path[:-len(".wav")]
        self.assertEqual(second.path, base + "-1.wav")
        self.assertEqual(third.path, base + "-2.wav")
        with open(first.path, "rb") as handle:
            self.assertEqual(handle.read(), before)

    def test_sidecar_takes_name(self) -> None:
        """
        A name whose sidecar exists (its WAV gone) is not reused.
        """
        root = self.make_root()
        storage = Storage(root)
        first = self.create(storage)
        storage.write_sidecar(first.path, {"id": "rec1"})
        first.close()
        os.unlink(first.path)
        second = self.create(storage)
        self.assertEqual(second.path, first.path[:-len(".wav")] + "-1.wav")

    def test_escaping_symlink_refused(self) -> None:
        """
        A device folder that is a symlink out of the root is refused with
        PermissionError, and nothing is created where it points.
        """
        root = self.make_root()
        outside = self.make_root()
        os.symlink(os.path.abspath(outside), os.path.join(root, "00a859123456"))
        self.assertRaises(PermissionError, Storage(root).create, PCMA, **FIELDS)
        self.assertEqual(os.listdir(outside), [])

    def test_root_through_symlink(self) -> None:
        """
        A root that is itself a symlink (say to a mounted volume) is a
        valid root: recordings go into the folder it points to.
        """
        target = self.make_root()
        link = self.mktemp()
        os.symlink(os.path.abspath(target), link)
        writer = self.create(Storage(link))
        self.assert_under(writer.path, target)
        self.assertTrue(os.path.isfile(os.path.join(
            target, "00a859123456", "2024", "05", "17", os.path.basename(partial_path(writer.path)),
        )))

    def test_relative_root(self) -> None:
        """
        A relative root is resolved once, so writer paths are absolute.
        """
        root = self.make_root()
        self.assertFalse(os.path.isabs(root))
        writer = self.create(Storage(root))
        self.assertTrue(os.path.isabs(writer.path))

    def test_opener_receives_format(self) -> None:
        """
        create hands the path and the storage's WAV format to the writer
        opener, so a fake writer can stand in for the file.
        """
        opened: list[tuple[str, WavFormat]] = []

        def opener(path: str, fmt: WavFormat) -> MemoryWavWriter:
            opened.append((path, fmt))
            return MemoryWavWriter(path, fmt)

        root = self.make_root()
        writer = Storage(root, "pcm16", opener).create(PCMU, **FIELDS)
        self.assertIsInstance(writer, MemoryWavWriter)
        self.assertEqual(opened, [(writer.path, WavFormat(1, 8000, 16))])

    def test_pcm16_file(self) -> None:
        """
        With audio_format "pcm16" the file created is 16-bit PCM WAV.
        """
        root = self.make_root()
        writer = self.create(Storage(root, "pcm16"))
        writer.close()
        with open(writer.path, "rb") as handle:
            header = handle.read()
        self.assertEqual(struct.unpack_from("<HHIIHH", header, 20), (1, 1, 8000, 16000, 2, 16))

    def test_open_wav_file(self) -> None:
        """
        The default opener creates a real WavFileWriter.
        """
        root = self.make_root()
        writer = open_wav_file(os.path.join(root, "x.wav"), WavFormat.stored(PCMA))
        self.addCleanup(writer.close)
        self.assertIsInstance(writer, WavFileWriter)


class FormatTests(SynchronousTestCase):
    def test_g711_stored(self) -> None:
        """
        "g711" stores the codec's own bytes: A-law or mu-law WAV, 8-bit, and
        no transcoding.
        """
        storage = Storage("unused")
        self.assertEqual(storage.wav_format(PCMA), WavFormat(6, 8000, 8))
        self.assertEqual(storage.wav_format(PCMU), WavFormat(7, 8000, 8))
        self.assertEqual(storage.encoder(PCMA).audio(b"\x01\x02"), b"\x01\x02")
        self.assertEqual(storage.encoder(PCMA).silence(3), b"\xd5" * 3)
        self.assertEqual(storage.encoder(PCMU).silence(2), b"\xff" * 2)

    def test_default_is_g711(self) -> None:
        """
        Storage stores G.711 as received unless told otherwise.
        """
        self.assertEqual(Storage("unused").audio_format, "g711")

    def test_pcm16(self) -> None:
        """
        "pcm16" stores 16-bit linear PCM and decodes each codec's bytes to it.
        """
        storage = Storage("unused", "pcm16")
        self.assertEqual(storage.wav_format(PCMA), WavFormat(1, 8000, 16))
        self.assertEqual(storage.wav_format(PCMU), WavFormat(1, 8000, 16))
        self.assertEqual(storage.encoder(PCMA).audio(b"\xd5\x55"), struct.pack("<2h", 8, -8))
        self.assertEqual(storage.encoder(PCMU).audio(b"\xff\x80"), struct.pack("<2h", 0, 32124))
        self.assertEqual(storage.encoder(PCMA).silence(2), b"\0" * 4)

    def test_g722_always_decoded(self) -> None:
        """
        G.722 has no stored form: whatever the format, it is decoded to
        16 kHz 16-bit PCM, four bytes (two samples) per RTP tick of silence.
        """
        g722 = CODECS["G722"]
        for audio_format in ("g711", "pcm16"):
            storage = Storage("unused", audio_format)
            self.assertEqual(storage.wav_format(g722), WavFormat(1, 16000, 16))
            self.assertEqual(storage.encoder(g722).silence(160), b"\0" * 640)
            self.assertEqual(len(storage.encoder(g722).audio(b"\x00" * 160)), 640)


class SidecarTests(StorageTestCase):
    def test_sidecar_path(self) -> None:
        """
        The sidecar is the WAV's name with .json for .wav.
        """
        self.assertEqual(sidecar_path("/r/a/b.c.wav"), "/r/a/b.c.json")

    def test_write_sidecar(self) -> None:
        """
        write_sidecar writes pretty, UTF-8 JSON beside the WAV as NAME.json,
        ending in a newline, and returns its path; no temporary file stays.
        """
        root = self.make_root()
        storage = Storage(root)
        writer = self.create(storage)
        data = {"id": "rec1", "remote": "Müller", "lost": 0, "codecs": ["PCMA"]}
        path = storage.write_sidecar(writer.path, data)
        self.assertEqual(path, writer.path[:-len(".wav")] + ".json")
        with open(path, "rb") as handle:
            raw = handle.read()
        self.assertEqual(json.loads(raw.decode("utf-8")), data)
        self.assertIn("Müller".encode("utf-8"), raw)
        self.assertIn(b'\n  "id": "rec1"', raw)
        self.assertTrue(raw.endswith(b"}\n"))
        self.assertEqual(
            sorted(os.listdir(os.path.dirname(path))),
            sorted([os.path.basename(partial_path(writer.path)), os.path.basename(path)]),
        )

    def test_durable_or_not(self) -> None:
        """
        A durable sidecar is fsynced with its folder; one that is not (left
        to the filesystem sync) is written whole all the same, with no fsync.
        """
        root = self.make_root()
        storage = Storage(root)
        writer = self.create(storage)
        synced: list[int] = []
        self.patch(os, "fsync", lambda fd: synced.append(fd))
        path = storage.write_sidecar(writer.path, {"id": "a"}, durable=False)
        self.assertEqual(synced, [])
        with open(path, encoding="utf-8") as handle:
            self.assertEqual(json.load(handle), {"id": "a"})
        storage.write_sidecar(writer.path, {"id": "b"})
        self.assertEqual(len(synced), 2)  # the file, then its folder

    def test_rewrite_replaces(self) -> None:
        """
        Writing the sidecar again replaces it whole (a shorter document
        leaves none of the longer one behind).
        """
        root = self.make_root()
        storage = Storage(root)
        writer = self.create(storage)
        storage.write_sidecar(writer.path, {"notes": "x" * 1000})
        path = storage.write_sidecar(writer.path, {"notes": "short"})
        with open(path, encoding="utf-8") as handle:
            self.assertEqual(json.load(handle), {"notes": "short"})

    def test_failed_write_keeps_old_sidecar(self) -> None:
        """
        A sidecar that cannot be written (data JSON cannot express) raises,
        leaves the previous sidecar intact, and leaves no temporary file.
        """
        root = self.make_root()
        storage = Storage(root)
        writer = self.create(storage)
        path = storage.write_sidecar(writer.path, {"id": "rec1"})
        self.assertRaises(TypeError, storage.write_sidecar, writer.path, {"id": "rec1", "bad": object()})
        with open(path, encoding="utf-8") as handle:
            self.assertEqual(json.load(handle), {"id": "rec1"})
        self.assertEqual(
            sorted(os.listdir(os.path.dirname(path))),
            sorted([os.path.basename(partial_path(writer.path)), os.path.basename(path)]),
        )


class SidecarLinkTests(StorageTestCase):
    """A sidecar's temporary file, or the sidecar overwritten in place on a
    full disk, that is a symbolic link is not written through: the file it
    points at (outside the root) keeps its bytes."""

    def setUp(self) -> None:
        self.victim = os.path.abspath(self.mktemp())
        with open(self.victim, "wb") as handle:
            handle.write(b"precious")
        self.storage = Storage(self.make_root())
        self.writer = self.create(self.storage)

    def test_temporary_file_link(self) -> None:
        """A NAME.json.tmp link makes the sidecar's write fail, not write through it."""
        os.symlink(self.victim, sidecar_path(self.writer.path) + ".tmp")
        self.assertRaises(OSError, self.storage.write_sidecar, self.writer.path, {"id": "1"})
        with open(self.victim, "rb") as handle:
            self.assertEqual(handle.read(), b"precious")

    def test_overwritten_in_place_link(self) -> None:
        """The full-disk rewrite in place refuses a sidecar that is a link."""
        os.symlink(self.victim, sidecar_path(self.writer.path))
        self.assertRaises(OSError, storage_module._overwrite_in_place,
                          sidecar_path(self.writer.path), b"{}")
        with open(self.victim, "rb") as handle:
            self.assertEqual(handle.read(), b"precious")


class RemoveAudioTests(StorageTestCase):
    def test_removed(self) -> None:
        """The empty WAV of a recording that received no audio is removed;
        one already gone is no error."""
        root = self.make_root()
        wav = os.path.join(root, "silent.wav")
        with open(wav, "wb"):
            pass
        Storage(root).remove_audio(wav)
        self.assertFalse(os.path.exists(wav))
        Storage(root).remove_audio(wav)

    def test_cannot_be_removed(self) -> None:
        """A WAV that cannot be removed (here: a folder in its place) is
        left with a warning; the recording, whose sidecar is written, is
        not failed for it."""
        root = self.make_root()
        wav = os.path.join(root, "silent.wav")
        os.mkdir(wav)
        with capturedLogs() as events:
            Storage(root).remove_audio(wav)
        [warning] = [event for event in events if event.get("file") == wav]
        self.assertIn("Could not remove", formatEvent(warning))


class WalkFilesTests(StorageTestCase):
    def test_regular_files_only_links_told(self) -> None:
        """walk_files gives each folder (root first, then by name, depth
        first) with its regular files; links below the root, to files or
        folders, are told and neither listed nor walked into; a root that
        is itself a link is walked."""
        real = os.path.abspath(self.make_root())
        outside = os.path.abspath(self.make_root())
        for path in ("b/x.wav", "a/y.json", "a/c/z.wav", "top.json"):
            os.makedirs(os.path.dirname(os.path.join(real, path)), exist_ok=True)
            open(os.path.join(real, path), "wb").close()
        open(os.path.join(outside, "secret.wav"), "wb").close()
        os.symlink(os.path.join(outside, "secret.wav"), os.path.join(real, "b", "link.wav"))
        os.symlink(outside, os.path.join(real, "a", "elsewhere"))
        root = os.path.abspath(self.mktemp())
        os.symlink(real, root)
        links: list[str] = []
        walked = [(os.path.relpath(folder, root), sorted(files))
                  for folder, files in storage_module.walk_files(root, links.append)]
        self.assertEqual(walked, [(".", ["top.json"]), ("a", ["y.json"]), ("a/c", ["z.wav"]),
                                  ("b", ["x.wav"])])
        self.assertEqual(sorted(os.path.relpath(link, root) for link in links),
                         ["a/elsewhere", "b/link.wav"])


    def test_a_root_that_cannot_be_listed(self) -> None:
        """A root that cannot be listed (gone, or not readable) is left out
        as any folder is, walking nothing (recovery, retention, the
        archive's journal); with ``root_listed`` its OSError is raised
        (the index's catch-up, which would forget what it does not find)."""
        missing = os.path.abspath(self.mktemp())
        self.assertEqual(list(storage_module.walk_files(missing, print)), [])
        with self.assertRaises(FileNotFoundError):
            list(storage_module.walk_files(missing, print, root_listed=True))
        root = os.path.abspath(self.make_root())
        os.makedirs(os.path.join(root, "a"))
        scandir = os.scandir

        def refused(path: str) -> Any:
            if path == root:
                raise PermissionError(13, "Permission denied", path)
            return scandir(path)

        self.patch(storage_module.os, "scandir", refused)
        self.assertEqual(list(storage_module.walk_files(root, print)), [])
        with self.assertRaises(PermissionError):
            list(storage_module.walk_files(root, print, root_listed=True))


class FullDiskSidecarTests(StorageTestCase):
    def full_disk(self, path: str, text: bytes, file_mode: int, durable: bool) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def test_full_disk_overwrites_in_place(self) -> None:
        """
        When the disk is too full for a new file, the sidecar written at Start
        is overwritten in place with the finished one.
        """
        storage = Storage(self.make_root())
        writer = self.create(storage)
        path = storage.write_sidecar(writer.path, {"status": "recording", "id": "rec1"})
        self.patch(storage_module, "_replace_whole", self.full_disk)
        storage.write_sidecar(writer.path, {"status": "finished", "id": "rec1", "bytes": 8000})
        with open(path, encoding="utf-8") as handle:
            self.assertEqual(json.load(handle), {"status": "finished", "id": "rec1", "bytes": 8000})

    def test_full_disk_without_sidecar_raises(self) -> None:
        """
        With no sidecar to overwrite, a full disk is an error for the caller.
        """
        storage = Storage(self.make_root())
        writer = self.create(storage)
        self.patch(storage_module, "_replace_whole", self.full_disk)
        error = self.assertRaises(OSError, storage.write_sidecar, writer.path, {"id": "x"})
        self.assertEqual(error.errno, errno.ENOSPC)


class FileModeTests(StorageTestCase):
    def test_mode_whatever_the_umask(self) -> None:
        """
        Recordings and sidecars get storage.file_mode even under a umask
        that would take bits away or grant more.
        """
        for mode, umask in ((0o640, 0o077), (0o600, 0o000), (0o664, 0o022)):
            with self.subTest(mode=oct(mode), umask=oct(umask)):
                previous = os.umask(umask)
                try:
                    storage = Storage(self.make_root(), file_mode=mode)
                    writer = self.create(storage)
                    sidecar = storage.write_sidecar(writer.path, {"id": "rec1"})
                    writer.close()
                finally:
                    os.umask(previous)
                self.assertEqual(os.stat(writer.path).st_mode & 0o777, mode)
                self.assertEqual(os.stat(sidecar).st_mode & 0o777, mode)


class StorageContract:
    """What the service relies on from its storage, run against the real
    file system and against the in-memory writers the tests use."""

    def make_storage(self, root: str) -> Storage:
        raise NotImplementedError

    def audio_of(self, writer: AudioWriter) -> bytes:
        raise NotImplementedError

    def test_contract_names_and_collisions(self) -> None:
        """
        create names the file by the template, under the root; the same
        fields again get a suffixed name, never the same file.
        """
        root = self.mktemp()
        os.makedirs(root)
        storage = self.make_storage(root)
        first = storage.create(PCMA, **FIELDS)
        second = storage.create(PCMA, **FIELDS)
        self.assertEqual(os.path.basename(first.path), "20240517T093015Z_in_+4930123_rec1.wav")
        self.assertEqual(os.path.basename(second.path), "20240517T093015Z_in_+4930123_rec1-1.wav")
        for writer in (first, second):
            self.assertTrue(os.path.abspath(writer.path).startswith(os.path.abspath(root)))
            writer.close()

    def test_contract_audio_and_sidecar(self) -> None:
        """
        What is written, synced and closed is the file's audio; the sidecar
        goes beside it as NAME.json.
        """
        root = self.mktemp()
        os.makedirs(root)
        storage = self.make_storage(root)
        writer = storage.create(PCMA, **FIELDS)
        writer.write(b"\x01" * 100)
        writer.sync()
        writer.write(b"\x02" * 50)
        writer.close()
        self.assertEqual(self.audio_of(writer), b"\x01" * 100 + b"\x02" * 50)
        self.assertEqual(writer.data_bytes, 150)
        sidecar = storage.write_sidecar(writer.path, {"id": "rec1"})
        self.assertEqual(sidecar, writer.path[:-4] + ".json")
        with open(sidecar, encoding="utf-8") as handle:
            self.assertEqual(json.load(handle), {"id": "rec1"})


class RealStorageContractTests(StorageContract, SynchronousTestCase):
    def make_storage(self, root: str) -> Storage:
        return Storage(root)

    def audio_of(self, writer: AudioWriter) -> bytes:
        with open(writer.path, "rb") as handle:
            blob = handle.read()
        return blob[len(wav_header(WavFormat.stored(PCMA)).header):]


class MemoryStorageContractTests(StorageContract, SynchronousTestCase):
    def make_storage(self, root: str) -> Storage:
        return Storage(root, open_writer=MemoryWriters())

    def audio_of(self, writer: AudioWriter) -> bytes:
        return writer.contents()[len(wav_header(WavFormat.stored(PCMA)).header):]


# What a phone may put in a field, hostile or merely odd.
_FIELD = st.text(max_size=120) | st.sampled_from([
    "", ".", "..", "/", "../../etc/passwd", "a/../../b", "..\\..\\x", "\x00", "~root", "-rf",
    " ", ".hidden", "CON", "x" * 300, "é" * 200, "%2e%2e%2f", "00:A8:59:12:34:56",
])
_TEMPLATES = st.sampled_from([
    None,  # the default
    "{device}/{remote_number}{remote_name}/{local_number}{local_name}/{direction}_{id}",
    "%Y/{id}/{codec}_{device}",
    "{id}",
])


class PathPropertyTests(StorageTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.fixed_dictionaries({
        "device": _FIELD, "direction": _FIELD, "remote_number": _FIELD, "recording_id": _FIELD,
        "remote_name": _FIELD, "local_number": _FIELD, "local_name": _FIELD,
    }), _TEMPLATES, st.integers(1, 3), st.floats(0, 4102444800))
    def test_never_escapes_nor_names_badly(self, fields: dict, template: str | None,
                                           part: int, started_at: float) -> None:
        """
        Whatever the phone's fields, the path template and the time, the file
        is created on the real filesystem, inside storage.root, and every
        name on its way is a valid, visible, short name of safe characters.
        """
        root = self.make_root()
        storage = Storage(root) if template is None else Storage(
            root, path_template=PathTemplate(template))
        writer = storage.create(PCMA, started_at=started_at, part=part, **fields)
        try:
            self.assert_under(writer.path, root)
            self.assertTrue(os.path.exists(partial_path(writer.path)))
            names = os.path.relpath(writer.path, os.path.realpath(root)).split(os.sep)
            self.assertTrue(names[-1].endswith(".wav"))
            for name in names:
                self.assertRegex(name, r"\A[A-Za-z0-9+_.-]+\Z")
                self.assertFalse(name.startswith("."), name)
                self.assertLessEqual(len(name.encode("utf-8")), 255)
        finally:
            writer.close()
            shutil.rmtree(root)
