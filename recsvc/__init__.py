"""recsvc: a call-recording server for Fanvil IP phones, on Twisted."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def makeService(config: Any = None, reactor: Any = None) -> Any:
    """The recorder as an IService for an existing Twisted application.

    ``config`` is a `recsvc.config.Config` or a mapping shaped like the YAML
    file (None: all defaults). See `recsvc.tap.makeService`.
    """
    from recsvc.tap import makeService as make

    return make(config, reactor)
