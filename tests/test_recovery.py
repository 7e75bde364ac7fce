"""Tests for recsvc.storage.recovery: the recordings a crash left behind are repaired,
renamed and their sidecars finished at start-up, and nothing is ever lost."""

from __future__ import annotations

import calendar
import json
import os
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media.codec import CODECS
from recsvc.control.commands import CallParties
from recsvc.storage.recovery import CRASH_REASON, DamagedFile, Recovered, recover_all, repair_wav
from recsvc.storage.folder import Storage, sidecar_path
from recsvc.summary import MediaStats, RecordingInfo, RecordingSummary, iso_utc
from recsvc.storage.wav import WRITE_BATCH_BYTES, WavFileWriter, WavFormat
from tests.support.recordings import check_wav

PCMA = CODECS["PCMA"]
ALAW = WavFormat.stored(PCMA)
PCM16 = WavFormat.pcm16(PCMA)
# The header WavFileWriter writes, counted by hand (RIFF, fmt, [fact], data):
# a crash inside it leaves nothing to repair.
HEADER_LENGTH = {ALAW: 12 + 8 + 18 + 12 + 8, PCM16: 12 + 8 + 16 + 8}
FORMAT_NAME = {ALAW: "g711", PCM16: "pcm16"}

STARTED = calendar.timegm((2024, 5, 17, 9, 30, 15))
FOLDER = ("00A859123456", "2024", "05", "17")
STEM = "20240517T093015Z_out_4930123_rec-42"
INFO = RecordingInfo(
    recording_id="rec-42",
    device="00:A8:59:12:34:56",
    codec=PCMA,
    direction="out",
    parties=CallParties("201", "Front desk", "+4930123", "Bob"),
    peer="192.0.2.7",
)
CRASH_SETTINGS = settings(max_examples=75, deadline=None)

SYNC = "sync"
# What a recording does to its file before the crash: audio, in pieces small
# (buffered by the writer) and large (written through), and syncs.
steps = st.lists(
    st.one_of(
        st.just(SYNC),
        st.binary(max_size=300),
        st.tuples(st.integers(0, 2**32), st.integers(1, 3 * WRITE_BATCH_BYTES)).map(
            lambda seedAndSize: random.Random(seedAndSize[0]).randbytes(seedAndSize[1])
        ),
    ),
    max_size=8,
)


def provisional_sidecar(fmt: WavFormat, wav_path: str) -> dict:
    """The sidecar a recording writes at Start, as recsvc.session writes it:
    status "recording", what the phone told us, no audio yet."""
    return RecordingSummary(
        info=INFO,
        audio_format=FORMAT_NAME[fmt],
        file=os.path.basename(wav_path),
        started_at=STARTED,
        stopped_at=None,
        stop_reason="",
        stopped_by="",
        data_bytes=0,
        frames=0,
        sample_rate=fmt.sample_rate,
        stats=MediaStats(),
        rtp_port=40002,
    ).to_json()


def read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def tree(root: str) -> dict[str, bytes]:
    """Every file under ``root`` (relative name -> contents)."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            files[os.path.relpath(path, root)] = read(path)
    return files


class RecoveryTestCase(SynchronousTestCase):
    def make_root(self) -> str:
        root = self.mktemp()
        os.makedirs(os.path.join(root, *FOLDER))
        return root

    def wav_path(self, root: str, stem: str = STEM) -> str:
        return os.path.join(root, *FOLDER, stem + ".wav")

    def crashed_partial(self, fmt: WavFormat, plan: list) -> tuple[bytes, bytes]:
        """Record ``plan`` with the real writer; returns what its partial file
        held at that moment (what a crash leaves) and all the audio written."""
        folder = self.mktemp()
        os.makedirs(folder)
        writer = WavFileWriter(os.path.join(folder, "call.wav"), fmt)
        written = b""
        try:
            for step in plan:
                if step == SYNC:
                    writer.sync(durable=False)
                else:
                    writer.write(step)
                    written += step
            return read(os.path.join(folder, "call.wav.part")), written
        finally:
            writer.close()

    def recorded_partial(self, fmt: WavFormat, audio: bytes) -> bytes:
        """The partial file of a recording that wrote ``audio`` and synced."""
        partial, _ = self.crashed_partial(fmt, [audio, SYNC])
        return partial

    def finished_wav(self, fmt: WavFormat, audio: bytes) -> bytes:
        """The file the writer finishes after writing ``audio``."""
        folder = self.mktemp()
        os.makedirs(folder)
        writer = WavFileWriter(os.path.join(folder, "call.wav"), fmt)
        writer.write(audio)
        writer.close()
        return read(writer.path)

    def assert_valid_wav(self, data: bytes, fmt: WavFormat) -> bytes:
        """The chunks add up to exactly the file, odd chunks are padded, the
        format is ``fmt`` with its fact chunk. Returns the data chunk."""
        return check_wav(self, data, fmt)

    def assert_finished_sidecar(self, wav: str, fmt: WavFormat, audio: bytes) -> dict:
        """The sidecar beside ``wav`` says a server crash ended a recording
        of ``audio``; returns it."""
        sidecar = read_json(sidecar_path(wav))
        frames = len(audio) // fmt.block_align
        self.assertEqual(
            {key: sidecar.get(key) for key in (
                "status", "stop_reason", "stopped_by", "interrupted", "bytes",
                "duration_s", "sample_rate", "file",
            )},
            {
                "status": "finished",
                "stop_reason": CRASH_REASON,
                "stopped_by": "server",
                "interrupted": True,
                "bytes": len(audio),
                "duration_s": round(frames / fmt.sample_rate, 3),
                "sample_rate": fmt.sample_rate,
                "file": os.path.basename(wav),
            },
        )
        return sidecar


class RepairWavTests(RecoveryTestCase):
    @CRASH_SETTINGS
    @given(fmt=st.sampled_from([ALAW, PCM16]), plan=steps, data=st.data())
    def test_crash_anywhere_leaves_a_playable_prefix(self, fmt, plan, data):
        """
        A partial file cut at any byte, synced or not, is repaired into a valid
        WAV (RIFF size + 8 is the length, the data size the bytes present less
        a trailing partial sample, an odd 8-bit chunk padded, the fact chunk
        counting the samples) whose audio is exactly a prefix of what was
        written; `repair_wav` returns its data size. Cut inside the header,
        it raises `DamagedFile` and leaves the file as it was.
        """
        partial, written = self.crashed_partial(fmt, plan)
        cut = data.draw(st.integers(0, len(partial)), label="cut")
        path = self.mktemp()
        write(path, partial[:cut])
        header = HEADER_LENGTH[fmt]
        if cut < header:
            self.assertRaises(DamagedFile, repair_wav, path)
            self.assertEqual(read(path), partial[:cut])
            return
        present = cut - header
        expected = written[:present - present % fmt.block_align]
        size = repair_wav(path)
        audio = self.assert_valid_wav(read(path), fmt)
        self.assertEqual(audio, expected)
        self.assertEqual(size, len(expected))

    def test_header_only(self):
        """
        A partial file cut right after its header is a valid, empty WAV; one
        byte shorter, it is damaged.
        """
        for fmt in (ALAW, PCM16):
            partial = self.recorded_partial(fmt, b"\x01\x02\x03\x04")
            path = self.mktemp()
            write(path, partial[:HEADER_LENGTH[fmt]])
            self.assertEqual(repair_wav(path), 0)
            self.assertEqual(self.assert_valid_wav(read(path), fmt), b"")
            write(path, partial[:HEADER_LENGTH[fmt] - 1])
            self.assertRaises(DamagedFile, repair_wav, path)

    def test_not_a_wav(self):
        """
        An empty file and one without a RIFF/WAVE header raise `DamagedFile`.
        """
        for content in (b"", b"RIFF", b"\0" * 200, b"RIFF\0\0\0\0WAVX" + b"\0" * 100):
            path = self.mktemp()
            write(path, content)
            self.assertRaises(DamagedFile, repair_wav, path)
            self.assertEqual(read(path), content)

    def test_odd_alaw_is_padded(self):
        """
        An odd number of A-law bytes stays odd in the data chunk and gets a
        pad byte after it; the stale sizes a sync wrote are corrected.
        """
        partial = self.recorded_partial(ALAW, b"\x11\x22") + b"\x33"
        path = self.mktemp()
        write(path, partial)
        self.assertEqual(repair_wav(path), 3)
        data = read(path)
        self.assertEqual(len(data), HEADER_LENGTH[ALAW] + 4)
        self.assertEqual(self.assert_valid_wav(data, ALAW), b"\x11\x22\x33")

    def test_trailing_partial_sample_dropped(self):
        """
        A 16-bit file cut in the middle of a sample loses that half sample.
        """
        partial = self.recorded_partial(PCM16, b"\x01\x02\x03\x04\x05\x06")[:-1]
        path = self.mktemp()
        write(path, partial)
        self.assertEqual(repair_wav(path), 4)
        self.assertEqual(self.assert_valid_wav(read(path), PCM16), b"\x01\x02\x03\x04")

    def test_crash_while_closing(self):
        """
        A crash after the writer finished the file but before it was renamed
        (the pad byte of odd A-law already written) still yields a valid WAV
        holding all the audio: nothing is lost but a pad byte may be kept as
        a sample.
        """
        for fmt, audio in ((ALAW, b"\x10\x20\x30"), (ALAW, b"\x10\x20"), (PCM16, b"\x10\x20\x30\x40")):
            path = self.mktemp()
            write(path, self.finished_wav(fmt, audio))
            size = repair_wav(path)
            kept = self.assert_valid_wav(read(path), fmt)
            self.assertEqual(size, len(kept))
            self.assertEqual(kept[:len(audio)], audio)
            self.assertLessEqual(len(kept) - len(audio), 1)


class RecoverAllTests(RecoveryTestCase):
    @CRASH_SETTINGS
    @given(
        fmt=st.sampled_from([ALAW, PCM16]), plan=steps, withSidecar=st.booleans(),
        data=st.data(),
    )
    def test_crash_anywhere_is_recovered_once(self, fmt, plan, withSidecar, data):
        """
        Whatever byte a crash cut a partial file at, `recover_all` leaves it
        as NAME.wav, a valid WAV holding a prefix of the audio with a finished
        sidecar, or (cut inside the header) as NAME.wav.damaged with exactly
        the bytes it had; no partial file remains and running it again
        changes nothing.
        """
        partial, written = self.crashed_partial(fmt, plan)
        cut = data.draw(st.integers(0, len(partial)), label="cut")
        root = self.make_root()
        wav = self.wav_path(root)
        write(wav + ".part", partial[:cut])
        if withSidecar:
            Storage(root).write_sidecar(wav, provisional_sidecar(fmt, wav))
        recovered = recover_all(root, Storage(root).write_sidecar)
        self.assertFalse(os.path.exists(wav + ".part"))
        if cut < HEADER_LENGTH[fmt]:
            self.assertEqual(recovered, [])
            self.assertFalse(os.path.exists(wav))
            self.assertEqual(read(wav + ".damaged"), partial[:cut])
        else:
            present = cut - HEADER_LENGTH[fmt]
            expected = written[:present - present % fmt.block_align]
            self.assertEqual(self.assert_valid_wav(read(wav), fmt), expected)
            sidecar = self.assert_finished_sidecar(wav, fmt, expected)
            self.assertEqual(recovered, [Recovered(wav, len(expected), sidecar["duration_s"])])
            if withSidecar:
                self.assertEqual((sidecar["id"], sidecar["remote_number"]), ("rec-42", "+4930123"))
        before = tree(root)
        self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])
        self.assertEqual(tree(root), before)

    def test_provisional_sidecar_finished(self):
        """
        A partial file with the sidecar written at Start becomes NAME.wav; its
        sidecar is finished as interrupted by a server crash, with the size
        and duration of the repaired file, and keeps what the phone told us
        at Start (id, device, direction, numbers, names, start time).
        """
        root = self.make_root()
        wav = self.wav_path(root)
        audio = bytes(range(256)) * 40  # 1.28 s of A-law
        write(wav + ".part", self.recorded_partial(ALAW, audio))
        Storage(root).write_sidecar(wav, provisional_sidecar(ALAW, wav))
        recovered = recover_all(root, Storage(root).write_sidecar)
        self.assertEqual(recovered, [Recovered(wav, len(audio), 1.28)])
        self.assertEqual(self.assert_valid_wav(read(wav), ALAW), audio)
        self.assertFalse(os.path.exists(wav + ".part"))
        sidecar = self.assert_finished_sidecar(wav, ALAW, audio)
        self.assertEqual(
            {key: sidecar[key] for key in (
                "id", "device", "codec", "format", "direction", "local_number",
                "local_name", "remote_number", "remote_name", "started_at", "peer",
            )},
            {
                "id": "rec-42", "device": "00:A8:59:12:34:56", "codec": "PCMA",
                "format": "g711", "direction": "out", "local_number": "201",
                "local_name": "Front desk", "remote_number": "+4930123",
                "remote_name": "Bob", "started_at": iso_utc(STARTED),
                "peer": "192.0.2.7",
            },
        )

    def test_stopped_at_is_when_the_file_was_last_written(self):
        """
        The finished sidecar says the recording stopped when its partial file
        was last written before the crash, not when it was recovered.
        """
        root = self.make_root()
        wav = self.wav_path(root)
        write(wav + ".part", self.recorded_partial(ALAW, b"\x55" * 800))
        Storage(root).write_sidecar(wav, provisional_sidecar(ALAW, wav))
        crashedAt = STARTED + 42
        os.utime(wav + ".part", (crashedAt, crashedAt))
        recover_all(root, Storage(root).write_sidecar)
        self.assertEqual(read_json(sidecar_path(wav))["stopped_at"], iso_utc(crashedAt))

    def test_partial_without_sidecar_gets_one(self):
        """
        A partial file whose Start sidecar was never written (crash right
        after Start) gets a finished sidecar of its own.
        """
        root = self.make_root()
        wav = self.wav_path(root)
        audio = b"\x01\x02" * 4000  # 0.5 s of 16-bit PCM
        write(wav + ".part", self.recorded_partial(PCM16, audio))
        self.assertEqual(recover_all(root, Storage(root).write_sidecar), [Recovered(wav, len(audio), 0.5)])
        self.assertEqual(self.assert_valid_wav(read(wav), PCM16), audio)
        self.assert_finished_sidecar(wav, PCM16, audio)

    def test_recover_twice_changes_nothing(self):
        """
        A second recovery finds nothing to do: it returns [], repairs nothing
        again and rewrites no sidecar; the recovered files are all still there.
        """
        root = self.make_root()
        for stem, fmt in (("a", ALAW), ("b", PCM16)):
            wav = self.wav_path(root, stem)
            write(wav + ".part", self.recorded_partial(fmt, b"\x07" * 1001))
            Storage(root).write_sidecar(wav, provisional_sidecar(fmt, wav))
        write(self.wav_path(root, "c") + ".part", b"RIFF")
        self.assertEqual(len(recover_all(root, Storage(root).write_sidecar)), 2)
        first = tree(root)
        self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])
        self.assertEqual(tree(root), first)
        self.assertEqual(
            sorted(os.path.basename(name) for name in first),
            ["a.json", "a.wav", "b.json", "b.wav", "c.wav.damaged"],
        )

    def test_sidecar_recording_beside_finished_wav(self):
        """
        A crash between renaming the finished WAV and writing its sidecar
        leaves a "recording" sidecar beside NAME.wav: the sidecar is finished
        with the file's data size and the WAV is left untouched.
        """
        for fmt, audio in ((PCM16, b"\x01\x02" * 8000), (ALAW, b"\x03" * 8000)):
            root = self.make_root()
            wav = self.wav_path(root)
            write(wav, self.finished_wav(fmt, audio))
            Storage(root).write_sidecar(wav, provisional_sidecar(fmt, wav))
            finished = read(wav)
            self.assertEqual(recover_all(root, Storage(root).write_sidecar), [Recovered(wav, len(audio), 1.0)])
            self.assertEqual(read(wav), finished)
            sidecar = self.assert_finished_sidecar(wav, fmt, audio)
            self.assertEqual(sidecar["id"], "rec-42")
            self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])

    def test_sidecar_recording_beside_finished_odd_wav(self):
        """
        For a finished A-law file with an odd number of samples, the pad byte
        after its data chunk is not counted as audio in the finished sidecar.
        """
        root = self.make_root()
        wav = self.wav_path(root)
        audio = b"\x03" * 8001
        write(wav, self.finished_wav(ALAW, audio))
        Storage(root).write_sidecar(wav, provisional_sidecar(ALAW, wav))
        self.assertEqual(recover_all(root, Storage(root).write_sidecar), [Recovered(wav, 8001, 1.0)])
        self.assert_finished_sidecar(wav, ALAW, audio)

    def test_headerless_partial_becomes_damaged(self):
        """
        A partial file with no complete header (empty, or cut inside it) is
        renamed NAME.wav.damaged with its bytes, never deleted, never made a
        WAV; the sidecar beside it is kept.
        """
        for content in (b"", self.recorded_partial(ALAW, b"\x01" * 10)[:30]):
            root = self.make_root()
            wav = self.wav_path(root)
            write(wav + ".part", content)
            Storage(root).write_sidecar(wav, provisional_sidecar(ALAW, wav))
            self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])
            self.assertEqual(
                sorted(tree(os.path.dirname(wav))), [STEM + ".json", STEM + ".wav.damaged"]
            )
            self.assertEqual(read(wav + ".damaged"), content)

    def test_damaged_file_does_not_stop_the_others(self):
        """
        A partial file that cannot be repaired does not keep the ones beside
        it (in any folder) from being recovered.
        """
        root = self.make_root()
        write(self.wav_path(root, "a") + ".part", b"")
        elsewhere = os.path.join(root, "other-device")
        os.makedirs(elsewhere)
        write(os.path.join(elsewhere, "z.wav.part"), self.recorded_partial(ALAW, b"\x09" * 80))
        write(self.wav_path(root, "b") + ".part", self.recorded_partial(ALAW, b"\x09" * 80))
        recovered = recover_all(root, Storage(root).write_sidecar)
        self.assertEqual(
            sorted(each.path for each in recovered),
            sorted([os.path.join(elsewhere, "z.wav"), self.wav_path(root, "b")]),
        )
        self.assertTrue(os.path.exists(self.wav_path(root, "a") + ".damaged"))

    @CRASH_SETTINGS
    @given(
        field=st.sampled_from([
            ("<H", 20), ("<H", 22), ("<I", 24), ("<I", 28), ("<H", 32), ("<H", 34),
        ]),
        value=st.integers(0, 2**32 - 1),
    )
    def test_nonsense_header_never_stops_recovery(self, field, value):
        """
        Whatever a partial file's fmt fields say (tag, channels, rate, byte
        rate, alignment, bits), `recover_all` does not raise and leaves it as
        a valid NAME.wav or as NAME.wav.damaged, and still recovers the file
        beside it.
        """
        code, offset = field
        value %= 2 ** (8 * struct.calcsize(code))
        partial = bytearray(self.recorded_partial(ALAW, b"\x09" * 801))
        struct.pack_into(code, partial, offset, value)
        root = self.make_root()
        wav = self.wav_path(root, "a")
        write(wav + ".part", bytes(partial))
        write(self.wav_path(root, "b") + ".part", self.recorded_partial(PCM16, b"\x01\x02" * 8))
        recovered = recover_all(root, Storage(root).write_sidecar)
        self.assertIn(self.wav_path(root, "b"), [each.path for each in recovered])
        self.assertFalse(os.path.exists(wav + ".part"))
        if os.path.exists(wav):
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", partial, 20)
            fmt = WavFormat(tag, rate, bits, channels)
            self.assert_valid_wav(read(wav), fmt)
            self.assertEqual(read_json(sidecar_path(wav))["status"], "finished")
        else:
            self.assertEqual(read(wav + ".damaged"), bytes(partial))

    def test_active_recordings_left_alone(self):
        """
        A partial file, or a "recording" sidecar beside a NAME.wav, that
        `is_active` says belongs to this run is not touched.
        """
        root = self.make_root()
        partialWav = self.wav_path(root, "a")
        write(partialWav + ".part", self.recorded_partial(ALAW, b"\x01" * 99))
        Storage(root).write_sidecar(partialWav, provisional_sidecar(ALAW, partialWav))
        finalWav = self.wav_path(root, "b")
        write(finalWav, self.finished_wav(ALAW, b"\x01" * 99))
        Storage(root).write_sidecar(finalWav, provisional_sidecar(ALAW, finalWav))
        before = tree(root)
        active = {partialWav, finalWav}
        self.assertEqual(recover_all(root, Storage(root).write_sidecar, active.__contains__), [])
        self.assertEqual(tree(root), before)
        self.assertEqual(len(recover_all(root, Storage(root).write_sidecar)), 2)

    def test_existing_wav_never_overwritten(self):
        """
        A NAME.wav that already exists beside a NAME.wav.part is never
        overwritten, and the partial file's audio is kept beside it.
        """
        root = self.make_root()
        wav = self.wav_path(root)
        existing = self.finished_wav(ALAW, b"\x42" * 500)
        write(wav, existing)
        audio = b"\x17" * 300
        write(wav + ".part", self.recorded_partial(ALAW, audio))
        recover_all(root, Storage(root).write_sidecar)
        self.assertEqual(read(wav), existing)
        self.assertFalse(os.path.exists(wav + ".part"))
        kept = [name for name in tree(os.path.dirname(wav)) if name != STEM + ".wav"]
        self.assertTrue(
            any(audio in read(os.path.join(os.path.dirname(wav), name)) for name in kept), kept
        )


class LiveFileTests(SynchronousTestCase):
    def test_locked_partial_left_alone(self) -> None:
        """
        A partial file whose writer is still open (a recording in progress,
        whatever its modification time) is not touched by recovery.
        """
        from recsvc.storage.folder import Storage
        from recsvc.media.codec import CODECS
        from recsvc.storage.wav import WavFileWriter, WavFormat, partial_path as partial

        root = self.mktemp()
        os.makedirs(root)
        writer = WavFileWriter(os.path.join(root, "live.wav"), WavFormat.stored(CODECS["PCMA"]))
        writer.write(b"\x01" * 100)
        writer.sync()
        self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])
        self.assertTrue(os.path.exists(partial(writer.path)))
        writer.close()
        self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])


class SymbolicLinkTests(RecoveryTestCase):
    """Recovery never follows a symbolic link below the storage root: a
    file it points at outside the root keeps every byte, and the link is
    left for a person with a line in the log. The root itself may be a link
    (an admin's mounted disk)."""

    def outside_file(self, content: bytes) -> str:
        folder = self.mktemp()
        os.makedirs(folder)
        path = os.path.abspath(os.path.join(folder, "victim.wav"))
        write(path, content)
        return path

    def test_linked_partial_not_repaired(self) -> None:
        """A NAME.wav.part that is a link to a damaged WAV outside the root:
        the WAV is not repaired (not truncated, its header not patched), the
        link is neither renamed nor finished, its sidecar stays unfinished."""
        victim = self.outside_file(self.recorded_partial(PCM16, b"\x01\x02" * 40) + b"\x03")
        before = read(victim)
        root = self.make_root()
        wav = self.wav_path(root)
        os.symlink(victim, wav + ".part")
        Storage(root).write_sidecar(wav, provisional_sidecar(PCM16, wav))
        with capturedLogs() as events:
            self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])
        self.assertEqual(read(victim), before)
        self.assertTrue(os.path.islink(wav + ".part"))
        self.assertFalse(os.path.lexists(wav))
        self.assertEqual(read_json(sidecar_path(wav))["status"], "recording")
        [said] = [event for event in events if event.get("file") == wav + ".part"]
        self.assertEqual(said["log_level"], LogLevel.warn)

    def test_linked_finished_wav_not_read(self) -> None:
        """A NAME.wav that is a link beside an unfinished sidecar (as a
        crash between the two leaves them): the sidecar is not finished from
        the linked file's header."""
        victim = self.outside_file(self.finished_wav(ALAW, b"\xd5" * 80))
        root = self.make_root()
        wav = self.wav_path(root)
        os.symlink(victim, wav)
        Storage(root).write_sidecar(wav, provisional_sidecar(ALAW, wav))
        self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])
        self.assertEqual(read_json(sidecar_path(wav))["status"], "recording")

    def test_linked_folder_not_walked(self) -> None:
        """A folder below the root that is a link is not walked into."""
        outside = self.make_root()
        wav = self.wav_path(outside)
        partial = self.recorded_partial(PCM16, b"\x01\x02" * 40) + b"\x03"
        write(wav + ".part", partial)
        root = self.mktemp()
        os.makedirs(root)
        os.symlink(os.path.abspath(outside), os.path.join(root, "elsewhere"))
        self.assertEqual(recover_all(root, Storage(root).write_sidecar), [])
        self.assertEqual(read(wav + ".part"), partial)

    def test_linked_root_is_followed(self) -> None:
        """The root itself may be a link: what is below it is recovered."""
        real = self.make_root()
        wav = self.wav_path(real)
        write(wav + ".part", self.recorded_partial(PCM16, b"\x01\x02" * 40))
        root = self.mktemp()
        os.symlink(os.path.abspath(real), root)
        [recovered] = recover_all(root, Storage(root).write_sidecar)
        self.assertEqual(recovered.data_bytes, 80)
        self.assertTrue(os.path.isfile(wav))
