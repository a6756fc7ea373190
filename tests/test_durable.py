"""The crash-safe file primitives and the clock's one time format."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidence_daemon import durable
from evidence_daemon.clock import format_time, parse_optional, parse_time


def test_publish_new_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    target.write_bytes(b"theirs")
    temp = durable.temp_name(target)
    temp.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        durable.publish_new(temp, target)
    assert target.read_bytes() == b"theirs"
    assert not temp.exists()


def test_save_new_creates_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "token"
    durable.save_new(target, b"x" * 10_000, mode=0o600)
    assert target.read_bytes() == b"x" * 10_000
    assert target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        durable.save_new(target, b"other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]


def test_save_replacing_swaps_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    durable.save_replacing(target, b"old")
    durable.save_replacing(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_copy_hashing_copies_and_hashes_every_byte(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # ~10 MB, more than one chunk
    seen: list[int] = []
    out = tmp_path / "copy"
    with out.open("wb") as handle:
        sha, size = durable.copy_hashing(io.BytesIO(data), handle.fileno(), chunk=1 << 20,
                                         on_chunk=seen.append)
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert out.read_bytes() == data
    assert sum(seen) == len(data)


def test_write_all_reports_a_disk_that_takes_nothing(tmp_path: Path) -> None:
    with open("/dev/full", "wb", buffering=0) as full:
        with pytest.raises(OSError) as raised:
            durable.write_all(full.fileno(), b"evidence")
    assert raised.value.errno in durable.NO_SPACE_ERRNOS


def test_times_round_trip_in_utc() -> None:
    moment = datetime(2026, 11, 30, 9, 15, 1, 250, tzinfo=timezone(timedelta(hours=8)))
    text = format_time(moment)
    assert text == "2026-11-30T01:15:01.000250+00:00"
    assert parse_time(text) == moment
    assert parse_time("2026-11-30T01:15:01Z") == datetime(2026, 11, 30, 1, 15, 1, tzinfo=timezone.utc)
    assert parse_time("2026-11-30T01:15:01").tzinfo is timezone.utc
    assert parse_optional(None) is None and parse_optional("") is None
    with pytest.raises(ValueError, match="not an ISO 8601 time: 'yesterday'"):
        parse_time("yesterday")
