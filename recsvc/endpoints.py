"""Server endpoint descriptions (Twisted's ``tcp:10000:interface=...``
syntax) read without a reactor, and nothing loaded: which kind, port and
interface a listener has, and the accept queue recsvc asks for."""

from __future__ import annotations

import re

# Connections the kernel may hold for the listener to accept: a burst of
# phones starting (or a flood of connections) must not overflow it, as a
# dropped SYN costs a phone a second or more. Twisted's default is 50; the
# kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
# The kinds with a port, an interface and a backlog.
TCP_KINDS = ("tcp", "tcp6", "ssl")
_SEPARATOR = re.compile(r"(?<!\\):")
_EQUALS = re.compile(r"(?<!\\)=")


def split_description(description: str) -> tuple[str, list[str], dict[str, str]]:
    """The kind, positional arguments and keyword arguments of a
    description, escapes (``\\:``) undone."""
    kind, *parts = _SEPARATOR.split(description)
    positional, keywords = [], {}
    for part in parts:
        pieces = _EQUALS.split(part, maxsplit=1)
        if len(pieces) == 2:
            keywords[_unescape(pieces[0])] = _unescape(pieces[1])
        else:
            positional.append(_unescape(part))
    return kind.strip().lower(), positional, keywords


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def with_backlog(description: str, backlog: int = LISTEN_BACKLOG) -> str:
    """``description`` with ``backlog`` added where it takes one and has
    none of its own."""
    kind, _, keywords = split_description(description)
    if kind not in TCP_KINDS or "backlog" in keywords or description.endswith("\\"):
        return description
    return f"{description}:backlog={backlog}"


def tcp_address(description: str) -> tuple[str, str, int] | None:
    """(kind, interface, port) of a TCP or TLS listener ("" for every
    interface); None for other kinds or a description without a port."""
    kind, positional, keywords = split_description(description)
    port_text = keywords.get("port") or (positional[0] if positional else "")
    if kind not in TCP_KINDS or not port_text.isdigit():
        return None
    return kind, keywords.get("interface", ""), int(port_text)
