"""Server endpoint descriptions (Twisted's ``tcp:10000:interface=...``
syntax) read without a reactor, and nothing loaded: which kind, port and
interface a listener has, the accept queue recsvc asks for, the files it
names; and what to tell the user when one cannot listen.

The description is split by Twisted's own tokenizer (escapes and all);
the arguments are named as Twisted's TCP, TCP6, SSL and UNIX parsers name
their positional ones.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from typing import Mapping

from twisted.internet.endpoints import _parse, quoteStringArgument
from twisted.internet.error import CannotListenError

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
# The arguments that name files, by kind, with the file Twisted reads when
# one is not given (an SSL listener's certificate is its key file unless
# certKey says otherwise).
FILE_ARGUMENTS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "ssl": (("privateKey", "server.pem"), ("certKey", None), ("extraCertChain", None),
            ("dhParameters", None)),
    "unix": (("address", None),),
}
POSITIONAL_WITH_FILES = {"ssl": POSITIONAL["ssl"], "unix": ("address", "mode", "backlog", "lockfile")}


def arguments(description: str, kinds: Mapping[str, tuple[str, ...]] = POSITIONAL,
              ) -> tuple[str, dict[str, str]] | None:
    """The kind and the named arguments of a listener's description, for the
    ``kinds`` given with their positional arguments' names (TCP, TCP6 and
    SSL unless told); None for other kinds or what Twisted cannot split."""
    try:
        args, keywords = _parse(description)
    except (ValueError, RuntimeError):  # (a lone trailing backslash)
        return None
    if not args or args[0] not in kinds:
        return None
    kind, positional = args[0], args[1:]
    names = kinds[kind]
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


def files_from(description: str, folder: str) -> str:
    """``description`` with the relative paths of the files it names (an SSL
    listener's key and certificates, given or default; a UNIX socket) taken
    from ``folder``. Any other description, or one without a relative path,
    is returned as it is."""
    parsed = arguments(description, POSITIONAL_WITH_FILES)
    if parsed is None:
        return description
    kind, named = parsed
    moved = False
    for name, default in FILE_ARGUMENTS[kind]:
        path = named.get(name, default)
        if path is not None and not os.path.isabs(path):
            named[name] = os.path.join(folder, path)
            moved = True
    if not moved:
        return description
    return ":".join([kind, *(f"{name}={quoteStringArgument(value)}"
                             for name, value in named.items())])


def listen_failure(key: str, error: CannotListenError) -> str:
    """Why a listener (the one of config key ``key``) could not listen, and
    what to do about it, in one line."""
    if error.interface is None:  # a UNIX socket: its path
        where = str(error.port)
    elif ":" in error.interface:  # IPv6, bracketed as in a URL: [::1]:10000
        where = f"[{error.interface}]:{error.port}"
    else:
        where = f"{error.interface or '*'}:{error.port}"
    reason = error.socketError
    code = getattr(reason, "errno", None)
    if code == errno.EADDRINUSE:
        return (f"{key}: {where} is taken (another recsvc running?): stop what listens "
                f"there, or set another port in {key}")
    if code == errno.EACCES:
        return (f"{key}: no permission to listen on {where} (a port below 1024 takes root "
                f"or CAP_NET_BIND_SERVICE): set a port above 1023 in {key}")
    if code == errno.EADDRNOTAVAIL:
        return (f"{key}: {error.interface} is not an address of this machine: set one of "
                f"its addresses in {key}, or none for all")
    return f"{key}: cannot listen on {where}: {getattr(reason, 'strerror', None) or reason}"
