"""What the control protocol needs from the recorder, and what it is told:
the phone's link and the exceptions a Stop fails with."""

from __future__ import annotations

from typing import Protocol


class UnknownRecording(KeyError):
    """A Stop named an id that is not recording."""


class StopRefused(Exception):
    """A Stop that is not honoured; ``reason`` is for the phone's reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PhoneLink(Protocol):
    """The control connection a recording answers to."""

    def send_stop_request(self, recording_id: str, reason: str) -> None:
        """Tell the phone the server has stopped this recording."""

    def disconnect(self) -> None:
        """Close the connection (the service is shutting down)."""

    def now_carrying(self, carrying: bool) -> None:
        """The connection now carries a recording (or a Start whose file is
        being created), or no longer carries any."""
