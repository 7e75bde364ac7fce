"""What the process needs: listeners' endpoints, thread pools, batching and file descriptors."""
