"""``recsvc status``: what the running service is doing, asked over its
HTTP API (``/api/active`` and ``/metrics``): the recordings in progress and
the counters. Blocking (urllib): a command, not the service."""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
import urllib.error
import urllib.request
from typing import Any

import attrs
from prometheus_client.parser import text_string_to_metric_families

from recsvc.config import Config
from recsvc.application.endpoints import tcp_address
from recsvc.cli.listing import direction_and_parties, printable

# The figures a status shows, from /metrics, in this order.
GAUGES = (
    ("recsvc_active_recordings", "recordings in progress"),
    ("recsvc_starting_recordings", "starts waiting for their file"),
    ("recsvc_control_connections", "control connections"),
    ("recsvc_storage_free_bytes", "free bytes in storage.root"),
)
COUNTERS = (
    ("recsvc_recordings_started", "recordings started"),
    ("recsvc_files_finished", "files finished"),
    ("recsvc_write_errors", "write errors"),
    ("recsvc_rtp_packets_received", "RTP packets received"),
    ("recsvc_rtp_packets_lost", "RTP packets lost"),
    ("recsvc_rtp_packets_late", "RTP packets late"),
)
BY_LABEL = (
    ("recsvc_recordings_finished", "recordings finished"),
    ("recsvc_starts_refused", "starts refused"),
    ("recsvc_connections_refused", "connections refused"),
    ("recsvc_connections_closed", "connections closed by the server"),
    ("recsvc_rtp_packets_rejected", "RTP packets rejected"),
)


class StatusError(Exception):
    """Why no status could be had, for the command's user."""


@attrs.frozen
class Status:
    url: str
    active: list[dict[str, Any]]
    # name -> {labels (sorted tuple of pairs) -> value}; counters without _total.
    figures: dict[str, dict[tuple[tuple[str, str], ...], float]]

    def value(self, name: str) -> float | None:
        samples = self.figures.get(name)
        return None if samples is None else sum(samples.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "active": self.active,
            "metrics": {name: [{"labels": dict(labels), "value": value}
                               for labels, value in sorted(samples.items())]
                        for name, samples in sorted(self.figures.items())},
        }


def api_url(config: Config) -> str:
    """The URL of the service's HTTP side as this machine reaches it, from
    http.listen (read, not loaded: an ssl: key need not be readable). Raises
    StatusError when it is off or not TCP."""
    if config.http.listen == "off":
        raise StatusError("the HTTP API is off (http.listen: off): status asks it; "
                          "turn it on, or give --url")
    address = tcp_address(config.http.listen)
    if address is None:
        raise StatusError(f"http.listen {config.http.listen!r} is not a TCP address: give --url")
    kind, host, port = address
    scheme = "https" if kind == "ssl" else "http"
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def basic_authorization(user: str, password: str) -> str:
    credentials = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return f"Basic {credentials}"


def fetch_status(url: str, authorization: str | None = None, timeout: float = 10.0,
                 insecure: bool = False) -> Status:
    """The recordings in progress and the counters of the service at
    ``url``. Raises StatusError."""
    try:
        active = json.loads(_get(url, "/api/active", authorization, timeout, insecure))["active"]
        figures = parse_metrics(_get(url, "/metrics", authorization, timeout, insecure).decode())
    except (ValueError, KeyError, TypeError) as error:  # JSON, UTF-8, the metrics' text
        raise StatusError(f"{url}: not an answer from recsvc ({error})") from None
    return Status(url, active, figures)


def parse_metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus text, by family (counters without their _total) and labels;
    the histograms' buckets left out."""
    figures: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket")):
                continue
            name = re.sub(r"_total$", "", sample.name)
            figures.setdefault(name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return figures


def _get(url: str, path: str, authorization: str | None, timeout: float,
         insecure: bool) -> bytes:
    request = urllib.request.Request(url.rstrip("/") + path)
    if authorization is not None:
        # (Not carried over a redirect to somewhere else.)
        request.add_unredirected_header("Authorization", authorization)
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    # No proxy: the service is asked directly, credentials and all.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=timeout) as answer:
            return answer.read()
    except urllib.error.HTTPError as error:
        if error.code == 401:
            raise StatusError(f"{url}{path}: 401, http.auth is on: give --user (the password "
                              "is asked), or the config with the token") from None
        raise StatusError(f"{url}{path}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, ssl.SSLCertVerificationError):
            raise StatusError(f"{url}: the certificate is not trusted ({error.reason.verify_message})"
                              ": --insecure accepts it") from None
        raise StatusError(f"recsvc is not running or not reachable at {url}: "
                          f"{error.reason}") from None
    except (TimeoutError, ConnectionError) as error:  # while the answer was read
        raise StatusError(f"{url}{path}: the answer did not come whole ({error!r})") from None
    except (OSError, http.client.HTTPException) as error:
        raise StatusError(f"{url}{path}: not an answer from recsvc ({error!r})") from None


def format_status(status: Status) -> str:
    """The status for people: the recordings in progress, then the figures."""
    lines = [f"recsvc at {status.url}"]
    lines.append(f"{len(status.active)} recording(s) in progress")
    for row in status.active:
        lines.append(
            f"  {row['id']}  {row['device']}  {direction_and_parties(row)}  "
            f"{row['codec']}  {row['seconds']:.0f} s  {row['packets_received']} packets "
            f"({row['packets_lost']} lost)  since {row['started_at']}")
    for name, title in GAUGES + COUNTERS:
        value = status.value(name)
        if value is not None:
            lines.append(f"{title}: {value:,.0f}")
    for name, title in BY_LABEL:
        samples = status.figures.get(name, {})
        if not samples:
            continue
        lines.append(f"{title}: {sum(samples.values()):,.0f}")
        for labels, value in sorted(samples.items(), key=lambda item: -item[1]):
            lines.append(f"  {value:,.0f}  " + ", ".join(f"{k}={v}" for k, v in labels))
    # The phones' ids, numbers and names (and a stop reason's words) are
    # what they sent.
    return "\n".join(printable(line) for line in lines)
