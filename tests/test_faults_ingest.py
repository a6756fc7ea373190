"""``kill -9`` of ``evidence-daemon ingest`` at random instants, on the filesystem archive and
on S3: after each kill the same command is run again, and at the end every file is archived
once, nothing is wrongly archived and no custody event is doubled.

Each cycle adds fresh files to the card (a station keeps working across crashes) and kills the
ingest at a delay drawn uniformly from [0, the duration of an uninterrupted run], so the kills
fall anywhere: start-up, scanning, copying, fsync, upload, manifest, ledger, commit. Bounded:
``EVIDENCE_FAULT_INSTANTS`` instants (50) or ``EVIDENCE_FAULT_BUDGET_S`` seconds per backend.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .faultcheck import hashes_of, measure
from .faultlog import FaultLog
from .helpers import run_cli_process, write_config

pytestmark = [pytest.mark.slow, pytest.mark.faults]

INSTANTS = int(os.environ.get("EVIDENCE_FAULT_INSTANTS", "50"))
# On the Ceph RGW cluster every cycle costs two CLI runs against a real server; fewer instants
# keep the suite in its time budget while the kills still land in every stage.
RGW_INSTANTS = int(os.environ.get("EVIDENCE_FAULT_INSTANTS_RGW", "12"))
BUDGET_S = float(os.environ.get("EVIDENCE_FAULT_BUDGET_S", "200"))


def _add_files(card: Path, cycle: int) -> None:
    """Three new recordings: one large enough for a multipart upload, two small; and a copy
    of one of them (a duplicate source)."""
    rng = random.Random(cycle)
    folder = card / f"DCIM{cycle:03d}"
    folder.mkdir(parents=True)
    (folder / f"DSJ001_10086_20261125{8 + cycle % 10:02d}3000_{cycle:04d}.MP4").write_bytes(
        rng.randbytes(11 * 1024 * 1024 + cycle))
    (folder / "small.mp4").write_bytes(rng.randbytes(200_000))
    (folder / "tiny.wav").write_bytes(rng.randbytes(4_000))
    (folder / "copy-of-small.mp4").write_bytes((folder / "small.mp4").read_bytes())


def _ingest_command(config: Path, card: Path) -> list[str]:
    return [sys.executable, "-m", "evidence_daemon", "--config", str(config), "ingest", str(card),
            "--device-id", "CAM-1"]


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("EVIDENCE_")}


def _kill_at(config: Path, card: Path, delay_s: float) -> int | None:
    """Start an ingest, SIGKILL it after ``delay_s``; its exit code (None if killed)."""
    process = subprocess.Popen(_ingest_command(config, card), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return process.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return None


def _kill_randomly(config: Path, tmp_path: Path, backend: str, fault_log: FaultLog,
                   instants: int = INSTANTS) -> None:
    card = tmp_path / "card"
    _add_files(card, 0)
    started = time.monotonic()
    first = run_cli_process(*_ingest_command(config, card)[3:])
    assert first.returncode == 0, first.stdout + first.stderr
    full_run_s = time.monotonic() - started
    rng = random.Random(f"kill-{backend}")
    delays: list[float] = []
    killed = 0
    deadline = time.monotonic() + BUDGET_S
    cycle = 0
    while cycle < instants and time.monotonic() < deadline:
        cycle += 1
        _add_files(card, cycle)
        delay = rng.uniform(0.0, full_run_s * 1.5)  # new files make the run a little longer
        delays.append(delay)
        if _kill_at(config, card, delay) is None:
            killed += 1
        recovery = run_cli_process(*_ingest_command(config, card)[3:])
        assert recovery.returncode == 0, f"cycle {cycle}, killed at {delay:.2f} s:\n" + \
            recovery.stdout + recovery.stderr
    sources = hashes_of(p for p in card.rglob("*") if p.is_file())
    measured = measure(config, sources)
    verify = run_cli_process("--config", str(config), "verify")
    assert verify.returncode == 0, verify.stdout
    assert measured.files_lost == 0 and measured.wrongly_archived == 0
    assert measured.duplicates == 0
    assert measured.archived == len(sources)
    assert cycle >= min(instants, 10), f"only {cycle} instants fitted in {BUDGET_S} s"
    fault_log("kill -9 of ingest", f"SIGKILL of `ingest` at random instants ({backend})",
              injected_by=f"SIGKILL at {cycle} instants uniform in [0, 1.5 × an uninterrupted "
                          f"run = {full_run_s * 1.5:.2f} s] ({min(delays):.2f}–{max(delays):.2f} s; "
                          f"{killed} killed, {cycle - killed} finished first); 4 new files each",
              files_lost=measured.files_lost, wrongly_archived=measured.wrongly_archived,
              duplicates=measured.duplicates, exit_code=0,
              message=f"every recovery run exited 0; {measured.archived} files archived; verify OK")


def test_kill_9_of_ingest_at_random_instants_on_the_filesystem_archive(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    shm = Path("/dev/shm")
    archive = shm / f"evidence-faults-{os.getpid()}" if shm.is_dir() else tmp_path / "archive"
    config = write_config(tmp_path, archive={"backend": "filesystem", "path": str(archive)},
                          extra="[ingest]\nprobe = false\n")
    try:
        _kill_randomly(config, tmp_path, "filesystem", fault_log)
    finally:
        subprocess.run(["rm", "-rf", str(archive)], check=False)


@pytest.mark.s3
def test_kill_9_of_ingest_at_random_instants_on_s3(
    tmp_path: Path, s3_server: Any, s3_bucket: str, fault_log: FaultLog
) -> None:
    config = write_config(tmp_path, archive={
        "backend": "s3", "endpoint": s3_server.endpoint, "bucket": s3_bucket,
        "access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
        "secure": s3_server.secure, "part_size_mib": 5, "retention_days": 1,
    }, extra="[ingest]\nprobe = false\n")
    instants = min(INSTANTS, RGW_INSTANTS) if s3_server.kind == "rgw" else INSTANTS
    _kill_randomly(config, tmp_path, "S3", fault_log, instants)
