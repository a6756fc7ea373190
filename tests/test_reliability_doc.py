"""The published fault matrix covers every fault class issue 10 names, and shows no loss."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _report_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("reliability_report", ROOT / "scripts" / "reliability_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_published_matrix_has_every_fault_class_and_no_loss() -> None:
    report = _report_module()
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert "Not measured in this run" not in text
    rows = {}
    for line in text.split("## Summary", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 6 and cells[1].isdigit():
            rows[cells[0]] = [int(cell) for cell in cells[1:]]
    for fault_class in report.REQUIRED:
        assert fault_class in rows, f"{fault_class} missing from docs/reliability.md"
        cases, lost, wrong, duplicates, wipes = rows[fault_class]
        assert cases >= 1
        assert (lost, wrong, duplicates, wipes) == (0, 0, 0, 0), fault_class
    # ingest and run, filesystem and S3 (moto): at least 50 instants each; RGW runs fewer
    kills = [int(n) for line in text.splitlines() if "RGW" not in line
             for n in re.findall(r"SIGKILL at (\d+) instants", line)]
    assert len(kills) >= 4 and min(kills) >= 50


def test_the_renderer_hides_temporary_paths_and_flags_missing_classes() -> None:
    report = _report_module()
    record = {"fault_class": "ENOSPC on the spool", "case": "c", "injected_by": "tmpfs",
              "files_lost": 0, "wrongly_archived": 0, "duplicates": 0, "premature_wipes": 0,
              "exit_code": 5, "message": "the spool /tmp/pytest-of-root/pytest-1/x/spool is full",
              "test": "tests/test_x.py::test_y"}
    page = report.render([record], "now")
    assert "the spool <tmp> is full" in page
    assert "**Not measured in this run:** kill -9 of ingest" in page
