"""The service's Prometheus metrics (prometheus-client), on a registry of
their own, so that an embedding application's metrics are not mixed in.

The recorder reports events (a Start refused, a recording begun, a file
finished, a recording finished); what is live (recordings in progress,
connections, their packets and bytes so far, free disk space) is read when
the metrics are scraped, never counted per packet. Label values are the
server's own words, never a phone's free text (bounded label sets).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recsvc.summary import MediaStats, RecordingSummary

# Seconds: from a short transfer to the 4-hour file limit.
DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


def reason_label(reason: str, stopped_by: str = "") -> str:
    """A stop or refusal reason as a label value: the server's words up to
    any detail after a colon or parenthesis; whatever a phone said, "phone"."""
    if stopped_by == "phone":
        return "stopped by phone"
    if reason.startswith("unsupported codec"):  # it goes on with the phone's codec name
        return "unsupported codec"
    for mark in (":", " ("):
        reason = reason.split(mark, 1)[0]
    return reason.strip()[:40] or "unknown"


def rejected_label(reason: str) -> str:
    """A rejection reason as a label value: without the number some carry
    ("payload type 13": the network chooses it)."""
    return reason.rstrip("0123456789").strip() or "unknown"


@attrs.frozen
class LiveFigures:
    """What is happening now, read on the reactor thread at a scrape."""

    active: int
    starting: int
    connections: int
    packets_received: int
    packets_lost: int
    packets_late: int
    packets_rejected: dict[str, int]
    bytes_written: int  # to the files still open
    free_bytes: int | None = None  # as the recorder's disk watch last read it


def live_figures(recorder: Any) -> LiveFigures:
    """A RecorderService's figures now (on the reactor thread)."""
    received = lost = late = written = 0
    rejected: dict[str, int] = {}
    for recording in recorder.registry:
        stats = recording.progress()
        received += stats.received
        lost += stats.lost
        late += stats.late
        _add_counts(rejected, stats.rejected.items())
        written += recording.bytes_in_open_file
    disk = recorder.disk
    return LiveFigures(len(recorder.registry), recorder.starting_count,
                       recorder.connection_count, received, lost, late, rejected, written,
                       None if disk is None else disk.free)


class Metrics:
    """Counters the recorder reports to, and the live figures read at a scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.starts_refused = Counter(
            "recsvc_starts_refused", "Starts answered with result=failed, by reason",
            ["reason"], registry=registry)
        self.stops_refused = Counter(
            "recsvc_stops_refused", "Stops answered with result=failed, by reason",
            ["reason"], registry=registry)
        self.connections_refused = Counter(
            "recsvc_connections_refused", "Control connections closed at once, by reason",
            ["reason"], registry=registry)
        self.connections_closed = Counter(
            "recsvc_connections_closed", "Control connections the server closed, by reason",
            ["reason"], registry=registry)
        self.web_connections_refused = Counter(
            "recsvc_http_connections_refused", "HTTP connections closed at once, by reason",
            ["reason"], registry=registry)
        self.web_connections_closed = Counter(
            "recsvc_http_connections_closed", "HTTP connections the server closed, by reason",
            ["reason"], registry=registry)
        self.recordings_started = Counter(
            "recsvc_recordings_started", "Recordings begun", registry=registry)
        self.recordings_finished = Counter(
            "recsvc_recordings_finished", "Recordings finished, by who stopped them and why",
            ["stopped_by", "reason"], registry=registry)
        self.files_finished = Counter(
            "recsvc_files_finished", "WAV files finished (a long recording has several)",
            registry=registry)
        self.write_errors = Counter(
            "recsvc_write_errors",
            "Files whose audio could not all be written or that could not be finished",
            registry=registry)
        self.duration = Histogram(
            "recsvc_recording_duration_seconds", "How long the finished recordings lasted",
            buckets=DURATION_BUCKETS, registry=registry)
        self.archive_files_verified = Counter(
            "recsvc_archive_files_verified",
            "Files (WAVs and sidecars) the archive's store confirmed by size and SHA-256",
            registry=registry)
        self.archive_bytes_sent = Counter(
            "recsvc_archive_bytes_sent", "Bytes of verified files sent to the archive",
            registry=registry)
        self.archive_failures = Counter(
            "recsvc_archive_failures", "Uploads to the archive that failed, by cause",
            ["cause"], registry=registry)
        self.archive_local_deleted = Counter(
            "recsvc_archive_local_copies_deleted",
            "Local WAVs deleted once verified in the archive and keep_local_days was over",
            registry=registry)
        self._archive_status: Callable[[], Any] | None = None
        self._finished = _Totals()
        self._refused_counters: dict[str, Any] = {}
        self._live: Callable[[], LiveFigures] | None = None
        registry.register(_LiveCollector(self))

    def watch(self, live: Callable[[], LiveFigures]) -> None:
        """Where the live figures come from (read on the reactor thread)."""
        self._live = live

    def watch_archive(self, status: Callable[[], Any]) -> None:
        """Where the archive's backlog is read (an ArchiveStatus or None)."""
        self._archive_status = status

    def archive_verified(self, files: int, bytes_sent: int) -> None:
        self.archive_files_verified.inc(files)
        self.archive_bytes_sent.inc(bytes_sent)

    def archive_failed(self, cause: str) -> None:
        self.archive_failures.labels(cause[:60]).inc()

    def archive_local_copies_deleted(self, count: int) -> None:
        self.archive_local_deleted.inc(count)

    def start_refused(self, reason: str) -> None:
        self.starts_refused.labels(reason_label(reason)).inc()

    def stop_refused(self, reason: str) -> None:
        self.stops_refused.labels(reason_label(reason)).inc()

    def connection_refused(self, reason: str) -> None:
        # (A flood is refused thousands of times a second: each reason's
        # counter is looked up once.)
        counter = self._refused_counters.get(reason)
        if counter is None:
            counter = self._refused_counters[reason] = self.connections_refused.labels(reason)
        counter.inc()

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason).inc()

    def web_connection_refused(self, reason: str) -> None:
        self.web_connections_refused.labels(reason).inc()

    def web_connection_closed(self, reason: str) -> None:
        self.web_connections_closed.labels(reason).inc()

    def recording_started(self) -> None:
        self.recordings_started.inc()

    def file_finished(self, summary: RecordingSummary) -> None:
        self.files_finished.inc()
        self._finished.bytes_written += summary.data_bytes
        if summary.error is not None:
            self.write_errors.inc()

    def file_unfinished(self) -> None:
        """A file that could not be finished (its sidecar not written)."""
        self.write_errors.inc()

    def recording_finished(self, reason: str, stopped_by: str, seconds: float,
                           stats: MediaStats) -> None:
        self.recordings_finished.labels(stopped_by, reason_label(reason, stopped_by)).inc()
        self.duration.observe(max(0.0, seconds))
        self._finished.add(stats)

    def collect_live(self) -> Iterator[Metric]:
        live = self._live() if self._live is not None else None
        yield _gauge("recsvc_active_recordings", "Recordings in progress (stopping included)",
                     live and live.active)
        yield _gauge("recsvc_starting_recordings", "Starts waiting for their file",
                     live and live.starting)
        yield _gauge("recsvc_control_connections", "Open control connections",
                     live and live.connections)
        yield _gauge("recsvc_storage_free_bytes", "Free space where the recordings are stored",
                     live and live.free_bytes)
        archive = self._archive_status() if self._archive_status is not None else None
        if archive is not None:
            yield _gauge("recsvc_archive_files_waiting", "Files waiting for their upload",
                         archive.files_waiting)
            yield _gauge("recsvc_archive_bytes_waiting", "Bytes waiting for their upload",
                         archive.bytes_waiting)
            yield _gauge("recsvc_archive_oldest_waiting_seconds",
                         "Age of the oldest recording waiting for its upload",
                         archive.oldest_waiting_s)
            yield _gauge("recsvc_archive_recordings_set_aside",
                         "Recordings not uploaded until the next start: another object is at "
                         "their key", archive.set_aside)
        totals = self._finished
        now = totals.plus(live)
        for name, help_text, value in (
            ("recsvc_rtp_packets_received", "Audio packets placed in recordings",
             now.received),
            ("recsvc_rtp_packets_lost", "Sequence numbers never received", now.lost),
            ("recsvc_rtp_packets_late", "Packets that came after their place was written",
             now.late),
            ("recsvc_audio_bytes_written", "Audio bytes written to the recordings' files",
             now.bytes_written),
        ):
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], totals.monotonic(name, value))
            yield family
        rejected = CounterMetricFamily("recsvc_rtp_packets_rejected",
                                       "Datagrams not taken into a recording, by reason",
                                       labels=["reason"])
        by_label: dict[str, int] = {}
        _add_counts(by_label, ((rejected_label(reason), count)
                               for reason, count in now.rejected.items()))
        for label, count in sorted(by_label.items()):
            rejected.add_metric([label], totals.monotonic(f"rejected {label}", count))
        yield rejected


class NoMetrics:
    """The counters of a server without metrics: told everything Metrics
    is, and keeps nothing (so the service never asks whether it has any)."""

    def watch_archive(self, status: Callable[[], Any]) -> None:
        pass

    def archive_verified(self, files: int, bytes_sent: int) -> None:
        pass

    def archive_failed(self, cause: str) -> None:
        pass

    def archive_local_copies_deleted(self, count: int) -> None:
        pass

    def start_refused(self, reason: str) -> None:
        pass

    def stop_refused(self, reason: str) -> None:
        pass

    def connection_refused(self, reason: str) -> None:
        pass

    def connection_closed(self, reason: str) -> None:
        pass

    def web_connection_refused(self, reason: str) -> None:
        pass

    def web_connection_closed(self, reason: str) -> None:
        pass

    def recording_started(self) -> None:
        pass

    def file_finished(self, summary: RecordingSummary) -> None:
        pass

    def file_unfinished(self) -> None:
        pass

    def recording_finished(self, reason: str, stopped_by: str, seconds: float,
                           stats: MediaStats) -> None:
        pass


@attrs.define
class _Totals:
    """The packets and bytes of finished recordings, and the last value each
    live counter showed (a recording's count moves from "live" to
    "finished" between two scrapes; a counter must never seem to go back)."""

    received: int = 0
    lost: int = 0
    late: int = 0
    rejected: dict[str, int] = attrs.field(factory=dict)
    bytes_written: int = 0
    _shown: dict[str, float] = attrs.field(factory=dict)

    def add(self, stats: MediaStats) -> None:
        self.received += stats.received
        self.lost += stats.lost
        self.late += stats.late
        _add_counts(self.rejected, stats.rejected.items())

    def plus(self, live: LiveFigures | None) -> _Totals:
        if live is None:
            return self
        rejected = dict(self.rejected)
        _add_counts(rejected, live.packets_rejected.items())
        return _Totals(self.received + live.packets_received, self.lost + live.packets_lost,
                       self.late + live.packets_late, rejected,
                       self.bytes_written + live.bytes_written)

    def monotonic(self, name: str, value: float) -> float:
        shown = self._shown[name] = max(value, self._shown.get(name, 0))
        return shown


def _add_counts(into: dict[str, int], counts: Iterable[tuple[str, int]]) -> None:
    for key, count in counts:
        into[key] = into.get(key, 0) + count


def _gauge(name: str, help_text: str, value: Any) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text)
    if value is not None:
        family.add_metric([], value)
    return family


class _LiveCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect_live()
