"""Tamper tests: change one byte anywhere in the archive and ``verify`` must fail, naming it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from evidence_daemon.archive import keys

from .footage import make_video
from .helpers import recordings_json, run_cli, write_config


@pytest.fixture
def archived(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[str]]:
    root = tmp_path / "card"
    make_video(root / "DSJ001_10086_20261125083000_0001.MP4")
    make_video(root / "DSJ001_10086_20261125090000_0002.MP4", seconds=1)
    (root / "notes.txt").write_text("hand-written notes\n")
    config = write_config(tmp_path)
    assert run_cli(capsys, "--config", str(config), "ingest", str(root))[0] == 0
    ids = [recording["id"] for recording in recordings_json(capsys, config)]
    assert len(ids) == 3
    return config, ids


def flip_byte(path: Path, offset: int) -> None:
    os.chmod(path, 0o644)  # archived files are read-only; an attacker with access does this too
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_untouched_archive_verifies(archived: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    config, ids = archived
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 0, out
    assert "verified 3 recording(s)" in out and ": OK" in out
    code, out, _ = run_cli(capsys, "--config", str(config), "verify", ids[0][:12])
    assert code == 0 and "verified 1 recording(s)" in out


def test_a_changed_byte_in_an_original_is_found(
    archived: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, ids = archived
    archive = config.parent / "archive"
    victim = ids[1]
    original = next((archive / keys.recording_prefix(victim)).glob("original*"))
    flip_byte(original, original.stat().st_size // 2)
    code, out, _ = run_cli(capsys, "--config", str(config), "verify", "--all")
    assert code == 7
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1
    assert victim[:12] in failures[0] and "content changed" in failures[0]
    # asking for another recording alone does not hide the problem from a full run, and
    # asking for the victim by id finds it
    code, out, _ = run_cli(capsys, "--config", str(config), "verify", victim)
    assert code == 7 and victim[:12] in out


def test_a_changed_byte_in_a_manifest_is_found(
    archived: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, ids = archived
    manifest = config.parent / "archive" / keys.manifest_key(ids[0])
    text = manifest.read_text()
    os.chmod(manifest, 0o644)
    manifest.write_text(text.replace('"officer_id": "10086"', '"officer_id": "10087"'))
    assert manifest.read_text() != text
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 7
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1
    assert ids[0][:12] in failures[0] and "manifest changed" in failures[0]


def test_a_changed_byte_in_a_ledger_entry_is_found(
    archived: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, ids = archived
    ledger_dir = config.parent / "archive" / "ledger" / "test-station"
    entries = sorted(ledger_dir.glob("*.json"))
    target = next(path for path in entries if json.loads(path.read_bytes())["event"] == "archived")
    recording = json.loads(target.read_bytes())["recording"]
    text = target.read_text()
    os.chmod(target, 0o644)
    target.write_text(text.replace('"size_bytes":', '"size_bytes":1', 1))
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 7
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any(target.name in line and "signature does not verify" in line and recording[:12] in line
               for line in failures), out
    assert any("chain is broken" in line for line in failures), out


def test_a_removed_ledger_entry_is_found(
    archived: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = archived
    ledger_dir = config.parent / "archive" / "ledger" / "test-station"
    entries = sorted(ledger_dir.glob("*.json"))
    entries[2].unlink()
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 7 and "is missing before this one" in out
    # the last entry can be removed without breaking the chain; the station's index catches it
    for path in entries[3:]:
        path.unlink()
    entries[2].parent.mkdir(exist_ok=True)
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 7 and "entries were removed" in out


def test_a_replaced_public_key_makes_every_signature_fail(
    archived: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from evidence_daemon.custody.signing import public_pem

    config, _ = archived
    key_file = config.parent / "archive" / "keys" / "test-station.pub"
    os.chmod(key_file, 0o644)
    key_file.write_bytes(public_pem(Ed25519PrivateKey.generate()))
    code, out, _ = run_cli(capsys, "--config", str(config), "verify")
    assert code == 7 and "signature does not verify" in out
