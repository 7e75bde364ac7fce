"""The I/O edge: control connection and RTP sockets, bytes in and out only."""
