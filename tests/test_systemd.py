"""The shipped systemd unit is valid for systemd itself (systemd-analyze verify)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "evidence-daemon-ingest@.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_ingest_unit_verifies(tmp_path: Path) -> None:
    # systemd checks that ExecStart exists: point it at this checkout's entry point
    executable = Path(sys.executable).parent / "evidence-daemon"
    text = UNIT.read_text().replace("/usr/local/bin/evidence-daemon", str(executable))
    instance = tmp_path / "evidence-daemon-ingest@media-dock1.service"
    instance.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True,
                            text=True, check=False, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if instance.name in line]
    assert result.returncode == 0 and ours == [], result.stdout + result.stderr
    assert "ProtectSystem=strict" in text and "NoNewPrivileges=yes" in text
