"""Unfinished writes a killed process leaves in the archive (issue 10, defect 4): temp files in
the filesystem archive's ``.staging/`` and incomplete S3 multipart uploads. They are removed at
start and by upkeep once older than the cut-off, never while this process is still writing
them, and nothing else in the archive is touched."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from evidence_daemon.archive import keys
from evidence_daemon.archive.base import StoredObject, is_leftover
from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.archive.s3 import S3Archive
from evidence_daemon.archive.s3.leftovers import unfinished_uploads as unfinished_uploads_of
from evidence_daemon.config import load_config
from evidence_daemon.metrics.station import StationMetrics
from evidence_daemon.upkeep.jobs import Upkeep

from .faultlog import FaultLog
from .helpers import run_cli_process, wait_for, write_config
from .s3server import S3TestServer
from .test_compliance_support import T0, SteppedClock, make_station

MIB = 1024 * 1024
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("started_at", "in_flight", "expected"),
    [
        (NOW - timedelta(seconds=1), False, True),
        (NOW, False, False),  # exactly at the cut-off: not older
        (NOW + timedelta(hours=1), False, False),
        (NOW - timedelta(days=30), True, False),  # ours, still being written: never
        (None, False, False),  # unknown start: never
    ],
)
def test_what_counts_as_a_leftover(started_at: datetime | None, in_flight: bool, expected: bool) -> None:
    assert is_leftover(started_at, older_than=NOW, in_flight=in_flight) is expected


# -- filesystem ------------------------------------------------------------------------------


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than tmp_path, so originals are copied, not linked
    (the copy is where a kill mid-upload leaves a temp file)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's tmp_path")
    target = shm / f"evidence-test-{uuid.uuid4().hex[:12]}"
    target.mkdir()
    yield target
    shutil.rmtree(target)


def stored_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".staging" not in p.parts}


def put(store: Any, directory: Path, data: bytes) -> StoredObject:
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"{uuid.uuid4().hex}.mp4"
    source.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    result: StoredObject = store.put_original(keys.original_key(sha256, "mp4"), source,
                                              sha256=sha256, size_bytes=len(data), metadata={})
    return result


def test_filesystem_removes_only_old_temp_files_in_staging(tmp_path: Path) -> None:
    store = FilesystemArchive(tmp_path / "archive")
    store.check()
    put(store, tmp_path / "spool", b"an archived original")
    store.put_bytes("ledger/town-a/000000000001.json", b"{}")
    before = stored_files(store.root)
    staging = store.root / ".staging"
    (staging / "dead.tmp").write_bytes(b"half an original")
    (staging / "notes.txt").write_text("not a temp file")
    (staging / "odd.tmp").mkdir()  # not a regular file

    # made after the cut-off: kept
    assert store.remove_leftovers(datetime.now(timezone.utc) - timedelta(hours=1)) == []
    assert (staging / "dead.tmp").exists()

    [removed] = store.remove_leftovers(datetime.now(timezone.utc) + timedelta(seconds=1))
    assert (removed.kind, removed.name) == ("staging", "dead.tmp")
    assert sorted(p.name for p in staging.iterdir()) == ["notes.txt", "odd.tmp"]
    assert stored_files(store.root) == before
    assert FilesystemArchive(tmp_path / "nowhere").remove_leftovers(FAR_FUTURE) == []


def _start_blocked_write(fifo: Path, first: bytes, rest: bytes) -> tuple[threading.Event, threading.Thread]:
    """Feed ``first`` into the FIFO, then wait for the event before feeding ``rest``."""
    os.mkfifo(fifo)
    release = threading.Event()

    def feed() -> None:
        with fifo.open("wb") as handle:
            handle.write(first)
            handle.flush()
            release.wait(60)
            handle.write(rest)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    return release, feeder


def _upload_in_thread(store: Any, source: Path, data: bytes) -> tuple[threading.Thread, list[Any]]:
    sha256 = hashlib.sha256(data).hexdigest()
    outcome: list[Any] = []

    def upload() -> None:
        try:
            outcome.append(store.put_original(keys.original_key(sha256, "mp4"), source,
                                              sha256=sha256, size_bytes=len(data), metadata={}))
        except Exception as exc:  # the assertion below shows it
            outcome.append(exc)

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    return uploader, outcome


def test_filesystem_never_removes_its_own_write_in_flight(tmp_path: Path, other_filesystem: Path) -> None:
    store = FilesystemArchive(other_filesystem / "archive")
    store.check()
    data = os.urandom(6 * MIB)
    release, feeder = _start_blocked_write(tmp_path / "fifo", data[:5 * MIB], data[5 * MIB:])
    uploader, outcome = _upload_in_thread(store, tmp_path / "fifo", data)
    staging = store.root / ".staging"
    wait_for(lambda: any(p.stat().st_size > 0 for p in staging.glob("*.tmp")), timeout_s=30,
             what="the copy to be under way")
    [temp] = list(staging.glob("*.tmp"))

    assert store.remove_leftovers(FAR_FUTURE) == []  # any age: it is ours and in flight
    assert temp.exists()

    release.set()
    uploader.join(30)
    feeder.join(30)
    assert isinstance(outcome[0], StoredObject), outcome
    assert list(staging.iterdir()) == []


def test_filesystem_temp_left_by_kill_9_is_removed_at_the_next_start(
    tmp_path: Path, other_filesystem: Path, fault_log: FaultLog
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    original = os.urandom(6 * MIB)
    (card / "clip.mp4").write_bytes(original)
    archive = other_filesystem / "archive"
    config = write_config(tmp_path, archive={"backend": "filesystem", "path": str(archive)},
                          extra="[ingest]\nprobe = false\n")
    ingest = ("--config", str(config), "ingest", str(card))

    killed = run_cli_process(*ingest, env={"EVIDENCE_FAILPOINTS": "archive.mid_upload"})
    assert killed.returncode == -signal.SIGKILL
    staging = archive / ".staging"
    [leftover] = list(staging.glob("*.tmp"))
    (staging / "keep.part").write_bytes(b"not a temp file of ours")

    # the default age (a day) protects writes of other stations sharing the archive: kept
    rerun = run_cli_process(*ingest)
    assert rerun.returncode == 0, rerun.stderr
    assert leftover.exists()
    before = stored_files(archive)

    cleaned = run_cli_process("--set", "upkeep.leftover_age_s=0", *ingest)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not leftover.exists()
    assert "removed 1 unfinished temp file(s) in .staging/" in cleaned.stderr
    assert sorted(p.name for p in staging.iterdir()) == ["keep.part"]
    assert stored_files(archive) == before, "nothing but the leftover touched"
    sha256 = hashlib.sha256(original).hexdigest()
    assert (archive / keys.original_key(sha256, "mp4")).read_bytes() == original
    assert run_cli_process("--config", str(config), "verify").returncode == 0
    fault_log("leftovers after kill -9", "filesystem archive: temp file in .staging/",
              injected_by="SIGKILL at failpoint archive.mid_upload", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=cleaned.returncode,
              message=cleaned.stderr)


def test_upkeep_job_removes_leftovers_and_counts_them(tmp_path: Path) -> None:
    clock = SteppedClock(T0)
    station = make_station(tmp_path, clock, extra="[upkeep]\nleftover_age_s = 60\n")
    station.connect()
    metrics = StationMetrics(station.config, station.database, clock=clock,
                             registry=CollectorRegistry())
    wall = SteppedClock(datetime.now(timezone.utc))
    upkeep = Upkeep(station.config, station, station.ingestor(), metrics=metrics.pipeline,
                    wall_clock=wall)
    staging = tmp_path / "archive" / ".staging"
    for name in ("a.tmp", "b.tmp"):
        (staging / name).write_bytes(b"left by a crash")

    assert upkeep.leftover_cleanup() == 0  # younger than leftover_age_s
    wall.advance(seconds=61)
    assert upkeep.leftover_cleanup() == 2
    assert list(staging.iterdir()) == []
    sample = metrics.registry.get_sample_value
    assert sample("evidence_leftovers_cleaned_total", {"kind": "staging"}) == 2
    assert sample("evidence_leftovers_cleaned_total", {"kind": "multipart"}) == 0
    station.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_daemon_removes_leftovers_at_start_and_exports_the_count(tmp_path: Path) -> None:
    port = _free_port()
    config = write_config(tmp_path, extra=f"""
[dock]
runtime_dir = "{tmp_path / 'run'}"

[metrics]
listen = "127.0.0.1:{port}"

[upkeep]
leftover_age_s = 0
""")
    staging = tmp_path / "archive" / ".staging"
    staging.mkdir(parents=True)
    (staging / "dead.tmp").write_bytes(b"left by a kill -9")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVIDENCE_", "NOTIFY_"))}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "evidence_daemon", "--config", str(config), "run", "--no-udev"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def scraped() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                return str(answer.read().decode())
        except OSError:
            return ""

    try:
        wait_for(lambda: 'evidence_leftovers_cleaned_total{kind="staging"} 1.0' in scraped(),
                 timeout_s=60, what="the start-up clean-up counted")
        assert not (staging / "dead.tmp").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert "removed 1 unfinished temp file(s)" in err


# -- S3 --------------------------------------------------------------------------------------


def unfinished_uploads(archive: S3Archive, prefix: str = "recordings/") -> list[tuple[str, str, datetime]]:
    return [(u.object_name, str(u.upload_id), u.initiated_time)  # type: ignore[misc]
            for u in unfinished_uploads_of(archive._bucket) if u.object_name.startswith(prefix)]


@pytest.mark.s3
def test_s3_aborts_uploads_begun_before_the_cut_off_only(s3_archive: S3Archive, tmp_path: Path) -> None:
    client = s3_archive.client
    bucket = s3_archive.bucket
    stored = put(s3_archive, tmp_path, os.urandom(6 * MIB))  # a finished multipart upload
    original_key = keys.original_key("ab" * 32, "mp4")
    client._create_multipart_upload(bucket, original_key, {})
    client._create_multipart_upload(bucket, "elsewhere/not-ours.bin", {})
    [(key, _, initiated)] = unfinished_uploads(s3_archive)
    assert key == original_key

    # The server's clock dates an upload (moto reports one fixed date for every upload), so
    # the cut-off is taken from what the server says.
    assert s3_archive.remove_leftovers(initiated) == []  # not older than the cut-off: kept
    assert len(unfinished_uploads(s3_archive)) == 1

    [removed] = s3_archive.remove_leftovers(initiated + timedelta(seconds=1))
    assert (removed.kind, removed.name, removed.started_at) == ("multipart", original_key, initiated)
    assert unfinished_uploads(s3_archive) == []
    assert [key for key, _, _ in unfinished_uploads(s3_archive, prefix="")] == [
        "elsewhere/not-ours.bin"], "only recordings/ is cleaned"
    assert s3_archive.stat(stored.key) is not None
    assert s3_archive.stat(original_key) is None


@pytest.mark.s3
def test_s3_never_aborts_its_own_upload_in_flight(s3_archive: S3Archive, tmp_path: Path) -> None:
    data = os.urandom(5 * MIB + 4096)
    release, feeder = _start_blocked_write(tmp_path / "fifo", data[:5 * MIB], data[5 * MIB:])
    uploader, outcome = _upload_in_thread(s3_archive, tmp_path / "fifo", data)
    wait_for(lambda: bool(unfinished_uploads(s3_archive)), timeout_s=30,
             what="the multipart upload to be under way")

    assert s3_archive.remove_leftovers(FAR_FUTURE) == []  # any age: ours and in flight
    assert len(unfinished_uploads(s3_archive)) == 1

    release.set()
    uploader.join(60)
    feeder.join(30)
    assert isinstance(outcome[0], StoredObject), outcome
    assert outcome[0].verified_by == "sha256+etag"
    assert unfinished_uploads(s3_archive) == []


@pytest.mark.s3
@pytest.mark.slow
def test_s3_upload_left_by_kill_9_is_aborted_at_the_next_start(
    tmp_path: Path, s3_server: S3TestServer, s3_bucket: str, fault_log: FaultLog
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    original = os.urandom(11 * MIB)  # three parts of 5 MiB
    (card / "clip.mp4").write_bytes(original)
    archive = {"backend": "s3", "endpoint": s3_server.endpoint, "bucket": s3_bucket,
               "access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
               "secure": s3_server.secure, "part_size_mib": 5, "retention_days": 1}
    config = write_config(tmp_path, archive=archive, extra="[ingest]\nprobe = false\n")
    store = S3Archive.from_config(load_config(config).archive)
    ingest = ("--config", str(config), "ingest", str(card))

    killed = run_cli_process(*ingest, env={"EVIDENCE_FAILPOINTS": "archive.mid_upload"})
    assert killed.returncode == -signal.SIGKILL
    sha256 = hashlib.sha256(original).hexdigest()
    [(key, _, _)] = unfinished_uploads(store)
    assert key == keys.original_key(sha256, "mp4") and store.stat(key) is None

    cleaned = run_cli_process("--set", "upkeep.leftover_age_s=0", *ingest)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 1 unfinished multipart upload(s)" in cleaned.stderr
    assert unfinished_uploads(store) == []
    assert store.get_bytes(key) == original
    assert run_cli_process("--config", str(config), "verify").returncode == 0
    fault_log("leftovers after kill -9", "S3 archive: unfinished multipart upload",
              injected_by="SIGKILL at failpoint archive.mid_upload (after part 1 of 3)",
              files_lost=0, wrongly_archived=0, duplicates=0, exit_code=cleaned.returncode,
              message=cleaned.stderr)
