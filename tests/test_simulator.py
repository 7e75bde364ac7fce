"""Tests for recsvc.phonesim.simulator and recsvc-phone: simulated phones on the
reactor, what they send, the command's options, and runs against the
service over loopback checked through its HTTP API or its folder."""

from __future__ import annotations

import io
import os
import random
import socket
import subprocess
import sys
import time
import wave
from array import array

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from recsvc.media import g711

from recsvc.phonesim import cli as phonecli
from recsvc.media.dtmf import parse_event
from recsvc.phonesim.fleet import Fleet, key_presses, parse_source_addresses
from recsvc.passwords import hash_password
from recsvc.phonesim.phone import expected_keys, plan_call, restart_tick
from recsvc.phonesim.cli import audio_from_wav, options, parser, run_phones
from recsvc.media.rtp import parse_rtp
from recsvc.phonesim.simulator import (
    Faults,
    PlannedStream,
    call_audio,
    percentile,
    run_calls,
    tone,
)
from recsvc.phonesim.verification import ApiRecordings, RunWindow, StorageFolder, verify_run
from tests.support.loopback import LoopbackServiceMixin
from tests.support.recordings import recordings, sidecar_of
from tests.support.pipes import status_when_reader_leaves


class PhoneRunMixin:
    """recsvc-phone's run, in this process, against the loopback service."""

    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        http = yield self.tree.getServiceNamed("http").whenListening()
        self.api = f"http://127.0.0.1:{http.getHost().port}"

    @inlineCallbacks
    def phone(self, *arguments: str, stdin: str | None = None,
              env: dict[str, str] | None = None):
        """(exit status, output) of recsvc-phone with ``arguments`` (and
        ``env`` added to the environment)."""
        output = io.StringIO()
        self.patch(sys, "stdout", output)
        if stdin is not None:
            self.patch(sys, "stdin", io.StringIO(stdin))
        self.patch(os, "environ", {**os.environ, **(env or {})})
        args = options(["127.0.0.1", str(self.port), *arguments])
        status = yield Deferred.fromCoroutine(
            run_phones(reactor, args, phonecli.authorization_of(args)))
        return status, output.getvalue()


class SimulatedPhonesTests(LoopbackServiceMixin, TestCase):
    @inlineCallbacks
    def test_calls_with_faults_verified(self):
        """Several phones at once, paced in real time with loss,
        reordering, duplicates and jitter: every start succeeds, latencies
        are measured, and every recording is byte-exact against what each
        phone sent."""
        began = time.time()
        results = yield run_calls(
            reactor, "127.0.0.1", self.port, calls=4, seconds=1.0,
            faults=Faults(loss=0.05, reorder=0.05, duplicates=0.05, jitter_ms=5),
        )
        self.assertEqual([r.started for r in results], [True] * 4)
        self.assertTrue(all(r.start_latency is not None and r.stop_latency is not None for r in results))
        window = RunWindow(began, time.time())
        problems = yield Deferred.fromCoroutine(verify_run(
            reactor, StorageFolder(self.root, began), results, "PCMA", window))
        self.assertEqual(problems, {r.recording_id: None for r in results})
        for result in results:
            # 50 packets planned, 5% lost, 5% sent twice (counted twice).
            self.assertTrue(40 <= result.packets_sent <= 60, result.packets_sent)

    @inlineCallbacks
    def test_dropped_connection(self):
        """A phone that drops its connection instead of stopping leaves a
        finished recording stopped by the connection, still byte-exact."""
        began = time.time()
        [result] = yield run_calls(
            reactor, "127.0.0.1", self.port, calls=1, seconds=0.5,
            faults=Faults(drop_connection=True),
        )
        self.assertIsNone(result.stop_latency)
        yield self.wait_for(lambda: result.recording_id in recordings(self.root))
        self.assertEqual(
            sidecar_of(recordings(self.root)[result.recording_id])["stopped_by"], "connection")
        problems = yield Deferred.fromCoroutine(verify_run(
            reactor, StorageFolder(self.root, began), [result], "PCMA",
            RunWindow(began, time.time())))
        self.assertEqual(problems, {result.recording_id: None})

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

    @inlineCallbacks
    def test_runs_never_share_ids(self):
        """Two runs of the same phones give their recordings different ids
        (each run its own prefix), so no run can take another's file."""
        first = yield run_calls(reactor, "127.0.0.1", self.port, calls=2, seconds=0.2)
        second = yield run_calls(reactor, "127.0.0.1", self.port, calls=2, seconds=0.2)
        ids = [r.recording_id for r in first + second]
        self.assertEqual(len(set(ids)), 4)
        self.assertEqual({r.setup.device for r in first}, {r.setup.device for r in second})
        self.assertEqual(sorted(recordings(self.root)), sorted(ids))

    @inlineCallbacks
    def test_wrong_byte_found_through_the_api(self):
        """A byte of a stored recording changed after the call: the check
        through the HTTP API (the stored file as it is) reports it, with
        where it is."""
        http = yield self.tree.getServiceNamed("http").whenListening()
        began = time.time()
        [result] = yield run_calls(reactor, "127.0.0.1", self.port, calls=1, seconds=0.5)
        path = recordings(self.root)[result.recording_id]
        with open(path, "r+b") as handle:
            handle.seek(-1000, os.SEEK_END)
            byte = handle.read(1)
            handle.seek(-1000, os.SEEK_END)
            handle.write(bytes([byte[0] ^ 0x55]))
        api = ApiRecordings(reactor, f"http://127.0.0.1:{http.getHost().port}")
        problems = yield Deferred.fromCoroutine(verify_run(
            reactor, api, [result], "PCMA", RunWindow(began, time.time())))
        yield api.close()
        self.assertEqual(problems, {result.recording_id: "4000 bytes recorded, 4000 expected; "
                                    "the first difference at byte 3000 (0.375 s)"})


class PhoneCommandTests(PhoneRunMixin, LoopbackServiceMixin, TestCase):
    """recsvc-phone's runs against the service over loopback."""

    @inlineCallbacks
    def test_fleet_verified_through_the_api(self):
        """Phones from two addresses each (control connection and RTP),
        calling both ways, numbered by a pattern, with their own MAC
        prefix, pressing keys: all start, all are verified through the
        API, and the sidecars say so."""
        status, output = yield self.phone(
            "--calls", "4", "--duration", "1.2", "--source-addresses", "127.0.0.2-127.0.0.3",
            "--dtmf", "1#", "--direction", "mixed", "--numbers", "+4930####",
            "--device-prefix", "02:00:00", "--api-url", self.api)
        self.assertEqual(status, 0, output)
        lines = output.splitlines()
        prefix = lines[0].split()[1].rstrip(":")
        self.assertEqual(lines[0], f"run {prefix}: recording ids {prefix}-0 .. {prefix}-3")
        self.assertIn("starts: 4 succeeded, 0 failed []", lines)
        self.assertIn(f"verified: 4 byte-exact, 0 not (in {self.api}, ",
                      [line for line in lines if line.startswith("verified:")][0])
        sidecars = {i: sidecar_of(recordings(self.root)[f"{prefix}-{i}"]) for i in range(4)}
        self.assertEqual([sidecars[i]["peer"] for i in range(4)],
                         ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"])
        self.assertEqual([sidecars[i]["direction"] for i in range(4)], ["out", "in", "out", "in"])
        self.assertEqual([sidecars[i]["remote_number"] for i in range(4)],
                         ["+49300000", "+49300001", "+49300002", "+49300003"])
        self.assertEqual(sidecars[3]["device"], "02:00:00:00:00:03")
        self.assertEqual({tuple(d["digit"] for d in s["dtmf"]) for s in sidecars.values()},
                         {("1", "#")})
        self.assertEqual({s["packets_rejected"].get("foreign address", 0)
                          for s in sidecars.values()}, {0})

    @inlineCallbacks
    def test_second_run_verifies_its_own(self):
        """A run right after another, with the same phones, verifies its
        own recordings (in the folder, then through the API), each run
        under its own prefix."""
        status, first = yield self.phone("--calls", "3", "--duration", "0.5",
                                         "--storage-root", self.root)
        self.assertEqual(status, 0, first)
        status, second = yield self.phone("--calls", "3", "--duration", "0.5",
                                          "--api-url", self.api)
        self.assertEqual(status, 0, second)
        for output in (first, second):
            self.assertIn("verified: 3 byte-exact, 0 not", output)
        self.assertNotEqual(first.split()[1], second.split()[1])
        self.assertEqual(len(recordings(self.root)), 6)

    @inlineCallbacks
    def test_not_verified_without_an_api(self):
        """Without --api-url or --storage-root, and no API at HOST:8080:
        the calls are reported, 'not verified' says why and what to give,
        and the exit status is the calls' (0); with --api-url given and
        nothing there, the check asked for failed: 1."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        self.patch(phonecli, "DEFAULT_API_PORT", closed)
        status, output = yield self.phone("--duration", "0.3")
        self.assertEqual(status, 0, output)
        self.assertIn("starts: 1 succeeded, 0 failed []", output)
        self.assertIn(f"not verified: no recsvc API answers at http://127.0.0.1:{closed} "
                      "(ConnectionRefusedError); give --storage-root or --api-url", output)
        self.assertNotIn("verified: ", output.replace("not verified: ", ""))
        status, output = yield self.phone("--duration", "0.3", "--api-url",
                                          f"http://127.0.0.1:{closed}")
        self.assertEqual(status, 1, output)

    @inlineCallbacks
    def test_g722_not_verified(self):
        """G.722 is stored decoded: 'not verified' says so, rather than
        call every recording wrong; exit status 1 only where the check was
        asked for."""
        status, output = yield self.phone("--duration", "0.3", "--codec", "G722",
                                          "--storage-root", self.root)
        self.assertIn("starts: 1 succeeded, 0 failed []", output)
        self.assertIn("not verified: G.722 is stored decoded (16 kHz PCM), not as it was sent",
                      output)
        self.assertEqual(status, 1)
        status, output = yield self.phone("--duration", "0.3", "--codec", "G722")
        self.assertEqual(status, 0, output)


class PhoneRefusedTests(PhoneRunMixin, LoopbackServiceMixin, TestCase):
    """recsvc-phone when the server refuses some of the phones."""

    def more_config(self) -> dict:
        return {"devices": {"allow": ["00:a8:59:00:00:00"]}}

    @inlineCallbacks
    def test_refused_start(self):
        """A start refused: listed with its reason, exit status 1, and the
        calls that did start still verified."""
        status, output = yield self.phone("--calls", "2", "--duration", "0.3",
                                          "--storage-root", self.root)
        self.assertEqual(status, 1, output)
        self.assertIn("starts: 1 succeeded, 1 failed ['device not allowed']", output)
        self.assertIn("verified: 1 byte-exact, 0 not", output)


class PhoneCredentialsTests(PhoneRunMixin, LoopbackServiceMixin, TestCase):
    """recsvc-phone's check through an API with http.auth."""

    TOKEN = "a-token-for-the-phone-tests"
    PASSWORD = "the password of the tests"

    def more_config(self) -> dict:
        return {"http": {"listen": "tcp:0:interface=127.0.0.1", "auth": {
            "token": self.TOKEN, "users": {"tester": hash_password(self.PASSWORD, 1000)}}}}

    @inlineCallbacks
    def test_credentials(self):
        """Without credentials the check cannot be made, says to give
        --token or --user (exit status 1, --api-url was given); with the
        token (on the command line or in RECSVC_TOKEN), or a user whose
        password comes on standard input, it is."""
        status, output = yield self.phone("--duration", "0.3", "--api-url", self.api)
        self.assertEqual(status, 1, output)
        self.assertIn(f"not verified: {self.api} wants credentials (http.auth): give --token, "
                      "or --user", output)
        status, output = yield self.phone("--duration", "0.3", "--api-url", self.api,
                                          "--token", self.TOKEN)
        self.assertEqual(status, 0, output)
        self.assertIn("verified: 1 byte-exact, 0 not", output)
        status, output = yield self.phone("--duration", "0.3", "--api-url", self.api,
                                          env={"RECSVC_TOKEN": self.TOKEN})
        self.assertEqual(status, 0, output)
        self.assertIn("verified: 1 byte-exact, 0 not", output)
        status, output = yield self.phone("--duration", "0.3", "--api-url", self.api,
                                          "--user", "tester", stdin=self.PASSWORD + "\n")
        self.assertEqual(status, 0, output)
        self.assertIn("verified: 1 byte-exact, 0 not", output)


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


class PlannedStreamTests(SynchronousTestCase):
    """What a phone with faults sends, slot by slot (a slot: one packet
    time)."""

    def slots(self, stream: PlannedStream) -> list[list[tuple[float, int]]]:
        """Each slot's (delay, sequence number) of what it sends."""
        served = []
        while (slot := stream.next_slot()) is not None:
            served.append([(delay, parse_rtp(datagram).sequence) for delay, datagram in slot])
        return served

    def test_lost_packets_leave_their_slot_empty(self) -> None:
        """A lost packet's slot stays empty: what follows goes at its own
        time, not early (a restart is placed by the wall clock)."""
        plan = plan_call(bytes(range(256)) * 25, seed=1)
        stream = PlannedStream(plan, Faults(loss=0.3), random.Random(2))
        served = self.slots(stream)
        self.assertEqual(len(served), len(plan))
        sequences = [p.packet.sequence for p in plan]
        for number, slot in enumerate(served):
            self.assertIn(slot, ([], [(0.0, sequences[number])]))
        self.assertTrue(0 < sum(1 for slot in served if not slot) < len(plan))
        self.assertEqual(stream.delivered, {n for n, slot in enumerate(served) if slot})

    def test_key_presses_keep_time(self) -> None:
        """A key press's packets go in the slots of their ticks (its three
        end packets together), so the audio after it is not late; a packet
        that begins within a slot goes that much into it."""
        presses = key_presses("5", 8000 * 2, 240)
        plan = plan_call(bytes(16000), ptime_ms=30, dtmf=presses, seed=3)
        served = self.slots(PlannedStream(plan, Faults(), random.Random(4), step=240))
        self.assertEqual(len(served), 16000 // 240 + 1)
        start = presses[0][0] // 240
        end_packets = [p for p in plan if p.kind == "dtmf" and parse_event(p.packet.payload).end]
        self.assertEqual(len(end_packets), 3)
        self.assertEqual({p.tick // 240 for p in end_packets}, {start + 5})
        after = next(p for p in plan if p.kind == "audio" and p.tick > presses[0][0])
        self.assertEqual(after.tick, presses[0][0] + 1280)
        slot = served[after.tick // 240]
        self.assertIn((80 / 8000, after.packet.sequence), slot)

    def test_restart_neighbours_intact(self) -> None:
        """The packets either side of a restart (new SSRC) are never lost,
        swapped or delayed, whatever the faults; others are."""
        plan = plan_call(bytes(8000), ssrc_changes=(4000,), seed=5)
        change = next(i for i in range(1, len(plan))
                      if plan[i].packet.ssrc != plan[i - 1].packet.ssrc)
        stream = PlannedStream(plan, Faults(loss=0.9, reorder=0.9, jitter_ms=20),
                               random.Random(6))
        served = self.slots(stream)
        for index in (change - 1, change):
            self.assertEqual(served[plan[index].tick // 160], [(0.0, plan[index].packet.sequence)])
        self.assertLess(len(stream.delivered), len(plan) // 2)

    def test_reordered_packets_trade_slots(self) -> None:
        """A packet swapped with the next goes in the next one's slot, and
        that one in its own."""
        plan = plan_call(bytes(3200), seed=7)
        served = self.slots(PlannedStream(plan, Faults(reorder=0.5), random.Random(8)))
        sequences = [slot[0][1] for slot in served]
        self.assertNotEqual(sequences, sorted(sequences))
        self.assertEqual(sorted(sequences), [p.packet.sequence for p in plan])


class PlanExpectationTests(SynchronousTestCase):
    def test_expected_keys(self) -> None:
        """The keys a recording must list: each press of which a packet
        arrived, at its start (ticks from the file's start), in order; a
        press whose packets were all lost is not listed."""
        presses = ((1600, 1, 1280), (4800, 11, 1280))
        plan = plan_call(bytes(8000), dtmf=presses, seed=9)
        everything = set(range(len(plan)))
        self.assertEqual(expected_keys(plan, everything), (("1", 1600), ("#", 4800)))
        first_press = {i for i, p in enumerate(plan)
                       if p.kind == "dtmf" and p.packet.timestamp == plan[0].packet.timestamp + 1600}
        self.assertEqual(expected_keys(plan, everything - first_press), (("#", 4800),))
        some_of_it = everything - {min(first_press)}
        self.assertEqual(expected_keys(plan, some_of_it), (("1", 1600), ("#", 4800)))

    def test_restart_tick(self) -> None:
        """Where the stream restarts: at the SSRC change, or, if a key is
        held over it, when the key is let go; None without one."""
        self.assertEqual(restart_tick(plan_call(bytes(8000), ssrc_changes=(4000,))), 4000)
        held = plan_call(bytes(8000), ssrc_changes=(4000,), dtmf=((3200, 5, 1280),))
        self.assertEqual(restart_tick(held), 4480)
        self.assertIsNone(restart_tick(plan_call(bytes(8000))))


class ClosedPipeTests(SynchronousTestCase):
    def test_closed_pipe_ends_quietly(self) -> None:
        """
        `recsvc-phone ... | head` whose reader has gone: it ends with exit
        status 141, as the recsvc command does, and nothing on standard
        error (it was a traceback of the BrokenPipeError, exit status 1).
        The reader is gone before anything is written (the first line
        meets the closed pipe), or after the first line (the next is
        written while the calls run, from inside one of them).
        """
        with socket.socket() as probe:  # a port nobody listens on: the calls end at once
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        phone = os.path.join(os.path.dirname(sys.executable), "recsvc-phone")
        self.assertEqual(status_when_reader_leaves([phone, "127.0.0.1", str(port),
                                                    "--duration", "1"]), (141, b""))
        self.assertEqual(status_when_reader_leaves([phone, "127.0.0.1", str(port),
                                                    "--duration", "1"], b"run "), (141, b""))


class PhoneOptionsTests(SynchronousTestCase):
    def refused(self, *arguments: str) -> str:
        """What recsvc-phone says of a command line it refuses."""
        said = io.StringIO()
        self.patch(sys, "stderr", said)
        with self.assertRaises(SystemExit) as exited:
            options(["127.0.0.1", "10000", *arguments])
        self.assertEqual(exited.exception.code, 2)
        return said.getvalue().splitlines()[-1]

    def test_help_shows_defaults(self) -> None:
        """Every option with a value says its default in the help."""
        text = parser().format_help()
        for action in parser()._actions:
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                self.assertIn("(default: ", action.help, action.option_strings)
        for shown in ("(default: 00:a8:59, Fanvil's)", "(default: 138########)",
                      "(default: out)", "(default: PCMA)", "(default: 1)",
                      "(default: http://HOST:8080)"):
            self.assertIn(shown, " ".join(text.split()))

    def test_errors_name_the_option(self) -> None:
        """A value that cannot work is refused, naming the option and what
        is wrong with it."""
        for arguments, said in [
            (("--source-addresses", "127.0.0.9-127.0.0.2"),
             "argument --source-addresses: the range '127.0.0.9-127.0.0.2' ends before it begins"),
            (("--source-addresses", "192.0.2.1-192.0.2.5"),
             "--source-addresses: 192.0.2.1 is not an address of this machine"),
            (("--numbers", "030-1234"), "argument --numbers: '030-1234' has '-'"),
            (("--calls", "300", "--numbers", "+4930##"),
             "--numbers: '+4930##' has numbers for 100 phones, not 300 (--calls): add #"),
            (("--device-prefix", "00:zz"), "argument --device-prefix: '00:zz' is not hex digits"),
            (("--calls", "20", "--device-prefix", "00a85912345"),
             "--device-prefix: '00a85912345' leaves room for 16 phones, not 20 (--calls)"),
            (("--dtmf", "12x"), "argument --dtmf: '12x': keys are 0-9, *, # and A-D"),
            (("--dtmf", "1234567890", "--duration", "1"),
             "--dtmf: 10 key presses of 160 ms need calls of at least 2.2 s (--duration)"),
            (("--direction", "sideways"), "argument --direction: invalid choice: 'sideways'"),
            (("--api-url", "ftp://x"), "--api-url: 'ftp://x' is not an http:// or https:// URL"),
            (("--api-url", "http://x", "--storage-root", "var"),
             "argument --storage-root: not allowed with argument --api-url"),
            (("--token", "t", "--user", "u"), "argument --user: not allowed with argument --token"),
            (("--calls", "0"), "--calls: 0 is not a number of phones"),
            (("--duration", "0"), "--duration: 0 is not a number of seconds"),
            (("--ptime", "5"), "--ptime: 5 is not a packet time (10 to 120 ms)"),
            (("--spread", "-1"), "--spread: -1 is not a number of seconds"),
            (("--loss", "120"), "--loss: 120 is not a percentage (0 to 100)"),
            (("--jitter", "-3"), "--jitter: -3 is not a number of ms"),
            (("--token", "caf\u00e9"), "--token (or RECSVC_TOKEN): a token is printable ASCII"),
            (("--duration", "nan"), "--duration: nan is not a number of seconds"),
            (("--duration", "inf"), "--duration: inf is not a number of seconds"),
            (("--spread", "nan"), "--spread: nan is not a number of seconds"),
            (("--spread", "inf"), "--spread: inf is not a number of seconds"),
            (("--jitter", "nan"), "--jitter: nan is not a number of ms"),
            (("--jitter", "inf"), "--jitter: inf is not a number of ms"),
        ]:
            self.assertIn(said, self.refused(*arguments), arguments)

    def test_port_must_be_a_port(self) -> None:
        """The server's port is refused, naming it, unless it is 1 to 65535
        (70000 made every call fail with an OverflowError)."""
        for port, said in [("0", "argument port: 0 is not a port (1 to 65535)"),
                           ("70000", "argument port: 70000 is not a port (1 to 65535)"),
                           ("x", "argument port: 'x' is not a port")]:
            out = io.StringIO()
            self.patch(sys, "stderr", out)
            with self.assertRaises(SystemExit) as exited:
                options(["127.0.0.1", port])
            self.assertEqual(exited.exception.code, 2)
            self.assertIn(said, out.getvalue().splitlines()[-1])

    def test_wav_that_cannot_be_sent(self) -> None:
        """A --wav file that is missing, not a WAV, not 16-bit mono or empty
        is refused before the run, naming --wav and why (a missing file was
        a traceback from inside the run)."""
        folder = self.mktemp()
        os.makedirs(folder)
        missing = os.path.join(folder, "missing.wav")
        text = os.path.join(folder, "text.wav")
        with open(text, "w") as handle:
            handle.write("not audio\n")
        stereo, empty = os.path.join(folder, "stereo.wav"), os.path.join(folder, "empty.wav")
        for path, channels, frames in ((stereo, 2, b"\0" * 400), (empty, 1, b"")):
            with wave.open(path, "wb") as out:
                out.setnchannels(channels)
                out.setsampwidth(2)
                out.setframerate(8000)
                out.writeframes(frames)
        for path, said in [(missing, "No such file or directory"),
                           (text, "not a WAV file"),
                           (stereo, "need 16-bit mono PCM"),
                           (empty, "no audio in it")]:
            self.assertIn(f"--wav: {path}: {said}", self.refused("--wav", path))

    def test_key_presses_fit_the_wav(self) -> None:
        """With --wav shorter than --duration, the call is as long as the
        WAV: --dtmf must fit in that (it was a traceback from inside the run)."""
        path = self.mktemp()
        with wave.open(path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(b"\0" * 2 * 8000)
        self.assertIn("--dtmf: 5 key presses of 160 ms need calls of at least",
                      self.refused("--wav", path, "--duration", "10", "--dtmf", "12345"))
        self.assertEqual(options(["127.0.0.1", "1", "--wav", path, "--dtmf", "1"]).dtmf, "1")

    def test_defaults(self) -> None:
        """Without options: one phone calling out from Fanvil's MAC range,
        to numbers of the default pattern, from the system's address, no
        keys, the check through the API."""
        args = options(["127.0.0.1", "10000"])
        fleet = Fleet("p", args.device_prefix, args.numbers, args.direction,
                      args.source_addresses, args.dtmf)
        call = fleet.call(7)
        self.assertEqual((call.device, call.remote_number, call.direction, call.source_address,
                          call.keys), ("00:a8:59:00:00:07", "13800000007", "out", None, ""))
        self.assertEqual((args.api_url, args.storage_root), (None, None))
        self.assertEqual(phonecli.recordings_of(reactor, args, None, 0.0).url,
                         "http://127.0.0.1:8080")
        self.assertEqual(options(["127.0.0.1", "1", "--source-addresses", "127.0.0.2-127.0.0.9"])
                         .source_addresses, parse_source_addresses("127.0.0.2-127.0.0.9"))

    def test_starts_spread_500_a_second_by_default(self) -> None:
        """Without --spread, the calls start 500 a second (as the benchmarks'
        phones), over one packet time at least."""
        self.assertEqual(phonecli.default_spread(500, 20), 1.0)
        self.assertEqual(phonecli.default_spread(2000, 20), 4.0)
        self.assertEqual(phonecli.default_spread(1, 20), 0.02)
        self.assertEqual(phonecli.default_spread(5, 60), 0.06)
