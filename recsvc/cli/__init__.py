"""The ``recsvc`` command: its subcommands, ``recsvc status``, ``recsvc user``, ``recsvc audit`` and
how recordings are listed."""

__all__ = ["commands", "status", "listing", "users", "audit", "holds"]
