"""An HTTP endpoint that keeps what the completion webhook posts to it."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import DeferredQueue
from twisted.web.resource import Resource


class RecordingResource(Resource):
    """Keeps each POST's content type and body; answers 204."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: DeferredQueue = DeferredQueue()

    def render_POST(self, request: Any) -> bytes:
        request.setResponseCode(204)
        self.received.put((request.getHeader(b"content-type"), request.content.read()))
        return b""
