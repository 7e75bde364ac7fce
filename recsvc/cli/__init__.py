"""The ``recsvc`` command: its subcommands, ``recsvc status`` and how recordings are listed."""

__all__ = ["commands", "status", "listing"]
