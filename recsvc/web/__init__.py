"""The HTTP API, playback, sign-in (basic authentication and the page's sessions), the audit
trail's entries, the access log, connection limits, what the API's resources share
(answers), what admins do on the page (admin) and the page's files."""

__all__ = ["site", "answers", "admin", "playback", "auth", "sessions", "audit", "accesslog",
           "connections"]
