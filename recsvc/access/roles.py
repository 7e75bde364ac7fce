"""The roles a user has, each a fixed set of rights (what a user may do;
which recordings they may do it to is their scope's, recsvc.access.scopes).

- ``admin``: everything, users and the audit trail included; every recording.
- ``supervisor``: search, play, download and export, notes and holds,
  within their scope.
- ``listener``: search and play within their scope; no download.
- ``auditor``: the audit trail, nothing else (no recording).
"""

from __future__ import annotations

# The rights: what a route or a command asks of its user.
SEARCH = "search"  # list recordings and their details, the calls in progress
PLAY = "play"  # hear a recording (decoded, by ranges)
DOWNLOAD = "download"  # the stored file as it is (format=original)
EXPORT = "export"  # a search as CSV
NOTE = "note"  # notes and tags on a recording
HOLD = "hold"  # put a recording on legal hold, release it
ERASE = "erase"  # erase recordings (by number)
USERS = "users"  # add, change and remove users
AUDIT = "audit"  # read and verify the audit trail

RIGHTS = (SEARCH, PLAY, DOWNLOAD, EXPORT, NOTE, HOLD, ERASE, USERS, AUDIT)

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset(RIGHTS),
    "supervisor": frozenset({SEARCH, PLAY, DOWNLOAD, EXPORT, NOTE, HOLD}),
    "listener": frozenset({SEARCH, PLAY}),
    "auditor": frozenset({AUDIT}),
}

# The roles whose users see every recording their rights reach, without a
# scope (an admin's are all; an auditor's none).
UNSCOPED = frozenset({"admin", "auditor"})


def check_role(name: str) -> str:
    """``name`` if it is a role; else ValueError naming the roles."""
    if name not in ROLES:
        raise ValueError(f"{name!r} is not a role (roles: {', '.join(ROLES)})")
    return name


def may(role: str, right: str) -> bool:
    """Whether a user of ``role`` has ``right``."""
    return right in ROLES.get(role, frozenset())
