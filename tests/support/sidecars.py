"""Sidecars on disk for the index's tests: a storage root with sidecars
(and empty WAVs) in folders, as the recorder leaves them."""

from __future__ import annotations

import json
import os


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
