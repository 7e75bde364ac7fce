"""The CPU a Stop costs in recsvc (issue 17), without the disk's waits: on
recsvc.testing's fakes (audio in memory, blocking work run at once, the
sidecars written to a temporary folder), 1,000 recordings started through
a real ControlProtocol, 10 packets each, then each stopped by its phone;
the process time of the Stops alone, best of 5 rounds. On demand, from a
clone's root: `.venv/bin/python bench/stop_cost.py`."""
import gc, tempfile, time
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from recsvc.testing import memory_recorder, FakePortPool
try:
    from recsvc.control.protocol import ControlFactory
    from recsvc.media.rtp import RtpPacket, build_rtp
except ImportError:  # the flat layout before issue 17, to compare
    from recsvc.protocol.control import ControlFactory
    from recsvc.rtp import RtpPacket, build_rtp
N = 1000
best = None
for round_ in range(5):
    root = tempfile.mkdtemp()
    ports = FakePortPool(high=60000)
    service = memory_recorder(root, ports=ports)
    service.startService()
    factory = ControlFactory(service, 4096)
    phones = []
    for i in range(N):
        protocol = factory.buildProtocol(None)
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.9", 10000),
                                    peerAddress=IPv4Address("TCP", "127.0.0.%d" % (1 + i % 200), 40000 + i))
        protocol.makeConnection(transport)
        protocol.dataReceived(f"cmd=RecordStartRequest&id=r{i}&device=00a859{i:06x}&codec=PCMA\r\n".encode())
        answer = transport.value()
        if b"result=success" not in answer: raise SystemExit(f"round {round_} call {i}: {answer!r}")
        port = int(answer.split(b"port=")[1].split(b"\r")[0].split(b"&")[0])
        for seq in range(10):
            ports.deliver(port, build_rtp(RtpPacket(8, seq, seq * 160, 99, bytes([seq]) * 160)))
        phones.append((protocol, transport))
    gc.collect()
    started = time.process_time()
    for i, (protocol, transport) in enumerate(phones):
        protocol.dataReceived(f"cmd=RecordStopRequest&id=r{i}\r\n".encode())
    took = time.process_time() - started
    assert len(service.registry) == 0, len(service.registry)
    assert all(b"RecordStopResponse" in t.value() and b"result=success" in t.value().split(b"RecordStopResponse")[1] for _, t in phones)
    best = took if best is None else min(best, took)
print(f"CPU a Stop costs in recsvc (fakes): {1e6 * best / N:.0f} µs (best of 5 rounds of {N})")
