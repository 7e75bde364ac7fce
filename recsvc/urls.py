"""The http:// and https:// URLs recsvc posts to (hooks.on_finish): checked
as the config reads them, and shown in logs without their secrets.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def check_url(url: str) -> str:
    """``url`` stripped of surrounding blanks, if it is an http:// or https://
    URL with a host that the HTTP client can use; ValueError saying what is
    wrong otherwise."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1" and the like
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
    if not url.isascii() or any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in url):
        raise ValueError(
            f"the URL {url!r} has spaces, control or non-ASCII characters: "
            "percent-encode them (and write the host name in its xn-- form)"
        )
    if "@" in parts.netloc:
        # The client sends no credentials from the URL: it would quietly
        # mistake them for part of the host.
        raise ValueError(
            f"credentials in the URL are not supported, got {without_secrets(url)!r}: "
            "put a token in the path or query instead"
        )
    try:
        parts.port
    except ValueError:
        raise ValueError(f"the URL {url!r} has a bad port number") from None
    return url


def without_secrets(url: str) -> str:
    """The URL as logs show it: no user info, no query (either may carry a token)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
