"""Checkpoints, witnesses and trusted time (issue 11, parts 2 and 4), on a real filesystem
archive with a real station (``ingest``, the ``run`` checkpoint job) and a real API node.

The tamper table starts every case from a fresh state with only the archive (and, where the
case needs one, a checkpoint an auditor saved earlier with ``evidence-daemon checkpoint``):
each must exit 7 naming the writer, and the FAIL line must come from the witness check, so the
case is caught by checkpoints and not by something else. No trust anchors are given: the
witnesses alone must catch these.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_daemon.api.app import create_app
from evidence_daemon.api.service import ApiNode, open_api_node
from evidence_daemon.archive import keys
from evidence_daemon.archive.filesystem import FilesystemArchive
from evidence_daemon.cli import main
from evidence_daemon.config import load_config
from evidence_daemon.custody import canonical
from evidence_daemon.custody.chain import (
    Event,
    Role,
    check_chain,
    check_checkpoints,
    registration_details,
)
from evidence_daemon.custody.checkpoints import Checkpointer, Stamping
from evidence_daemon.custody.ledger import LedgerWriter
from evidence_daemon.custody.merkle import entry_leaf_hash, tree_head
from evidence_daemon.custody.signing import fingerprint, load_private_key
from evidence_daemon.errors import IntegrityError
from evidence_daemon.metrics.ledger import CheckpointCounters
from evidence_daemon.state.db import Database
from evidence_daemon.station import open_station
from evidence_daemon.upkeep.jobs import Upkeep

from .api_fixtures import make_api_config
from .faultlog import FaultLog
from .helpers import run_cli, write_config
from .test_tamper import entries_of, writable, write_chain
from .tsa_fixtures import LoopbackTsa

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

STATION = "test-station"
API = "api-1"
FAULT_CLASS = "tamper: truncation and checkpoints"


# -- the writer's side ------------------------------------------------------------------------


def ledger_in(tmp_path: Path, key: Ed25519PrivateKey | None = None, *, writer: str = "town-a",
              role: Role = Role.STATION, db_name: str = "state.db") -> LedgerWriter:
    return LedgerWriter(FilesystemArchive(tmp_path / "archive"), Database(tmp_path / db_name),
                        writer, key or Ed25519PrivateKey.generate(), role=role)


def stored_chain(archive: Path, writer: str) -> list[tuple[int, bytes]]:
    return [(int(path.stem), path.read_bytes())
            for path in sorted((archive / "ledger" / writer).glob("*.json"))]


def test_a_checkpoint_signs_the_tree_head_of_the_entries_before_it(tmp_path: Path) -> None:
    ledger = ledger_in(tmp_path)
    for n in range(4):
        ledger.append(Event.ACQUIRED, recording=f"{n:02d}" * 32, actor="a", details={"n": n})
    entry = ledger.checkpoint(actor="station:town-a")
    assert entry is not None and entry["seq"] == 6  # registration + 4 events, then this
    chain = stored_chain(tmp_path / "archive", "town-a")
    hashes = [canonical.entry_hash(canonical.parse_stored(data)[0]) for _, data in chain[:5]]
    assert entry["details"] == {"tree_size": 5, "head_seq": 5, "head_hash": hashes[-1],
                                "root_hash": tree_head([entry_leaf_hash(h) for h in hashes]).hex()}
    # nothing new since: no second checkpoint; a restarted writer extends the same tree
    assert ledger.checkpoint(actor="station:town-a") is None
    again = LedgerWriter(ledger.store, ledger.database, "town-a", ledger.private_key,
                         role=Role.STATION)
    again.append(Event.ACQUIRED, recording="ff" * 32, actor="a", details={})
    later = again.checkpoint(actor="station:town-a")
    assert later is not None and later["details"]["tree_size"] == 7
    result = check_chain("town-a", stored_chain(tmp_path / "archive", "town-a"),
                         ledger.private_key.public_key())
    assert not result.problems
    assert check_checkpoints(result, fingerprint(ledger.private_key), []) == []


def test_a_witness_records_another_writers_checkpoint_once(tmp_path: Path) -> None:
    station = ledger_in(tmp_path)
    station.append(Event.ACQUIRED, recording="ab" * 32, actor="a", details={})
    station.checkpoint(actor="station:town-a")
    api = ledger_in(tmp_path, writer="api-x", role=Role.API, db_name="api.db")
    checkpointer = Checkpointer(api, actor="api:api-x")
    assert checkpointer.witness_archive() == 1
    assert checkpointer.witness_archive() == 0  # nothing newer
    witnessed = entries_of(tmp_path / "archive", "api-x")[-1]
    assert witnessed["event"] == "witnessed"
    assert witnessed["details"]["writer"] == "town-a" and witnessed["details"]["tree_size"] == 2
    assert api.witnessed() == {"town-a": 3}


def test_a_writer_whose_tail_was_removed_refuses_to_append(tmp_path: Path,
                                                           fault_log: FaultLog) -> None:
    ledger = ledger_in(tmp_path)
    for n in range(3):
        ledger.append(Event.ACQUIRED, recording=f"{n:02d}" * 32, actor="a", details={})
    ledger.tail_check_s = 0
    last = tmp_path / "archive" / keys.ledger_key("town-a", 4)
    writable(last).unlink()
    with pytest.raises(IntegrityError, match="entry 4 of this writer's chain is gone") as caught:
        ledger.append(Event.ACQUIRED, recording="ee" * 32, actor="a", details={})
    assert ledger.tail_missing is not None
    # a restarted writer (sync from the listing) refuses too, and writes nothing
    restarted = LedgerWriter(ledger.store, ledger.database, "town-a", ledger.private_key,
                             role=Role.STATION)
    with pytest.raises(IntegrityError, match="removed from the end"):
        restarted.checkpoint(actor="station:town-a")
    assert not (tmp_path / "archive" / keys.ledger_key("town-a", 4)).exists()
    assert not (tmp_path / "archive" / keys.ledger_key("town-a", 5)).exists()
    fault_log(FAULT_CLASS, "a station writing on after its own chain's end was removed",
              injected_by="last ledger object deleted from the archive", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=7, message=caught.value.message)


# -- a station and an API node witnessing each other ------------------------------------------


@dataclass(frozen=True)
class Base:
    root: Path
    archive: Path
    station_key: Ed25519PrivateKey
    saved: Path  # `evidence-daemon checkpoint --out` of the finished base, as an auditor keeps it
    station_witnessed_api: int  # seq of the API checkpoint the station's last witness names
    api_witnessed_station: int  # and the other way round
    api_last_seq: int


def api_config(directory: Path, archive: Path, **extra: str) -> Path:
    settings = "\n".join(f"{key} = {value}" for key, value in
                         {"checkpoint_entries": "1", **extra}.items())
    return make_api_config(directory, archive, api_id=API, extra=settings)


def poll_and_checkpoint(node: ApiNode) -> None:
    node.indexer.poll()
    node.keep_checkpoints()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("checkpoint-base")
    config = write_config(root)
    card = root / "card"
    card.mkdir()
    for n in range(3):
        (card / f"DSJ001_10086_2026112508{n}000_000{n}.MP4").write_bytes(f"recording {n}".encode())
    assert main(["--config", str(config), "ingest", str(card)]) == 0  # ends with a checkpoint
    archive = root / "archive"
    recording = hashlib.sha256(b"recording 0").hexdigest()

    node = open_api_node(load_config(api_config(root / "api", archive), environ={}))
    station = open_station(load_config(config, environ={}))
    try:
        poll_and_checkpoint(node)  # witnesses the station's checkpoint, signs its own
        for n in range(3):
            node.record(Event.ACCESSED, recording=recording, actor="user:ann",
                        details={"kind": "original", "reason": f"review {n}"})
        poll_and_checkpoint(node)
        Upkeep(station.config, station, station.ingestor()).checkpoint()  # the hourly job
        poll_and_checkpoint(node)  # witnesses the station's new checkpoint
        node.record(Event.ACCESSED, recording=recording, actor="user:bob",
                    details={"kind": "proxy", "reason": "second look"})
        poll_and_checkpoint(node)
    finally:
        node.close()
        station.close()
    station_entries = entries_of(archive, STATION)
    api_entries = entries_of(archive, API)
    witness_of_api = [e for e in station_entries if e["event"] == "witnessed"]
    witness_of_station = [e for e in api_entries if e["event"] == "witnessed"]
    assert witness_of_api and witness_of_station
    assert api_entries[-1]["event"] == "checkpoint" and station_entries[-1]["event"] == "checkpoint"
    saved = root / "saved-checkpoint.json"
    auditor = write_config(root / "auditor", station_id="auditor-machine",
                           archive={"backend": "filesystem", "path": str(archive)})
    assert main(["--config", str(auditor), "checkpoint", "--out", str(saved)]) == 0
    station_key = load_private_key(root / "state" / "keys" / "station.ed25519")
    return Base(root, archive, station_key, saved,
                witness_of_api[-1]["details"]["checkpoint_seq"],
                witness_of_station[-1]["details"]["checkpoint_seq"], api_entries[-1]["seq"])


def fresh_config(tmp_path: Path, archive: Path, extra: str = "") -> Path:
    """A config as a new user on another machine writes it: the archive, no state."""
    return write_config(tmp_path / "auditor", station_id="auditor-machine",
                        archive={"backend": "filesystem", "path": str(archive)}, extra=extra)


def remove_entries(archive: Path, writer: str, first_seq: int) -> None:
    for path in (archive / "ledger" / writer).glob("*.json"):
        if int(path.stem) >= first_seq:
            writable(path).unlink()


def test_the_untouched_archive_verifies_against_every_checkpoint(
        base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = fresh_config(tmp_path, base.archive)
    code, out, _ = run_cli(capsys, "--config", str(config), "verify", "--checkpoint",
                           str(base.saved))
    assert code == 0, out
    assert "compared with the checkpoint saved" in out and "unsigned" in out
    compared = next(line for line in out.splitlines() if line.startswith("chains compared with"))
    assert int(compared.split()[3]) >= 4  # witnesses both ways + the saved ones
    saved = json.loads(base.saved.read_text())
    assert saved["format"] == "evidence-checkpoint/1" and set(saved["writers"]) == {STATION, API}
    assert saved["writers"][API]["checkpoint"]["seq"] == base.api_last_seq


# The cases: each edits a copy of the base archive; returns (writer verify must name, the
# words of the witness check's FAIL line, whether the saved checkpoint is given).
Tamper = Callable[[Base, Path], tuple[str, str, bool]]


def api_tail_caught_by_station(base: Base, archive: Path) -> tuple[str, str, bool]:
    remove_entries(archive, API, base.station_witnessed_api - 2)
    return API, "entries were removed", False


def api_tail_caught_by_saved_checkpoint(base: Base, archive: Path) -> tuple[str, str, bool]:
    # only what came after the station's last witness: the saved checkpoint alone knows it
    remove_entries(archive, API, base.station_witnessed_api + 1)
    return API, "the checkpoint saved", True


def api_writer_deleted(base: Base, archive: Path) -> tuple[str, str, bool]:
    shutil.rmtree(archive / "ledger" / API)
    writable(archive / keys.public_key_key(API)).unlink()
    return API, f"the archive holds 0 entries of writer {API}", False


def station_tail_caught_by_api(base: Base, archive: Path) -> tuple[str, str, bool]:
    remove_entries(archive, STATION, base.api_witnessed_station - 1)
    return STATION, "entries were removed", False


def rekeyed_registration_kept(base: Base, archive: Path) -> tuple[str, str, bool]:
    """Every entry re-signed with a new key, unchanged: the chain's hashes stay, but its
    witnessed registration names the old key."""
    write_chain(archive, STATION, Ed25519PrivateKey.generate(), entries_of(archive, STATION))
    return STATION, f"key of writer {STATION} changed", False


def rekeyed_registration_rewritten(base: Base, archive: Path) -> tuple[str, str, bool]:
    key = Ed25519PrivateKey.generate()
    entries = entries_of(archive, STATION)
    entries[0]["details"] = registration_details(Role.STATION, fingerprint(key), STATION)
    write_chain(archive, STATION, key, entries)
    return STATION, f"the chain of writer {STATION} diverges", False


def diverging_chain_same_key(base: Base, archive: Path) -> tuple[str, str, bool]:
    """The station's own key rewrites an early entry (a stolen key, an insider): every
    signature checks, the chain links, but it is not the chain the API node witnessed."""
    entries = entries_of(archive, STATION)
    acquired = next(entry for entry in entries if entry["event"] == "acquired")
    acquired["actor"] = "station:someone-else"
    write_chain(archive, STATION, base.station_key, entries)
    return STATION, f"the chain of writer {STATION} diverges", False


CASES: dict[str, Tamper] = {
    "API node's audit tail deleted, caught by a station's witness": api_tail_caught_by_station,
    "API node's audit tail deleted, caught by a saved checkpoint": api_tail_caught_by_saved_checkpoint,
    "API writer deleted entirely (entries and key)": api_writer_deleted,
    "station's last entries deleted, caught by the API node's witness": station_tail_caught_by_api,
    "station chain re-keyed, registration kept (no witnessed rotation)": rekeyed_registration_kept,
    "station chain re-keyed, registration rewritten": rekeyed_registration_rewritten,
    "station chain rewritten with its own key, diverging from a witnessed head": diverging_chain_same_key,
}


@pytest.mark.parametrize("case", list(CASES))
def test_verify_catches_truncation_and_rewrites_by_checkpoints(
        case: str, base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fault_log: FaultLog) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(base.archive, archive)
    named, words, needs_saved = CASES[case](base, archive)
    args = ["--config", str(fresh_config(tmp_path, archive)), "verify"]
    if needs_saved:
        args += ["--checkpoint", str(base.saved)]
    code, out, _ = run_cli(capsys, *args)
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    caught = [line for line in failures if words in line and named in line]
    fault_log(FAULT_CLASS, case, injected_by="archive edited as a new user could; verify from "
              "a fresh state" + (" with the saved checkpoint" if needs_saved else ""),
              files_lost=0, wrongly_archived=0 if code == 7 else 1, duplicates=0,
              exit_code=code, message=caught[0] if caught else (failures or [out])[0])
    assert code == 7, out
    assert caught, out
    if needs_saved:  # and without the saved checkpoint nobody could have known
        code, out, _ = run_cli(capsys, *args[:-2])
        assert code == 0, out


def test_a_saved_checkpoint_file_that_was_edited_is_a_problem(
        base: Base, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Signed by the station that made it; an edit shows as ALTERED."""
    config = base.root / "config.toml"
    saved = tmp_path / "station-saved.json"
    code, out, _ = run_cli(capsys, "--config", str(config), "checkpoint", "--out", str(saved))
    assert code == 0 and f"signed by station:{STATION}" in out, out
    fresh = fresh_config(tmp_path, base.archive)
    code, out, _ = run_cli(capsys, "--config", str(fresh), "verify", "--checkpoint", str(saved))
    assert code == 0 and "signature checks" in out, out
    document = json.loads(saved.read_text())
    document["made_at"] = "2020-01-01T00:00:00+00:00"
    saved.write_text(json.dumps(document))
    code, out, _ = run_cli(capsys, "--config", str(fresh), "verify", "--checkpoint", str(saved))
    assert code == 7 and "ALTERED" in out, out


# -- a running API node whose own tail was removed --------------------------------------------


def test_a_running_api_node_whose_tail_was_removed_refuses_to_write_and_alerts(
        base: Base, tmp_path: Path, fault_log: FaultLog) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(base.archive, archive)
    shutil.copytree(base.root / "api", tmp_path / "api")  # the same node, its state kept
    config = load_config(api_config(tmp_path / "api", archive), environ={})
    node = open_api_node(config)
    recording = hashlib.sha256(b"recording 1").hexdigest()
    try:
        node.indexer.poll()
        token = node.users.add("carol", "auditor")
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(node, poll=False)) as client:
            asked = client.post(f"/api/v1/recordings/{recording}/grants", headers=headers,
                                json={"kind": "original", "reason": "before the deletion"})
            assert asked.status_code == 201, asked.text
            before = client.get("/metrics").text
            remove_entries(archive, API, base.station_witnessed_api + 1)
            node.ledger.tail_check_s = 0  # the next append looks at the chain's end
            refused = client.post(f"/api/v1/recordings/{recording}/grants", headers=headers,
                                  json={"kind": "original", "reason": "after the deletion"})
            after = client.get("/metrics").text
    finally:
        node.close()
    written = sorted(int(path.stem) for path in (archive / "ledger" / API).glob("*.json"))
    gap = written != list(range(1, len(written) + 1))
    fault_log(FAULT_CLASS, "running API node whose own audit tail was removed",
              injected_by="API node's last ledger objects deleted while it runs", files_lost=0,
              wrongly_archived=0, duplicates=0, exit_code=None,
              message=f"HTTP {refused.status_code}: {refused.json().get('error', '')}")
    assert f'evidence_ledger_tail_missing{{writer="{API}"}} 0.0' in before
    assert refused.status_code == 409 and "removed from the end" in refused.json()["error"]
    assert f'evidence_ledger_tail_missing{{writer="{API}"}} 1.0' in after
    assert not gap and max(written) == base.station_witnessed_api  # nothing written past it


def test_the_station_metric_shows_a_missing_tail(base: Base, tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from evidence_daemon.metrics.station import StationMetrics

    root = tmp_path / "station"
    shutil.copytree(base.root / "state", root / "state")
    archive = tmp_path / "archive"
    shutil.copytree(base.archive, archive)
    config = load_config(write_config(root, archive={"backend": "filesystem",
                                                     "path": str(archive)}), environ={})
    station = open_station(config)
    try:
        metrics = StationMetrics(config, station.database, clock=station.clock,
                                 ledger=station.ledger)
        remove_entries(archive, STATION, base.api_witnessed_station)
        with pytest.raises(IntegrityError):
            Upkeep(config, station, station.ingestor(), metrics=metrics.pipeline).checkpoint()
        text = generate_latest(metrics.registry).decode()
    finally:
        station.close()
    assert f'evidence_ledger_tail_missing{{writer="{STATION}"}} 1.0' in text


# -- trusted time -----------------------------------------------------------------------------


def stamped_archive(tmp_path: Path, tsa: LoopbackTsa) -> tuple[Path, LedgerWriter]:
    ledger = ledger_in(tmp_path)
    ledger.append(Event.ACQUIRED, recording="ab" * 32, actor="a", details={})
    stamping = Stamping(tsa.url, tsa.trust, 10)
    entry = Checkpointer(ledger, actor="station:town-a", stamping=stamping).checkpoint()
    assert entry is not None
    return tmp_path / "archive" / keys.timestamp_key("town-a", entry["seq"]), ledger


def test_a_stamped_checkpoint_verifies_and_a_tampered_token_is_a_problem(
        tmp_path: Path, tsa: LoopbackTsa, capsys: pytest.CaptureFixture[str],
        fault_log: FaultLog) -> None:
    token, _ = stamped_archive(tmp_path, tsa)
    assert token.exists()
    extra = f'[timestamp]\ntsa_cert_file = "{tsa.pki.chain_file}"'
    config = fresh_config(tmp_path, tmp_path / "archive", extra)
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 0 and "trusted time" in out and "Time-Stamping Authority" in out, out
    # without the TSA's certificates the token is there but not checked, and verify says so
    code, out, _ = run_cli(capsys, "--config", str(fresh_config(tmp_path / "b", tmp_path / "archive")),
                           "verify")
    assert code == 0 and "1 timestamp token(s) not checked" in out, out

    data = bytearray(writable(token).read_bytes())
    data[len(data) // 2] ^= 0x01
    token.write_bytes(bytes(data))
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    fault_log(FAULT_CLASS, "a checkpoint's timestamp token altered (one byte)",
              injected_by="byte flipped in checkpoints/<writer>/<seq>.tsr", files_lost=0,
              wrongly_archived=0 if code == 7 else 1, duplicates=0, exit_code=code,
              message=failures[0] if failures else out)
    assert code == 7 and any("town-a" in line and "timestamp" in line for line in failures), out


def test_a_failing_tsa_never_stops_a_checkpoint(tmp_path: Path, tsa: LoopbackTsa,
                                                fault_log: FaultLog) -> None:
    from prometheus_client import CollectorRegistry

    ledger = ledger_in(tmp_path)
    ledger.append(Event.ACQUIRED, recording="ab" * 32, actor="a", details={})
    tsa.responder = lambda query: (503, b"busy")
    registry = CollectorRegistry()
    entry = Checkpointer(ledger, actor="station:town-a", stamping=Stamping(tsa.url, tsa.trust, 5),
                         metrics=CheckpointCounters(registry)).checkpoint()
    assert entry is not None and entry["event"] == "checkpoint"
    assert not (tmp_path / "archive" / "checkpoints").exists()
    assert registry.get_sample_value("evidence_timestamp_failures_total") == 1
    assert registry.get_sample_value("evidence_checkpoints_total") == 1
    fault_log(FAULT_CLASS, "time-stamping authority answers 503 at a checkpoint",
              injected_by="loopback TSA returns HTTP 503", files_lost=0, wrongly_archived=0,
              duplicates=0, exit_code=None,
              message="checkpoint signed without a token; evidence_timestamp_failures_total 1")


def test_a_token_beyond_the_end_of_a_chain_shows_the_cut(
        tmp_path: Path, tsa: LoopbackTsa, capsys: pytest.CaptureFixture[str]) -> None:
    token, ledger = stamped_archive(tmp_path, tsa)
    seq = int(token.stem)
    writable(tmp_path / "archive" / keys.ledger_key("town-a", seq)).unlink()
    code, out, _ = run_cli(capsys, "--config", str(fresh_config(tmp_path, tmp_path / "archive")),
                           "verify")
    assert code == 7 and "the archive holds 2 entries of writer town-a" in out, out


def test_a_checkpoint_that_signs_another_tree_is_a_problem(tmp_path: Path) -> None:
    """A writer's own checkpoint must sign the tree of the entries before it: one that does
    not (a bug, or a key holder preparing a rewrite) is named."""
    ledger = ledger_in(tmp_path)
    ledger.append(Event.ACQUIRED, recording="ab" * 32, actor="a", details={})
    ledger.checkpoint(actor="station:town-a")
    archive = tmp_path / "archive"
    entries = entries_of(archive, "town-a")
    entries[-1]["details"] = {**entries[-1]["details"], "root_hash": "00" * 32}
    write_chain(archive, "town-a", ledger.private_key, entries)
    result = check_chain("town-a", stored_chain(archive, "town-a"), ledger.private_key.public_key())
    [problem] = check_checkpoints(result, fingerprint(ledger.private_key), [])
    assert "checkpoint entry 3 of writer town-a does not sign the tree head" in problem.message


def test_verify_refuses_a_file_that_is_no_saved_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger_in(tmp_path).append(Event.ACQUIRED, recording="ab" * 32, actor="a", details={})
    bogus = tmp_path / "notes.json"
    bogus.write_text('{"format": "something else"}')
    code, _, err = run_cli(capsys, "--config", str(fresh_config(tmp_path, tmp_path / "archive")),
                           "verify", "--checkpoint", str(bogus))
    assert code == 2 and "is not a saved checkpoint" in err
