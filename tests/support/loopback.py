"""The service tree on the running reactor over loopback sockets, and what
tests of real sockets and processes need beside it."""

from __future__ import annotations

import os
import socket
import subprocess
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from recsvc import makeService
from recsvc.control.commands import CallParties
from recsvc.phonesim.phone import SAMPLE_CALL, SimulatedPhone, rtp_packets, send_rtp


class LoopbackServiceMixin:
    """The service tree from recsvc.makeService on the running reactor,
    listening on 127.0.0.1."""

    timeout = 30

    @inlineCallbacks
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.config = {
            "control": {"listen": "tcp:0:interface=127.0.0.1"},
            "http": {"listen": "tcp:0:interface=127.0.0.1"},
            "rtp": {"interface": "127.0.0.1", "port_range": [42000, 42999]},
            # Tests must not depend on how full this machine's disk is.
            "storage": {"root": self.root, "min_free_mb": 1},
            "index": {"database": os.path.join(self.root + "-index", "recsvc.sqlite3")},
            **self.more_config(),
        }
        self.tree = makeService(self.config)
        self.recorder = self.tree.getServiceNamed("recorder")
        self.tree.startService()
        self.addCleanup(self._stop_tree)
        port = yield self.tree.getServiceNamed("control").whenListening()
        self.port = port.getHost().port

    def more_config(self) -> dict:
        """Sections to add to the service's config."""
        return {}

    def _stop_tree(self):
        if self.tree.running:
            return self.tree.stopService()

    def phone(self, framing: str = "bare") -> SimulatedPhone:
        phone = SimulatedPhone("127.0.0.1", self.port, framing=framing)
        self.addCleanup(phone.close)
        return phone

    @inlineCallbacks
    def wait_for(self, predicate, seconds: float = 5.0):
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                self.fail("condition not reached in time")
            yield deferLater(reactor, 0.01, lambda: None)

    def call(self, framing: str, recording_id: str, sound: bytes, codec: str = "PCMA",
             parties: CallParties = SAMPLE_CALL):
        """A whole call in a thread: start, RTP, stop. Returns the replies."""
        phone = self.phone(framing)
        phone.connect()
        started = phone.start(recording_id, codec=codec, parties=parties)
        assert started.result == "success", started
        send_rtp(rtp_packets(sound, codec), started.server, started.port)
        # No pause: the Stop may be read before the last datagrams are.
        stopped = phone.stop(recording_id, updates=(("remote_name", "Transferred"),))
        phone.close()
        return started, stopped


class WebLoopbackMixin(LoopbackServiceMixin):
    """The service tree with its HTTP side: ``base``, its URL, and
    ``agent``, a client of it."""

    @inlineCallbacks
    def setUp(self):
        yield super().setUp()
        http = yield self.tree.getServiceNamed("http").whenListening()
        self.base = f"http://127.0.0.1:{http.getHost().port}"
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))


def reap(process: subprocess.Popen) -> None:
    """Kill ``process`` if it still runs, and wait for it."""
    if process.poll() is None:
        process.kill()
    process.wait()


def is_refused(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` without a word (a reset)."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
