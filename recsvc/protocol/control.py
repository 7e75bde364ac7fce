"""The TCP control connection: framing and dispatch only; the service decides."""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from recsvc.protocol.commands import (
    FAILED,
    START_REQUEST,
    SUCCESS,
    Command,
    Message,
    MessageError,
    StartRequest,
    StopRequest,
    StopResponse,
    decode_message,
    encode_command,
    encode_message,
    failure_reply,
    parse_command,
)
from recsvc.protocol.framing import MessageFramer, MessageTooLong
from recsvc.service import RecorderService, UnknownRecording
from recsvc.session import RecordingSummary


class ControlProtocol(Protocol):
    """One phone's control connection. Replies in the framing the phone uses."""

    log = Logger()

    def __init__(self, service: RecorderService, max_message_bytes: int) -> None:
        self._service = service
        self._framer = MessageFramer(max_length=max_message_bytes)
        self._connected = False
        self.peer = "?"

    def connectionMade(self) -> None:
        self._connected = True
        # Replies are small and awaited: Nagle's algorithm would hold them
        # back for the phone's delayed ACK.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.peer = self.transport.getPeer().host
        self._service.link_connected(self)
        self.log.debug("Control connection from {peer}", peer=self.peer)

    def connectionLost(self, reason: Failure) -> None:
        self._connected = False
        self.log.debug("Control connection from {peer} closed", peer=self.peer)
        self._service.link_lost(self)

    def dataReceived(self, data: bytes) -> None:
        try:
            messages = self._framer.feed(data)
        except MessageTooLong as error:
            self.log.warn(
                "Closing control connection from {peer}: {reason}",
                peer=self.peer, reason=f"message too long ({error})",
            )
            self.transport.abortConnection()
            return
        for raw in messages:
            if not self._connected:
                return
            try:
                self._dispatch(raw)
            except Exception:
                # A bug must not cost the connection, nor the recordings on it.
                self.log.failure("Control message from {peer} not handled: {message!r}",
                                 peer=self.peer, message=raw[:200])

    def _dispatch(self, raw: bytes) -> None:
        try:
            command = parse_command(decode_message(raw))
        except MessageError as error:
            self.log.warn(
                "Bad control message from {peer}: {reason}: {message!r}",
                peer=self.peer, reason=error.reason, message=raw[:200],
                recordingId=error.recording_id,
            )
            reply = failure_reply(error)
            if reply is not None:
                if error.cmd == START_REQUEST:
                    self._service.bad_start_request()
                self._send_message(reply)
            return
        if isinstance(command, StartRequest):
            self._service.start_recording(
                command, self, self.peer, self.transport.getHost().host
            ).addCallback(self._send)
        elif isinstance(command, StopRequest):
            self._service.stop_recording(command).addCallbacks(
                self._stopped, self._stop_failed, errbackArgs=(command.recording_id,)
            )
        elif isinstance(command, StopResponse):
            self.log.debug(
                "Phone {peer} answered the Stop of {recordingId}: {result}",
                peer=self.peer, recordingId=command.recording_id, result=command.result,
            )
        else:
            self.log.warn(
                "Unexpected {cmd} from {peer}", cmd=type(command).__name__, peer=self.peer,
                recordingId=command.recording_id,
            )

    def _stopped(self, summary: RecordingSummary) -> None:
        self._send(StopResponse(summary.info.recording_id, SUCCESS))

    def _stop_failed(self, failure: Failure, recording_id: str) -> None:
        if failure.check(UnknownRecording):
            reason = "unknown id"
        else:
            reason = "storage error"
        self._send(StopResponse(recording_id, FAILED, reason))

    def send_stop_request(self, recording_id: str, reason: str) -> None:
        self._send(StopRequest(recording_id, reason=reason))

    def disconnect(self) -> None:
        if self._connected:
            self.transport.loseConnection()

    def _send(self, command: Command) -> None:
        if self._connected:
            self.transport.write(encode_command(command) + self._framer.terminator)

    def _send_message(self, message: Message) -> None:
        if self._connected:
            self.transport.write(encode_message(message) + self._framer.terminator)


class ControlFactory(Factory):
    noisy = False

    def __init__(self, service: RecorderService, max_message_bytes: int = 4096) -> None:
        self.service = service
        self.max_message_bytes = max_message_bytes

    def buildProtocol(self, addr: object) -> ControlProtocol:
        protocol = ControlProtocol(self.service, self.max_message_bytes)
        protocol.factory = self
        return protocol
