"""README.zh-CN.md keeps in step with README.md (issue 16): the operators' and auditors' parts.

Every ``##``/``###`` heading of the covered English sections has a Chinese counterpart marked
``<!-- en: <English heading> -->`` on the line before it, at the same level; every command
block of those sections appears verbatim in the Chinese file, and the Chinese file shows no
command block the English one does not (a command changed in one is changed in both).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The top-level English sections the Chinese README covers, with every heading inside them.
COVERED = ("Quick start", "Installing on a station", "The dock station", "Auditors",
           "Incidents without footage", "Monitoring")
_HEADING = re.compile(r"^(#{2,3}) (.+?)\s*$", re.M)
_BLOCK = re.compile(r"^```[^\n]*\n.*?^```$", re.S | re.M)
_ANCHOR = re.compile(r"^<!-- en: (.+?) -->\n(#{2,3}) .+$", re.M)


def _covered_sections(text: str) -> list[tuple[str, str, str]]:
    """(level, heading, body) of every heading inside the covered top-level sections."""
    matches = list(_HEADING.finditer(text))
    sections, inside = [], False
    for index, match in enumerate(matches):
        level, heading = match.group(1), match.group(2)
        if level == "##":
            inside = heading.startswith(COVERED)
        if inside or heading.startswith(COVERED):
            end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
            sections.append((level, heading, text[match.end():end]))
    return sections


def test_chinese_readme_has_every_covered_heading() -> None:
    english = _covered_sections((ROOT / "README.md").read_text(encoding="utf-8"))
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    anchors = {heading: level for heading, level in _ANCHOR.findall(chinese)}
    assert len(english) >= len(COVERED)
    missing = [f"{level} {heading}" for level, heading, _body in english
               if anchors.get(heading) != level]
    assert not missing, ("README.zh-CN.md lacks (or has at another level) the counterpart of: "
                         + "; ".join(missing))
    known = {heading for _level, heading, _body in english}
    stale = [heading for heading in anchors if heading not in known]
    assert not stale, f"README.zh-CN.md names English headings that no longer exist: {stale}"


def test_command_blocks_are_the_same_in_both() -> None:
    english_text = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    covered_blocks = [block for _level, _heading, body in _covered_sections(english_text)
                      for block in _BLOCK.findall(body)]
    assert covered_blocks
    missing = [block.splitlines()[1] for block in covered_blocks if block not in chinese]
    assert not missing, f"command blocks of README.md missing from README.zh-CN.md: {missing}"
    stale = [block.splitlines()[1] for block in _BLOCK.findall(chinese)
             if block not in english_text]
    assert not stale, f"README.zh-CN.md shows commands README.md does not: {stale}"


def test_readme_points_to_the_chinese_one() -> None:
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "README.zh-CN.md" in english and "--lang" in english
