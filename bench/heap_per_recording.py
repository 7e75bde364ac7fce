"""Python's heap per recording (issue 17): 1,000 recordings started through
a real ControlProtocol on recsvc.testing's fakes, three packets each,
measured with tracemalloc; what is not audio waiting for the disk. On
demand, from a clone's root: `.venv/bin/python bench/heap_per_recording.py`."""
import gc, tempfile, tracemalloc
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
root = tempfile.mkdtemp()
ports = FakePortPool(high=60000)
service = memory_recorder(root, ports=ports)
service.startService()
factory = ControlFactory(service, 4096)
def start(i):
    protocol = factory.buildProtocol(None)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.9", 10000),
                                peerAddress=IPv4Address("TCP", "127.0.0.%d" % (1 + i % 200), 40000 + i))
    protocol.makeConnection(transport)
    mac = "00a859%06x" % i
    protocol.dataReceived(f"cmd=RecordStartRequest&id=r{i}&device={mac}&codec=PCMA\r\n".encode())
    port = int(transport.value().split(b"port=")[1].split(b"\r")[0].split(b"&")[0])
    for seq in range(3):
        ports.deliver(port, build_rtp(RtpPacket(8, seq, seq * 160, 99, bytes([seq]) * 160)))
    return protocol
keep = [start(i) for i in range(20)]
gc.collect(); tracemalloc.start(); before = tracemalloc.take_snapshot()
keep += [start(i) for i in range(20, 20 + N)]
gc.collect(); after = tracemalloc.take_snapshot()
total = sum(s.size_diff for s in after.compare_to(before, "filename"))
print(f"recording now: {len(service.registry)}; Python heap per recording: {total / N / 1024:.1f} KB")
