"""Evidence packages (evidence_daemon.api.package): real footage ingested by the real CLI, viewing
copies made by ffmpeg, the API catalog filled by the indexer, a package exported and then
tampered with in every way we can think of. ``verify_package`` must name the file each time.
Ledger entries about recordings outside the package go in only as redaction stubs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_daemon.api import package as pkg
from evidence_daemon.api.db import open_api_database
from evidence_daemon.api.indexer import Indexer
from evidence_daemon.archive import keys
from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.cli import main
from evidence_daemon.custody import canonical
from evidence_daemon.custody.chain import Role
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.signing import fingerprint, load_or_create_private_key, public_pem
from evidence_daemon.custody.trust import normal_fingerprint
from evidence_daemon.custody.verify import Problem
from evidence_daemon.errors import (
    ConfigError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    UsageError,
)
from evidence_daemon.state.db import Database
from .faultlog import FaultLog
from .footage import ffmpeg_available, make_audio_wav, make_video
from .helpers import write_config
from .proof_fixtures import append_checkpoint, station_ledger

pytestmark = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

API_WRITER = "api-1"
MEDIA_SECTION = "[media]\nproxy_max_width = 256\nproxy_max_height = 240\n"
EXPORTED_AT = datetime(2026, 11, 26, 2, 0, 0, tzinfo=timezone.utc)
# How the view of the other recording was recorded: none of it may reach the package.
OTHER_VIEW = {"kind": "proxy", "reason": "neighbour dispute 2026-0871", "remote": "203.0.113.77"}


def cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


@dataclass
class World:
    store: FilesystemArchive
    database: Database
    ledger: LedgerWriter
    indexer: Indexer
    station: str
    video: str  # exported: proxy.mp4 + poster.jpg
    audio: str  # exported: proxy.m4a, no poster
    other: str  # accessed between, never exported
    package: Path  # format 3: entries proven against checkpoints
    legacy: Path  # format 2: ledger runs with redaction stubs
    info: pkg.PackageInfo = field(init=False)  # the package exported by the fixture
    legacy_info: pkg.PackageInfo = field(init=False)

    def index_own(self, seq: int) -> None:
        if not self.indexer.index_own(self.ledger.writer, seq):
            self.indexer.poll()

    def export(self, ids: list[str], out: Path, **options: Any) -> pkg.PackageInfo:
        options.setdefault("reason", "court request 2026-117")
        options.setdefault("actor", "cli:auditor")
        return pkg.export_recordings(self.store, self.database, self.ledger, self.index_own,
                                     ids, out, clock=lambda: EXPORTED_AT, **options)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not ffmpeg_available():
        pytest.skip("ffmpeg/ffprobe not installed")
    base = tmp_path_factory.mktemp("package")
    card = base / "card" / "DCIM"
    video = make_video(card / "DSJ001_10086_20261125083000_0001.MP4")
    other = make_video(card / "DSJ001_10086_20261125090000_0002.MP4", seconds=1)
    audio = make_audio_wav(base / "card" / "RECORD" / "DSJ001_10086_20261125093000_0003.WAV")
    config = write_config(base / "station", station_id="town-a-dock-1", extra=MEDIA_SECTION)
    code, output = cli("--config", str(config), "ingest", str(base / "card"))
    assert code == 0, output
    code, output = cli("--config", str(config), "proxies", "--run")
    assert code == 0, output
    store = FilesystemArchive(base / "station" / "archive")
    station = station_ledger(store, base / "station" / "state", "town-a-dock-1")
    append_checkpoint(station)  # as the station does at the end of an ingest
    station.database.close()

    database = open_api_database(base / "api" / "catalog.sqlite3")
    key = load_or_create_private_key(base / "api" / "signing.key")
    ledger = LedgerWriter(store, database, API_WRITER, key, role=Role.API, clock=lambda: EXPORTED_AT)
    indexer = Indexer(store, database)
    indexer.poll()
    world = World(store, database, ledger, indexer, "town-a-dock-1", _sha256(video),
                  _sha256(audio), _sha256(other), base / "out" / "package.zip",
                  base / "out" / "legacy.zip")
    assert database.scalar("SELECT COUNT(*) FROM recordings") == 3
    # Two views before the export: one of an exported recording, one of another, so the API
    # node's run in the package has to span an entry that concerns neither.
    views = [(world.video, "user:auditor", {"kind": "proxy", "reason": "review",
                                            "remote": "198.51.100.7"}),
             (world.other, "user:neighbour-case", OTHER_VIEW)]
    for recording, actor, details in views:
        entry = ledger.append("accessed", recording=recording, actor=actor, details=details)
        world.index_own(int(entry["seq"]))
    # The version-2 package first, so its run ends with its own exported event (API #4).
    world.legacy_info = world.export([world.video[:12], world.audio], world.legacy,
                                     format_version=2)
    world.info = world.export([world.video[:12], world.audio], world.package)
    yield world
    database.close()


# -- helpers that take a package apart and put it back together --------------------------

def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_members(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (2026, 11, 26, 2, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def forge(source: Path, target: Path, key: Ed25519PrivateKey,
          change: Callable[[dict[str, bytes], dict[str, Any]], None]) -> Path:
    """What an insider holding the API node's key could do: change files, list them again in
    package.json with their new hashes and sign it afresh."""
    members = read_members(source)
    package = json.loads(members.pop(pkg.PACKAGE_JSON))
    members.pop(pkg.PACKAGE_SIG)
    change(members, package)
    package["files"] = [{"name": name, "size_bytes": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()}
                        for name, data in members.items()]
    body = json.dumps(package, indent=2).encode()
    members[pkg.PACKAGE_JSON] = body
    members[pkg.PACKAGE_SIG] = base64.b64encode(key.sign(body))
    return write_members(target, members)


def flip_in_zip(source: Path, target: Path, name: str) -> Path:
    """Copy the zip with one byte changed in the middle of member ``name``'s stored data."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo(name)
    offset = info.header_offset
    name_length = int.from_bytes(data[offset + 26:offset + 28], "little")
    extra_length = int.from_bytes(data[offset + 28:offset + 30], "little")
    start = offset + 30 + name_length + extra_length
    data[start + info.compress_size // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return target


def flip_content(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


def names(problems: list[Problem], name: str) -> bool:
    """A problem names the file: as its subject, or (package.sig failing over package.json,
    which cannot tell which of the two changed) in its message."""
    return any(problem.subject == name or name in problem.message for problem in problems)


def problem_text(report: pkg.PackageReport) -> str:
    return "\n".join(map(str, report.problems))


def _ledger_names(members: dict[str, bytes], writer: str) -> list[str]:
    """Full entries and stubs of one writer, in seq order."""
    return sorted(name for name in members if name.startswith(keys.ledger_prefix(writer)))


def _full_names(members: dict[str, bytes], writer: str) -> list[str]:
    return [name for name in _ledger_names(members, writer)
            if not name.endswith(pkg.REDACTED_SUFFIX)]


# -- the untouched package ------------------------------------------------------------------

def test_export_writes_a_package_that_verifies(world: World) -> None:
    info = world.info
    assert info.path == world.package and info.path.exists()
    assert info.sha256 == _sha256(info.path) and info.size_bytes == info.path.stat().st_size
    assert info.recordings == (world.video, world.audio)
    assert info.exported_writer == API_WRITER
    assert not list(world.package.parent.glob(".*"))  # no temp file left

    report = pkg.verify_package(world.package)
    assert report.ok, problem_text(report)
    assert report.package_id == info.package_id
    assert report.recordings == [world.video, world.audio]
    assert set(report.writers) == {world.station, API_WRITER}
    assert report.writers[API_WRITER] == fingerprint(world.ledger.private_key)
    lines = pkg.format_package_report(report)
    assert lines[-1].endswith(": OK") and any("compare" in line for line in lines)
    assert report.as_dict()["ok"] is True


def test_package_layout_and_contents(world: World) -> None:
    members = read_members(world.package)
    video, audio = world.video, world.audio
    for recording in (video, audio):
        original = keys.original_key(recording, "mp4" if recording == video else "wav")
        assert hashlib.sha256(members[original]).hexdigest() == recording
        assert members[keys.manifest_key(recording)] == world.store.get_bytes(
            keys.manifest_key(recording))
    assert keys.proxy_key(video, "mp4") in members and keys.poster_key(video) in members
    assert keys.proxy_key(audio, "m4a") in members and keys.poster_key(audio) not in members
    assert keys.recording_prefix(world.other) + "original.mp4" not in members

    package = json.loads(members[pkg.PACKAGE_JSON])
    assert package["exported_by"] == "cli:auditor" and package["reason"] == "court request 2026-117"
    assert package["created_at"].startswith("2026-11-26T02:00:00")
    assert package["exporter"] == {"writer": API_WRITER, "public_key": "keys/api-1.pub",
                                   "fingerprint": fingerprint(world.ledger.private_key)}
    listed = {item["name"]: item for item in package["files"]}
    assert set(listed) == set(members) - {pkg.PACKAGE_JSON, pkg.PACKAGE_SIG}
    for name, item in listed.items():
        assert item["sha256"] == hashlib.sha256(members[name]).hexdigest()
        assert item["size_bytes"] == len(members[name])
    signature = base64.b64decode(members[pkg.PACKAGE_SIG])
    world.ledger.private_key.public_key().verify(signature, members[pkg.PACKAGE_JSON])
    assert members[keys.public_key_key(API_WRITER)] == world.store.get_bytes("keys/api-1.pub")
    assert members[keys.public_key_key(world.station)] == world.store.get_bytes(
        keys.public_key_key(world.station))

    # Media stored, text compressed.
    with zipfile.ZipFile(world.package) as archive:
        for info in archive.infolist():
            media = info.filename.endswith((".mp4", ".wav", ".m4a", ".jpg"))
            assert info.compress_type == (zipfile.ZIP_STORED if media else zipfile.ZIP_DEFLATED)

    text = members[pkg.README_NAME].decode("utf-8")
    assert text.index("How to check it") < text.index("如何核验")
    for needle in ("cli:auditor", "court request 2026-117", "evidence-daemon verify-package",
                   "sha256sum", world.info.package_id, video, audio,
                   fingerprint(world.ledger.private_key)):
        assert needle in text


def test_ledger_runs_are_contiguous_relevant_entries_stored_bytes_others_stubs(world: World) -> None:
    """Format 2."""
    members = read_members(world.legacy)
    exported = (API_WRITER, world.legacy_info.exported_seq)
    seqs: dict[str, list[int]] = {}
    redacted: dict[str, list[int]] = {}
    for name, data in members.items():
        parsed = keys.parse_ledger_key(name) or pkg.parse_redacted_key(name)
        if parsed is None:
            continue
        writer, seq = parsed
        seqs.setdefault(writer, []).append(seq)
        stored = world.store.get_bytes(keys.ledger_key(writer, seq))
        entry, _ = canonical.parse_stored(stored)
        if entry["recording"] in (world.video, world.audio) or parsed == exported:
            assert (name, data) == (keys.ledger_key(writer, seq), stored)  # exactly as stored
        else:
            assert name == pkg.redacted_key(writer, seq) == f"ledger/{writer}/{seq:012d}.redacted.json"
            stub = {"entry_hash": canonical.entry_hash(entry), "prev": entry["prev"],
                    "redacted": True, "seq": seq, "writer": writer}
            assert data == json.dumps(stub, sort_keys=True, separators=(",", ":")).encode()
            redacted.setdefault(writer, []).append(seq)
    relevant = world.database.query(
        "SELECT writer, MIN(seq), MAX(seq) FROM events WHERE recording IN (?, ?) GROUP BY writer",
        (world.video, world.audio))
    expected = {row[0]: (row[1], row[2]) for row in relevant}
    expected[API_WRITER] = (expected[API_WRITER][0], world.legacy_info.exported_seq)
    assert {writer: (min(s), max(s)) for writer, s in seqs.items()} == expected
    for writer, found in seqs.items():
        assert sorted(found) == list(range(min(found), max(found) + 1)), writer
    # The access to the other recording lies inside the API run: it is there, as a stub.
    # (seq 1 is the node's key-registered entry, about no recording: before the run)
    assert sorted(seqs[API_WRITER]) == [2, 3, 4] and redacted[API_WRITER] == [3]
    report = pkg.verify_package(world.legacy)
    assert report.redacted == {writer: len(redacted.get(writer, [])) for writer in seqs}
    assert report.entries_checked == sum(map(len, seqs.values()))
    assert report.as_dict()["redacted"] == report.redacted


@pytest.mark.parametrize("version", [3, 2])
def test_nothing_about_the_other_recording_is_in_the_package(world: World, version: int) -> None:
    """The view of a recording outside the package (API #3): who watched it, why and from
    where stay out; so does everything the station recorded about it. Format 2 spans it with a
    stub; format 3 carries only the package's own entries, with proofs."""
    package = world.package if version == 3 else world.legacy
    members = read_members(package)
    assert keys.ledger_key(API_WRITER, 3) not in members
    if version == 2:
        stub = pkg.redacted_key(API_WRITER, 3)
        assert json.loads(members[stub])["entry_hash"] == canonical.entry_hash(
            canonical.parse_stored(world.store.get_bytes(keys.ledger_key(API_WRITER, 3)))[0])
    else:
        assert not any(name.endswith(pkg.REDACTED_SUFFIX) for name in members)
        assert pkg.proof_name(API_WRITER, 2) in members and pkg.proof_name(API_WRITER, 3) not in members
    secrets = [OTHER_VIEW["reason"], OTHER_VIEW["remote"], "neighbour-case", world.other]
    for name, data in members.items():
        for secret in secrets:
            assert secret.encode() not in data, (secret, name)
    raw = package.read_bytes()
    assert not any(secret.encode() in raw for secret in secrets)


def test_exported_event_is_signed_indexed_and_names_the_package(world: World) -> None:
    name = keys.ledger_key(API_WRITER, world.info.exported_seq)
    entry, _ = canonical.parse_stored(world.store.get_bytes(name))
    assert entry["event"] == "exported" and entry["recording"] is None
    assert entry["actor"] == "cli:auditor"
    assert entry["details"] == {"package_id": world.info.package_id,
                                "recordings": [world.video, world.audio],
                                "reason": "court request 2026-117", "include_proxies": True,
                                "remote": None}
    row = world.database.query_one("SELECT * FROM events WHERE writer = ? AND seq = ?",
                                   (API_WRITER, world.info.exported_seq))
    assert row is not None and row["event"] == "exported" and row["verified"] == 1


# -- one byte changed, anywhere ---------------------------------------------------------------

def _kinds_present(package: Path, version: int) -> dict[str, bytes]:
    """The members, after checking every kind of file of that format is among them."""
    members = read_members(package)
    if version == 2:
        assert any(name.endswith(pkg.REDACTED_SUFFIX) for name in members)  # stubs too
    else:  # proofs and checkpoints of both writers
        for prefix in (pkg.PROOFS_PREFIX, keys.LEDGER_PREFIX):
            assert {name.split("/")[1] for name in members if name.startswith(prefix)} == {
                "town-a-dock-1", API_WRITER}
        assert sum(b'"event":"checkpoint"' in data for data in members.values()) == 2
    return members


@pytest.mark.parametrize("version", [3, 2])
def test_every_file_with_one_byte_changed_in_the_zip_is_named(world: World, tmp_path: Path,
                                                              version: int) -> None:
    """Acceptance: for every file of the package, a copy of the zip with one byte of that
    file's data changed fails verification with a problem naming that file."""
    missed = []
    package = world.package if version == 3 else world.legacy
    members = _kinds_present(package, version)
    for name in members:
        report = pkg.verify_package(flip_in_zip(package, tmp_path / "flipped.zip", name))
        if report.ok or not names(report.problems, name):
            missed.append(f"{name}: {problem_text(report) or 'OK'}")
    assert not missed, "\n".join(missed)


@pytest.mark.parametrize("version", [3, 2])
def test_every_file_with_one_byte_changed_and_rezipped_is_named(world: World, tmp_path: Path,
                                                                version: int) -> None:
    """The same with a well-formed zip (fresh CRCs): only the package's own checks can tell."""
    members = _kinds_present(world.package if version == 3 else world.legacy, version)
    missed = []
    for name in members:
        changed = {**members, name: flip_content(members[name])}
        report = pkg.verify_package(write_members(tmp_path / "changed.zip", changed))
        if report.ok or not names(report.problems, name):
            missed.append(f"{name}: {problem_text(report) or 'OK'}")
    assert not missed, "\n".join(missed)


# -- files added, removed, replaced -------------------------------------------------------

def test_a_file_added_is_named(world: World, tmp_path: Path) -> None:
    members = read_members(world.package)
    added = keys.recording_prefix(world.video) + "notes.txt"
    report = pkg.verify_package(write_members(tmp_path / "added.zip",
                                              {**members, added: b"planted\n"}))
    assert not report.ok and names(report.problems, added)
    assert "not listed in package.json" in problem_text(report)


@pytest.mark.parametrize("which", ["original", "ledger", "stub", "key", "readme", "proof",
                                   "checkpoint"])
def test_a_file_removed_is_named(world: World, tmp_path: Path, which: str) -> None:
    members = read_members(world.legacy if which == "stub" else world.package)
    victim = {
        "original": keys.original_key(world.video, "mp4"),
        "ledger": _full_names(members, world.station)[1],
        "stub": pkg.redacted_key(API_WRITER, 3),
        "proof": (sorted(name for name in members
                         if name.startswith(f"{pkg.PROOFS_PREFIX}{world.station}/")) or [""])[-1],
        "checkpoint": keys.ledger_key(API_WRITER, world.info.exported_seq + 1),
        "key": keys.public_key_key(world.station),
        "readme": pkg.README_NAME,
    }[which]
    del members[victim]
    report = pkg.verify_package(write_members(tmp_path / "removed.zip", members))
    assert not report.ok and names(report.problems, victim), problem_text(report)


def test_package_json_edited_fails_its_signature(world: World, tmp_path: Path) -> None:
    members = read_members(world.package)
    package = json.loads(members[pkg.PACKAGE_JSON])
    package["reason"] = "routine review"
    members[pkg.PACKAGE_JSON] = json.dumps(package, indent=2).encode()
    report = pkg.verify_package(write_members(tmp_path / "edited.zip", members))
    assert not report.ok and names(report.problems, pkg.PACKAGE_JSON)
    assert any(problem.subject == pkg.PACKAGE_SIG for problem in report.problems)


def test_package_sig_replaced_by_another_key_fails(world: World, tmp_path: Path) -> None:
    members = read_members(world.package)
    members[pkg.PACKAGE_SIG] = base64.b64encode(
        Ed25519PrivateKey.generate().sign(members[pkg.PACKAGE_JSON])) + b"\n"
    report = pkg.verify_package(write_members(tmp_path / "resigned.zip", members))
    assert [problem.subject for problem in report.problems] == [pkg.PACKAGE_SIG]


def test_missing_package_json_or_signature(world: World, tmp_path: Path) -> None:
    for name in (pkg.PACKAGE_JSON, pkg.PACKAGE_SIG):
        members = read_members(world.package)
        del members[name]
        report = pkg.verify_package(write_members(tmp_path / "without.zip", members))
        assert not report.ok and names(report.problems, name)


# -- trusted keys -------------------------------------------------------------------------

def test_trusted_fingerprints(world: World) -> None:
    writers = pkg.verify_package(world.package).writers
    assert pkg.verify_package(world.package, trusted_fingerprints=set(writers.values())).ok

    only_api = {writers[API_WRITER]}
    report = pkg.verify_package(world.package, trusted_fingerprints=only_api)
    assert report.problems[0].subject == keys.public_key_key(world.station)
    assert "key not trusted" in report.problems[0].message
    # Nothing the untrusted station signed counts: its archived events vouch for nothing.
    assert {problem.recording for problem in report.problems[1:]} == {world.video, world.audio}
    assert all("'archived'" in problem.message or "'derived'" in problem.message
               for problem in report.problems[1:]), problem_text(report)
    report = pkg.verify_package(world.legacy, trusted_fingerprints=only_api)
    assert [problem.subject for problem in report.problems] == [keys.public_key_key(world.station)]

    report = pkg.verify_package(world.package, trusted_fingerprints={"SHA256:somebody-else"})
    assert [problem.subject for problem in report.problems][:2] == [
        keys.public_key_key(API_WRITER), keys.public_key_key(world.station)]
    assert not any("compare" in line for line in pkg.format_package_report(report))


def test_a_complete_forgery_with_a_fresh_key_is_caught_only_by_trusted_fingerprints(
        world: World, tmp_path: Path) -> None:
    """Whoever replaces every key and re-signs everything makes a self-consistent package:
    only the fingerprints, compared out of band, tell. That is why README.txt lists them.
    (Format 2 here; in format 3 a writer's signed key registration names its key too.)"""
    fresh = Ed25519PrivateKey.generate()

    def swap_exporter_key(members: dict[str, bytes], package: dict[str, Any]) -> None:
        members[keys.public_key_key(API_WRITER)] = public_pem(fresh)
        package["exporter"]["fingerprint"] = fingerprint(fresh)
        # Every signed entry re-signed; hashes leave the signature out, so stubs still fit.
        for name in _full_names(members, API_WRITER):
            entry, _ = canonical.parse_stored(members[name])
            members[name] = canonical.stored_bytes(entry, fresh.sign(canonical.canonical_bytes(entry)))

    forged = forge(world.legacy, tmp_path / "forged.zip", fresh, swap_exporter_key)
    assert pkg.verify_package(forged).ok
    trusted = set(pkg.verify_package(world.legacy).writers.values())
    report = pkg.verify_package(forged, trusted_fingerprints=trusted)
    assert [problem.subject for problem in report.problems] == [keys.public_key_key(API_WRITER)]

    # Format 3: the same re-signing is named without trust anchors, by the registration.
    report = pkg.verify_package(forge(world.package, tmp_path / "forged3.zip", fresh,
                                      swap_exporter_key))
    assert any(problem.subject == keys.ledger_key(API_WRITER, 1)
               and "key-registered entry names key" in problem.message
               for problem in report.problems), problem_text(report)


# -- an insider with the API node's key ------------------------------------------------------

@pytest.mark.parametrize("scenario", ["original", "manifest", "proxy", "poster", "entry-altered",
                                      "entry-dropped", "recording-dropped", "extra-recording"])
def test_insider_resigning_the_package_is_still_caught(world: World, tmp_path: Path,
                                                       scenario: str) -> None:
    video, other = world.video, world.other
    expected: list[str] = []

    def change(members: dict[str, bytes], package: dict[str, Any]) -> None:
        if scenario == "original":
            name = keys.original_key(video, "mp4")
            members[name] = world.store.get_bytes(keys.original_key(other, "mp4"))
        elif scenario == "manifest":
            name = keys.manifest_key(video)
            members[name] = members[name].replace(b'"officer_id": "10086"', b'"officer_id": "20001"')
            assert members[name] != world.store.get_bytes(name)
        elif scenario == "proxy":
            name = keys.proxy_key(video, "mp4")
            members[name] = world.store.get_bytes(keys.proxy_key(other, "mp4"))
        elif scenario == "poster":
            name = keys.poster_key(video)
            members[name] = world.store.get_bytes(keys.poster_key(other))
        elif scenario == "entry-altered":
            name = _full_names(members, world.station)[1]
            entry, signature = canonical.parse_stored(members[name])
            entry["actor"] = "cli:someone-else"
            members[name] = canonical.stored_bytes(entry, signature)
        elif scenario == "entry-dropped":  # its proof stays: it names the entry
            name = _ledger_names(members, world.station)[1]
            del members[name]
        elif scenario == "recording-dropped":
            for member in [m for m in members if m.startswith(keys.recording_prefix(world.audio))]:
                del members[member]
            package["recordings"] = package["recordings"][:1]
            name = keys.ledger_key(API_WRITER, world.info.exported_seq)
        else:  # the other recording's files planted and listed
            for kind in ("original.mp4", "manifest.json"):
                members[keys.recording_prefix(other) + kind] = world.store.get_bytes(
                    keys.recording_prefix(other) + kind)
            name = keys.recording_prefix(other) + "original.mp4"
        expected.append(name)

    forged = forge(world.package, tmp_path / "forged.zip", world.ledger.private_key, change)
    report = pkg.verify_package(forged)
    assert not report.ok and names(report.problems, expected[0]), problem_text(report)


# -- redaction stubs -------------------------------------------------------------------------

def _stub_of(world: World, writer: str, seq: int, changes: dict[str, Any] | None = None) -> bytes:
    """The stub of an archived entry, as the exporter writes it, with ``changes`` applied."""
    entry, _ = canonical.parse_stored(world.store.get_bytes(keys.ledger_key(writer, seq)))
    stub = {**json.loads(pkg.stub_bytes(entry)), **(changes or {})}
    return json.dumps(stub, sort_keys=True, separators=(",", ":")).encode()


def _swap_for_stub(world: World, members: dict[str, bytes], name: str) -> str:
    """Put the stub of full entry ``name`` in its place, hashes right; returns the stub's name."""
    writer, seq = keys.parse_ledger_key(name) or ("", 0)
    del members[name]
    members[pkg.redacted_key(writer, seq)] = _stub_of(world, writer, seq)
    return pkg.redacted_key(writer, seq)


@pytest.mark.parametrize("scenario", ["entry-hash-changed", "prev-changed", "extra-field",
                                      "not-canonical", "seq-inside", "begins-with-stub",
                                      "ends-with-stub", "stub-beside-entry"])
def test_a_forged_stub_is_named(world: World, tmp_path: Path, scenario: str) -> None:
    """An insider re-signs package.json, so only the stub checks can tell."""
    expected: list[str] = []

    def change(members: dict[str, bytes], package: dict[str, Any]) -> None:
        name = pkg.redacted_key(API_WRITER, 3)
        if scenario == "entry-hash-changed":
            members[name] = _stub_of(world, API_WRITER, 3, {"entry_hash": "e" * 64})
        elif scenario == "prev-changed":
            members[name] = _stub_of(world, API_WRITER, 3, {"prev": "e" * 64})
        elif scenario == "extra-field":  # a stub smuggling what it should hide
            members[name] = _stub_of(world, API_WRITER, 3, {"recording": world.other})
        elif scenario == "not-canonical":
            members[name] = json.dumps(json.loads(members[name]), indent=1).encode()
        elif scenario == "seq-inside":
            members[name] = _stub_of(world, API_WRITER, 3, {"seq": 2})
        elif scenario == "begins-with-stub":
            name = _swap_for_stub(world, members, keys.ledger_key(API_WRITER, 2))
        elif scenario == "ends-with-stub":
            name = _swap_for_stub(world, members, _ledger_names(members, world.station)[-1])
        else:  # the same entry in full and as a stub
            name = pkg.redacted_key(API_WRITER, 2)
            members[name] = _stub_of(world, API_WRITER, 2)
        expected.append(name)

    report = pkg.verify_package(forge(world.legacy, tmp_path / "forged.zip",
                                      world.ledger.private_key, change))
    assert not report.ok and names(report.problems, expected[0]), problem_text(report)


def _interior_entries(members: dict[str, bytes], writer: str) -> list[tuple[str, dict[str, Any]]]:
    """Full entries of ``writer`` in the package that neither begin nor end its run."""
    inside = _ledger_names(members, writer)[1:-1]
    return [(name, canonical.parse_stored(members[name])[0]) for name in inside
            if not name.endswith(pkg.REDACTED_SUFFIX)]


@pytest.mark.parametrize("scenario", ["not-resigned", "archived", "derived", "exported",
                                      "acquired"])
def test_a_stub_in_place_of_an_entry_about_the_package(world: World, tmp_path: Path,
                                                       scenario: str) -> None:
    """A full entry about the package swapped for its stub, hashes right, so the chain holds.

    Without the exporter's key this changes package.json's listing: named (``not-resigned``).
    An insider holding it re-signs package.json; then the package can only tell where it needs
    the entry: the ``archived`` event vouches for a manifest, a ``derived`` event for a viewing
    copy, the ``exported`` event for the package, and a run begins and ends with an entry in
    full. An ``acquired`` (or ``accessed``) event inside a run that the insider hides this way
    goes unnoticed: what a stub hides rests on the exporter's signature alone, and only the
    full entry from the archive settles it. README.txt says so.
    """
    video, audio, station = world.video, world.audio, world.station
    members = read_members(world.legacy)
    inside = _interior_entries(members, station)

    def pick(event: str) -> tuple[str, dict[str, Any]]:
        return next((name, entry) for name, entry in inside
                    if entry["event"] == event and entry["recording"] in (video, audio))

    if scenario == "not-resigned":
        name, _ = pick("archived")
        stub = _swap_for_stub(world, members, name)
        report = pkg.verify_package(write_members(tmp_path / "swapped.zip", members))
        assert names(report.problems, name) and names(report.problems, stub), problem_text(report)
        return

    def swap(members: dict[str, bytes], package: dict[str, Any]) -> None:
        _swap_for_stub(world, members, victim)

    if scenario == "exported":
        victim, recording = keys.ledger_key(API_WRITER, world.legacy_info.exported_seq), ""
    else:
        victim, entry = pick(scenario)
        recording = str(entry["recording"])
    report = pkg.verify_package(forge(world.legacy, tmp_path / "forged.zip",
                                      world.ledger.private_key, swap))
    text = problem_text(report)
    if scenario == "archived":
        assert any(problem.recording == recording and "'archived'" in problem.message
                   for problem in report.problems), text
    elif scenario == "derived":
        proxy = keys.proxy_key(recording, "mp4" if recording == video else "m4a")
        assert any(problem.subject == proxy and "'derived'" in problem.message
                   for problem in report.problems), text
    elif scenario == "exported":
        assert names(report.problems, victim), text
    else:
        assert report.ok, text  # the limit of what a package can prove on its own


def test_readme_and_report_say_what_was_redacted(world: World) -> None:
    members = read_members(world.legacy)
    count = sum(name.endswith(pkg.REDACTED_SUFFIX) for name in members)
    assert count >= 1
    text = " ".join(members[pkg.README_NAME].decode("utf-8").split())
    phrase = "entries about other recordings are" if count > 1 else "entry about another recording is"
    assert f"{count} {phrase} shown only by" in text
    assert ("exporting API node's signature on package.json vouches that" in text
            and "The agency can show the full" in text and "cannot show or prove" in text)
    assert f"{count} 条涉及其他录像的台账记录仅以其哈希值显示" in text
    assert ".redacted.json" in text

    lines = pkg.format_package_report(pkg.verify_package(world.legacy))
    assert any(line.startswith(f"ledger writer {API_WRITER}: ") and
               line.endswith(", 1 entry about other recordings redacted") for line in lines)
    assert f"({count} redacted)" in lines[-1] and lines[-1].endswith(": OK")
    assert any("shown only by hash" in line for line in lines)


def test_a_package_of_format_version_1_still_verifies(world: World, tmp_path: Path) -> None:
    """Packages written before redaction hold every entry of a run in full."""
    def unredact(members: dict[str, bytes], package: dict[str, Any]) -> None:
        for name in [name for name in members if name.endswith(pkg.REDACTED_SUFFIX)]:
            writer, seq = pkg.parse_redacted_key(name) or ("", 0)
            del members[name]
            members[keys.ledger_key(writer, seq)] = world.store.get_bytes(keys.ledger_key(writer, seq))
        package["format_version"] = 1

    report = pkg.verify_package(forge(world.legacy, tmp_path / "v1.zip",
                                      world.ledger.private_key, unredact))
    assert report.ok, problem_text(report)
    assert set(report.redacted.values()) == {0}


# -- hostile zips -----------------------------------------------------------------------------

@pytest.mark.parametrize("hostile", ["../escape.txt", "recordings/../../escape.txt", "/etc/passwd",
                                     "keys\\evil.pub", "C:/evil.txt", "ledger/./x.json"])
def test_hostile_member_names_are_refused(world: World, tmp_path: Path, hostile: str) -> None:
    members = {**read_members(world.package), hostile: b"boo\n"}
    report = pkg.verify_package(write_members(tmp_path / "hostile.zip", members))
    refused = [problem for problem in report.problems if problem.subject == hostile]
    assert refused and refused[0].message.startswith("refused"), problem_text(report)
    assert not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.parametrize("which", ["package.json", "stub", "manifest", "proof"])
def test_deeply_nested_json_is_a_problem_not_a_crash(world: World, tmp_path: Path,
                                                    fault_log: FaultLog, which: str) -> None:
    """JSON nested deeper than Python's recursion limit makes json.loads raise RecursionError,
    not ValueError: the verifier must name the file, not die with a traceback."""
    source = world.legacy if which == "stub" else world.package
    members = read_members(source)
    name = {"package.json": pkg.PACKAGE_JSON, "stub": pkg.redacted_key(API_WRITER, 3),
            "manifest": keys.manifest_key(world.video),
            "proof": pkg.proof_name(API_WRITER, 1)}[which]
    assert name in members
    members[name] = b"[" * 200_000 + b"]" * 200_000
    report = pkg.verify_package(write_members(tmp_path / "nested.zip", members))
    assert not report.ok and names(report.problems, name), problem_text(report)
    fault_log("tamper: packages", f"{which} nested 200,000 deep", injected_by="member replaced",
              files_lost=0, wrongly_archived=0, duplicates=0, exit_code=None,
              message=problem_text(report))


def test_a_duplicated_member_name_is_refused(world: World, tmp_path: Path) -> None:
    members = read_members(world.package)
    name = keys.original_key(world.video, "mp4")
    target = write_members(tmp_path / "twice.zip", members)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(target, "a") as archive:
        archive.writestr(name, b"the other one")
    report = pkg.verify_package(target)
    assert any(problem.subject == name and "more than once" in problem.message
               for problem in report.problems)


def test_not_a_zip_and_no_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 not really")
    report = pkg.verify_package(garbage)
    assert not report.ok and report.problems[0].subject == "garbage.zip"
    assert pkg.format_package_report(report)[-1].endswith("1 problem(s)")
    with pytest.raises(UsageError):
        pkg.verify_package(tmp_path / "absent.zip")


# -- export refusals and options ----------------------------------------------------------------

def _head(world: World) -> int:
    return int(world.database.scalar("SELECT MAX(seq) FROM ledger WHERE writer = ?", (API_WRITER,)))


def test_export_without_proxies(world: World, tmp_path: Path) -> None:
    info = world.export([world.video], tmp_path / "originals-only.zip", include_proxies=False)
    names_in = set(read_members(info.path))
    assert keys.proxy_key(world.video, "mp4") not in names_in
    assert keys.poster_key(world.video) not in names_in
    assert keys.original_key(world.video, "mp4") in names_in
    assert pkg.verify_package(info.path).ok


def test_export_into_an_empty_placeholder_but_never_over_a_file(world: World, tmp_path: Path) -> None:
    placeholder = tmp_path / "reserved.zip"
    placeholder.touch()
    assert pkg.verify_package(world.export([world.audio], placeholder).path).ok

    existing = tmp_path / "existing.zip"
    existing.write_bytes(b"an earlier package")
    before = _head(world)
    with pytest.raises(ConflictError, match="never overwritten"):
        world.export([world.audio], existing)
    assert existing.read_bytes() == b"an earlier package"
    assert _head(world) == before  # refused before anything was recorded


@pytest.mark.parametrize(("ids", "error"), [
    ([], UsageError),
    (["abc"], UsageError),  # fewer than 12 digits
    (["zz" * 32], UsageError),
    (["0" * 64], NotFoundError),
])
def test_export_refuses_bad_ids_before_recording_anything(world: World, tmp_path: Path,
                                                          ids: list[str], error: type[Exception]) -> None:
    before = _head(world)
    with pytest.raises(error):
        world.export(ids, tmp_path / "never.zip")
    assert _head(world) == before and not (tmp_path / "never.zip").exists()


def test_export_refuses_a_short_reason_and_a_foreign_signing_key(world: World, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="reason"):
        world.export([world.video], tmp_path / "x.zip", reason="  ")
    with pytest.raises(ConfigError, match="signing key"):
        world.export([world.video], tmp_path / "x.zip", signing_key=Ed25519PrivateKey.generate())


@pytest.mark.parametrize(("damage", "message"), [
    ("original", "does not hash to its id"),
    ("ledger-entry", "ledger entry"),
    ("station-key", "differs from the key the catalog indexed"),
])
def test_export_refuses_an_archive_damaged_after_indexing(world: World, tmp_path: Path,
                                                          damage: str, message: str) -> None:
    """The export is recorded, but no package of bytes that would not verify is written."""
    archive = tmp_path / "archive"
    shutil.copytree(world.store.root, archive)
    store = FilesystemArchive(archive)
    database = open_api_database(tmp_path / "catalog.sqlite3")
    try:
        indexer = Indexer(store, database)
        indexer.poll()
        archived_seq = database.scalar("SELECT archived_seq FROM recordings WHERE sha256 = ?",
                                       (world.video,))
        victim = archive / {
            "original": keys.original_key(world.video, "mp4"),
            "ledger-entry": keys.ledger_key(world.station, archived_seq),
            "station-key": keys.public_key_key(world.station),
        }[damage]
        os.chmod(victim, 0o644)  # archived files are read-only; whoever damages them does this
        if damage == "station-key":
            victim.write_bytes(public_pem(Ed25519PrivateKey.generate()))
        else:
            victim.write_bytes(flip_content(victim.read_bytes()))

        ledger = LedgerWriter(store, database, API_WRITER, world.ledger.private_key, role=Role.API)
        out = tmp_path / "out" / "damaged.zip"
        with pytest.raises(IntegrityError, match=message):
            pkg.export_recordings(store, database, ledger, lambda seq: indexer.poll(),
                                  [world.video], out, reason="court request", actor="cli:auditor")
        assert not out.exists() and not list(out.parent.glob("*"))
        # The exported event, then (format 3) the node's checkpoint covering it.
        last = sorted(store.list_keys(keys.ledger_prefix(API_WRITER)))[-2:]
        exported, _ = canonical.parse_stored(store.get_bytes(last[0]))
        checkpoint, _ = canonical.parse_stored(store.get_bytes(last[1]))
        assert exported["event"] == "exported" and exported["details"]["recordings"] == [world.video]
        assert checkpoint["event"] == "checkpoint"
        assert checkpoint["details"]["head_hash"] == canonical.entry_hash(exported)
    finally:
        database.close()


def test_export_refuses_a_catalog_that_disagrees_with_the_ledger(world: World,
                                                                  tmp_path: Path) -> None:
    """Runs come from the catalog: if it says entries about another recording concern the
    package, a run would begin or end with one. Refused rather than redacted or leaked."""
    archive = tmp_path / "archive"
    shutil.copytree(world.store.root, archive)
    store = FilesystemArchive(archive)
    database = open_api_database(tmp_path / "catalog.sqlite3")
    try:
        indexer = Indexer(store, database)
        indexer.poll()
        # The other recording's station entries, relabelled as the audio's.
        database.execute("UPDATE events SET recording = ? WHERE recording = ?",
                         (world.audio, world.other))
        ledger = LedgerWriter(store, database, API_WRITER, world.ledger.private_key, role=Role.API)
        out = tmp_path / "out.zip"
        with pytest.raises(IntegrityError, match="run reindex"):
            pkg.export_recordings(store, database, ledger, lambda seq: indexer.poll(),
                                  [world.audio], out, reason="court request", actor="cli:auditor")
        assert not out.exists()
    finally:
        database.close()


def test_readme_instructions_work_by_hand(world: World, tmp_path: Path) -> None:
    """What README.txt tells a court's expert to type, with sha256sum and openssl."""
    if not (shutil.which("openssl") and shutil.which("sha256sum")):
        pytest.skip("openssl or sha256sum not installed")
    with zipfile.ZipFile(world.package) as archive:
        archive.extractall(tmp_path)  # our own package, names checked by verify_package

    def run(command: str) -> str:
        done = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True,
                              text=True, check=True, timeout=30)
        return done.stdout

    original = keys.original_key(world.video, "mp4")
    assert run(f"sha256sum {original}").split()[0] == world.video
    assert "Signature Verified Successfully" in run(
        "base64 -d package.sig > package.sig.bin && openssl pkeyutl -verify -pubin "
        "-inkey keys/api-1.pub -rawin -in package.json -sigfile package.sig.bin")
    printed = run("openssl pkey -pubin -in keys/api-1.pub -outform DER | tail -c 32 "
                  "| openssl dgst -sha256 -binary | base64")
    assert normal_fingerprint(printed) == fingerprint(world.ledger.private_key)
    assert pkg.verify_package(world.package, trusted_fingerprints={
        printed, pkg.verify_package(world.package).writers[world.station]}).ok


def test_originals_are_streamed_never_held_in_memory(tmp_path: Path) -> None:
    """A 64 MB original goes into the zip and through verification with a bounded footprint
    (recorders write files of several GB)."""
    card = tmp_path / "card"
    card.mkdir()
    big = card / "DSJ001_10086_20261125100000_0009.MP4"
    with big.open("wb") as handle:
        for _ in range(16):
            handle.write(os.urandom(4 * 1024 * 1024))
    config = write_config(tmp_path / "station", station_id="town-b-dock-1")
    code, output = cli("--config", str(config), "ingest", str(card))
    assert code == 0, output
    store = FilesystemArchive(tmp_path / "station" / "archive")
    database = open_api_database(tmp_path / "catalog.sqlite3")
    try:
        indexer = Indexer(store, database)
        indexer.poll()
        ledger = LedgerWriter(store, database, API_WRITER, Ed25519PrivateKey.generate(), role=Role.API)
        recording = _sha256(big)
        limit_bytes = 24 * 1024 * 1024
        tracemalloc.start()
        try:
            info = pkg.export_recordings(store, database, ledger, lambda seq: indexer.poll(),
                                         [recording], tmp_path / "big.zip",
                                         reason="court request", actor="cli:auditor")
            export_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            report = pkg.verify_package(info.path)
            verify_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.ok, problem_text(report)
        assert export_peak < limit_bytes and verify_peak < limit_bytes, (export_peak, verify_peak)
    finally:
        database.close()


# -- pure decisions ---------------------------------------------------------------------------

SHA = "ab" * 32


def _row(**overrides: Any) -> dict[str, Any]:
    row = {"sha256": SHA, "extension": "mp4", "size_bytes": 10,
           "original_key": f"recordings/{SHA}/original.mp4",
           "manifest_key": f"recordings/{SHA}/manifest.json", "manifest_sha256": "1" * 64,
           "proxy_key": f"recordings/{SHA}/proxy.mp4", "proxy_sha256": "2" * 64,
           "poster_key": f"recordings/{SHA}/poster.jpg", "poster_sha256": "3" * 64,
           "station": "s", "device_id": None, "officer_id": None, "recorded_start": None,
           "recorded_end": None, "time_source": None}
    row.update(overrides)
    return row


def test_plan_recording_takes_keys_from_archive_keys() -> None:
    plan = pkg.plan_recording(_row(), include_proxies=True)
    assert plan.original.key == keys.original_key(SHA, "mp4")
    assert [part.key for part in plan.derived] == [keys.proxy_key(SHA), keys.poster_key(SHA)]
    assert pkg.plan_recording(_row(), include_proxies=False).derived == ()
    assert pkg.plan_recording(_row(poster_key=None, poster_sha256=None),
                              include_proxies=True).derived[0].key == keys.proxy_key(SHA)


@pytest.mark.parametrize("overrides", [
    {"original_key": f"recordings/{SHA}/../../etc/passwd"},
    {"original_key": f"recordings/{SHA}/original.mov"},
    {"extension": "m p4"},
    {"sha256": SHA.upper()},
    {"manifest_key": "keys/api-1.pub"},
    {"proxy_key": f"recordings/{'cd' * 32}/proxy.mp4"},
    {"proxy_sha256": None},
    {"poster_key": f"recordings/{SHA}/poster.png"},
    {"manifest_sha256": "not-a-hash"},
])
def test_plan_recording_refuses_a_catalog_row_off_the_contract(overrides: dict[str, Any]) -> None:
    with pytest.raises(IntegrityError):
        pkg.plan_recording(_row(**overrides), include_proxies=True)


def test_stub_bytes_and_parse_stub() -> None:
    entry = {"seq": 7, "prev": "a" * 64, "time": "t", "writer": "api-1", "event": "accessed",
             "recording": SHA, "actor": "user:x", "details": {"reason": "private"}}
    data = pkg.stub_bytes(entry)
    assert pkg.parse_stub(data) == {"entry_hash": canonical.entry_hash(entry), "prev": "a" * 64,
                                    "redacted": True, "seq": 7, "writer": "api-1"}
    assert b"private" not in data and SHA.encode() not in data


@pytest.mark.parametrize("change", [
    lambda stub: {**stub, "recording": SHA},
    lambda stub: {key: value for key, value in stub.items() if key != "prev"},
    lambda stub: {**stub, "entry_hash": "A" * 64},
    lambda stub: {**stub, "prev": "a" * 63},
    lambda stub: {**stub, "prev": "a" * 64 + "\n"},
    lambda stub: {**stub, "redacted": 1},
    lambda stub: {**stub, "seq": True},
    lambda stub: {**stub, "seq": 0},
    lambda stub: {**stub, "writer": None},
    lambda stub: [stub],
])
def test_parse_stub_refuses_anything_but_a_stub(change: Callable[[Any], Any]) -> None:
    stub = {"entry_hash": "b" * 64, "prev": "a" * 64, "redacted": True, "seq": 2, "writer": "w"}
    with pytest.raises(ValueError):
        pkg.parse_stub(json.dumps(change(stub), sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(ValueError, match="canonical"):
        pkg.parse_stub(json.dumps(stub, sort_keys=True).encode())  # spaces
    with pytest.raises(ValueError, match="JSON"):
        pkg.parse_stub(b"\xff")


@pytest.mark.parametrize(("count", "english", "chinese"), [
    (0, "none was redacted", "没有隐去任何记录"),
    (1, "1 entry about another recording is shown only by its hash", "证明了它在链条中"),
    (5, "5 entries about other recordings are shown only by their hashes", "证明了它们在链条中"),
])
def test_readme_paragraph_on_redacted_entries(count: int, english: str, chinese: str) -> None:
    text = pkg.readme_text(package_id="p", created_at="t", actor="a", reason="r",
                           exporter={"writer": "api-1", "fingerprint": "SHA256:x"}, planned=[],
                           fingerprints={}, redacted_count=count, format_version=2)
    flat = " ".join(text.split())
    assert english in flat and chinese in flat.replace(" ", "")


def test_redacted_key() -> None:
    assert pkg.redacted_key("api-1", 12) == "ledger/api-1/000000000012.redacted.json"
    assert pkg.parse_redacted_key("ledger/api-1/000000000012.redacted.json") == ("api-1", 12)
    for name in ("ledger/api-1/000000000012.json", "ledger/api-1/12.redacted.json",
                 "ledger/../000000000012.redacted.json", "keys/000000000012.redacted.json",
                 "ledger/api-1/000000000012.redacted.json\n", "ledger/a/b/000000000012.redacted.json"):
        assert pkg.parse_redacted_key(name) is None, name


@pytest.mark.parametrize(("entry", "relevant"), [
    ({"writer": "s1", "seq": 4, "recording": SHA}, True),
    ({"writer": "s1", "seq": 4, "recording": "cd" * 32}, False),
    ({"writer": "api-1", "seq": 9, "recording": None}, True),  # the package's own 'exported'
    ({"writer": "api-1", "seq": 8, "recording": None}, False),  # another export
    ({"writer": "s1", "seq": 9, "recording": None}, False),
    ({"writer": "s1", "seq": 4, "recording": [SHA]}, False),
])
def test_is_relevant(entry: dict[str, Any], relevant: bool) -> None:
    assert pkg.is_relevant(entry, {SHA}, ("api-1", 9)) is relevant


@pytest.mark.parametrize(("relevant", "expected"), [
    ({}, {"api-1": (9, 9)}),
    ({"s1": (3, 7)}, {"api-1": (9, 9), "s1": (3, 7)}),
    ({"s1": (3, 7), "api-1": (2, 5)}, {"api-1": (2, 9), "s1": (3, 7)}),
])
def test_merge_runs(relevant: dict[str, tuple[int, int]], expected: dict[str, tuple[int, int]]) -> None:
    assert pkg.merge_runs(relevant, "api-1", 9) == expected


def test_resolve_recordings(tmp_path: Path) -> None:
    database = open_api_database(tmp_path / "catalog.sqlite3")
    try:
        twins = ["0123456789ab" + "0" * 52, "0123456789ab" + "1" * 52]
        for sha in (*twins, SHA):
            columns = {"sha256": sha, "station": "s", "sort_time": "t", "archived_at": "t",
                       "compliance": "on_time", "size_bytes": 1, "extension": "mp4",
                       "original_key": "k", "manifest_key": "k", "manifest_sha256": "h",
                       "manifest": "{}", "archived_by": "s", "archived_seq": 1, "indexed_at": "t"}
            database.execute(f"INSERT INTO recordings ({', '.join(columns)}) VALUES "
                             f"({', '.join('?' for _ in columns)})", tuple(columns.values()))
        rows = pkg.resolve_recordings(database, [SHA[:12].upper(), SHA, twins[0][:13]])
        assert [row["sha256"] for row in rows] == [SHA, twins[0]]
        with pytest.raises(ConflictError, match="ambiguous"):
            pkg.resolve_recordings(database, [twins[0][:12]])
        with pytest.raises(NotFoundError):
            pkg.resolve_recordings(database, ["0123456789ac"])
        with pytest.raises(UsageError):
            pkg.resolve_recordings(database, ["0123456789a"])
        with pytest.raises(UsageError):
            pkg.resolve_recordings(database, ["0123456789ab%"])
    finally:
        database.close()


@pytest.mark.parametrize(("name", "refused"), [
    ("recordings/ab/original.mp4", False),
    ("README.txt", False),
    ("../x", True), ("a/../x", True), ("/x", True), ("a\\b", True), ("C:x", True),
    ("a//b", True), ("./a", True), ("a/\x07", True), ("", True),
])
def test_unsafe_member_name(name: str, refused: bool) -> None:
    assert (pkg.unsafe_member_name(name) is not None) is refused
