"""Tests for which phone a recording answers to: the connection that carries
it, Stops and Starts from other addresses, the device's spellings."""

from __future__ import annotations

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from recsvc.control.commands import StopRequest
from recsvc.control.interfaces import StopRefused
from recsvc.session import RECORDING
from recsvc.testing import FakePhoneLink, ManualRunner
from tests.support.builders import start_request
from tests.support.service import ServiceTestsMixin


class CarryingTests(ServiceTestsMixin, SynchronousTestCase):
    """Each connection is told when it begins and ends carrying recordings
    (the per-address limit counts only the connections that do not)."""

    def test_told_when_carrying_begins_and_ends(self) -> None:
        """
        A connection carries from its Start (while the file is created)
        until its last recording has been removed; a refused Start never
        makes it carry.
        """
        self.make_service(runner=ManualRunner())
        answer = self.service.start_recording(start_request("1"), self.link, "127.0.0.1",
                                              "127.0.0.9")
        self.assertTrue(self.link.carrying)  # the file is being created
        self.runner.run_pending()
        self.assertEqual(self.successResultOf(answer).result, "success")
        self.start(start_request("2", device="00a859000002"))
        self.assertTrue(self.service.carries_recordings(self.link))
        stopping = self.service.stop_recording(StopRequest("1"))
        self.runner.run_pending()
        self.successResultOf(stopping)
        self.assertTrue(self.link.carrying)  # recording 2 goes on
        stopping = self.service.stop_recording(StopRequest("2"))
        self.runner.run_pending()
        self.successResultOf(stopping)
        self.assertFalse(self.link.carrying)
        other = FakePhoneLink()
        self.assertEqual(self.start(start_request("3", codec="G729"), link=other).result,
                         "failed")
        self.assertFalse(other.carrying)
        self.assertFalse(self.service.carries_recordings(other))

    def test_a_retry_on_a_new_connection_moves_the_recording(self) -> None:
        """A phone that repeats its Start on a new connection: the new one
        carries the recording, the old one no longer does."""
        self.make_service()
        self.start(start_request("1"))
        newer = FakePhoneLink()
        self.service.link_connected(newer)
        self.start(start_request("1"), link=newer)
        self.assertEqual((self.link.carrying, newer.carrying), (False, True))
        self.service.link_lost(self.link)  # the old connection breaks: nothing ends
        self.assertEqual(len(self.service.registry), 1)
        self.service.link_lost(newer)
        self.assertFalse(self.service.carries_recordings(newer))

    def test_a_retry_after_the_connection_broke_records_on_the_new_one(self) -> None:
        """
        A phone whose connection broke while its Start waited (for start-up
        recovery, or for its file after a disk error), and which repeats the
        Start on a new connection, records:
        the recording answers to the new connection and is not stopped for
        the old one's loss (the phone was answered success).
        """
        self.make_service(runner=ManualRunner())
        self.service.upkeep.recover()  # (Starts wait for start-up recovery: held here)
        self.service.start_recording(start_request("1"), self.link, "127.0.0.1", "127.0.0.9")
        self.assertTrue(self.link.carrying)
        self.service.link_lost(self.link)
        newer = FakePhoneLink()
        self.service.link_connected(newer)
        again = self.service.start_recording(start_request("1"), newer, "127.0.0.1",
                                             "127.0.0.9")
        self.runner.run_pending()
        self.assertEqual(self.successResultOf(again).result, "success")
        recording = self.service.registry.get("1")
        self.assertEqual((recording.state, recording.link), (RECORDING, newer))
        self.assertEqual((self.link.carrying, newer.carrying), (False, True))


class PhoneBindingTests(ServiceTestsMixin, SynchronousTestCase):
    """A recording answers to its phone: the connection that carries it,
    or another one from the same address (the phone reconnected)."""

    def foreign_stop(self, peer: str = "127.0.0.66", recording_id: str = "7"):
        stranger = FakePhoneLink()
        self.service.link_connected(stranger)
        return self.service.stop_recording(
            StopRequest(recording_id, "tampered",
                        (("remote_number", "=666"), ("remote_name", "Evil"))),
            stranger, peer)

    def test_stop_from_another_address_refused(self) -> None:
        """A Stop (with party fields) from a connection of another address
        is refused with its reason and changes nothing: the recording goes
        on, and its phone's own Stop finishes it with the Start's parties."""
        self.make_service()
        self.start()
        failure = self.failureResultOf(self.foreign_stop(), StopRefused)
        self.assertEqual(failure.value.reason, "not this phone's recording")
        self.assertEqual(self.service.registry.get("7").state, RECORDING)
        summary = self.successResultOf(self.service.stop_recording(
            StopRequest("7", "hangup"), self.link, "127.0.0.1"))
        self.assertEqual((summary.stop_reason, summary.stopped_by), ("hangup", "phone"))
        sidecar = self.sidecar_of("7")
        self.assertEqual((sidecar["remote_number"], sidecar["remote_name"]),
                         ("13800138000", "Bob"))

    def test_stop_while_file_created_refused(self) -> None:
        """A foreign Stop right behind the Start (its file still being
        created) is refused too, before it waits for anything."""
        self.make_service(runner=ManualRunner())
        self.service.start_recording(start_request(), self.link, "127.0.0.1", "127.0.0.9")
        self.failureResultOf(self.foreign_stop(), StopRefused)
        self.runner.run_pending()
        self.assertEqual(self.service.registry.get("7").state, RECORDING)

    def test_stop_from_the_phone_reconnected(self) -> None:
        """A Stop from another connection of the recording's address (the
        phone reconnected) is the phone's."""
        self.make_service()
        self.start()
        summary = self.successResultOf(self.foreign_stop(peer="::ffff:127.0.0.1"))
        self.assertEqual(summary.stop_reason, "tampered")

    def test_start_from_another_address_cannot_take_the_recording(self) -> None:
        """A Start of the same id and device from another address is
        refused; the recording keeps its connection (told at shutdown)."""
        self.make_service()
        self.start()
        stranger = FakePhoneLink()
        answer = self.successResultOf(self.service.start_recording(
            start_request(), stranger, "127.0.0.66", "127.0.0.9"))
        self.assertEqual((answer.result, answer.reason),
                         ("failed", "not this phone's recording"))
        self.successResultOf(self.service.stopService())
        self.assertEqual((self.link.stop_requests, stranger.stop_requests),
                         ([("7", "shutdown")], []))

    def test_foreign_stops_counted_and_logged_once_a_minute(self) -> None:
        """Refused Stops are counted by reason in the metrics and logged
        once a minute per address, the rest summed up at shutdown."""
        from recsvc.metrics import Metrics
        self.make_service()
        self.service.metrics = metrics = Metrics()
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.start()
        for _ in range(3):
            self.failureResultOf(self.foreign_stop(), StopRefused)
        self.successResultOf(self.service.stopService())
        self.assertEqual(metrics.registry.get_sample_value(
            "recsvc_stops_refused_total", {"reason": "not this phone's recording"}), 3)
        lines = [(event["count"], event["peer"]) for event in events
                 if event.get("reason") == "not this phone's recording"]
        self.assertEqual(lines, [(1, "127.0.0.66"), (2, "127.0.0.66")])


class DeviceSpellingTests(ServiceTestsMixin, SynchronousTestCase):
    def test_retry_in_another_spelling_is_the_same_device(self) -> None:
        """A Start repeated with the device's MAC spelt another way is the
        same phone's retry, while the file is made and after."""
        self.make_service(runner=ManualRunner())
        first = self.service.start_recording(start_request(device="00:a8:59:00:02:01"),
                                             self.link, "127.0.0.1", "127.0.0.9")
        retry = self.service.start_recording(start_request(device="00a859000201"),
                                             self.link, "127.0.0.1", "127.0.0.9")
        self.runner.run_pending()
        answer = self.successResultOf(first)
        self.assertEqual((answer.result, self.successResultOf(retry)), ("success", answer))
        self.assertEqual(self.start(start_request(device="00-A8-59-00-02-01")), answer)
