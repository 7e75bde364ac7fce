"""recsvc: a call-recording server for Fanvil IP phones, on Twisted."""

from __future__ import annotations

from typing import Any, Iterable

from recsvc.observers import IRecordingObserver

__version__ = "0.1.0"

__all__ = ["IRecordingObserver", "__version__", "makeService"]


def makeService(config: Any = None, reactor: Any = None, *,
                observers: Iterable[IRecordingObserver] = ()) -> Any:
    """The recorder as an IService for an existing Twisted application.

    ``config`` is a `recsvc.config.Config` or a mapping shaped like the YAML
    file (None: all defaults); ``observers`` provide `IRecordingObserver`
    and are told of each recording on the reactor thread. Creates
    storage.root and the folder of index.database. See
    `recsvc.tap.makeService`.
    """
    from recsvc.tap import makeService as make

    return make(config, reactor, observers=observers)
