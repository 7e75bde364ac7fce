"""Who may hear what: users with a role (roles.py) and the recordings
their scopes reach (scopes.py), kept in the index database (users.py
says what a backend keeps of them). Pure: the backends keep users, the
web side and the CLI ask."""

__all__ = ["roles", "scopes", "users"]
