"""One file's way into the archive, blocking (the archive's threads run
it): read it (size and SHA-256), PUT it only if no object is at its key
(where the store honours that condition; else, and when one is there,
HEAD first: skip the upload if the store holds the file already, refuse
it if another object is at its key); journal the file as verified only if
the SHA-256 the store keeps of what it received (given back by the PUT,
else by a HEAD, with its size) is the file's. A new file so costs one
request."""

from __future__ import annotations

import os

import attrs

from recsvc.archive import journal
from recsvc.archive.layout import ArchiveLocation, content_type, node_of, object_metadata
from recsvc.archive.store import (
    IObjectStore, KeyTaken, LocalFile, StoreFailure, StoredObject, read_local)
from recsvc.storage.folder import read_json

CHECKSUM_MISMATCH = "checksum mismatch"
SIZE_MISMATCH = "size mismatch"
MISSING_AFTER_UPLOAD = "object missing after its upload"
NO_CHECKSUMS = ("the store keeps no SHA-256 checksums (ChecksumSHA256): it cannot verify "
                "uploads")
OBJECT_IN_THE_WAY = "a different object is already at its key"
OBJECT_APPEARED = "an object appeared at its key during its upload"
CANNOT_JOURNAL = "cannot write the journal"


class LocalFileGone(Exception):
    """The file is no longer there (retention removed it meanwhile)."""


class ObjectInTheWay(StoreFailure):
    """Another object than this file (not one this node put there) is at
    its key: it is not overwritten, and the recording is not uploaded (its
    local copy stays) until the next start looks again."""


@attrs.frozen
class Verified:
    """A file the store holds as it is here; ``sent``: False when it was
    there already (a restart after an upload whose journal line was lost)."""

    relative_path: str
    key: str
    local: LocalFile
    sent: bool
    # The node whose folder of the archive holds it (see layout.node_of).
    node: str = ""


def archive_file(store: IObjectStore, root: str, location: ArchiveLocation,
                 relative_path: str, this_node: str) -> Verified:
    """Put the file at ``relative_path`` (under root) in the store unless it
    is there already, verify it and journal it. Its key's node is the one
    its sidecar names, else ``this_node``. Raises StoreFailure (the store's,
    or a mismatch; ObjectInTheWay) or LocalFileGone."""
    path = os.path.join(root, relative_path)
    sidecar = read_json(os.path.splitext(path)[0] + ".json")
    sidecar = sidecar if isinstance(sidecar, dict) else {}
    node = node_of(sidecar.get("node"), this_node)
    key = location.key(node, relative_path)
    try:
        local = read_local(path)
    except FileNotFoundError:
        raise LocalFileGone(relative_path) from None
    except OSError as error:
        raise StoreFailure("cannot read the local file", f"{path}: {error.strerror}") from None
    metadata = object_metadata(sidecar)
    conditional = store.honours_only_if_absent()
    try:
        sent = conditional and _send(store, key, path, relative_path, local, metadata,
                                     only_if_absent=True)
    except KeyTaken:
        sent = False
    if not sent:
        sent = _send_unless_there(store, root, key, path, relative_path, local, metadata,
                                  conditional)
    try:
        journal.record_verified(root, relative_path, local, key)
    except OSError as error:
        # (A full disk without the reserve, say: the file waits, tried again.)
        raise StoreFailure(CANNOT_JOURNAL, f"{relative_path}: {error.strerror}") from None
    return Verified(relative_path, key, local, sent, node)


def _send_unless_there(store: IObjectStore, root: str, key: str, path: str,
                       relative_path: str, local: LocalFile, metadata: dict[str, str],
                       conditional: bool) -> bool:
    """Put the file unless the store holds it already (then False), or
    another object is at its key (ObjectInTheWay). Nothing there: put only
    if absent still, where the store honours that (another writer may be
    putting something there: StoreFailure, tried again later); this
    recording's own object there: replaced."""
    there = store.head(key)
    if local.verified_by(there):
        return False
    if there is not None:
        _check_in_the_way(store, there, local, metadata, root, relative_path, key)
    try:
        _send(store, key, path, relative_path, local, metadata,
              only_if_absent=conditional and there is None)
    except KeyTaken:
        raise StoreFailure(OBJECT_APPEARED, key) from None
    return True


def _send(store: IObjectStore, key: str, path: str, relative_path: str, local: LocalFile,
          metadata: dict[str, str], only_if_absent: bool) -> bool:
    """PUT the file and verify what the store says it holds: the SHA-256
    its answer gives, or (none given) what a HEAD gives. True once it is."""
    confirmed = store.put(key, path, content_type(relative_path), metadata, local.sha256,
                          only_if_absent=only_if_absent)
    if confirmed is None:
        _verify(key, local, store.head(key))
    elif confirmed != local.sha256:
        raise StoreFailure(CHECKSUM_MISMATCH, f"{key}: the store's SHA-256 is {confirmed}, "
                                              f"the file's {local.sha256}")
    return True


def _verify(key: str, local: LocalFile, stored: StoredObject | None) -> None:
    """Raise StoreFailure unless ``stored`` is the file, by size and SHA-256."""
    if stored is None:
        raise StoreFailure(MISSING_AFTER_UPLOAD, key)
    if stored.size != local.size:
        raise StoreFailure(SIZE_MISMATCH, f"{key}: the store holds {stored.size} bytes, "
                                          f"the file has {local.size}")
    if stored.sha256 is None:
        raise StoreFailure(NO_CHECKSUMS, f"{key}: no ChecksumSHA256 in its HEAD; the "
                                         f"archive needs a store that keeps the SHA-256 a "
                                         f"PUT asks for and gives it back")
    if stored.sha256 != local.sha256:
        raise StoreFailure(CHECKSUM_MISMATCH, f"{key}: the store's SHA-256 is "
                                              f"{stored.sha256}, the file's {local.sha256}")


def _check_in_the_way(store: IObjectStore, there: StoredObject, local: LocalFile,
                      metadata: dict[str, str], root: str, relative_path: str,
                      key: str) -> None:
    """An object other than the file is at its key: raise ObjectInTheWay
    unless it is this recording's own (an earlier upload the store did not
    verify, by its metadata; or one the journal says this node put there,
    the file changed since), or the store keeps no checksums to tell."""
    if there.sha256 is None:
        raise StoreFailure(NO_CHECKSUMS, f"{key}: no ChecksumSHA256 in its HEAD")
    folder, name = os.path.split(relative_path)
    ours = journal.verified_in(root, folder).get(name)
    if ours is not None and ours.key == key:
        return
    theirs = store.metadata(key)
    if all(theirs.get(field) == metadata.get(field) for field in _IDENTITY) \
            and metadata.get("id") is not None:
        return
    raise ObjectInTheWay(OBJECT_IN_THE_WAY, f"a different object is already at {key} "
                                            f"({there.size} bytes, SHA-256 {there.sha256}; "
                                            f"the file: {local.size} bytes, {local.sha256}): "
                                            f"not overwritten, the local copy kept")


# The object metadata that says which recording's file an object is.
_IDENTITY = ("id", "node", "device", "started_at", "part")
