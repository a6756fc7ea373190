"""The API node's own small state: the console's session key and player grants (real files,
real SQLite)."""

from __future__ import annotations

import resource
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidence_daemon.api.auth import load_or_create_secret
from evidence_daemon.api.db import open_api_database
from evidence_daemon.api.grants import Grants, new_grant_id
from evidence_daemon.errors import ConfigError, NotFoundError

from .faultlog import FaultLog


def test_the_session_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "session.key"
    secret = load_or_create_secret(path)
    assert len(secret) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == secret
    assert [entry.name for entry in tmp_path.iterdir()] == ["session.key"]


def test_a_failing_session_key_write_leaves_no_short_key(tmp_path: Path,
                                                         fault_log: FaultLog) -> None:
    """RLIMIT_FSIZE makes write() store 16 of the key's 64 bytes, then fail (what a nearly
    full disk does). The key file was written under its final name: a crash or a short write
    left a short key that refused every later start. Now nothing is left, and the next start
    makes a whole key."""
    path = tmp_path / "session.key"
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16, hard))
    try:
        with pytest.raises(ConfigError) as raised:
            load_or_create_secret(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "cannot write the session key" in raised.value.message
    left = list(tmp_path.iterdir())
    assert left == []  # neither a short key nor a temp file
    assert len(load_or_create_secret(path)) == 64
    fault_log("short write of a key file", "API session key, RLIMIT_FSIZE 16 bytes",
              files_lost=0, wrongly_archived=0, duplicates=0, premature_wipes=0,
              exit_code=ConfigError.exit_code, message=raised.value.message,
              injected_by="setrlimit(RLIMIT_FSIZE, 16)")


def test_a_grant_serves_only_its_user_until_it_expires(tmp_path: Path) -> None:
    now = [datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)]
    database = open_api_database(tmp_path / "api.db")
    grants = Grants(database, clock=lambda: now[0], ttl_s=600)
    grant_id = new_grant_id()
    expires = grants.add(grant_id, user="ann", recording="ab" * 32, kind="proxy", audit_seq=7)
    assert expires == now[0] + timedelta(seconds=600)
    found = grants.find(grant_id, user="ann")
    assert (found.recording, found.kind) == ("ab" * 32, "proxy")
    for grant, user in ((grant_id, "bob"), ("x" * 32, "ann"), ("../../users", "ann")):
        with pytest.raises(NotFoundError, match="no such grant"):
            grants.find(grant, user=user)
    now[0] += timedelta(seconds=600)
    with pytest.raises(NotFoundError, match="expired"):
        grants.find(grant_id, user="ann")
    database.close()
