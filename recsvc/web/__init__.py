"""The HTTP API, playback, sign-in, the access log, connection limits and the page's files."""

__all__ = ["site", "playback", "auth", "accesslog", "connections"]
