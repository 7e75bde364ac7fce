"""A finished recording's files read back: its WAV file, chunk by chunk,
and its sidecar."""

from __future__ import annotations

import io
import json
import struct
import wave

from twisted.trial.unittest import SynchronousTestCase

from recsvc.phonesim.simulator import finished_recordings
from recsvc.storage.folder import sidecar_path
from recsvc.storage.wav import WavFormat


def parse_wav(testCase: SynchronousTestCase, data: bytes) -> dict[bytes, bytes]:
    """Walk the RIFF chunks of ``data`` with struct, asserting the sizes add
    up to exactly the file; returns chunk id -> body (pad byte excluded)."""
    testCase.assertGreaterEqual(len(data), 12)
    riff, riff_size, wave_id = struct.unpack_from("<4sI4s", data)
    testCase.assertEqual((riff, wave_id), (b"RIFF", b"WAVE"))
    testCase.assertEqual(riff_size, len(data) - 8, "RIFF size is not the file size - 8")
    chunks: dict[bytes, bytes] = {}
    order = []
    offset = 12
    while offset < len(data):
        testCase.assertLessEqual(offset + 8, len(data), "truncated chunk header")
        chunk_id, size = struct.unpack_from("<4sI", data, offset)
        offset += 8
        testCase.assertLessEqual(offset + size, len(data), f"chunk {chunk_id!r} overruns the file")
        chunks[chunk_id] = data[offset:offset + size]
        order.append(chunk_id)
        offset += size
        if size & 1:
            testCase.assertEqual(data[offset:offset + 1], b"\0", "missing pad byte")
            offset += 1
    testCase.assertEqual(offset, len(data))
    testCase.assertEqual(order[0], b"fmt ")
    testCase.assertEqual(order[-1], b"data")
    return chunks


def check_wav(testCase: SynchronousTestCase, data: bytes, fmt: WavFormat) -> bytes:
    """Assert ``data`` is a valid WAV file of ``fmt``; return its audio."""
    chunks = parse_wav(testCase, data)
    tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", chunks[b"fmt "])
    testCase.assertEqual(
        (tag, channels, rate, byte_rate, align, bits),
        (fmt.format_tag, fmt.channels, fmt.sample_rate,
         fmt.sample_rate * fmt.block_align, fmt.block_align, fmt.bits_per_sample),
    )
    audio = chunks[b"data"]
    testCase.assertEqual(len(audio) % fmt.block_align, 0, "partial sample in data")
    if fmt.format_tag == 1:
        testCase.assertEqual(len(chunks[b"fmt "]), 16)
        testCase.assertNotIn(b"fact", chunks)
        with wave.open(io.BytesIO(data)) as reader:
            testCase.assertEqual(reader.getnframes(), len(audio) // 2)
            testCase.assertEqual(reader.readframes(reader.getnframes()), audio)
    else:
        testCase.assertEqual(len(chunks[b"fmt "]), 18)
        testCase.assertEqual(chunks[b"fmt "][16:], b"\0\0")
        testCase.assertEqual(struct.unpack("<I", chunks[b"fact"]), (len(audio) // fmt.block_align,))
    return audio


def read_wav(path: str) -> tuple[dict[str, int], bytes, int]:
    """(fmt fields, data chunk bytes, RIFF size) of a WAV file, checking the
    chunk sizes add up to the file length."""
    with open(path, "rb") as handle:
        blob = handle.read()
    assert blob[:4] == b"RIFF" and blob[8:12] == b"WAVE", path
    riff_size = struct.unpack_from("<I", blob, 4)[0]
    assert riff_size + 8 == len(blob), (riff_size + 8, len(blob))
    offset, fmt, data = 12, {}, None
    while offset < len(blob):
        name, size = blob[offset:offset + 4], struct.unpack_from("<I", blob, offset + 4)[0]
        body = blob[offset + 8:offset + 8 + size]
        if name == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            fmt = {"tag": tag, "channels": channels, "rate": rate, "bits": bits}
        elif name == b"data":
            data = body
        offset += 8 + size + (size & 1)
    assert data is not None, "no data chunk"
    return fmt, data, riff_size


def recordings(root: str) -> dict[str, str]:
    """Recording id -> WAV path of the finished recordings under root."""
    return finished_recordings(root)


def sidecar_of(wav_path: str) -> dict:
    """The sidecar of the WAV file at ``wav_path``."""
    with open(sidecar_path(wav_path), encoding="utf-8") as handle:
        return json.load(handle)
