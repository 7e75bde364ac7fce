"""Tests for recsvc.metrics: what the recorder reports, and the live
figures read at a scrape, as Prometheus sees them."""

from __future__ import annotations

import inspect

from twisted.trial.unittest import SynchronousTestCase

from recsvc.metrics import Metrics, NoMetrics, live_figures, reason_label, rejected_label
from recsvc.control.commands import StopRequest
from recsvc.summary import MediaStats
from recsvc.storage.syncing import SYNC_TURNS
from recsvc.testing import MemoryWriters
from tests.support.builders import rtp, start_request
from tests.support.scrape import samples
from tests.support.service import ServiceTestsMixin


class ReasonLabelTests(SynchronousTestCase):
    def test_bounded(self) -> None:
        """Label values are the server's words without their details; what a
        phone says is never a label value."""
        self.assertEqual(reason_label("write error: No space left on device"), "write error")
        self.assertEqual(reason_label("unsupported codec G729 (use PCMA, PCMU)"),
                         "unsupported codec")
        self.assertEqual(reason_label("customer asked", "phone"), "stopped by phone")
        self.assertEqual(reason_label("no RTP for 60 s", "server"), "no RTP for 60 s")
        self.assertEqual(reason_label(""), "unknown")
        self.assertEqual(rejected_label("payload type 13"), "payload type")
        self.assertEqual(rejected_label("not rtp"), "not rtp")


class MetricsTests(SynchronousTestCase):
    def test_finished_recordings_move_from_live_to_totals(self) -> None:
        """Packet and byte counters add what finished recordings had to what
        the live ones have, and never go back between two scrapes."""
        metrics = Metrics()
        live = [live_now(received=100, written=16000)]
        metrics.watch(lambda: live[0])
        self.assertEqual(samples(metrics)[("recsvc_rtp_packets_received_total", ())], 100)
        # Between a rotated file's last scrape and that file's finishing,
        # its bytes are in neither place: the counter holds its last value.
        live[0] = live_now(received=110, written=800)
        scrape = samples(metrics)
        self.assertEqual(scrape[("recsvc_audio_bytes_written_total", ())], 16000)
        self.assertEqual(scrape[("recsvc_rtp_packets_received_total", ())], 110)
        # Both files finished, the recording with 120 packets: each counted once.
        live[0] = live_now()
        metrics.file_finished(summary_of(17600))
        metrics.file_finished(summary_of(1600))
        metrics.recording_finished("hangup", "phone", 2.4, MediaStats(received=120, lost=3))
        scrape = samples(metrics)
        self.assertEqual(scrape[("recsvc_rtp_packets_received_total", ())], 120)
        self.assertEqual(scrape[("recsvc_rtp_packets_lost_total", ())], 3)
        self.assertEqual(scrape[("recsvc_audio_bytes_written_total", ())], 19200)
        self.assertEqual(scrape[("recsvc_files_finished_total", ())], 2)

    def test_gauges_read_at_scrape(self) -> None:
        """The active recordings, control connections and free storage
        gauges are read from the live figures when scraped."""
        metrics = Metrics()
        metrics.watch(lambda: live_now(active=3, connections=2, free=12345))
        scrape = samples(metrics)
        self.assertEqual(scrape[("recsvc_active_recordings", ())], 3)
        self.assertEqual(scrape[("recsvc_control_connections", ())], 2)
        self.assertEqual(scrape[("recsvc_storage_free_bytes", ())], 12345)

    def test_error_counts(self) -> None:
        """A file whose sidecar names an error, or that could not be finished."""
        metrics = Metrics()
        metrics.file_finished(summary_of(160, error="No space left on device"))
        metrics.file_unfinished()
        self.assertEqual(samples(metrics)[("recsvc_write_errors_total", ())], 2)

    def test_own_registry(self) -> None:
        """Two services' metrics do not collide (nor reach the global registry)."""
        first, second = Metrics(), Metrics()
        first.recording_started()
        self.assertEqual(samples(first)[("recsvc_recordings_started_total", ())], 1)
        self.assertEqual(samples(second)[("recsvc_recordings_started_total", ())], 0)


def summary_of(data_bytes: int, error: str | None = None):
    from recsvc.media.codec import CODECS
    from recsvc.control.commands import CallParties
    from recsvc.summary import RecordingInfo, RecordingSummary

    info = RecordingInfo("7", "00a859000001", CODECS["PCMA"], "out",
                         CallParties("2001", "Desk", "13800138000", "Bob"), "127.0.0.1")
    return RecordingSummary(info, "g711", "x.wav", 0.0, 1.0, "hangup", "phone", data_bytes,
                            data_bytes, 8000, MediaStats(), None, error)


def live_now(active: int = 0, connections: int = 0, received: int = 0, written: int = 0,
             free: int | None = None):
    from recsvc.metrics import LiveFigures

    return LiveFigures(active, 0, connections, received, 0, 0, {}, written, free)


class NoMetricsTests(SynchronousTestCase):
    """NoMetrics, a server's metrics when it keeps none, is told all that
    Metrics is told, and keeps nothing."""

    def test_told_what_metrics_is(self) -> None:
        """Each of Metrics' reporting methods (all but where the live figures
        come from and how they are read) is NoMetrics' too, with the same
        parameters, and does nothing."""
        reporting = {name for name, f in vars(Metrics).items()
                     if callable(f) and not name.startswith("_")} - {"watch", "collect_live"}
        self.assertEqual(
            {name for name in vars(NoMetrics) if not name.startswith("_")}, reporting)
        for name in reporting:
            self.assertEqual(
                list(inspect.signature(getattr(NoMetrics, name)).parameters),
                list(inspect.signature(getattr(Metrics, name)).parameters), name)
        self.assertIsNone(NoMetrics().recording_finished("hangup", "phone", 1.0, MediaStats()))


class RecorderMetricsTests(ServiceTestsMixin, SynchronousTestCase):
    """A recorder on fakes, reporting to Metrics."""

    def setUp(self) -> None:
        self.make_service()
        self.metrics = self.service.metrics = Metrics()
        self.metrics.watch(lambda: live_figures(self.service))

    def test_a_recording_counted_from_start_to_finish(self) -> None:
        """A recording is counted as started and active while it runs, its
        packets as they come, and once stopped as finished by reason, with
        its file, bytes and duration."""
        response = self.start()
        for sequence in range(10):
            self.ports.deliver(response.port, rtp(sequence, b"\xd5" * 160))
        scrape = samples(self.metrics)
        self.assertEqual(scrape[("recsvc_recordings_started_total", ())], 1)
        self.assertEqual(scrape[("recsvc_active_recordings", ())], 1)
        self.assertEqual(scrape[("recsvc_control_connections", ())], 1)
        self.assertEqual(scrape[("recsvc_rtp_packets_received_total", ())], 10)
        self.successResultOf(self.service.stop_recording(StopRequest("7", reason="hangup")))
        scrape = samples(self.metrics)
        self.assertEqual(scrape[("recsvc_active_recordings", ())], 0)
        self.assertEqual(scrape[("recsvc_recordings_finished_total",
                                 (("reason", "stopped by phone"), ("stopped_by", "phone")))], 1)
        self.assertEqual(scrape[("recsvc_files_finished_total", ())], 1)
        self.assertEqual(scrape[("recsvc_rtp_packets_received_total", ())], 10)
        self.assertEqual(scrape[("recsvc_audio_bytes_written_total", ())], 1600)
        self.assertEqual(scrape[("recsvc_recording_duration_seconds_count", ())], 1)
        self.assertEqual(scrape[("recsvc_write_errors_total", ())], 0)

    def test_refusals_by_reason(self) -> None:
        """Refused Starts are counted by their reason."""
        self.start()
        self.start(start_request(device="00a859000002"))  # the same id, another phone
        self.start(start_request("8", codec="G729"))
        scrape = samples(self.metrics)
        self.assertEqual(scrape[("recsvc_starts_refused_total",
                                 (("reason", "id already recording"),))], 1)
        self.assertEqual(scrape[("recsvc_starts_refused_total",
                                 (("reason", "unsupported codec"),))], 1)

    def test_rejected_packets_by_reason(self) -> None:
        """Rejected datagrams are counted by reason: not RTP, or an
        unexpected payload type."""
        response = self.start()
        self.ports.deliver(response.port, b"junk")
        self.ports.deliver(response.port, rtp(1, b"\xd5" * 160, payload_type=96))
        self.ports.deliver(response.port, rtp(2, b"\xd5" * 160, payload_type=97))
        scrape = samples(self.metrics)
        self.assertEqual(scrape[("recsvc_rtp_packets_rejected_total", (("reason", "not rtp"),))],
                         1)
        self.assertEqual(scrape[("recsvc_rtp_packets_rejected_total",
                                 (("reason", "payload type"),))], 2)

    def test_late_packets(self) -> None:
        """A packet that comes after its place was written is counted late."""
        response = self.start()
        for sequence in [0, *range(2, 12), 1]:
            self.ports.deliver(response.port, rtp(sequence, b"\xd5" * 160))
        self.assertEqual(samples(self.metrics)[("recsvc_rtp_packets_late_total", ())], 1)

    def test_write_errors(self) -> None:
        """A file the disk refused is a write error, and its recording is
        finished as stopped by the server for it."""
        self.make_service(writers=MemoryWriters(fail_at=1))
        self.service.metrics = self.metrics
        port = self.start().port
        for sequence in range(5):
            self.ports.deliver(port, rtp(sequence, b"\xd5" * 160))
        self.service.syncing.sync_turns(SYNC_TURNS)  # the first write fails
        scrape = samples(self.metrics)
        self.assertEqual(scrape[("recsvc_write_errors_total", ())], 1)
        self.assertEqual(scrape[("recsvc_recordings_finished_total",
                                 (("reason", "write error"), ("stopped_by", "server")))], 1)
