"""The ledger writer on a real filesystem archive and SQLite: chain, once-only events, recovery."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.custody import canonical
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.signing import public_pem
from evidence_daemon.custody.verify import Report, verify_ledgers
from evidence_daemon.errors import IntegrityError
from evidence_daemon.state.db import Database


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def writer(tmp_path: Path, key: Ed25519PrivateKey, db_name: str = "state.db") -> LedgerWriter:
    return LedgerWriter(FilesystemArchive(tmp_path / "archive"), Database(tmp_path / db_name),
                        "town-a", key, clock=Clock())


def test_first_append_publishes_the_key_and_chains_entries(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    ledger = writer(tmp_path, key)  # never told to publish: the archive was away at start
    first = ledger.append("acquired", recording="ab" * 32, actor="station:town-a", details={"n": 1})
    second = ledger.append("archived", recording="ab" * 32, actor="station:town-a", details={"n": 2})
    assert (tmp_path / "archive" / "keys" / "town-a.pub").read_bytes() == public_pem(key)
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["prev"] == canonical.GENESIS_PREV
    assert second["prev"] == canonical.entry_hash(first)
    report = Report()
    verify_ledgers(FilesystemArchive(tmp_path / "archive"), report)
    assert report.ok and report.entries_checked == 2


def test_once_only_events_survive_a_lost_index(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    details = {"source_key": "k1", "path": "a.mp4"}
    writer(tmp_path, key).append("acquired", recording="cd" * 32, actor="a", details=details, once=True)
    # the local index is gone (a crash before it was written, or a new state dir)
    fresh = writer(tmp_path, key, db_name="other.db")
    again = fresh.append("acquired", recording="cd" * 32, actor="a", details=details, once=True)
    assert again["seq"] == 1
    entries = sorted((tmp_path / "archive" / "ledger" / "town-a").glob("*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_bytes())["details"]["once"] is True


def test_another_key_for_the_same_writer_is_refused(tmp_path: Path) -> None:
    writer(tmp_path, Ed25519PrivateKey.generate()).append("x", recording=None, actor="a", details={})
    impostor = writer(tmp_path, Ed25519PrivateKey.generate(), db_name="impostor.db")
    with pytest.raises(IntegrityError, match="different public key"):
        impostor.append("x", recording=None, actor="a", details={})
