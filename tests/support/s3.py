"""A real S3 API for the tests: moto in server mode, a process of its own
on a free port of 127.0.0.1, stopped when the test process ends.

``RECSVC_TEST_S3_ENDPOINT`` (with the standard AWS variables for its
credentials) runs the same tests against another S3-compatible endpoint
instead: MinIO, Ceph RGW, AWS. Each test takes a bucket of its own
(``S3Server.bucket``)."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import uuid
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.protocols.portforward import ProxyFactory, ProxyServer
from twisted.trial.unittest import SkipTest

from tests.support.servers import free_port, started, stop_process, wait_until_listening

ENDPOINT_VARIABLE = "RECSVC_TEST_S3_ENDPOINT"
# What moto accepts (any keys do); a real endpoint uses the AWS chain's.
_MOTO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


class S3Server:
    """An S3 endpoint: moto's server, started here, or the one named by
    RECSVC_TEST_S3_ENDPOINT."""

    def __init__(self) -> None:
        self.endpoint_url = os.environ.get(ENDPOINT_VARIABLE, "")
        self._process: subprocess.Popen[bytes] | None = None
        self._buckets: list[str] = []  # made on another endpoint: removed at the end

    @property
    def external(self) -> bool:
        return bool(os.environ.get(ENDPOINT_VARIABLE))

    def start(self) -> None:
        if self.external:
            return
        server = shutil.which("moto_server", path=os.path.dirname(sys.executable))
        if server is None:
            raise SkipTest("moto's server is not installed (the test extra: make test installs it)")
        for attempt in range(5):
            port = free_port()
            self._process = subprocess.Popen(
                [server, "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_until_listening(self._process, port):
                self.endpoint_url = f"http://127.0.0.1:{port}"
                atexit.register(self.stop)
                return
            stop_process(self._process)
        raise RuntimeError("moto's S3 server did not start on a free port of 127.0.0.1")

    def client_settings(self) -> dict[str, Any]:
        """What boto3's client needs for this endpoint (credentials only for
        moto: a real endpoint's come from the AWS chain)."""
        settings: dict[str, Any] = {"endpoint_url": self.endpoint_url, "region_name": REGION}
        if not self.external:
            settings.update(_MOTO_CREDENTIALS)
        return settings

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", **self.client_settings())

    def bucket(self) -> str:
        """A new, empty bucket of its own: its name. On another endpoint
        than moto's, it is emptied and removed when the test process ends
        (an account has only so many buckets)."""
        name = "recsvc-test-" + uuid.uuid4().hex[:16]
        self.client().create_bucket(Bucket=name)
        if self.external:
            if not self._buckets:
                atexit.register(self._remove_buckets)
            self._buckets.append(name)
        return name

    def _remove_buckets(self) -> None:
        client = self.client()
        for name in self._buckets:
            try:
                for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
                    for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                        client.delete_object(Bucket=name, Key=item["Key"],
                                             VersionId=item["VersionId"])
                client.delete_bucket(Bucket=name)
            except Exception as error:  # (the endpoint gone: say so, end anyway)
                print(f"tests/support/s3.py: bucket {name} not removed: {error}", file=sys.stderr)
        self._buckets.clear()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)


def server() -> S3Server:
    """This test process's S3 endpoint (see servers.started)."""
    return started(S3Server)


class _CutProxyFactory(ProxyFactory):
    """portforward's proxy, keeping its connections so they can be cut."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.connections: set[ProxyServer] = set()

    def buildProtocol(self, addr: Any) -> ProxyServer:
        protocol = super().buildProtocol(addr)
        connectionLost = protocol.connectionLost

        def lost(reason: Any) -> None:
            self.connections.discard(protocol)
            connectionLost(reason)

        protocol.connectionLost = lost  # type: ignore[method-assign]
        self.connections.add(protocol)
        return protocol


class StoreOutage:
    """The S3 endpoint behind a TCP proxy of 127.0.0.1 on the running
    reactor (``endpoint_url``): `down` closes its port (connections are
    refused) and cuts the connections it carries, as when a store goes
    away; `up` opens the same port again. The store behind keeps what it
    holds (moto keeps its objects in memory only: restarting it would lose
    them)."""

    def __init__(self, server: S3Server) -> None:
        parts = urlsplit(server.endpoint_url)
        self._factory = _CutProxyFactory(parts.hostname or "127.0.0.1", parts.port or 80)
        self._port: Any = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        from twisted.internet import reactor

        self._port = reactor.listenTCP(self.port, self._factory, interface="127.0.0.1")
        self.port = self._port.getHost().port

    def down(self) -> Deferred[None]:
        """(Nothing if it is down already.)"""
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        for connection in list(self._factory.connections):
            connection.transport.abortConnection()
        return maybeDeferred(port.stopListening)
