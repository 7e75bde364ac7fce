"""The phone's TCP channel: the messages (commands, framing; pure) and the protocol and accept loop (edges)."""

# The pure modules first, then the edges.
__all__ = ["commands", "framing", "interfaces", "protocol", "accepting"]
