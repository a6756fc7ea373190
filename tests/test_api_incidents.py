"""Incidents and review samples through the running API: import, coverage, confirming and
removing suggested recordings, samples and reviews — each change a signed event."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .api_fixtures import OFFICER_ID, ApiServer
from .test_api import api_entries, auth

pytestmark = pytest.mark.slow

DISPATCH = (
    "incident_id,officers,start,end,type,place\n"
    f"API-1,{OFFICER_ID},2026-11-25T09:00:00+08:00,2026-11-25T09:00:02+08:00,traffic,Ring Rd\n"
    f"API-2,{OFFICER_ID},2026-11-25T15:00:00+08:00,2026-11-25T15:30:00+08:00,dispute,Market\n"
    "API-3,A1001,not a time,2026-11-25T15:30:00+08:00,dispute,Market\n"
)


@pytest.fixture
def client(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=60) as session:
        yield session


def test_import_list_confirm_and_remove(api_server: ApiServer, client: httpx.Client) -> None:
    supervisor = auth(api_server.tokens["supervisor"])
    before = len(api_entries(api_server.archive))
    imported = client.post("/api/v1/incidents", headers=supervisor, content=DISPATCH.encode(),
                           params={"name": "jq.csv"})
    assert imported.status_code == 201, imported.text
    body = imported.json()
    assert body["problems"] == [{"line": 4, "reason": "incident API-3: start 'not a time' is "
                                 "not a date and time (expected e.g. 2026-11-30 08:15:00 or "
                                 "2026-11-30T08:15:00+08:00)"}]
    assert body["document"].startswith("dispatch/")
    assert (api_server.archive / body["document"]).is_file()
    entries = api_entries(api_server.archive)[before:]
    assert [e["event"] for e in entries] == ["incidents-imported"]
    assert entries[0]["actor"] == "user:supervisor-1"

    missing = client.get("/api/v1/incidents", headers=supervisor,
                         params={"coverage": "missing"}).json()["items"]
    assert "API-2" in [row["incident_id"] for row in missing]
    detail = client.get("/api/v1/incidents/API-1", headers=supervisor).json()
    assert detail["coverage"] == "covered" and len(detail["recordings"]) == 1
    recording = detail["recordings"][0]

    officer = auth(api_server.tokens["officer"])
    assert client.get("/api/v1/incidents", headers=officer).status_code == 403
    auditor = auth(api_server.tokens["auditor"])
    assert client.post("/api/v1/incidents", headers=auditor, content=DISPATCH.encode()).status_code == 403

    confirmed = client.post("/api/v1/incidents/API-1/links", headers=supervisor,
                            json={"recording": recording, "reason": "dispatch reconciliation"})
    assert confirmed.status_code == 201, confirmed.text
    cases = client.get(f"/api/v1/recordings/{recording}", headers=supervisor).json()["cases"]
    assert "API-1" in cases

    removed = client.delete(f"/api/v1/incidents/API-1/links/{recording}", headers=supervisor,
                            params={"reason": "another call at the same place"})
    assert removed.status_code == 200, removed.text
    after = client.get("/api/v1/incidents/API-1", headers=supervisor).json()
    assert after["coverage"] == "missing" and after["recordings"] == []
    events = [e["event"] for e in api_entries(api_server.archive)[before:]]
    assert events.count("case-linked") == 1 and events.count("incident-link-rejected") == 1


def test_a_review_sample_is_drawn_once_and_each_review_recorded(api_server: ApiServer,
                                                                client: httpx.Client) -> None:
    supervisor = auth(api_server.tokens["supervisor"])
    period = {"from": "2026-11-25T00:00:00+08:00", "to": "2026-11-26T00:00:00+08:00",
              "per_officer": 1}
    drawn = client.post("/api/v1/reviews", headers=supervisor, json=period)
    assert drawn.status_code == 201, drawn.text
    sample = drawn.json()
    assert sorted(item["officer_id"] for item in sample["items"]) == sorted(api_server.by_officer)
    again = client.post("/api/v1/reviews", headers=supervisor, json=period).json()
    assert again["id"] == sample["id"] and again["items"] == sample["items"]
    item = sample["items"][0]["sha256"]
    marked = client.post(f"/api/v1/reviews/{sample['id']}/items/{item}", headers=supervisor,
                         json={"note": "conduct as policy requires"})
    assert marked.status_code == 200, marked.text
    assert marked.json()["supervisor"] == "user:supervisor-1"
    twice = client.post(f"/api/v1/reviews/{sample['id']}/items/{item}", headers=supervisor,
                        json={"note": "again"})
    assert twice.status_code == 409
    listing = client.get("/api/v1/reviews", headers=auth(api_server.tokens["auditor"])).json()
    mine = [row for row in listing["completion"] if row["supervisor"] == "user:supervisor-1"]
    assert mine and mine[0]["reviewed"] >= 1
    not_ended = client.post("/api/v1/reviews", headers=supervisor,
                            json={"from": "2026-11-25T00:00:00+08:00",
                                  "to": "2099-01-01T00:00:00+08:00", "per_officer": 1})
    assert not_ended.status_code == 422, not_ended.text
    assert "can be drawn only after it has ended" in not_ended.text
