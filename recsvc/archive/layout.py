"""Where a recording's files go in the store: the same path under
storage.root as locally, under the prefix of archive.url, and which of the
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

    def key(self, relative_path: str) -> str:
        """The object key of a file at ``relative_path`` under storage.root."""
        parts = relative_path.replace("\\", "/").split("/")
        if relative_path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{relative_path!r} is not a path below the storage root")
        return self.prefix + posixpath.join(*parts)


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
