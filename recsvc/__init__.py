"""recsvc: a call-recording server for Fanvil IP phones, on Twisted."""

from __future__ import annotations

from typing import Any, Iterable

# (twisted.application.service does not import the reactor: an embedding
# application may still install its own after importing recsvc.)
from twisted.application.service import IService

from recsvc.observers import IRecordingObserver

__version__ = "0.1.0"

__all__ = ["IRecordingObserver", "__version__", "makeService"]


def makeService(config: Any = None, reactor: Any = None, *,
                observers: Iterable[IRecordingObserver] = ()) -> IService:
    """The recorder as an IService for an existing Twisted application.

    ``config`` is a `recsvc.config.Config` or a mapping shaped like the YAML
    file (None: all defaults); ``observers`` provide `IRecordingObserver`
    and are told of each recording on the reactor thread. Creates
    storage.root and the folder of index.database. See
    `recsvc.tap.makeService`.

    What it does to the whole process (README, "Embedding"): it raises the
    soft limit of open files for the RTP port range and grows the
    descriptor table; once the reactor runs, ``gc.freeze()`` (every object
    alive then, the application's too) and its own thread pools
    (``recsvc-disk``, ``recsvc-open``, ``recsvc-http``, ``recsvc-index``,
    at a lower priority); its listeners accept at most 64 connections a
    turn, after their first data (``TCP_DEFER_ACCEPT``). It leaves the
    process's signals alone.
    """
    # Imported on call: recsvc.tap imports the whole server.
    from recsvc.tap import makeService as make

    return make(config, reactor, observers=observers)
