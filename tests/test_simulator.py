"""Tests for recsvc.simulator and recsvc-phone: simulated phones on the reactor."""

from __future__ import annotations

import os
import socket
import wave
from array import array

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from recsvc import g711
from recsvc.phonecli import audio_from_wav
from recsvc.simulator import (
    Faults,
    call_audio,
    finished_recordings,
    percentile,
    run_calls,
    tone,
    verify,
)
from tests.test_endtoend import LoopbackServiceMixin, recordings, sidecar_of


class SimulatedPhonesTests(LoopbackServiceMixin, TestCase):
    @inlineCallbacks
    def test_calls_with_faults_verified(self):
        """Several phones at once, paced in real time with loss,
        reordering, duplicates and jitter: every start succeeds, latencies
        are measured, and every recording is byte-exact against what each
        phone sent."""
        results = yield run_calls(
            reactor, "127.0.0.1", self.port, calls=4, seconds=1.0,
            faults=Faults(loss=0.05, reorder=0.05, duplicates=0.05, jitter_ms=5),
        )
        self.assertEqual([r.started for r in results], [True] * 4)
        self.assertTrue(all(r.start_latency is not None and r.stop_latency is not None for r in results))
        for result in results:
            self.assertIsNone(verify(finished_recordings(self.root), result), result.recording_id)
            # 50 packets planned, 5% lost, 5% sent twice (counted twice).
            self.assertTrue(40 <= result.packets_sent <= 60, result.packets_sent)

    @inlineCallbacks
    def test_dropped_connection(self):
        """A phone that drops its connection instead of stopping leaves a
        finished recording stopped by the connection, still byte-exact."""
        [result] = yield run_calls(
            reactor, "127.0.0.1", self.port, calls=1, seconds=0.5,
            faults=Faults(drop_connection=True),
        )
        self.assertIsNone(result.stop_latency)
        yield self.wait_for(lambda: "sim-0" in recordings(self.root))
        self.assertEqual(sidecar_of(recordings(self.root)["sim-0"])["stopped_by"], "connection")
        self.assertIsNone(verify(finished_recordings(self.root), result))

    @inlineCallbacks
    def test_refused_start_reported(self):
        """A refused start is reported with its reason; nothing is sent."""
        [result] = yield run_calls(
            reactor, "127.0.0.1", self.port, calls=1, seconds=0.2, codec="G729",
            audio=lambda index: b"\xff" * 1600,
        )
        self.assertFalse(result.started)
        self.assertIn("unsupported codec G729", result.start_reason)
        self.assertEqual(result.packets_sent, 0)


class NoServerTests(TestCase):
    @inlineCallbacks
    def test_unreachable_server_reported(self):
        """A phone that cannot reach the server reports a failed start
        (the other calls' results are not lost), and all_started still
        comes, counting it."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # closed again: nothing listens
        started = []
        results = yield run_calls(
            reactor, "127.0.0.1", port, calls=2, seconds=0.2,
            all_started=lambda: started.append(True),
        )
        self.assertEqual([r.started for r in results], [False, False])
        self.assertIn("control connection failed", results[0].start_reason)
        self.assertEqual(started, [True])


class HelperTests(SynchronousTestCase):
    def test_tone_lengths(self) -> None:
        """A tone is 8000 codec bytes a second for PCMA, PCMU and G722."""
        for codec in ("PCMA", "PCMU", "G722"):
            self.assertEqual(len(tone(0.5, codec)), 4000)

    def test_call_audio_never_alike(self) -> None:
        """Each call's audio is as long as asked; no two packets' worth of
        it are alike, within a call or across calls, so a packet recorded in
        the wrong place or call shows in the byte check."""
        audio = call_audio(3, 2.0)
        calls = [bytes(audio(index)) for index in range(3)]
        self.assertEqual([len(call) for call in calls], [16000] * 3)
        packets = [call[i:i + 160] for call in calls for i in range(0, 16000, 160)]
        self.assertEqual(len(set(packets)), len(packets))

    def test_percentile(self) -> None:
        """p50 and p99 of a list; None for none."""
        values = [float(v) for v in range(1, 101)]
        self.assertEqual((percentile(values, 0.5), percentile(values, 0.99)), (51.0, 100.0))
        self.assertIsNone(percentile([], 0.5))

    def test_wav_source(self) -> None:
        """A 16-bit mono WAV is sent as the codec's encoding of its samples."""
        path = self.mktemp()
        samples = array("h", (n * 37 % 20000 - 10000 for n in range(800)))
        with wave.open(path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(samples.tobytes())
        self.assertEqual(audio_from_wav(path, "PCMA"), g711.encode_alaw(samples.tobytes()))
        self.assertEqual(audio_from_wav(path, "PCMU"), g711.encode_ulaw(samples.tobytes()))
        self.assertEqual(len(audio_from_wav(path, "G722")), 800)
        os.unlink(path)
