"""What the API's resources share: a JSON answer or a JSON error (ApiError
as 4xx, an index out of reach as 503, a bug as a logged 500), a resource
that answers later (`AsyncAnswer`) or takes a JSON body by POST
(`PostedAnswer`), the rights a route requires of its user and the scope a
search is narrowed to."""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from recsvc.access import roles
from recsvc.index import store as index
from recsvc.index.backends import CannotOpenIndex, index_errors, without_password
from recsvc.logs import Logger
from recsvc.web.audit import AuditUnwritable
from recsvc.web.auth import NOBODY, Identity

_log = Logger()


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def send_json(request: Request, body: Any, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return (json.dumps(body, ensure_ascii=False) + "\n").encode("utf-8")


def argument(request: Request, name: str) -> str | None:
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, f"{name}: not UTF-8 text") from None


class AsyncAnswer(Resource):
    """A resource whose GET answers later: ``answer(request)`` returns a
    Deferred of the JSON body (or of None: it wrote the answer itself).
    An index that cannot be reached is a 503 saying why (logged as
    `_OutageLog` says), not a bug's 500."""

    isLeaf = True
    api: Any  # (recsvc.web.site.Api: its index database's name, outages, auditor)

    def render_GET(self, request: Request) -> Any:
        return self._answered(request)

    def _answered(self, request: Request) -> Any:
        try:
            waiting = self.answer(request)
        except ApiError as error:
            if error.status in (403, 404):
                self.api.auditor.refused(identity_of(request), request, error.status, str(error))
            return send_json(request, {"error": str(error)}, error.status)
        except Exception:  # (a bug: answered as the failures later are, a logged 500)
            waiting = fail()

        def done(body: Any) -> None:
            if body is not None and still_there(request):
                request.write(body)
                request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(ApiError):
                status, message = failure.value.status, str(failure.value)
            elif failure.check(index.TooManyToSort):
                status, message = 400, str(failure.value)
            elif failure.check(AuditUnwritable):
                status, message = 503, ("the audit trail cannot be written: refused until it "
                                        "can (the error is logged)")
            elif failure.check(CannotOpenIndex, *index_errors()):
                # (Not a bug: the database is down, or not reachable from here.)
                # (Without the database URL's password, should it be quoted.)
                reason = " ".join(without_password(failure.getErrorMessage(),
                                                   self.api.index_database).split()
                                  ) or failure.type.__name__
                status, message = 503, f"the index cannot be reached: {reason}"
                self.api.outages.note(reason, request.uri)
            else:
                _log.failure("HTTP {uri} failed", failure, uri=request.uri)
                status, message = 500, "internal error (logged)"
            if status in (403, 404):
                # (Best effort: the refusal is answered whether or not it is written.)
                self.api.auditor.refused(identity_of(request), request, status, message)
            if not still_there(request):
                return
            if request.startedWriting:
                request.loseConnection()  # too late for an error response
                return
            for header in (b"content-length", b"content-range", b"content-disposition"):
                request.responseHeaders.removeHeader(header)
            request.write(send_json(request, {"error": message}, status))
            request.finish()

        waiting.addCallbacks(done, failed).addErrback(_answering_failed, request)
        return NOT_DONE_YET

    def answer(self, request: Request) -> Deferred[Any]:
        raise NotImplementedError


def _answering_failed(failure: Failure, request: Request) -> None:
    """The last resort: a bug while answering. Logged; the connection is
    closed rather than left waiting."""
    _log.failure("HTTP {uri}: answering failed", failure, uri=request.uri)
    if still_there(request):
        request.loseConnection()


# What each right lets a user do, as a refusal says it.
_RIGHT_WORDS = {
    roles.SEARCH: "search recordings", roles.PLAY: "play recordings",
    roles.DOWNLOAD: "download recordings (format=original)", roles.EXPORT: "export recordings",
    roles.NOTE: "write notes", roles.HOLD: "hold recordings", roles.ERASE: "erase recordings",
    roles.USERS: "manage users", roles.AUDIT: "read the audit trail",
}


def identity_of(request: Request) -> Identity:
    """Who the request is from, as the guard said (OPEN where it asks for
    no credentials); NOBODY, with no rights, for a request it did not see."""
    return getattr(request, "identity", None) or NOBODY


def require(request: Request, right: str) -> Identity:
    """The request's identity, if its role has ``right``; else ApiError 403."""
    identity = identity_of(request)
    if not roles.may(identity.role, right):
        raise ApiError(403, f"a user of role {identity.role} may not {_RIGHT_WORDS[right]}")
    return identity


def within_reach(search: index.Search, identity: Identity) -> index.Search:
    """``search`` narrowed to the recordings ``identity`` reaches."""
    reach = identity.reach
    if reach.everything:
        return search
    return attrs.evolve(search, devices_within=reach.devices, numbers_within=reach.numbers)


def json_body(request: Request, fields: tuple[str, ...]) -> dict[str, Any]:
    """A POST's JSON object (Content-Type: application/json, which a form
    of another site cannot send without the browser asking first), with
    only ``fields``. Raises ApiError (415, 400)."""
    kind = (header_text(request, b"content-type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "the body must be JSON (Content-Type: application/json)")
    try:
        body = json.loads(request.content.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "the body is not JSON (UTF-8)") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body is not a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(400, f"{unknown[0][:40]}: not a field here (fields: {', '.join(fields)})")
    return body


class PostedAnswer(AsyncAnswer):
    """A route that takes POST (a change: its JSON body); GET is a 405."""

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"allow", b"POST")
        return send_json(request, {"error": "this route takes POST"}, 405)

    def render_POST(self, request: Request) -> Any:
        return self._answered(request)


def header_text(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def still_there(request: Request) -> bool:
    """Whether the client still waits for an answer (it may have gone while
    a thread worked for it)."""
    return not request.finished and not getattr(request, "_disconnected", False)


class JsonAnswer(Resource):
    """A JSON answer of ``status``."""

    isLeaf = True

    def __init__(self, status: int, body: Any) -> None:
        super().__init__()
        self.status, self.body = status, body

    def render(self, request: Request) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        return send_json(request, self.body, self.status)


class ErrorResource(JsonAnswer):
    """``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, {"error": message})
