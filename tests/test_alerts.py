"""The shipped alert rules, checked and unit-tested by promtool (Debian package prometheus)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES_DIR = Path(__file__).resolve().parents[1] / "config" / "prometheus"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None,
                                reason="promtool missing: apt-get install prometheus")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=RULES_DIR,
                          timeout=60, check=False)


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "evidence-alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # 9 + tail missing (issue 11) + forecast (issue 14) + incidents without footage (issue 15)
    assert "12 rules found" in result.stdout


def test_rules_fire_and_stay_quiet_as_the_unit_tests_say() -> None:
    result = promtool("test", "rules", "evidence-alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_speaks_english_and_chinese() -> None:
    import yaml  # type: ignore[import-untyped]

    groups = yaml.safe_load((RULES_DIR / "evidence-alerts.yml").read_text(encoding="utf-8"))
    rules = [rule for group in groups["groups"] for rule in group["rules"]]
    tested = (RULES_DIR / "evidence-alerts.test.yml").read_text(encoding="utf-8")
    for rule in rules:
        for key in ("summary", "description"):
            text = rule["annotations"][key]
            assert any("\u4e00" <= char <= "\u9fff" for char in text), (rule["alert"], key)
            assert any("a" <= char.lower() <= "z" for char in text), (rule["alert"], key)
        assert f"alertname: {rule['alert']}" in tested, f"{rule['alert']} has no promtool test"
