"""The TCP control connection: framing and dispatch only; the recorder, known
here only as an `IRecorder` (recsvc.control.interfaces), decides."""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from recsvc.admission import (NOT_CONTROL, TOO_FEW_DESCRIPTORS, TOO_MANY_FROM_IP, Connections,
                              Place, refused_peer, shown_peer)
from recsvc.logs import Logger
from recsvc.control.commands import (
    FAILED,
    START_REQUEST,
    SUCCESS,
    Command,
    Message,
    MessageError,
    StartRequest,
    UnknownCommand,
    StopRequest,
    StopResponse,
    decode_message,
    encode_command,
    encode_message,
    failure_reply,
    parse_command,
)
from recsvc.control.framing import (
    MessageFramer,
    MessageTooLong,
    begins_with_start,
    begins_with_stop,
    could_begin_messages,
)
from recsvc.refusals import RefusalLines
from recsvc.control.interfaces import IPhoneLink, IRecorder, StopRefused, UnknownRecording
from recsvc.summary import RecordingSummary


# Fairness: each connection's messages are handled at most this many a
# reactor turn, and its socket is not read while some wait; a client that
# sends thousands at once cannot hold up the other phones' turns.
MESSAGES_PER_TURN = 8
# A client that sends this many messages in a row that cannot be read (an
# unknown but well-formed command is not counted) is not a phone: its
# connection is closed, unless it carries a recording.
MAX_BAD_MESSAGES = 10


@implementer(IPushProducer, IPhoneLink)
class ControlProtocol(Protocol, TimeoutMixin):
    """One phone's control connection. Replies in the framing the phone uses.
    With ``idle_timeout``, it is closed after that long without a message,
    unless it carries a recording.

    It is the producer of its replies: while the peer does not read them
    (the transport's buffer is full), its socket is not read either, so a
    client that never reads cannot make the server hold its answers.

    Its ``place`` in the connection limits (from the factory) is told
    whether it carries recordings; without one, when all it has been sent
    is handled, and its address has more idle connections than allowed, it
    is closed."""

    log = Logger()

    def __init__(self, recorder: IRecorder, max_message_bytes: int,
                 idle_timeout: float | None = None, clock: IReactorTime | None = None,
                 notices: RefusalLines | None = None) -> None:
        self._recorder = recorder
        self._clock = clock or recorder.clock
        # Bad messages and closed connections are logged once a minute per
        # peer, with a count (shared by a factory's connections): a client
        # reconnecting to send garbage does not fill the log.
        self._notices = (RefusalLines(self._clock, summarise_notices) if notices is None
                         else notices)
        self._framer = MessageFramer(max_length=max_message_bytes)
        self._connected = False
        self._idle_timeout = idle_timeout
        self.callLater = self._clock.callLater  # (TimeoutMixin's, and the turns')
        self.peer = "?"
        # The connection's place in the limits (None: not limited).
        self.place: Place | None = None
        self._waiting: deque[bytes] = deque()  # messages read, not yet handled
        self._next_turn: IDelayedCall | None = None
        self._replies_blocked = False  # the peer is not reading
        self._reading = True
        self._bad_in_a_row = 0
        self._closing = False  # disconnect() was called: it is closing anyway

    def connectionMade(self) -> None:
        self._connected = True
        self.setTimeout(self._idle_timeout)
        # Replies are small and awaited: Nagle's algorithm would hold them
        # back for the phone's delayed ACK.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.transport.registerProducer(self, True)
        self.peer = self.transport.getPeer().host
        self._recorder.link_connected(self)

    def connectionLost(self, reason: Failure) -> None:
        self._connected = False
        self.setTimeout(None)
        self._waiting.clear()
        if self._next_turn is not None and self._next_turn.active():
            self._next_turn.cancel()
        if self.place is not None:
            self.place.release()
        self._recorder.link_lost(self)

    def timeoutConnection(self) -> None:
        if self._recorder.carries_recordings(self):
            self.setTimeout(self._idle_timeout)  # never idle while recording
            return
        self._close("idle", f"no message for {self._idle_timeout:g} s")

    def now_carrying(self, carrying: bool) -> None:
        if self.place is not None:
            self.place.carries(carrying)
        if not carrying and self._connected:
            # Once the replies of this turn are written.
            self.callLater(0, self._close_if_excess)

    def _close_if_excess(self) -> None:
        """Closes the connection (its replies sent first) if it is idle with
        all it was sent handled while its address holds more idle
        connections than control.max_connections_per_ip."""
        if not (self._connected and not self._closing and self.place is not None
                and self.place.excess and not self._waiting):
            return
        count = self._noticed(f"closed ({TOO_MANY_FROM_IP})")
        if count is not None:
            self.log.info("Closing control connection from {peer}: {reason}: it carries no "
                          "recording ({count} since the last line)", peer=self.peer,
                          reason=TOO_MANY_FROM_IP, count=count)
        self._recorder.connection_closed(TOO_MANY_FROM_IP)
        self.disconnect()
        self._connected = False

    def _close(self, reason: str, why: str) -> None:
        """Closes the connection at once (a peer that stopped reading must
        not hold its slot), counted by ``reason``."""
        count = self._noticed(f"closed ({reason})")
        if count is not None:
            self.log.info("Closing control connection from {peer}: {reason} "
                          "({count} since the last line)", peer=self.peer, reason=why,
                          count=count)
        self._recorder.connection_closed(reason)
        self._connected = False
        self.transport.abortConnection()

    # IPushProducer: the transport says whether the peer reads the replies.
    def pauseProducing(self) -> None:
        self._replies_blocked = True
        self._read_or_not()

    def resumeProducing(self) -> None:
        self._replies_blocked = False
        if self._waiting and self._next_turn is None and self._connected:
            self._next_turn = self.callLater(0, self._turn)
        self._read_or_not()

    def stopProducing(self) -> None:
        """The connection is closing: connectionLost follows."""

    def _read_or_not(self) -> None:
        if not self._connected:
            return
        reading = not self._replies_blocked and not self._waiting
        if reading != self._reading:
            self._reading = reading
            if reading:
                self.transport.resumeProducing()
            else:
                self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        try:
            self._waiting.extend(self._framer.feed(data))
        except MessageTooLong as error:
            self._close("message too long", f"message too long ({error})")
            return
        if self._next_turn is None and not self._replies_blocked:
            # (Else they wait their turn: a TLS transport hands over what it
            # has decrypted even once reading has paused.)
            self._turn()
        else:
            self._close_if_excess()

    def _turn(self) -> None:
        """Handles the next MESSAGES_PER_TURN waiting messages; the rest wait
        for the reactor's next turn, and reading waits for them. While the
        peer does not read the replies, nothing more is handled (its
        resumeProducing brings the next turn)."""
        self._next_turn = None
        for _ in range(MESSAGES_PER_TURN):
            if not (self._waiting and self._connected) or self._replies_blocked:
                break
            raw = self._waiting.popleft()
            try:
                self._dispatch(raw)
            except Exception:
                # A bug must not cost the connection, nor the recordings on it.
                self.log.failure("Control message from {peer} not handled: {message!r}",
                                 peer=self.peer, message=raw[:200])
        if self._waiting and self._connected and not self._replies_blocked:
            self._next_turn = self.callLater(0, self._turn)
        self._read_or_not()
        self._close_if_excess()

    def _dispatch(self, raw: bytes) -> None:
        try:
            command = parse_command(decode_message(raw))
        except UnknownCommand as error:
            # Well-formed, and perhaps a firmware's own: answered (if it is
            # owed an answer) and logged, but no sign of garbage.
            self._bad_message(raw, error, garbage=False)
            return
        except MessageError as error:
            self._bad_message(raw, error)
            return
        self._bad_in_a_row = 0
        if isinstance(command, StartRequest):
            self._recorder.start_recording(
                command, self, self.peer, self.transport.getHost().host
            ).addCallback(self._send)
        elif isinstance(command, StopRequest):
            self._recorder.stop_recording(command, self, self.peer).addCallbacks(
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

    def _bad_message(self, raw: bytes, error: MessageError, garbage: bool = True) -> None:
        if garbage:
            self._bad_in_a_row += 1
        count = self._noticed("bad message")
        if count is not None:
            self.log.warn(
                "Bad control message from {peer}: {reason}: {message!r} "
                "({count} since the last line)",
                peer=self.peer, reason=error.reason, message=raw[:200], count=count,
                recordingId=error.recording_id,
            )
        reply = failure_reply(error)
        if reply is not None:
            if error.cmd == START_REQUEST:
                self._recorder.bad_start_request()
            self._send_message(reply)
        # Not while it carries a recording: closing would stop the call.
        if (self._bad_in_a_row >= MAX_BAD_MESSAGES
                and not self._recorder.carries_recordings(self)):
            self._close("bad messages", f"{self._bad_in_a_row} bad messages in a row")

    def _noticed(self, what: str) -> int | None:
        """None: not logged this time; else how many ``what`` the line stands for."""
        logged = self._notices.note(self.peer, what)
        return None if logged is None else logged[1]

    def _stopped(self, summary: RecordingSummary) -> None:
        self._send(StopResponse(summary.info.recording_id, SUCCESS))

    def _stop_failed(self, failure: Failure, recording_id: str) -> None:
        if failure.check(UnknownRecording):
            reason = "unknown id"
        elif failure.check(StopRefused):
            reason = failure.value.reason
        else:
            reason = "storage error"
        self._send(StopResponse(recording_id, FAILED, reason))

    def send_stop_request(self, recording_id: str, reason: str) -> None:
        self._send(StopRequest(recording_id, reason=reason))

    def disconnect(self) -> None:
        if self._connected and not self._closing:
            self._closing = True
            # Under TLS a registered producer would hold the close back, and
            # the peer's close_notify must be read.
            self.transport.unregisterProducer()
            if not self._reading:
                self._reading = True
                self.transport.resumeProducing()
            self.transport.loseConnection()

    def _send(self, command: Command) -> None:
        if self._connected:
            self.transport.write(encode_command(command) + self._framer.terminator)

    def _send_message(self, message: Message) -> None:
        if self._connected:
            self.transport.write(encode_message(message) + self._framer.terminator)


class ControlFactory(Factory):
    """Builds a ControlProtocol for each connection ``connections`` admits
    (control.allow and the connection limits); a refused one is closed at
    once, counted, and logged once per peer and minute (the rest in
    summaries: each minute while they go on, and when the factory stops)."""

    log = Logger()
    noisy = False
    protocol = ControlProtocol  # (for Factory's repr)
    # Whether a connection that brings no Start may take a descriptor (see
    # recsvc.application.descriptors.DescriptorRoom); None: always.
    room: Callable[[], bool] | None = None

    def __init__(self, recorder: IRecorder, max_message_bytes: int = 4096,
                 connections: Connections | None = None, idle_timeout: float | None = None,
                 clock: IReactorTime | None = None) -> None:
        self.recorder = recorder
        self.max_message_bytes = max_message_bytes
        self.connections = connections
        self.idle_timeout = idle_timeout
        self.clock = clock or recorder.clock
        self.refusals = RefusalLines(self.clock, self._summarise_refusals)
        self.notices = RefusalLines(self.clock, summarise_notices)  # bad messages, closings

    def buildProtocol(self, addr: Any) -> ControlProtocol | None:
        protocol = self.admit(getattr(addr, "host", "?"))
        # Not None for a refused one: a TLS or PROXY wrapper would choke on it.
        return _Refusal() if protocol is None else protocol  # type: ignore[return-value]

    def admit(self, host: str, first: bytes | None = None) -> ControlProtocol | None:
        """The protocol for a new connection from ``host``, or None if it is
        refused (counted and logged; the caller closes it). ``first``: the
        bytes already waiting on it, where the listener could look (see
        recsvc.control.accepting): a connection that does not begin with
        control messages is refused, one that begins with a Start is taken
        even when its address has its limit of idle connections, and one
        that begins with a Start or a Stop (a phone that reconnected to stop
        its recording) even when the descriptors are down to the reserve."""
        if first is not None and not could_begin_messages(first):
            self._refused(host, NOT_CONTROL)
            return None
        place = None
        starting = first is not None and begins_with_start(first)
        if self.connections is not None:
            place = self.connections.admit(host, starting=starting)
            if isinstance(place, str):
                self._refused(host, place)
                return None
        recording_command = starting or (first is not None and begins_with_stop(first))
        if not recording_command and self.room is not None and not self.room():
            if place is not None:
                place.release()
            self._refused(host, TOO_FEW_DESCRIPTORS)
            return None
        protocol = ControlProtocol(self.recorder, self.max_message_bytes, self.idle_timeout,
                                   self.clock, self.notices)
        protocol.factory = self
        protocol.place = place
        return protocol

    def _refused(self, host: str, reason: str) -> None:
        self.recorder.connection_refused(reason)
        # The overall limits are nobody's in particular: one line for all.
        logged = self.refusals.note(refused_peer(host, reason), reason)
        if logged is not None:
            self._summarise_refusals(logged[0], reason, logged[1])

    def _summarise_refusals(self, peer: str, reason: str, count: int) -> None:
        self.log.warn("Refused control connections from {peer}: {reason} "
                      "({count} since the last line)",
                      peer=shown_peer(peer),
                      reason=reason, count=count)

    def stopFactory(self) -> None:
        """The listener has stopped: what the log has not said yet, it says
        now; and of the connections' bad messages and closings, what it has
        not said once the recorder has stopped too (at shutdown the
        listener stops first, while the recordings end after it)."""
        self.refusals.flush()
        self.notices.flush()
        self.recorder.when_stopped().addCallback(lambda _: self.notices.flush())


def summarise_notices(peer: str, reason: str, count: int) -> None:
    """A summary line of a control connection's bad messages or closings."""
    ControlProtocol.log.info("Control connections from {peer}: {reason} "
                             "({count} more since the last line)",
                             peer=shown_peer(peer),
                             reason=reason, count=count)


class _Refusal(Protocol):
    """A refused connection: closed as soon as it is made."""

    def connectionMade(self) -> None:
        self.transport.abortConnection()
