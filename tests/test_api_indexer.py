"""The API's catalog index (evidence_daemon.api.indexer): pure checks of entries and catalog
rows, then real stations ingesting with the real CLI into a filesystem archive (and two
stations into one S3 bucket), indexed into a fresh catalog database, with entries, keys and
manifests tampered with on disk."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_daemon.api import indexer as indexer_module
from evidence_daemon.api.db import open_api_database
from evidence_daemon.api.catalog_row import LedgerEvent, catalog_row, later
from evidence_daemon.api.entries import check_entry, content_problem
from evidence_daemon.api.indexer import Indexer
from evidence_daemon.archive import keys
from evidence_daemon.archive.base import ArchiveStore
from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.custody import canonical
from evidence_daemon.custody.chain import GENESIS, Head, Role
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.signing import (
    fingerprint,
    load_or_create_private_key,
    load_public_pem,
    public_pem,
)
from evidence_daemon.errors import StorageError
from evidence_daemon.state.db import Database

from .footage import ffmpeg_available, make_video, sample_tree
from .helpers import run_cli, write_config

needs_ffmpeg = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

STATION = "test-station"
SHA = "ab" * 32
WRITES = ("put_original", "put_bytes", "set_legal_hold", "extend_retention")


# -- helpers ----------------------------------------------------------------------------------


class CountingStore:
    """The real store, with every call recorded (to prove what a poll reads, and that it
    never writes)."""

    def __init__(self, inner: ArchiveStore) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, str(args[0]) if args else ""))
            return attribute(*args, **kwargs)

        return call

    def writes(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if call[0] in WRITES]


def counting(store: ArchiveStore) -> tuple[ArchiveStore, CountingStore]:
    wrapper = CountingStore(store)
    return cast(ArchiveStore, wrapper), wrapper


def catalog_rows(database: Database, table: str) -> list[dict[str, Any]]:
    """A table's rows without the columns that only say when they were written."""
    rows = [dict(row) for row in database.query(f"SELECT * FROM {table}")]
    for row in rows:
        row.pop("indexed_at", None)
        row.pop("updated_at", None)
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


def recordings_by_id(database: Database) -> dict[str, dict[str, Any]]:
    return {row["sha256"]: dict(row) for row in database.query("SELECT * FROM recordings")}


def events(database: Database, writer: str = STATION) -> dict[int, dict[str, Any]]:
    return {row["seq"]: dict(row) for row in database.query(
        "SELECT * FROM events WHERE writer = ? ORDER BY seq", (writer,))}


def ledger_on_disk(archive: Path, writer: str = STATION) -> dict[int, dict[str, Any]]:
    """The entries as the station stored them (upload workers interleave recordings)."""
    return {int(path.stem): json.loads(path.read_bytes())
            for path in (archive / "ledger" / writer).glob("*.json")}


def archived_by_seq(archive: Path) -> dict[int, str]:
    return {seq: entry["recording"] for seq, entry in ledger_on_disk(archive).items()
            if entry["event"] == "archived"}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in root.rglob("*") if path.is_file()}


def writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def ingest(capsys: pytest.CaptureFixture[str], config: Path, card: Path) -> None:
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 0, out + err


def byte_station(tmp_path: Path, capsys: pytest.CaptureFixture[str], count: int,
                 *, name: str = "station") -> tuple[Path, Path, list[str]]:
    """A station that ingested ``count`` small files (not video: flagged unplayable).
    Returns (config, archive root, recording ids in ingest order)."""
    config = write_config(tmp_path / name)
    card = tmp_path / name / "card"
    ids = add_files(card, 0, count)
    ingest(capsys, config, card)
    return config, tmp_path / name / "archive", ids


def add_files(card: Path, first: int, count: int) -> list[str]:
    card.mkdir(parents=True, exist_ok=True)
    ids = []
    for number in range(first, first + count):
        data = f"recording number {number}".encode()
        (card / f"DSJ001_10086_20261125083{number % 10}00_{number:04d}.MP4").write_bytes(data)
        ids.append(hashlib.sha256(data).hexdigest())
    return ids


def fresh_indexer(tmp_path: Path, store: ArchiveStore, name: str = "catalog") -> tuple[Indexer, Database]:
    database = open_api_database(tmp_path / f"{name}.sqlite3")
    return Indexer(store, database), database


def api_ledger(tmp_path: Path, store: ArchiveStore, database: Database | None = None,
               writer: str = "api-1") -> LedgerWriter:
    database = database or open_api_database(tmp_path / f"{writer}-node.sqlite3")
    key = load_or_create_private_key(tmp_path / f"{writer}.key")
    return LedgerWriter(store, database, writer, key, role=Role.API)


def signed(key: Ed25519PrivateKey, **fields: Any) -> tuple[dict[str, Any], bytes]:
    entry = {"seq": 1, "prev": canonical.GENESIS_PREV, "time": "2026-11-25T01:00:00.000000+00:00",
             "writer": "w", "event": "note-added", "recording": SHA, "actor": "user:ann",
             "details": {"text": "x"}}
    entry.update(fields)
    signature = key.sign(canonical.canonical_bytes(entry))
    return entry, canonical.stored_bytes(entry, signature)


# -- pure: one entry --------------------------------------------------------------------------

KEY = Ed25519PrivateKey.generate()


def _altered(data: bytes) -> bytes:
    return data.replace(b'"text":"x"', b'"text":"y"')


@pytest.mark.parametrize(
    ("seq", "head", "change", "verified", "expected"),
    [
        (1, GENESIS, None, True, None),
        (1, GENESIS, _altered, False, "signature does not verify with the writer's key: the entry was altered"),
        (3, Head(1, "f" * 64), None, False, "entry 2 of writer w is missing before this one"),
        (5, Head(1, "f" * 64), None, False, "entries 2..4 of writer w are missing before this one"),
        (1, Head(0, "e" * 64), None, False, "prev does not match the hash of entry 0: the chain is broken"),
        (1, Head(0, ""), None, False, "prev cannot be checked: entry 0 before it is unreadable"),
        (1, GENESIS, lambda data: b"{not json", False, "not a valid ledger entry (not JSON"),
        (1, GENESIS, lambda data: data.replace(b'"sig":"', b'"sig":"!'), False, "signature is not base64"),
    ],
)
def test_check_entry(seq: int, head: Head, change: Callable[[bytes], bytes] | None,
                     verified: bool, expected: str | None) -> None:
    entry, data = signed(KEY, seq=seq)
    checked = check_entry("w", seq, change(data) if change else data, KEY.public_key(), head)
    assert checked.verified is verified
    if expected is None:
        assert checked.problem is None
        assert checked.chain_hash == canonical.entry_hash(entry) == checked.entry.entry_hash
    else:
        assert checked.problem is not None and expected in checked.problem


def test_check_entry_names_a_misplaced_entry_and_keeps_content_problems_apart() -> None:
    _, data = signed(KEY, seq=2)
    misplaced = check_entry("w", 1, data, KEY.public_key(), GENESIS)
    assert not misplaced.verified and "seq or writer inside (w#2) does not match its key" in str(misplaced.problem)
    # Authentic, but it names a key that is not this recording's: verified, changes nothing.
    _, data = signed(KEY, event="derived", details={"proxy": {"key": "recordings/../x", "sha256": SHA}})
    foreign = check_entry("w", 1, data, KEY.public_key(), GENESIS)
    assert foreign.verified and "is not this recording's proxy" in str(foreign.problem)
    assert check_entry("w", 1, data, Ed25519PrivateKey.generate().public_key(), GENESIS,
                       key_note=" (key changed)").problem is not None


@pytest.mark.parametrize(
    ("event", "recording", "details", "expected"),
    [
        ("archived", SHA, {"manifest_key": keys.manifest_key(SHA), "manifest_sha256": SHA}, None),
        ("archived", SHA, {"manifest_key": "recordings/x/manifest.json", "manifest_sha256": SHA}, "ignored"),
        ("archived", None, {}, "without a recording id"),
        ("derived", SHA, {"proxy": {"key": keys.proxy_key(SHA, "m4a"), "sha256": SHA}, "poster": None}, None),
        ("derived", SHA, {"proxy": None, "poster": {"key": keys.proxy_key(SHA), "sha256": SHA}}, "poster"),
        ("flagged", SHA, {"flag": "unplayable", "reason": "r"}, None),
        ("flagged", SHA, {"reason": "r"}, "without a flag"),
        ("hold-placed", SHA, {"hold_id": 7}, "without a hold_id"),
        ("case-unlinked", SHA, {"case_id": ""}, "without a case_id"),
        ("retention-extended", SHA, {"retain_until": "2031-01-01T00:00:00+00:00", "in_force": None}, None),
        ("retention-extended", SHA, {"retain_until": "soon", "in_force": None}, "valid date"),
        ("accessed", None, {}, None),
        ("acquired", "not-a-sha", {}, None),
    ],
)
def test_content_problem(event: str, recording: str | None, details: dict[str, Any],
                         expected: str | None) -> None:
    problem = content_problem(event, recording, details)
    assert (problem is None) if expected is None else (problem is not None and expected in problem)


# -- pure: one catalog row --------------------------------------------------------------------


def manifest_bytes(**changes: Any) -> bytes:
    manifest = {
        "sha256": SHA, "recording": SHA, "size_bytes": 10, "extension": "mp4",
        "original_key": keys.original_key(SHA, "mp4"), "station": "town-a", "device_id": "DSJ001",
        "officer_id": "10086", "recorded_start": "2026-11-25T08:30:00+08:00",
        "recorded_end": "2026-11-25T08:31:00+08:00", "time_source": "filename",
        "timezone": "Asia/Shanghai", "archive_deadline": "2026-11-26T08:31:00+08:00",
        "verified_at": "2026-11-25T01:00:00.000000+00:00", "media": {"duration_s": 60.0},
        "flags": ["officer_mismatch"], "flag_reasons": {"officer_mismatch": "assigned to 10010"},
        "storage": {"retain_until": "2027-05-24T01:00:00+00:00"},
    }
    manifest.update(changes)
    return json.dumps(manifest, indent=2).encode()


ARCHIVED = LedgerEvent("town-a", 2, "2026-11-25T01:00:01+00:00", "archived",
                       {"manifest_key": keys.manifest_key(SHA), "manifest_sha256": SHA})


def event(name: str, details: dict[str, Any], seq: int = 1, writer: str = "api-1") -> LedgerEvent:
    return LedgerEvent(writer, seq, f"2026-11-26T00:00:{seq:02d}+00:00", name, details)


@pytest.mark.parametrize(
    ("changes", "sort_time", "compliance"),
    [
        ({}, "2026-11-25T00:30:00.000000+00:00", "on_time"),
        ({"recorded_start": "2026-11-25T08:30:00"}, "2026-11-25T00:30:00.000000+00:00", "on_time"),
        ({"recorded_start": None}, "2026-11-25T01:00:00.000000+00:00", "on_time"),
        ({"verified_at": "2026-11-26T00:31:00.000001+00:00"}, "2026-11-25T00:30:00.000000+00:00", "late"),
        ({"verified_at": "2026-11-26T00:31:00+00:00"}, "2026-11-25T00:30:00.000000+00:00", "on_time"),
        ({"archive_deadline": None}, "2026-11-25T00:30:00.000000+00:00", "on_time"),
    ],
)
def test_catalog_row_times(changes: dict[str, Any], sort_time: str, compliance: str) -> None:
    row, _ = catalog_row(SHA, manifest_bytes(**changes), ARCHIVED, [ARCHIVED], indexed_at="now")
    assert (row["sort_time"], row["compliance"]) == (sort_time, compliance)


def test_catalog_row_applies_every_kind_of_event() -> None:
    data = manifest_bytes()
    history = [
        ARCHIVED,
        event("derived", {"proxy": {"key": keys.proxy_key(SHA), "sha256": "1" * 64}, "poster": None}, 1, "town-a"),
        event("derived", {"proxy": {"key": keys.proxy_key(SHA), "sha256": "2" * 64},
                          "poster": {"key": keys.poster_key(SHA), "sha256": "3" * 64}}, 2, "town-a"),
        event("flagged", {"flag": "unplayable", "reason": "moov atom not found"}, 3, "town-a"),
        event("hold-placed", {"hold_id": "h1"}, 4), event("hold-placed", {"hold_id": "h2"}, 5),
        event("hold-released", {"hold_id": "h1"}, 6),
        event("case-linked", {"case_id": "C-1"}, 7), event("case-linked", {"case_id": "C-2"}, 8),
        event("case-unlinked", {"case_id": "C-1"}, 9),
        event("note-added", {"text": "a"}, 10), event("note-added", {"text": "b"}, 11),
        event("retention-extended", {"retain_until": "2030-01-01T00:00:00+00:00", "in_force": None}, 12),
        event("retention-extended", {"retain_until": "2029-01-01T00:00:00+00:00", "in_force": None}, 13),
        event("hold-placed", {"hold_id": 5}, 14),  # malformed: ignored
    ]
    row, cases = catalog_row(SHA, data, ARCHIVED, history, indexed_at="now")
    assert (row["proxy_sha256"], row["poster_key"], row["poster_sha256"]) == (
        "2" * 64, keys.poster_key(SHA), "3" * 64)
    assert json.loads(row["flags"]) == ["officer_mismatch", "unplayable"]
    assert json.loads(row["flag_reasons"])["unplayable"] == "moov atom not found"
    assert row["held"] == 1 and cases == ["C-2"] and json.loads(row["cases"]) == ["C-2"]
    assert row["notes"] == 2 and row["retain_until"] == "2030-01-01T00:00:00+00:00"
    assert (row["archived_by"], row["archived_seq"], row["station"]) == ("town-a", 2, "town-a")
    assert row["manifest"] == data.decode() and row["manifest_sha256"] == hashlib.sha256(data).hexdigest()

    released = catalog_row(SHA, data, ARCHIVED, [*history, event("hold-released", {"hold_id": "h2"}, 15)],
                           indexed_at="now")[0]
    assert released["held"] == 0


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sha256": "cd" * 32}, "another recording"),
        ({"original_key": "recordings/elsewhere/original.mp4"}, "original_key"),
        ({"extension": "../x"}, "not a safe extension"),
        ({"station": None}, "no station"),
        ({"verified_at": "yesterday"}, "verified_at"),
        ({"flags": "unplayable"}, "wrong type"),
    ],
)
def test_catalog_row_refuses_a_manifest_it_cannot_trust(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        catalog_row(SHA, manifest_bytes(**changes), ARCHIVED, [ARCHIVED], indexed_at="now")


def test_later_never_shortens() -> None:
    assert later(None, "2030-01-01T00:00:00+00:00") == "2030-01-01T00:00:00+00:00"
    assert later("2030-01-01T00:00:00+00:00", "2029-01-01T00:00:00+00:00") == "2030-01-01T00:00:00+00:00"
    assert later("2030-01-01T00:00:00+00:00", None) == "2030-01-01T00:00:00+00:00"
    assert later("2030-01-01T08:00:00+08:00", "2030-01-01T00:00:01+00:00") == "2030-01-01T00:00:01+00:00"


# -- real stations, filesystem archive --------------------------------------------------------


@pytest.fixture(scope="module")
def sample_station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A sample card (video, audio, photo, truncated, empty, garbage) ingested with the CLI."""
    if not ffmpeg_available():
        pytest.skip("ffmpeg/ffprobe not installed")
    from evidence_daemon.cli import main

    base = tmp_path_factory.mktemp("sample")
    files = sample_tree(base / "card")
    config = write_config(base)
    assert main(["--config", str(config), "ingest", str(base / "card")]) == 0
    yield {"archive": base / "archive", "files": files, "config": config}


@needs_ffmpeg
def test_a_card_is_catalogued_with_the_manifests_facts(
    tmp_path: Path, sample_station: dict[str, Any]
) -> None:
    archive = sample_station["archive"]
    before = snapshot(archive)
    store, calls = counting(FilesystemArchive(archive))
    indexer, database = fresh_indexer(tmp_path, store)
    assert indexer.last_poll_at is None

    result = indexer.poll()

    # + 1 key-registered, and the checkpoint the ingest signs at its end
    assert (result.entries, result.recordings, result.problems) == (16, 7, [])
    assert indexer.last_poll_at is not None
    recordings = recordings_by_id(database)
    ledger = events(database)
    assert len(recordings) == 7 and all(entry["verified"] == 1 for entry in ledger.values())
    for sha256, row in recordings.items():
        data = (archive / keys.manifest_key(sha256)).read_bytes()
        manifest = json.loads(data)
        for column in ("station", "device_id", "officer_id", "recorded_start", "recorded_end",
                       "time_source", "timezone", "archive_deadline", "size_bytes", "extension",
                       "original_key"):
            assert row[column] == manifest[column], column
        assert row["manifest"] == data.decode() and row["manifest_sha256"] == hashlib.sha256(data).hexdigest()
        assert row["archived_at"] == manifest["verified_at"]
        assert json.loads(row["flags"]) == manifest["flags"]
        assert json.loads(row["flag_reasons"]) == manifest["flag_reasons"]
        assert json.loads(row["media"] or "null") == manifest["media"]
        assert row["retain_until"] == manifest["storage"]["retain_until"]
        archived = ledger[row["archived_seq"]]
        assert row["archived_by"] == STATION and archived["event"] == "archived"
        assert archived["recording"] == sha256
        assert json.loads(archived["details"])["manifest_sha256"] == row["manifest_sha256"]
        late = (datetime.fromisoformat(manifest["verified_at"])
                > datetime.fromisoformat(manifest["archive_deadline"]))
        assert row["compliance"] == ("late" if late else "on_time")

    def digest(role: str) -> str:
        return hashlib.sha256(sample_station["files"][role].read_bytes()).hexdigest()

    assert recordings[digest("video")]["sort_time"] == "2026-11-25T00:30:00.000000+00:00"
    garbage = recordings[digest("garbage")]  # no time in its name: sorted by its archive time
    assert garbage["recorded_start"] is None and garbage["sort_time"] == garbage["archived_at"]
    assert json.loads(recordings[digest("truncated")]["flags"]) == ["unplayable"]
    assert json.loads(recordings[digest("empty")]["flags"]) == ["empty"]

    [writer] = database.query("SELECT * FROM writers")
    pem = (archive / keys.public_key_key(STATION)).read_bytes()
    assert writer["public_key"] == pem.decode() and writer["problem"] is None
    assert writer["fingerprint"] == fingerprint(load_public_pem(pem, what="key"))
    assert (writer["head_seq"], writer["head_hash"]) == (16, ledger[16]["entry_hash"])

    assert calls.writes() == [] and snapshot(archive) == before  # never writes to the archive


def test_a_poll_with_nothing_new_is_cheap_and_more_ingest_reads_only_the_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, archive, ids = byte_station(tmp_path, capsys, 2)
    store, calls = counting(FilesystemArchive(archive))
    indexer, database = fresh_indexer(tmp_path, store)
    assert (indexer.poll().entries, indexer.poll().entries) == (6, 0)  # with the checkpoint

    calls.calls.clear()
    result = indexer.poll()
    assert (result.entries, result.recordings, result.problems) == (0, 0, [])
    assert calls.calls == [("list_keys", "keys/"), ("list_keys", f"ledger/{STATION}/")]

    more = add_files(tmp_path / "station" / "card", 2, 2)
    ingest(capsys, config, tmp_path / "station" / "card")
    calls.calls.clear()
    result = indexer.poll()
    assert (result.entries, result.recordings) == (5, 2)
    read = [key for name, key in calls.calls if name == "get_bytes"]
    assert sorted(key for key in read if key.startswith("ledger/")) == [
        keys.ledger_key(STATION, seq) for seq in (7, 8, 9, 10, 11)]
    assert sorted(key for key in read if key.startswith("recordings/")) == sorted(
        keys.manifest_key(sha256) for sha256 in more)
    assert set(recordings_by_id(database)) == set(ids + more)

    before = {table: catalog_rows(database, table) for table in ("writers", "events", "recordings")}
    result = indexer.reindex()
    assert (result.entries, result.recordings, result.problems) == (11, 4, [])
    assert {table: catalog_rows(database, table) for table in before} == before
    assert calls.writes() == []


def test_reindex_keeps_users_grants_and_the_nodes_own_ledger_index(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, archive, [sha256] = byte_station(tmp_path, capsys, 1)
    store = FilesystemArchive(archive)
    indexer, database = fresh_indexer(tmp_path, store)
    ledger = api_ledger(tmp_path, store, database)
    ledger.append("note-added", recording=sha256, actor="user:ann", details={"text": "seen"})
    database.execute("INSERT INTO users (name, role, token_hash, created_at, created_by)"
                     " VALUES ('ann', 'auditor', 'h', 't', 'admin')")
    indexer.poll()
    assert recordings_by_id(database)[sha256]["notes"] == 1
    indexer.reindex()
    assert recordings_by_id(database)[sha256]["notes"] == 1
    assert database.scalar("SELECT COUNT(*) FROM users") == 1
    assert database.scalar("SELECT COUNT(*) FROM ledger") == 2  # key-registered, note


@needs_ffmpeg
def test_a_derived_event_fills_the_proxy_and_poster(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "card"
    make_video(card / "a.mp4", seconds=1)
    config = write_config(tmp_path, extra="[media]\nproxy_max_width = 160\nproxy_max_height = 120\n")
    ingest(capsys, config, card)
    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(tmp_path / "archive"))
    indexer.poll()
    [row] = recordings_by_id(database).values()
    assert row["proxy_key"] is None and row["poster_key"] is None

    code, out, err = run_cli(capsys, "--config", str(config), "proxies", "--run")
    assert code == 0, out + err
    result = indexer.poll()
    assert (result.entries, result.recordings, result.problems) == (1, 1, [])
    [row] = recordings_by_id(database).values()
    sha256 = row["sha256"]
    assert row["proxy_key"] == keys.proxy_key(sha256) and row["poster_key"] == keys.poster_key(sha256)
    for key, digest in ((row["proxy_key"], row["proxy_sha256"]), (row["poster_key"], row["poster_sha256"])):
        assert hashlib.sha256((tmp_path / "archive" / key).read_bytes()).hexdigest() == digest


def test_an_altered_entry_is_marked_and_indexing_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer_module, "BATCH_ENTRIES", 2)  # the chain carries across batches
    _, archive, _ = byte_station(tmp_path, capsys, 3)
    path = writable(archive / keys.ledger_key(STATION, 3))
    data = path.read_bytes()
    assert b'"time":"2026-' in data
    path.write_bytes(data.replace(b'"time":"2026-', b'"time":"2025-', 1))  # one byte

    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(archive))
    result = indexer.poll()

    ledger = events(database)
    assert result.entries == 8 and sorted(ledger) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert ledger[3]["verified"] == 0
    assert "signature does not verify with the writer's key: the entry was altered" in ledger[3]["problem"]
    assert ledger[4]["verified"] == 0 and "the chain is broken" in ledger[4]["problem"]
    assert [ledger[seq]["verified"] for seq in (1, 2, 5, 6, 7, 8)] == [1, 1, 1, 1, 1, 1]
    assert any(keys.ledger_key(STATION, 3) in problem and "altered" in problem
               for problem in result.problems)
    # A recording whose 'archived' event (3 or 4) does not verify is not catalogued.
    assert set(recordings_by_id(database)) == {
        sha256 for seq, sha256 in archived_by_seq(archive).items() if seq not in (3, 4)}
    writer_problem = database.scalar("SELECT problem FROM writers WHERE writer = ?", (STATION,))
    assert "entries with problems: 2, the first at seq 3" in writer_problem


def test_an_unreadable_entry_and_a_missing_one_are_named(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, archive, ids = byte_station(tmp_path, capsys, 4)
    archived = archived_by_seq(archive)
    writable(archive / keys.ledger_key(STATION, 2)).write_bytes(b"\x00 not json")
    (archive / keys.ledger_key(STATION, 5)).unlink()  # the test's copy; the indexer never deletes

    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(archive))
    result = indexer.poll()

    ledger = events(database)
    assert sorted(ledger) == [1, 2, 3, 4, 6, 7, 8, 9, 10] and result.entries == 9
    assert ledger[2]["event"] == "unreadable" and "not a valid ledger entry" in ledger[2]["problem"]
    assert "prev cannot be checked: entry 2 before it is unreadable" in ledger[3]["problem"]
    assert ledger[6]["problem"] == f"entry 5 of writer {STATION} is missing before this one"
    assert [ledger[seq]["verified"] for seq in (1, 4, 7, 8, 9)] == [1, 1, 1, 1, 1]
    assert set(recordings_by_id(database)) == {
        sha256 for seq, sha256 in archived.items() if seq in (1, 4, 7, 8, 9)}


def test_an_altered_manifest_keeps_its_recording_out_of_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, archive, ids = byte_station(tmp_path, capsys, 2)
    [archived_seq] = [seq for seq, sha256 in archived_by_seq(archive).items() if sha256 == ids[0]]
    manifest = writable(archive / keys.manifest_key(ids[0]))
    manifest.write_bytes(manifest.read_bytes().replace(b'"officer_id": "10086"', b'"officer_id": "10087"'))

    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(archive))
    result = indexer.poll()

    assert set(recordings_by_id(database)) == {ids[1]}
    assert [problem for problem in result.problems if ids[0][:12] in problem] == [
        f"recording {ids[0][:12]}: {keys.manifest_key(ids[0])} does not hash to the manifest_sha256"
        f" of this event: the manifest was altered; not catalogued from {STATION}#{archived_seq}"]
    archived = events(database)[archived_seq]
    assert archived["verified"] == 1 and "the manifest was altered" in archived["problem"]
    assert indexer.poll().problems == []  # reported once, kept on the event


def test_events_of_another_writer_may_come_before_the_archived_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, archive, [sha256] = byte_station(tmp_path, capsys, 1)
    ledger = api_ledger(tmp_path, FilesystemArchive(archive))
    for name, details in (
        ("hold-placed", {"hold_id": "h1", "reason": "r", "case_id": None, "applied": False}),
        ("hold-placed", {"hold_id": "h2", "reason": "r", "case_id": None, "applied": False}),
        ("hold-released", {"hold_id": "h1", "reason": "r", "case_id": None, "applied": False}),
        ("case-linked", {"case_id": "CASE-1", "reason": "r"}),
        ("case-linked", {"case_id": "CASE-2", "reason": "r"}),
        ("case-unlinked", {"case_id": "CASE-2", "reason": "r"}),
        ("note-added", {"text": "first"}),
        ("note-added", {"text": "second"}),
        ("retention-extended", {"retain_until": "2030-01-01T00:00:00+00:00", "in_force": None,
                                "reason": "r"}),
    ):
        ledger.append(name, recording=sha256, actor="user:sup", details=details)

    # The API node's entries are read first: the station's ledger is not there yet.
    partial = tmp_path / "partial"
    shutil.copytree(archive, partial, ignore=shutil.ignore_patterns(STATION))
    shutil.copy2(archive / keys.public_key_key(STATION), partial / keys.public_key_key(STATION))
    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(partial))
    result = indexer.poll()
    assert (result.entries, result.recordings) == (10, 0) and recordings_by_id(database) == {}
    assert {row["writer"] for row in database.query("SELECT writer FROM writers")} == {"api-1", STATION}

    shutil.copytree(archive / "ledger" / STATION, partial / "ledger" / STATION)
    result = indexer.poll()
    assert (result.entries, result.recordings) == (4, 1)  # with the ingest's checkpoint
    row = recordings_by_id(database)[sha256]
    assert (row["held"], json.loads(row["cases"]), row["notes"], row["retain_until"]) == (
        1, ["CASE-1"], 2, "2030-01-01T00:00:00+00:00")
    assert [tuple(link) for link in database.query("SELECT case_id, sha256 FROM case_links")] == [
        ("CASE-1", sha256)]

    in_order, in_order_database = fresh_indexer(tmp_path, FilesystemArchive(archive), "in-order")
    in_order.poll()
    for table in ("recordings", "case_links", "events"):
        assert catalog_rows(in_order_database, table) == catalog_rows(database, table)


def test_duplicate_archived_events_keep_the_first_and_both_show_in_custody(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two stations on one filesystem archive archive the same bytes."""
    shared = {"backend": "filesystem", "path": str(tmp_path / "archive")}
    for station in ("town-a", "town-b"):
        config = write_config(tmp_path / station, station_id=station, archive=shared)
        add_files(tmp_path / station / "card", 0, 1)
        ingest(capsys, config, tmp_path / station / "card")
    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(tmp_path / "archive"))
    indexer.poll()
    [row] = recordings_by_id(database).values()
    assert (row["archived_by"], row["station"]) == ("town-a", "town-a")
    custody = database.query("SELECT writer, event, verified FROM events WHERE recording = ?"
                             " AND event = 'archived' ORDER BY time", (row["sha256"],))
    assert [(item["writer"], item["verified"]) for item in custody] == [("town-a", 1), ("town-b", 1)]


def test_index_own_indexes_this_nodes_next_entry_at_once(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, archive, [sha256] = byte_station(tmp_path, capsys, 1)
    store = FilesystemArchive(archive)
    indexer, database = fresh_indexer(tmp_path, store)
    ledger = api_ledger(tmp_path, store, database)  # one database, as on an API node

    first = ledger.append("accessed", recording=sha256, actor="user:ann",
                          details={"kind": "original", "reason": "review"})
    assert indexer.index_own(ledger.writer, first["seq"])  # before any poll: key pinned now
    indexer.poll()
    entry = ledger.append("hold-placed", recording=sha256, actor="user:sup",
                          details={"hold_id": "h1", "reason": "appeal", "case_id": None, "applied": False})
    assert indexer.index_own(ledger.writer, entry["seq"]) is True
    assert recordings_by_id(database)[sha256]["held"] == 1
    assert indexer.index_own(ledger.writer, entry["seq"]) is True  # already in
    assert indexer.index_own(ledger.writer, entry["seq"] + 2) is False  # not the next one
    assert indexer.index_own("nobody", 1) is False
    assert indexer.index_own("../x", 1) is False
    assert database.scalar("SELECT COUNT(*) FROM writers WHERE writer = 'nobody'") == 0
    assert indexer.poll().entries == 0

    # Request threads index their entries while the poller runs.
    stop = threading.Event()
    failures: list[BaseException] = []

    def poll_loop() -> None:
        while not stop.is_set():
            try:
                indexer.poll()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)
                return

    poller = threading.Thread(target=poll_loop)
    poller.start()
    try:
        for number in range(25):
            entry = ledger.append("note-added", recording=sha256, actor="user:sup",
                                  details={"text": f"note {number}"})
            indexer.index_own(ledger.writer, entry["seq"])
    finally:
        stop.set()
        poller.join()
    assert failures == []
    indexer.poll()
    own = events(database, ledger.writer)
    assert sorted(own) == list(range(1, 29)) and all(item["verified"] for item in own.values())
    assert recordings_by_id(database)[sha256]["notes"] == 25


def test_a_missing_public_key_holds_back_its_writer_until_it_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, archive, ids = byte_station(tmp_path, capsys, 1)
    key_path = archive / keys.public_key_key(STATION)
    saved = key_path.read_bytes()
    key_path.unlink()

    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(archive))
    result = indexer.poll()  # the writer is found in ledger/
    assert result.entries == 0 and recordings_by_id(database) == {}
    assert result.problems == [f"writer {STATION}: public key keys/{STATION}.pub missing: "
                               "entries not indexed until it is there"]
    assert "missing" in database.scalar("SELECT problem FROM writers WHERE writer = ?", (STATION,))
    assert indexer.poll().problems == []

    key_path.write_bytes(saved)
    result = indexer.poll()
    assert (result.entries, result.problems) == (4, []) and set(recordings_by_id(database)) == set(ids)
    assert database.scalar("SELECT problem FROM writers WHERE writer = ?", (STATION,)) is None


def test_a_changed_public_key_is_reported_not_adopted(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _, archive, _ = byte_station(tmp_path, capsys, 1)
    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(archive))
    indexer.poll()
    indexed = database.scalar("SELECT fingerprint FROM writers WHERE writer = ?", (STATION,))

    # Someone replaces the station's key and appends an entry signed with theirs.
    forger = Ed25519PrivateKey.generate()
    writable(archive / keys.public_key_key(STATION)).write_bytes(public_pem(forger))
    head = events(database)[4]  # the ingest's checkpoint
    _, data = signed(forger, seq=5, prev=head["entry_hash"], writer=STATION, recording=None,
                     event="quarantined", details={})
    (archive / keys.ledger_key(STATION, 5)).write_bytes(data)

    result = indexer.poll()
    forged = events(database)[5]
    assert forged["verified"] == 0 and "altered (or signed with the different key" in forged["problem"]
    problem = database.scalar("SELECT problem FROM writers WHERE writer = ?", (STATION,))
    assert f"public key keys/{STATION}.pub in the archive changed (indexed {indexed}" in problem
    assert any("in the archive changed" in item for item in result.problems)
    assert database.scalar("SELECT fingerprint FROM writers WHERE writer = ?", (STATION,)) == indexed


def test_stray_objects_are_reported_once_and_never_crash_a_poll(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, archive, ids = byte_station(tmp_path, capsys, 1)
    (archive / "keys" / "README.txt").write_text("keys of the stations\n")
    (archive / "ledger" / "notes.txt").write_text("x")
    (archive / "ledger" / STATION / "zzz.json").write_text("{}")
    indexer, database = fresh_indexer(tmp_path, FilesystemArchive(archive))
    result = indexer.poll()
    assert result.entries == 4 and set(recordings_by_id(database)) == set(ids)
    assert sorted(result.problems) == [
        "keys/README.txt: unexpected object among the public keys",
        "ledger/notes.txt: unexpected object in the ledger area",
        f"ledger/{STATION}/zzz.json: unexpected object in the ledger area",
    ]
    assert indexer.poll().problems == []


class UnreachableStore(FilesystemArchive):
    def list_keys(self, prefix: str, *, start_after: str = "") -> Iterator[str]:
        raise StorageError("archive unreachable: connection refused")


def test_an_unreachable_archive_raises_storage_error(tmp_path: Path) -> None:
    indexer, _ = fresh_indexer(tmp_path, UnreachableStore(tmp_path / "archive"))
    with pytest.raises(StorageError, match="unreachable"):
        indexer.poll()
    assert indexer.last_poll_at is None


# -- S3: two stations, one bucket -------------------------------------------------------------


@pytest.mark.s3
def test_one_indexer_sees_two_stations_in_one_s3_bucket(
    tmp_path: Path, s3_server: Any, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids: dict[str, str] = {}
    for station in ("town-a", "town-b"):
        card = tmp_path / station / "card"
        card.mkdir(parents=True)
        (card / "same.mp4").write_bytes(b"one recording, docked in two towns")
        (card / f"{station}.mp4").write_bytes(station.encode())
        ids[station] = hashlib.sha256(station.encode()).hexdigest()
        config = write_config(tmp_path / station, station_id=station, archive={
            "backend": "s3", "endpoint": s3_server.endpoint, "bucket": s3_bucket,
            "access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
            "secure": s3_server.secure, "part_size_mib": 5, "retention_days": 1,
        })
        ingest(capsys, config, card)
    shared = hashlib.sha256(b"one recording, docked in two towns").hexdigest()

    store, calls = counting(s3_server.archive(s3_bucket))
    indexer, database = fresh_indexer(tmp_path, store)
    result = indexer.poll()

    assert result.problems == [] and result.recordings == 3
    writers = {row["writer"]: row for row in database.query("SELECT * FROM writers")}
    assert set(writers) == {"town-a", "town-b"}
    assert all(row["problem"] is None and row["fingerprint"] for row in writers.values())
    recordings = recordings_by_id(database)
    assert set(recordings) == {shared, ids["town-a"], ids["town-b"]}
    assert recordings[ids["town-b"]]["station"] == "town-b"
    assert recordings[shared]["archived_by"] == "town-a"
    assert recordings[ids["town-a"]]["retain_until"] is not None  # Object Lock date from the manifest
    assert {row["writer"] for row in database.query(
        "SELECT writer FROM events WHERE recording = ? AND event = 'archived'", (shared,))} == {
        "town-a", "town-b"}
    assert all(row["verified"] == 1 for row in database.query("SELECT verified FROM events"))

    calls.calls.clear()
    assert indexer.poll().entries == 0
    assert sorted(calls.calls) == [("list_keys", "keys/"), ("list_keys", "ledger/town-a/"),
                                   ("list_keys", "ledger/town-b/")]
    assert calls.writes() == []
