"""The S3 archive away at start, cut mid-upload, or flapping: files wait safely in the spool,
the run says so (exit 6), and the next run archives each exactly once."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .faultcheck import hashes_of, measure
from .faultlog import FaultLog
from .helpers import run_cli_process, write_config
from .tcpfault import FaultyRelay

pytestmark = [pytest.mark.s3, pytest.mark.slow]


@pytest.fixture
def relay(s3_server: Any) -> Iterator[FaultyRelay]:
    if s3_server.secure:
        pytest.skip("the relay speaks plain TCP to a plain-HTTP test server")
    relay = FaultyRelay(s3_server.endpoint)
    yield relay
    relay.close()


def _card(root: Path, files: int) -> dict[Path, str]:
    rng = random.Random(str(root))
    root.mkdir(parents=True)
    for index in range(files):
        size = 12 * 1024 * 1024 if index == 0 else 300_000 + index
        (root / f"clip{index:02d}.mp4").write_bytes(rng.randbytes(size))
    return hashes_of(sorted(root.iterdir()))


def _station(tmp_path: Path, server: Any, bucket: str, relay: FaultyRelay) -> Path:
    return write_config(tmp_path, archive={
        "backend": "s3", "endpoint": relay.endpoint, "bucket": bucket,
        "access_key": server.access_key, "secret_key": server.secret_key,
        "secure": False, "part_size_mib": 5, "retention_days": 1, "retries": 2,
    }, extra="[ingest]\nprobe = false\n")


def _ingest(config: Path, card: Path) -> Any:
    return run_cli_process("--config", str(config), "ingest", str(card), timeout_s=300)


def _finish(config: Path, card: Path, sources: dict[Path, str], endpoint: str) -> Any:
    final = _ingest(config, card)
    assert final.returncode == 0, final.stdout + final.stderr
    measured = measure(config, sources, endpoint=endpoint)
    assert (measured.archived, measured.wrongly_archived, measured.duplicates) == (len(sources), 0, 0)
    assert run_cli_process("--config", str(config), "verify").returncode == 0
    return measured


def test_archive_away_at_start(tmp_path: Path, s3_server: Any, s3_bucket: str,
                               relay: FaultyRelay, fault_log: FaultLog) -> None:
    card = tmp_path / "card"
    sources = _card(card, 5)
    config = _station(tmp_path, s3_server, s3_bucket, relay)
    relay.down()
    first = _ingest(config, card)
    assert first.returncode == 6, first.stdout + first.stderr
    assert "5 file(s) are safe in the spool but not yet archived" in first.stderr
    assert "5  waiting in the spool for the archive" in first.stdout
    during = measure(config, sources, endpoint=s3_server.endpoint)
    assert during.archived == 0 and during.wrongly_archived == 0
    relay.restore()
    measured = _finish(config, card, sources, s3_server.endpoint)
    fault_log("archive unreachable", "S3 down at start, back for the next run",
              injected_by="TCP relay refusing connections", files_lost=measured.files_lost,
              wrongly_archived=during.wrongly_archived, duplicates=measured.duplicates,
              exit_code=first.returncode, message=first.stderr.strip().splitlines()[-2])


def test_archive_cut_mid_upload(tmp_path: Path, s3_server: Any, s3_bucket: str,
                                relay: FaultyRelay, fault_log: FaultLog) -> None:
    card = tmp_path / "card"
    sources = _card(card, 3)
    config = _station(tmp_path, s3_server, s3_bucket, relay)
    relay.cut_after_bytes = 3 * 1024 * 1024  # every connection dies 3 MiB into a request
    first = _ingest(config, card)
    assert relay.cuts > 0
    assert first.returncode in (0, 6), first.stdout + first.stderr
    during = measure(config, sources, endpoint=s3_server.endpoint)
    assert during.wrongly_archived == 0 and during.duplicates == 0
    relay.restore()
    measured = _finish(config, card, sources, s3_server.endpoint)
    fault_log("archive unreachable", "S3 connection cut 3 MiB into every request (12 MiB multipart)",
              injected_by=f"TCP relay closing mid-request ({relay.cuts} cuts)",
              files_lost=measured.files_lost, wrongly_archived=during.wrongly_archived,
              duplicates=measured.duplicates, exit_code=first.returncode,
              message=(first.stderr.strip().splitlines() or ["(exit 0)"])[-2 if first.returncode else 0])


def test_archive_flapping(tmp_path: Path, s3_server: Any, s3_bucket: str,
                          relay: FaultyRelay, fault_log: FaultLog) -> None:
    card = tmp_path / "card"
    sources = _card(card, 8)
    config = _station(tmp_path, s3_server, s3_bucket, relay)
    codes = []
    with relay.flapping(0.4):
        for _ in range(4):
            result = _ingest(config, card)
            codes.append(result.returncode)
            assert result.returncode in (0, 6), result.stdout + result.stderr
            during = measure(config, sources, endpoint=s3_server.endpoint)
            assert during.wrongly_archived == 0 and during.duplicates == 0
    measured = _finish(config, card, sources, s3_server.endpoint)
    fault_log("archive unreachable", "S3 flapping (down/up every 0.4 s) over 4 runs",
              injected_by="TCP relay toggled by a timer", files_lost=measured.files_lost,
              wrongly_archived=0, duplicates=measured.duplicates,
              exit_code=max(codes), message=f"exit codes of the runs while flapping: {codes}")
