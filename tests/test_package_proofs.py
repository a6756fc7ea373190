"""Evidence packages of format 3 over a long chain: proof for one recording.

A station chain of 10,000 entries (written straight into a filesystem archive by
``proof_fixtures.SyntheticChain``: thousands of other cases, their officers and card paths),
two station checkpoints, an API node with its own views, a real catalog filled by the indexer.
A package for one recording must carry nothing of any other case, stay small whatever the
chain length (proofs of about log2(N) hashes), verify with nothing but itself, and name every
forgery: a forged inclusion proof, a proof against another checkpoint, a checkpoint re-signed
with an untrusted key, an entry of another writer moved in, a removed entry.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field, replace
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
from evidence_daemon.custody import merkle
from evidence_daemon.custody.chain import Event, Role, judge_entry, may_sign
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.proofs import (
    checkpoint_entry_details,
    inclusion_problem,
    inclusion_proofs,
    parse_proof,
    proof_bytes,
    tree_head_of,
)
from evidence_daemon.custody.signing import fingerprint, public_pem
from evidence_daemon.custody.timestamp import request_timestamp
from evidence_daemon.state.db import Database

from .faultlog import FaultLog
from .proof_fixtures import SyntheticChain, archive_recording, put_file
from .tsa_fixtures import LoopbackTsa, TsaPki

STATION = "town-a-dock-1"
API = "api-1"
CHAIN_LENGTH = 10_000
EXPORTED_AT = datetime(2026, 11, 26, 2, 0, 0, tzinfo=timezone.utc)
TARGET_OFFICER = "10086"
TARGET_PATH = "DCIM/DSJ001_10086_20261125083000_0001.MP4"
OTHER_VIEW = {"kind": "original", "reason": "neighbour dispute 2026-0871",
              "remote": "203.0.113.77"}
SIZE_BOUND_BYTES = 64 * 1024  # beyond the media files


def cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


@dataclass
class LongWorld:
    root: Path
    store: FilesystemArchive
    database: Database
    ledger: LedgerWriter
    indexer: Indexer
    station: SyntheticChain
    target: str  # archived early, flagged later: proven against the newest checkpoint
    late: str  # archived after the station's newest checkpoint: unproven
    old_checkpoint: int  # seq of the station's older checkpoint
    checkpoint: int  # seq of its newest
    other_ids: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # officers, card paths, reasons of others
    package: Path = Path()
    info: pkg.PackageInfo | None = None

    def index_own(self, seq: int) -> None:
        if not self.indexer.index_own(self.ledger.writer, seq):
            self.indexer.poll()

    def export(self, ids: list[str], out: Path) -> pkg.PackageInfo:
        return pkg.export_recordings(self.store, self.database, self.ledger, self.index_own,
                                     ids, out, reason="court request 2026-117",
                                     actor="cli:auditor", clock=lambda: EXPORTED_AT)

    @property
    def anchors(self) -> set[str]:
        return {fingerprint(self.station.key), fingerprint(self.ledger.private_key)}


@pytest.fixture(scope="module")
def long_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LongWorld]:
    base = tmp_path_factory.mktemp("long")
    root = base / "archive"
    store = FilesystemArchive(root)
    store.check()
    station = SyntheticChain(root, STATION, Role.STATION)
    other_ids: list[str] = []
    secrets: list[str] = [OTHER_VIEW["reason"], OTHER_VIEW["remote"], "neighbour-case"]

    def other_recording(number: int) -> None:
        officer, path = f"PC-2{number:04d}", f"DCIM/DSJ009_2{number:04d}_{number:05d}.MP4"
        other_ids.append(archive_recording(
            root, station, f"other case {number}\n".encode() * 40, officer=officer,
            device="DSJ009", source_path=path, recorded_start="2026-11-20T08:00:00+08:00"))
        secrets.extend([officer, path])

    def filler(number: int) -> None:
        recording = hashlib.sha256(f"never archived {number}".encode()).hexdigest()
        officer, path = f"PC-3{number:05d}", f"DCIM/FAKE_3{number:05d}.MP4"
        station.append(Event.ACQUIRED, recording, f"station:{STATION}",
                       {"source_path": path, "officer_id": officer, "device_id": "DSJ007"})
        other_ids.append(recording)
        secrets.extend([officer, path])

    for number in range(10):
        other_recording(number)
    target = archive_recording(root, station, b"the recording in court\n" * 100,
                               officer=TARGET_OFFICER, device="DSJ001", source_path=TARGET_PATH,
                               recorded_start="2026-11-25T08:30:00+08:00")
    number = 0
    while len(station.hashes) < CHAIN_LENGTH // 2:
        filler(number)
        number += 1
    old_checkpoint = int(station.checkpoint()["seq"])
    station.append(Event.FLAGGED, target, f"station:{STATION}", {"flag": "late"})
    for other in range(10, 20):
        other_recording(other)
    while len(station.hashes) < CHAIN_LENGTH - 1:
        filler(number)
        number += 1
    newest = int(station.checkpoint()["seq"])
    assert newest == CHAIN_LENGTH
    late = archive_recording(root, station, b"archived after the checkpoint\n" * 50,
                             officer="10087", device="DSJ002",
                             source_path="DCIM/DSJ002_10087_20261125100000_0001.MP4",
                             recorded_start="2026-11-25T10:00:00+08:00")

    database = open_api_database(base / "api" / "catalog.sqlite3")
    api_key = Ed25519PrivateKey.generate()
    ledger = LedgerWriter(store, database, API, api_key, role=Role.API,
                          clock=lambda: EXPORTED_AT)
    indexer = Indexer(store, database)
    world = LongWorld(root, store, database, ledger, indexer, station, target, late,
                      old_checkpoint, newest, other_ids, secrets)
    for recording, actor, details in [
            (target, "user:auditor", {"kind": "proxy", "reason": "review", "remote": "198.51.100.7"}),
            (other_ids[3], "user:neighbour-case", OTHER_VIEW)]:
        ledger.append(Event.ACCESSED, recording=recording, actor=actor, details=details)
    indexer.poll()
    assert database.scalar("SELECT COUNT(*) FROM events WHERE writer = ?",
                           (STATION,)) == CHAIN_LENGTH + 2
    assert database.scalar("SELECT COUNT(*) FROM recordings") == 22
    world.package = base / "out" / "one.zip"
    world.info = world.export([target], world.package)
    yield world
    database.close()


# -- helpers ----------------------------------------------------------------------------------

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
    """An insider holding the API node's key: change files, list them afresh, re-sign."""
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


def flip_content(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


def problem_text(report: pkg.PackageReport) -> str:
    return "\n".join(map(str, report.problems))


def names(report: pkg.PackageReport, name: str) -> bool:
    return any(problem.subject == name or name in problem.message for problem in report.problems)


def station_entry(members: dict[str, bytes], event: str, recording: str) -> str:
    for name, data in sorted(members.items()):
        if name.startswith(keys.ledger_prefix(STATION)):
            entry, _ = canonical.parse_stored(data)
            if entry["event"] == event and entry["recording"] == recording:
                return name
    raise AssertionError(f"no {event} entry of {recording[:12]} in the package")


def proof_of(ledger_name: str) -> str:
    writer, seq = keys.parse_ledger_key(ledger_name) or ("", 0)
    return pkg.proof_name(writer, seq)


# -- the package for one recording -----------------------------------------------------------

def test_a_package_for_one_recording_out_of_ten_thousand_verifies(long_world: LongWorld) -> None:
    report = pkg.verify_package(long_world.package, trusted_fingerprints=long_world.anchors)
    assert report.ok, problem_text(report)
    assert report.format_version == 3 and report.recordings == [long_world.target]
    assert report.uncovered == []
    assert report.checkpoints[STATION] == f"checkpoint #{CHAIN_LENGTH} over entries 1..{CHAIN_LENGTH - 1}"
    assert report.roles == {STATION: "role station, registered", API: "role api, registered"}
    # station: registration, acquired, archived, flagged; API: registration, view, exported
    assert report.proven == {STATION: 4, API: 3}
    lines = pkg.format_package_report(report)
    assert f"ledger writer {STATION}: key {fingerprint(long_world.station.key)}, role station, " \
           f"registered; 4 entries proven against its checkpoint #{CHAIN_LENGTH} over entries " \
           f"1..{CHAIN_LENGTH - 1}" in lines
    assert lines[-1].endswith("(7 proven, 0 not covered by a checkpoint) from 2 writer(s) in "
                              "one.zip: OK")
    code, printed = cli("verify-package", str(long_world.package),
                        *[f"--trust={anchor}" for anchor in long_world.anchors])
    assert code == 0, printed


def test_it_carries_no_other_case_and_stays_small(long_world: LongWorld) -> None:
    """Acceptance (issue 11): no other recording id, officer, card path, viewer or reason in
    any file of the zip, and a size bound whatever the chain length."""
    members = read_members(long_world.package)
    leaks = [(secret, name) for name, data in members.items()
             for secret in [*long_world.other_ids, *long_world.secrets]
             if secret.encode() in data]
    assert not leaks, leaks[:5]
    raw = long_world.package.read_bytes()
    assert not any(secret.encode() in raw for secret in long_world.other_ids[:50])

    media = sum(len(data) for name, data in members.items()
                if keys.parse_recording_key(name) and not name.endswith("manifest.json"))
    overhead = long_world.package.stat().st_size - media
    assert overhead < SIZE_BOUND_BYTES, overhead
    # Proofs are logarithmic: a path of ceil(log2(n)) hashes at most, for a tree of n entries.
    longest = max(len(parse_proof(data).audit_path) for name, data in members.items()
                  if name.startswith(pkg.PROOFS_PREFIX + STATION))
    assert longest <= math.ceil(math.log2(CHAIN_LENGTH - 1)) == 14
    ledger_files = [name for name in members if name.startswith(keys.LEDGER_PREFIX)]
    assert len(ledger_files) == 4 + 1 + 3 + 1  # the station's and the API node's, checkpoints
    package = json.loads(members[pkg.PACKAGE_JSON])
    assert package["format_version"] == 3
    station = next(item for item in package["ledger"] if item["writer"] == STATION)
    assert station["checkpoint"] == {"seq": CHAIN_LENGTH, "timestamp": None,
                                     "file": keys.ledger_key(STATION, CHAIN_LENGTH)}
    assert station["uncovered"] == [] and len(station["proven"]) == 4


def test_readme_explains_the_proofs_in_both_languages(long_world: LongWorld) -> None:
    text = read_members(long_world.package)[pkg.README_NAME].decode("utf-8")
    flat = " ".join(text.split())
    for needle in ("proofs/<writer>/<number>.json", "RFC 9162 section 2.1.3.2", "root_hash",
                   "never from the proof", "checkpoints/<writer>/<number>.tsr",
                   "nothing about any other case", "默克尔树", "检查点", "不涉及其他案件",
                   "可信时间戳"):
        assert needle in flat, needle
    assert ".redacted.json" not in text


def test_every_file_with_one_byte_changed_is_named(long_world: LongWorld, tmp_path: Path) -> None:
    members = read_members(long_world.package)
    missed = []
    for name in members:
        changed = {**members, name: flip_content(members[name])}
        report = pkg.verify_package(write_members(tmp_path / "changed.zip", changed))
        if report.ok or not names(report, name):
            missed.append(f"{name}: {problem_text(report) or 'OK'}")
    assert not missed, "\n".join(missed)


def test_entries_after_the_newest_checkpoint_go_in_unproven_with_a_warning(
        long_world: LongWorld, tmp_path: Path) -> None:
    """A station signs a checkpoint at the end of every ingest and hourly; an entry written
    since is signed but not yet proven part of the chain. The package says so, verify-package
    warns about each (exit 0: nothing was altered), README.txt counts them."""
    out = tmp_path / "late.zip"
    long_world.export([long_world.late], out)
    report = pkg.verify_package(out, trusted_fingerprints=long_world.anchors)
    assert report.ok, problem_text(report)
    assert report.uncovered == [keys.ledger_key(STATION, CHAIN_LENGTH + 1),
                                keys.ledger_key(STATION, CHAIN_LENGTH + 2)]
    code, printed = cli("verify-package", str(out))
    assert code == 0, printed
    assert (f"WARNING {keys.ledger_key(STATION, CHAIN_LENGTH + 2)}: not covered by a checkpoint "
            "(consistency with the chain not proven)") in printed
    readme = " ".join(read_members(out)[pkg.README_NAME].decode("utf-8").split())
    assert "2 events were written after the newest checkpoint" in readme
    assert "有 2 条事件写于其写入方最新检查点之后" in readme


# -- forgeries ---------------------------------------------------------------------------------

def _forged_proof(world: LongWorld) -> tuple[Callable[[dict[str, bytes], dict[str, Any]], None], str]:
    def change(members: dict[str, bytes], package: dict[str, Any]) -> None:
        name = proof_of(station_entry(members, "archived", world.target))
        proof = json.loads(members[name])
        proof["audit_path"][3] = "e" * 64
        members[name] = canonical.canonical_json(proof)
    name = proof_of(station_entry(read_members(world.package), "archived", world.target))
    return change, name


def _other_checkpoint(world: LongWorld) -> tuple[Callable[[dict[str, bytes], dict[str, Any]], None], str]:
    """The proof re-pointed at the station's older checkpoint (its entry brought in): the
    same path does not lead to that tree's root; the tree size comes from the checkpoint."""
    old = keys.ledger_key(STATION, world.old_checkpoint)

    def change(members: dict[str, bytes], package: dict[str, Any]) -> None:
        members[old] = world.store.get_bytes(old)
        name = proof_of(station_entry(members, "archived", world.target))
        proof = json.loads(members[name])
        proof["checkpoint_seq"] = world.old_checkpoint
        members[name] = canonical.canonical_json(proof)
    name = proof_of(station_entry(read_members(world.package), "archived", world.target))
    return change, name


def _forged_station(world: LongWorld, *, replace_key: bool
                    ) -> tuple[Callable[[dict[str, bytes], dict[str, Any]], None], str]:
    """The whole station part made afresh by a forger with a new key: registration, an
    archived event for a forged manifest (another officer), a checkpoint over that tree,
    proofs that hold. Self-consistent: only the trust anchors tell when the key is replaced
    too; otherwise the station's key in the package names the forgery."""
    forger = Ed25519PrivateKey.generate()
    fake = SyntheticChain(world.root.parent / f"forged-{replace_key}", STATION, Role.STATION,
                          forger)
    manifest_name = keys.manifest_key(world.target)

    def change(members: dict[str, bytes], package: dict[str, Any]) -> None:
        manifest = json.loads(members[manifest_name])
        manifest["officer_id"] = "20001"
        members[manifest_name] = json.dumps(manifest, indent=2).encode()
        fake.append(Event.ARCHIVED, world.target, f"station:{STATION}", {
            "manifest_key": manifest_name,
            "manifest_sha256": hashlib.sha256(members[manifest_name]).hexdigest()})
        checkpoint = fake.checkpoint()
        for name in [name for name in members
                     if name.startswith((keys.ledger_prefix(STATION), pkg.PROOFS_PREFIX + STATION))]:
            del members[name]
        for seq in range(1, len(fake.hashes) + 1):
            members[keys.ledger_key(STATION, seq)] = (
                fake.root / keys.ledger_key(STATION, seq)).read_bytes()
        for seq, proof in inclusion_proofs(STATION, int(checkpoint["seq"]), fake.hashes[:-1],
                                           [1, 2]).items():
            members[pkg.proof_name(STATION, seq)] = proof_bytes(proof)
        if replace_key:
            members[keys.public_key_key(STATION)] = public_pem(forger)
        for item in package["ledger"]:
            if item["writer"] == STATION:
                item.update(entries=[1, 2, 3], proven=[1, 2], uncovered=[],
                            checkpoint={"seq": 3, "file": keys.ledger_key(STATION, 3),
                                        "timestamp": None})

    named = keys.public_key_key(STATION) if replace_key else keys.ledger_key(STATION, 3)
    return change, named


def _moved_in(world: LongWorld) -> tuple[Callable[[dict[str, bytes], dict[str, Any]], None], str]:
    """The API node's view of the recording, with its proof, moved into the station's chain
    (as if the station had recorded it)."""
    members = read_members(world.package)
    view = next(name for name, data in sorted(members.items())
                if name.startswith(keys.ledger_prefix(API))
                and canonical.parse_stored(data)[0]["event"] == "accessed")
    target = keys.ledger_key(STATION, 77)

    def change(members: dict[str, bytes], package: dict[str, Any]) -> None:
        members[target] = members.pop(view)
        proof = json.loads(members.pop(proof_of(view)))
        proof.update(writer=STATION, seq=77, checkpoint_seq=world.checkpoint)
        members[pkg.proof_name(STATION, 77)] = canonical.canonical_json(proof)
    return change, target


def _removed(world: LongWorld) -> tuple[Callable[[dict[str, bytes], dict[str, Any]], None], str]:
    """The archived event removed (and its proof), package.json re-signed to match."""
    name = station_entry(read_members(world.package), "archived", world.target)

    def change(members: dict[str, bytes], package: dict[str, Any]) -> None:
        del members[name], members[proof_of(name)]
    return change, keys.recording_prefix(world.target)


def _proof_dropped(world: LongWorld) -> tuple[Callable[[dict[str, bytes], dict[str, Any]], None], str]:
    """A proof removed and its entry declared 'after the newest checkpoint', to pass a
    rewritten entry off as merely unproven."""
    name = station_entry(read_members(world.package), "acquired", world.target)
    seq = (keys.parse_ledger_key(name) or ("", 0))[1]

    def change(members: dict[str, bytes], package: dict[str, Any]) -> None:
        del members[proof_of(name)]
        for item in package["ledger"]:
            if item["writer"] == STATION:
                item["uncovered"] = [seq]
    return change, name


FORGERIES: dict[str, Callable[[LongWorld], tuple[Callable[[dict[str, bytes], dict[str, Any]], None], str]]] = {
    "forged inclusion proof": _forged_proof,
    "proof against a different checkpoint": _other_checkpoint,
    "checkpoint re-signed with an untrusted key (key replaced)":
        lambda world: _forged_station(world, replace_key=True),
    "checkpoint signed by another key than the writer's": 
        lambda world: _forged_station(world, replace_key=False),
    "entry of another writer moved in": _moved_in,
    "archived entry removed": _removed,
    "proof removed, entry declared unproven": _proof_dropped,
}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_a_forgery_by_an_insider_is_named(long_world: LongWorld, tmp_path: Path, case: str,
                                          fault_log: FaultLog) -> None:
    """The insider holds the API node's key and re-signs package.json: only the proofs,
    checkpoints, keys and trust anchors can tell. Each case exits 7 naming the file."""
    change, named = FORGERIES[case](long_world)
    forged = forge(long_world.package, tmp_path / "forged.zip", long_world.ledger.private_key,
                   change)
    trust = [f"--trust={anchor}" for anchor in sorted(long_world.anchors)]
    code, printed = cli("verify-package", str(forged), *trust)
    failures = [line for line in printed.splitlines() if line.startswith("FAIL")]
    accepted = code == 0
    fault_log("tamper: packages", case, injected_by="package re-signed with the API node's key",
              files_lost=0, wrongly_archived=1 if accepted else 0, duplicates=0,
              exit_code=code, message=failures[0] if failures else printed)
    assert code == 7, printed
    assert any(named in line for line in failures), printed
    if case.endswith("(key replaced)"):  # self-consistent: only the anchors tell
        assert pkg.verify_package(forged).ok


@pytest.mark.parametrize("case", ["entry removed", "proof removed", "checkpoint removed"])
def test_a_file_removed_without_the_exporters_key_is_named(
        long_world: LongWorld, tmp_path: Path, case: str, fault_log: FaultLog) -> None:
    members = read_members(long_world.package)
    archived = station_entry(members, "archived", long_world.target)
    victim = {"entry removed": archived, "proof removed": proof_of(archived),
              "checkpoint removed": keys.ledger_key(STATION, long_world.checkpoint)}[case]
    del members[victim]
    code, printed = cli("verify-package", str(write_members(tmp_path / "removed.zip", members)))
    failures = [line for line in printed.splitlines() if line.startswith("FAIL")]
    fault_log("tamper: packages", case, injected_by="file deleted from the zip",
              files_lost=0, wrongly_archived=0 if code else 1, duplicates=0, exit_code=code,
              message=failures[0] if failures else printed)
    assert code == 7 and any(victim in line for line in failures), printed


# -- trusted time --------------------------------------------------------------------------

def test_a_timestamped_checkpoint_is_carried_and_checked(
        long_world: LongWorld, tmp_path: Path, tsa: LoopbackTsa,
        tsa_pki_factory: Callable[[str], TsaPki], fault_log: FaultLog) -> None:
    """The station's RFC 3161 token over its newest checkpoint goes into the package and is
    checked against the TSA certificate given (--tsa-cert); a token from another TSA is named."""
    checkpoint_key = keys.ledger_key(STATION, long_world.checkpoint)
    entry, _ = canonical.parse_stored(long_world.store.get_bytes(checkpoint_key))
    token, _ = request_timestamp(canonical.canonical_bytes(entry), url=tsa.url, trust=tsa.trust,
                                 timeout_s=30)
    stamp = keys.timestamp_key(STATION, long_world.checkpoint)
    put_file(long_world.root, stamp, token)
    out = tmp_path / "stamped.zip"
    long_world.export([long_world.target], out)
    assert read_members(out)[stamp] == token

    report = pkg.verify_package(out, tsa_trust=tsa.trust)
    assert report.ok, problem_text(report)
    assert list(report.timestamps) == [stamp] and "existed at" in report.timestamps[stamp]
    code, printed = cli("verify-package", str(out), "--tsa-cert", str(tsa.pki.chain_file))
    assert code == 0 and f"timestamp {stamp}: {checkpoint_key} existed at" in printed, printed
    code, printed = cli("verify-package", str(out))
    assert code == 0 and f"timestamp {stamp} not checked: give --tsa-cert" in printed, printed

    other = tsa_pki_factory("Other TSA")
    code, printed = cli("verify-package", str(out), "--tsa-cert", str(other.chain_file))
    failures = [line for line in printed.splitlines() if line.startswith("FAIL")]
    fault_log("tamper: packages", "timestamp token checked against another TSA",
              injected_by="--tsa-cert of a TSA that did not issue the token", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=code,
              message=failures[0] if failures else printed)
    assert code == 7 and any(stamp in line for line in failures), printed

    def swap(members: dict[str, bytes], package: dict[str, Any]) -> None:
        # A genuine token, but over another checkpoint (the older one): named.
        old, _ = canonical.parse_stored(long_world.store.get_bytes(
            keys.ledger_key(STATION, long_world.old_checkpoint)))
        members[stamp], _ = request_timestamp(canonical.canonical_bytes(old), url=tsa.url,
                                              trust=tsa.trust, timeout_s=30)
    forged = forge(out, tmp_path / "swapped.zip", long_world.ledger.private_key, swap)
    report = pkg.verify_package(forged, tsa_trust=tsa.trust)
    assert [problem.subject for problem in report.problems] == [stamp], problem_text(report)


# -- the pure parts (custody/proofs.py, roles) -----------------------------------------------

def _entry(seq: int, event: str, details: dict[str, Any], prev: str = "0" * 64) -> Any:
    return {"seq": seq, "prev": prev, "time": "2026-11-26T02:00:00.000000+00:00",
            "writer": STATION, "event": event, "recording": None, "actor": "station:x",
            "details": details}


HASHES = [hashlib.sha256(f"entry {n}".encode()).hexdigest() for n in range(1, 12)]


def test_checkpoint_entry_details_and_tree_head_of() -> None:
    details = checkpoint_entry_details(HASHES)
    assert details == {"tree_size": 11, "root_hash": merkle.tree_head(
        [merkle.entry_leaf_hash(h) for h in HASHES]).hex(), "head_seq": 11, "head_hash": HASHES[-1]}
    head = tree_head_of(_entry(12, "checkpoint", details, prev=HASHES[-1]))
    assert (head.seq, head.tree_size, head.root.hex()) == (12, 11, details["root_hash"])
    with pytest.raises(ValueError):
        checkpoint_entry_details([])


@pytest.mark.parametrize(("seq", "event", "change", "prev", "why"), [
    (12, "archived", {}, HASHES[-1], "not a checkpoint"),
    (12, "checkpoint", {"root_hash": None}, HASHES[-1], "root_hash"),
    (12, "checkpoint", {"tree_size": 10}, HASHES[-1], "equal to head_seq"),
    (12, "checkpoint", {"tree_size": True, "head_seq": True}, HASHES[-1], "positive count"),
    (11, "checkpoint", {}, HASHES[-1], "would hold itself"),
    (12, "checkpoint", {}, HASHES[0], "not the entry before it"),
    (12, "checkpoint", {"head_hash": "X" * 64}, HASHES[-1], "lower-case hex"),
])
def test_tree_head_of_refuses_what_is_no_checkpoint(seq: int, event: str, change: dict[str, Any],
                                                     prev: str, why: str) -> None:
    details = {**checkpoint_entry_details(HASHES), **change}
    with pytest.raises(ValueError, match=why):
        tree_head_of(_entry(seq, event, details, prev=prev))


def test_a_later_checkpoint_need_not_follow_its_tree_directly() -> None:
    """A checkpoint signed while another append raced it lands later; still a tree head."""
    head = tree_head_of(_entry(14, "checkpoint", checkpoint_entry_details(HASHES), prev="a" * 64))
    assert head.tree_size == 11


def test_inclusion_proofs_round_trip_and_fail_when_anything_differs() -> None:
    head = tree_head_of(_entry(12, "checkpoint", checkpoint_entry_details(HASHES),
                               prev=HASHES[-1]))
    proofs = inclusion_proofs(STATION, 12, HASHES, range(1, 12))
    for seq, proof in proofs.items():
        assert parse_proof(proof_bytes(proof)) == proof
        assert inclusion_problem(HASHES[seq - 1], proof, head) is None
        assert inclusion_problem(HASHES[seq % 11], proof, head) is not None  # another entry
    moved = replace(proofs[3], seq=4)
    assert "does not prove entry 4" in (inclusion_problem(HASHES[3], moved, head) or "")
    other = replace(proofs[3], checkpoint_seq=13)
    assert "names checkpoint" in (inclusion_problem(HASHES[2], other, head) or "")
    beyond = replace(proofs[3], seq=12)
    assert "not in the tree of 11" in (inclusion_problem(HASHES[2], beyond, head) or "")


@pytest.mark.parametrize("change", [
    lambda body: {**body, "tree_size": 11},
    lambda body: {**body, "audit_path": [step.upper() for step in body["audit_path"]]},
    lambda body: {**body, "seq": 0},
    lambda body: {**body, "seq": "3"},
    lambda body: {key: value for key, value in body.items() if key != "checkpoint_seq"},
])
def test_parse_proof_refuses_anything_but_a_proof(change: Callable[[Any], Any]) -> None:
    body = json.loads(proof_bytes(inclusion_proofs(STATION, 12, HASHES, [3])[3]))
    with pytest.raises(ValueError):
        parse_proof(canonical.canonical_json(change(body)))
    with pytest.raises(ValueError, match="canonical"):
        parse_proof(json.dumps(body, indent=1).encode())


def test_a_checkpoint_says_nothing_of_a_writers_role() -> None:
    """Every role signs checkpoints: before a registration, one neither counts against the
    writer nor decides its role."""
    entry = _entry(1, "checkpoint", checkpoint_entry_details(HASHES[:1]))
    role, registered, problem = judge_entry(STATION, "SHA256:x", None, False, entry)
    assert (role, registered, problem) == (None, False, None)
    assert may_sign(Role.STATION, "checkpoint") and may_sign(Role.API, "checkpoint")
    assert may_sign(Role.STATION, "witnessed") and may_sign(Role.API, "witnessed")


def test_proof_names() -> None:
    assert pkg.proof_name(STATION, 7) == f"proofs/{STATION}/000000000007.json"
    assert pkg.parse_proof_name(f"proofs/{STATION}/000000000007.json") == (STATION, 7)
    for name in ("proofs/x/7.json", f"proofs/{STATION}/000000000007.redacted.json",
                 f"ledger/{STATION}/000000000007.json", "proofs/../000000000007.json"):
        assert pkg.parse_proof_name(name) is None
    assert keys.timestamp_key(STATION, 7) == f"checkpoints/{STATION}/000000000007.tsr"
    assert keys.parse_timestamp_key(keys.timestamp_key(STATION, 7)) == (STATION, 7)
    assert keys.parse_timestamp_key(f"checkpoints/{STATION}/7.tsr") is None
