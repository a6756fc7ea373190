"""A writer whose state directory is lost must not make a new key for an identity the archive
already knows: it refuses before creating anything, so restoring the backup finds nothing in
the way (issue 10, defect 8)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .faultlog import FaultLog
from .footage import make_video
from .helpers import run_cli, write_config

API_TOML = """
[api]
id = "test-api"
state_dir = "{state}"
"""


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_lost_station_state_is_refused_before_anything_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    card = tmp_path / "card"
    make_video(card / "DSJ001_10086_20261125083000_0001.MP4")
    config = write_config(tmp_path)
    state = tmp_path / "state"
    assert run_cli(capsys, "--config", str(config), "ingest", str(card))[0] == 0
    archive_before = files_under(tmp_path / "archive")

    shutil.rmtree(state)  # the station's disk was replaced; its state was not restored
    code, _, err = run_cli(capsys, "--config", str(config), "ingest", str(card))

    assert code == 3, err
    assert "keys/test-station.pub" in err and "lost" in err
    assert "Restore the state directory" in err and "station.id" in err
    assert not state.exists(), "nothing created: no state dir, key file, database or spool"
    assert files_under(tmp_path / "archive") == archive_before
    # read-only commands open the station too, and must not make a key either
    code, _, err = run_cli(capsys, "--config", str(config), "status")
    assert code == 3 and not state.exists()
    fault_log("lost state", "station state_dir deleted, archive holds its key",
              injected_by="rm -r state_dir between two ingests", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=code, message=err)


def test_lost_state_with_the_archive_away_is_caught_when_it_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    """Nobody can tell a new station from a lost one while the archive is away: the key is made
    and the files are kept in the spool; the archive's key then refuses every upload."""
    card = tmp_path / "card"
    make_video(card / "DSJ001_10086_20261125083000_0001.MP4")
    nas = tmp_path / "nas"
    config = write_config(tmp_path, archive={"backend": "filesystem", "path": str(nas / "archive")})
    assert run_cli(capsys, "--config", str(config), "ingest", str(card))[0] == 0
    shutil.rmtree(tmp_path / "state")
    make_video(card / "DSJ001_10086_20261125090000_0002.MP4", seconds=1)

    nas.rename(tmp_path / "nas.away")
    nas.write_text("not mounted\n")
    code, _, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 6 and "safe in the spool" in err
    nas.unlink()
    (tmp_path / "nas.away").rename(nas)

    code, _, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 7, err
    assert "different public key" in err and "restore the key file" in err
    assert len(list((nas / "archive" / "recordings").iterdir())) == 1, "nothing archived with the new key"
    spooled = files_under(tmp_path / "state" / "spool" / "objects")
    assert len(spooled) == 2, "both files wait in the spool"
    fault_log("lost state", "station state_dir deleted while the archive is unreachable",
              injected_by="rm -r state_dir; archive path replaced by a file, then restored",
              files_lost=0, wrongly_archived=0, duplicates=0, exit_code=code, message=err)


def test_lost_api_node_state_is_refused_before_anything_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    state = tmp_path / "api-state"
    config = write_config(tmp_path, extra=API_TOML.format(state=state))
    code, _, err = run_cli(capsys, "--config", str(config), "reindex")
    assert code == 0, err
    assert (tmp_path / "archive" / "keys" / "test-api.pub").exists()

    shutil.rmtree(state)
    code, _, err = run_cli(capsys, "--config", str(config), "users", "add", "ann", "--role", "auditor")

    assert code == 3, err
    assert "keys/test-api.pub" in err and "api.id" in err
    assert not state.exists()
    fault_log("lost state", "API node state_dir deleted, archive holds its key",
              injected_by="rm -r api.state_dir", files_lost=0, wrongly_archived=0,
              duplicates=0, exit_code=code, message=err)
