"""What the tests need to run a server of their own (PostgreSQL, moto's S3,
a twistd, a browser's driver): a free port of 127.0.0.1, a wait until it
listens, and a stop that cannot hang."""

from __future__ import annotations

import functools
import socket
import subprocess
import time
from typing import Protocol, TypeVar


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(process: subprocess.Popen, port: int, timeout: float = 30.0) -> bool:
    """Whether ``process`` came to accept connections on ``port`` of
    127.0.0.1 within ``timeout`` seconds (False: it exited first, perhaps
    because another took the port meanwhile, or it never listened)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Startable(Protocol):
    def start(self) -> None: ...


_Server = TypeVar("_Server", bound=Startable)


@functools.cache
def started(kind: type[_Server]) -> _Server:
    """This test process's server of ``kind``, started at its first use
    (one that failed to start, or skipped, is tried again at the next)."""
    server = kind()
    server.start()
    return server
