"""A subprocess's output, read line by line by a thread, so that a test
can wait for a line with a deadline: a process that hangs silently fails
the test instead of hanging it."""

from __future__ import annotations

import queue
import re
import threading
import time
from typing import IO


class OutputLines:
    """The lines of ``stream`` (a text pipe), as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []  # every line read so far
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self._lines.put(line)
        self._lines.put(None)  # the end

    def _next(self, deadline: float) -> str | None:
        """The next line; None at the end of the output or the deadline."""
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is not None:
            self.seen.append(line)
        return line

    def wait_for(self, pattern: str, seconds: float = 20) -> re.Match[str] | None:
        """The match of the first line (from here on) with ``pattern``;
        None if the output ends or ``seconds`` pass without one."""
        deadline = time.monotonic() + seconds
        while (line := self._next(deadline)) is not None:
            match = re.search(pattern, line)
            if match:
                return match
        return None

    def rest(self, seconds: float = 10) -> str:
        """What is left of the output of a process that has exited (waiting
        at most ``seconds`` for it)."""
        deadline = time.monotonic() + seconds
        rest = []
        while (line := self._next(deadline)) is not None:
            rest.append(line)
        return "".join(rest)
