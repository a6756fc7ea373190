"""The API under abuse and damage, over real HTTP (tests/api_fixtures.py): wrong tokens behind a
shared reverse proxy, content deleted from the archive after cataloguing, reasons that say
nothing or carry control characters, and oversized input. Every case is recorded in the fault
matrix (``fault_log``) with what the test measured."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from evidence_daemon.api.auth import AUDITOR, SUPERVISOR

from .api_fixtures import ApiServer, add_user, make_api_config, start_server, stop_server
from .faultlog import FaultLog
from .test_api import api_entries, auth

ABUSE = "API abuse"
DAMAGE = "archive damage seen by the API"


@pytest.fixture(scope="module")
def client(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=60) as session:
        yield session


# What the node writes on its own besides accesses (its key, its checkpoints and witnesses).
_BOOKKEEPING = {"key-registered", "checkpoint", "witnessed"}


def _accesses(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The node's audit entries about accesses, in order."""
    return [entry for entry in entries if entry["event"] not in _BOOKKEEPING]


def _events(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in entries]


# -- failed sign-ins behind a shared reverse proxy ------------------------------------------

def test_one_client_behind_a_trusted_proxy_cannot_lock_out_the_others(
        tmp_path: Path, api_server: ApiServer, fault_log: FaultLog) -> None:
    path = make_api_config(tmp_path, api_server.archive, api_id="api-proxied",
                           extra='trusted_proxies = ["127.0.0.1"]')
    path.write_text(path.read_text().replace("failed_login_limit = 1000", "failed_login_limit = 3"))
    token = add_user(path, "aud", "auditor")
    other_token = add_user(path, "aud-2", "auditor")
    attacker = {"X-Forwarded-For": "203.0.113.5"}  # as the proxy on 127.0.0.1 forwards them
    colleague = {"X-Forwarded-For": "203.0.113.6"}
    wrong_tokens = [f"evd_{n}" + "w" * 42 for n in range(3)]  # a brute force: each different
    process, base_url = start_server(path, expect_recordings=len(api_server.recordings))
    try:
        with httpx.Client(base_url=base_url, timeout=60) as session:
            for wrong in wrong_tokens:
                assert session.get("/api/v1/me", headers={**attacker, **auth(wrong)}).status_code == 401
            # the guessing client is throttled, even when it finally holds a valid token ...
            blocked = session.get("/api/v1/me", headers={**attacker, **auth(token)})
            assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
            # ... and cannot escape by writing another address in front of the proxy's hop
            forged = session.get("/api/v1/me", headers={
                "X-Forwarded-For": "198.51.100.1, 203.0.113.5", **auth(token)})
            assert forged.status_code == 429
            # everyone else behind the same proxy is served
            served = session.get("/api/v1/me", headers={**colleague, **auth(other_token)})
            assert served.status_code == 200 and served.json()["name"] == "aud-2"
            assert session.get("/api/v1/me", headers=auth(token)).status_code == 200  # the proxy host
            assert session.get("/api/v1/me", headers={**colleague, **auth("evd_typo")}).status_code == 401

            # one stale token replayed from many clients is refused by its label; the valid
            # tokens of those clients still work
            stale = "evd_STALE" + "s" * 38
            for n in range(3):
                replay = session.get("/api/v1/me", headers={"X-Forwarded-For": f"192.0.2.{n}",
                                                            **auth(stale)})
                assert replay.status_code == 401
            replayed = session.get("/api/v1/me", headers={"X-Forwarded-For": "192.0.2.9",
                                                          **auth(stale)})
            assert replayed.status_code == 429
            assert session.get("/api/v1/me", headers={"X-Forwarded-For": "192.0.2.9",
                                                      **auth(other_token)}).status_code == 200

            # the audit chain records the client the proxy served, not the proxy
            rid = api_server.recordings[0]
            poster = session.get(f"/api/v1/recordings/{rid}/content/poster",
                                 headers={**colleague, **auth(other_token)},
                                 params={"reason": "behind the proxy"})
            assert poster.status_code == 200
    finally:
        stop_server(process)
    entries = _accesses(api_entries(api_server.archive, "api-proxied"))
    assert _events(entries) == ["accessed"]
    assert entries[0]["details"]["remote"] == "203.0.113.6"
    log = (tmp_path / "serve.log").read_text()
    assert log.count("sign-in failed from 203.0.113.5 with token evd_") == 3
    assert log.count("sign-in failed from 192.0.2.") == 4
    assert "sign-in failed from 127.0.0.1" not in log  # never counted as the proxy
    for secret in (token, other_token, stale, *wrong_tokens):
        assert secret not in log and secret[:12] not in log
    fault_log(ABUSE, "wrong tokens from one client behind a shared reverse proxy",
              injected_by="3 different wrong tokens with X-Forwarded-For 203.0.113.5 through a "
                          "trusted proxy (limit 3)",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"HTTP {blocked.status_code} for that client (also with a forged "
                      f"X-Forwarded-For); HTTP {served.status_code} for a colleague behind "
                      "the same proxy")
    fault_log(ABUSE, "one stale token replayed from many addresses",
              injected_by="the same wrong token from 4 forwarded addresses (limit 3)",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"HTTP {replayed.status_code} for the 4th: {replayed.json()['error']}")


# -- content missing from the archive after it was catalogued -------------------------------

def _own_archive_copy(api_server: ApiServer, tmp_path: Path) -> Path:
    archive = tmp_path / "archive"
    shutil.copytree(api_server.archive, archive, ignore=shutil.ignore_patterns(".staging"))
    return archive


def _replace_object(archive: Path, recording: str, pattern: str, data: bytes | None) -> None:
    """Damage a stored object of the copy: delete it (``data`` None) or put other bytes there."""
    (path,) = (archive / "recordings" / recording).glob(pattern)
    path.unlink()
    if data is not None:
        path.write_bytes(data)


def test_content_missing_from_the_archive_is_an_error_and_a_recorded_failed_attempt(
        tmp_path: Path, api_server: ApiServer, fault_log: FaultLog) -> None:
    archive = _own_archive_copy(api_server, tmp_path)
    path = make_api_config(tmp_path / "api", archive, api_id="api-missing")
    token = add_user(path, "aud", "auditor")
    headers = auth(token)
    gone, no_proxy, truncated = api_server.recordings[:3]
    process, base_url = start_server(path, expect_recordings=len(api_server.recordings))
    try:
        with httpx.Client(base_url=base_url, timeout=60) as session:
            # a player link made while the poster was there
            grant = session.post(f"/api/v1/recordings/{gone}/grants", headers=headers,
                                 json={"kind": "poster", "reason": "before the damage"})
            assert grant.status_code == 201
            _replace_object(archive, gone, "original*", None)
            _replace_object(archive, gone, "poster*", None)
            _replace_object(archive, no_proxy, "proxy*", None)
            (original,) = (archive / "recordings" / truncated).glob("original*")
            _replace_object(archive, truncated, "original*", original.read_bytes()[:1000])

            missing = session.get(f"/api/v1/recordings/{gone}/content/original",
                                  headers=headers, params={"reason": "review of the stop"})
            assert missing.status_code == 503, missing.content[:200]
            assert f"original of recording {gone[:12]}" in missing.json()["error"]
            assert "missing from the archive; this attempt is recorded as api-missing#" \
                in missing.json()["error"]

            player = session.post(f"/api/v1/recordings/{no_proxy}/grants", headers=headers,
                                  json={"kind": "proxy", "reason": "watch it"})
            assert player.status_code == 503
            assert f"proxy of recording {no_proxy[:12]}" in player.json()["error"]

            short = session.get(f"/api/v1/recordings/{truncated}/content/original",
                                headers={**headers, "Range": "bytes=0-9"},
                                params={"reason": "first bytes"})
            assert short.status_code == 409
            assert "is 1000 bytes in the archive, not the" in short.json()["error"]

            stale_grant = session.get(grant.json()["url"], headers=headers)
            assert stale_grant.status_code == 503 and stale_grant.content != b""
            assert "recorded" not in stale_grant.json()["error"]  # its access was, at grant time

            trail = session.get("/api/v1/audit/accesses", headers=headers,
                                params={"recording": gone}).json()["items"]
            custody = session.get(f"/api/v1/recordings/{gone}/custody", headers=headers).json()
    finally:
        stop_server(process)

    entries = _accesses(api_entries(archive, "api-missing"))
    assert _events(entries) == ["accessed", "access-failed", "access-failed", "access-failed"]
    failed = entries[1:]
    assert [(e["recording"], e["details"]["kind"], e["details"]["via"], e["details"]["reason"])
            for e in failed] == [(gone, "original", "api", "review of the stop"),
                                 (no_proxy, "proxy", "player", "watch it"),
                                 (truncated, "original", "api", "first bytes")]
    assert "missing from the archive" in failed[0]["details"]["problem"]
    assert all(e["sig"] and e["actor"] == "user:aud" for e in failed)
    assert [item["event"] for item in trail[:2]] == ["access-failed", "accessed"]
    failed_event = next(e for e in custody["events"] if e["event"] == "access-failed")
    assert failed_event["verified"] and failed_event["problem"] is None
    recorded_as_accessed = sum(1 for e in entries if e["event"] == "accessed") - 1  # the grant
    assert recorded_as_accessed == 0
    for case, response, injected in (
            ("original deleted after cataloguing", missing, "unlink recordings/<id>/original.mp4"),
            ("viewing copy deleted, player grant asked", player, "unlink recordings/<id>/proxy.mp4"),
            ("original truncated after cataloguing", short, "rewrite original.mp4 with 1000 bytes"),
            ("poster deleted after its grant was made", stale_grant, "unlink poster.jpg")):
        fault_log(DAMAGE, case, injected_by=injected, files_lost=0, wrongly_archived=0,
                  duplicates=recorded_as_accessed,
                  message=f"HTTP {response.status_code}: {response.json()['error']}")


# -- what goes into the audit chain ----------------------------------------------------------

BAD_TEXTS = {
    "only spaces": "      ",
    "NUL": "review\x00of the stop",
    "ESC": "review \x1b[2Jof the stop",
    "newline": "review\nforged: line",
    "tab": "review\tof the stop",
    "DEL": "review\x7f of the stop",
    "C1": "review \x9b of the stop",
    "direction override": "review \u202epots eht fo",
}


def _audit_text_requests(server: ApiServer, text: str) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(role, method, path, field, request kwargs) of every request that writes ``text`` into
    the audit chain."""
    rid = server.recordings[0]
    reason = {"reason": text}
    return [
        (AUDITOR, "GET", f"/api/v1/recordings/{rid}/content/poster", "reason", {"params": reason}),
        (AUDITOR, "POST", f"/api/v1/recordings/{rid}/grants", "reason",
         {"json": {"kind": "poster", **reason}}),
        (AUDITOR, "POST", f"/api/v1/recordings/{rid}/verify", "reason", {"json": reason}),
        (AUDITOR, "POST", "/api/v1/exports", "reason",
         {"json": {"recordings": [rid], "include_proxies": False, **reason}}),
        (SUPERVISOR, "POST", f"/api/v1/recordings/{rid}/holds", "reason", {"json": reason}),
        (SUPERVISOR, "DELETE", f"/api/v1/recordings/{rid}/holds/{'0' * 16}", "reason",
         {"params": reason}),
        (SUPERVISOR, "POST", f"/api/v1/recordings/{rid}/holds", "case_id",
         {"json": {"reason": "hold for a case", "case_id": text}}),
        (SUPERVISOR, "POST", f"/api/v1/recordings/{rid}/cases", "case_id",
         {"json": {"case_id": text, "reason": "evidence"}}),
        (SUPERVISOR, "POST", f"/api/v1/recordings/{rid}/cases", "reason",
         {"json": {"case_id": "CASE-CTRL", **reason}}),
        (SUPERVISOR, "DELETE", f"/api/v1/recordings/{rid}/cases/CASE-NONE", "reason",
         {"params": reason}),
        (SUPERVISOR, "POST", f"/api/v1/recordings/{rid}/retention", "reason",
         {"json": {"retain_until": "2100-01-01T00:00:00+00:00", **reason}}),
        (SUPERVISOR, "POST", f"/api/v1/recordings/{rid}/notes", "text", {"json": {"text": text}}),
    ]


@pytest.mark.parametrize("kind", list(BAD_TEXTS))
def test_blank_or_control_character_texts_never_reach_the_audit_chain(
        api_server: ApiServer, client: httpx.Client, fault_log: FaultLog, kind: str) -> None:
    before = api_entries(api_server.archive)
    statuses = []
    for role, method, path, field, kwargs in _audit_text_requests(api_server, BAD_TEXTS[kind]):
        response = client.request(method, path, headers=auth(api_server.tokens[role]), **kwargs)
        assert response.status_code == 422, (kind, method, path, field, response.text[:300])
        assert field in response.json()["error"], (path, response.json())
        statuses.append(response.status_code)
    after = api_entries(api_server.archive)
    assert after == before  # nothing recorded, nothing served
    fault_log(ABUSE, f"audit text with {kind}",
              injected_by=f"{kind} in every reason, case id and note field ({len(statuses)} requests)",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"HTTP 422 x{statuses.count(422)}")


def test_reasons_are_stored_trimmed(api_server: ApiServer, client: httpx.Client) -> None:
    rid = api_server.recordings[0]
    response = client.get(f"/api/v1/recordings/{rid}/content/poster",
                          headers=auth(api_server.tokens[AUDITOR]),
                          params={"reason": "   复核 the approach   "})
    assert response.status_code == 200
    assert api_entries(api_server.archive)[-1]["details"]["reason"] == "复核 the approach"


# -- oversized input is refused without being sent back -------------------------------------

@pytest.mark.parametrize(("case", "path", "body"), [
    ("1 MB reason", "/api/v1/recordings/{rid}/holds", {"reason": "x" * 1_000_000}),
    ("1 MB content kind", "/api/v1/recordings/{rid}/grants", {"kind": "x" * 1_000_000,
                                                               "reason": "a good reason"}),
    ("1 MB note", "/api/v1/recordings/{rid}/notes", {"text": "x" * 1_000_000}),
    ("5000 ids of 1000 characters", "/api/v1/exports", {"recordings": ["x" * 1000] * 5000,
                                                        "reason": "a good reason"}),
])
def test_validation_errors_do_not_echo_the_input(api_server: ApiServer, client: httpx.Client,
                                                 fault_log: FaultLog, case: str, path: str,
                                                 body: dict[str, Any]) -> None:
    before = len(api_entries(api_server.archive))
    response = client.post(path.format(rid=api_server.recordings[0]), json=body,
                           headers=auth(api_server.tokens[SUPERVISOR]))
    assert response.status_code == 422
    assert len(response.content) < 8192, len(response.content)
    assert "x" * 50 not in response.text
    answer = response.json()
    assert answer["error"].startswith("body.") and answer["detail"]
    assert all("input" not in item for item in answer["detail"])
    assert len(api_entries(api_server.archive)) == before
    fault_log(ABUSE, f"validation error for a {case}",
              injected_by=f"POST {path.split('{rid}')[-1] or path} with a {case}",
              files_lost=0, wrongly_archived=0, duplicates=0,
              message=f"HTTP 422, {len(response.content)} bytes: {answer['error'][:120]}")
