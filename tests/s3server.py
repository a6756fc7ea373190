"""A real S3 HTTP server for tests: moto's standalone server on 127.0.0.1, in a thread.

moto speaks the S3 wire protocol well enough for buckets, metadata, multipart, listing and
Object Lock configuration, but it does not verify checksums or signatures and is loose about
retention (see FACTS.md). Tests that depend on those go to a real MinIO through
``EVIDENCE_TEST_S3_ENDPOINT`` instead (the fixtures in ``s3_fixtures``). Keep test data small:
moto holds everything in memory.

Plain helpers only, so test modules can import them without importing the fixture plugin.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from minio import Minio
from moto.server import ThreadedMotoServer

from evidence_daemon.archive.s3 import S3Archive
from evidence_daemon.config import ArchiveConfig

MOTO_ACCESS_KEY = "testing"
MOTO_SECRET_KEY = "testing-secret"  # moto checks no signature; any value works

# Locked test objects outlive the test on a real server; keep that as short as S3 allows.
TEST_RETENTION_DAYS = 1
TEST_PART_SIZE_MIB = 5

MakeBucket = Callable[..., str]


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Run a moto server on a free port; yields its ``host:port``."""
    # werkzeug logs every request at INFO; the useful failures show up in the tests anyway.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"{host}:{port}"
    finally:
        server.stop()


def unique_bucket_name() -> str:
    return f"evidence-test-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class S3TestServer:
    """Where the test S3 server is and how to log in."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool
    is_moto: bool
    region: str = "us-east-1"

    def client(self) -> Minio:
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            region=self.region,
        )

    def archive_config(self, bucket: str, **overrides: Any) -> ArchiveConfig:
        config = ArchiveConfig(
            backend="s3",
            endpoint=self.endpoint,
            bucket=bucket,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            region=self.region,
            part_size_mib=TEST_PART_SIZE_MIB,
            retention_days=TEST_RETENTION_DAYS,
            retries=2,
        )
        return replace(config, **overrides)

    def archive(self, bucket: str, **overrides: Any) -> S3Archive:
        return S3Archive.from_config(
            self.archive_config(bucket, **overrides), connect_timeout_s=2.0, read_timeout_s=30.0
        )
