"""A real API node for tests: a station archives ffmpeg-made footage (with viewing copies)
into a filesystem archive, then ``evidence-daemon serve`` runs as its own process on
127.0.0.1 with a user of every role.

Session-scoped: one station and one server serve every API test module, which only read or
append (the API never changes what a station stored). Tests that need a pristine catalog make
their own node with ``make_api_config``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .footage import ffmpeg_available, make_audio_wav, make_video
from .helpers import run_cli_process, write_config

ROLES = ("auditor", "supervisor", "officer", "admin")
OFFICER_ID = "A1001"
OTHER_OFFICER_ID = "A1002"


@dataclass
class ApiServer:
    base_url: str
    tokens: dict[str, str]  # role -> bearer token; also "officer_other", "revoked"
    recordings: list[str]  # every recording id, the officer's first
    config: Path  # the API node's config
    station_config: Path
    archive: Path
    process: subprocess.Popen[bytes]
    by_officer: dict[str, list[str]] = field(default_factory=dict)
    audio_only: str = ""  # a recording whose viewing copy is audio (proxy.m4a, no poster)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_api_config(directory: Path, archive: Path, *, api_id: str = "api-test",
                    port: int | None = None, archive_settings: dict[str, Any] | None = None,
                    extra: str = "") -> Path:
    settings = archive_settings or {"backend": "filesystem", "path": str(archive)}
    lines = ["[archive]"] + [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["", "[api]", f'id = "{api_id}"', f'state_dir = "{directory / "api-state"}"',
              f'listen = "127.0.0.1:{port or free_port()}"', "poll_s = 0.3",
              "failed_login_limit = 1000", "failed_login_window_s = 60"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "api.toml"
    path.write_text("\n".join(lines) + "\n" + extra + "\n", encoding="utf-8")
    return path


def add_user(config: Path, name: str, role: str, officer_id: str | None = None) -> str:
    args = ["--config", str(config), "users", "add", name, "--role", role]
    if officer_id:
        args += ["--officer-id", officer_id]
    result = run_cli_process(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[0]


def http_json(url: str, token: str | None = None, *, method: str = "GET",
              body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def start_server(config: Path, *, expect_recordings: int, timeout_s: float = 60
                 ) -> tuple[subprocess.Popen[bytes], str]:
    listen = next(line.split('"')[1] for line in config.read_text().splitlines()
                  if line.startswith("listen"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVIDENCE_")}
    log_path = config.parent / "serve.log"
    with log_path.open("ab") as log_file:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "evidence_daemon", "--config", str(config), "serve"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://{listen}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {log_path.read_text()}")
        try:
            status, health = http_json(f"{base_url}/healthz")
            if status == 200 and health["catalog"]["recordings"] >= expect_recordings:
                return process, base_url
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    process.terminate()
    raise AssertionError(f"API did not index {expect_recordings} recordings in {timeout_s} s: "
                         f"{log_path.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    if not ffmpeg_available():
        pytest.skip("ffmpeg/ffprobe not installed (scripts/test installs them as root)")
    base = tmp_path_factory.mktemp("api")
    archive = base / "archive"
    station_config = write_config(base / "station", station_id="town-a-dock-1",
                                  archive={"backend": "filesystem", "path": str(archive)})
    card = base / "card"
    make_video(card / f"DSJ001_{OFFICER_ID}_20261125090000_0001.mp4", seconds=2, faststart=True)
    make_video(card / f"DSJ001_{OFFICER_ID}_20261125100000_0002.mp4", seconds=3, rate=12)
    make_video(card / f"DSJ002_{OTHER_OFFICER_ID}_20261125110000_0001.mp4", seconds=2, rate=8)
    make_audio_wav(card / f"DSJ002_{OTHER_OFFICER_ID}_20261125120000_0002.wav", seconds=1)
    for args in (("ingest", str(card)), ("proxies", "--run")):
        result = run_cli_process("--config", str(station_config), *args)
        assert result.returncode == 0, result.stdout + result.stderr
    listed = run_cli_process("--config", str(station_config), "recordings", "--json")
    recordings = json.loads(listed.stdout)
    by_officer: dict[str, list[str]] = {}
    audio_only = ""
    for recording in sorted(recordings, key=lambda r: r["recorded_start"]):
        by_officer.setdefault(recording["officer_id"], []).append(recording["id"])
        if recording["sources"][0]["path"].endswith(".wav"):
            audio_only = recording["id"]

    config = make_api_config(base / "api", archive)
    tokens = {role: add_user(config, f"{role}-1", role, OFFICER_ID if role == "officer" else None)
              for role in ROLES}
    tokens["officer_other"] = add_user(config, "officer-2", "officer", OTHER_OFFICER_ID)
    tokens["revoked"] = add_user(config, "gone-1", "auditor")
    result = run_cli_process("--config", str(config), "users", "revoke", "gone-1")
    assert result.returncode == 0, result.stderr
    process, base_url = start_server(config, expect_recordings=len(recordings))
    try:
        yield ApiServer(
            base_url=base_url, tokens=tokens,
            recordings=by_officer[OFFICER_ID] + by_officer[OTHER_OFFICER_ID],
            config=config, station_config=station_config, archive=archive, process=process,
            by_officer=by_officer, audio_only=audio_only)
    finally:
        stop_server(process)
