"""Tests for recsvc.phonesim.verification: each recording of a recsvc-phone run is
found by its id and its start within the run (never an earlier run's file
with the same id) and compared with what its phone sent."""

from __future__ import annotations

import json
import os
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from recsvc.media import g711
from recsvc.media.codec import CODECS
from recsvc.phonesim.fleet import CallSetup
from recsvc.phonesim.simulator import CallResult
from recsvc.phonesim.verification import (
    ApiRecordings,
    FoundFile,
    RunWindow,
    StorageFolder,
    VerificationUnavailable,
    compare,
    files_of_run,
    finished_sidecars,
    verify_run,
)
from recsvc.storage.wav import WavFormat, wav_header

RUN = RunWindow(1_790_000_000.0, 1_790_000_030.0)
SETUP = CallSetup("k3x9a7qz-3", "00:a8:59:00:00:03", "out", "13800000003")
# Audio as the simulator sends it: no two packets alike, no silence.
SENT = bytes((n * 7 + n // 160) % 251 + 1 for n in range(8000))
SILENCE = b"\xd5"


def iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment * 1000) % 1000:03d}Z"


def sidecar(recording_id: str = SETUP.recording_id, started: float = RUN.began + 1,
            **fields: object) -> dict:
    """A finished sidecar of what SETUP said at Start."""
    return {"id": recording_id, "status": "finished", "started_at": iso(started),
            "device": SETUP.device, "direction": SETUP.direction,
            "remote_number": SETUP.remote_number, "file": f"{recording_id}.wav", "part": 1,
            "dtmf": [], **fields}


def wav(data: bytes, codec: str = "PCMA", pcm16: bool = False) -> bytes:
    fmt = (WavFormat.pcm16 if pcm16 else WavFormat.stored)(CODECS[codec])
    return wav_header(fmt, len(data)).header + data


def result(expected: bytes = SENT, keys: tuple[tuple[str, int], ...] = (),
           restart_at: int | None = None) -> CallResult:
    return CallResult(SETUP, True, "", 0.001, 0.002, 50, expected, keys, restart_at)


class FilesOfRunTests(SynchronousTestCase):
    def test_earlier_run_with_the_same_id_never_taken(self) -> None:
        """Of two files with the recording's id, the one that started
        within the run is taken, in whichever order they were found; the
        earlier run's never is."""
        earlier = FoundFile(sidecar(started=RUN.began - 3600), "earlier.wav")
        mine = FoundFile(sidecar(), "mine.wav")
        for found in ([earlier, mine], [mine, earlier]):
            self.assertEqual(files_of_run(found, SETUP.recording_id, RUN), [mine])

    def test_only_an_earlier_run(self) -> None:
        """Only an earlier run's file with the id: not taken, and said
        when it started and what the run's window was."""
        earlier = FoundFile(sidecar(started=RUN.began - 3600), "earlier.wav")
        problem = files_of_run([earlier], SETUP.recording_id, RUN)
        self.assertIsInstance(problem, str)
        self.assertIn("no recording of this run", problem)
        self.assertIn(iso(RUN.began - 3600), problem)
        self.assertIn(str(RUN), problem)

    def test_window_edges(self) -> None:
        """A start within SLACK_S of the run's ends counts (the clocks'
        rounding); further out it does not."""
        self.assertTrue(RUN.holds(RUN.began - 1.5) and RUN.holds(RUN.ended + 1.5))
        self.assertFalse(RUN.holds(RUN.began - 2.5) or RUN.holds(RUN.ended + 2.5))

    def test_unfinished_and_other_ids_not_taken(self) -> None:
        """A sidecar still recording, another id, a start that is not a
        time: none is the recording."""
        found = [FoundFile(sidecar(status="recording"), "a"),
                 FoundFile(sidecar("k3x9a7qz-30"), "b"),
                 FoundFile({**sidecar(), "started_at": "yesterday"}, "c")]
        self.assertEqual(files_of_run(found[:2], SETUP.recording_id, RUN), "no finished recording")
        self.assertIn("no recording of this run", files_of_run(found, SETUP.recording_id, RUN))

    def test_parts_in_order(self) -> None:
        """A recording in several files: its parts, first to last."""
        second = FoundFile(sidecar(part=2, started=RUN.began + 20), "2.wav")
        first = FoundFile(sidecar(part=1), "1.wav")
        self.assertEqual(files_of_run([second, first], SETUP.recording_id, RUN), [first, second])


class CompareTests(SynchronousTestCase):
    def check(self, recorded: bytes, called: CallResult | None = None, codec: str = "PCMA",
              pcm16: bool = False, **fields: object) -> str | None:
        return compare(called or result(), codec,
                       [FoundFile(sidecar(**fields), "x.wav")], [wav(recorded, codec, pcm16)])

    def test_what_was_sent(self) -> None:
        """The bytes sent, in a WAV file, with the sidecar of the Start's
        fields: nothing wrong."""
        self.assertIsNone(self.check(SENT))

    def test_one_wrong_byte(self) -> None:
        """One byte changed is reported, with where it is."""
        changed = SENT[:4321] + bytes([SENT[4321] ^ 1]) + SENT[4322:]
        self.assertEqual(self.check(changed), "8000 bytes recorded, 8000 expected; the first "
                                              "difference at byte 4321 (0.540 s)")

    def test_shorter(self) -> None:
        """A recording that ends early is reported with both lengths."""
        self.assertIn("7840 bytes recorded, 8000 expected", self.check(SENT[:7840]))

    def test_what_the_start_said(self) -> None:
        """The sidecar must name the phone, direction and number the Start
        gave."""
        self.assertEqual(self.check(SENT, device="00:a8:59:00:00:04"),
                         "the sidecar's device is '00:a8:59:00:00:04', the phone said "
                         "'00:a8:59:00:00:03'")
        self.assertIn("direction is 'in'", self.check(SENT, direction="in"))
        self.assertIn("remote_number is '1'", self.check(SENT, remote_number="1"))

    def test_pcm16(self) -> None:
        """Stored as 16-bit PCM (storage.format pcm16), the recording is
        compared as the G.711 it was sent as; the server's silence (zero
        samples) is the codec's silence; a wrong sample is reported."""
        expected = SENT[:4000] + SILENCE * 160 + SENT[4160:]
        stored = g711.decode_alaw(SENT[:4000]) + b"\0\0" * 160 + g711.decode_alaw(SENT[4160:])
        self.assertIsNone(self.check(stored, result(expected), pcm16=True))
        wrong = stored[:100] + b"\x01\x40" + stored[102:]
        self.assertIn("the first difference at byte 50", self.check(wrong, result(expected),
                                                                    pcm16=True))
        ulaw = g711.encode_ulaw(g711.decode_alaw(SENT))
        self.assertIsNone(self.check(g711.decode_ulaw(ulaw), result(ulaw), "PCMU", pcm16=True))

    def test_other_formats(self) -> None:
        """A file in another format than the codec's, or not a WAV file."""
        self.assertIn("stored as WAV format 6 of 8 bits, not as PCMU",
                      compare(result(), "PCMU", [FoundFile(sidecar(), "x")], [wav(SENT)]))
        self.assertIn("not a WAV file", compare(result(), "PCMA", [FoundFile(sidecar(), "x")],
                                                [b"RIFX" + SENT]))

    def test_keys(self) -> None:
        """The keys pressed must be listed, in order, where they were
        pressed (to the sidecar's millisecond)."""
        pressed = result(keys=(("1", 1600), ("#", 4800)))
        listed = [{"digit": "1", "offset_s": 0.2, "duration_ms": 160.0},
                  {"digit": "#", "offset_s": 0.6, "duration_ms": 160.0}]
        self.assertIsNone(self.check(SENT, pressed, dtmf=listed))
        self.assertEqual(self.check(SENT, pressed, dtmf=listed[:1]), "keys '1' listed, '1#' pressed")
        late = [listed[0], {**listed[1], "offset_s": 0.62}]
        self.assertEqual(self.check(SENT, pressed, dtmf=late),
                         "key # listed at 0.620 s, pressed at 0.600 s")

    def test_keys_over_parts(self) -> None:
        """A recording in two files: the second's keys are placed after
        the first file's audio, and the audio is the two together."""
        pressed = result(keys=(("1", 1600), ("2", 6400)))
        files = [FoundFile(sidecar(dtmf=[{"digit": "1", "offset_s": 0.2}]), "1"),
                 FoundFile(sidecar(part=2, dtmf=[{"digit": "2", "offset_s": 0.3}]), "2")]
        self.assertIsNone(compare(pressed, "PCMA", files, [wav(SENT[:4000]), wav(SENT[4000:])]))

    def test_restarted_stream_placed_by_the_clock(self) -> None:
        """Where the stream restarted, the server may put what follows a
        little later (silence between) or earlier (over silence the
        expectation has): the same audio; keys after it move with it."""
        later = SENT[:4000] + SILENCE * 6 + SENT[4000:]
        pressed = result(keys=(("5", 6000),), restart_at=4000)
        self.assertIsNone(self.check(later, pressed, dtmf=[{"digit": "5", "offset_s": 0.751}]))
        lost_before = SENT[:3840] + SILENCE * 160 + SENT[4000:]  # the old stream's last packet
        earlier = SENT[:3840] + SILENCE * 100 + SENT[4000:]
        self.assertIsNone(self.check(earlier, result(lost_before, restart_at=4000)))

    def test_restart_allowance_is_silence_only(self) -> None:
        """The allowance at a restart is silence only, at the restart only,
        and only where the stream restarted."""
        not_silence = SENT[:4000] + b"\x01" * 6 + SENT[4000:]
        self.assertIn("8006 bytes recorded", self.check(not_silence, result(restart_at=4000)))
        elsewhere = SENT[:3000] + SILENCE * 6 + SENT[3000:]
        self.assertIn("8006 bytes recorded", self.check(elsewhere, result(restart_at=4000)))
        later = SENT[:4000] + SILENCE * 6 + SENT[4000:]
        self.assertIn("8006 bytes recorded", self.check(later, result()))
        over_audio = SENT[:3900] + SENT[4000:]
        self.assertIn("7900 bytes recorded", self.check(over_audio, result(restart_at=4000)))


class FinishedSidecarsTests(SynchronousTestCase):
    def test_reads_only_recent_finished_sidecars(self) -> None:
        """Sidecars last written before ``since`` are not read; unfinished
        ones, broken ones and other JSON are left out; each file is found
        beside its sidecar."""
        root = self.mktemp()
        os.makedirs(os.path.join(root, "dev", "2026"))

        def write(name: str, body: object, mtime: float | None = None) -> None:
            path = os.path.join(root, "dev", "2026", name)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(body if isinstance(body, str) else json.dumps(body))
            if mtime is not None:
                os.utime(path, (mtime, mtime))

        write("old.json", sidecar("old"), mtime=time.time() - 86400)
        write("new.json", sidecar("new"))
        write("busy.json", sidecar("busy", status="recording"))
        write("broken.json", "{")
        write("list.json", [1, 2])
        write("escape.json", sidecar("escape", file="../../secret.wav"))
        found = finished_sidecars(root, since=time.time() - 3600)
        self.assertEqual([(f.sidecar["id"], f.location) for f in found],
                         [("new", os.path.join(root, "dev", "2026", "new.wav"))])
        self.assertEqual(sorted(f.sidecar["id"] for f in finished_sidecars(root)), ["new", "old"])


class StorageFolderTests(TestCase):
    """verify_run over a real folder: polling, patience, two runs' files."""

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.window = RunWindow(time.time() - 30, time.time())

    def store(self, name: str, data: bytes, **fields: object) -> None:
        with open(os.path.join(self.root, name + ".wav"), "wb") as handle:
            handle.write(wav(data))
        with open(os.path.join(self.root, name + ".json"), "w", encoding="utf-8") as handle:
            json.dump(sidecar(file=name + ".wav", **fields), handle)

    def verify(self, *results: CallResult, patience: float = 0.3) -> Deferred:
        return Deferred.fromCoroutine(verify_run(
            reactor, StorageFolder(self.root, self.window.began), list(results), "PCMA",
            self.window, patience=patience, poll=0.05))

    @inlineCallbacks
    def test_earlier_copy_with_the_same_id(self):
        """An earlier run's recording with the same id, its files written
        (copied) just now, is never compared: this run's is, and a wrong
        byte in this run's is reported."""
        self.store("earlier", SENT[::-1], started=self.window.began - 7200)
        self.store("mine", SENT, started=self.window.began + 1)
        self.assertEqual((yield self.verify(result())), {SETUP.recording_id: None})
        self.store("mine", SENT[:10] + b"\x00" + SENT[11:], started=self.window.began + 1)
        problems = yield self.verify(result())
        self.assertIn("the first difference at byte 10", problems[SETUP.recording_id])

    @inlineCallbacks
    def test_recording_without_audio(self):
        """A recording the server kept no WAV for (it received no audio:
        its sidecar names no file) is reported as that call's fault, with
        its stop reason; the others are still checked."""
        with open(os.path.join(self.root, "mine.json"), "w", encoding="utf-8") as handle:
            json.dump(sidecar(file=None, stop_reason="no RTP received",
                              started=self.window.began + 1), handle)
        problems = yield self.verify(result())
        self.assertEqual(problems, {SETUP.recording_id:
                                    "no audio kept: the recording ended (no RTP received) "
                                    "having received none"})

    @inlineCallbacks
    def test_waits_for_a_late_recording(self):
        """A recording not there yet (the server finishes it just after the
        Stop) is looked for again until it is."""
        reactor.callLater(0.15, self.store, "mine", SENT, started=self.window.began + 1)
        self.assertEqual((yield self.verify(result(), patience=5)), {SETUP.recording_id: None})

    @inlineCallbacks
    def test_gives_up_after_patience(self):
        """A recording that never comes is reported missing once no other
        has come for ``patience`` seconds; calls that did not start are not
        looked for."""
        began = time.monotonic()
        unstarted = CallResult(CallSetup("k3x9a7qz-4", "d", "out", "1"), False, "busy", None,
                               None, 0)
        self.assertEqual((yield self.verify(result(), unstarted)),
                         {SETUP.recording_id: "no finished recording"})
        self.assertLess(time.monotonic() - began, 3)

    @inlineCallbacks
    def test_no_folder(self):
        """A folder that is not there: the check cannot be made, and says
        which option named it."""
        self.root = os.path.join(self.root, "nowhere")
        error = yield self.assertFailure(self.verify(result()), VerificationUnavailable)
        self.assertEqual(str(error), f"--storage-root {self.root}: no such folder")


class ApiRecordingsTests(TestCase):
    """ApiRecordings against what is not recsvc's API (recsvc's own is in
    tests/test_simulator.py's end-to-end tests)."""

    @inlineCallbacks
    def test_nothing_listening(self):
        """No server at the URL: said so, with what to give instead."""
        port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        url = f"http://127.0.0.1:{port.getHost().port}"
        yield port.stopListening()
        recordings = ApiRecordings(reactor, url)
        error = yield self.assertFailure(recordings.files(["a-0"]), VerificationUnavailable)
        self.assertEqual(str(error), f"no recsvc API answers at {url} (ConnectionRefusedError); "
                                     "give --storage-root or --api-url")
        yield recordings.close()

    @inlineCallbacks
    def test_not_recsvc(self):
        """A web server that is not recsvc's API (/healthz answers no
        recsvc JSON): said so, and nothing else is asked of it."""
        site = Site(Resource())
        requests = []
        site.log = lambda request: requests.append(request.uri)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}"
        recordings = ApiRecordings(reactor, url)
        error = yield self.assertFailure(recordings.files(["a-0", "a-1"]), VerificationUnavailable)
        self.assertEqual(str(error), f"{url} does not answer as recsvc's HTTP API (/healthz: "
                                     "HTTP 404); give --storage-root or --api-url")
        self.assertEqual(requests, [b"/healthz"])
        yield recordings.close()

    @inlineCallbacks
    def test_no_answer(self):
        """A server that takes the connection and never answers: given up
        after the timeout, said so."""
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}"
        recordings = ApiRecordings(reactor, url, timeout=0.2)
        error = yield self.assertFailure(recordings.files(["a-0"]), VerificationUnavailable)
        self.assertEqual(str(error), f"{url}/healthz: no answer within 0.2 s")
        yield recordings.close()

    @inlineCallbacks
    def test_server_error_shown_safely(self):
        """An error the API answers with is shown with its status and its
        words, control characters (terminal escapes) replaced."""
        root = Resource()
        root.putChild(b"healthz", JsonResource(200, {"status": "ok"}))
        api = Resource()
        root.putChild(b"api", api)
        recordings_resource = Resource()
        api.putChild(b"recordings", recordings_resource)
        recordings_resource.putChild(b"a-0", JsonResource(500, {"error": "disk \x1b[2Jon fire"}))
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}"
        recordings = ApiRecordings(reactor, url)
        error = yield self.assertFailure(recordings.files(["a-0"]), VerificationUnavailable)
        self.assertEqual(str(error), f"{url}/api/recordings/a-0: HTTP 500: disk ?[2Jon fire")
        yield recordings.close()


class JsonResource(Resource):
    """Answers every GET with ``status`` and ``body`` as JSON."""

    isLeaf = True

    def __init__(self, status: int, body: object) -> None:
        super().__init__()
        self.status, self.body = status, body

    def render_GET(self, request) -> bytes:
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.body).encode()
