"""The crash-safe file primitives and the clock's one time format."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidence_daemon import durable
from evidence_daemon.clock import format_time, parse_optional, parse_time

from .faultlog import FaultLog


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


def test_a_signing_key_cut_short_by_a_full_disk_is_never_left_under_its_name(
    tmp_path: Path, fault_log: FaultLog
) -> None:
    """RLIMIT_FSIZE makes write() store part of the key and then fail, as a nearly full disk
    does. A short key under the final name would stop the writer for good (it is never
    rewritten); the key must be whole or absent, and made whole by the next start."""
    import resource
    import signal

    from evidence_daemon.custody.signing import load_or_create_private_key, public_pem

    path = tmp_path / "keys" / "station.key"
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40, hard))  # a PEM key is ~119 bytes
    try:
        with pytest.raises(OSError) as raised:
            load_or_create_private_key(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert not path.exists()
    assert list(path.parent.iterdir()) == [], "no temp file left behind either"
    key = load_or_create_private_key(path)  # space again: the next start makes the key
    assert public_pem(load_or_create_private_key(path)) == public_pem(key)
    fault_log("short write", "signing key written on a disk that takes 40 bytes",
              injected_by="RLIMIT_FSIZE=40", files_lost=0, wrongly_archived=0, duplicates=0,
              message=str(raised.value))
