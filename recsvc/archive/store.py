"""What the archive asks of an object store (IObjectStore), and what it
gets back. The stores: recsvc.archive.s3 (boto3) and, for tests,
recsvc.testing.MemoryStore; one contract suite runs against both."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Mapping

import attrs
from zope.interface import Interface

# Read this much of a file at a time while hashing or sending it.
CHUNK = 1 << 20


@attrs.frozen
class StoredObject:
    """An object as the store describes it: its size and the SHA-256 it
    computed of what it holds (base64 of the digest, as S3's
    ChecksumSHA256), or None when it keeps none."""

    size: int
    sha256: str | None


@attrs.frozen
class LocalFile:
    """A local file as read for its upload: its size and SHA-256 (base64)."""

    size: int
    sha256: str

    def verified_by(self, stored: StoredObject | None) -> bool:
        """Whether the store holds exactly this file, by its own word."""
        return stored is not None and stored.size == self.size and stored.sha256 == self.sha256


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def read_local(path: str) -> LocalFile:
    """Size and SHA-256 of a file, read through once. Blocking."""
    digest = hashlib.sha256()
    size = 0
    # (Never through a symbolic link: see recsvc.storage.folder.no_follow.)
    with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW)) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return LocalFile(size, base64.b64encode(digest.digest()).decode("ascii"))


class StoreFailure(Exception):
    """The store could not do what was asked. ``cause`` is short and stable
    (a log line and a metric label are made per cause: ``cannot connect to
    the endpoint``, ``AccessDenied``, ``checksum mismatch``); ``detail``
    says more, for the log."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause
        self.detail = detail


class KeyTaken(StoreFailure):
    """A put ``only_if_absent`` found an object at its key."""

    def __init__(self, key: str) -> None:
        super().__init__("an object is already at its key", key)


class IObjectStore(Interface):
    """An object store the archive writes to. Every method blocks (the
    archive calls them on its own threads) and raises StoreFailure."""

    def put(key: str, path: str, content_type: str, metadata: Mapping[str, str],
            sha256: str, only_if_absent: bool = False) -> str | None:
        """Store the file at ``path`` under ``key`` (replacing any object
        there, but with ``only_if_absent``: then KeyTaken if there is one,
        where `honours_only_if_absent`), the store keeping ``sha256`` (the
        file's SHA-256 as the archive read it, base64) as the object's
        checksum and refusing a body that does not match it (S3:
        StoreFailure("BadDigest")). Returns the SHA-256 the store's answer
        gives, or None if it gives none (ask `head`)."""

    def honours_only_if_absent() -> bool:
        """Whether the store refuses a put ``only_if_absent`` at a taken key
        (S3's conditional write, If-None-Match; a store that ignores it
        would replace the object)."""

    def head(key: str) -> StoredObject | None:
        """The object under ``key`` as the store describes it; None if there
        is none."""

    def metadata(key: str) -> dict[str, str]:
        """The object's metadata (as given to put); StoreFailure if none."""

    def get(key: str, first: int = 0, last: int | None = None) -> bytes:
        """Bytes ``first`` to ``last`` (inclusive; None: to the end) of the
        object, as an HTTP Range asks; StoreFailure("NoSuchKey") if none."""

    def delete(key: str) -> None:
        """Remove the object (nothing if there is none)."""
