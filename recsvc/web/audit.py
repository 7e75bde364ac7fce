"""The HTTP side's entries in the audit trail (recsvc.access.audit): what
a signed-in user (or the token) did, from which address. A search and a
download are written before they are answered, and refused (503) if the
trail cannot be written; plays are summarised (recsvc.access.plays) and
written once they end; sign-ins as their passwords are checked. Where no
one signs in (the open default), nothing is written: there is no one to
name."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.web.server import Request

from recsvc.access.audit import audit_event
from recsvc.access.plays import EndedPlay, Plays
from recsvc.logs import Logger
from recsvc.summary import iso_utc

_log = Logger()


class AuditUnwritable(Exception):
    """The audit trail could not be written: the action is refused."""


def _printable(text: str) -> str:
    return text if text.isprintable() and text else "-"


def source_of(request: Request) -> str:
    return _printable(getattr(request.getClientAddress(), "host", None) or "-")


class Auditor:
    """Writes to the index database's audit trail through ``run_index``
    (IAuditTrail.append_audit on the index's thread); ``call_later``
    (a reactor's) ends the plays that went quiet, else they end with the
    next entry or `flush`."""

    # A refusal written, the same again is counted for this long.
    REFUSALS_EVERY = 60.0

    def __init__(self, run_index: Callable[..., Deferred[Any]], now: Callable[[], float],
                 call_later: Callable[..., Any] | None = None) -> None:
        self._run_index, self.now, self._call_later = run_index, now, call_later
        self.plays = Plays()
        self._timer: Any = None
        # The refusals written lately: (actor, path, status): (when, how
        # many more since, not written).
        self._refusals: dict[tuple[str, str, int], tuple[float, int]] = {}

    def record(self, identity: Any, request: Request, action: str, target: str = "",
               detail: dict[str, Any] | None = None) -> Deferred[None]:
        """Write an entry of ``identity``'s (none for the open default);
        fails with AuditUnwritable if it cannot be."""
        event = self.event_of(identity, request, action, target, detail)
        if event is None:
            return succeed(None)
        return self._write(event).addErrback(self._unwritable)

    def event_of(self, identity: Any, request: Request, action: str, target: str = "",
                 detail: dict[str, Any] | None = None) -> Any:
        """The entry of ``identity``'s action, to write in the same
        transaction as the change it records; None for the open default."""
        if identity.scheme == "-":
            return None
        return audit_event(iso_utc(self.now()), actor_of(identity), source_of(request),
                           action, _printable(target) if target else "", detail)

    def refused(self, identity: Any, request: Request, status: int, reason: str) -> None:
        """A user refused a route (403: a right their role lacks; 404: a
        recording outside their scope, or none), written best effort (logged
        if it cannot be): what they asked for, and why it was refused. The
        same refusal again within REFUSALS_EVERY seconds is counted, not
        written: its next row says how many there were ("repeated"), so
        that a loop of refused requests cannot flood the trail."""
        path = request.path.decode("utf-8", "replace")[:200]
        key = (actor_of(identity), path, status)
        now = self.now()
        if len(self._refusals) > 10_000:
            self._refusals = {seen: when for seen, when in self._refusals.items()
                              if now - when[0] < self.REFUSALS_EVERY}
        last, repeated = self._refusals.get(key, (None, 0))
        if last is not None and now - last < self.REFUSALS_EVERY:
            self._refusals[key] = (last, repeated + 1)
            return
        self._refusals[key] = (now, 0)
        event = self.event_of(identity, request, "refused", path, {
            "method": request.method.decode("ascii", "replace"), "status": status,
            "reason": reason[:300], **({"repeated": repeated} if repeated else {})})
        if event is not None:
            self._write(event).addErrback(self._not_written, "refused")

    def signed_in(self, name: str, source: str, matched: bool) -> None:
        """A password checked: a failed one is written (best effort: logged
        if it cannot be); a session's sign-in is written as it begins
        (recsvc.web.sessions), and basic authentication's requests carry
        their user in their own rows."""
        if matched:
            return
        event = audit_event(iso_utc(self.now()), _printable(name), _printable(source),
                            "login_failed")
        self._write(event).addErrback(self._not_written, event.action)

    def heard(self, identity: Any, request: Request, recording_id: str, file: str,
              start: int, end: int) -> None:
        if identity.scheme == "-":
            return
        ended = self.plays.heard(actor_of(identity), source_of(request),
                                 _printable(recording_id), _printable(file), start, end,
                                 self.now())
        self._write_plays(ended)
        if self._call_later is not None and self._timer is None:
            self._timer = self._call_later(self.plays.idle, self._quiet)

    def _quiet(self) -> None:
        self._timer = None
        self._write_plays(self.plays.ended(self.now()))
        if len(self.plays) and self._call_later is not None:
            self._timer = self._call_later(self.plays.idle, self._quiet)

    def flush(self) -> Deferred[Any]:
        """Write every play under way (as the service stops)."""
        if self._timer is not None and getattr(self._timer, "active", lambda: False)():
            self._timer.cancel()
        self._timer = None
        return self._write_plays(self.plays.ended())

    def _write_plays(self, ended: list[EndedPlay]) -> Deferred[Any]:
        written = succeed(None)
        for play in ended:
            event = audit_event(iso_utc(play.first), play.actor, play.source, "play",
                                play.recording_id, play.detail)
            written = self._write(event).addErrback(self._not_written, "play")
        return written

    def _write(self, event: Any) -> Deferred[Any]:
        return self._run_index(_append, event)

    @staticmethod
    def _unwritable(failure: Failure) -> None:
        _log.error("The audit trail cannot be written: {reason}",
                   reason=failure.getErrorMessage())
        raise AuditUnwritable(failure.getErrorMessage())

    @staticmethod
    def _not_written(failure: Failure, action: str) -> None:
        _log.error("An audit entry ({action}) could not be written: {reason}", action=action,
                   reason=failure.getErrorMessage())


def actor_of(identity: Any) -> str:
    """Who an identity is, as the trail names them: a user's name (by
    password, session or their own API token), or "token" for http.auth's
    token."""
    return "token" if identity.scheme == "token" else identity.user


def _append(found_in: Any, event: Any) -> Any:
    return found_in.append_audit(event)
