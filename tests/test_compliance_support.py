"""Support for the compliance, metrics, upkeep and report tests (no tests here): a station on
disk with an injected clock, and footage whose end time the test chooses."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from evidence_daemon.config import load_config
from evidence_daemon.station import Station, open_station

from .helpers import write_config

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)  # when the test footage ends


class SteppedClock:
    """The station's clock, moved by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_station(tmp_path: Path, clock: SteppedClock, *, archive_path: Path | None = None,
                 archive: dict[str, Any] | None = None, extra: str = "") -> Station:
    archive = archive or {"backend": "filesystem", "path": str(archive_path or tmp_path / "archive")}
    config = load_config(write_config(tmp_path, archive=archive,
                                      extra="[ingest]\nprobe = false\n" + extra))
    return open_station(config, clock=clock, connect_archive=False)


def write_footage(directory: Path, name: str, content: bytes, ended: datetime = T0) -> Path:
    """A file whose mtime (the recorded end when nothing better is known) is ``ended``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(content)
    os.utime(path, (ended.timestamp(), ended.timestamp()))
    return path
