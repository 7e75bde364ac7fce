"""The archive wired into a running service (recsvc.makeService on the
reactor, over loopback): a call recorded is uploaded to the S3 endpoint of
the tests, verified, announced to hooks.on_archived, and its local WAV
deleted."""

from __future__ import annotations

import json
import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from tests.support import s3
from tests.support.loopback import LoopbackServiceMixin
from tests.support.webhook import RecordingResource


class ArchiveEndToEndTests(LoopbackServiceMixin, TestCase):
    """A call through the whole service, with archive.url on moto's S3."""

    def more_config(self) -> dict:
        self.server = s3.server()
        self.bucket = self.server.bucket()
        settings = self.server.client_settings()
        for variable, key in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
                              ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key")):
            if key in settings:
                self.patch(os, "environ", {**os.environ, variable: settings[key]})
        self.hook = RecordingResource()
        self.hook_port = reactor.listenTCP(0, Site(self.hook), interface="127.0.0.1")
        self.addCleanup(self.hook_port.stopListening)
        return {
            "archive": {"url": f"s3://{self.bucket}/site", "region": "us-east-1",
                        "endpoint_url": self.server.endpoint_url},
            "hooks": {"on_archived": f"http://127.0.0.1:{self.hook_port.getHost().port}/a"},
        }

    @inlineCallbacks
    def test_call_archived(self) -> None:
        """The call's WAV and sidecar are in the bucket under the local
        path, in the node's folder; hooks.on_archived hears an `archived` event naming them; the
        local WAV is gone, its sidecar stays."""
        yield deferToThread(self.call, "bare", "arch-1", b"\xd5" * 1600)
        content_type, body = yield self.hook.received.get()
        event = json.loads(body)
        self.assertEqual((content_type, event["event"], event["id"]),
                         (b"application/json", "archived", "arch-1"))
        listed = yield deferToThread(
            self.server.client().list_objects_v2, Bucket=self.bucket)
        keys = sorted(item["Key"] for item in listed.get("Contents", []))
        with open(os.path.join(self.root, event["sidecar"]), encoding="utf-8") as handle:
            folder = "site/" + json.load(handle)["node"] + "/"  # (the node's folder)
        self.assertEqual(keys, sorted([folder + event["path"], folder + event["sidecar"]]))
        self.assertEqual(event["key"], folder + event["path"])
        self.assertFalse(os.path.exists(os.path.join(self.root, event["path"])))
        self.assertTrue(os.path.exists(os.path.join(self.root, event["sidecar"])))
