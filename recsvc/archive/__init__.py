"""The archive: finished recordings uploaded to S3-compatible object storage
(archive.url), verified by SHA-256, the local spool being the durable queue.

layout (object keys and metadata), backlog (what waits, the retry pauses,
failures said once per cause) and journal (what is verified, on disk) are
the core; store declares what an object store does, s3 is the boto3 edge
and uploader runs it all beside the recorder, on threads of its own."""

__all__ = ["layout", "backlog", "journal", "store", "transfer", "s3", "uploader"]
