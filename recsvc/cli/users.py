"""``recsvc user add|list|set|remove|passwd``: the users the index database
keeps (recsvc.access). Each takes the opened users (IUsers), the config's
groups and a way to read a password; recsvc.cli.commands opens them."""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any, Callable, Mapping

import attrs

from recsvc.access.roles import ROLES, UNSCOPED
from recsvc.access.scopes import Group, Scope, parse_scopes, unknown_groups
from recsvc.access.sessions import token_hash
from recsvc.access.users import (
    SHORTEST_PASSWORD, NoSuchUser, User, UserExists, check_scopes, check_user_name)
from recsvc.passwords import hash_password
from recsvc.summary import iso_utc

# The shortest password a user may have.


class UserCommandError(Exception):
    """What went wrong, for the command's user."""


def user_name(text: str) -> str:
    """An argparse type: a user's name (recsvc.access.users)."""
    try:
        return check_user_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _scopes(texts: list[str], groups: Mapping[str, Group]) -> tuple[Scope, ...]:
    try:
        scopes = parse_scopes(texts)
    except ValueError as error:
        raise UserCommandError(f"--scope: {error}") from None
    unknown = unknown_groups(scopes, groups)
    if unknown:
        known = ", ".join(sorted(groups)) or "none"
        raise UserCommandError(f"--scope: no group {', '.join(map(repr, unknown))} in the "
                               f"config's groups: (known: {known})")
    return scopes


def _new_password(read_password: Callable[[bool], str]) -> str:
    password = read_password(True)
    if len(password) < SHORTEST_PASSWORD:
        raise UserCommandError(f"a password needs at least {SHORTEST_PASSWORD} characters")
    return password


def _valid(make: Callable[[], User]) -> User:
    try:
        return make()
    except ValueError as error:
        raise UserCommandError(str(error)) from None


def add(users: Any, args: argparse.Namespace, groups: Mapping[str, Group],
        read_password: Callable[[bool], str], now: float) -> str:
    scopes = _scopes(args.scope or [], groups)
    try:  # (checked before the password is asked for)
        check_scopes(args.role, scopes)
    except ValueError as error:
        raise UserCommandError(str(error)) from None
    if users.user(args.name) is not None:
        raise UserCommandError(f"there is a user {args.name} already (recsvc user set changes "
                               f"one)")
    when = iso_utc(now)
    user = _valid(lambda: User(args.name, args.role, scopes,
                               hash_password(_new_password(read_password)), when, when))
    try:
        users.add_user(user, audit=_event("user_add", user, now))
    except UserExists:
        raise UserCommandError(f"there is a user {args.name} already") from None
    return f"added {describe(user)}"


def change(users: Any, args: argparse.Namespace, groups: Mapping[str, Group],
           now: float) -> str:
    user = _existing(users, args.name)
    role = args.role or user.role
    if args.scope is not None:
        scopes = _scopes(args.scope, groups)
    elif role in UNSCOPED:
        scopes = ()
    else:
        scopes = user.scopes
    changed = _valid(lambda: attrs.evolve(user, role=role, scopes=scopes,
                                          changed_at=iso_utc(now)))
    _replace(users, changed, _event("user_change", changed, now))
    return f"changed {describe(changed)}"


def passwd(users: Any, args: argparse.Namespace, read_password: Callable[[bool], str],
           now: float) -> str:
    user = _existing(users, args.name)
    changed = attrs.evolve(user, password_hash=hash_password(_new_password(read_password)),
                           changed_at=iso_utc(now))
    _replace(users, changed, _event("user_password", changed, now))  # (their sessions end)
    return f"changed the password of {user.name} (and ended their sessions of the page)"


def token(users: Any, args: argparse.Namespace, now: float) -> str:
    """A new API token for the user (shown once; only its hash is kept),
    replacing any before; or, with --revoke, none."""
    user = _existing(users, args.name)
    new = "" if args.revoke else "rst_" + secrets.token_urlsafe(32)
    changed = attrs.evolve(user, token_hash=token_hash(new) if new else "",
                           changed_at=iso_utc(now))
    _replace(users, changed, _event("user_change", changed, now, token="revoked" if args.revoke
                                    else "new"))
    if args.revoke:
        return f"{user.name} has no API token now"
    return (f"{new}\n(the API token of {user.name}: send it as \"Authorization: Bearer ...\"; "
            f"it is shown this once, and replaces any before)")


def remove(users: Any, args: argparse.Namespace, now: float) -> str:
    user = _existing(users, args.name)
    try:
        users.remove_user(args.name, audit=_event("user_remove", user, now))
    except NoSuchUser:
        raise UserCommandError(f"no user {args.name}") from None
    if not users.users():
        return (f"removed {args.name}: no user is left, so the page and the API ask for no "
                f"credentials again (unless http.auth is set): only requests that name this "
                f"server by an address, localhost or http.allowed_hosts are answered")
    return f"removed {args.name}"


def listing(users: Any, as_json: bool) -> str:
    found = users.users()
    if as_json:
        return json.dumps([{"name": user.name, "role": user.role,
                            "scopes": [str(scope) for scope in user.scopes],
                            "created_at": user.created_at, "changed_at": user.changed_at}
                           for user in found], indent=1)
    if not found:
        return "no users (recsvc user add NAME --role ROLE adds one)"
    rows = [("NAME", "ROLE", "SCOPES", "CHANGED")] + [
        (user.name, user.role, " ".join(map(str, user.scopes)) or "-", user.changed_at)
        for user in found]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)),
                                row[3]]).rstrip() for row in rows)


def _event(action: str, user: User, now: float, **more: str) -> Any:
    """The change's row of the audit trail (written with it, or neither)."""
    from recsvc.cli.audit import cli_event

    return cli_event(action, user.name, {"role": user.role,
                                         "scopes": [str(scope) for scope in user.scopes],
                                         **more}, now)


def describe(user: User) -> str:
    scopes = " ".join(map(str, user.scopes))
    return f"{user.name}, {user.role}" + (f", scope {scopes}" if scopes else "")


def _existing(users: Any, name: str) -> User:
    user = users.user(name)
    if user is None:
        raise UserCommandError(f"no user {name}")
    return user


def _replace(users: Any, user: User, event: Any) -> None:
    try:
        users.replace_user(user, audit=event)
    except NoSuchUser:
        raise UserCommandError(f"no user {user.name}") from None


ROLE_HELP = ("admin (everything, every recording), supervisor (search, play, download, "
             "notes, holds within the scope), listener (search and play within the scope), "
             "auditor (the audit trail only)")
SCOPE_HELP = ("which recordings the user reaches, repeatable: group:NAME (the config's "
              "groups:), device:MAC, number:DIGITS (a local number) or all; a supervisor or "
              "a listener needs one, an admin or an auditor has none")
ROLE_NAMES = tuple(ROLES)
