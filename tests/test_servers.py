"""Tests of the servers the tests start for themselves (tests/support):
a throwaway PostgreSQL cluster and moto's S3 in server mode, as the index
and archive suites will use them."""

from __future__ import annotations

import base64
import hashlib

from twisted.trial.unittest import SynchronousTestCase

from tests.support import postgres, s3


class PostgresClusterTests(SynchronousTestCase):
    """The cluster: a real server on 127.0.0.1, a database per test."""

    def setUp(self) -> None:
        self.cluster = postgres.cluster()

    def test_each_test_has_a_database_of_its_own(self) -> None:
        """Two databases of one cluster do not see each other's tables;
        each is reached by its URL, as index.database will name it."""
        import psycopg

        first, second = self.cluster.database(), self.cluster.database()
        self.assertNotEqual(first, second)
        with psycopg.connect(first, autocommit=True) as connection:
            connection.execute("CREATE TABLE recordings (id text PRIMARY KEY)")
            connection.execute("INSERT INTO recordings VALUES ('7')")
            self.assertEqual(connection.execute("SELECT id FROM recordings").fetchall(), [("7",)])
        with psycopg.connect(second, autocommit=True) as connection:
            found = connection.execute("SELECT to_regclass('recordings')").fetchone()
            self.assertEqual(found, (None,))

    def test_listens_on_loopback_only_with_trigram_search(self) -> None:
        """The server listens on 127.0.0.1 only, and has pg_trgm, which the
        index's substring search stands on (Debian's contrib)."""
        import psycopg

        with psycopg.connect(self.cluster.database(), autocommit=True) as connection:
            listening = connection.execute("SHOW listen_addresses").fetchone()
            self.assertEqual(listening, ("127.0.0.1",))
            connection.execute("CREATE EXTENSION pg_trgm")
            similar = connection.execute("SELECT '13800138000' % '138001380'").fetchone()
            self.assertEqual(similar, (True,))


class S3ServerTests(SynchronousTestCase):
    """moto's S3 (or RECSVC_TEST_S3_ENDPOINT's): what the archive relies on."""

    def setUp(self) -> None:
        self.server = s3.server()
        self.client = self.server.client()
        self.bucket = self.server.bucket()

    def test_the_store_gives_back_the_sha256_of_what_it_holds(self) -> None:
        """An object sent with a SHA-256 checksum (botocore computes it over
        the bytes it sends) is kept with it, and head_object gives it back
        with the size: what the archive compares with the local file's
        before deleting anything. (moto does not check a checksum header
        the client computed itself, as S3 does: the archive does not rely
        on the store refusing one.)"""
        body = bytes(range(256)) * 64
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        self.client.put_object(Bucket=self.bucket, Key="a/call.wav", Body=body,
                               ChecksumAlgorithm="SHA256")
        head = self.client.head_object(Bucket=self.bucket, Key="a/call.wav",
                                       ChecksumMode="ENABLED")
        self.assertEqual((head["ContentLength"], head["ChecksumSHA256"]), (len(body), digest))
        listed = self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        self.assertEqual([item["Key"] for item in listed], ["a/call.wav"])

    def test_byte_ranges(self) -> None:
        """A Range request returns those bytes only, as playback's seeking
        will ask of an archived recording."""
        body = bytes(range(256))
        self.client.put_object(Bucket=self.bucket, Key="call.wav", Body=body)
        part = self.client.get_object(Bucket=self.bucket, Key="call.wav", Range="bytes=10-19")
        self.assertEqual(part["Body"].read(), body[10:20])
        self.assertEqual(part["ContentRange"], "bytes 10-19/256")
