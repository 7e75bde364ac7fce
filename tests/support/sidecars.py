"""Sidecars on disk for the index's and the page's tests: a storage root
with sidecars (and empty WAVs) in folders, as the recorder leaves them."""

from __future__ import annotations

import json
import os
from typing import Any


def sidecar_name(data: dict, folder: str = "d") -> str:
    """Where a sidecar of ``data`` is, under the root: beside its WAV."""
    return os.path.join(folder, os.path.splitext(data["file"])[0] + ".json")


class SidecarRoot:
    """A storage root with sidecars (and empty WAVs) in folders."""

    def __init__(self, root: str) -> None:
        self.root = root

    def write(self, data: dict, folder: str = "00a859000001/2026/11/24") -> str:
        path = os.path.join(self.root, folder, os.path.splitext(data["file"])[0] + ".json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        open(os.path.splitext(path)[0] + ".wav", "wb").close()
        return path


def write_sidecar(root: str, recording_id: str, started_at: str) -> None:
    """A finished recording's sidecar (its WAV is not needed to list it)."""
    stamp = started_at[:19].replace("-", "").replace(":", "") + "Z"
    name = f"{stamp}_out_2002_{recording_id}"
    folder = os.path.join(root, "00a859000001", started_at[:4])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".json"), "w", encoding="utf-8") as handle:
        json.dump({
            "id": recording_id, "device": "00:a8:59:00:00:01", "codec": "PCMA",
            "direction": "out", "local_number": "2001", "local_name": "Desk",
            "remote_number": "2002", "remote_name": "", "status": "finished",
            "started_at": started_at, "duration_s": 60.0, "stop_reason": "hangup",
            "stopped_by": "phone", "part": 1, "file": name + ".wav",
        }, handle)


def serve_page(test: Any, root: str, asked: list[Any] | None = None) -> str:
    """The web page and API on 127.0.0.1 over the sidecars under ``root``
    (indexed in SQLite there), stopped at the test's end: its base URL.
    ``asked``: each search the index is asked, appended to it."""
    from twisted.internet import reactor
    from twisted.internet.defer import maybeDeferred
    from twisted.internet.threads import deferToThread

    from recsvc.config import HttpAuthConfig
    from recsvc.index import store as index
    from recsvc.index.sqlite import SqliteIndex
    from recsvc.metrics import Metrics
    from recsvc.testing import memory_recorder
    from recsvc.web.site import make_site

    connection = SqliteIndex.open(os.path.join(root, "index.sqlite3"))
    test.addCleanup(connection.close)
    index.catch_up(connection, root)

    def run_index(f: Any, *args: Any) -> Any:
        if asked is not None and args:  # (a search; not the users' read)
            asked.append(args[0])
        return maybeDeferred(f, connection, *args)

    recorder = memory_recorder(os.path.join(root, "live"))
    recorder.startService()
    site = make_site(recorder, run_index, root, deferToThread, Metrics(), HttpAuthConfig(),
                     now=reactor.seconds)
    listening = reactor.listenTCP(0, site, interface="127.0.0.1")
    test.addCleanup(listening.stopListening)
    return f"http://127.0.0.1:{listening.getHost().port}"
