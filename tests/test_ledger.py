"""The ledger writer on a real filesystem archive and SQLite: chain, once-only events, recovery."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.custody import canonical
from evidence_daemon.custody.chain import Event, Role
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.signing import fingerprint, public_pem
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
                        "town-a", key, role=Role.STATION, clock=Clock())


def test_first_append_publishes_the_key_and_chains_entries(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    ledger = writer(tmp_path, key)  # never told to publish: the archive was away at start
    first = ledger.append(Event.ACQUIRED, recording="ab" * 32, actor="station:town-a", details={"n": 1})
    second = ledger.append(Event.ARCHIVED, recording="ab" * 32, actor="station:town-a", details={"n": 2})
    assert (tmp_path / "archive" / "keys" / "town-a.pub").read_bytes() == public_pem(key)
    # the writer's own signed registration comes first: its role and key
    registration = json.loads((tmp_path / "archive" / "ledger" / "town-a" / "000000000001.json").read_bytes())
    assert registration["event"] == "key-registered" and registration["prev"] == canonical.GENESIS_PREV
    assert registration["details"] == {"role": "station", "fingerprint": fingerprint(key),
                                       "public_key": "keys/town-a.pub"}
    assert (first["seq"], second["seq"]) == (2, 3)
    assert first["prev"] == canonical.entry_hash(registration)
    assert second["prev"] == canonical.entry_hash(first)
    report = Report()
    verify_ledgers(FilesystemArchive(tmp_path / "archive"), report)
    assert report.ok and report.entries_checked == 3
    judgement = report.judgements["town-a"]
    assert (judgement.role, judgement.registered, judgement.trusted) == (Role.STATION, True, None)


def test_once_only_events_survive_a_lost_index(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    details = {"source_key": "k1", "path": "a.mp4"}
    writer(tmp_path, key).append(Event.ACQUIRED, recording="cd" * 32, actor="a", details=details, once=True)
    # the local index is gone (a crash before it was written, or a new state dir)
    fresh = writer(tmp_path, key, db_name="other.db")
    again = fresh.append(Event.ACQUIRED, recording="cd" * 32, actor="a", details=details, once=True)
    assert again["seq"] == 2  # after the registration, which is not repeated either
    entries = sorted((tmp_path / "archive" / "ledger" / "town-a").glob("*.json"))
    assert len(entries) == 2 and json.loads(entries[1].read_bytes())["details"]["once"] is True


def test_another_key_for_the_same_writer_is_refused(tmp_path: Path) -> None:
    writer(tmp_path, Ed25519PrivateKey.generate()).append(Event.QUARANTINED, recording=None,
                                                          actor="a", details={})
    impostor = writer(tmp_path, Ed25519PrivateKey.generate(), db_name="impostor.db")
    with pytest.raises(IntegrityError, match="different public key"):
        impostor.append(Event.QUARANTINED, recording=None, actor="a", details={})


def test_a_writer_signs_only_its_roles_events(tmp_path: Path) -> None:
    station = writer(tmp_path, Ed25519PrivateKey.generate())
    with pytest.raises(IntegrityError, match="a station does not sign 'accessed'"):
        station.append(Event.ACCESSED, recording=None, actor="a", details={})
    with pytest.raises(ValueError):
        station.append("made-up", recording=None, actor="a", details={})  # type: ignore[arg-type]
    assert not (tmp_path / "archive" / "ledger").exists()  # nothing was signed


def test_a_chain_written_before_registrations_gets_one_on_the_next_append(tmp_path: Path) -> None:
    """An archive from before key registrations: its writer's role is inferred (and said to
    be); once the upgraded station appends, its registration is in the chain."""
    key = Ed25519PrivateKey.generate()
    archive = FilesystemArchive(tmp_path / "archive")
    archive.put_bytes("keys/town-a.pub", public_pem(key))
    legacy = {"seq": 1, "prev": canonical.GENESIS_PREV, "time": "2026-11-25T08:00:00.000000+00:00",
              "writer": "town-a", "event": "acquired", "recording": "ab" * 32, "actor": "a",
              "details": {}}
    archive.put_bytes("ledger/town-a/000000000001.json",
                      canonical.stored_bytes(legacy, key.sign(canonical.canonical_bytes(legacy))))
    report = Report()
    verify_ledgers(archive, report)
    judgement = report.judgements["town-a"]
    assert report.ok and (judgement.role, judgement.registered) == (Role.STATION, False)
    assert "inferred from its events" in judgement.note()

    writer(tmp_path, key).append(Event.ARCHIVED, recording="ab" * 32, actor="a", details={})
    report = Report()
    verify_ledgers(archive, report)
    judgement = report.judgements["town-a"]
    assert report.ok and (judgement.role, judgement.registered) == (Role.STATION, True)
    assert [entry["event"] for entry in report.entries] == ["acquired", "key-registered", "archived"]


def test_an_entry_nested_past_the_recursion_limit_is_refused_not_a_crash() -> None:
    from evidence_daemon.custody.canonical import parse_stored
    from evidence_daemon.custody.proofs import parse_proof

    hostile = b'{"sig": "AA==", "details": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_stored(hostile)
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_proof(b"[" * 200_000 + b"]" * 200_000)
