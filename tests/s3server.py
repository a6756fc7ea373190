"""S3 HTTP servers for tests: moto's standalone server on 127.0.0.1, in a thread, and how to
reach any test server (moto, the Ceph RADOS Gateway of ``tests.rgw``, or a real MinIO).

moto speaks the S3 wire protocol well enough for buckets, metadata, multipart, listing and
Object Lock configuration, but it does not verify checksums or signatures and is loose about
retention (see FACTS.md). Tests that depend on those run on RGW, which enforces Object Lock
and checks signed payloads, or on a real MinIO through ``EVIDENCE_TEST_S3_ENDPOINT`` (the
fixtures in ``s3_fixtures``). Keep test data small: moto holds everything in memory.

Plain helpers only, so test modules can import them without importing the fixture plugin.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig
from moto.server import ThreadedMotoServer

from evidence_daemon.archive.s3 import S3Archive
from evidence_daemon.config import ArchiveConfig

MOTO_ACCESS_KEY = "testing"
MOTO_SECRET_KEY = "testing-secret"  # moto checks no signature; any value works

# Locked test objects outlive the test on a real server; keep that as short as S3 allows.
TEST_RETENTION_DAYS = 1
TEST_PART_SIZE_MIB = 5

MakeBucket = Callable[..., str]
ServerKind = Literal["moto", "rgw", "external"]


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


def legal_hold_on(client: Minio, bucket: str, key: str, version_id: str | None = None) -> bool:
    """Whether a legal hold is on. A version that never had one is answered differently:
    MinIO NoSuchObjectLockConfiguration (the SDK says False), Ceph RGW 16
    ObjectLockConfigurationNotFoundError (the SDK raises)."""
    try:
        return bool(client.is_object_legal_hold_enabled(bucket, key, version_id=version_id))
    except S3Error as exc:
        if exc.code == "ObjectLockConfigurationNotFoundError":
            return False
        raise


def unique_bucket_name() -> str:
    return f"evidence-test-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class S3TestServer:
    """Where the test S3 server is and how to log in."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool
    kind: ServerKind
    region: str = "us-east-1"
    ca_file: Path | None = None  # the certificate to trust over TLS, when not a public one

    @property
    def is_moto(self) -> bool:
        return self.kind == "moto"

    def client(self) -> Minio:
        http_client = None
        if self.ca_file is not None:
            http_client = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(self.ca_file))
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            region=self.region,
            http_client=http_client,
        )

    def make_bucket(self, *, object_lock: bool = True,
                    default_retention_days: int | None = None) -> str:
        """A fresh bucket with a unique name; its name."""
        name = unique_bucket_name()
        client = self.client()
        client.make_bucket(name, object_lock=object_lock)
        if default_retention_days is not None:
            client.set_object_lock_config(
                name, ObjectLockConfig(COMPLIANCE, default_retention_days, DAYS)
            )
        return name

    def archive_settings(self, bucket: str) -> dict[str, Any]:
        """The ``[archive]`` table of a station configuration using this server."""
        settings: dict[str, Any] = {
            "backend": "s3", "endpoint": self.endpoint, "bucket": bucket,
            "access_key": self.access_key, "secret_key": self.secret_key,
            "secure": self.secure, "part_size_mib": TEST_PART_SIZE_MIB,
            "retention_days": TEST_RETENTION_DAYS,
        }
        if self.ca_file is not None:
            settings["ca_file"] = str(self.ca_file)
        return settings

    def archive_config(self, bucket: str, **overrides: Any) -> ArchiveConfig:
        config = ArchiveConfig(
            backend="s3",
            endpoint=self.endpoint,
            bucket=bucket,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            ca_file=str(self.ca_file) if self.ca_file is not None else "",
            region=self.region,
            part_size_mib=TEST_PART_SIZE_MIB,
            retention_days=TEST_RETENTION_DAYS,
            retries=2,
        )
        return config.model_copy(update=overrides)

    def archive(self, bucket: str, **overrides: Any) -> S3Archive:
        return S3Archive.from_config(
            self.archive_config(bucket, **overrides), connect_timeout_s=2.0, read_timeout_s=30.0
        )
