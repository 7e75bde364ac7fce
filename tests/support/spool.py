"""Finished recordings laid on disk as the recorder leaves them (a WAV and
its sidecar, or a sidecar alone), for the archive's tests."""

from __future__ import annotations

import json
import os


def put_recording(root: str, name: str, audio: bytes | None = b"RIFF" + bytes(range(256)) * 8,
                  folder: str = "00a859123456/2026/11/25", status: str = "finished",
                  **fields: object) -> tuple[str, str]:
    """Write ``folder/name.wav`` (unless ``audio`` is None: a recording that
    received no audio) and its sidecar under root; their paths under root."""
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    wav = os.path.join(folder, name + ".wav")
    sidecar = os.path.join(folder, name + ".json")
    if audio is not None:
        with open(os.path.join(root, wav), "wb") as handle:
            handle.write(audio)
    data = {"id": name, "device": "00:a8:59:12:34:56", "direction": "out",
            "remote_number": "+8613800138000", "status": status,
            "started_at": "2026-11-25T09:30:15.120Z", "duration_s": 1.5,
            "file": None if audio is None else name + ".wav", "part": 1, "node": "a", **fields}
    with open(os.path.join(root, sidecar), "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    return wav, sidecar
