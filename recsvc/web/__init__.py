"""The HTTP API, playback, sign-in, the audit trail's entries, the access log, connection
limits and the page's files."""

__all__ = ["site", "playback", "auth", "audit", "accesslog", "connections"]
