"""Least privilege, enforced by a real server: the bucket policy of ``config/rgw/bucket-policy.json``
applied on the throw-away Ceph RADOS Gateway (``tests.rgw``), with a station and an API node
each logging in as its own RGW user.

moto checks no policy, so these run on RGW only. The bucket has Object Lock but no default
rule: the station sets COMPLIANCE retention on originals itself, and manifests, ledger entries
and keys carry no retention, so a refused delete of one of them is the policy's doing alone.
What the tests show:

- the station ingests (and its ``verify`` passes) with nothing more than the policy grants;
- a station cannot delete anything (DeleteObject, also with a versionId and the
  governance-bypass header) nor lift a legal hold;
- a station *can* PUT to an existing original's key: no S3 policy action tells a create from
  an overwrite, and RGW 16 ignores ``If-None-Match``. The PUT makes a new current version; the
  original version stays, bytes and COMPLIANCE retention unchanged, and ``verify`` reports the
  current version as not the recording;
- an API node cannot write a station's ledger or key, nor create recordings, nor delete; it
  can append to its own ``ledger/<api-id>/``, register ``keys/<api-id>.pub``, read originals,
  and set or lift legal holds and extend retention on originals (its supervisor actions).
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import S3Error

from evidence_daemon.archive import keys
from evidence_daemon.archive.s3 import S3Archive
from evidence_daemon.errors import StorageError

from . import rgw
from .faultlog import FaultLog
from .helpers import run_cli_process, write_config
from .s3server import S3TestServer, legal_hold_on

pytestmark = [pytest.mark.s3, pytest.mark.slow]

LEAST_PRIVILEGE = "least privilege (RGW)"
POLICY_TEMPLATE = Path(__file__).resolve().parent.parent / "config" / "rgw" / "bucket-policy.json"
# The names the shipped policy is written for (README: replace them with yours).
TEMPLATE_BUCKET, TEMPLATE_STATION, TEMPLATE_API = "evidence", "dock-town-a", "api-1"


def render_policy(bucket: str, station: str, api: str) -> str:
    """The shipped policy with the bucket and user names of one installation filled in."""
    text = POLICY_TEMPLATE.read_text(encoding="utf-8")
    for old, new in ((f"arn:aws:s3:::{TEMPLATE_BUCKET}", f"arn:aws:s3:::{bucket}"),
                     (TEMPLATE_STATION, station), (TEMPLATE_API, api)):
        text = text.replace(old, new)
    json.loads(text)  # still a policy
    return text


def test_the_shipped_policy_names_only_the_template_principals() -> None:
    policy = json.loads(POLICY_TEMPLATE.read_text(encoding="utf-8"))
    principals = {p for s in policy["Statement"] for p in s["Principal"]["AWS"]}
    assert principals == {f"arn:aws:iam:::user/{TEMPLATE_STATION}",
                          f"arn:aws:iam:::user/{TEMPLATE_API}"}
    allowed = {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    assert not [a for a in allowed if "Delete" in a or "Acl" in a or a.endswith("*")]
    denied = {s["Principal"]["AWS"][0]: set(s["Action"])
              for s in policy["Statement"] if s["Effect"] == "Deny"}
    # RGW falls back to object ACLs where no statement matches, and an object's uploader owns
    # it: only an explicit Deny keeps a station from lifting a hold or sharing its objects.
    for principal, actions in denied.items():
        assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl"} <= actions
    assert "s3:PutObjectLegalHold" in denied[f"arn:aws:iam:::user/{TEMPLATE_STATION}"]


@dataclass(frozen=True)
class Installation:
    """A bucket with the shipped policy, a station that ingested one file, an API node."""

    owner: S3TestServer
    bucket: str
    station: rgw.RgwUser
    api: rgw.RgwUser
    config: Path  # the station's configuration
    data: bytes
    written: dict[str, str]  # kind -> key the station wrote

    def server_as(self, user: rgw.RgwUser) -> S3TestServer:
        return S3TestServer(endpoint=self.owner.endpoint, access_key=user.access_key,
                            secret_key=user.secret_key, secure=False, kind="rgw")

    def client_as(self, user: rgw.RgwUser) -> Minio:
        return self.server_as(user).client()

    def archive_as(self, user: rgw.RgwUser) -> S3Archive:
        return self.server_as(user).archive(self.bucket, retries=1)


@pytest.fixture(scope="module")
def installed(rgw_cluster: rgw.RgwCluster, s3_rgw_server: S3TestServer,
              tmp_path_factory: pytest.TempPathFactory) -> Installation:
    return install(rgw_cluster, s3_rgw_server, tmp_path_factory.mktemp("least-privilege"))


def install(rgw_cluster: rgw.RgwCluster, s3_rgw_server: S3TestServer,
            root: Path) -> Installation:
    suffix = uuid.uuid4().hex[:8]
    station = rgw.create_user(rgw_cluster, f"dock-{suffix}")
    api = rgw.create_user(rgw_cluster, f"api-{suffix}")
    bucket = s3_rgw_server.make_bucket(object_lock=True)
    s3_rgw_server.client().set_bucket_policy(bucket, render_policy(bucket, station.uid, api.uid))

    card = root / "card"
    card.mkdir()
    data = uuid.uuid4().bytes * 20_000
    (card / "clip.mp4").write_bytes(data)
    settings = {**s3_rgw_server.archive_settings(bucket), "access_key": station.access_key,
                "secret_key": station.secret_key, "require_object_lock": True}
    config = write_config(root, station_id=station.uid, archive=settings,
                          extra="[ingest]\nprobe = false\n")
    result = run_cli_process("--config", str(config), "ingest", str(card))
    assert result.returncode == 0, result.stdout + result.stderr
    sha256 = hashlib.sha256(data).hexdigest()
    installation = Installation(s3_rgw_server, bucket, station, api, config, data, {})
    ledger = sorted(installation.archive_as(station).list_keys(keys.ledger_prefix(station.uid)))
    installation.written.update({
        "original": keys.original_key(sha256, "mp4"),
        "manifest": keys.manifest_key(sha256),
        "ledger entry": ledger[-1],
        "station key": keys.public_key_key(station.uid),
    })
    return installation


def _refused(operation: object) -> S3Error:
    assert callable(operation)
    with pytest.raises(S3Error) as refused:
        operation()
    assert (refused.value.code, refused.value.response.status) == ("AccessDenied", 403)
    return refused.value


def _delete(client: Minio, bucket: str, key: str, version_id: str | None, *,
            bypass_governance: bool = False) -> None:
    # minio-py's remove_object cannot send the bypass header; this is the request it makes.
    headers: dict[str, str | list[str] | tuple[str]] | None = (
        {"x-amz-bypass-governance-retention": "true"} if bypass_governance else None)
    query: dict[str, str | list[str] | tuple[str]] | None = (
        {"versionId": version_id} if version_id else None)
    client._execute("DELETE", bucket, object_name=key, headers=headers, query_params=query)


def _versions(client: Minio, bucket: str, key: str) -> list[str]:
    return [str(item.version_id) for item in client.list_objects(
        bucket, prefix=key, include_version=True) if item.object_name == key]


def _read(client: Minio, bucket: str, key: str, version_id: str | None = None) -> bytes:
    response = client.get_object(bucket, key, version_id=version_id)
    try:
        return bytes(response.read())
    finally:
        response.close()
        response.release_conn()


def test_the_station_ingests_and_verifies_with_only_what_the_policy_grants(
        installed: Installation) -> None:
    station = installed.client_as(installed.station)
    original = installed.written["original"]
    info = station.stat_object(installed.bucket, original)
    assert info.metadata is not None
    # No default rule on this bucket: the station set this itself (s3:PutObjectRetention).
    assert info.metadata.get("x-amz-object-lock-mode") == COMPLIANCE
    verify = run_cli_process("--config", str(installed.config), "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("kind", ["original", "manifest", "ledger entry", "station key"])
def test_a_station_cannot_delete_what_it_stored(installed: Installation, kind: str,
                                               fault_log: FaultLog) -> None:
    key = installed.written[kind]
    station = installed.client_as(installed.station)
    version = str(station.stat_object(installed.bucket, key).version_id)
    before = _read(station, installed.bucket, key, version)
    codes: list[str] = []
    for version_id, bypass in ((None, False), (version, False), (version, True)):
        codes.append(str(_refused(lambda: _delete(station, installed.bucket, key, version_id,
                                                  bypass_governance=bypass)).code))
    # Not even a delete marker: the current version is still the one stored.
    assert str(station.stat_object(installed.bucket, key).version_id) == version
    assert _read(station, installed.bucket, key, version) == before
    fault_log(LEAST_PRIVILEGE, f"station deletes a {kind} it stored",
              injected_by="station's credentials: DELETE, DELETE ?versionId, and with "
                          "x-amz-bypass-governance-retention",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"RGW refused all three: {' / '.join(codes)} (403, bucket policy); "
                      "no delete marker, bytes unchanged")


def test_a_station_cannot_lift_a_legal_hold_nor_share_an_original(
        installed: Installation, fault_log: FaultLog) -> None:
    """The station owns what it uploaded (RGW 16 object ownership), and an owner passes the ACL
    check: without the policy's explicit Deny both of these went through."""
    original = installed.written["original"]
    api_archive = installed.archive_as(installed.api)
    station = installed.client_as(installed.station)
    assert api_archive.set_legal_hold(original, True)
    try:
        refused = _refused(lambda: station.disable_object_legal_hold(installed.bucket, original))
        assert legal_hold_on(installed.client_as(installed.api), installed.bucket, original)
    finally:
        assert api_archive.set_legal_hold(original, False)
    fault_log(LEAST_PRIVILEGE, "station lifts a supervisor's legal hold on an original",
              injected_by="station's credentials: PUT ?legal-hold OFF",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"RGW refused: {refused.code} (403, the policy's Deny); the hold stayed on")

    shared = _refused(lambda: station._execute(
        "PUT", installed.bucket, object_name=original, query_params={"acl": ""},
        headers={"x-amz-acl": "public-read"}))
    anonymous = Minio(installed.owner.endpoint, secure=False, region="us-east-1")
    with pytest.raises(S3Error) as unread:
        _read(anonymous, installed.bucket, original)
    assert unread.value.code == "AccessDenied"
    fault_log(LEAST_PRIVILEGE, "station makes an original public (object ACL public-read)",
              injected_by="station's credentials: PUT ?acl with x-amz-acl: public-read",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"RGW refused: {shared.code} (403, the policy's Deny); an anonymous GET "
                      "is still refused")


def test_a_station_overwrite_of_an_original_makes_a_new_version_and_the_original_stays(
        rgw_cluster: rgw.RgwCluster, s3_rgw_server: S3TestServer, tmp_path: Path,
        fault_log: FaultLog) -> None:
    """An S3 bucket policy cannot refuse it (s3:PutObject is create and overwrite alike, and
    RGW 16 ignores If-None-Match): the station's code never does it, Object Lock keeps the
    original version, and ``verify`` tells the current version is not the recording."""
    installed = install(rgw_cluster, s3_rgw_server, tmp_path)  # its own: this one is spoilt
    original = installed.written["original"]
    station = installed.client_as(installed.station)
    first = station.stat_object(installed.bucket, original)
    assert first.metadata is not None
    retain_until = first.metadata.get("x-amz-object-lock-retain-until-date")
    forged = b"not the recording" * 1000
    result = station._put_object(installed.bucket, original, forged, {"If-None-Match": "*"})
    assert result.version_id and result.version_id != first.version_id  # accepted, as a new version

    assert _read(station, installed.bucket, original) == forged
    assert _read(station, installed.bucket, original, first.version_id) == installed.data
    kept = station.stat_object(installed.bucket, original, version_id=first.version_id)
    assert kept.metadata is not None
    assert (kept.metadata.get("x-amz-object-lock-mode"),
            kept.metadata.get("x-amz-object-lock-retain-until-date")) == (COMPLIANCE, retain_until)
    _refused(lambda: _delete(station, installed.bucket, original, first.version_id))
    assert _versions(installed.owner.client(), installed.bucket, original)[-1] == first.version_id

    verify = run_cli_process("--config", str(installed.config), "verify")
    assert verify.returncode == 7, verify.stdout
    assert "content changed" in verify.stdout
    fault_log(LEAST_PRIVILEGE, "station PUTs other bytes to an existing original's key",
              injected_by="station's credentials: PUT with If-None-Match: * to the original key",
              files_lost=0, wrongly_archived=0, duplicates=0, exit_code=verify.returncode,
              message="RGW accepted it as a new current version (no policy can refuse an "
                      "overwrite; RGW 16 ignores If-None-Match); the original version kept its "
                      "bytes and COMPLIANCE retention, its delete was refused, and verify "
                      f"reported: {_first_failure(verify.stdout)}")


def _first_failure(output: str) -> str:
    return next(line.strip() for line in output.splitlines() if line.startswith("FAIL"))


@pytest.mark.parametrize("target", ["station ledger", "station key", "new writer key",
                                    "recording"])
def test_an_api_node_cannot_write_a_stations_ledger_or_keys(
        installed: Installation, target: str, fault_log: FaultLog) -> None:
    station_ledger = keys.ledger_prefix(installed.station.uid)
    entries = sorted(installed.archive_as(installed.station).list_keys(station_ledger))
    key = {
        # The next entry of the station's chain, forged by the API node.
        "station ledger": keys.ledger_key(installed.station.uid, len(entries) + 1),
        "station key": keys.public_key_key(installed.station.uid),
        "new writer key": keys.public_key_key(f"rogue-{uuid.uuid4().hex[:6]}"),
        "recording": keys.original_key(hashlib.sha256(b"forged").hexdigest(), "mp4"),
    }[target]
    api = installed.client_as(installed.api)
    refused = _refused(lambda: api.put_object(installed.bucket, key, io.BytesIO(b"forged"), 6))
    # The station still sees exactly its own chain (and key).
    assert sorted(installed.archive_as(installed.station).list_keys(station_ledger)) == entries
    station_key = keys.public_key_key(installed.station.uid)
    assert len(_versions(installed.owner.client(), installed.bucket,
                         station_key)) == 1
    # Through the product's own code: refused by the server, or (an existing key) by put_bytes.
    with pytest.raises(StorageError, match="AccessDenied|already exists"):
        installed.archive_as(installed.api).put_bytes(key, b"forged")
    fault_log(LEAST_PRIVILEGE, f"API node writes a {target} ({key.split('/')[0]}/)",
              injected_by="API node's credentials: PUT (and the archive's put_bytes)",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"RGW refused: {refused.code} (403, bucket policy); the station's chain "
                      "and key unchanged")


def test_an_api_node_cannot_delete(installed: Installation, fault_log: FaultLog) -> None:
    api = installed.client_as(installed.api)
    codes = []
    for kind in ("original", "ledger entry"):
        key = installed.written[kind]
        version = str(api.stat_object(installed.bucket, key).version_id)
        for version_id in (None, version):
            codes.append(_refused(lambda: _delete(api, installed.bucket, key, version_id)).code)
        assert str(api.stat_object(installed.bucket, key).version_id) == version
    fault_log(LEAST_PRIVILEGE, "API node deletes an original or a station's ledger entry",
              injected_by="API node's credentials: DELETE and DELETE ?versionId",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"RGW refused all {len(codes)}: {codes[0]} (403, bucket policy)")


def test_an_api_node_appends_its_own_ledger_and_acts_on_originals(
        installed: Installation) -> None:
    archive = installed.archive_as(installed.api)
    archive.check()
    api_id = installed.api.uid
    archive.put_bytes(keys.public_key_key(api_id), b"-----BEGIN PUBLIC KEY-----\n",
                      content_type="application/x-pem-file")
    archive.put_bytes(keys.ledger_key(api_id, 1), b'{"seq":1}')
    archive.put_bytes(keys.ledger_key(api_id, 2), b'{"seq":2}')
    assert list(archive.list_keys(keys.ledger_prefix(api_id))) == [
        keys.ledger_key(api_id, 1), keys.ledger_key(api_id, 2)]

    original = installed.written["original"]
    assert b"".join(archive.iter_chunks(original, offset=10, length=100)) == \
        installed.data[10:110]
    assert archive.get_bytes(installed.written["manifest"])
    assert archive.set_legal_hold(original, True)
    assert archive.set_legal_hold(original, False)
    stat = archive.stat(original)
    assert stat is not None and stat.retain_until is not None
    until = datetime.fromisoformat(stat.retain_until) + timedelta(days=1)
    assert archive.extend_retention(original, until) == until.isoformat()
    # Holds and retention on originals only: not on what a station signed.
    with pytest.raises(StorageError, match="AccessDenied"):
        archive.set_legal_hold(installed.written["ledger entry"], True)
