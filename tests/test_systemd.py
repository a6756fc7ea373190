"""The shipped systemd units are valid for systemd itself (systemd-analyze verify)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = sorted((Path(__file__).resolve().parent.parent / "systemd").glob("*.service"))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("unit", UNITS, ids=[unit.name for unit in UNITS])
def test_unit_verifies(unit: Path, tmp_path: Path) -> None:
    # systemd checks that ExecStart exists: point it at this checkout's entry point
    executable = Path(sys.executable).parent / "evidence-daemon"
    text = unit.read_text().replace("/usr/bin/evidence-daemon", str(executable))
    instance = tmp_path / unit.name.replace("@.service", "@media-dock1.service")
    instance.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True,
                            text=True, check=False, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if instance.name in line]
    assert result.returncode == 0 and ours == [], result.stdout + result.stderr
    for hardening in ("ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                      "CapabilityBoundingSet="):
        assert hardening in text, hardening


def test_the_daemon_unit_talks_to_systemd() -> None:
    text = (Path(__file__).resolve().parent.parent / "systemd" / "evidence-daemon.service").read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and " run" in text


def test_the_api_unit_runs_unprivileged_with_nothing_it_does_not_need() -> None:
    text = (Path(__file__).resolve().parent.parent / "systemd" / "evidence-api.service").read_text()
    assert " serve" in text and "User=evidence-api" in text
    assert "\nCapabilityBoundingSet=\n" in text  # empty: no capability at all
    assert "PrivateDevices=yes" in text and "AF_NETLINK" not in text
