"""Crash safety: SIGKILL the ingest at each named point, run it again, and compare the end state
with an uninterrupted run — same recordings, same objects, same custody events, ledger verifies."""

from __future__ import annotations

import json
import shutil
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.config import load_config
from evidence_daemon.archive.factory import build_store

from .footage import make_video
from .helpers import run_cli_process, write_config

pytestmark = pytest.mark.slow

FILESYSTEM_POINTS = (
    "ingest.mid_copy",
    "ingest.after_spool",
    "archive.mid_upload",
    "archive.after_upload",
    "archive.after_manifest",
    "ledger.after_write",
    "ingest.before_commit",
)
S3_POINTS = ("archive.mid_upload", "archive.after_upload", "ledger.after_write", "ingest.before_commit")


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("card")
    make_video(root / "DCIM" / "DSJ001_10086_20261125083000_0001.MP4", seconds=2)
    make_video(root / "DCIM" / "DSJ001_10086_20261125084000_0002.MP4", seconds=1)
    shutil.copy2(root / "DCIM" / "DSJ001_10086_20261125084000_0002.MP4", root / "DCIM" / "dup.mp4")
    (root / "DCIM" / "large.bin").write_bytes(bytes(range(256)) * 48 * 1024)  # 12 MiB: multipart on S3
    (root / "empty.mp4").write_bytes(b"")
    return root


def end_state(config_path: Path) -> dict[str, Any]:
    """Everything an auditor could compare between two runs, minus timestamps."""
    result = run_cli_process("--config", str(config_path), "recordings", "--json")
    assert result.returncode == 0, result.stderr
    recordings = sorted(
        (r["id"], r["size_bytes"], tuple(r["flags"]), r["time_source"], r["recorded_end"],
         r["archived_at"] is not None, tuple(sorted(s["path"] for s in r["sources"])),
         tuple(sorted(s["state"] for s in r["sources"])))
        for r in json.loads(result.stdout)
    )
    store = build_store(load_config(config_path))
    objects = sorted(key for key in store.list_keys("") if not key.startswith("ledger/"))
    events: Counter[tuple[str, str | None, str | None]] = Counter()
    acquired: Counter[str] = Counter()
    for key in store.list_keys("ledger/"):
        entry = json.loads(store.get_bytes(key))
        # Which of two identical files is 'acquired' and which a 'duplicate-source' depends on
        # which upload worker gets there first; both runs must record every source once.
        event = "source" if entry["event"] in ("acquired", "duplicate-source") else entry["event"]
        events[(event, entry["recording"], entry["details"].get("path"))] += 1
        if entry["event"] == "acquired":
            acquired[entry["recording"]] += 1
    assert set(acquired.values()) == {1}, "one 'acquired' event per recording"
    return {"recordings": recordings, "objects": objects, "events": events}


def run_ingest(config: Path, card: Path, failpoint: str | None = None) -> int:
    env = {"EVIDENCE_FAILPOINTS": failpoint} if failpoint else {}
    result = run_cli_process("--config", str(config), "ingest", str(card), "--device-id", "CAM-1", env=env)
    if failpoint is None:
        assert result.returncode == 0, result.stdout + result.stderr
    return result.returncode


def check_crash_and_recovery(config: Path, reference: Path, card: Path, failpoint: str) -> None:
    # the process must really have died at the failpoint, or the test proves nothing
    assert run_ingest(config, card, failpoint) == -signal.SIGKILL
    run_ingest(config, card)
    assert end_state(config) == end_state(reference)
    result = run_cli_process("--config", str(config), "verify")
    assert result.returncode == 0, result.stdout
    # nothing left behind in the spool once everything is archived
    spool = load_config(config).spool_dir
    assert [p for p in spool.rglob("*") if p.is_file()] == []


def _filesystem_config(directory: Path, archive_root: Path) -> Path:
    return write_config(directory, archive={"backend": "filesystem", "path": str(archive_root)})


@pytest.fixture(scope="module")
def other_filesystem() -> Iterator[Path]:
    """An archive directory on another filesystem than the spool, so originals are copied
    (the hard-link shortcut would skip the mid-upload point)."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("needs /dev/shm (tmpfs) to put the archive on another filesystem")
    target = shm / f"evidence-test-{uuid.uuid4().hex[:12]}"  # unique across concurrent runs
    target.mkdir()
    yield target
    shutil.rmtree(target)


@pytest.mark.parametrize("failpoint", FILESYSTEM_POINTS)
def test_filesystem_ingest_survives_sigkill(
    failpoint: str, card: Path, tmp_path: Path, other_filesystem: Path
) -> None:
    reference = _filesystem_config(tmp_path / "reference", other_filesystem / f"ref-{failpoint}")
    run_ingest(reference, card)
    crashed = _filesystem_config(tmp_path / "crashed", other_filesystem / f"crash-{failpoint}")
    check_crash_and_recovery(crashed, reference, card, failpoint)
    assert isinstance(build_store(load_config(crashed)), FilesystemArchive)


@pytest.mark.s3
@pytest.mark.parametrize("failpoint", S3_POINTS)
def test_s3_ingest_survives_sigkill(
    failpoint: str, card: Path, tmp_path: Path, s3_server: Any, s3_make_bucket: Any
) -> None:
    def s3_config(directory: Path) -> Path:
        archive = {"backend": "s3", "endpoint": s3_server.endpoint, "bucket": s3_make_bucket(),
                   "access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
                   "secure": s3_server.secure, "part_size_mib": 5, "retention_days": 1}
        return write_config(directory, archive=archive)

    reference = s3_config(tmp_path / "reference")
    run_ingest(reference, card)
    check_crash_and_recovery(s3_config(tmp_path / "crashed"), reference, card, failpoint)
