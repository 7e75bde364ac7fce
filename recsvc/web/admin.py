"""What an admin does on the page: the users of the index database (added,
changed, removed, each change with its audit row in the same transaction,
as `recsvc user` does) and erasure by number (recsvc.storage.erasure).

    GET  /api/users                         the users (no hashes)
    POST /api/users                         {"name", "role", "scopes", "password"}
    POST /api/users/{name}                  {"role"?, "scopes"?, "password"?}
    POST /api/users/{name}/remove           {}
    POST /api/erase                         {"number", "reason"}
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.web.resource import Resource
from twisted.web.server import Request

from recsvc.access import roles
from recsvc.access.holds import check_reason
from recsvc.access.scopes import Group, Scope, parse_scopes, unknown_groups
from recsvc.access.audit import audit_event
from recsvc.access.roles import check_role
from recsvc.access.users import (
    SHORTEST_PASSWORD, NoSuchUser, User, UserExists, check_scopes, check_user_name)
from recsvc.passwords import hash_password
from recsvc.storage import erasure
from recsvc.summary import iso_utc
from recsvc.web.answers import (
    ApiError, AsyncAnswer, ErrorResource, PostedAnswer, json_body, require, send_json)
from recsvc.web.audit import actor_of

# The fields a user's change may carry.
_USER_FIELDS = ("name", "role", "scopes", "password")


def user_json(user: User) -> dict[str, Any]:
    """A user as the API shows them: never a hash."""
    return {"name": user.name, "role": user.role, "scopes": [str(scope) for scope in user.scopes],
            "created_at": user.created_at, "changed_at": user.changed_at,
            "api_token": bool(user.token_hash)}


class UsersResource(AsyncAnswer):
    """/api/users: the users (GET), a new one (POST); /api/users/{name}
    changes one, /api/users/{name}/remove removes one. Admins only."""

    isLeaf = False

    def __init__(self, api: Any, run_blocking: Callable[..., Deferred[Any]],
                 groups: Mapping[str, Group]) -> None:
        super().__init__()
        self.api, self.run_blocking, self.groups = api, run_blocking, groups

    def getChild(self, path: bytes, request: Request) -> Resource:
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        removing = request.postpath == [b"remove"]
        if request.postpath not in ([], [b""], [b"remove"]) or not name:
            return ErrorResource(404, "no such resource")
        request.postpath.clear()
        return UserResource(self, name, removing)

    def render_POST(self, request: Request) -> Any:
        return self._answered(request)

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.USERS)
        if request.method != b"POST":
            return self.api.run_index(_users).addCallback(lambda users: send_json(
                request, {"users": [user_json(user) for user in users]}))
        body = json_body(request, _USER_FIELDS)
        name, role = _text(body, "name"), _text(body, "role")
        scopes = self.scopes_of(body.get("scopes", []))
        password = _password(body.get("password"))
        now = iso_utc(self.api.auditor.now())

        def hashed(password_hash: str) -> Deferred[Any]:
            user = _user(lambda: User(name, role, scopes, password_hash, now, now))
            event = self.api.auditor.event_of(identity, request, "user_add", user.name,
                                              _detail(user))
            return self.api.run_index(_add, user, event).addCallback(
                lambda _: send_json(request, {"user": user_json(user)}, 201))
        try:  # (checked before the password's slow hashing)
            check_scopes(check_role(role), scopes)
            check_user_name(name)
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        return self.run_blocking(hash_password, password).addCallback(hashed)

    def scopes_of(self, texts: Any) -> tuple[Scope, ...]:
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise ApiError(400, "scopes: not a list of scopes")
        try:
            scopes = parse_scopes(texts)
        except ValueError as error:
            raise ApiError(400, f"scopes: {error}") from None
        unknown = unknown_groups(scopes, self.groups)
        if unknown:
            raise ApiError(400, f"scopes: no group {', '.join(map(repr, unknown))} in the "
                                f"config's groups: (known: {', '.join(sorted(self.groups)) or 'none'})")
        return scopes


class UserResource(PostedAnswer):
    """POST /api/users/{name}: a new role, scopes or password (the user's
    sessions end with a new password); POST /api/users/{name}/remove."""

    def __init__(self, users: UsersResource, name: str, removing: bool) -> None:
        super().__init__()
        self.users, self.api, self.name, self.removing = users, users.api, name, removing

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.USERS)
        body = json_body(request, () if self.removing else _USER_FIELDS[1:])
        if identity.user == self.name and (self.removing or body.get("role", identity.role)
                                           != identity.role):
            raise ApiError(409, "an admin does not remove or demote themselves here: "
                                "another admin, or `recsvc user`, may")
        now = iso_utc(self.api.auditor.now())
        if self.removing:
            return self.api.run_index(_remove, self.name, self.api.auditor.event_of(
                identity, request, "user_remove", self.name)).addCallback(
                lambda _: send_json(request, {"removed": self.name}))
        role = _text(body, "role") if "role" in body else None
        scopes = self.users.scopes_of(body["scopes"]) if "scopes" in body else None
        password = _password(body["password"]) if "password" in body else None
        if role is None and scopes is None and password is None:
            raise ApiError(400, "nothing to change: role, scopes or password")
        hashing = (self.users.run_blocking(hash_password, password) if password is not None
                   else succeed(None))

        def change(found_in: Any, password_hash: str | None) -> User:
            user = found_in.user(self.name)
            if user is None:
                raise ApiError(404, f"no user {self.name!r}")
            new_role = role or user.role
            new_scopes = scopes if scopes is not None else (
                () if new_role in roles.UNSCOPED else user.scopes)
            changed = _user(lambda: attrs.evolve(
                user, role=new_role, scopes=new_scopes, changed_at=now,
                password_hash=password_hash or user.password_hash))
            same = (changed.role, changed.scopes) == (user.role, user.scopes)
            action = "user_password" if password_hash and same else "user_change"
            detail = _detail(changed)
            if password_hash:
                detail["password"] = "changed (the user's sessions ended)"
            try:
                found_in.replace_user(changed, audit=self.api.auditor.event_of(
                    identity, request, action, changed.name, detail))
            except NoSuchUser:
                raise ApiError(404, f"no user {self.name!r}") from None
            return changed  # (a new password: their sessions ended with it)
        return hashing.addCallback(lambda password_hash: self.api.run_index(
            change, password_hash)).addCallback(
            lambda changed: send_json(request, {"user": user_json(changed)}))


class EraseResource(PostedAnswer):
    """POST /api/erase ``{"number": "...", "reason": "..."}``: erasure on
    request, by an admin; its disposal record is in the audit trail, and
    what it says is the answer."""

    def __init__(self, api: Any, place: erasure.ErasurePlace) -> None:
        super().__init__()
        self.api, self.place = api, place

    def answer(self, request: Request) -> Deferred[Any]:
        identity = require(request, roles.ERASE)
        body = json_body(request, ("number", "reason"))
        number = _text(body, "number")
        try:
            reason = check_reason(_text(body, "reason"))
        except ValueError as error:
            raise ApiError(400, f"reason: {error}") from None

        def erase(found_in: Any) -> str:
            def event_of(target: str, detail: dict[str, Any]) -> Any:
                event = self.api.auditor.event_of(identity, request, "erase", target, detail)
                if event is None:  # (the open default: someone on this machine)
                    event = audit_event(iso_utc(self.api.auditor.now()), actor_of(identity),
                                        "-", "erase", target, detail)
                return event
            try:
                return erasure.erase(found_in, self.place, number, reason, event_of)
            except erasure.ErasureFailed as error:
                raise ApiError(400 if str(error).startswith("number:") else 500,
                               str(error)) from None
        return self.api.run_index(erase).addCallback(
            lambda said: send_json(request, {"said": said.splitlines()}))


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{field}: a text is needed")
    return value.strip()


def _password(value: Any) -> str:
    if not isinstance(value, str) or len(value) < SHORTEST_PASSWORD:
        raise ApiError(400, f"password: at least {SHORTEST_PASSWORD} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "password: not text (a lone surrogate)") from None
    return value


def _user(make: Callable[[], User]) -> User:
    try:
        return make()
    except ValueError as error:
        raise ApiError(400, str(error)) from None


def _detail(user: User) -> dict[str, Any]:
    return {"role": user.role, "scopes": [str(scope) for scope in user.scopes]}


def _users(found_in: Any) -> list[User]:
    return found_in.users()


def _add(found_in: Any, user: User, event: Any) -> None:
    try:
        found_in.add_user(user, audit=event)
    except UserExists:
        raise ApiError(409, f"there is a user {user.name!r} already") from None


def _remove(found_in: Any, name: str, event: Any) -> None:
    try:
        found_in.remove_user(name, audit=event)
    except NoSuchUser:
        raise ApiError(404, f"no user {name!r}") from None
