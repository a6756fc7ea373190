"""Object Lock, integrity and TLS proven on a server that enforces them: the Ceph RADOS Gateway.

moto lets a COMPLIANCE version be deleted and its retention shortened, and checks no payload;
these tests run only where the answer means something (the throw-away RGW cluster of
``tests.rgw``). What they show, for what the product itself wrote (original, manifest, ledger
entry, station key) in a bucket set up as the README recommends (Object Lock with a COMPLIANCE
default rule):

- a COMPLIANCE version cannot be deleted, also not with the governance-bypass header;
- its retention cannot be shortened nor turned into GOVERNANCE, and can be extended;
- a legal hold alone blocks deletion, until lifted;
- a station that requires Object Lock refuses a bucket without it; no station accepts a bucket
  whose versioning is suspended;
- cleaning failed uploads needs no delete that Object Lock forbids;
- a payload corrupted in flight is refused by the server and never marked archived;
- HTTPS with the station trusting a self-signed certificate (``archive.ca_file``) works.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE, ENABLED, GOVERNANCE
from minio.error import S3Error
from minio.retention import Retention
from minio.versioningconfig import SUSPENDED, VersioningConfig

from evidence_daemon.archive import keys
from evidence_daemon.archive.s3 import S3Archive
from evidence_daemon.errors import IntegrityError, StorageError

from .faultcheck import hashes_of, measure
from .faultlog import FaultLog
from .helpers import run_cli_process, write_config
from .s3server import S3TestServer, legal_hold_on
from .tcpfault import FaultyRelay

pytestmark = [pytest.mark.s3, pytest.mark.slow]

RGW = "real object store (RGW)"
STATION = "locked-dock-1"
KINDS = ("original", "manifest", "ledger entry", "station key")
MIB = 1024 * 1024


@dataclass(frozen=True)
class LockedStation:
    server: S3TestServer
    bucket: str
    archive: S3Archive
    keys: dict[str, str]  # kind -> object key the product wrote


@pytest.fixture(scope="module")
def locked(s3_rgw_server: S3TestServer, tmp_path_factory: pytest.TempPathFactory) -> LockedStation:
    """One ingest into a bucket with Object Lock and a COMPLIANCE default rule (1 day)."""
    server = s3_rgw_server
    bucket = server.make_bucket(object_lock=True, default_retention_days=1)
    root = tmp_path_factory.mktemp("locked")
    card = root / "card"
    card.mkdir()
    data = uuid.uuid4().bytes * 20_000
    (card / "clip.mp4").write_bytes(data)
    config = write_config(root, station_id=STATION, archive=server.archive_settings(bucket),
                          extra="[ingest]\nprobe = false\n")
    result = run_cli_process("--config", str(config), "ingest", str(card))
    assert result.returncode == 0, result.stdout + result.stderr
    sha256 = hashlib.sha256(data).hexdigest()
    archive = server.archive(bucket)
    ledger = sorted(archive.list_keys(f"ledger/{STATION}/"))
    written = {
        "original": keys.original_key(sha256, "mp4"),
        "manifest": keys.manifest_key(sha256),
        "ledger entry": ledger[0],
        "station key": keys.public_key_key(STATION),
    }
    for key in written.values():
        assert archive.stat(key) is not None, key
    return LockedStation(server, bucket, archive, written)


def _delete_version(client: Minio, bucket: str, key: str, version_id: str, *,
                    bypass_governance: bool = False) -> None:
    # minio-py's remove_object cannot send the bypass header; this is the request it makes.
    headers: dict[str, str | list[str] | tuple[str]] | None = (
        {"x-amz-bypass-governance-retention": "true"} if bypass_governance else None)
    client._execute("DELETE", bucket, object_name=key, headers=headers,
                    query_params={"versionId": version_id})


def _read_version(client: Minio, bucket: str, key: str, version_id: str) -> bytes:
    response = client.get_object(bucket, key, version_id=version_id)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


def _lock_headers(client: Minio, bucket: str, key: str) -> tuple[str, str, str]:
    info = client.stat_object(bucket, key)
    assert info.metadata is not None and info.version_id
    return (str(info.version_id), str(info.metadata.get("x-amz-object-lock-mode")),
            str(info.metadata.get("x-amz-object-lock-retain-until-date")))


@pytest.mark.parametrize("kind", KINDS)
def test_a_compliance_version_cannot_be_deleted(locked: LockedStation, kind: str,
                                                fault_log: FaultLog) -> None:
    key = locked.keys[kind]
    client = locked.server.client()
    version, mode, _ = _lock_headers(client, locked.bucket, key)
    assert mode == COMPLIANCE
    before = _read_version(client, locked.bucket, key, version)
    refusals = []
    for bypass in (False, True):
        with pytest.raises(S3Error) as refused:
            _delete_version(client, locked.bucket, key, version, bypass_governance=bypass)
        assert (refused.value.code, refused.value.response.status) == ("AccessDenied", 403)
        refusals.append(str(refused.value.code))
    assert _read_version(client, locked.bucket, key, version) == before
    fault_log(RGW, f"delete of the COMPLIANCE version of a {kind}, also with governance bypass",
              injected_by="DELETE ?versionId (and x-amz-bypass-governance-retention: true)",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"RGW refused both deletes: {' / '.join(refusals)} (403); bytes unchanged")


@pytest.mark.parametrize("kind", KINDS)
def test_retention_cannot_be_shortened_or_made_governance_but_can_be_extended(
        locked: LockedStation, kind: str, fault_log: FaultLog) -> None:
    key = locked.keys[kind]
    client = locked.server.client()
    version, _, header = _lock_headers(client, locked.bucket, key)
    # RGW states the date to the nanosecond, which minio-py's get_object_retention cannot
    # parse; the archive reads it itself.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", header), header
    stat = locked.archive.stat(key)
    assert stat is not None and stat.retain_until is not None
    current = datetime.fromisoformat(stat.retain_until)
    assert current.isoformat() == header[:19] + "+00:00"

    for mode, until in ((COMPLIANCE, current - timedelta(hours=1)),
                        (GOVERNANCE, current + timedelta(days=1))):
        with pytest.raises(S3Error) as refused:
            client.set_object_retention(locked.bucket, key, Retention(mode, until),
                                        version_id=version)
        assert refused.value.code == "AccessDenied"
    assert _lock_headers(client, locked.bucket, key)[1:] == (COMPLIANCE, header)

    # The API's "extend retention" is this call: never shorter, and the server agrees.
    extended = locked.archive.extend_retention(key, current + timedelta(days=2))
    assert extended == (current + timedelta(days=2)).isoformat()
    assert locked.archive.extend_retention(key, current) == extended  # never shortened
    after = locked.archive.stat(key)
    assert after is not None and after.retain_until == extended
    fault_log(RGW, f"retention of a {kind} shortened, or turned into GOVERNANCE",
              injected_by="PUT ?retention with an earlier date / GOVERNANCE mode",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message="RGW refused both (403 AccessDenied); extending by 2 days was accepted")


def test_a_legal_hold_alone_blocks_deletion_until_lifted(s3_rgw_server: S3TestServer,
                                                         fault_log: FaultLog) -> None:
    # A bucket with Object Lock but no default rule: a ledger entry has no retention there,
    # so the hold is the only thing protecting it.
    bucket = s3_rgw_server.make_bucket(object_lock=True)
    archive = s3_rgw_server.archive(bucket)
    client = s3_rgw_server.client()
    key = keys.ledger_key("hold-test", 1)
    archive.put_bytes(key, b'{"seq":1}')
    info = client.stat_object(bucket, key)
    assert info.version_id and info.metadata is not None
    assert "x-amz-object-lock-mode" not in info.metadata
    assert archive.set_legal_hold(key, True)
    assert legal_hold_on(client, bucket, key)
    with pytest.raises(S3Error) as refused:
        _delete_version(client, bucket, key, info.version_id, bypass_governance=True)
    assert refused.value.code == "AccessDenied"
    assert archive.get_bytes(key) == b'{"seq":1}'
    # Lifted (the API's supervisor action calls this), the same delete goes through: it was
    # the hold, and nothing else, that refused it.
    assert archive.set_legal_hold(key, False)
    assert not legal_hold_on(client, bucket, key)
    _delete_version(client, bucket, key, info.version_id)
    assert archive.stat(key) is None
    fault_log(RGW, "delete of a version under a legal hold (no retention)",
              injected_by="DELETE ?versionId with governance bypass while the hold is on",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"RGW refused: {refused.value.code} (403); after lifting, deletable")


def test_a_station_requiring_object_lock_refuses_a_bucket_without_it(
        s3_rgw_server: S3TestServer, tmp_path: Path, fault_log: FaultLog) -> None:
    bucket = s3_rgw_server.make_bucket(object_lock=False)
    card = tmp_path / "card"
    card.mkdir()
    (card / "clip.mp4").write_bytes(b"never to be stored unprotected")
    sources = hashes_of([card / "clip.mp4"])
    config = write_config(tmp_path, archive={**s3_rgw_server.archive_settings(bucket),
                                             "require_object_lock": True},
                          extra="[ingest]\nprobe = false\n")
    result = run_cli_process("--config", str(config), "ingest", str(card))
    assert result.returncode != 0
    assert "has no Object Lock" in result.stderr and "require_object_lock" in result.stderr
    assert list(s3_rgw_server.client().list_objects(bucket, recursive=True)) == []
    assert hashes_of([card / "clip.mp4"]) == sources  # the card is untouched
    measured = measure(config, sources)
    assert (measured.archived, measured.wrongly_archived) == (0, 0)
    fault_log(RGW, "bucket without Object Lock, station requires it",
              injected_by="bucket created without Object Lock; require_object_lock = true",
              files_lost=0, wrongly_archived=measured.wrongly_archived, duplicates=0,
              exit_code=result.returncode, message=result.stderr.strip().splitlines()[-1])


def test_a_bucket_with_suspended_versioning_is_refused(
        s3_server: S3TestServer, tmp_path: Path, fault_log: FaultLog) -> None:
    bucket = s3_server.make_bucket(object_lock=False)
    client = s3_server.client()
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    client.set_bucket_versioning(bucket, VersioningConfig(SUSPENDED))
    archive = s3_server.archive(bucket)
    with pytest.raises(StorageError, match="versioning is suspended") as refused:
        archive.check()
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"would replace the null version")
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    key = keys.original_key(sha256, "mp4")
    with pytest.raises(StorageError, match="versioning is suspended"):
        archive.put_original(key, source, sha256=sha256, size_bytes=source.stat().st_size,
                             metadata={})
    assert archive.stat(key) is None
    fault_log("misconfigured archive", "bucket versioning suspended",
              injected_by="PUT ?versioning Enabled, then Suspended, on a bucket without lock",
              files_lost=0, wrongly_archived=0, duplicates=0, message=str(refused.value))


def test_rgw_refuses_to_suspend_versioning_on_a_lock_bucket(s3_rgw_server: S3TestServer) -> None:
    bucket = s3_rgw_server.make_bucket(object_lock=True)
    with pytest.raises(S3Error) as refused:
        s3_rgw_server.client().set_bucket_versioning(bucket, VersioningConfig(SUSPENDED))
    assert refused.value.response.status == 409
    s3_rgw_server.archive(bucket, require_object_lock=True).check()


def test_failed_uploads_are_cleaned_without_a_forbidden_delete(
        s3_rgw_server: S3TestServer, tmp_path: Path) -> None:
    """In a bucket where every new object is locked, a refused multipart upload is aborted
    (by the SDK) and one a killed process left is aborted at the next start: both succeed,
    because an abort removes parts, never an object version."""
    bucket = s3_rgw_server.make_bucket(object_lock=True, default_retention_days=1)
    archive = s3_rgw_server.archive(bucket)
    client = s3_rgw_server.client()
    data = uuid.uuid4().bytes * (11 * MIB // 16)
    source = tmp_path / "clip.mp4"
    source.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # changed after it was hashed
    sha256 = hashlib.sha256(data).hexdigest()
    key = keys.original_key(sha256, "mp4")
    with pytest.raises(IntegrityError, match="nothing was stored"):
        archive.put_original(key, source, sha256=sha256, size_bytes=len(data), metadata={})
    assert archive.stat(key) is None
    assert client._list_multipart_uploads(bucket).uploads == []

    left = keys.original_key("e" * 64, "mp4")
    client._create_multipart_upload(bucket, left, {})
    removed = archive.remove_leftovers(older_than=datetime.now(timezone.utc) + timedelta(hours=1))
    assert [(leftover.kind, leftover.name) for leftover in removed] == [("multipart", left)]
    assert client._list_multipart_uploads(bucket).uploads == []


# -- what travels: a payload corrupted on the wire, and TLS ------------------------------------


@pytest.fixture
def flipping_relay(s3_rgw_server: S3TestServer) -> Iterator[FaultyRelay]:
    relay = FaultyRelay(s3_rgw_server.endpoint)
    yield relay
    relay.close()


@pytest.mark.parametrize("size", [300_000, 7 * MIB], ids=["single-put", "multipart"])
def test_a_payload_corrupted_in_flight_is_refused_and_never_archived(
        s3_rgw_server: S3TestServer, flipping_relay: FaultyRelay, tmp_path: Path, size: int,
        fault_log: FaultLog) -> None:
    marker = b"FLIP-" + uuid.uuid4().hex.encode()
    body = uuid.uuid4().bytes * (size // 16)
    at = size - 1000  # in the last part of a multipart upload
    data = body[:at] + marker + body[at + len(marker):]
    card = tmp_path / "card"
    card.mkdir()
    (card / "clip.mp4").write_bytes(data)
    sources = hashes_of([card / "clip.mp4"])
    bucket = s3_rgw_server.make_bucket(object_lock=True, default_retention_days=1)
    config = write_config(tmp_path, archive={**s3_rgw_server.archive_settings(bucket),
                                             "endpoint": flipping_relay.endpoint, "retries": 2},
                          extra="[ingest]\nprobe = false\n")
    flipping_relay.flip_marker, flipping_relay.flip_times = marker, 100  # every attempt
    first = run_cli_process("--config", str(config), "ingest", str(card))
    assert flipping_relay.flipped >= 1
    assert first.returncode == 6, first.stdout + first.stderr
    assert "XAmzContentSHA256Mismatch" in first.stdout + first.stderr
    original = keys.original_key(hashlib.sha256(data).hexdigest(), "mp4")
    assert s3_rgw_server.archive(bucket).stat(original) is None
    during = measure(config, sources, endpoint=s3_rgw_server.endpoint)
    assert (during.archived, during.wrongly_archived, during.files_lost) == (0, 0, 0)

    flipping_relay.restore()
    final = run_cli_process("--config", str(config), "ingest", str(card))
    assert final.returncode == 0, final.stdout + final.stderr
    measured = measure(config, sources, endpoint=s3_rgw_server.endpoint)
    assert (measured.archived, measured.wrongly_archived, measured.duplicates) == (1, 0, 0)
    assert run_cli_process("--config", str(config), "verify").returncode == 0
    message = [line for line in first.stdout.splitlines() + first.stderr.splitlines()
               if "XAmzContentSHA256Mismatch" in line][0]
    fault_log(RGW, f"one bit flipped in flight in a {'multipart' if size > 5 * MIB else 'single'}"
              " upload (plain HTTP, signed payload)",
              injected_by=f"TCP relay flipping a bit after the station hashed ({flipping_relay.flipped}"
                          " attempts)",
              files_lost=measured.files_lost, wrongly_archived=during.wrongly_archived,
              duplicates=measured.duplicates, exit_code=first.returncode, message=message.strip())


def test_ingest_and_verify_over_https_trusting_a_self_signed_certificate(
        s3_rgw_tls_server: S3TestServer, tmp_path: Path) -> None:
    server = s3_rgw_tls_server
    bucket = server.make_bucket(object_lock=True, default_retention_days=1)
    card = tmp_path / "card"
    card.mkdir()
    (card / "small.mp4").write_bytes(uuid.uuid4().bytes * 10_000)
    (card / "large.mp4").write_bytes(uuid.uuid4().bytes * (7 * MIB // 16))  # multipart
    sources = hashes_of(sorted(card.iterdir()))
    config = write_config(tmp_path, archive=server.archive_settings(bucket),
                          extra="[ingest]\nprobe = false\n")
    assert "ca_file" in config.read_text()
    result = run_cli_process("--config", str(config), "ingest", str(card))
    assert result.returncode == 0, result.stdout + result.stderr
    measured = measure(config, sources)
    assert (measured.archived, measured.wrongly_archived) == (2, 0)
    verify = run_cli_process("--config", str(config), "verify")
    assert verify.returncode == 0, verify.stdout

    # Without the certificate the station trusts only the system's CAs and says why it stops.
    untrusting = S3Archive.from_config(server.archive_config(bucket, ca_file="", retries=3))
    with pytest.raises(StorageError, match="TLS failed.*certificate verify failed"):
        untrusting.check()
