"""Who may hear what: users with a role (roles.py) and the recordings
their scopes reach (scopes.py), kept in the index database (users.py
says what a backend keeps of them); and a record of it: the audit trail
(audit.py), plays summarised for it (plays.py); legal holds (holds.py); the page's
sign-in sessions (sessions.py); notes and tags on recordings (notes.py). Pure: the backends keep
users and the trail, the web side and the CLI ask."""

__all__ = ["roles", "scopes", "users", "audit", "plays", "holds", "sessions", "notes"]
