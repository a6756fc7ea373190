"""Evidence packages (evidence_daemon.api.package): real footage ingested by the real CLI, viewing
copies made by ffmpeg, the API catalog filled by the indexer, a package exported and then
tampered with in every way we can think of. ``verify_package`` must name the file each time."""

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
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.signing import fingerprint, load_or_create_private_key, public_pem
from evidence_daemon.custody.verify import Problem
from evidence_daemon.errors import (
    ConfigError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    UsageError,
)
from evidence_daemon.state.db import Database
from .footage import ffmpeg_available, make_audio_wav, make_video
from .helpers import write_config

pytestmark = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg/ffprobe not installed")

API_WRITER = "api-1"
MEDIA_SECTION = "[media]\nproxy_max_width = 256\nproxy_max_height = 240\n"
EXPORTED_AT = datetime(2026, 11, 26, 2, 0, 0, tzinfo=timezone.utc)


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
    package: Path
    info: pkg.PackageInfo = field(init=False)  # the package exported by the fixture

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
    database = open_api_database(base / "api" / "catalog.sqlite3")
    key = load_or_create_private_key(base / "api" / "signing.key")
    ledger = LedgerWriter(store, database, API_WRITER, key, clock=lambda: EXPORTED_AT)
    indexer = Indexer(store, database)
    indexer.poll()
    world = World(store, database, ledger, indexer, "town-a-dock-1", _sha256(video),
                  _sha256(audio), _sha256(other), base / "out" / "package.zip")
    assert database.scalar("SELECT COUNT(*) FROM recordings") == 3
    # Two views before the export: one of an exported recording, one of another, so the API
    # node's run in the package has to span an entry that concerns neither.
    for recording in (world.video, world.other):
        entry = ledger.append("accessed", recording=recording, actor="user:auditor",
                              details={"kind": "proxy", "reason": "review"})
        world.index_own(int(entry["seq"]))
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


# -- the untouched package ------------------------------------------------------------------

def test_export_writes_a_package_that_verifies(world: World) -> None:
    info = world.info
    assert info.path == world.package and info.path.exists()
    assert info.sha256 == _sha256(info.path) and info.size_bytes == info.path.stat().st_size
    assert info.recordings == (world.video, world.audio)
    assert info.exported_writer == API_WRITER
    assert not list(world.package.parent.glob(".*.part"))  # no temp file left

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


def test_ledger_runs_are_contiguous_and_stored_bytes(world: World) -> None:
    members = read_members(world.package)
    seqs: dict[str, list[int]] = {}
    for name, data in members.items():
        parsed = keys.parse_ledger_key(name)
        if parsed is not None:
            assert data == world.store.get_bytes(name)  # exactly as stored
            seqs.setdefault(parsed[0], []).append(parsed[1])
    relevant = world.database.query(
        "SELECT writer, MIN(seq), MAX(seq) FROM events WHERE recording IN (?, ?) GROUP BY writer",
        (world.video, world.audio))
    expected = {row[0]: (row[1], row[2]) for row in relevant}
    expected[API_WRITER] = (expected[API_WRITER][0], world.info.exported_seq)
    assert {writer: (min(s), max(s)) for writer, s in seqs.items()} == expected
    for writer, found in seqs.items():
        assert sorted(found) == list(range(min(found), max(found) + 1)), writer
    # The access to the other recording lies inside the API run: it is included.
    assert seqs[API_WRITER] == [1, 2, 3]


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

def test_every_file_with_one_byte_changed_in_the_zip_is_named(world: World, tmp_path: Path) -> None:
    """Acceptance: for every file of the package, a copy of the zip with one byte of that
    file's data changed fails verification with a problem naming that file."""
    missed = []
    for name in read_members(world.package):
        report = pkg.verify_package(flip_in_zip(world.package, tmp_path / "flipped.zip", name))
        if report.ok or not names(report.problems, name):
            missed.append(f"{name}: {problem_text(report) or 'OK'}")
    assert not missed, "\n".join(missed)


def test_every_file_with_one_byte_changed_and_rezipped_is_named(world: World, tmp_path: Path) -> None:
    """The same with a well-formed zip (fresh CRCs): only the package's own checks can tell."""
    members = read_members(world.package)
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


@pytest.mark.parametrize("which", ["original", "ledger", "key", "readme"])
def test_a_file_removed_is_named(world: World, tmp_path: Path, which: str) -> None:
    members = read_members(world.package)
    victim = {
        "original": keys.original_key(world.video, "mp4"),
        "ledger": keys.ledger_key(API_WRITER, 2),
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
    assert [problem.subject for problem in report.problems] == [keys.public_key_key(world.station)]
    assert "key not trusted" in report.problems[0].message

    report = pkg.verify_package(world.package, trusted_fingerprints={"SHA256:somebody-else"})
    assert {problem.subject for problem in report.problems} == {
        keys.public_key_key(world.station), keys.public_key_key(API_WRITER)}
    assert not any("compare" in line for line in pkg.format_package_report(report))


def test_a_complete_forgery_with_a_fresh_key_is_caught_only_by_trusted_fingerprints(
        world: World, tmp_path: Path) -> None:
    """Whoever replaces every key and re-signs everything makes a self-consistent package:
    only the fingerprints, compared out of band, tell. That is why README.txt lists them."""
    fresh = Ed25519PrivateKey.generate()

    def swap_exporter_key(members: dict[str, bytes], package: dict[str, Any]) -> None:
        members[keys.public_key_key(API_WRITER)] = public_pem(fresh)
        package["exporter"]["fingerprint"] = fingerprint(fresh)
        previous = canonical.GENESIS_PREV
        for seq in (1, 2, 3):  # the API node's whole chain in the package, re-signed
            name = keys.ledger_key(API_WRITER, seq)
            entry, _ = canonical.parse_stored(members[name])
            entry["prev"] = previous
            previous = canonical.entry_hash(entry)
            members[name] = canonical.stored_bytes(entry, fresh.sign(canonical.canonical_bytes(entry)))

    forged = forge(world.package, tmp_path / "forged.zip", fresh, swap_exporter_key)
    assert pkg.verify_package(forged).ok
    trusted = set(pkg.verify_package(world.package).writers.values())
    report = pkg.verify_package(forged, trusted_fingerprints=trusted)
    assert [problem.subject for problem in report.problems] == [keys.public_key_key(API_WRITER)]


# -- an insider with the API node's key ------------------------------------------------------

def _ledger_names(members: dict[str, bytes], writer: str) -> list[str]:
    return sorted(name for name in members if name.startswith(keys.ledger_prefix(writer)))


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
            name = _ledger_names(members, world.station)[1]
            entry, signature = canonical.parse_stored(members[name])
            entry["actor"] = "cli:someone-else"
            members[name] = canonical.stored_bytes(entry, signature)
        elif scenario == "entry-dropped":
            dropped = _ledger_names(members, world.station)[1]
            del members[dropped]
            name = _ledger_names(members, world.station)[1]  # the one after the gap
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


# -- hostile zips -----------------------------------------------------------------------------

@pytest.mark.parametrize("hostile", ["../escape.txt", "recordings/../../escape.txt", "/etc/passwd",
                                     "keys\\evil.pub", "C:/evil.txt", "ledger/./x.json"])
def test_hostile_member_names_are_refused(world: World, tmp_path: Path, hostile: str) -> None:
    members = {**read_members(world.package), hostile: b"boo\n"}
    report = pkg.verify_package(write_members(tmp_path / "hostile.zip", members))
    refused = [problem for problem in report.problems if problem.subject == hostile]
    assert refused and refused[0].message.startswith("refused"), problem_text(report)
    assert not (tmp_path.parent / "escape.txt").exists()


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

        ledger = LedgerWriter(store, database, API_WRITER, world.ledger.private_key)
        out = tmp_path / "out" / "damaged.zip"
        with pytest.raises(IntegrityError, match=message):
            pkg.export_recordings(store, database, ledger, lambda seq: indexer.poll(),
                                  [world.video], out, reason="court request", actor="cli:auditor")
        assert not out.exists() and not list(out.parent.glob("*"))
        last = max(store.list_keys(keys.ledger_prefix(API_WRITER)))
        entry, _ = canonical.parse_stored(store.get_bytes(last))
        assert entry["event"] == "exported" and entry["details"]["recordings"] == [world.video]
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
    assert pkg.normal_fingerprint(printed) == fingerprint(world.ledger.private_key)
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
        ledger = LedgerWriter(store, database, API_WRITER, Ed25519PrivateKey.generate())
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
