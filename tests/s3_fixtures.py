"""Pytest fixtures for the S3 archive: moto by default, a real MinIO when asked.

``EVIDENCE_TEST_S3_ENDPOINT=host:port`` (with ``EVIDENCE_TEST_S3_ACCESS_KEY``,
``EVIDENCE_TEST_S3_SECRET_KEY`` and ``EVIDENCE_TEST_S3_SECURE=1`` for TLS) runs the same tests
against that server. They are read at import time, because an autouse fixture removes every
``EVIDENCE_*`` variable before each test. Each test gets a fresh bucket with a unique name;
on a real server those buckets (and their locked objects, 1 day) are left behind.

Load with ``pytest_plugins = ["tests.s3_fixtures"]``; import helpers from ``tests.s3server``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from minio.commonconfig import COMPLIANCE
from minio.objectlockconfig import DAYS, ObjectLockConfig

from evidence_daemon.archive.s3 import S3Archive

from .s3server import (
    MOTO_ACCESS_KEY,
    MOTO_SECRET_KEY,
    MakeBucket,
    S3TestServer,
    moto_s3_server,
    unique_bucket_name,
)

TEST_S3_ENDPOINT = os.environ.get("EVIDENCE_TEST_S3_ENDPOINT", "")
TEST_S3_ACCESS_KEY = os.environ.get("EVIDENCE_TEST_S3_ACCESS_KEY", "")
TEST_S3_SECRET_KEY = os.environ.get("EVIDENCE_TEST_S3_SECRET_KEY", "")
TEST_S3_SECURE = os.environ.get("EVIDENCE_TEST_S3_SECURE", "").lower() in ("1", "true", "yes", "on")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3TestServer]:
    if TEST_S3_ENDPOINT:
        yield S3TestServer(
            endpoint=TEST_S3_ENDPOINT,
            access_key=TEST_S3_ACCESS_KEY,
            secret_key=TEST_S3_SECRET_KEY,
            secure=TEST_S3_SECURE,
            is_moto=False,
        )
        return
    with moto_s3_server() as endpoint:
        yield S3TestServer(
            endpoint=endpoint,
            access_key=MOTO_ACCESS_KEY,
            secret_key=MOTO_SECRET_KEY,
            secure=False,
            is_moto=True,
        )


@pytest.fixture
def s3_make_bucket(s3_server: S3TestServer) -> MakeBucket:
    """``make(object_lock=True, default_retention_days=None) -> bucket name``."""

    def make(*, object_lock: bool = True, default_retention_days: int | None = None) -> str:
        name = unique_bucket_name()
        client = s3_server.client()
        client.make_bucket(name, object_lock=object_lock)
        if default_retention_days is not None:
            client.set_object_lock_config(
                name, ObjectLockConfig(COMPLIANCE, default_retention_days, DAYS)
            )
        return name

    return make


@pytest.fixture
def s3_bucket(s3_make_bucket: MakeBucket) -> str:
    """A fresh bucket with Object Lock enabled and no default retention rule."""
    return s3_make_bucket(object_lock=True)


@pytest.fixture
def s3_archive(s3_server: S3TestServer, s3_bucket: str) -> S3Archive:
    return s3_server.archive(s3_bucket)
