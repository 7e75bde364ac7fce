"""The service tree's own services: its root as twistd runs it, and the
services that act when the tree starts or once the recorder has stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.python import usage

if TYPE_CHECKING:
    from recsvc.service import RecorderService


class StartedByTwistd(MultiService):
    """The service tree as twistd runs it (``options``: its recsvc Options).
    In the foreground (``twistd -n``), a listener that cannot listen (its
    port taken) ends start-up with the one line it logged and exit status
    1, where twistd would print a traceback for the exception. A daemon's
    exception is left to twistd, which hands it to the waiting parent to
    print (that parent would wait for ever for a child that just exits).
    An embedding application gets the CannotListenError itself."""

    def __init__(self, options: usage.Options) -> None:
        MultiService.__init__(self)
        self._options = options

    def startService(self) -> None:
        try:
            MultiService.startService(self)
        except CannotListenError:
            twistd = getattr(self._options, "parent", None)
            if twistd is not None and not twistd.get("nodaemon", True):
                raise
            raise SystemExit(1) from None


class AfterRecorder(Service):
    """At shutdown, calls ``then`` once the recorder has stopped (its last
    files finished)."""

    def __init__(self, recorder: RecorderService, then: Callable[[], Any]) -> None:
        self._recorder, self._then = recorder, then

    def stopService(self) -> Deferred[Any]:
        Service.stopService(self)
        return self._recorder.when_stopped().addBoth(lambda _: self._then())


class AtStart(Service):
    """Calls ``action`` when the service tree starts."""

    def __init__(self, action: Any) -> None:
        self._action = action

    def startService(self) -> None:
        Service.startService(self)
        self._action()
