"""The phone's TCP channel: the messages (commands, framing; pure) and the protocol and accept loop (edges)."""
