"""RTP in, audio out: packets, sources, the timeline, DTMF, codecs and the media pipeline (pure); the ports, receiver and RTP sockets (the Linux edge)."""

# The pure modules first, then the socket edge.
__all__ = [
    "rtp", "source", "timeline", "dtmf", "codec", "g711", "pipeline", "lane",
    "ports", "receiver", "sockets",
]
