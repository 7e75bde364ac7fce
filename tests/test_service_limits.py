"""Tests for RecorderService's admission: devices.allow, the recording limits,
Starts without RTP per address, and low disk space; each refusal says why."""

from __future__ import annotations

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import StopRequest
from recsvc.storage.diskspace import DiskSpace
from recsvc.session import Limits
from recsvc.testing import FakePortPool, ManualRunner, run_now
from recsvc.admission import StartRate, policy_of
from tests.support.builders import rtp, start_request
from tests.support.service import ServiceTestsMixin


class LimitTests(ServiceTestsMixin, SynchronousTestCase):
    """devices.allow and the recording limits: each refusal says why."""

    def refusal(self, request) -> str:
        answer = self.start(request)
        self.assertEqual(answer.result, "failed")
        return answer.reason

    def test_device_not_allowed(self) -> None:
        """A Start from a device not on devices.allow is refused with reason
        "device not allowed" and opens no port; one on it, in any spelling,
        records."""
        self.make_service()
        self.service.access = policy_of([], ["00:A8:59:00:00:01"])
        self.assertEqual(self.start(start_request("1", device="00-a8-59-00-00-01")).result,
                         "success")
        self.assertEqual(self.refusal(start_request("2", device="00a859000002")),
                         "device not allowed")
        self.assertFalse(self.ports.open.get(41001))  # no port was opened for it

    def test_server_busy(self) -> None:
        """At max_active recordings a Start is refused as "server busy";
        once one stops, it is taken."""
        self.make_service()
        self.service.max_active = 2
        self.start(start_request("1", device="00a859000001"))
        self.start(start_request("2", device="00a859000002"))
        self.assertEqual(self.refusal(start_request("3", device="00a859000003")), "server busy")
        self.successResultOf(self.service.stop_recording(StopRequest("1")))
        self.assertEqual(self.start(start_request("3", device="00a859000003")).result, "success")

    def test_per_device_cap(self) -> None:
        """At max_per_device recordings a device's next Start is refused,
        naming the cause; another device still records."""
        self.make_service()
        self.service.max_per_device = 2
        self.start(start_request("1"))
        self.start(start_request("2"))
        self.assertEqual(self.refusal(start_request("3")), "too many recordings for this device")
        self.assertEqual(self.start(start_request("4", device="00a859000009")).result, "success")

    def test_start_rate(self) -> None:
        """Beyond its starts per minute a device's Start is refused, naming
        the cause, even when the earlier recordings have stopped; a minute
        later it is taken."""
        self.make_service()
        self.service.start_rate = StartRate(per_minute=2)
        for recording_id in "12":
            self.start(start_request(recording_id))
            self.successResultOf(self.service.stop_recording(StopRequest(recording_id)))
        self.assertEqual(self.refusal(start_request("3")), "too many starts from this device")
        self.service.clock.advance(60)
        self.assertEqual(self.start(start_request("3")).result, "success")

    def test_start_rate_spent_only_on_starts_taken(self) -> None:
        """
        The start rate is checked after every other check and given back
        when no port is free: Starts refused as busy, for their codec or for
        want of a port do not use up the phone's minute.
        """
        self.make_service(ports=FakePortPool(41000, 41000))
        self.service.start_rate = StartRate(per_minute=2)
        self.assertIn("unsupported codec", self.refusal(start_request("3", codec="G729")))
        self.start(start_request("1"))
        self.service.max_active = 1
        self.assertEqual(self.refusal(start_request("2")), "server busy")
        self.service.max_active = 0
        self.assertEqual(self.refusal(start_request("4")), "no free port")
        self.successResultOf(self.service.stop_recording(StopRequest("1")))
        self.assertEqual(self.start(start_request("5")).result, "success")  # the 2nd of 2
        self.successResultOf(self.service.stop_recording(StopRequest("5")))
        self.assertEqual(self.refusal(start_request("6")), "too many starts from this device")

    def test_limits_count_starts_whose_files_are_being_made(self) -> None:
        """
        A burst of Starts, answered while their files are still being
        created in a thread, counts against max_active and max_per_device.
        """
        self.make_service(runner=ManualRunner())
        self.service.max_active = 3
        self.service.max_per_device = 1

        def start(recording_id: str, device: str):
            return self.service.start_recording(start_request(recording_id, device=device),
                                                self.link, "127.0.0.1", "127.0.0.9")
        held = [start("1", "00a859000001"), start("2", "00a859000002")]
        self.assertEqual(self.successResultOf(start("3", "00a859000001")).reason,
                         "too many recordings for this device")
        held.append(start("4", "00a859000004"))
        self.assertEqual(self.successResultOf(start("5", "00a859000005")).reason, "server busy")
        self.runner.run_pending()
        self.assertEqual([self.successResultOf(d).result for d in held], ["success"] * 3)

    def test_retry_of_a_running_recording_is_not_a_new_start(self) -> None:
        """A phone repeating its Start gets the same answer, whatever the limits."""
        self.make_service()
        self.service.max_active = 1
        first = self.start(start_request("1"))
        self.assertEqual(self.start(start_request("1")).port, first.port)

    def test_refusals_logged_once_a_minute_per_device(self) -> None:
        """A phone retrying against a limit is named once a minute (with the
        count), not on every attempt; the refusals a minute's silence hid
        are summed up when it is over, and those left at shutdown then:
        every refusal is in some line's count."""
        self.make_service()
        self.service.access = policy_of([], ["00a859000001"])
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for number in range(5):
            self.start(start_request(str(number), device="00a859000002"))
        self.service.clock.advance(60)
        self.start(start_request("9", device="00a859000002"))
        self.successResultOf(self.service.stopService())
        refusals = [(event["count"], event["device"]) for event in events
                    if "refused" in event.get("log_format", "")]
        self.assertEqual(refusals, [(1, "00a859000002"), (4, "00a859000002"),
                                    (1, "00a859000002")])


class PendingRtpTests(ServiceTestsMixin, SynchronousTestCase):
    """recordings.max_pending_per_address: Starts whose phone sends no RTP
    cannot take every port, however many devices a client makes up."""

    def start_from(self, recording_id: str, peer: str = "127.0.0.1"):
        device = "02%010x" % int(recording_id)
        return self.successResultOf(self.service.start_recording(
            start_request(recording_id, device=device), self.link, peer, "127.0.0.9"))

    def test_starts_without_rtp_bounded_per_address(self) -> None:
        """Beyond the bound an address's Starts are refused naming the
        limit, whatever the device; another address is not held back, and
        a recording's first packet gives its place back."""
        self.make_service()
        self.service.max_pending_per_address = 3
        answers = [self.start_from(str(number)) for number in range(3)]
        self.assertEqual([answer.result for answer in answers], ["success"] * 3)
        refused = self.start_from("3")
        self.assertEqual((refused.result, refused.reason),
                         ("failed", "too many recordings without RTP from this address"))
        self.assertEqual(self.start_from("4", peer="127.0.0.2").result, "success")
        self.ports.deliver(answers[0].port, rtp(0, b"\xd5" * 160))
        self.assertEqual(self.start_from("5").result, "success")
        self.assertEqual(self.start_from("6").reason,
                         "too many recordings without RTP from this address")

    def test_stray_datagrams_keep_the_place(self) -> None:
        """Only a packet of the call gives the place back: a datagram from
        another address, of another payload type or too long for a packet
        (all rejected, never written) leaves the recording waiting for
        RTP, so a client cannot free its places with junk."""
        self.make_service()
        self.service.max_pending_per_address = 1
        first = self.start_from("1")
        self.ports.deliver(first.port, rtp(0, b"\xd5" * 160), ("10.9.9.9", 4000))
        self.ports.deliver(first.port, rtp(1, b"\xd5" * 160, payload_type=99))
        self.ports.deliver(first.port, rtp(2, b"\xd5" * 1601))
        self.assertEqual(self.start_from("2").reason,
                         "too many recordings without RTP from this address")
        self.ports.deliver(first.port, rtp(3, b"\xd5" * 160))
        self.assertEqual(self.start_from("3").result, "success")

    def test_place_given_back_when_it_ends(self) -> None:
        """A recording that ends without RTP (stopped, or timed out) gives
        its place back, once."""
        self.make_service()
        self.service.max_pending_per_address = 1
        self.start_from("1")
        self.successResultOf(self.service.stop_recording(StopRequest("1")))
        self.start_from("2")
        self.service.clock.advance(Limits().first_packet_timeout)
        self.assertEqual(self.start_from("3").result, "success")
        self.assertEqual(self.start_from("4").result, "failed")

    def test_five_hundred_phones_behind_one_address(self) -> None:
        """With the defaults, 500 phones behind one NAT address each
        starting a call within a second all record."""
        self.make_service(ports=FakePortPool(41000, 41999))
        self.service.start_rate = StartRate(60)
        results = []
        for number in range(500):
            self.service.clock.advance(0.002)
            results.append(self.start_from(str(number)).result)
        self.assertEqual(results, ["success"] * 500)

    def test_refusal_lines_bounded_over_made_up_devices(self) -> None:
        """2,000 refused Starts with 2,000 made-up MACs make a bounded
        number of lines, and every refusal is counted in one of them."""
        self.make_service()
        self.service.access = policy_of([], ["00a859000001"])
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for number in range(2000):
            self.start_from(str(number))
        self.successResultOf(self.service.stopService())
        counts = [event["count"] for event in events if "refused" in event.get("log_format", "")]
        # 100 devices named, the rest in a line when they begin and a summary.
        self.assertLessEqual(len(counts), 102)
        self.assertEqual(sum(counts), 2000)


class DiskFullTests(ServiceTestsMixin, SynchronousTestCase):
    def make_disk(self, readings: list[int]) -> None:
        self.make_service()
        self.service.disk = DiskSpace(
            "unused", 1000, self.service.clock, run_now, measure=lambda root: readings.pop(0)
        )
        self.service.reactor_running()

    def test_low_space_refuses_start(self) -> None:
        """Below storage.min_free_mb a Start is refused with reason "disk
        full" and nothing is opened."""
        self.make_disk([900])
        response = self.start()
        self.assertEqual((response.result, response.reason), ("failed", "disk full"))
        self.assertEqual((self.ports.open, self.writers.writers), ({}, {}))

    def test_critical_space_stops_recordings(self) -> None:
        """Below half of it, recordings in progress are stopped by the server
        with reason "disk full" (the phone is told) keeping what they have."""
        self.make_disk([5000, 400])
        port = self.start().port
        for sequence in range(3):
            self.ports.deliver(port, rtp(sequence, bytes([sequence]) * 160))
        self.service.clock.advance(1)
        self.assertEqual(self.link.stop_requests, [("7", "disk full")])
        self.assertIsNone(self.service.registry.get("7"))
        self.assertEqual(self.writers.only().data_bytes, 480)
        self.assertEqual(self.sidecar_of("7")["stop_reason"], "disk full")
