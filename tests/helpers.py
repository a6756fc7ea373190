"""Shared test helpers: station configs on disk and running the CLI for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
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


def wait_for(condition: Callable[[], bool], timeout_s: float = 60, what: str = "condition",
             every_s: float = 0.1) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def recordings_of(config: Path) -> list[dict[str, Any]]:
    """``recordings --json`` from a separate process (safe while a daemon holds the station)."""
    result = run_cli_process("--config", str(config), "recordings", "--json")
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed
