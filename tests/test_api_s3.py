"""Two stations archive into one S3 bucket (the S3 test server); one API node sees both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from .api_fixtures import add_user, make_api_config, start_server, stop_server
from .footage import ffmpeg_available, make_video
from .helpers import run_cli_process, write_config
from .s3server import legal_hold_on

pytestmark = [pytest.mark.s3, pytest.mark.slow,
              pytest.mark.skipif(not ffmpeg_available(), reason="needs ffmpeg")]


def test_one_api_node_sees_every_station_writing_to_the_bucket(tmp_path: Path, s3_server: Any,
                                                               s3_bucket: str) -> None:
    archive = {"backend": "s3", "endpoint": s3_server.endpoint, "bucket": s3_bucket,
               "access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
               "secure": s3_server.secure, "part_size_mib": 5, "retention_days": 1}
    for station, officer, seconds in (("town-a-dock-1", "A1001", 1), ("town-b-dock-1", "B2001", 2)):
        card = tmp_path / station / "card"
        make_video(card / f"DSJ9_{officer}_20261126080000_0001.mp4", seconds=seconds)
        config = write_config(tmp_path / station, station_id=station, archive=archive)
        result = run_cli_process("--config", str(config), "ingest", str(card))
        assert result.returncode == 0, result.stderr
    api_config = make_api_config(tmp_path / "api", tmp_path, archive_settings=archive)
    token = add_user(api_config, "auditor", "auditor")
    process, base_url = start_server(api_config, expect_recordings=2)
    try:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client:
            items = client.get("/api/v1/recordings").json()["items"]
            assert sorted((item["station"], item["officer_id"]) for item in items) == [
                ("town-a-dock-1", "A1001"), ("town-b-dock-1", "B2001")]
            health = client.get("/healthz").json()
            assert health["catalog"]["writers"] == 3  # two stations and this API node
            for item in items:
                content = client.get(f"/api/v1/recordings/{item['id']}/content/original",
                                     params={"reason": "s3 test"}, headers={"Range": "bytes=0-7"})
                assert content.status_code == 206 and content.content[4:8] == b"ftyp"
                custody = client.get(f"/api/v1/recordings/{item['id']}/custody").json()
                assert custody["verified"]
                assert {event["writer"] for event in custody["events"]} == {item["station"], "api-test"}
    finally:
        stop_server(process)


def test_a_supervisors_hold_is_an_object_lock_legal_hold_in_the_bucket(
        tmp_path: Path, s3_server: Any, s3_bucket: str) -> None:
    archive = {"backend": "s3", "endpoint": s3_server.endpoint, "bucket": s3_bucket,
               "access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
               "secure": s3_server.secure, "part_size_mib": 5, "retention_days": 1}
    card = tmp_path / "card"
    make_video(card / "DSJ9_A1001_20261126080000_0001.mp4", seconds=1)
    config = write_config(tmp_path / "station", station_id="town-a-dock-1", archive=archive)
    assert run_cli_process("--config", str(config), "ingest", str(card)).returncode == 0
    api_config = make_api_config(tmp_path / "api", tmp_path, archive_settings=archive)
    token = add_user(api_config, "sup", "supervisor")
    process, base_url = start_server(api_config, expect_recordings=1)
    minio = s3_server.client()
    try:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client:
            (item,) = client.get("/api/v1/recordings").json()["items"]
            key = client.get(f"/api/v1/recordings/{item['id']}").json()["manifest"]["original_key"]
            assert not legal_hold_on(minio, s3_bucket, key)
            placed = client.post(f"/api/v1/recordings/{item['id']}/holds",
                                 json={"reason": "litigation hold", "case_id": "CASE-9"}).json()
            assert placed["details"]["applied"] is True
            assert legal_hold_on(minio, s3_bucket, key)
            released = client.delete(f"/api/v1/recordings/{item['id']}/holds/"
                                     f"{placed['details']['hold_id']}", params={"reason": "closed"})
            assert released.status_code == 200 and released.json()["details"]["applied"] is True
            assert not legal_hold_on(minio, s3_bucket, key)
    finally:
        stop_server(process)


def test_an_evidence_package_exported_from_the_bucket_verifies(tmp_path: Path, s3_server: Any,
                                                               s3_bucket: str) -> None:
    """Export reads originals, proxies and ledger runs from the bucket and writes the API
    node's 'exported' entry into it; the package verifies offline."""
    archive = s3_server.archive_settings(s3_bucket)
    card = tmp_path / "card"
    make_video(card / "DSJ9_A1001_20261126080000_0001.mp4", seconds=1)
    config = write_config(tmp_path / "station", station_id="town-a-dock-1", archive=archive,
                          extra="[media]\nproxy_max_width = 256\nproxy_max_height = 240\n")
    assert run_cli_process("--config", str(config), "ingest", str(card)).returncode == 0
    assert run_cli_process("--config", str(config), "proxies", "--run").returncode == 0
    listed = run_cli_process("--config", str(config), "recordings", "--json")
    recording = json.loads(listed.stdout)[0]["id"]
    api_config = make_api_config(tmp_path / "api", tmp_path, archive_settings=archive)
    package = tmp_path / "out" / "package.zip"
    exported = run_cli_process("--config", str(api_config), "export", recording[:12],
                               "--reason", "court request 2026-117", "--out", str(package))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    checked = run_cli_process("--config", str(api_config), "verify-package", str(package))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.rstrip().endswith(": OK")
    store = s3_server.archive(s3_bucket)
    assert list(store.list_keys("ledger/api-test/"))  # the export is in the bucket's ledger
