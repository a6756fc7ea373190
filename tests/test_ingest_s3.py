"""Ingest into the S3 backend (moto on 127.0.0.1, or a real MinIO via EVIDENCE_TEST_S3_ENDPOINT)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.archive import keys
from evidence_daemon.config import load_config
from evidence_daemon.archive.factory import build_store

from .footage import sample_tree
from .helpers import recordings_json, run_cli, write_config

pytestmark = pytest.mark.s3


def s3_station(tmp_path: Path, server: Any, bucket: str, station_id: str = "s3-station") -> Path:
    return write_config(tmp_path, station_id=station_id, archive={
        "backend": "s3", "endpoint": server.endpoint, "bucket": bucket,
        "access_key": server.access_key, "secret_key": server.secret_key,
        "secure": server.secure, "part_size_mib": 5, "retention_days": 1,
    })


def test_a_card_is_archived_to_s3_with_hashes_retention_and_a_verifiable_ledger(
    tmp_path: Path, s3_server: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "card"
    files = sample_tree(root)
    config = s3_station(tmp_path, s3_server, s3_bucket)
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(root), "--device-id", "DOCK")
    assert code == 0, err
    recordings = {r["id"]: r for r in recordings_json(capsys, config)}
    assert len(recordings) == 7
    store = build_store(load_config(config))
    for role in ("video", "truncated", "empty", "garbage"):
        digest = hashlib.sha256(files[role].read_bytes()).hexdigest()
        recording = recordings[digest]
        assert b"".join(store.iter_chunks(recording["object_key"])) == files[role].read_bytes()
        stored = store.stat(recording["object_key"])
        assert stored is not None and stored.sha256 == digest
        assert stored.retain_until is not None  # bucket without a default rule: set per object
        assert recording["archived_at"] is not None
    assert store.stat(keys.public_key_key("s3-station")) is not None

    before = sorted(store.list_keys(""))
    code, out, _ = run_cli(capsys, "--config", str(config), "ingest", str(root), "--device-id", "DOCK")
    assert code == 0 and "already archived earlier" in out
    assert sorted(store.list_keys("")) == before

    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 0, out


def test_verify_names_an_original_replaced_in_the_bucket(
    tmp_path: Path, s3_server: Any, s3_make_bucket: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = s3_make_bucket(object_lock=False)  # without Object Lock an overwrite is possible
    root = tmp_path / "card"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"original evidence bytes")
    config = s3_station(tmp_path, s3_server, bucket)
    assert run_cli(capsys, "--config", str(config), "ingest", str(root))[0] == 0
    [recording] = recordings_json(capsys, config)
    forged = b"original evidence byteZ"
    s3_server.client().put_object(bucket, recording["object_key"], io.BytesIO(forged), len(forged))
    code, out, _ = run_cli(capsys, "--config", str(config), "verify", recording["id"][:12])
    assert code == 7
    assert f"recording {recording['id'][:12]}" in out and "content changed" in out


def test_two_stations_share_one_bucket(
    tmp_path: Path, s3_server: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for station in ("town-a", "town-b"):
        root = tmp_path / station / "card"
        root.mkdir(parents=True)
        (root / "same.mp4").write_bytes(b"one recording, docked in two towns")
        (root / f"{station}.mp4").write_bytes(station.encode())
        config = s3_station(tmp_path / station, s3_server, s3_bucket, station_id=station)
        assert run_cli(capsys, "--config", str(config), "ingest", str(root))[0] == 0
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 0, out
    assert "ledger writer town-a" in out and "ledger writer town-b" in out
    assert "verified 3 recording(s)" in out
