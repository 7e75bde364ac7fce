"""RTP in, audio out: packets, sources, the timeline, DTMF, codecs and the media pipeline (pure); the ports, receiver and socket drain (the Linux edge)."""
