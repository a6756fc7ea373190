"""S3Archive against a real S3 HTTP server (moto, or MinIO via EVIDENCE_TEST_S3_ENDPOINT)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import urllib3
from minio.datatypes import Object
from minio.error import S3Error

from evidence_daemon.archive import keys
from evidence_daemon.archive.base import hash_stored
from evidence_daemon.archive.s3 import (
    S3Archive,
    decode_metadata_value,
    encode_metadata_value,
    is_transient,
    parallel_parts,
)
from evidence_daemon.archive.s3.lock import Retention, retention_of, shown
from evidence_daemon.archive.s3.upload import UploadDigests
from evidence_daemon.clock import parse_optional
from evidence_daemon.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectMissingError,
    StorageError,
)

from .s3server import MakeBucket, S3TestServer, unique_bucket_name


MIB = 1024 * 1024


def write_original(directory: Path, data: bytes, name: str = "clip.mp4") -> tuple[Path, str]:
    path = directory / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def store(archive: S3Archive, directory: Path, data: bytes, **metadata: str) -> Any:
    path, sha256 = write_original(directory, data)
    key = keys.original_key(sha256, "mp4")
    return archive.put_original(key, path, sha256=sha256, size_bytes=len(data), metadata=metadata)


def multipart_etag(data: bytes, part_size: int) -> str:
    digests = [hashlib.md5(data[i:i + part_size]).digest() for i in range(0, len(data), part_size)]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 10 * MIB, 12 * MIB + 123],
)
def test_upload_digests_reproduce_s3_etags(size: int) -> None:
    data = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    digests = UploadDigests(size, 5 * MIB)
    for start in range(0, size, 3 * MIB):  # chunks that straddle part boundaries
        digests.update(data[start:start + 3 * MIB])
    expected = hashlib.md5(data).hexdigest() if size <= 5 * MIB else multipart_etag(data, 5 * MIB)
    assert digests.etag() == expected
    assert digests.sha256() == hashlib.sha256(data).hexdigest()


def test_metadata_values_are_percent_encoded_ascii() -> None:
    for value in ("zhen-01", "城关镇 第一中队", "100% sure", " padded "):
        encoded = encode_metadata_value(value)
        assert encoded.isascii() and encoded.isprintable() and encoded.strip() == encoded
        assert decode_metadata_value(encoded) == value
    assert encode_metadata_value("zhen-01") == "zhen-01"


@pytest.mark.parametrize("header", [
    "2026-11-30T20:05:02.161541224Z",  # Ceph RGW: nanoseconds
    "2026-11-30T20:05:02.161Z",  # MinIO, AWS
    "2026-11-30T20:05:02Z",
])
def test_retain_until_headers_of_every_server_are_read(header: str) -> None:
    parsed = parse_optional(header)
    assert parsed is not None
    assert parsed.replace(microsecond=0) == datetime(2026, 11, 30, 20, 5, 2, tzinfo=timezone.utc)


def test_a_retain_until_header_that_is_no_time_counts_as_no_retention() -> None:
    headers = {"x-amz-object-lock-mode": "COMPLIANCE",
               "x-amz-object-lock-retain-until-date": "next Tuesday"}
    info = Object("bucket", "recordings/x/original.mp4", metadata=headers)
    assert retention_of(info) == Retention(mode="COMPLIANCE", retain_until=None)
    assert shown(retention_of(info).retain_until) is None


def _s3_error(code: str, status: int) -> S3Error:
    response = urllib3.HTTPResponse(status=status)
    return S3Error(response, code, "message", None, None, None)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (urllib3.exceptions.NewConnectionError(None, "no"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.ReadTimeoutError(None, "/", "slow"), True),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()), True),
        (urllib3.exceptions.SSLError("certificate verify failed"), False),
        (_s3_error("InternalError", 500), True),
        (_s3_error("SlowDown", 503), True),
        (_s3_error("AccessDenied", 403), False),
        (_s3_error("NoSuchBucket", 404), False),
        (_s3_error("NoSuchKey", 404), False),
        (ValueError("programming error"), False),
    ],
)
def test_transient_errors(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


# -- originals ---------------------------------------------------------------------------


@pytest.mark.s3
def test_small_original_single_put_round_trip(
    s3_server: S3TestServer, s3_archive: S3Archive, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    stored = store(s3_archive, tmp_path, data, station="zhen-01", sm3="ab" * 32)

    sha256 = hashlib.sha256(data).hexdigest()
    assert stored.key == keys.original_key(sha256, "mp4")
    assert stored.size_bytes == len(data)
    assert stored.sha256 == sha256
    assert stored.verified_by == "sha256+etag"
    assert stored.etag == hashlib.md5(data).hexdigest()
    assert stored.version_id  # the bucket has Object Lock, hence versioning
    assert stored.retain_until is not None  # lock without a default rule: set per object

    assert s3_archive.get_bytes(stored.key) == data
    info = s3_archive.stat(stored.key)
    assert info is not None
    assert (info.size_bytes, info.sha256, info.version_id) == (len(data), sha256, stored.version_id)
    assert info.retain_until == stored.retain_until
    raw = s3_server.client().stat_object(s3_archive.bucket, stored.key)
    assert raw.metadata is not None
    assert raw.metadata["x-amz-meta-station"] == "zhen-01"
    assert raw.metadata["x-amz-meta-sm3"] == "ab" * 32
    assert raw.content_type == "video/mp4"


@pytest.mark.s3
def test_multipart_original_verified_by_etag(s3_archive: S3Archive, tmp_path: Path) -> None:
    assert s3_archive.part_size_bytes == 5 * MIB
    data = os.urandom(12 * MIB + 123)
    stored = store(s3_archive, tmp_path, data)

    assert stored.etag == multipart_etag(data, 5 * MIB)
    assert stored.etag.endswith("-3")
    assert stored.verified_by == "sha256+etag"
    assert hash_stored(s3_archive, stored.key) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize(("part_mib", "parallel"), [(5, 3), (6, 3), (8, 2), (12, 1), (5120, 1)])
def test_parallel_parts_keep_the_parts_in_memory_within_the_budget(part_mib: int,
                                                                   parallel: int) -> None:
    assert parallel_parts(part_mib * MIB) == parallel
    assert (parallel + 1) * part_mib <= 24 or parallel == 1


@pytest.mark.s3
def test_parts_of_one_original_go_up_in_parallel_and_are_hashed_in_order(
    s3_archive: S3Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sending overlaps (a file's parts went up one at a time, slower than rclone on one large
    file), while the SHA-256 and the ETag, computed as the SDK reads, still prove the object."""
    sending = 0
    most = 0
    guard = threading.Lock()
    upload_part = s3_archive.client._upload_part

    def counting_upload_part(*args: Any) -> str:
        nonlocal sending, most
        with guard:
            sending += 1
            most = max(most, sending)
        try:
            time.sleep(0.2)  # long enough for the next parts to be read and handed over
            return upload_part(*args)
        finally:
            with guard:
                sending -= 1

    monkeypatch.setattr(s3_archive.client, "_upload_part", counting_upload_part)
    data = os.urandom(20 * MIB + 7)  # five parts of 5 MiB
    stored = store(s3_archive, tmp_path, data)
    assert most == parallel_parts(5 * MIB) == 3
    assert stored.verified_by == "sha256+etag"
    assert stored.etag == multipart_etag(data, 5 * MIB)
    assert hash_stored(s3_archive, stored.key) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.s3
def test_zero_byte_original(s3_archive: S3Archive, tmp_path: Path) -> None:
    stored = store(s3_archive, tmp_path, b"")
    assert stored.size_bytes == 0
    assert stored.verified_by == "sha256+etag"
    assert s3_archive.get_bytes(stored.key) == b""


@pytest.mark.s3
def test_reput_of_the_same_original_writes_nothing(
    s3_server: S3TestServer, s3_archive: S3Archive, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    first = store(s3_archive, tmp_path, data)
    second = store(s3_archive, tmp_path, data)

    assert second.version_id == first.version_id
    assert second.verified_by == "sha256+etag"
    assert second.retain_until == first.retain_until
    versions = list(
        s3_server.client().list_objects(s3_archive.bucket, prefix=first.key, include_version=True)
    )
    assert len(versions) == 1


@pytest.mark.s3
def test_reput_with_another_part_size_is_verified_by_readback(
    s3_server: S3TestServer, s3_bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(11 * MIB)
    first = store(s3_server.archive(s3_bucket, part_size_mib=5), tmp_path, data)
    again = store(s3_server.archive(s3_bucket, part_size_mib=6), tmp_path, data)
    assert first.verified_by == "sha256+etag"
    assert again.verified_by == "readback"
    assert again.version_id == first.version_id


@pytest.mark.s3
def test_other_file_under_a_taken_key_is_refused(s3_archive: S3Archive, tmp_path: Path) -> None:
    first = store(s3_archive, tmp_path, b"first recording")
    other, other_sha256 = write_original(tmp_path, b"another recording", "other.mp4")
    with pytest.raises(ObjectExistsError, match="different object"):
        s3_archive.put_original(
            first.key, other, sha256=other_sha256, size_bytes=other.stat().st_size, metadata={}
        )
    assert s3_archive.get_bytes(first.key) == b"first recording"


@pytest.mark.s3
@pytest.mark.parametrize("size", [1000, 11 * MIB], ids=["single-put", "multipart"])
def test_source_that_no_longer_matches_is_never_published(
    s3_archive: S3Archive, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    path, sha256 = write_original(tmp_path, data)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # changed after it was hashed
    key = keys.original_key(sha256, "mp4")
    with pytest.raises(IntegrityError, match="nothing was stored"):
        s3_archive.put_original(key, path, sha256=sha256, size_bytes=size, metadata={})
    assert s3_archive.stat(key) is None


@pytest.mark.s3
def test_metadata_must_not_contradict_the_recording(s3_archive: S3Archive, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        store(s3_archive, tmp_path, b"x", sha256="0" * 64)
    with pytest.raises(ValueError, match="metadata key"):
        store(s3_archive, tmp_path, b"x", **{"bad key": "v"})


@pytest.mark.s3
def test_non_ascii_metadata_is_stored_percent_encoded(
    s3_server: S3TestServer, s3_archive: S3Archive, tmp_path: Path
) -> None:
    stored = store(s3_archive, tmp_path, b"clip", station="城关镇")
    raw = s3_server.client().stat_object(s3_archive.bucket, stored.key)
    assert raw.metadata is not None
    assert decode_metadata_value(raw.metadata["x-amz-meta-station"]) == "城关镇"


@pytest.mark.s3
def test_verify_readback_mode(s3_server: S3TestServer, s3_bucket: str, tmp_path: Path) -> None:
    archive = s3_server.archive(s3_bucket, verify="readback")
    stored = store(archive, tmp_path, os.urandom(6 * MIB))
    assert stored.verified_by == "readback"


@pytest.mark.s3
def test_sse_s3_is_verified_by_readback(
    s3_server: S3TestServer, s3_bucket: str, tmp_path: Path
) -> None:
    if not s3_server.is_moto:
        pytest.skip("SSE-S3 needs a KMS configured on the server (MinIO: KES; RGW: Vault)")
    archive = s3_server.archive(s3_bucket, sse="s3")
    stored = store(archive, tmp_path, b"encrypted at rest")
    assert stored.verified_by == "readback"
    raw = s3_server.client().stat_object(s3_bucket, stored.key)
    assert raw.metadata is not None
    assert raw.metadata["x-amz-server-side-encryption"] == "AES256"


# -- Object Lock -------------------------------------------------------------------------


@pytest.mark.s3
def test_bucket_default_retention_is_relied_on(
    s3_server: S3TestServer,
    s3_make_bucket: MakeBucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = s3_make_bucket(object_lock=True, default_retention_days=1)
    archive = s3_server.archive(bucket, retention_days=1)
    calls: list[Any] = []
    monkeypatch.setattr(archive.client, "set_object_retention", lambda *a, **k: calls.append(a))
    archive.check()
    stored = store(archive, tmp_path, b"small clip")  # single PUT: needs the checksum header
    assert calls == []
    assert stored.retain_until is not None  # applied by the bucket's rule


@pytest.mark.s3
def test_shorter_bucket_default_is_extended_per_object(
    s3_server: S3TestServer, s3_make_bucket: MakeBucket, tmp_path: Path
) -> None:
    bucket = s3_make_bucket(object_lock=True, default_retention_days=1)
    archive = s3_server.archive(bucket, retention_days=3)
    stored = store(archive, tmp_path, b"small clip")
    info = archive.stat(stored.key)
    assert info is not None and info.retain_until == stored.retain_until
    assert stored.retain_until is not None
    two_days_on = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 2 * 86400))
    assert stored.retain_until > two_days_on


@pytest.mark.s3
def test_missing_retention_is_set_when_the_original_is_docked_again(
    s3_server: S3TestServer, s3_archive: S3Archive, tmp_path: Path
) -> None:
    """A crash between upload and set_object_retention is healed by the next put_original."""
    data = b"uploaded, then the station died"
    path, sha256 = write_original(tmp_path, data)
    key = keys.original_key(sha256, "mp4")
    s3_server.client().put_object(
        s3_archive.bucket, key, io.BytesIO(data), len(data), metadata={"sha256": sha256}
    )
    before = s3_archive.stat(key)
    assert before is not None and before.retain_until is None

    stored = s3_archive.put_original(key, path, sha256=sha256, size_bytes=len(data), metadata={})
    assert stored.retain_until is not None
    after = s3_archive.stat(key)
    assert after is not None and after.retain_until == stored.retain_until


@pytest.mark.s3
def test_bucket_without_object_lock_is_refused_when_required(
    s3_server: S3TestServer, s3_make_bucket: MakeBucket, tmp_path: Path
) -> None:
    bucket = s3_make_bucket(object_lock=False)
    archive = s3_server.archive(bucket, require_object_lock=True)
    with pytest.raises(StorageError, match="no Object Lock"):
        archive.check()
    with pytest.raises(StorageError, match="no Object Lock"):
        store(archive, tmp_path, b"never uploaded")


@pytest.mark.s3
def test_bucket_without_object_lock_is_warned_about_once(
    s3_server: S3TestServer,
    s3_make_bucket: MakeBucket,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    archive = s3_server.archive(s3_make_bucket(object_lock=False))
    with caplog.at_level(logging.WARNING, logger="evidence_daemon.archive.s3"):
        archive.check()
        archive.check()
        stored = store(archive, tmp_path, b"unprotected")
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "no Object Lock" in caplog.records[0].message
    assert stored.retain_until is None
    assert stored.version_id in (None, "null")


# -- tampering ---------------------------------------------------------------------------


@pytest.mark.s3
def test_tampered_object_is_detected(
    s3_server: S3TestServer, s3_make_bucket: MakeBucket, tmp_path: Path
) -> None:
    bucket = s3_make_bucket(object_lock=False)  # only an unlocked bucket lets anyone overwrite
    archive = s3_server.archive(bucket)
    data = os.urandom(100_000)
    stored = store(archive, tmp_path, data)
    sha256 = hashlib.sha256(data).hexdigest()
    tampered = data[:500] + bytes([data[500] ^ 0xFF]) + data[501:]
    s3_server.client().put_object(
        bucket, stored.key, io.BytesIO(tampered), len(tampered), metadata={"sha256": sha256}
    )

    assert hash_stored(archive, stored.key) == (hashlib.sha256(tampered).hexdigest(), len(data))
    source = tmp_path / "clip.mp4"
    for verify in ("stream", "readback"):
        with pytest.raises(IntegrityError, match="does not match"):
            s3_server.archive(bucket, verify=verify).put_original(
                stored.key, source, sha256=sha256, size_bytes=len(data), metadata={}
            )


# -- small objects -----------------------------------------------------------------------


@pytest.mark.s3
def test_put_bytes_is_create_only(s3_archive: S3Archive) -> None:
    key = keys.ledger_key("zhen-01", 1)
    s3_archive.put_bytes(key, b'{"seq":1}')
    with pytest.raises(ObjectExistsError):
        s3_archive.put_bytes(key, b'{"seq":1,"forged":true}')
    assert s3_archive.get_bytes(key) == b'{"seq":1}'
    info = s3_archive.stat(key)
    assert info is not None
    assert info.sha256 == hashlib.sha256(b'{"seq":1}').hexdigest()
    assert info.retain_until is None  # only originals get retention


@pytest.mark.s3
def test_put_bytes_race_is_refused_by_the_server(
    s3_server: S3TestServer, s3_archive: S3Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another writer lands between our stat and our PUT, If-None-Match stops the overwrite
    (MinIO, AWS, moto). Ceph RGW 16 ignores If-None-Match on PUT: there only versioning keeps
    the first writer's bytes (every bucket the station should use has it, with Object Lock)."""
    key = keys.public_key_key("zhen-01")
    s3_archive.put_bytes(key, b"first key", content_type="text/plain")
    monkeypatch.setattr(s3_archive, "_head", lambda key, version_id=None: None)
    if s3_server.kind != "rgw":
        with pytest.raises(ObjectExistsError):
            s3_archive.put_bytes(key, b"second key", content_type="text/plain")
        assert s3_archive.get_bytes(key) == b"first key"
        return
    s3_archive.put_bytes(key, b"second key", content_type="text/plain")
    client = s3_server.client()
    # S3 lists the versions of a key newest first.
    versions = list(client.list_objects(s3_archive.bucket, prefix=key, include_version=True))
    first = client.get_object(s3_archive.bucket, key, version_id=versions[-1].version_id)
    try:
        assert (len(versions), first.read()) == (2, b"first key")
    finally:
        first.close()
        first.release_conn()


@pytest.mark.s3
def test_reads_stat_and_listing(s3_archive: S3Archive) -> None:
    written = {
        keys.ledger_key("w1", 2): b"two",
        keys.ledger_key("w1", 1): b"one",
        keys.ledger_key("w10", 1): b"other writer",
        keys.public_key_key("w1"): b"public key",
    }
    for key, data in written.items():
        s3_archive.put_bytes(key, data)

    assert list(s3_archive.list_keys("ledger/w1/")) == [
        keys.ledger_key("w1", 1),
        keys.ledger_key("w1", 2),
    ]
    assert list(s3_archive.list_keys("ledger/w1")) == sorted(
        key for key in written if key.startswith("ledger/")
    )
    assert list(s3_archive.list_keys("")) == sorted(written)
    assert list(s3_archive.list_keys("recordings/")) == []

    key = keys.ledger_key("w1", 2)
    assert s3_archive.get_bytes(key) == b"two"
    chunks = list(s3_archive.iter_chunks(key, chunk_bytes=2))
    assert b"".join(chunks) == b"two" and all(len(chunk) <= 2 for chunk in chunks)
    info = s3_archive.stat(key)
    assert info is not None and info.size_bytes == 3


@pytest.mark.s3
def test_missing_keys(s3_archive: S3Archive) -> None:
    key = keys.manifest_key("0" * 64)
    assert s3_archive.stat(key) is None
    with pytest.raises(ObjectMissingError, match=key):
        s3_archive.get_bytes(key)
    with pytest.raises(ObjectMissingError, match=key):
        list(s3_archive.iter_chunks(key))


# -- reachability ------------------------------------------------------------------------


@pytest.mark.s3
def test_check_and_location(s3_server: S3TestServer, s3_archive: S3Archive) -> None:
    s3_archive.check()
    assert s3_archive.location == f"s3://{s3_server.endpoint}/{s3_archive.bucket}"


@pytest.mark.s3
def test_missing_bucket_is_named(s3_server: S3TestServer) -> None:
    archive = s3_server.archive("evidence-test-no-such-bucket")
    with pytest.raises(StorageError, match="'evidence-test-no-such-bucket' does not exist"):
        archive.check()


@pytest.mark.s3
def test_ensure_bucket_creates_a_locked_bucket(s3_server: S3TestServer, tmp_path: Path) -> None:
    archive = s3_server.archive(unique_bucket_name(), require_object_lock=True)
    archive.ensure_bucket(object_lock=True)
    archive.ensure_bucket(object_lock=True)  # idempotent
    archive.check()
    assert store(archive, tmp_path, b"x").retain_until is not None


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.s3
def test_unreachable_endpoint_fails_fast_without_leaking_the_secret(
    s3_server: S3TestServer, tmp_path: Path
) -> None:
    endpoint = f"127.0.0.1:{_closed_port()}"
    archive = S3Archive.from_config(
        s3_server.archive_config(
            "evidence", endpoint=endpoint, secret_key="very-secret-key-value", retries=1
        ),
        connect_timeout_s=1.0,
    )
    started = time.monotonic()
    for operation in (
        archive.check,
        lambda: archive.get_bytes("keys/w1.pub"),
        lambda: store(archive, tmp_path, b"clip"),
    ):
        with pytest.raises(StorageError) as caught:
            operation()
        message = str(caught.value)
        assert message.startswith(f"archive s3://{endpoint}/evidence unreachable:"), message
        assert "very-secret-key-value" not in message
    assert time.monotonic() - started < 5


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.s3
def test_timeouts_are_retried_then_reported(
    s3_server: S3TestServer, silent_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    archive = S3Archive.from_config(
        s3_server.archive_config("evidence", endpoint=silent_server, retries=2),
        connect_timeout_s=1.0,
        read_timeout_s=0.3,
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="evidence_daemon.archive.s3"):
        with pytest.raises(StorageError, match="unreachable: check the bucket: timed out after 2"):
            archive.check()
    assert time.monotonic() - started < 5
    assert any("retrying" in record.message for record in caplog.records)


def test_from_config_accepts_a_url_endpoint() -> None:
    from evidence_daemon.config import ArchiveConfig

    archive = S3Archive.from_config(
        ArchiveConfig(backend="s3", endpoint="http://minio.example:9000/", bucket="evidence")
    )
    assert archive.location == "s3://minio.example:9000/evidence"
    assert archive.part_size_bytes == 8 * MIB and archive.attempts == 5


@pytest.mark.s3
@pytest.mark.parametrize("size", [1000, 11 * MIB], ids=["single-put", "multipart"])
def test_mid_upload_failpoint_is_reached_once_before_publishing(
    s3_archive: S3Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = os.urandom(size)
    path, sha256 = write_original(tmp_path, data)
    key = keys.original_key(sha256, "mp4")
    reached: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        "evidence_daemon.archive.s3.upload.failpoint",
        lambda name: reached.append((name, s3_archive.stat(key) is None)),
    )
    s3_archive.put_original(key, path, sha256=sha256, size_bytes=size, metadata={})
    assert reached == [("archive.mid_upload", True)]
