"""Where a recording's files go in the store: under the prefix of
archive.url, a folder per node, and in it the same path under storage.root
as locally (two nodes' files at one path are two objects); and which of the
sidecar's fields go along as object metadata."""

from __future__ import annotations

import posixpath
import re
from typing import Any, Mapping
from urllib.parse import quote

import attrs

# S3's rules for a bucket name (the strictest of the S3-compatible stores').
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

# The sidecar's fields that also go with the WAV as object metadata: what
# a listing tool shows without reading the sidecar. (S3 keeps at most 2 KB
# of metadata, ASCII: values are percent-encoded, each cut to 256 bytes.)
METADATA_FIELDS = ("id", "device", "direction", "local_number", "remote_number",
                   "started_at", "stopped_at", "duration_s", "codec", "part", "node")
_VALUE_BYTES = 256

CONTENT_TYPES = {".wav": "audio/wav", ".json": "application/json"}


@attrs.frozen
class ArchiveLocation:
    """``s3://bucket/prefix``: the bucket, and the prefix every key begins
    with (empty, or ending in ``/``)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def from_url(cls, url: str) -> ArchiveLocation:
        """Raises ValueError saying what is wrong with ``url``."""
        scheme, separator, rest = url.partition("://")
        if scheme != "s3" or not separator:
            raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"{bucket!r} is not a bucket name (3 to 63 of a-z, 0-9, '.', '-')")
        parts = [part for part in prefix.split("/") if part]
        if any(part in (".", "..") for part in parts) or not prefix.isprintable():
            raise ValueError(f"{prefix!r} is not a key prefix (no '.' or '..' parts, printable)")
        return cls(bucket, "".join(part + "/" for part in parts))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, node: str, relative_path: str) -> str:
        """The object key of node ``node``'s file at ``relative_path`` under
        its storage.root: ``<prefix><node>/<path>``. ``node`` is the one
        `node_of` gives, so that every node computes the same key."""
        parts = relative_path.replace("\\", "/").split("/")
        if relative_path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{relative_path!r} is not a path below the storage root")
        if not _is_node(node):
            raise ValueError(f"{node!r} is not a node name")
        return self.prefix + posixpath.join(node, *parts)


def node_of(named: object, this_node: str) -> str:
    """The node whose folder holds a recording's objects: the one its
    sidecar (or index row) names, else ``this_node`` (a sidecar from before
    nodes had names was written by the node that has it, or indexed it)."""
    return named if isinstance(named, str) and _is_node(named) else this_node


def _is_node(name: str) -> bool:
    """Whether ``name`` can be a folder of the keys (recsvc.config checks
    the names it takes more strictly)."""
    return 0 < len(name) <= 63 and name.isprintable() and name not in (".", "..") \
        and not any(character in name for character in "/\\")


def object_metadata(sidecar: Mapping[str, Any]) -> dict[str, str]:
    """The sidecar's fields kept with the WAV's object (METADATA_FIELDS
    that it has, not null), percent-encoded ASCII."""
    metadata = {}
    for field in METADATA_FIELDS:
        value = sidecar.get(field)
        if value is None or isinstance(value, (dict, list)):
            continue
        text = quote(str(value), safe=" +:@,;=-_.~")[:_VALUE_BYTES]
        metadata[field.replace("_", "-")] = text
    return metadata


def content_type(relative_path: str) -> str:
    return CONTENT_TYPES.get(posixpath.splitext(relative_path)[1], "application/octet-stream")
