"""Seed corpora for the fuzz targets, from real traffic: the control
messages of whole calls in each framing, and the RTP of calls with key
presses, comfort noise, a transfer, loss, reordering and duplicates.

    python fuzz/seeds.py var/fuzz/seeds   # writes control/ and rtp/ in it
"""

from __future__ import annotations

import os
import random
import struct
import sys

from recsvc.phonesim.phone import FRAMINGS, SAMPLE_CALL, plan_call
from recsvc.control.commands import (
    FAILED,
    SUCCESS,
    StartRequest,
    StartResponse,
    StopRequest,
    StopResponse,
    encode_command,
)
from recsvc.media.rtp import build_rtp
from recsvc.phonesim.simulator import tone

RECORD = struct.Struct("!HH")  # as fuzz/rtp.py reads them


def control_seeds() -> dict[str, bytes]:
    commands = [
        StartRequest("call-1", "00:a8:59:12:34:56", "PCMA", "out", SAMPLE_CALL),
        StopRequest("call-1", "hangup", (("remote_name", "Transferred"),)),
        StartResponse("call-2", SUCCESS, "", "192.0.2.1", 40000),
        StopResponse("call-2", FAILED, "unknown id"),
    ]
    seeds = {}
    for name, terminator in FRAMINGS.items():
        stream = b"".join(encode_command(command) + terminator for command in commands)
        seeds[f"call-{name}"] = b"\x00\x00\x00\x01" + stream
    seeds["escaped"] = b"seed" + b"cmd=RecordStartRequest&id=a%26b&device=00A859123456" \
        b"&remote_name=%E5%BC%A0%E4%B8%89&codec=pcmu&dir=in\r\n"
    return seeds


def rtp_seeds() -> dict[str, bytes]:
    audio = tone(1.0, noise=200)
    plans = {
        "plain": plan_call(audio),
        "dtmf": plan_call(audio, dtmf=((2400, 5, 1600),)),
        "silence": plan_call(audio, silences=((1600, 1600),)),
        "transfer": plan_call(audio, ssrc_changes=(4000,)),
    }
    seeds = {}
    rng = random.Random(7)
    for name, plan in plans.items():
        packets = [build_rtp(planned.packet) for planned in plan]
        seeds[name] = b"".join(RECORD.pack(len(p), 20) + p for p in packets)
        shuffled = packets[:]
        for index in range(0, len(shuffled) - 3, 5):
            shuffled[index], shuffled[index + 2] = shuffled[index + 2], shuffled[index]
        lossy = [p for p in shuffled if rng.random() > 0.1]
        lossy += lossy[:3]  # duplicates
        seeds[name + "-faulty"] = b"".join(RECORD.pack(len(p), rng.choice((0, 20, 45, 400))) + p
                                           for p in lossy)
    return seeds


def main() -> None:
    target = sys.argv[1]
    for kind, seeds in (("control", control_seeds()), ("rtp", rtp_seeds())):
        folder = os.path.join(target, kind)
        os.makedirs(folder, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(folder, name), "wb") as handle:
                handle.write(data)
        print(f"{len(seeds)} seeds in {folder}")


if __name__ == "__main__":
    main()
