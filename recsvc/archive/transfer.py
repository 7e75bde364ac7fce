"""One file's way into the archive, blocking (the archive's threads run
it): read it (size and SHA-256), skip the upload if the store holds it
already, else PUT it; then ask the store what it holds and journal the
file as verified only if the store's size and SHA-256 are the file's."""

from __future__ import annotations

import os

import attrs

from recsvc.archive import journal
from recsvc.archive.layout import ArchiveLocation, content_type, object_metadata
from recsvc.archive.store import IObjectStore, LocalFile, StoreFailure, read_local
from recsvc.storage.folder import read_json

CHECKSUM_MISMATCH = "checksum mismatch"
SIZE_MISMATCH = "size mismatch"
MISSING_AFTER_UPLOAD = "object missing after its upload"
CANNOT_JOURNAL = "cannot write the journal"


class LocalFileGone(Exception):
    """The file is no longer there (retention removed it meanwhile)."""


@attrs.frozen
class Verified:
    """A file the store holds as it is here; ``sent``: False when it was
    there already (a restart after an upload whose journal line was lost)."""

    relative_path: str
    key: str
    local: LocalFile
    sent: bool


def archive_file(store: IObjectStore, root: str, location: ArchiveLocation,
                 relative_path: str) -> Verified:
    """Put the file at ``relative_path`` (under root) in the store unless it
    is there already, verify it and journal it. Raises StoreFailure (the
    store's, or a mismatch) or LocalFileGone."""
    path = os.path.join(root, relative_path)
    key = location.key(relative_path)
    try:
        local = read_local(path)
    except FileNotFoundError:
        raise LocalFileGone(relative_path) from None
    except OSError as error:
        raise StoreFailure("cannot read the local file", f"{path}: {error.strerror}") from None
    sent = False
    if not local.verified_by(store.head(key)):
        store.put(key, path, content_type(relative_path), _metadata(path))
        stored = store.head(key)
        if stored is None:
            raise StoreFailure(MISSING_AFTER_UPLOAD, key)
        if stored.size != local.size:
            raise StoreFailure(SIZE_MISMATCH, f"{key}: the store holds {stored.size} bytes, "
                                              f"the file has {local.size}")
        if stored.sha256 != local.sha256:
            raise StoreFailure(CHECKSUM_MISMATCH, f"{key}: the store's SHA-256 is "
                                                  f"{stored.sha256}, the file's {local.sha256}")
        sent = True
    try:
        journal.record_verified(root, relative_path, local, key)
    except OSError as error:
        # (A full disk without the reserve, say: the file waits, tried again.)
        raise StoreFailure(CANNOT_JOURNAL, f"{relative_path}: {error.strerror}") from None
    return Verified(relative_path, key, local, sent)


def _metadata(path: str) -> dict[str, str]:
    """The object metadata of a recording's file: from its sidecar."""
    data = read_json(os.path.splitext(path)[0] + ".json")
    return object_metadata(data) if isinstance(data, dict) else {}
