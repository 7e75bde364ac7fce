"""What the process needs: listeners' endpoints, thread pools, batching and file descriptors."""

__all__ = ["endpoints", "threads", "batching", "descriptors"]
