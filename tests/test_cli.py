"""The CLI contract other tools call: JSON fields, exit codes, and behaviour when the archive is away."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from .footage import make_video
from .helpers import recordings_json, run_cli, write_config

CONTRACT_FIELDS = {
    "id", "sha256", "sm3", "size_bytes", "sources", "device_id", "officer_id", "recorded_start",
    "recorded_end", "time_source", "archived_at", "archive_deadline", "compliance", "flags", "media",
}


def test_recordings_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "card"
    make_video(root / "DSJ001_10086_20261125083000_0001.MP4")
    config = write_config(tmp_path)
    assert run_cli(capsys, "--config", str(config), "ingest", str(root), "--device-id", "DOCK")[0] == 0
    [recording] = recordings_json(capsys, config)
    assert CONTRACT_FIELDS <= set(recording)
    assert recording["id"] == recording["sha256"] and len(recording["id"]) == 64
    assert recording["sm3"] is None
    assert {"path", "device_id"} <= set(recording["sources"][0])
    for field in ("recorded_start", "recorded_end", "archived_at", "archive_deadline"):
        assert datetime.fromisoformat(recording[field]).utcoffset() is not None, field
    assert recording["time_source"] == "filename"
    end = datetime.fromisoformat(recording["recorded_end"])
    assert datetime.fromisoformat(recording["archive_deadline"]) == end + timedelta(hours=24)
    assert end - datetime.fromisoformat(recording["recorded_start"]) == timedelta(seconds=2)
    assert recording["compliance"] == "late"  # recorded 2026-11-25, archived after the deadline
    assert recording["media"]["duration_s"] == pytest.approx(2.0, abs=0.1)

    code, out, _ = run_cli(capsys, "--config", str(config), "recordings")
    assert code == 0 and recording["id"][:12] in out and "late" in out


def test_status_reports_queue_and_compliance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "card"
    make_video(root / "clip.mp4")
    config = write_config(tmp_path)
    assert run_cli(capsys, "--config", str(config), "ingest", str(root))[0] == 0
    code, out, _ = run_cli(capsys, "--config", str(config), "status", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["queue"]["archived"] == 1 and report["queue"]["spooled"] == 0
    assert report["overdue"] == 0 and report["oldest_pending"] is None
    code, out, _ = run_cli(capsys, "--config", str(config), "status")
    assert code == 0 and "overdue 0" in out and "archived 1" in out


def test_config_error_exit_code_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[archive]\nbackend = "tape"\n')
    code, _, err = run_cli(capsys, "--config", str(config), "status")
    assert code == 2
    assert "archive.backend" in err
    code, _, err = run_cli(capsys, "--set", "archive.backend", "status")
    assert code == 2 and "SECTION.KEY=VALUE" in err


def test_unreachable_archive_keeps_files_in_the_spool_until_it_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "card"
    make_video(root / "DSJ001_10086_20261125083000_0001.MP4")
    blocked = tmp_path / "nas"
    blocked.write_text("the NAS is not mounted: this is a plain file\n")
    config = write_config(tmp_path, archive={"backend": "filesystem", "path": str(blocked / "archive")})

    code, _, err = run_cli(capsys, "--config", str(config), "ingest", str(root))
    assert code == 6
    assert "safe in the spool" in err and "not writable" in err
    [pending] = recordings_json(capsys, config)
    assert pending["archived_at"] is None and pending["compliance"] == "overdue"
    assert pending["sources"][0]["state"] == "spooled"
    assert (tmp_path / "state" / "spool" / "objects" / pending["id"]).exists()

    blocked.unlink()
    blocked.mkdir()
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(root))
    assert code == 0, err
    [archived] = recordings_json(capsys, config)
    assert archived["archived_at"] is not None and archived["compliance"] == "late"
    assert not (tmp_path / "state" / "spool" / "objects" / pending["id"]).exists()
    assert run_cli(capsys, "--config", str(config), "verify")[0] == 0


def test_a_second_ingest_at_the_same_time_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evidence_daemon.station import IngestLock

    root = tmp_path / "card"
    root.mkdir()
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    with IngestLock(tmp_path / "state"):
        code, _, err = run_cli(capsys, "--config", str(config), "ingest", str(root))
    assert code == 5 and "another ingest is running" in err
