"""The ``recsvc`` command: its subcommands, ``recsvc status`` and how recordings are listed."""
