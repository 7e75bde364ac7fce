"""Clean real-time RTP to a range of ports, no control protocol: the load of
N phones for receivers that are not recsvc (the bare loop, ffmpeg).

Call i sends to BASE+i from its own socket, the starts spread evenly over
``--spread`` seconds, 20 ms PCMA packets of the audio recsvc-phone sends
(`recsvc.phonesim.simulator.call_audio`: no two calls send the same bytes).

    python bench/rtp_blast.py --calls 1000 --base 40000 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import time

from recsvc.phonesim.pacer import LeanStream, Pacer, udp_socket
from recsvc.phonesim.simulator import call_audio

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--base", type=int, default=40000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--port-step", type=int, default=1)
    args = parser.parse_args()
    audio = call_audio(args.calls, args.seconds)
    pacer = Pacer()
    senders = [udp_socket(args.host, args.base + args.port_step * index) for index in range(args.calls)]
    began = time.monotonic() + 0.1
    for index, sock in enumerate(senders):
        stream = LeanStream(audio(index), 8, 0x1000 + index, index, 0)
        pacer.add(stream, sock, began + args.spread * index / args.calls)
    print(json.dumps({"sending": args.calls}), flush=True)
    pacer.run()
    print(json.dumps({"calls": args.calls, "sent": pacer.sent,
                      "late_max_ms": round(1000 * pacer.late_max, 1)}), flush=True)


if __name__ == "__main__":
    main()
