"""``evidence-daemon run`` as a real process: watch folders, systemd notification, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import recordings_of as recordings
from .helpers import run_cli_process, wait_for, write_config

pytestmark = pytest.mark.slow






@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A real sd_notify endpoint, as systemd provides it to a Type=notify service."""
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(0.2)
    yield path, server
    server.close()


def received(server: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(server.recv(4096).decode())
        except TimeoutError:
            return messages


def start_daemon(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("EVIDENCE_", "NOTIFY_", "WATCHDOG_"))}
    full_env.update(env)
    return subprocess.Popen(
        [sys.executable, "-m", "evidence_daemon", "--config", str(config), "-v", "run", "--no-udev"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )


def test_inbox_files_are_archived_and_moved_and_systemd_is_told(
    tmp_path: Path, notify_socket: tuple[str, socket.socket]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "before-start.mp4").write_bytes(b"arrived while the daemon was down")
    config = write_config(tmp_path, extra=f"""
[ingest]
probe = false

[dock]
runtime_dir = "{tmp_path / 'run'}"

[[watch]]
path = "{inbox}"
device_id = "ROOM-1"
officer_id = "40004"
stable_s = 0.5
after = "move"
""")
    path, server = notify_socket
    daemon = start_daemon(config, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    try:
        wait_for(lambda: "READY=1" in received(server), what="READY=1")
        # a terminal syncing over Wi-Fi: written in pieces, slowly
        with (inbox / "slow.mp4").open("wb") as handle:
            for _ in range(4):
                handle.write(b"x" * 100_000)
                handle.flush()
                time.sleep(0.3)
        wait_for(lambda: len(recordings(config)) == 2, what="two archived recordings")
        wait_for(lambda: (inbox / "done" / "slow.mp4").exists(), what="slow.mp4 moved to done/")
        listed = recordings(config)
        assert all(r["archived_at"] for r in listed)
        assert {r["officer_id"] for r in listed} == {"40004"}
        assert {s["device_id"] for r in listed for s in r["sources"]} == {"ROOM-1"}  # type: ignore[attr-defined]
        assert (inbox / "done" / "before-start.mp4").read_bytes() == b"arrived while the daemon was down"
        status = json.loads((tmp_path / "run" / "status.json").read_text())
        assert status["pid"] == daemon.pid and status["jobs"]
        messages = received(server)
        assert "WATCHDOG=1" in messages and any(m.startswith("STATUS=") for m in messages)
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert "STOPPING=1" in received(server)
    assert not (tmp_path / "run" / "status.json").exists()
    verify = run_cli_process("--config", str(config), "verify")
    assert verify.returncode == 0, verify.stdout


def test_a_second_ingest_is_refused_while_the_daemon_runs(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra=f'[dock]\nruntime_dir = "{tmp_path / "run"}"\n')
    daemon = start_daemon(config, {})
    try:
        wait_for(lambda: (tmp_path / "run" / "status.json").exists(), what="the daemon to start")
        (tmp_path / "card").mkdir()
        result = run_cli_process("--config", str(config), "ingest", str(tmp_path / "card"))
        assert result.returncode == 5 and "another ingest is running" in result.stderr
        status = run_cli_process("--config", str(config), "status")
        assert status.returncode == 0 and "daemon running" in status.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    assert daemon.returncode == 0
