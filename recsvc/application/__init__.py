"""What the process needs: listeners and their endpoints, the service tree's own services,
signals (reload), thread pools, batching, file descriptors and the garbage collector."""

__all__ = ["endpoints", "listener", "startup", "tree", "reload", "threads", "batching",
           "descriptors", "memory"]
