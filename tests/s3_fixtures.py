"""Pytest fixtures for the S3 archive: every S3 test runs on moto and on the Ceph RADOS Gateway.

``s3_server`` is parametrized: ``[moto]`` is moto's in-process server (fast, but it stores
whatever it is told), ``[rgw]`` a throw-away single-node Ceph cluster with RGW (``tests.rgw``),
a real S3 server that enforces Object Lock and checks signed payloads. The cluster is started
once per session, only when a selected test needs it, and stopped at the end. Without the Ceph
binaries the ``[rgw]`` tests skip and say which packages to install;
``EVIDENCE_TEST_RGW=0`` leaves them out on purpose (they are then skipped, not failed).

A test that can only run on moto (it relies on a moto quirk) carries
``@pytest.mark.moto_only("why")`` and is skipped on every other server with that reason.

``EVIDENCE_TEST_S3_ENDPOINT=host:port`` (with ``EVIDENCE_TEST_S3_ACCESS_KEY``,
``EVIDENCE_TEST_S3_SECRET_KEY`` and ``EVIDENCE_TEST_S3_SECURE=1`` for TLS) replaces moto by that
server (a real MinIO), as ``[minio]``. They are read at import time, because an autouse
fixture removes every ``EVIDENCE_*`` variable before each test. Each test gets a fresh bucket
with a unique name; on a real server those buckets (and their locked objects, 1 day) are left
behind.

Load with ``pytest_plugins = ["tests.s3_fixtures"]``; import helpers from ``tests.s3server``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence_daemon.archive.s3 import S3Archive

from . import rgw
from .s3server import (
    MOTO_ACCESS_KEY,
    MOTO_SECRET_KEY,
    MakeBucket,
    S3TestServer,
    moto_s3_server,
)

TEST_S3_ENDPOINT = os.environ.get("EVIDENCE_TEST_S3_ENDPOINT", "")
TEST_S3_ACCESS_KEY = os.environ.get("EVIDENCE_TEST_S3_ACCESS_KEY", "")
TEST_S3_SECRET_KEY = os.environ.get("EVIDENCE_TEST_S3_SECRET_KEY", "")
TEST_S3_SECURE = os.environ.get("EVIDENCE_TEST_S3_SECURE", "").lower() in ("1", "true", "yes", "on")
TEST_RGW = os.environ.get("EVIDENCE_TEST_RGW", "1").lower() not in ("0", "false", "no", "off")

# The parameter ids of ``s3_server``: the default server, then RGW.
DEFAULT_SERVER = "minio" if TEST_S3_ENDPOINT else "moto"
S3_SERVERS = (DEFAULT_SERVER, "rgw")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        server = callspec.params.get("s3_server") if callspec is not None else None
        if server is not None and server != "moto":
            marker = item.get_closest_marker("moto_only")
            if marker is not None:
                reason = marker.args[0] if marker.args else "relies on moto's behaviour"
                item.add_marker(pytest.mark.skip(reason=f"moto only: {reason}"))
        if server == "rgw" or "rgw_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.rgw)


@pytest.fixture(scope="session")
def s3_default_server() -> Iterator[S3TestServer]:
    """moto, or the real server named by ``EVIDENCE_TEST_S3_ENDPOINT``."""
    if TEST_S3_ENDPOINT:
        yield S3TestServer(
            endpoint=TEST_S3_ENDPOINT,
            access_key=TEST_S3_ACCESS_KEY,
            secret_key=TEST_S3_SECRET_KEY,
            secure=TEST_S3_SECURE,
            kind="external",
        )
        return
    with moto_s3_server() as endpoint:
        yield S3TestServer(
            endpoint=endpoint,
            access_key=MOTO_ACCESS_KEY,
            secret_key=MOTO_SECRET_KEY,
            secure=False,
            kind="moto",
        )


@pytest.fixture(scope="session")
def rgw_cluster() -> Iterator[rgw.RgwCluster]:
    """The session's Ceph cluster with RGW (started on first use)."""
    if not TEST_RGW:
        pytest.skip("EVIDENCE_TEST_RGW=0: the RGW tests are switched off")
    reason = rgw.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    # Not under pytest's basetemp: that is kept after the run, and the OSD's block file with it.
    with tempfile.TemporaryDirectory(prefix="evidence-rgw-") as directory:
        with rgw.rgw_cluster(Path(directory)) as cluster:
            yield cluster


@pytest.fixture(scope="session")
def s3_rgw_server(rgw_cluster: rgw.RgwCluster) -> S3TestServer:
    """RGW over plain HTTP (minio-py signs each payload's SHA-256)."""
    return S3TestServer(
        endpoint=rgw_cluster.endpoint,
        access_key=rgw_cluster.access_key,
        secret_key=rgw_cluster.secret_key,
        secure=False,
        kind="rgw",
    )


@pytest.fixture(scope="session")
def s3_rgw_tls_server(rgw_cluster: rgw.RgwCluster) -> S3TestServer:
    """RGW over HTTPS with its self-signed certificate (minio-py sends UNSIGNED-PAYLOAD and
    Content-MD5 there)."""
    return S3TestServer(
        endpoint=rgw_cluster.tls_endpoint,
        access_key=rgw_cluster.access_key,
        secret_key=rgw_cluster.secret_key,
        secure=True,
        kind="rgw",
        ca_file=rgw_cluster.ca_file,
    )


def server_of_kind(request: pytest.FixtureRequest, kind: str) -> S3TestServer:
    """The session's server for a parameter id of ``S3_SERVERS``, for tests that choose a
    backend by their own parameter (a parametrized fixture cannot be requested dynamically)."""
    name = "s3_rgw_server" if kind == "rgw" else "s3_default_server"
    server: S3TestServer = request.getfixturevalue(name)
    return server


@pytest.fixture(scope="session", params=S3_SERVERS)
def s3_server(request: pytest.FixtureRequest) -> S3TestServer:
    return server_of_kind(request, request.param)


@pytest.fixture
def s3_make_bucket(s3_server: S3TestServer) -> MakeBucket:
    """``make(object_lock=True, default_retention_days=None) -> bucket name``."""
    return s3_server.make_bucket


@pytest.fixture
def s3_bucket(s3_make_bucket: MakeBucket) -> str:
    """A fresh bucket with Object Lock enabled and no default retention rule."""
    return s3_make_bucket(object_lock=True)


@pytest.fixture
def s3_archive(s3_server: S3TestServer, s3_bucket: str) -> S3Archive:
    return s3_server.archive(s3_bucket)
