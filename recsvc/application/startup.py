"""What start-up takes from a valid config against the machine: the
listeners' endpoints, the folders it creates, the address Start responses
advertise, and the warning an HTTP side open to the network is owed."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from recsvc.application.endpoints import only_this_host, with_backlog
from recsvc.config import Config, ConfigError
from recsvc.index.backends import is_postgresql


def check_config(config: Config, reactor: Any) -> None:
    """What can only be checked against the machine: the endpoint syntax and
    a storage root that can be created and written. Raises ConfigError."""
    endpoint_for(config, reactor)
    http_endpoint_for(config, reactor)
    create_folders(config)
    check_archive_library(config)


def check_archive_library(config: Config) -> None:
    """An archive needs boto3 (the ``archive`` extra); without one, recsvc
    runs without it. Raises ConfigError."""
    if config.archive.url is None:
        return
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise ConfigError("archive.url", "needs boto3, which is not installed: "
                          "pip install 'recsvc[archive]' (or boto3)") from None


def create_folders(config: Config) -> None:
    """Create storage.root (which must then be writable) and the folder of
    index.database, where they do not exist. Raises ConfigError naming the key."""
    root = config.storage.root
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as error:
        raise ConfigError("storage.root", f"cannot create {root}: {error.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError("storage.root", f"{root} is not writable")
    if is_postgresql(config.index.database):
        return  # a server's database, no folder
    folder = os.path.dirname(config.index.database)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise ConfigError("index.database",
                          f"cannot create its folder {folder}: {error.strerror}") from None


def endpoint_for(config: Config, reactor: Any) -> IStreamServerEndpoint:
    return _server_endpoint(config.control.listen, "control.listen", reactor)


def http_endpoint_for(config: Config, reactor: Any) -> IStreamServerEndpoint | None:
    """The HTTP side's endpoint; None when http.listen is "off"."""
    if config.http.listen == "off":
        return None
    return _server_endpoint(config.http.listen, "http.listen", reactor)


def _server_endpoint(description: str, key: str, reactor: Any) -> IStreamServerEndpoint:
    try:
        return serverFromString(reactor, with_backlog(description))
    except (ValueError, KeyError, TypeError, ImportError, OSError, RuntimeError) as error:
        # ImportError: ssl: without pyOpenSSL; OSError: a key or cert file
        # missing; RuntimeError: a lone backslash at the end.
        raise ConfigError(key, f"not a valid endpoint: {error}") from None


def open_http_warning(config: Config, endpoint: IStreamServerEndpoint | None) -> str | None:
    """The loud warning owed when anyone on the network may list and play
    the recordings: a listener beyond this host without http.auth."""
    if endpoint is None or config.http.auth.enabled or only_this_host(config.http.listen):
        return None
    return (f"http.listen {config.http.listen!r} is reachable from other machines and "
            "http.auth is not set: anyone who can reach it can list, play and download "
            "every recording. Set http.auth (users or token), or listen on 127.0.0.1.")


def advertised_address(config: Config) -> str | None:
    """The fixed address for Start responses, or None for "the local address
    of each phone's control connection". With ``auto`` and RTP bound to one
    address (not a wildcard), that address is the one that works."""
    if config.rtp.advertise != "auto":
        return config.rtp.advertise
    if config.rtp.interface in ("0.0.0.0", "::"):
        return None
    return config.rtp.interface
