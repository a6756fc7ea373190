"""The API node's commands as a user runs them: users, reindex, export, verify-package; and
an evidence package fetched over HTTP, checked offline."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import httpx
import pytest

from .api_fixtures import ApiServer, add_user, make_api_config, start_server, stop_server
from .helpers import run_cli_process, wait_for


def cli(*args: str) -> tuple[int, str, str]:
    result = run_cli_process(*args)
    return result.returncode, result.stdout, result.stderr


def test_users_are_listed_without_secrets_and_mistakes_are_named(api_server: ApiServer) -> None:
    config = str(api_server.config)
    code, out, _ = cli("--config", config, "users", "list", "--json")
    users = {user["name"]: user for user in json.loads(out)}
    assert code == 0 and users["officer-1"]["officer_id"] == "A1001"
    assert users["gone-1"]["revoked_at"] and users["auditor-1"]["revoked_at"] is None
    assert "token" not in out and api_server.tokens["auditor"] not in out
    code, out, _ = cli("--config", config, "users", "list")
    assert code == 0 and "revoked" in out and "auditor-1" in out
    for args, message in [
        (("add", "auditor-1", "--role", "auditor"), "already exists"),
        (("add", "gone-1", "--role", "auditor"), "names are not reused"),
        (("add", "o9", "--role", "officer"), "--officer-id"),
        (("add", "a9", "--role", "auditor", "--officer-id", "A1"), "only applies to role officer"),
        (("add", "bad name", "--role", "auditor"), "user name"),
        (("revoke", "nobody"), "no user 'nobody'"),
        (("revoke", "gone-1"), "already revoked"),
    ]:
        code, _, err = cli("--config", config, "users", *args)
        assert code == 2 and message in err, (args, err)


@pytest.mark.slow
def test_reindex_rebuilds_the_same_catalog_from_the_archive(api_server: ApiServer, tmp_path: Path) -> None:
    config = str(make_api_config(tmp_path, api_server.archive, api_id="api-reindex"))
    for _ in range(2):
        code, out, err = cli("--config", config, "reindex")
        assert code == 0, err
        assert f"{len(api_server.recordings)} recordings" in out
        assert "do not verify" not in out


@pytest.mark.slow
def test_export_and_verify_package_from_the_command_line(api_server: ApiServer, tmp_path: Path) -> None:
    out = tmp_path / "case-12.zip"
    ids = [recording[:12] for recording in api_server.recordings[:2]]
    code, printed, err = cli("--config", str(api_server.config), "export", *ids,
                             "--reason", "court order 2026-123", "--out", str(out))
    assert code == 0, err
    assert "recorded as api-test#" in printed
    code, printed, err = cli("verify-package", str(out))
    assert code == 0, printed + err
    code, printed, _ = cli("verify-package", str(out), "--json")
    report = json.loads(printed)
    assert report["ok"] and sorted(report["recordings"]) == sorted(api_server.recordings[:2])
    assert report["reason"] == "court order 2026-123"
    # the same file again would overwrite evidence: refused
    code, _, err = cli("--config", str(api_server.config), "export", ids[0], "--reason", "again",
                       "--out", str(out))
    assert code == 2 and str(out) in err
    # one byte of one original changed: named, exit 7
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(out) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if "/original" in item.filename:
                data = bytes([data[0] ^ 1]) + data[1:]
                changed = item.filename
            target.writestr(item, data)
    code, printed, _ = cli("verify-package", str(tampered))
    assert code == 7 and changed in printed


def test_an_export_over_http_is_a_package_that_verifies(api_server: ApiServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=api_server.base_url, timeout=120) as client:
        response = client.post("/api/v1/exports", headers={
            "Authorization": f"Bearer {api_server.tokens['supervisor']}"}, json={
            "recordings": [api_server.recordings[-1]], "reason": "internal review",
            "include_proxies": True})
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    package = tmp_path / "review.zip"
    package.write_bytes(response.content)
    code, printed, err = cli("verify-package", str(package))
    assert code == 0, printed + err
    names = zipfile.ZipFile(package).namelist()
    assert f"recordings/{api_server.recordings[-1]}/manifest.json" in names
    assert "README.txt" in names and "package.sig" in names
    assert not list((api_server.config.parent / "api-state" / "exports").glob("*.zip"))


@pytest.mark.slow
def test_api_nodes_side_by_side_see_each_others_audit_entries(api_server: ApiServer,
                                                               tmp_path: Path) -> None:
    config = make_api_config(tmp_path, api_server.archive, api_id="api-b")
    token = add_user(config, "aud-b", "auditor")
    process, base_url = start_server(config, expect_recordings=len(api_server.recordings))
    try:
        rid = api_server.recordings[0]
        with httpx.Client(base_url=api_server.base_url) as node_a:
            accessed = node_a.get(f"/api/v1/recordings/{rid}/content/poster",
                                  params={"reason": "seen from node b?"},
                                  headers={"Authorization": f"Bearer {api_server.tokens['auditor']}"})
            assert accessed.status_code == 200

        def seen_on_b() -> bool:
            with httpx.Client(base_url=base_url) as node_b:
                items = node_b.get("/api/v1/audit/accesses", params={"recording": rid},
                                   headers={"Authorization": f"Bearer {token}"}).json()["items"]
            return any(item["writer"] == "api-test" and item["details"]["reason"] == "seen from node b?"
                       for item in items)

        wait_for(seen_on_b, timeout_s=30, what="node b to index node a's access")
    finally:
        stop_server(process)
