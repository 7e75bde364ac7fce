"""The archive's store on S3 and S3-compatible services (MinIO, Ceph RGW,
...), through boto3's client, which is thread-safe: the archive's threads
share one. boto3 is imported only when an archive is configured (the
``archive`` extra), so the service runs without it otherwise.

Every object is sent in one PUT (S3 takes up to 5 GB so; the config keeps
a file below that, see recsvc.config) with ``ChecksumSHA256``, the SHA-256
the archive read of the file: S3 refuses a body that does not match it
(BadDigest), keeps it, and gives it back in the PUT's answer and in
``head_object(ChecksumMode=ENABLED)``, which the archive compares with
its reading. botocore so hashes nothing itself: neither the checksum nor,
over plain http, the payload for the signature (``payload_signing_enabled``
off: the signed checksum header covers the body, as botocore already
chooses over https), which saves two readings of each file's bytes. (A
multipart object's checksum is one of its parts' checksums, which would
need the part sizes to compare.)
A new file is sent with ``IfNoneMatch="*"`` (S3's conditional write:
refused, 412, if an object is at the key), so that it needs no HEAD
before it, where the store honours the condition: it is tried once on an
object of its own (`S3Store.honours_only_if_absent`), since a store that
ignores the header would replace what is there.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import attrs
from zope.interface import implementer

from recsvc.archive.layout import ArchiveLocation
from recsvc.archive.store import IObjectStore, KeyTaken, StoreFailure, StoredObject, sha256_b64
from recsvc.logs import Logger
from recsvc.storage.folder import no_follow

# What botocore says when the endpoint does not answer, as a cause.
CANNOT_CONNECT = "cannot connect to the endpoint"
TIMED_OUT = "the endpoint did not answer in time"
NO_CREDENTIALS = "no credentials (the AWS chain found none)"
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
# AWS answers the HEAD of a missing key 403 when the policy does not allow
# s3:ListBucket. It is not taken for "absent": an object the node may not
# read would then be overwritten, and a policy short of s3:GetObject hidden.
# The cause says what the policy needs instead.
HEAD_FORBIDDEN = ("access denied to HEAD (the policy needs s3:GetObject on the objects and "
                  "s3:ListBucket on the bucket)")
_FORBIDDEN = ("403", "Forbidden", "AccessDenied")
# A conditional PUT refused: an object is at the key. (A 409,
# ConditionalRequestConflict, another conditional write to it under way,
# is a failure like any other: tried again later.)
_TAKEN = ("PreconditionFailed", "412")
# Where the store says it does not know conditional writes.
_NOT_KNOWN = ("NotImplemented", "501", "InvalidArgument", "InvalidRequest")
# The probe object's checksum: that of no bytes.
_NOTHING_SHA256 = sha256_b64(b"")


def client_for(endpoint_url: str | None, region: str | None, threads: int,
               **settings: Any) -> Any:
    """A boto3 S3 client; credentials from the AWS chain (environment,
    shared files, instance roles) unless ``settings`` give them (tests).
    Raises ImportError without boto3."""
    import boto3
    from botocore.config import Config as BotoConfig

    config = BotoConfig(
        # The archive retries with its own pauses; botocore tries twice.
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=10, read_timeout=120, max_pool_connections=max(threads, 2),
        # The body is covered by the ChecksumSHA256 header, which is signed
        # and which S3 checks the body against (see the module's text).
        s3={"payload_signing_enabled": False},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config,
        **settings)


@implementer(IObjectStore)
@attrs.define(eq=False)
class S3Store:
    """Objects in ``location``'s bucket, through a boto3 client (made at
    the first call by ``make_client`` when not given)."""

    log = Logger()

    location: ArchiveLocation
    client: Any = None
    make_client: Any = None
    # Server-side encryption: None, "AES256" or "aws:kms" (with a key id or
    # the bucket's default key).
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    # Whether the store refuses a conditional PUT at a taken key: tried
    # once, at the first upload (None: not yet), the other threads waiting.
    _conditional: bool | None = None
    _probing: threading.Lock = attrs.field(factory=threading.Lock)

    def _s3(self) -> Any:
        with self._lock:  # (a client is thread-safe; making one is not)
            if self.client is None:
                self.client = self.make_client()
            return self.client

    def put(self, key: str, path: str, content_type: str, metadata: Mapping[str, str],
            sha256: str, only_if_absent: bool = False) -> str | None:
        with open(path, "rb", opener=no_follow) as body:
            answer = self._put(key, body, content_type, metadata, sha256, only_if_absent)
        return answer.get("ChecksumSHA256")

    def _put(self, key: str, body: Any, content_type: str, metadata: Mapping[str, str],
             sha256: str, only_if_absent: bool) -> Any:
        extra: dict[str, Any] = {}
        if self.server_side_encryption:
            extra["ServerSideEncryption"] = self.server_side_encryption
            if self.kms_key_id:
                extra["SSEKMSKeyId"] = self.kms_key_id
        if only_if_absent:
            extra["IfNoneMatch"] = "*"
        try:
            return self._call(self._s3().put_object, Bucket=self.location.bucket, Key=key,
                              Body=body, ContentType=content_type, Metadata=dict(metadata),
                              ChecksumAlgorithm="SHA256", ChecksumSHA256=sha256, **extra)
        except StoreFailure as failure:
            if only_if_absent and failure.cause in _TAKEN:
                raise KeyTaken(key) from None
            raise

    def honours_only_if_absent(self) -> bool:
        """Tried once (the other threads wait for it) on an object of its
        own, ``PREFIX.recsvc-probe``, put twice only if absent, then
        deleted: True if a put is refused. StoreFailure if the store could not
        be asked (asked again next time)."""
        with self._probing:
            if self._conditional is None:
                self._conditional = self._probe()
            return self._conditional

    def _probe(self) -> bool:
        # One key for every node: a probe that a crash left, or another
        # node's under way, refuses the first put, which says as much.
        key = f"{self.location.prefix}.recsvc-probe"
        try:
            self._put(key, b"", "application/octet-stream", {}, _NOTHING_SHA256, True)
        except KeyTaken:
            self._delete_probe(key)
            return True
        except StoreFailure as failure:
            if failure.cause in _NOT_KNOWN:
                return False
            raise
        try:
            self._put(key, b"", "application/octet-stream", {}, _NOTHING_SHA256, True)
            honoured = False
        except KeyTaken:
            honoured = True
        except StoreFailure as failure:
            if failure.cause not in _NOT_KNOWN:
                self._delete_probe(key)
                raise
            honoured = False
        self._delete_probe(key)
        return honoured

    def _delete_probe(self, key: str) -> None:
        try:
            self.delete(key)
        except StoreFailure as failure:
            # (Without s3:DeleteObject, say: the uploads need it not.)
            self.log.warn("Could not delete {key}, the object that tried whether the store "
                          "honours If-None-Match: {reason}", key=key, reason=failure.cause)

    def head(self, key: str) -> StoredObject | None:
        try:
            answer = self._call(self._s3().head_object, Bucket=self.location.bucket, Key=key,
                                ChecksumMode="ENABLED")
        except StoreFailure as failure:
            if failure.cause in _NOT_FOUND:
                return None
            if failure.cause in _FORBIDDEN:
                raise StoreFailure(HEAD_FORBIDDEN, f"{key}: {failure.detail}") from None
            raise
        return StoredObject(int(answer["ContentLength"]), answer.get("ChecksumSHA256"))

    def metadata(self, key: str) -> dict[str, str]:
        answer = self._call(self._s3().head_object, Bucket=self.location.bucket, Key=key)
        return dict(answer.get("Metadata", {}))

    def get(self, key: str, first: int = 0, last: int | None = None) -> bytes:
        wanted = f"bytes={first}-{'' if last is None else last}"
        answer = self._call(self._s3().get_object, Bucket=self.location.bucket, Key=key,
                            Range=wanted)
        try:
            return answer["Body"].read()
        except Exception as error:
            raise _failure(error) from None

    def delete(self, key: str) -> None:
        self._call(self._s3().delete_object, Bucket=self.location.bucket, Key=key)

    @staticmethod
    def _call(method: Any, **arguments: Any) -> Any:
        try:
            return method(**arguments)
        except StoreFailure:
            raise
        except Exception as error:
            raise _failure(error) from None


def _failure(error: Exception) -> StoreFailure:
    """botocore's exception as a StoreFailure: the store's error code (such
    as AccessDenied, NoSuchBucket) or what went wrong on the way, as the
    cause."""
    from botocore import exceptions

    if isinstance(error, exceptions.ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code") or "error")
        return StoreFailure(code, str(details.get("Message") or error))
    if isinstance(error, (exceptions.EndpointConnectionError, exceptions.ConnectionClosedError)):
        return StoreFailure(CANNOT_CONNECT, str(error))
    if isinstance(error, (exceptions.ConnectTimeoutError, exceptions.ReadTimeoutError)):
        return StoreFailure(TIMED_OUT, str(error))
    if isinstance(error, exceptions.NoCredentialsError):
        return StoreFailure(NO_CREDENTIALS, str(error))
    if isinstance(error, exceptions.BotoCoreError):
        return StoreFailure(type(error).__name__, str(error))
    if isinstance(error, OSError):
        return StoreFailure("cannot read the local file", error.strerror or str(error))
    raise error
