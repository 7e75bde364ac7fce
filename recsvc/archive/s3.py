"""The archive's store on S3 and S3-compatible services (MinIO, Ceph RGW,
...), through boto3's client, which is thread-safe: the archive's threads
share one. boto3 is imported only when an archive is configured (the
``archive`` extra), so the service runs without it otherwise.

Every object is sent in one PUT (S3 takes up to 5 GB so; the config keeps
a file below that, see recsvc.config) with ``ChecksumAlgorithm=SHA256``:
the store then keeps the SHA-256 of what it received and gives it back in
``head_object(ChecksumMode=ENABLED)``, which the archive compares with its
own reading of the file. (A multipart object's checksum is one of its
parts' checksums, which would need the part sizes to compare.)
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import attrs
from zope.interface import implementer

from recsvc.archive.layout import ArchiveLocation
from recsvc.archive.store import IObjectStore, StoreFailure, StoredObject
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
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config,
        **settings)


@implementer(IObjectStore)
@attrs.define(eq=False)
class S3Store:
    """Objects in ``location``'s bucket, through a boto3 client (made at
    the first call by ``make_client`` when not given)."""

    location: ArchiveLocation
    client: Any = None
    make_client: Any = None
    # Server-side encryption: None, "AES256" or "aws:kms" (with a key id or
    # the bucket's default key).
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def _s3(self) -> Any:
        with self._lock:  # (a client is thread-safe; making one is not)
            if self.client is None:
                self.client = self.make_client()
            return self.client

    def put(self, key: str, path: str, content_type: str, metadata: Mapping[str, str]) -> None:
        extra: dict[str, Any] = {}
        if self.server_side_encryption:
            extra["ServerSideEncryption"] = self.server_side_encryption
            if self.kms_key_id:
                extra["SSEKMSKeyId"] = self.kms_key_id
        s3 = self._s3()
        with open(path, "rb", opener=no_follow) as body:
            self._call(s3.put_object, Bucket=self.location.bucket, Key=key, Body=body,
                       ContentType=content_type, Metadata=dict(metadata),
                       ChecksumAlgorithm="SHA256", **extra)

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
