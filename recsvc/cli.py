"""The ``recsvc`` command: tools around the recordings (``recsvc convert``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import attrs

from recsvc.codec import CODECS
from recsvc.pipeline import MediaPipeline, MediaPolicy
from recsvc.source import ANY
from recsvc.storage import FORMATS, Storage
from recsvc.usbfile import NotAPhoneRecording, parse_phone_recording
from recsvc.wav import WavFileWriter


@attrs.frozen
class Converted:
    source: str
    output: str
    codec: str
    packets: int
    duration_s: float


def convert_file(source: str, output: str, audio_format: str = "g711") -> Converted:
    """Turn a phone's USB recording into a WAV file, through the same media
    path and writer as a live recording. Raises NotAPhoneRecording, OSError."""
    with open(source, "rb") as handle:
        recording = parse_phone_recording(handle.read())
    codec = CODECS[recording.codec]
    storage = Storage(os.path.dirname(output) or ".", audio_format)
    media = MediaPipeline(codec, storage.encoder(codec), "0.0.0.0", MediaPolicy(source=ANY))
    writer = WavFileWriter(output, storage.wav_format(codec))
    packets = 0
    first_timestamp = None
    try:
        for packet in recording.packets():
            if first_timestamp is None:
                first_timestamp = packet.timestamp
            # No arrival times in the file: the timestamps are the clock.
            arrival = ((packet.timestamp - first_timestamp) & 0xFFFFFFFF) / codec.clock_rate
            for chunk in media.packet(packet, ("0.0.0.0", 0), arrival):
                writer.write(chunk)
            packets += 1
        for chunk in media.flush():
            writer.write(chunk)
    finally:
        writer.close()
    fmt = storage.wav_format(codec)
    duration = round(writer.data_bytes / fmt.block_align / fmt.sample_rate, 3)
    return Converted(source, output, codec.name, packets, duration)


def _output_for(source: str, output_dir: str | None) -> str:
    stem = os.path.splitext(os.path.basename(source))[0]
    if output_dir is None:
        return os.path.join(os.path.dirname(source), stem + ".converted.wav")
    return os.path.join(output_dir, stem + ".wav")


def _convert(args: argparse.Namespace) -> int:
    failed = 0
    if args.output_dir is not None:
        os.makedirs(args.output_dir, exist_ok=True)
    for source in args.files:
        output = _output_for(source, args.output_dir)
        try:
            done = convert_file(source, output, args.format)
        except NotAPhoneRecording as error:
            print(f"{source}: not a Fanvil USB recording: {error}", file=sys.stderr)
            failed += 1
        except FileExistsError:
            print(f"{source}: {output} exists; not overwritten", file=sys.stderr)
            failed += 1
        except OSError as error:
            print(f"{source}: {error.strerror or error}", file=sys.stderr)
            failed += 1
        else:
            print(f"{source} -> {output} ({done.codec}, {done.packets} packets, {done.duration_s} s)")
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="recsvc", description="Tools for recsvc recordings.")
    commands = top.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert", help="turn the phone's USB recordings (Record_*.wav) into WAV files",
        description="Turn Fanvil USB recordings (a codec header and raw RTP) into WAV "
        "files. Each FILE becomes FILE.converted.wav beside it, or DIR/FILE.wav.",
    )
    convert.add_argument("files", nargs="+", metavar="FILE")
    convert.add_argument("-o", "--output-dir", metavar="DIR")
    convert.add_argument("--format", choices=FORMATS, default="g711",
                         help="g711: the codec's bytes as recorded (default); pcm16: decoded")
    convert.set_defaults(run=_convert)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
