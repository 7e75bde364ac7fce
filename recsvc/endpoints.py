"""Server endpoint descriptions (Twisted's ``tcp:10000:interface=...``
syntax) read without a reactor, and nothing loaded: which kind, port and
interface a listener has, and the accept queue recsvc asks for.

The description is split by Twisted's own tokenizer (escapes and all);
the arguments are named as Twisted's TCP, TCP6 and SSL parsers name their
positional ones.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.endpoints import _parse

# Connections the kernel may hold for the listener to accept: a burst of
# phones starting (or a flood of connections) must not overflow it, as a
# dropped SYN costs a phone a second or more. Twisted's default is 50; the
# kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
# The positional arguments of the kinds with a port, an interface and a
# backlog, in Twisted's order (twisted.internet.endpoints' parsers).
POSITIONAL = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "backlog", "interface"),
    "ssl": ("port", "privateKey", "certKey", "sslmethod", "interface", "backlog"),
}
# Where a listener of each kind listens when it does not say.
DEFAULT_INTERFACE = {"tcp": "", "tcp6": "::", "ssl": ""}


def arguments(description: str) -> tuple[str, dict[str, str]] | None:
    """The kind and the named arguments of a TCP, TCP6 or SSL listener's
    description; None for other kinds or what Twisted cannot split."""
    try:
        args, keywords = _parse(description)
    except (ValueError, RuntimeError):  # (a lone trailing backslash)
        return None
    if not args or args[0] not in POSITIONAL:
        return None
    kind, positional = args[0], args[1:]
    names = POSITIONAL[kind]
    if len(positional) > len(names):
        return None
    named = dict(zip(names, positional))
    if set(named) & set(keywords):
        return None  # an argument given twice: Twisted refuses it
    return kind, {**named, **keywords}


def with_backlog(description: str, backlog: int = LISTEN_BACKLOG) -> str:
    """``description`` with ``backlog`` added where it takes one and has
    none of its own (as a keyword or in its place)."""
    parsed = arguments(description)
    if parsed is None or "backlog" in parsed[1]:
        return description
    return f"{description}:backlog={backlog}"


def only_this_host(description: str) -> bool:
    """Whether only this machine can reach the listener (a loopback address
    or a Unix socket)."""
    try:
        args, _ = _parse(description)
    except (ValueError, RuntimeError):
        return False
    if args and args[0] == "unix":
        return True
    address = tcp_address(description)
    if address is None:
        return False
    try:
        return ipaddress.ip_address(address[1].strip("[]")).is_loopback
    except ValueError:  # "" or "::" (every interface), or a name
        return False


def tcp_address(description: str) -> tuple[str, str, int] | None:
    """(kind, interface, port) of a TCP or TLS listener ("" or "::" for
    every interface); None for other kinds or a description without a port."""
    parsed = arguments(description)
    if parsed is None:
        return None
    kind, named = parsed
    port = named.get("port", "")
    if not port.isascii() or not port.isdigit():
        return None
    return kind, named.get("interface", DEFAULT_INTERFACE[kind]), int(port)
