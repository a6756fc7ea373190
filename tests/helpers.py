"""Shared test helpers: station configs on disk and running the CLI for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from evidence_daemon.cli import main


def write_config(directory: Path, *, station_id: str = "test-station", archive: dict[str, Any] | None = None,
                 extra: str = "") -> Path:
    """A TOML config with its own state dir; filesystem archive unless ``archive`` says otherwise."""
    archive = archive or {"backend": "filesystem", "path": str(directory / "archive")}
    lines = ["[station]", f'id = "{station_id}"', f'state_dir = "{directory / "state"}"',
             'timezone = "Asia/Shanghai"', "", "[archive]"]
    for key, value in archive.items():
        lines.append(f"{key} = {json.dumps(value)}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n" + extra + "\n", encoding="utf-8")
    return path


def run_cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    """Run ``evidence-daemon ARGS`` in this process; returns (exit code, stdout, stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli_process(*args: str, env: dict[str, str] | None = None,
                    timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the CLI as its own process (needed when it is meant to die)."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("EVIDENCE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "evidence_daemon", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout_s, check=False,
    )


def recordings_json(capsys: Any, config: Path) -> list[dict[str, Any]]:
    code, out, err = run_cli(capsys, "--config", str(config), "recordings", "--json")
    assert code == 0, err
    result: list[dict[str, Any]] = json.loads(out)
    return result
