"""Ingest of a recorder tree into the filesystem archive, through the real CLI, ffprobe and SQLite."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.archive import keys

from .footage import SAMPLE_DEVICE, SAMPLE_OFFICER, make_video, sample_tree
from .helpers import recordings_json, run_cli, write_config


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_id(recordings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {recording["id"]: recording for recording in recordings}


def archive_files(archive: Path) -> set[str]:
    return {
        path.relative_to(archive).as_posix()
        for path in archive.rglob("*")
        if path.is_file() and ".staging" not in path.parts
    }


@pytest.fixture
def card(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    root = tmp_path / "card"
    return root, sample_tree(root)


def test_every_file_is_archived_bit_exact_with_its_facts(
    tmp_path: Path, card: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, files = card
    config = write_config(tmp_path)
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(root), "--device-id", "DOCK-7")
    assert code == 0, err
    assert "archived (new recordings)" in out

    recordings = by_id(recordings_json(capsys, config))
    archive = tmp_path / "archive"
    for role in ("video", "video2", "truncated", "audio", "photo", "empty", "garbage"):
        digest = sha256_of(files[role])
        assert digest in recordings, role
        recording = recordings[digest]
        original = archive / keys.original_key(digest, files[role].suffix.lower().lstrip("."))
        assert original.read_bytes() == files[role].read_bytes(), role
        assert not original.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        assert recording["archived_at"] is not None
        assert recording["size_bytes"] == files[role].stat().st_size
        assert recording["sources"][0]["path"] == files[role].relative_to(root).as_posix()
        assert recording["sources"][0]["device_id"] == "DOCK-7"
        manifest = json.loads((archive / keys.manifest_key(digest)).read_bytes())
        assert manifest["sha256"] == digest and manifest["size_bytes"] == recording["size_bytes"]
        assert manifest["source"]["path"] == recording["sources"][0]["path"]
    # the junk file stays out; nothing else appears
    assert len(recordings) == 7
    assert all(not any("Thumbs.db" in s["path"] for s in r["sources"]) for r in recordings.values())

    video = recordings[sha256_of(files["video"])]
    assert (video["device_id"], video["officer_id"]) == (SAMPLE_DEVICE, SAMPLE_OFFICER)
    assert video["time_source"] == "filename"
    assert video["recorded_start"].endswith("+08:00")
    assert video["media"]["streams"][0]["codec_name"] in ("h264", "aac")
    assert video["flags"] == []
    truncated = recordings[sha256_of(files["truncated"])]
    assert truncated["flags"] == ["unplayable"] and truncated["flag_reasons"]["unplayable"]
    assert recordings[sha256_of(files["empty"])]["flags"] == ["empty"]
    garbage = recordings[sha256_of(files["garbage"])]
    assert garbage["time_source"] == "mtime" and "unplayable" in garbage["flags"]
    assert garbage["device_id"] == "DOCK-7"  # no name pattern: the docked device's id


def test_running_again_changes_nothing(
    tmp_path: Path, card: tuple[Path, dict[str, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = card
    config = write_config(tmp_path)
    assert run_cli(capsys, "--config", str(config), "ingest", str(root))[0] == 0
    before_files = archive_files(tmp_path / "archive")
    before = recordings_json(capsys, config)
    code, out, _ = run_cli(capsys, "--config", str(config), "ingest", str(root))
    assert code == 0
    assert "already archived earlier" in out and "archived (new recordings)" not in out
    assert archive_files(tmp_path / "archive") == before_files
    assert recordings_json(capsys, config) == before


def test_identical_contents_collapse_into_one_recording_with_several_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "card"
    clip = make_video(root / "DCIM" / "DSJ002_20001_20261125100000_0001.MP4")
    (root / "BACKUP").mkdir()
    shutil.copy2(clip, root / "BACKUP" / "copy-of-clip.mp4")
    config = write_config(tmp_path)
    assert run_cli(capsys, "--config", str(config), "ingest", str(root))[0] == 0
    recordings = recordings_json(capsys, config)
    assert len(recordings) == 1
    assert sorted(s["path"] for s in recordings[0]["sources"]) == [
        "BACKUP/copy-of-clip.mp4", "DCIM/DSJ002_20001_20261125100000_0001.MP4"]
    ledger = [json.loads(p.read_bytes()) for p in sorted((tmp_path / "archive" / "ledger").rglob("*.json"))]
    events = [entry["event"] for entry in ledger]
    assert events.count("archived") == 1 and events.count("duplicate-source") == 1


def test_hostile_and_odd_names_symlinks_and_special_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "card"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("must never be archived\n")
    names = [
        "-rf --no-preserve-root.mp4",
        "line\nbreak.mp4",
        "执法记录_张三.mp4",
        "../../escape.mp4".replace("/", "_"),
        "x" * 250 + ".mp4",
    ]
    for index, name in enumerate(names):
        (root / name).write_bytes(f"payload {index}".encode())
    raw_name = os.path.join(os.fsencode(root), b"latin1-\xe9t\xe9.mp4")
    with open(raw_name, "wb") as handle:
        handle.write(b"non-utf8 name")
    os.symlink(outside, root / "link-out.mp4")
    os.symlink(root / names[0], root / "link-in.mp4")
    os.mkfifo(root / "pipe.mp4")

    config = write_config(tmp_path)
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(root))
    assert code == 0, err
    assert "link-out.mp4: symbolic link" in out and "pipe.mp4: not a regular file" in out
    recordings = recordings_json(capsys, config)
    paths = {source["path"] for recording in recordings for source in recording["sources"]}
    assert set(names) <= paths
    assert "latin1-\\xe9t\\xe9.mp4" in paths
    odd = next(s for r in recordings for s in r["sources"] if s["path"].startswith("latin1"))
    assert odd["path_b64"]
    archived = {(tmp_path / "archive" / r["object_key"]).read_bytes() for r in recordings}
    assert b"must never be archived\n" not in archived
    assert len(recordings) == 6  # the inside link's target is archived once, under its own name
    ledger = [json.loads(p.read_bytes()) for p in (tmp_path / "archive" / "ledger").rglob("*.json")]
    quarantined = {entry["details"]["path"]: entry["details"]["reason"]
                   for entry in ledger if entry["event"] == "quarantined"}
    assert set(quarantined) == {"link-out.mp4", "link-in.mp4", "pipe.mp4"}


def test_an_unreadable_file_is_recorded_with_its_reason_and_the_rest_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "card"
    root.mkdir()
    (root / "good.mp4").write_bytes(b"readable evidence")
    locked = root / "locked.mp4"
    locked.write_bytes(b"cannot be read")
    locked.chmod(0)
    config = write_config(tmp_path)
    if os.geteuid() == 0:
        # root reads anything: drop the two capabilities that let it, so the check is real
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv (util-linux) to drop root's read capabilities")
        result = subprocess.run(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
             sys.executable, "-m", "evidence_daemon", "--config", str(config), "ingest", str(root)],
            capture_output=True, text=True, check=False, timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")},
        )
        code, out, err = result.returncode, result.stdout, result.stderr
    else:
        code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(root))
    assert code == 5, err  # a file left unarchived is never a success, though the rest went on
    assert "1 file(s) are not archived" in err
    assert "1  not archived: could not be read" in out
    assert "locked.mp4: cannot open: Permission denied" in out
    ledger = [json.loads(p.read_bytes()) for p in (tmp_path / "archive" / "ledger").rglob("*.json")]
    reasons = [e["details"]["reason"] for e in ledger if e["event"] == "quarantined"]
    assert reasons == ["cannot open: Permission denied"]
    archived = [e for e in ledger if e["event"] == "archived"]
    assert len(archived) == 1


def test_a_file_that_changes_while_read_is_not_archived(tmp_path: Path) -> None:
    from evidence_daemon.errors import IngestError
    from evidence_daemon.ingest.spool import Spool

    source = tmp_path / "growing.mp4"
    source.write_bytes(b"x" * 1000)
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    info = source.stat()
    with pytest.raises(IngestError, match="changed while being read"):
        spool.copy_in(os.fsencode(source), 1, expected_size=500, expected_mtime_ns=info.st_mtime_ns)
    assert list((tmp_path / "spool").rglob("*.part")) == []
    assert list((tmp_path / "spool" / "objects").iterdir()) == []


def test_sm3_is_computed_when_configured(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import hashes

    root = tmp_path / "card"
    root.mkdir()
    data = b"SM3 is required by some provinces"
    (root / "a.mp4").write_bytes(data)
    config = write_config(tmp_path, extra="[ingest]\nhash_sm3 = true\nprobe = false")
    assert run_cli(capsys, "--config", str(config), "ingest", str(root))[0] == 0
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    [recording] = recordings_json(capsys, config)
    assert recording["sm3"] == digest.finalize().hex()
    manifest = json.loads((tmp_path / "archive" / keys.manifest_key(recording["id"])).read_bytes())
    assert manifest["sm3"] == recording["sm3"]


def test_ingest_of_a_missing_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    code, _, err = run_cli(capsys, "--config", str(config), "ingest", str(tmp_path / "nowhere"))
    assert code == 5
    assert "nowhere is not a directory" in err


def test_time_and_attribution_fall_back_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """File name first; then the time the camera wrote into the file; then the file's mtime.
    Officer and device from the name win over the ones given on the command line."""
    root = tmp_path / "card"
    named = make_video(root / "DSJ009_20002_20261125100000_0001.MP4")
    embedded = make_video(root / "clip.mp4", creation_time="2026-11-25T02:00:00Z", seconds=1)
    plain = root / "notes.txt"
    plain.write_text("no time inside\n")
    os.utime(plain, (1_764_000_000, 1_764_000_000))
    config = write_config(tmp_path)
    code, _, err = run_cli(capsys, "--config", str(config), "ingest", str(root),
                           "--device-id", "DOCK-1", "--officer-id", "30003")
    assert code == 0, err
    recordings = by_id(recordings_json(capsys, config))

    from_name = recordings[sha256_of(named)]
    assert from_name["time_source"] == "filename"
    assert from_name["recorded_start"] == "2026-11-25T10:00:00+08:00"
    assert (from_name["device_id"], from_name["officer_id"]) == ("DSJ009", "20002")
    assert from_name["sources"][0]["device_id"] == "DOCK-1"  # the device it was docked from

    from_metadata = recordings[sha256_of(embedded)]
    assert from_metadata["time_source"] == "metadata"
    assert from_metadata["recorded_start"] == "2026-11-25T10:00:00+08:00"
    assert from_metadata["recorded_end"] == "2026-11-25T10:00:01+08:00"
    assert (from_metadata["device_id"], from_metadata["officer_id"]) == ("DOCK-1", "30003")

    from_mtime = recordings[sha256_of(plain)]
    assert from_mtime["time_source"] == "mtime"
    assert datetime.fromisoformat(from_mtime["recorded_end"]).timestamp() == 1_764_000_000


def test_concurrent_ingests_of_two_devices_share_one_pipeline(tmp_path: Path) -> None:
    """The daemon serves several docked devices at once with one Ingestor: every file is taken
    exactly once, identical content across the devices becomes one recording."""
    import threading

    from evidence_daemon.config import load_config
    from evidence_daemon.ingest.pipeline import Origin
    from evidence_daemon.station import open_station

    shared = b"the same clip on two cameras " * 50_000
    trees = []
    for device in ("CAM-A", "CAM-B"):
        root = tmp_path / device
        root.mkdir()
        (root / "shared.mp4").write_bytes(shared)
        for index in range(5):
            (root / f"{device}-{index}.mp4").write_bytes(f"{device} clip {index}".encode() * 10_000)
        trees.append((device, root))
    config = load_config(write_config(tmp_path, extra="[ingest]\nprobe = false"), environ={})
    station = open_station(config)
    ingestor = station.ingestor()
    summaries = {}

    def run(device: str, root: Path) -> None:
        summaries[device] = ingestor.ingest(Origin(root, device_id=device))

    threads = [threading.Thread(target=run, args=tree) for tree in trees]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recordings = station.recordings()
    station.close()
    assert all(summary.ok for summary in summaries.values())
    assert len(recordings) == 11
    shared_recording = next(r for r in recordings if len(r["sources"]) == 2)
    assert sorted(s["state"] for s in shared_recording["sources"]) == ["archived", "duplicate"]
    assert all(r["archived_at"] for r in recordings)
    ledger = [json.loads(p.read_bytes()) for p in (tmp_path / "archive" / "ledger").rglob("*.json")]
    assert sum(1 for e in ledger if e["event"] == "archived") == 11


def test_ingest_of_chosen_paths_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Watch folders hand over the files that are ready; the rest of the folder is not read."""
    from evidence_daemon.config import load_config
    from evidence_daemon.ingest.pipeline import Origin
    from evidence_daemon.station import open_station

    inbox = tmp_path / "inbox"
    (inbox / "room-1").mkdir(parents=True)
    (inbox / "room-1" / "ready.mp4").write_bytes(b"closed and stable")
    (inbox / "still-writing.mp4").write_bytes(b"half a recor")
    station = open_station(load_config(write_config(tmp_path, extra="[ingest]\nprobe = false"), environ={}))
    summary = station.ingestor().ingest(
        Origin(inbox, device_id="ROOM-1"), paths=[b"room-1/ready.mp4", b"../escape.mp4", b"gone.mp4"])
    recordings = station.recordings()
    station.close()
    assert summary.ok and summary.counts["archived"] == 1
    assert [s["path"] for r in recordings for s in r["sources"]] == ["room-1/ready.mp4"]
