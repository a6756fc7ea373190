"""Names from a device never reach the operator's terminal raw: escape sequences are shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evidence_daemon.daemon import STATUS_FILE, write_status
from evidence_daemon.terminal import safe

from .faultlog import FaultLog
from .helpers import run_cli, write_config

HOSTILE = "clip\x1b[2J\x1b]0;owned\x07\u202egpj.mp4"


@pytest.mark.parametrize(("text", "shown"), [
    ("plain 城关镇.mp4", "plain 城关镇.mp4"),
    ("a\x1b[31mred", "a\\x1b[31mred"),
    ("line\nbreak\ttab", "line\\x0abreak\\x09tab"),
    ("nul\x00del\x7fc1\x9b", "nul\\x00del\\x7fc1\\x9b"),
    ("rtl\u202eexe.mp4", "rtl\\u202eexe.mp4"),
])
def test_safe_escapes_every_control_character(text: str, shown: str) -> None:
    assert safe(text) == shown


def _raw_controls(text: str) -> list[str]:
    return [ch for ch in text if (ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) <= 0x9F
            or ch == "\u202e"]


def test_ingest_recordings_and_status_show_hostile_names_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault_log: FaultLog
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    (card / HOSTILE).write_bytes(b"evidence with a hostile name")
    os.mkfifo(card / ("fifo\x1b[1A" + ".mp4"))
    config = write_config(tmp_path, extra="[ingest]\nprobe = false\n"
                          f'[dock]\nruntime_dir = "{tmp_path / "run"}"\n')
    code, out, err = run_cli(capsys, "--config", str(config), "ingest", str(card))
    assert code == 0, err
    assert "fifo\\x1b[1A.mp4" in out
    assert _raw_controls(out + err) == []

    code, out, err = run_cli(capsys, "--config", str(config), "recordings")
    assert code == 0
    assert "clip\\x1b[2J\\x1b]0;owned\\x07\\u202egpj.mp4" in out
    assert _raw_controls(out + err) == []

    write_status(tmp_path / "run" / STATUS_FILE, {"pid": os.getpid(), "jobs": [{
        "name": "DSJ\x1b[2J", "kind": "device", "state": "ingesting", "files_done": 1,
        "files_total": 2, "bytes_done": 1, "bytes_total": 2, "rate_bytes_per_s": 1,
        "current_file": HOSTILE, "removed": False, "error": None, "result": {}}]})
    code, out, err = run_cli(capsys, "--config", str(config), "status")
    assert code == 0
    assert "DSJ\\x1b[2J" in out and "clip\\x1b[2J" in out
    assert _raw_controls(out + err) == []
    fault_log("hostile names and trees", "escape sequences in file, FIFO and device names",
              injected_by="ESC/BEL/RLO in a file name, a FIFO name and a device name",
              files_lost=0, wrongly_archived=0, duplicates=0, exit_code=0,
              message="shown as \\x1b[2J in ingest, recordings and status")
