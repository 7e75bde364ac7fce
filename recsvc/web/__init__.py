"""The HTTP API, playback, sign-in (basic authentication and the page's sessions), the audit
trail's entries, the access log, connection limits and the page's files."""

__all__ = ["site", "playback", "auth", "sessions", "audit", "accesslog", "connections"]
