"""Tests for recsvc.storage.usbfile and ``recsvc convert``: the phone's USB recordings."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.media import g711
from recsvc.cli.commands import convert_file, main
from recsvc.media.rtp import RtpPacket, build_rtp
from recsvc.storage.usbfile import NotAPhoneRecording, parse_phone_recording

PACKET = 12 + 160


def phone_file(audio: bytes, codec: bytes = b"PCMA", order: str = "<", lost: set[int] = frozenset()) -> bytes:
    """A USB recording as the phone writes it: codec name, rtpLen,
    increment, dataSize in ``order``, then 20 ms RTP packets."""
    packets = b"".join(
        build_rtp(RtpPacket(8 if codec != b"PCMU" else 0, 1000 + n, 5000 + 160 * n, 77, audio[160 * n:160 * n + 160]))
        for n in range(len(audio) // 160) if n not in lost
    )
    header = codec.ljust(64, b"\0") + struct.pack(order + "iiI", PACKET, 160, len(packets))
    return header + packets


def wav_data(path: str) -> tuple[int, bytes]:
    with open(path, "rb") as handle:
        blob = handle.read()
    offset = 12
    tag = None
    while offset < len(blob):
        name, size = blob[offset:offset + 4], struct.unpack_from("<I", blob, offset + 4)[0]
        if name == b"fmt ":
            tag = struct.unpack_from("<H", blob, offset + 8)[0]
        if name == b"data":
            return tag, blob[offset + 8:offset + 8 + size]
        offset += 8 + size + (size & 1)
    raise AssertionError("no data chunk")


class ParseTests(SynchronousTestCase):
    def test_byte_order_detected(self) -> None:
        """
        Little- and big-endian headers are both read, the byte order told
        by which one gives a plausible RTP packet length.
        """
        audio = bytes(range(256)) * 5
        for order in "<>":
            recording = parse_phone_recording(phone_file(audio[:1600], order=order))
            self.assertEqual(
                (recording.codec, recording.packet_length, recording.increment, recording.byte_order),
                ("PCMA", PACKET, 160, order),
            )
            self.assertEqual(b"".join(p.payload for p in recording.packets()), audio[:1600])

    def test_codec_aliases(self) -> None:
        """
        The codec names firmware writes map to recsvc's codecs.
        """
        for name, codec in ((b"g711a", "PCMA"), (b"G.711U", "PCMU"), (b"PCMU", "PCMU"), (b"G722", "G722")):
            self.assertEqual(parse_phone_recording(phone_file(bytes(320), name)).codec, codec)

    def test_not_a_phone_recording(self) -> None:
        """
        Other files are refused with the reason: too short, already a WAV,
        an unknown codec, nonsense lengths.
        """
        good = phone_file(bytes(320))
        for blob, reason in (
            (b"short", "shorter"),
            (b"RIFF" + good[4:], "already a RIFF"),
            (phone_file(bytes(320), b"G729"), "unsupported codec"),
            (good[:64] + b"\xff" * 12 + good[76:], "plausible"),
            (good[:76], "no complete RTP packet"),
        ):
            error = self.assertRaises(NotAPhoneRecording, parse_phone_recording, blob)
            self.assertIn(reason, str(error))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=400))
    def test_arbitrary_bytes(self, blob: bytes) -> None:
        """
        Arbitrary bytes never raise anything but NotAPhoneRecording.
        """
        try:
            recording = parse_phone_recording(blob)
        except NotAPhoneRecording:
            return
        list(recording.packets())


class ConvertTests(SynchronousTestCase):
    def write(self, blob: bytes) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "Record_20240517093015.wav")
        with open(path, "wb") as handle:
            handle.write(blob)
        return path

    def test_convert_byte_exact(self) -> None:
        """
        A USB recording becomes an A-law WAV holding the payloads byte for
        byte, lost packets as silence, beside the source.
        """
        audio = random.Random(3).randbytes(8000)
        source = self.write(phone_file(audio, lost={10}))
        done = convert_file(source, source[:-4] + ".converted.wav")
        tag, data = wav_data(done.output)
        expected = audio[:1600] + b"\xd5" * 160 + audio[1760:]
        self.assertEqual((tag, data), (6, expected))
        self.assertEqual((done.codec, done.packets, done.duration_s), ("PCMA", 49, 1.0))

    def test_pcm16(self) -> None:
        """
        --format pcm16 decodes to 16-bit PCM.
        """
        audio = random.Random(4).randbytes(1600)
        source = self.write(phone_file(audio, b"PCMU", order=">"))
        done = convert_file(source, source + ".out.wav", "pcm16")
        self.assertEqual(wav_data(done.output), (1, g711.decode_ulaw(audio)))

    def test_command_line(self) -> None:
        """
        ``recsvc convert`` converts each file, reports it, refuses to
        overwrite, and exits non-zero naming a file that is not a phone
        recording while still converting the others.
        """
        good = self.write(phone_file(bytes(range(160)) * 10))
        bad = os.path.join(os.path.dirname(good), "notes.wav")
        with open(bad, "wb") as handle:
            handle.write(b"RIFF....WAVEfmt ")
        out = self.mktemp()
        self.assertEqual(main(["convert", "-o", out, good]), 0)
        self.assertTrue(os.path.exists(os.path.join(out, "Record_20240517093015.wav")))
        self.assertEqual(main(["convert", "-o", out, good]), 1)  # exists: not overwritten
        status = main(["convert", bad, good])
        self.assertEqual(status, 1)
        self.assertTrue(os.path.exists(good[:-4] + ".converted.wav"))

    def test_console_script(self) -> None:
        """
        The installed ``recsvc`` console script runs convert.
        """
        good = self.write(phone_file(bytes(320)))
        script = os.path.join(os.path.dirname(sys.executable), "recsvc")
        result = subprocess.run([script, "convert", good], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("PCMA, 2 packets, 0.04 s", result.stdout)
        result = subprocess.run([script, "convert", "/nonexistent/x.wav"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 1)
        self.assertIn("No such file", result.stderr)
