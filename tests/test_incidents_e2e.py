"""End to end through the README's commands: import a dispatch export, ingest cards, see an
incident without footage turn covered when the late card docks, report it, sample and review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .api_fixtures import make_api_config
from .helpers import run_cli, write_config

DISPATCH = """警情编号,处警民警,开始时间,结束时间,警情类型,地点
JQ-0001,10086,2026-11-25 09:00:30,2026-11-25 09:02:00,纠纷,东街 12 号
JQ-0002,20017,2026-11-25 10:00:10,2026-11-25 10:01:40,交通,北环路口
JQ-0003,30555,2026-11-25 11:00:00,2026-11-25 11:30:00,盗窃,西市场
JQ-0004,,2026-11-25 12:00:00,2026-11-25 12:30:00,纠纷,南门
"""


def card(root: Path, name: str, officer: str, hour: int) -> Path:
    folder = root / name
    folder.mkdir()
    for n in range(2):  # two files of a minute each, by name: DSJ_<officer>_<start>_<n>
        (folder / f"DSJ{officer[-3:]}_{officer}_2026112{5}{hour:02d}0{n}00_000{n}.MP4").write_bytes(
            f"{name} {n}".encode())
    return folder


def test_missing_footage_turns_covered_when_the_late_card_docks(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    station = write_config(tmp_path / "station")
    archive = tmp_path / "station" / "archive"
    api = make_api_config(tmp_path / "api", archive, extra="[station]\ntimezone = \"Asia/Shanghai\"")
    assert run_cli(capsys, "--config", str(station), "ingest",
                   str(card(tmp_path, "card-a", "10086", 9)))[0] == 0
    dispatch = tmp_path / "jq-202611.csv"
    dispatch.write_text(DISPATCH, encoding="utf-8")

    code, out, _ = run_cli(capsys, "--config", str(api), "incidents", "import", str(dispatch))
    assert code == 0, out
    assert "not loaded: " in out and ":5: incident JQ-0004: no officer id" in out
    assert "3 added, 0 changed, 0 unchanged, 1 row(s) not loaded" in out
    assert "coverage: 1 covered, 0 partial, 2 missing, 0 pending" in out

    code, out, _ = run_cli(capsys, "--config", str(api), "report", "--coverage", "--from",
                           "2026-11-25", "--to", "2026-11-25", "--format", "json")
    report = json.loads(out)
    assert {g["group"]: (g["covered"], g["missing"]) for g in report["groups"]} == {
        "10086": (1, 0), "20017": (0, 1), "30555": (0, 1)}
    assert sorted(i["incident_id"] for i in report["missing"]) == ["JQ-0002", "JQ-0003"]

    # the late card: officer 20017's recorder docks days later
    assert run_cli(capsys, "--config", str(station), "ingest",
                   str(card(tmp_path, "card-b", "20017", 10)))[0] == 0
    code, out, _ = run_cli(capsys, "--config", str(api), "incidents", "list", "--json")
    assert code == 0
    states = {row["incident_id"]: row["coverage"] for row in json.loads(out)}
    assert states == {"JQ-0001": "covered", "JQ-0002": "covered", "JQ-0003": "missing"}

    code, out, _ = run_cli(capsys, "--config", str(api), "report", "--coverage", "--by", "type",
                           "--from", "2026-11-25", "--to", "2026-11-25")
    assert code == 0 and "盗窃" in out and "Incidents without footage:" in out and "JQ-0003" in out

    # a review sample of the day, marked, reported, recomputed from the archive alone
    code, out, _ = run_cli(capsys, "--config", str(api), "review", "sample", "--from",
                           "2026-11-25", "--to", "2026-11-26", "--per-officer", "1", "--json")
    assert code == 0, out
    sample = json.loads(out)
    assert sorted(item["officer_id"] for item in sample["items"]) == ["10086", "20017"]
    first = sample["items"][0]["sha256"]
    code, out, _ = run_cli(capsys, "--config", str(api), "review", "mark", sample["id"], first,
                           "--note", "approach and arrest recorded in full")
    assert code == 0 and "1 of 2 reviewed" in out
    code, out, _ = run_cli(capsys, "--config", str(api), "report", "--reviews", "--format", "json")
    assert json.loads(out)["reviews"][0]["reviewed"] == 1
    code, out, _ = run_cli(capsys, "--config", str(api), "review", "recompute", sample["id"])
    assert code == 0 and "the sample follows from the archive" in out, out
    code, out, _ = run_cli(capsys, "--config", str(station), "verify")
    assert code == 0, out

    # incidents, links and reviews are derived from the archive: reindex rebuilds them
    code, before, _ = run_cli(capsys, "--config", str(api), "incidents", "list", "--json")
    assert run_cli(capsys, "--config", str(api), "reindex")[0] == 0
    code, after, _ = run_cli(capsys, "--config", str(api), "incidents", "list", "--json")
    assert json.loads(after) == json.loads(before)
    code, out, _ = run_cli(capsys, "--config", str(api), "review", "show", sample["id"], "--json")
    reviewed = [item for item in json.loads(out)["items"] if item["reviewed_at"]]
    assert [(item["sha256"], item["note"]) for item in reviewed] == [
        (first, "approach and arrest recorded in full")]
