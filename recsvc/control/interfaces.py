"""What the control protocol needs from the recorder (`IRecorder`), what the
recorder may ask of a phone's connection (`IPhoneLink`), and the exceptions a
Stop fails with: the protocol knows the recorder only through these, as
twisted.names' DNSDatagramProtocol knows its controller.

They are zope interfaces, not typing.Protocol classes, as IRecordingObserver
is: an implementation says so on its class (``@implementer``), and
``verifyObject`` checks at run time that it has every method with arguments
it accepts; the contract tests do that for the real recorder and for
recsvc.testing's fakes (no static type checker runs on this code)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from recsvc.control.commands import StartRequest, StartResponse, StopRequest
    from recsvc.summary import RecordingSummary


class UnknownRecording(KeyError):
    """A Stop named an id that is not recording."""


class StopRefused(Exception):
    """A Stop that is not honoured; ``reason`` is for the phone's reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IPhoneLink(Interface):
    """The control connection a recording answers to."""

    def send_stop_request(recording_id: str, reason: str) -> None:
        """Tell the phone the server has stopped this recording."""

    def disconnect() -> None:
        """Close the connection (the service is shutting down)."""

    def now_carrying(carrying: bool) -> None:
        """The connection now carries a recording (or a Start whose file is
        being created), or no longer carries any."""


class IRecorder(Interface):
    """Starts and stops recordings for the control connections, and is told
    of the connections (each an `IPhoneLink`). Called on the reactor thread."""

    clock = Attribute("The IReactorTime of the connections' timeouts and turns, when the "
                      "protocol is given none.")

    def link_connected(link: IPhoneLink) -> None:
        """A control connection is made."""

    def link_lost(link: IPhoneLink) -> None:
        """A control connection is gone: the recordings it carries end."""

    def carries_recordings(link: IPhoneLink) -> bool:
        """Whether ``link`` has a recording running or starting (it is then
        never closed for idleness or bad messages)."""

    def start_recording(request: StartRequest, link: IPhoneLink, peer: str,
                        local_host: str) -> Deferred[StartResponse]:
        """Answer a RecordStartRequest that came on ``link`` from ``peer`` to
        ``local_host``: a Deferred that fires with the StartResponse to send,
        success or a refusal with its reason (it does not fail)."""

    def stop_recording(request: StopRequest, link: IPhoneLink,
                       peer: str) -> Deferred[RecordingSummary]:
        """Answer a RecordStopRequest that came on ``link`` from ``peer``: a
        Deferred that fires with the finished recording's RecordingSummary,
        or fails with UnknownRecording, with StopRefused (its ``reason`` is
        the phone's), or with the error that kept the file from being
        finished."""

    def bad_start_request() -> None:
        """A RecordStartRequest that could not be read was refused."""

    def connection_refused(reason: str) -> None:
        """A control connection was refused (by control.allow, the limits or
        the descriptor reserve) for ``reason``."""

    def connection_closed(reason: str) -> None:
        """The server closed a control connection for ``reason`` (``idle``,
        ``bad messages``, ...)."""

    def when_stopped() -> Deferred[None]:
        """A Deferred that fires once the recorder's stopService has finished
        its recordings (the next one, if none is under way)."""
