"""Tamper table: forged, re-signed and altered custody, checked from a fresh state with only
the archive and the trust anchors (the station's and the API node's key fingerprints, as an
agency publishes them), by ``verify`` and by the API node's custody view.

Every case must exit 7 naming the writer or the recording, and a forged manifest must never
be shown as the recording's. Tail truncation and rewrites caught by checkpoints and witnesses
are in ``tests/test_checkpoints.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_daemon.api.app import create_app
from evidence_daemon.api.service import open_api_node
from evidence_daemon.archive import keys
from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.cli import main
from evidence_daemon.config import load_config
from evidence_daemon.custody import canonical
from evidence_daemon.custody.chain import Event, Role, registration_details
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.signing import fingerprint, load_private_key, public_pem
from evidence_daemon.state.db import Database

from .api_fixtures import make_api_config
from .faultlog import FaultLog
from .footage import ffmpeg_available, make_video
from .helpers import run_cli, write_config

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

STATION = "test-station"
API = "api-1"
FORGER = "town-b-dock-2"

pytestmark = pytest.mark.skipif(not ffmpeg_available(), reason="ffmpeg is needed for the proxy")


@dataclass(frozen=True)
class Base:
    archive: Path
    station_key: Ed25519PrivateKey
    api_key: Ed25519PrivateKey
    video: str  # recording with a proxy
    others: tuple[str, ...]

    @property
    def anchors(self) -> list[str]:
        return [fingerprint(self.station_key), fingerprint(self.api_key)]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("tamper-base")
    config = write_config(root)
    card = root / "card"
    make_video(card / "DSJ001_10086_20261125083000_0001.MP4", seconds=1)
    (card / "DSJ001_10086_20261125090000_0002.MP4").write_bytes(b"a second recording")
    (card / "DSJ001_10086_20261125093000_0003.MP4").write_bytes(b"a third recording")
    assert main(["--config", str(config), "ingest", str(card)]) == 0
    assert main(["--config", str(config), "proxies", "--run"]) == 0
    archive = root / "archive"
    video = hashlib.sha256((card / "DSJ001_10086_20261125083000_0001.MP4").read_bytes()).hexdigest()
    assert (archive / keys.proxy_key(video, "mp4")).exists()
    others = tuple(hashlib.sha256(data).hexdigest() for data in (b"a second recording",
                                                                 b"a third recording"))
    # an API node's audit chain: one access
    api_key = Ed25519PrivateKey.generate()
    api = LedgerWriter(FilesystemArchive(archive), Database(root / "api.sqlite3"), API, api_key,
                       role=Role.API)
    api.append(Event.ACCESSED, recording=video, actor="user:ann",
               details={"kind": "original", "reason": "review", "remote": "192.0.2.1"})
    station_key = load_private_key(root / "state" / "keys" / "station.ed25519")
    return Base(archive, station_key, api_key, video, others)


# -- forging tools ----------------------------------------------------------------------------


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)
    return path


def entries_of(archive: Path, writer: str) -> list[dict[str, Any]]:
    return [canonical.parse_stored(path.read_bytes())[0]
            for path in sorted((archive / "ledger" / writer).glob("*.json"))]


def write_chain(archive: Path, writer: str, key: Ed25519PrivateKey,
                entries: list[dict[str, Any]]) -> None:
    """(Re)write a writer's whole chain and key: seq and prev renumbered, every entry signed."""
    folder = archive / "ledger" / writer
    if folder.exists():
        for path in folder.glob("*.json"):
            writable(path)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    key_path = archive / keys.public_key_key(writer)
    if key_path.exists():
        writable(key_path)
    key_path.write_bytes(public_pem(key))
    prev = canonical.GENESIS_PREV
    for seq, entry in enumerate(entries, start=1):
        entry = {**entry, "seq": seq, "prev": prev, "writer": writer}
        (folder / f"{seq:012d}.json").write_bytes(
            canonical.stored_bytes(entry, key.sign(canonical.canonical_bytes(entry))))
        prev = canonical.entry_hash(entry)


def forged_writer(archive: Path, writer: str, key: Ed25519PrivateKey,
                  events: list[tuple[str, str | None, dict[str, Any]]]) -> None:
    """A brand-new self-signed writer, registered as a station like a real one."""
    registration = ("key-registered", None, registration_details(Role.STATION, fingerprint(key), writer))
    write_chain(archive, writer, key, [
        {"time": "2026-11-26T01:00:00.000000+00:00", "event": event, "recording": recording,
         "actor": f"station:{writer}", "details": details}
        for event, recording, details in [registration, *events]])


def forge_manifest(archive: Path, recording: str) -> str:
    """Officer and start time changed; returns the new manifest's SHA-256."""
    path = writable(archive / keys.manifest_key(recording))
    manifest = json.loads(path.read_bytes())
    manifest["officer_id"], manifest["recorded_start"] = "66666", "2026-11-25T07:00:00+08:00"
    path.write_bytes(json.dumps(manifest, indent=2).encode())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archived_details(recording: str, manifest_sha256: str) -> dict[str, Any]:
    return {"original_key": keys.original_key(recording, "mp4"),
            "manifest_key": keys.manifest_key(recording), "manifest_sha256": manifest_sha256,
            "once": True, "source_key": f"forged:{recording}"}


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(writable(path).read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))


# -- the cases --------------------------------------------------------------------------------

Tamper = Callable[[Base, Path], tuple[str, str]]  # -> (what verify must name, the case's recording)


def forged_manifest_new_writer(base: Base, archive: Path) -> tuple[str, str]:
    new_sha = forge_manifest(archive, base.video)
    forged_writer(archive, FORGER, Ed25519PrivateKey.generate(),
                  [("archived", base.video, archived_details(base.video, new_sha))])
    return FORGER, base.video


def fabricated_recording(base: Base, archive: Path) -> tuple[str, str]:
    data = b"footage that never came from a camera"
    recording = hashlib.sha256(data).hexdigest()
    folder = archive / keys.recording_prefix(recording)
    folder.mkdir(parents=True)
    (folder / "original.mp4").write_bytes(data)
    manifest = json.loads((archive / keys.manifest_key(base.others[0])).read_bytes())
    manifest.update(sha256=recording, recording=recording, size_bytes=len(data),
                    original_key=keys.original_key(recording, "mp4"), station=FORGER)
    (folder / "manifest.json").write_bytes(json.dumps(manifest, indent=2).encode())
    manifest_sha = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    forged_writer(archive, FORGER, Ed25519PrivateKey.generate(),
                  [("acquired", recording, {"sha256": recording, "once": True}),
                   ("archived", recording, archived_details(recording, manifest_sha))])
    return FORGER, recording


def resign(base: Base, archive: Path, *, drop: str | None = None) -> tuple[str, str]:
    """The station's whole chain re-signed with a new key (optionally without one recording,
    whose files are deleted too); its registration rewritten to name the new key."""
    key = Ed25519PrivateKey.generate()
    entries = [entry for entry in entries_of(archive, STATION) if entry["recording"] != drop]
    for entry in entries:
        if entry["event"] == "key-registered":
            entry["details"] = registration_details(Role.STATION, fingerprint(key), STATION)
    write_chain(archive, STATION, key, entries)
    if drop is not None:
        folder = archive / keys.recording_prefix(drop)
        for path in folder.iterdir():
            writable(path)
        shutil.rmtree(folder)
    # The removed recording leaves no trace to name; the others lose their trusted archival.
    return STATION, base.video


def resigned_chain(base: Base, archive: Path) -> tuple[str, str]:
    return resign(base, archive)


def resigned_chain_recording_removed(base: Base, archive: Path) -> tuple[str, str]:
    return resign(base, archive, drop=base.others[1])


def api_signs_archived(base: Base, archive: Path) -> tuple[str, str]:
    """The API node's (trusted) key signs an 'archived' event for a forged manifest."""
    new_sha = forge_manifest(archive, base.video)
    entries = entries_of(archive, API)
    entries.append({"time": "2026-11-26T01:00:00.000000+00:00", "event": "archived",
                    "recording": base.video, "actor": "user:mallory",
                    "details": archived_details(base.video, new_sha)})
    write_chain(archive, API, base.api_key, entries)
    return API, base.video


def disagreeing_archived(base: Base, archive: Path) -> tuple[str, str]:
    """The station's own (trusted) key signs a second 'archived' event naming another
    manifest (a stolen key, or a bug): which manifest is right cannot be chosen."""
    new_sha = forge_manifest(archive, base.video)
    entries = entries_of(archive, STATION)
    entries.append({"time": "2026-11-26T01:00:00.000000+00:00", "event": "archived",
                    "recording": base.video, "actor": "station:test-station",
                    "details": archived_details(base.video, new_sha)})
    write_chain(archive, STATION, base.station_key, entries)
    return base.video[:12], base.video


def byte_in_original(base: Base, archive: Path) -> tuple[str, str]:
    flip_byte(next((archive / keys.recording_prefix(base.others[0])).glob("original*")))
    return base.others[0][:12], base.others[0]


def byte_in_manifest(base: Base, archive: Path) -> tuple[str, str]:
    path = archive / keys.manifest_key(base.video)
    flip_byte(path, path.read_bytes().index(b'"officer_id": "10086"') + len('"officer_id": "1'))
    return base.video[:12], base.video


def byte_in_ledger_entry(base: Base, archive: Path) -> tuple[str, str]:
    archived = next(path for path in sorted((archive / "ledger" / STATION).glob("*.json"))
                    if b'"event":"archived"' in path.read_bytes()
                    and base.others[0].encode() in path.read_bytes())
    data = archived.read_bytes()
    flip_byte(archived, data.index(b'"time":"2026-') + len('"time":"202'))
    return STATION, base.others[0]


def byte_in_key(base: Base, archive: Path) -> tuple[str, str]:
    path = archive / keys.public_key_key(STATION)
    flip_byte(path, path.read_bytes().index(b"\n") + 20)  # inside the base64 of the key
    return STATION, base.video


def byte_in_proxy(base: Base, archive: Path) -> tuple[str, str]:
    flip_byte(archive / keys.proxy_key(base.video, "mp4"))
    return base.video[:12], base.video


CASES: dict[str, Tamper] = {
    "forged manifest + 'archived' by a new self-signed writer": forged_manifest_new_writer,
    "fabricated recording backed by a new self-signed writer": fabricated_recording,
    "station chain re-signed with a new key": resigned_chain,
    "station chain re-signed with a new key, one recording removed": resigned_chain_recording_removed,
    "API node signs 'archived' (outside its role)": api_signs_archived,
    "two 'archived' events naming different manifests": disagreeing_archived,
    "one byte changed in an original": byte_in_original,
    "one byte changed in a manifest": byte_in_manifest,
    "one byte changed in a ledger entry": byte_in_ledger_entry,
    "one byte changed in a public key": byte_in_key,
    "one byte changed in a proxy": byte_in_proxy,
}


@pytest.fixture
def tampered(base: Base, tmp_path: Path) -> Iterator[Callable[[str], tuple[Path, str, str]]]:
    def make(case: str) -> tuple[Path, str, str]:
        archive = tmp_path / "archive"
        shutil.copytree(base.archive, archive)
        named, recording = CASES[case](base, archive)
        return archive, named, recording

    yield make


def fresh_config(tmp_path: Path, archive: Path) -> Path:
    """A config as a new user on another machine writes it: the archive, no state."""
    return write_config(tmp_path / "auditor", station_id="auditor-machine",
                        archive={"backend": "filesystem", "path": str(archive)})


def test_the_untouched_archive_verifies_with_and_without_anchors(
        base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = fresh_config(tmp_path, base.archive)
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 0 and "consistency only" in out and "WARNING: no trust anchors" in out, out
    assert f"ledger writer {STATION}: key {fingerprint(base.station_key)} (role station, registered" in out
    trust = [arg for anchor in base.anchors for arg in ("--trust", anchor)]
    code, out, _ = run_cli(capsys, "--config", str(config), "verify", *trust)
    assert code == 0 and "WARNING" not in out and "key trusted" in out, out


@pytest.mark.parametrize("case", list(CASES))
def test_verify_names_every_tamper_case(
        case: str, base: Base, tmp_path: Path, tampered: Callable[[str], tuple[Path, str, str]],
        capsys: pytest.CaptureFixture[str], fault_log: FaultLog) -> None:
    archive, named, recording = tampered(case)
    config = fresh_config(tmp_path, archive)
    trust_file = tmp_path / "trusted-keys"
    trust_file.write_text(f"# published by the county\n{base.anchors[0]} {STATION}\n"
                          f"{base.anchors[1]} {API}\n")
    code, out, _ = run_cli(capsys, "--config", str(config), "--set",
                           f"verify.trusted_keys={trust_file}", "verify")
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    accepted = code == 0
    fault_log("tamper: verify", case, injected_by="archive edited as a new user could",
              files_lost=0, wrongly_archived=1 if accepted else 0, duplicates=0,
              exit_code=code, message=failures[0] if failures else out)
    assert code == 7, out
    assert any(named in line for line in failures), out
    if recording:
        assert any(recording[:12] in line for line in failures), out


@pytest.mark.parametrize("case", ["forged manifest + 'archived' by a new self-signed writer",
                                  "two 'archived' events naming different manifests"])
def test_disagreeing_archivals_are_caught_even_without_anchors(
        case: str, tmp_path: Path, tampered: Callable[[str], tuple[Path, str, str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    archive, _, recording = tampered(case)
    code, out, _ = run_cli(capsys, "--config", str(fresh_config(tmp_path, archive)), "verify")
    assert code == 7 and "'archived' events disagree about the manifest" in out, out
    assert recording[:12] in out


def test_a_writer_not_trusted_is_named_and_counts_for_nothing(
        base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = fresh_config(tmp_path, base.archive)
    code, out, _ = run_cli(capsys, "--config", str(config), "verify", "--trust", base.anchors[0])
    assert code == 7
    assert f"key of writer {API} is not trusted" in out and "NOT TRUSTED" in out
    code, out, _ = run_cli(capsys, "--config", str(config), "verify", "--trust", "SHA256:nobody")
    assert code == 7 and "no 'archived' event that counts" in out and STATION in out


def test_a_bad_trust_file_is_refused_naming_the_line(
        base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trust_file = tmp_path / "trusted-keys"
    trust_file.write_text(f"{base.anchors[0]}\nSHA256:typo\n")
    code, _, err = run_cli(capsys, "--config", str(fresh_config(tmp_path, base.archive)),
                           "--set", f"verify.trusted_keys={trust_file}", "verify")
    assert code == 2 and f"{trust_file}:2" in err


# -- the same forgeries through the API's custody view ----------------------------------------


CONTENT_CASES = ("one byte changed in an original", "one byte changed in a proxy")


@pytest.mark.parametrize("case", list(CASES))
def test_the_api_custody_view_never_shows_a_forgery_as_valid(
        case: str, base: Base, tmp_path: Path, tampered: Callable[[str], tuple[Path, str, str]],
        fault_log: FaultLog) -> None:
    """Custody and detail come from the catalog, which the indexer fills only from trusted
    writers, in role, with agreeing 'archived' events and matching manifests. Content bytes
    are not re-hashed for a custody view: for those cases the auditor's "verify now" (which
    the console offers on the same page) must say so."""
    archive, named, recording = tampered(case)
    trust_file = tmp_path / "trusted-keys"
    trust_file.write_text("\n".join(base.anchors) + "\n")
    config = load_config(make_api_config(tmp_path / "api", archive, api_id="api-view",
                                         extra=f'[verify]\ntrusted_keys = "{trust_file}"'),
                         environ={})
    node = open_api_node(config)
    try:
        node.indexer.poll()
        token = node.users.add("ann", "auditor")
        writer_problems = {row["writer"]: row["problem"]
                           for row in node.database.query("SELECT writer, problem FROM writers")}
        with TestClient(create_app(node, poll=False)) as client:
            headers = {"Authorization": f"Bearer {token}"}
            detail = client.get(f"/api/v1/recordings/{recording}", headers=headers)
            custody = client.get(f"/api/v1/recordings/{recording}/custody", headers=headers)
            checked = (client.post(f"/api/v1/recordings/{recording}/verify", headers=headers,
                                   json={"reason": "tamper test"})
                       if case in CONTENT_CASES else None)
    finally:
        node.close()
    shown = detail.json() if detail.status_code == 200 else None
    forged_officer_shown = shown is not None and shown["manifest"].get("officer_id") == "66666"
    fabricated_listed = shown is not None and shown["manifest"].get("station") == FORGER
    if checked is not None:
        flagged = checked.status_code == 200 and not checked.json()["ok"]
        seen = f"verify now: ok={checked.json().get('ok')}"
    else:
        flagged = custody.status_code == 404 or not custody.json()["verified"]
        seen = (f"detail {detail.status_code}, custody "
                f"{'not catalogued' if custody.status_code == 404 else 'verified=false'}")
    accepted = forged_officer_shown or fabricated_listed or not flagged
    fault_log("tamper: API custody view", case, injected_by="archive edited; an API node with "
              "trust anchors indexes it", files_lost=0, wrongly_archived=1 if accepted else 0,
              duplicates=0, exit_code=None, message=seen)
    assert not forged_officer_shown and not fabricated_listed, shown
    assert flagged, (custody.json(), checked.json() if checked is not None else None)
    if named in (FORGER, STATION, API):
        assert writer_problems.get(named), writer_problems
