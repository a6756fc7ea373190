"""The API over HTTP, against a real ``evidence-daemon serve`` process (tests/api_fixtures.py):
the role matrix over every endpoint, id and path tricks, byte ranges, and the audit chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest

from evidence_daemon.api.auth import ADMIN, AUDITOR, OFFICER, PERMISSIONS, SUPERVISOR, Action

from .api_fixtures import (
    OTHER_OFFICER_ID,
    ApiServer,
    add_user,
    make_api_config,
    start_server,
    stop_server,
)
from .helpers import run_cli_process

ROLES = (AUDITOR, SUPERVISOR, OFFICER, ADMIN)
_unique = count(1)


@pytest.fixture(scope="module")
def client(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=60) as session:
        yield session


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_entries(archive: Path, writer: str = "api-test") -> list[dict[str, Any]]:
    """The node's entries after its own key-registered entry (seq 1, checked here)."""
    folder = archive / "ledger" / writer
    entries = [json.loads(path.read_bytes()) for path in sorted(folder.glob("*.json"))]
    if entries:
        assert entries[0]["event"] == "key-registered" and entries[0]["details"]["role"] == "api"
    return entries[1:]


def original_bytes(api_server: ApiServer, recording: str) -> bytes:
    (path,) = (api_server.archive / "recordings" / recording).glob("original*")
    return path.read_bytes()


# -- the role matrix ------------------------------------------------------------------------

def endpoints(server: ApiServer, client: httpx.Client, role: str) -> list[tuple[str, str, Action, int, dict[str, Any]]]:
    """(method, path, action needed, status when allowed, request kwargs) for every endpoint."""
    rid = server.by_officer["A1001"][0]
    later = (datetime.now(timezone.utc) + timedelta(days=400 + next(_unique))).isoformat()
    hold_id, case_id = "0" * 16, f"CASE-{next(_unique)}"
    if role == SUPERVISOR:  # something real to release or unlink
        made = client.post(f"/api/v1/recordings/{rid}/holds", headers=auth(server.tokens[role]),
                           json={"reason": "matrix setup"})
        hold_id = made.json()["details"]["hold_id"]
        client.post(f"/api/v1/recordings/{rid}/cases", headers=auth(server.tokens[role]),
                    json={"case_id": case_id, "reason": "matrix setup"})
    reason = {"reason": "role matrix test"}
    return [
        ("GET", "/api/v1/me", Action.ME, 200, {}),
        ("GET", "/api/v1/openapi.json", Action.ME, 200, {}),
        ("GET", "/api/v1/recordings", Action.READ, 200, {}),
        ("GET", f"/api/v1/recordings/{rid}", Action.READ, 200, {}),
        ("GET", f"/api/v1/recordings/{rid}/custody", Action.READ, 200, {}),
        ("GET", f"/api/v1/recordings/{rid}/content/poster", Action.CONTENT, 200, {"params": reason}),
        ("POST", f"/api/v1/recordings/{rid}/grants", Action.CONTENT, 201,
         {"json": {"kind": "poster", **reason}}),
        ("POST", f"/api/v1/recordings/{rid}/verify", Action.VERIFY, 200, {"json": reason}),
        ("POST", f"/api/v1/recordings/{rid}/holds", Action.ANNOTATE, 201, {"json": reason}),
        ("DELETE", f"/api/v1/recordings/{rid}/holds/{hold_id}", Action.ANNOTATE, 200,
         {"params": reason}),
        ("POST", f"/api/v1/recordings/{rid}/cases", Action.ANNOTATE, 201,
         {"json": {"case_id": f"CASE-{next(_unique)}", **reason}}),
        ("DELETE", f"/api/v1/recordings/{rid}/cases/{case_id}", Action.ANNOTATE, 200,
         {"params": reason}),
        ("POST", f"/api/v1/recordings/{rid}/notes", Action.ANNOTATE, 201,
         {"json": {"text": "checked the approach to the vehicle"}}),
        ("POST", f"/api/v1/recordings/{rid}/retention", Action.ANNOTATE, 200,
         {"json": {"retain_until": later, **reason}}),
        ("POST", "/api/v1/exports", Action.EXPORT, 200,
         {"json": {"recordings": [rid], "include_proxies": False, **reason}}),
        ("GET", "/api/v1/compliance/report", Action.REPORT, 200, {}),
        ("GET", "/api/v1/audit/accesses", Action.AUDIT, 200, {"params": {"recording": rid}}),
        ("GET", "/api/v1/users", Action.USERS, 200, {}),
        ("POST", "/api/v1/incidents", Action.INCIDENTS, 201,
         {"params": {"name": "matrix.csv"}, "content": (
             "incident_id,officers,start,end\n"
             f"M-{next(_unique)},A1001,2026-11-25T09:00:00+08:00,2026-11-25T09:00:02+08:00\n"
         ).encode()}),
        ("GET", "/api/v1/incidents", Action.REPORT, 200, {}),
        ("GET", "/api/v1/incidents/coverage", Action.REPORT, 200, {"params": {"by": "type"}}),
        ("POST", "/api/v1/reviews", Action.REVIEW, 201,
         {"json": {"from": "2026-11-01T00:00:00+08:00", "to": "2026-11-02T00:00:00+08:00",
                   "per_officer": 1}}),
        ("GET", "/api/v1/reviews", Action.REPORT, 200, {}),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_over_every_endpoint(api_server: ApiServer, client: httpx.Client, role: str) -> None:
    for method, path, action, ok_status, kwargs in endpoints(api_server, client, role):
        response = client.request(method, path, headers=auth(api_server.tokens[role]), **kwargs)
        expected = ok_status if action in PERMISSIONS[role] else 403
        assert response.status_code == expected, (role, method, path, response.text[:300])


@pytest.mark.slow
@pytest.mark.parametrize("who", ["no token", "revoked", "malformed", "unknown"])
def test_every_endpoint_refuses_without_a_valid_token(api_server: ApiServer, client: httpx.Client,
                                                      who: str) -> None:
    headers = {"no token": {}, "revoked": auth(api_server.tokens["revoked"]),
               "malformed": {"Authorization": "Basic dXNlcjpwYXNz"},
               "unknown": auth("evd_" + "x" * 43)}[who]
    before = len(api_entries(api_server.archive))
    for method, path, _, _, kwargs in endpoints(api_server, client, AUDITOR):
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 401, (who, method, path, response.text[:200])
        assert response.headers["www-authenticate"] == "Bearer"
    grant = client.get("/api/v1/grants/" + "a" * 32, headers=headers)
    assert grant.status_code == 401
    assert len(api_entries(api_server.archive)) == before  # nothing was recorded or served
    assert client.get("/healthz").status_code == 200


def test_an_officer_sees_only_their_own_recordings(api_server: ApiServer, client: httpx.Client) -> None:
    own, other = api_server.by_officer["A1001"], api_server.by_officer[OTHER_OFFICER_ID]
    headers = auth(api_server.tokens[OFFICER])
    listed = client.get("/api/v1/recordings", headers=headers).json()["items"]
    assert sorted(item["id"] for item in listed) == sorted(own)
    assert client.get("/api/v1/recordings", headers=headers,
                      params={"officer": OTHER_OFFICER_ID}).json()["items"] == []
    for path in (f"/api/v1/recordings/{other[0]}", f"/api/v1/recordings/{other[0][:12]}",
                 f"/api/v1/recordings/{other[0]}/custody"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path  # not 403: ids cannot be probed
    refused = client.get(f"/api/v1/recordings/{other[0]}/content/original", headers=headers,
                         params={"reason": "curious"})
    assert refused.status_code == 404
    granted = client.post(f"/api/v1/recordings/{other[0]}/grants", headers=headers,
                          json={"kind": "proxy", "reason": "curious"})
    assert granted.status_code == 404
    # a grant made by someone else is useless to the officer
    auditor_grant = client.post(f"/api/v1/recordings/{other[0]}/grants",
                                headers=auth(api_server.tokens[AUDITOR]),
                                json={"kind": "poster", "reason": "review"}).json()
    assert client.get(auditor_grant["url"], headers=headers).status_code == 404
    assert client.get(f"/api/v1/recordings/{own[0]}", headers=headers).status_code == 200


@pytest.mark.parametrize("path", [
    "/api/v1/recordings/..%2F..%2Fetc%2Fpasswd",
    "/api/v1/recordings/../../etc/passwd",
    "/api/v1/recordings/%2e%2e/manifest.json",
    "/api/v1/recordings/{rid}/content/..%2Fmanifest.json",
    "/api/v1/recordings/{rid}/content/original%2F..%2F..%2F..%2Fkeys",
    "/api/v1/recordings/{rid}/content/manifest",
    "/api/v1/recordings/{rid}%00/content/original",
    "/api/v1/recordings/recordings%2F{rid}%2Foriginal.mp4/content/original",
    "/api/v1/grants/..%2F..%2Fusers",
    "/console/..%2F..%2Fapp.py",
    "/console/../api/app.py",
])
def test_paths_and_ids_cannot_reach_outside_the_catalog(api_server: ApiServer, client: httpx.Client,
                                                        path: str) -> None:
    rid = api_server.recordings[0]
    response = client.get(path.format(rid=rid), headers=auth(api_server.tokens[AUDITOR]),
                          params={"reason": "traversal test"})
    assert response.status_code in (404, 422), (path, response.status_code, response.text[:200])
    assert b"PRIVATE KEY" not in response.content and b"token_hash" not in response.content


# -- content and ranges ---------------------------------------------------------------------

@pytest.mark.parametrize(("header", "expected_slice", "status"), [
    (None, slice(None), 200),
    ("bytes=0-99", slice(0, 100), 206),
    ("bytes=1000-2999", slice(1000, 3000), 206),
    ("bytes=-500", slice(-500, None), 206),
    ("bytes=5000-", slice(5000, None), 206),
    ("bytes=0-1,5-9", slice(None), 200),  # several ranges: the whole object
    ("bytes=oops", slice(None), 200),  # unreadable: ignored
])
def test_ranges_return_what_the_object_holds(api_server: ApiServer, client: httpx.Client,
                                             header: str | None, expected_slice: slice,
                                             status: int) -> None:
    rid = api_server.recordings[0]
    whole = original_bytes(api_server, rid)
    headers = auth(api_server.tokens[AUDITOR])
    if header:
        headers["Range"] = header
    response = client.get(f"/api/v1/recordings/{rid}/content/original", headers=headers,
                          params={"reason": "range test"})
    assert response.status_code == status, response.text[:200]
    assert response.content == whole[expected_slice]
    assert response.headers["accept-ranges"] == "bytes"
    assert int(response.headers["content-length"]) == len(whole[expected_slice])
    if status == 206:
        first = len(whole) + expected_slice.start if expected_slice.start < 0 else expected_slice.start
        assert response.headers["content-range"] == f"bytes {first}-{first + len(response.content) - 1}/{len(whole)}"


def test_a_range_outside_the_object_is_refused_and_not_recorded(api_server: ApiServer,
                                                                 client: httpx.Client) -> None:
    rid = api_server.recordings[0]
    size = len(original_bytes(api_server, rid))
    before = len(api_entries(api_server.archive))
    response = client.get(f"/api/v1/recordings/{rid}/content/original",
                          headers={**auth(api_server.tokens[AUDITOR]), "Range": f"bytes={size}-"},
                          params={"reason": "range test"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert len(api_entries(api_server.archive)) == before


def test_content_needs_a_reason(api_server: ApiServer, client: httpx.Client) -> None:
    rid = api_server.recordings[0]
    before = len(api_entries(api_server.archive))
    for params in ({}, {"reason": ""}, {"reason": "x"}):
        response = client.get(f"/api/v1/recordings/{rid}/content/original",
                              headers=auth(api_server.tokens[AUDITOR]), params=params)
        assert response.status_code == 422, params
    assert len(api_entries(api_server.archive)) == before
    by_header = client.get(f"/api/v1/recordings/{rid}/content/poster",
                           headers={**auth(api_server.tokens[AUDITOR]),
                                    "X-Evidence-Reason": "given as a header"})
    assert by_header.status_code == 200 and by_header.content[:3] == b"\xff\xd8\xff"  # JPEG


def test_proxy_and_poster_are_what_their_derived_events_describe(api_server: ApiServer,
                                                                  client: httpx.Client) -> None:
    rid = api_server.recordings[0]
    detail = client.get(f"/api/v1/recordings/{rid}", headers=auth(api_server.tokens[AUDITOR])).json()
    for kind in ("proxy", "poster"):
        response = client.get(f"/api/v1/recordings/{rid}/content/{kind}",
                              headers=auth(api_server.tokens[AUDITOR]), params={"reason": "review"})
        assert response.status_code == 200
        assert hashlib.sha256(response.content).hexdigest() == detail["content"][kind]["sha256"]
    assert response.headers["content-type"] == "image/jpeg"
    audio = client.get(f"/api/v1/recordings/{api_server.audio_only}/content/poster",
                       headers=auth(api_server.tokens[AUDITOR]), params={"reason": "review"})
    assert audio.status_code == 404 and "poster" in audio.json()["error"]


# -- the audit chain ------------------------------------------------------------------------

@pytest.mark.slow
def test_every_content_access_is_exactly_one_signed_event(api_server: ApiServer,
                                                           client: httpx.Client) -> None:
    rid = api_server.recordings[1]
    headers = auth(api_server.tokens[AUDITOR])
    before = api_entries(api_server.archive)
    reasons = [f"audit test {n}" for n in range(3)]
    for reason, kind in zip(reasons, ("original", "proxy", "poster"), strict=True):
        assert client.get(f"/api/v1/recordings/{rid}/content/{kind}", headers=headers,
                          params={"reason": reason}).status_code == 200
    grant = client.post(f"/api/v1/recordings/{rid}/grants", headers=headers,
                        json={"kind": "proxy", "reason": "player test"})
    assert grant.status_code == 201
    for header in ("bytes=0-9", "bytes=10-", None):  # a player's many requests: one access
        fetched = client.get(grant.json()["url"], headers={**headers, **({"Range": header} if header else {})})
        assert fetched.status_code in (200, 206)
    after = api_entries(api_server.archive)
    new = after[len(before):]
    assert [entry["event"] for entry in new] == ["accessed"] * 4
    assert [entry["details"]["reason"] for entry in new] == [*reasons, "player test"]
    assert [entry["details"]["kind"] for entry in new] == ["original", "proxy", "poster", "proxy"]
    assert {entry["actor"] for entry in new} == {"user:auditor-1"}
    assert all(entry["recording"] == rid and entry["sig"] for entry in new)
    assert grant.json()["audit"] == {"writer": "api-test", "seq": new[-1]["seq"]}
    # the trail is queryable both ways, newest first
    by_recording = client.get("/api/v1/audit/accesses", headers=auth(api_server.tokens[ADMIN]),
                              params={"recording": rid}).json()["items"]
    assert [item["seq"] for item in by_recording[:4]] == [entry["seq"] for entry in reversed(new)]
    by_user = client.get("/api/v1/audit/accesses", headers=auth(api_server.tokens[SUPERVISOR]),
                         params={"user": "auditor-1", "limit": 2}).json()
    assert [item["seq"] for item in by_user["items"]] == [new[-1]["seq"], new[-2]["seq"]]
    assert by_user["next_cursor"]
    # and the archive verifies, the API's chain included
    result = run_cli_process("--config", str(api_server.station_config), "verify", "--all")
    assert result.returncode == 0, result.stdout + result.stderr
    custody = client.get(f"/api/v1/recordings/{rid}/custody", headers=headers).json()
    assert custody["verified"] and any(event["writer"] == "api-test" for event in custody["events"])


def test_player_grants_work_with_the_console_cookie_only_for_their_user(
        api_server: ApiServer, client: httpx.Client) -> None:
    rid = api_server.recordings[0]
    token = api_server.tokens[SUPERVISOR]
    url = client.post(f"/api/v1/recordings/{rid}/grants", headers=auth(token),
                      json={"kind": "poster", "reason": "cookie test"}).json()["url"]
    with httpx.Client(base_url=api_server.base_url) as browser:
        assert browser.get(url).status_code == 401
        session = browser.post("/api/v1/session", headers=auth(token))
        assert session.status_code == 204
        cookie = session.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/api/v1/grants" in cookie
        assert token not in session.headers["set-cookie"]  # a signed session, not the token
        assert browser.get(url).status_code == 200
        # the cookie opens grants, nothing else
        assert browser.get("/api/v1/me").status_code == 401
        assert browser.delete("/api/v1/session").status_code == 204
        assert browser.get(url).status_code == 401
        browser.cookies.set("evidence_session", api_server.tokens[AUDITOR])  # not a signed session
        assert browser.get(url).status_code == 401
        # another user's genuine session does not open this user's grant
        browser.cookies.clear()
        assert browser.post("/api/v1/session", headers=auth(api_server.tokens[AUDITOR])).status_code == 204
        assert browser.get(url).status_code == 404


def test_supervisor_annotations_show_in_the_recording_and_search(api_server: ApiServer,
                                                                 client: httpx.Client) -> None:
    rid = api_server.recordings[2]
    headers = auth(api_server.tokens[SUPERVISOR])
    hold = client.post(f"/api/v1/recordings/{rid}/holds", headers=headers,
                       json={"reason": "complaint filed", "case_id": "（2026）城管罚字第12号"})
    assert hold.status_code == 201 and hold.json()["details"]["applied"] is False  # filesystem
    linked = client.post(f"/api/v1/recordings/{rid}/cases", headers=headers,
                         json={"case_id": "（2026）城管罚字第12号", "reason": "evidence"})
    assert linked.status_code == 201
    again = client.post(f"/api/v1/recordings/{rid}/cases", headers=headers,
                        json={"case_id": "（2026）城管罚字第12号", "reason": "evidence"})
    assert again.status_code == 409
    assert client.post(f"/api/v1/recordings/{rid}/notes", headers=headers,
                       json={"text": "vehicle plate visible at 00:01"}).status_code == 201
    detail = client.get(f"/api/v1/recordings/{rid}", headers=headers).json()
    assert detail["held"] and "（2026）城管罚字第12号" in detail["cases"]
    assert detail["notes"][-1]["text"] == "vehicle plate visible at 00:01"
    assert detail["holds"][0]["placed_by"] == "user:supervisor-1"
    found = client.get("/api/v1/recordings", headers=headers,
                       params={"case": "（2026）城管罚字第12号"}).json()["items"]
    assert [item["id"] for item in found] == [rid]
    held = client.get("/api/v1/recordings", headers=headers, params={"held": "true"}).json()["items"]
    assert rid in [item["id"] for item in held]
    # retention is extended, never shortened
    far = (datetime.now(timezone.utc) + timedelta(days=3650)).isoformat()
    assert client.post(f"/api/v1/recordings/{rid}/retention", headers=headers,
                       json={"retain_until": far, "reason": "litigation"}).status_code == 200
    shorter = (datetime.now(timezone.utc) + timedelta(days=30)).isoformat()
    refused = client.post(f"/api/v1/recordings/{rid}/retention", headers=headers,
                          json={"retain_until": shorter, "reason": "tidy up"})
    assert refused.status_code == 409 and "never shortened" in refused.json()["error"]
    released = client.delete(f"/api/v1/recordings/{rid}/holds/{hold.json()['details']['hold_id']}",
                             headers=headers, params={"reason": "case closed"})
    assert released.status_code == 200
    assert not client.get(f"/api/v1/recordings/{rid}", headers=headers).json()["held"]


def test_search_filters_and_pages(api_server: ApiServer, client: httpx.Client) -> None:
    headers = auth(api_server.tokens[AUDITOR])
    everything = client.get("/api/v1/recordings", headers=headers).json()["items"]
    assert sorted(item["id"] for item in everything) == sorted(api_server.recordings)
    starts = [item["recorded_start"] for item in everything]
    assert starts == sorted(starts, reverse=True)  # newest first
    pages: list[str] = []
    cursor = None
    while True:
        page = client.get("/api/v1/recordings", headers=headers,
                          params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        pages += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == [item["id"] for item in everything]
    window = client.get("/api/v1/recordings", headers=headers, params={
        "from": "2026-11-25T09:30:00+08:00", "to": "2026-11-25T11:30:00+08:00"}).json()["items"]
    assert [item["recorded_start"][:16] for item in window] == ["2026-11-25T11:00", "2026-11-25T10:00"]
    by_device = client.get("/api/v1/recordings", headers=headers, params={"device": "DSJ002"}).json()
    assert {item["officer_id"] for item in by_device["items"]} == {OTHER_OFFICER_ID}
    # the fixture's footage is dated 2026-11-25 and archived later than 24 h after it
    late = client.get("/api/v1/recordings", headers=headers,
                      params={"station": "town-a-dock-1", "compliance": "late"}).json()["items"]
    assert len(late) == len(everything) and all(item["compliance"] == "late" for item in late)
    assert client.get("/api/v1/recordings", headers=headers,
                      params={"compliance": "on_time"}).json()["items"] == []
    assert client.get("/api/v1/recordings", headers=headers,
                      params={"station": "elsewhere"}).json()["items"] == []
    assert client.get("/api/v1/recordings", headers=headers,
                      params={"id": api_server.recordings[0][:6]}).json()["items"][0]["id"] == api_server.recordings[0]
    for bad in ({"from": "yesterday"}, {"compliance": "overdue"}, {"cursor": "garbage"},
                {"limit": 0}, {"limit": 100000}, {"id": "zz"}):
        response = client.get("/api/v1/recordings", headers=headers, params=bad)
        assert response.status_code == 422, bad
        assert response.json()


def test_failed_sign_ins_are_rate_limited_and_logged(tmp_path: Path, api_server: ApiServer) -> None:
    path = make_api_config(tmp_path, api_server.archive, api_id="api-ratelimit")
    path.write_text(path.read_text().replace("failed_login_limit = 1000", "failed_login_limit = 3"))
    token = add_user(path, "aud", "auditor")
    process, base_url = start_server(path, expect_recordings=len(api_server.recordings))
    try:
        with httpx.Client(base_url=base_url) as session:
            for _ in range(3):
                assert session.get("/api/v1/me", headers=auth("evd_wrong")).status_code == 401
            blocked = session.get("/api/v1/me", headers=auth(token))
            assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    finally:
        stop_server(process)
    log = (tmp_path / "serve.log").read_text()
    assert log.count("sign-in failed from 127.0.0.1") == 3
    assert "evd_wrong" not in log and token not in log
