"""The walk of one packet and one Stop through recsvc (issue 17): the modules
crossed, in order, by calls of recsvc's own functions (sys.setprofile), on
the fakes of recsvc.testing. On demand: `.venv/bin/python bench/walk.py`."""
import sys
import tempfile

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from recsvc.testing import memory_recorder, FakePortPool
try:
    from recsvc.control.protocol import ControlFactory
    from recsvc.media.rtp import RtpPacket, build_rtp
except ImportError:  # the flat layout before issue 17, to compare
    from recsvc.protocol.control import ControlFactory
    from recsvc.rtp import RtpPacket, build_rtp

root = tempfile.mkdtemp()
ports = FakePortPool()
service = memory_recorder(root, ports=ports)
service.startService()
factory = ControlFactory(service, 4096)
protocol = factory.buildProtocol(None)
transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.9", 10000),
                            peerAddress=IPv4Address("TCP", "127.0.0.1", 40404))
protocol.makeConnection(transport)
protocol.dataReceived(b"cmd=RecordStartRequest&id=7&device=00a859000001&codec=PCMA\r\n")
port = int(transport.value().split(b"port=")[1].split(b"\r")[0].split(b"&")[0])
for seq in range(10):
    ports.deliver(port, build_rtp(RtpPacket(8, seq, seq * 160, 99, bytes([seq]) * 160)))

def walk(action):
    calls = []
    def profile(frame, event, arg):
        if event == "call":
            module = frame.f_globals.get("__name__", "")
            if module.startswith("recsvc"):
                calls.append((module, frame.f_code.co_name))
    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    crossings = [calls[0][0]] if calls else []
    for module, _ in calls[1:]:
        if module != crossings[-1]:
            crossings.append(module)
    return calls, crossings

def summary(name, calls, crossings):
    modules = sorted(set(m for m, _ in calls))
    back_and_forth = sum(1 for a, b in zip(crossings, crossings[1:])
                         if {a, b} == {"recsvc.service", "recsvc.session"})
    print(f"{name}: {len(calls)} calls of recsvc functions, {len(modules)} modules, "
          f"{len(crossings) - 1} crossings ({back_and_forth} between service and session)")
    print("  modules:", ", ".join(m.replace("recsvc.", "") for m in modules))
    print("  order:", " > ".join(m.replace("recsvc.", "") for m in crossings))

calls, crossings = walk(lambda: ports.deliver(port, build_rtp(RtpPacket(8, 10, 1600, 99, b"\x0a" * 160))))
summary("one packet (the steady state: it continues its stream, the fast lane takes it)", calls, crossings)
# Sequence 12 after 10: a gap, which the lane leaves to the full path.
calls, crossings = walk(lambda: ports.deliver(port, build_rtp(RtpPacket(8, 12, 1920, 99, b"\x0c" * 160))))
summary("one packet on the full path (after a gap: receiver, recording, media pipeline)", calls, crossings)
calls, crossings = walk(lambda: protocol.dataReceived(b"cmd=RecordStopRequest&id=7\r\n"))
summary("one Stop (control bytes in, to the finished file and the answer)", calls, crossings)
print("  answer:", transport.value().splitlines()[-1][:80])
